"""bench/person_finder.py: box recall and COCO AP on hand-made boxes, the HOG boxes it scores
against what ``bnnpose run --person hog`` picks, and MOT17's ground-truth rules on a small
sequence written here. The real MOT17-mini run is ``.venv/bin/python bench/person_finder.py``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bnnpose.host.sources import PersonFinder

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("person_finder", ROOT / "bench" / "person_finder.py")
pf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pf)

GT = np.array([[0, 0, 10, 20], [100, 100, 120, 140], [200, 0, 230, 60]], float)


def test_iou_of_hand_made_boxes():
    got = pf.iou(np.array([[0, 0, 10, 20], [5, 0, 15, 20], [50, 50, 60, 60]]), GT[:1])
    assert np.allclose(got.ravel(), [1.0, 1 / 3, 0.0])


def test_recall_matches_each_box_once_best_score_first():
    dets = np.array([[0, 0, 10, 20], [1, 0, 11, 20], [100, 100, 120, 139], [300, 0, 310, 20]])
    assert pf.matched(GT, dets, np.array([0.9, 0.8, 0.7, 0.6])) == 2  # the twin claims nothing
    assert pf.matched(GT, dets[[1]], np.array([1.0]), thr=0.95) == 0
    assert pf.matched(GT, np.zeros((0, 4)), np.zeros(0)) == 0


def test_the_person_inside_a_hog_window():
    # A pedestrian 60 x 150 px and the HOG window that frames it as INRIA's training windows
    # do: twice its width, 4/3 its height.
    ped = np.array([[100, 50, 160, 200]], float)
    window = np.array([[70, 25, 190, 225]], float)
    assert pf.iou(window, ped)[0, 0] < 0.5  # a perfect detection, missed at IoU 0.5 as a window
    assert np.allclose(pf.person_boxes(window), ped)
    assert pf.matched(ped, pf.person_boxes(window), np.ones(1)) == 1


def frame(dets, scores, ignore=()):
    return {"gt": GT, "ignore": np.array(ignore, float).reshape(-1, 4), "dets": np.array(dets),
            "scores": np.array(scores), "width": 320, "height": 240}


def test_coco_ap_of_hand_made_detections():
    assert pf.coco_ap([frame(GT, [0.9, 0.8, 0.7])]) == {"ap50": 1.0, "ap": 1.0}
    # Two of three found, the false alarm scored lowest: AP@0.5 = 2/3 (COCO's 101-point curve).
    ap = pf.coco_ap([frame([GT[0], GT[1], [300, 200, 310, 220]], [0.9, 0.8, 0.1])])
    assert ap["ap50"] == pytest.approx(2 / 3, abs=0.01)
    # The false alarm ranked first costs precision at every recall.
    worse = pf.coco_ap([frame([[300, 200, 310, 220], GT[0], GT[1]], [0.9, 0.8, 0.7])])
    assert worse["ap50"] < ap["ap50"]
    # A detection on an ignored person (a MOT17 static person) is no false alarm.
    ignored = pf.coco_ap([frame([[300, 200, 310, 220], GT[0], GT[1]], [0.9, 0.8, 0.7],
                                ignore=[[300, 200, 310, 220]])])
    assert ignored["ap50"] == pytest.approx(ap["ap50"], abs=0.01)
    assert pf.coco_ap([frame(np.zeros((0, 4)), [])]) == {"ap50": 0.0, "ap": 0.0}


def person_image() -> np.ndarray:
    """A grey frame with a dark upright figure HOG fires on (or not: both are fine here)."""
    img = np.full((480, 960, 3), 170, np.uint8)
    cv2.ellipse(img, (300, 120), (18, 22), 0, 0, 360, (40, 40, 40), -1)
    cv2.rectangle(img, (275, 145), (325, 260), (40, 40, 40), -1)
    cv2.rectangle(img, (280, 260), (298, 380), (40, 40, 40), -1)
    cv2.rectangle(img, (302, 260), (320, 380), (40, 40, 40), -1)
    return img


def test_best_hog_box_is_the_one_the_host_crops():
    img = person_image()
    boxes, scores = PersonFinder("hog").detections(img)
    top = PersonFinder("hog").box(img)
    if top is None:
        assert len(boxes) == 0
    else:
        assert np.allclose(boxes[int(np.argmax(scores))], top)


def write_sequence(root: Path) -> Path:
    seq = root / "train" / "SEQ-01"
    (seq / "gt").mkdir(parents=True)
    (seq / "img1").mkdir()
    (seq / "seqinfo.ini").write_text("[Sequence]\nname=SEQ-01\nimDir=img1\nimExt=.jpg\n")
    rows = ["1,1,270,90,60,300,1,1,1.0",  # pedestrian
            "1,2,600,100,40,80,0,7,1.0",  # static person: ignored
            "1,3,10,10,50,50,0,3,1.0",  # car: left out
            "2,1,272,90,60,300,1,1,1.0",
            "3,1,272,90,60,300,1,1,1.0"]  # frame 3 has no image: skipped
    (seq / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    for k in (1, 2):
        cv2.imwrite(str(seq / "img1" / f"{k:06d}.jpg"), person_image())
    return seq


def test_mot17_rules_and_the_result_file(tmp_path, capsys):
    write_sequence(tmp_path / "mot")
    frames = pf.read_sequence(tmp_path / "mot" / "train" / "SEQ-01")
    assert [f["frame"] for f in frames] == [1, 2]
    assert frames[0]["gt"].tolist() == [[270, 90, 330, 390]]
    assert frames[0]["ignore"].tolist() == [[600, 100, 640, 180]]
    assert pf.main(["--data", str(tmp_path / "mot"), "--out", str(tmp_path / "res"),
                    "--sides", "240", "960"]) == 0
    res = json.loads((tmp_path / "res" / "person_finder.json").read_text())
    assert [r["hog_side"] for r in res["sides"]] == [240, 960]
    assert res["command"].endswith("--sides 240 960") and res["iou"] == 0.5
    for r in res["sides"]:
        for s in (r["all_detections"], r["person_boxes"]):
            assert s["frames"] == 2 and s["pedestrians"] == 2 and 0 <= s["recall_iou50"] <= 1
        assert r["person_boxes"]["detections"] == r["all_detections"]["detections"]
        assert set(r["sequences"]) == {"SEQ-01"} and r["ms_per_frame"] > 0
    # The 300-px pedestrian of a 960-px frame: 75 px at 240, shorter than the 96-px person in
    # HOG's 128-px window; 300 px at 960.
    assert [r["all_detections"]["pedestrians_window_tall"] for r in res["sides"]] == [0, 2]
    assert (tmp_path / "res" / "person_finder.png").read_bytes()[:4] == b"\x89PNG"
    assert "recall@0.5" in capsys.readouterr().out


def test_hog_sees_the_frame_at_its_side_up_or_down(capsys):
    from bnnpose.host.cli import build_parser
    from bnnpose.host.common import BnnposeError

    img = person_image()  # 960 x 480
    assert PersonFinder("hog").hog_scale(img.shape) == PersonFinder.HOG_SIDE / 960
    assert PersonFinder("hog", hog_side=1920).hog_scale(img.shape) == 2.0
    # Boxes come back in frame pixels whatever the scale.
    for side in (480, 1920):
        boxes, _ = PersonFinder("hog", hog_side=side).detections(img)
        assert boxes.size == 0 or (boxes[:, 2].max() <= 960 * 1.2 and boxes[:, 0].min() > -200)
    for bad in (64, 10_000):
        with pytest.raises(BnnposeError, match="--hog-side must be 128-8192 px"):
            PersonFinder("hog", hog_side=bad)
    args = build_parser().parse_args(["run", "--backend", "cpu", "x.jpg"])
    assert args.hog_side == PersonFinder.HOG_SIDE


def test_bad_input_is_one_line(tmp_path, capsys):
    assert pf.main(["--data", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.strip() == (f"person_finder.py: error: no folder "
                                               f"{tmp_path / 'absent'} (make realset unpacks "
                                               "MOT17-mini there)")
    (tmp_path / "empty").mkdir()
    assert pf.main(["--data", str(tmp_path / "empty")]) == 2
    assert "no MOT17 sequence" in capsys.readouterr().err
    seq = write_sequence(tmp_path / "bad")
    (seq / "gt" / "gt.txt").write_text("1,2,3\n")
    assert pf.main(["--data", str(tmp_path / "bad"), "--out", str(tmp_path / "res")]) == 2
    assert "9 columns" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()
