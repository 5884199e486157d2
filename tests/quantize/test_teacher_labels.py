"""quantize/teacher_labels.py: the real-photo sets labelled by MediaPipe, without MediaPipe.

The teacher and the detector are stand-ins here (a fixed figure, fixed boxes), so these tests
check what the script does around them: the 33 -> 17 mapping, the keep rules, NMS, the frame
ranges that split one video and the COCO file it writes. The slow test runs the real teacher
where ``make realset`` has set it up.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bnnpose.host import skeleton
from bnnpose.host.common import sha256_file
from bnnpose.quantize import datasets
from bnnpose.quantize import footage
from bnnpose.quantize import teacher_labels as tl

ROOT = Path(__file__).resolve().parents[2]
TEACHER_PYTHON = ROOT / ".venv-teacher" / "bin" / "python"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")

#: A standing, camera-facing figure: BlazePose index -> offset from the person's centre in
#: person heights (the person's left is on the image's right).
FIGURE = {
    0: (0, -.45), 2: (.03, -.47), 5: (-.03, -.47), 7: (.06, -.46), 8: (-.06, -.46),
    11: (.12, -.3), 12: (-.12, -.3), 13: (.15, -.12), 14: (-.15, -.12), 15: (.16, .02),
    16: (-.16, .02), 23: (.08, .02), 24: (-.08, .02), 25: (.08, .25), 26: (-.08, .25),
    27: (.08, .48), 28: (-.08, .48),
}
W, H = 320, 240
PERSON = (40.0, 40.0, 100.0, 160.0)  # a dark figure is painted here
TWIN = (42.0, 43.0, 103.0, 163.0)  # HOG's second, weaker hit on the same person
RED = (200.0, 50.0, 260.0, 170.0)  # painted red: the fake teacher finds no pose there


def figure_landmarks(cx: float, cy: float, height: float, vis: float = 0.9) -> np.ndarray:
    lm = np.zeros((33, 3))
    lm[:, 2] = vis
    for i, (dx, dy) in FIGURE.items():
        lm[i, :2] = cx + dx * height, cy + dy * height
    return lm


def fake_pose(crop_rgb: np.ndarray) -> np.ndarray | None:
    """The figure centred in the crop at the size teacher_crop gives a person; no pose on red."""
    side = crop_rgb.shape[0]
    r, g, b = (int(v) for v in crop_rgb[side // 2, side // 2])
    if r > 150 and g < 100:
        return None
    return figure_landmarks(side / 2, side / 2, side * tl.PERSON_IN_BOX / tl.CROP_SIDE)


def fake_detect(frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.array([PERSON, TWIN, RED]), np.array([2.0, 1.0, 1.5])


def write_video(path: Path, n: int = 10) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    assert vw.isOpened()
    for k in range(n):
        frame = np.full((H, W, 3), 60 + 10 * k, np.uint8)
        x0, y0, x1, y1 = (int(v) for v in PERSON)
        frame[y0 + 10:y1 - 10, x0 + 15:x1 - 15] = 20
        x0, y0, x1, y1 = (int(v) for v in RED)
        frame[y0:y1, x0:x1] = (40, 40, 220)  # BGR red
        vw.write(frame)
    vw.release()
    return path


def test_importing_needs_no_mediapipe():
    code = ("import sys; import bnnpose.quantize.teacher_labels; "
            "assert 'mediapipe' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    if importlib.util.find_spec("mediapipe") is None:
        with pytest.raises(tl.LabelError, match="mediapipe is not importable.*venv-teacher"):
            tl.MediaPipePose()


def test_blazepose_to_coco_mapping_and_visibility():
    lm = np.column_stack([np.arange(33) * 3.0, np.arange(33) * 2.0, np.full(33, 0.9)])
    kp = tl.to_coco(lm, 200, 100)
    assert kp.shape == (17, 3)
    # Each COCO joint takes its BlazePose namesake.
    named = {"nose": 0, "left_eye": 2, "right_eye": 5, "left_ear": 7, "right_ear": 8,
             "left_shoulder": 11, "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14,
             "left_wrist": 15, "right_wrist": 16, "left_hip": 23, "right_hip": 24,
             "left_knee": 25, "right_knee": 26, "left_ankle": 27, "right_ankle": 28}
    for j, name in enumerate(tl.COCO_JOINTS):
        b = named[name]
        assert kp[j].tolist() == [b * 3.0, b * 2.0, 2]

    lm[0, 2], lm[2, 2] = 0.49, 0.5  # visibility threshold is inclusive
    lm[5, :2] = (200.0, 10.0)  # right of a 200 px wide frame (last column is 199)
    lm[7, :2] = (10.0, -1.0)  # above the frame
    kp = tl.to_coco(lm, 200, 100)
    assert kp[0].tolist() == [0, 0, 0]
    assert kp[1, 2] == 2
    assert kp[2].tolist() == [0, 0, 0] and kp[3].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="33"):
        tl.to_coco(lm[:17], 200, 100)


def coco_figure(box, vis=0.9, shift=(0.0, 0.0)) -> np.ndarray:
    x0, y0, x1, y1 = box
    lm = figure_landmarks((x0 + x1) / 2 + shift[0], (y0 + y1) / 2 + shift[1],
                          (y1 - y0) * tl.PERSON_IN_BOX, vis)
    return tl.to_coco(lm, 10_000, 10_000)


def test_box_and_landmarks_agree_only_when_joints_lie_in_the_box():
    box = (100.0, 100.0, 160.0, 220.0)
    assert tl.agrees(coco_figure(box), box)
    # A few pixels out is within the margin; a neighbour beside the box is not.
    assert tl.agrees(coco_figure(box, shift=(8.0, 0.0)), box)
    assert not tl.agrees(coco_figure(box, shift=(60.0, 0.0)), box)
    kp = coco_figure(box)
    assert not tl.agrees(np.zeros_like(kp), box)
    # Most joints inside is enough: two of 17 far away still agree.
    kp[15:, :2] += 500
    assert tl.agrees(kp, box)
    kp[9:, :2] += 500
    assert not tl.agrees(kp, box)


def test_keep_rules_name_their_reason():
    box = (100.0, 100.0, 160.0, 220.0)
    assert tl.judge(coco_figure(box), box) is None
    assert tl.judge(None, box) == "teacher found no pose"
    assert tl.judge(coco_figure(box, vis=0.3), box).startswith("fewer than 8")
    kp = coco_figure(box)
    kp[tl.COCO_JOINTS.index("left_hip")] = 0
    assert tl.judge(kp, box) == "shoulders or hips not confident"
    assert tl.judge(coco_figure(box, shift=(80.0, 0.0)), box) == "pose outside its box"


def test_nms_keeps_the_best_of_overlapping_and_nested_boxes():
    boxes = np.array([
        [0, 0, 50, 100],  # 0
        [5, 5, 55, 105],  # 1: near-copy of 0, better score
        [200, 0, 300, 200],  # 2: big box
        [230, 50, 270, 130],  # 3: inside 2 (IoU 0.16, but all of it overlaps)
        [400, 0, 450, 100],  # 4: alone
    ])
    assert tl.nms(boxes, np.array([1.0, 2.0, 1.5, 0.5, 0.1])) == [1, 2, 4]
    assert tl.nms(boxes, np.array([1.0, 2.0, 0.5, 1.5, 0.1])) == [1, 3, 4]
    assert tl.nms(np.zeros((0, 4)), np.zeros(0)) == []
    assert tl.box_overlap((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0


def test_same_person_is_one_pose_found_twice():
    box = (100.0, 100.0, 160.0, 220.0)
    a = coco_figure(box)
    assert tl.same_person(a, coco_figure(box, shift=(3.0, 2.0)), 120)
    assert not tl.same_person(a, coco_figure(box, shift=(40.0, 0.0)), 120)
    assert not tl.same_person(a, np.zeros_like(a), 120)


def test_teacher_crop_upscales_the_person_and_maps_back():
    frame = np.zeros((H, W, 3), np.uint8)
    crop, to_frame = tl.teacher_crop(frame, PERSON)
    side = crop.shape[0]
    assert crop.shape == (side, side, 3)
    person_px = side * tl.PERSON_IN_BOX / tl.CROP_SIDE
    assert abs(person_px - tl.TEACHER_PERSON_PX) < 2
    centre = to_frame @ np.array([side / 2, side / 2, 1.0])
    np.testing.assert_allclose(centre, [(PERSON[0] + PERSON[2]) / 2, (PERSON[1] + PERSON[3]) / 2])
    # Outside the frame is grey, not a smeared edge.
    crop, _ = tl.teacher_crop(frame, (-50.0, 0.0, 10.0, 120.0), mask_pad=None)
    assert tuple(crop[side // 2, 2]) == tl.GREY


def test_teacher_sees_only_its_box():
    frame = np.full((H, W, 3), 255, np.uint8)
    crop, to_frame = tl.teacher_crop(frame, PERSON)
    to_crop = np.linalg.inv(np.vstack([to_frame, [0, 0, 1]]))[:2]
    gx0, gy0, gx1, gy1 = tl.grow(PERSON, tl.MASK_PAD)
    inside = (to_crop @ [gx0 + 2, gy0 + 2, 1]).astype(int)
    beyond = (to_crop @ [gx0 - 2, (gy0 + gy1) / 2, 1]).astype(int)
    assert tuple(crop[inside[1], inside[0]]) == (255, 255, 255)
    assert tuple(crop[beyond[1], beyond[0]]) == tl.GREY
    crop, _ = tl.teacher_crop(frame, PERSON, mask_pad=None)
    assert tuple(crop[beyond[1], beyond[0]]) == (255, 255, 255)


def test_hog_detector_runs_on_an_empty_frame():
    boxes, scores = tl.HogPeople()(np.full((H, W, 3), 90, np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_frame_ranges_are_python_slices_of_the_frame_indices():
    assert footage.parse_frames("0:390:10") == slice(0, 390, 10)
    assert footage.parse_frames("420::3") == slice(420, None, 3)
    assert footage.parse_frames(":10") == slice(None, 10, None)
    assert footage.parse_frames("-5:") == slice(-5, None, None)
    for bad in ("5", "1:2:3:4", "a:9", "0:1.5"):
        with pytest.raises(ValueError, match="START:STOP"):
            footage.parse_frames(bad)

    frames = list(range(795))
    for spec in ("0:390:10", "420:795:3", "420::3", "-5:", "::25", "700:2000:40", "10:5"):
        picked = footage.select_frames(footage.parse_frames(spec), 795)
        assert list(picked) == frames[footage.parse_frames(spec)], spec
    assert len(footage.select_frames(footage.parse_frames("0:390:10"), 795)) == 39
    train = footage.select_frames(footage.parse_frames("420:795:3"), 795)
    assert (len(train), train[0], train[-1]) == (125, 420, 792)
    for step in (0, -1):
        # Frames are read forwards once; a reversed range would label nothing.
        with pytest.raises(tl.LabelError, match="step must be >= 1"):
            footage.select_frames(slice(None, None, step), 795)


@pytest.fixture
def labelled(tmp_path):
    video = write_video(tmp_path / "clip.avi")
    out = tmp_path / "set"
    summary = tl.label_video(video, out, slice(None, None, 3), "eval", pose=fake_pose,
                             detect=fake_detect, teacher_info={"name": "fake figure"})
    return video, out, summary


def test_writes_a_coco_keypoints_file_both_loaders_read(labelled):
    video, out, summary = labelled
    assert summary["frames"] == 4 and summary["people"] == 4  # frames 0, 3, 6, 9
    assert summary["split"] == "eval"
    assert summary["rejected"] == {"duplicate detection (NMS)": 4, "teacher found no pose": 4}
    assert sorted(p.name for p in out.iterdir()) == ["annotations.json", "images"]
    assert not list(out.parent.glob(".*partial-*"))

    ann = json.loads((out / "annotations.json").read_text())
    info = ann["info"]
    assert info["split"] == "eval" and "the eval split" in info["description"]
    assert info["frames"] == "0:10:3" and info["every_nth_frame"] == 3
    assert (info["first_frame"], info["last_frame"]) == (0, 9)
    assert info["frame_indices"] == [0, 3, 6, 9]
    assert [im["frame_index"] for im in ann["images"]] == [0, 3, 6, 9]
    assert info["source_video_sha256"] == tl.sha256_file(video)
    assert "agreement with the teacher, not accuracy" in info["note"]
    assert info["teacher"] == {"name": "fake figure"}
    assert info["rejected"] == summary["rejected"]
    cat = ann["categories"][0]
    assert cat["keypoints"] == list(skeleton.COCO_JOINTS)
    assert len(cat["skeleton"]) == 19

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO(str(out / "annotations.json"))
    a = api.loadAnns(api.getAnnIds())[0]
    assert a["iscrowd"] == 0 and a["num_keypoints"] == 17
    x, y, w, h = a["bbox"]
    assert (x, y, x + w, y + h) == PERSON and a["area"] == w * h
    kp = np.array(a["keypoints"]).reshape(17, 3)
    assert tl.agrees(kp, PERSON, pad=0.0, min_inside=1.0)
    assert set(kp[:, 2]) == {2}

    data = datasets.coco(out / "annotations.json", out / "images")
    assert len(data.instances) == 4 and data.joints == skeleton.COCO_JOINTS
    inst = data.instances[0]
    assert inst.image.shape == (H, W, 3) and inst.visible.all()
    np.testing.assert_allclose(inst.keypoints, kp[:, :2])


def test_boxes_are_clipped_to_the_frame(tmp_path):
    video = write_video(tmp_path / "clip.avi", n=1)
    edge = (-10.0, 30.0, 50.0, 150.0)  # its left sixth is off-frame, the person is not

    def detect(frame):
        return np.array([edge]), np.array([1.0])

    tl.label_video(video, tmp_path / "set", slice(None), "eval", pose=fake_pose, detect=detect)
    ann = json.loads((tmp_path / "set" / "annotations.json").read_text())["annotations"][0]
    assert ann["bbox"] == [0.0, 30.0, 50.0, 120.0]
    kp = np.array(ann["keypoints"]).reshape(17, 3)
    assert (kp[kp[:, 2] > 0, 0] >= 0).all() and (kp[kp[:, 2] == 0, :2] == 0).all()


def test_errors_are_one_line_and_leave_nothing_behind(tmp_path, capsys):
    args = ["--out", str(tmp_path / "set"), "--frames", "0:10", "--split-name", "eval"]
    assert tl.main([str(tmp_path / "absent.avi"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"teacher_labels.py: error: video not found: {tmp_path / 'absent.avi'}"

    video = write_video(tmp_path / "clip.avi", n=3)
    assert tl.main([str(video), "--out", str(tmp_path / "set"), "--frames", "5:9",
                    "--split-name", "train"]) == 2
    assert capsys.readouterr().err.strip() == \
        f"teacher_labels.py: error: 5:9: selects no frame of the 3 in {video}"
    with pytest.raises(SystemExit) as e:
        tl.main([str(video), "--out", str(tmp_path / "set"), "--frames", "7",
                 "--split-name", "eval"])
    assert e.value.code == 2 and "START:STOP" in capsys.readouterr().err
    with pytest.raises(tl.LabelError, match=r"no person kept in 3 frames .*no pose: 3"):
        tl.label_video(video, tmp_path / "set", slice(None), "eval", pose=lambda crop: None,
                       detect=lambda f: (np.array([PERSON]), np.array([1.0])))
    with pytest.raises(tl.LabelError, match="no detection at all"):
        tl.label_video(video, tmp_path / "set", slice(None), "eval", pose=fake_pose,
                       detect=lambda f: (np.zeros((0, 4)), np.zeros(0)))
    assert list(tmp_path.iterdir()) == [video]


def test_splits_of_one_video_share_no_frame_and_no_file(tmp_path, capsys):
    video = write_video(tmp_path / "clip.avi")
    for split, spec in (("eval", "0:4:2"), ("train", "6::1")):
        tl.label_video(video, tmp_path / split, footage.parse_frames(spec), split, pose=fake_pose,
                       detect=fake_detect)
    err = capsys.readouterr().err
    # One progress line a frame, named by split and frame index.
    assert "eval: frame 2 (2/2), 2 people kept" in err
    assert "train: frame 9 (4/4), 4 people kept" in err
    assert len(err.splitlines()) == 6

    info = {s: json.loads((tmp_path / s / "annotations.json").read_text())["info"]
            for s in ("eval", "train")}
    assert info["eval"]["frame_indices"] == [0, 2]
    assert info["train"]["frame_indices"] == [6, 7, 8, 9]
    assert info["train"]["frames"] == "6:10:1" and info["train"]["split"] == "train"
    names = {s: {p.name for p in (tmp_path / s / "images").iterdir()} for s in info}
    assert names["eval"] == {"frame_0000.png", "frame_0002.png"}
    assert not names["eval"] & names["train"]


def test_a_rebuild_replaces_the_old_set_whole(labelled, tmp_path):
    video, out, _ = labelled
    (out / "images" / "stale.png").write_bytes(b"")
    tl.label_video(video, out, slice(None, None, 5), "eval", pose=fake_pose, detect=fake_detect)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["frame_0000.png",
                                                                  "frame_0005.png"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.avi", "set"]


def test_licence_archive_and_detector_go_into_the_info(tmp_path, capsys):
    video = write_video(tmp_path / "clip.avi", n=4)
    whl = tmp_path / "pkg.whl"
    whl.write_bytes(b"a wheel")
    source = tl.provenance("BSD-3-Clause", "a demo clip", whl, "Pkg/Demo/demo.mp4")
    tl.label_video(video, tmp_path / "set", slice(None), "train", pose=fake_pose,
                   detect=fake_detect, source=source)
    info = json.loads((tmp_path / "set" / "annotations.json").read_text())["info"]
    assert info["licence"] == "BSD-3-Clause" and info["source_note"] == "a demo clip"
    assert info["source_archive"] == "pkg.whl"
    assert info["source_archive_sha256"] == sha256_file(whl)
    assert info["source_archive_member"] == "Pkg/Demo/demo.mp4"
    hog = tl.detector_info(tl.make_detector("hog", 0.5))
    assert hog["upscale"] == 0.5 and hog["name"].startswith("OpenCV HOG")
    assert "whole frame" in tl.detector_info(tl.make_detector("whole-frame"))["name"]
    boxes, _ = tl.WholeFrame()(np.zeros((30, 40, 3), np.uint8))
    assert boxes.tolist() == [[0, 0, 40, 30]]
    with pytest.raises(tl.LabelError, match="archive not found"):
        tl.provenance(archive=tmp_path / "absent.whl")
    with pytest.raises(tl.LabelError, match="--archive-member goes with --archive"):
        tl.provenance(archive_member="x")
    args = [str(video), "--out", str(tmp_path / "o"), "--frames", "0:2", "--split-name", "eval"]
    capsys.readouterr()
    assert tl.main(args + ["--hog-upscale", "0"]) == 2
    assert capsys.readouterr().err.strip() == \
        "teacher_labels.py: error: --hog-upscale must be > 0, got 0.0"
    assert tl.main(args + ["--archive", str(tmp_path / "absent.whl")]) == 2
    assert "archive not found" in capsys.readouterr().err


FIGURES = ((30, 50, 80, 190), (180, 30, 240, 200))  # dark people, x0 y0 x1 y1


def leftmost_figure_pose(rgb: np.ndarray) -> np.ndarray | None:
    """A stand-in teacher that, like BlazePose, labels one person in view: the leftmost dark
    blob, or no pose when none is left."""
    n, _, stats, _ = cv2.connectedComponentsWithStats((rgb.max(axis=2) < 40).astype(np.uint8))
    blobs = [s for s in stats[1:] if s[cv2.CC_STAT_AREA] > 50]
    if not blobs:
        return None
    x, y, w, h = min(blobs, key=lambda s: s[0])[:4]
    return figure_landmarks(x + w / 2, y + h / 2, h / 0.95)


def test_the_teacher_search_finds_each_person_and_greys_it_out(tmp_path):
    frame = np.full((H, W, 3), 90, np.uint8)
    for x0, y0, x1, y1 in FIGURES:
        frame[y0:y1, x0:x1] = 15
    looked = []

    def teacher(rgb):
        looked.append(rgb.copy())
        return leftmost_figure_pose(rgb)

    boxes, scores = tl.TeacherSearch(teacher)(frame)
    # One search per person and a last one that finds nobody.
    assert len(looked) == 3 and boxes.shape == (2, 4) and scores.tolist() == [1, 1]
    for box, (x0, y0, x1, y1) in zip(boxes, FIGURES, strict=True):
        kp = tl.to_coco(leftmost_figure_pose(np.where(
            np.arange(W)[None, :, None] >= x0 - 5, frame, 90).astype(np.uint8)), W, H)
        assert np.allclose(box, tl.joint_box(kp, W, H, tl.SEARCH_BOX_PAD))
        # The box is looser than the joints (about 1.4 times their height) and holds them.
        assert box[0] < x0 + 15 and box[2] > x1 - 15 and box[1] < y0 and box[3] > y1
    # The second search saw the first person greyed out and nobody else touched.
    first = tl.clip_box(tl.grow(tuple(boxes[0]), tl.MASK_PAD), W, H)
    x0, y0, x1, y1 = (int(round(v)) for v in first)
    assert (looked[1][y0:y1, x0:x1] == tl.GREY).all()
    assert (looked[1][FIGURES[1][1]:FIGURES[1][3], FIGURES[1][0]:FIGURES[1][2]] == 15).all()
    assert len(tl.TeacherSearch(leftmost_figure_pose, max_people=1)(frame)[0]) == 1
    with pytest.raises(tl.LabelError, match="needs the teacher"):
        tl.make_detector("teacher")(frame)

    # Through label_video: the teacher it labels with is the one that searches.
    video = tmp_path / "two.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for _ in range(3):
        vw.write(frame)
    vw.release()
    summary = tl.label_video(video, tmp_path / "set", slice(None), "train",
                             pose=leftmost_figure_pose, detect=tl.make_detector("teacher"),
                             teacher_info={"name": "leftmost figure"})
    assert summary["people"] == 6 and summary["rejected"] == {}
    info = json.loads((tmp_path / "set" / "annotations.json").read_text())["info"]
    assert info["detector"]["name"].startswith("the teacher, searching the whole frame")


@pytest.mark.slow
def test_real_teacher_labels_two_vtest_frames(tmp_path):
    if not TEACHER_PYTHON.is_file():
        pytest.skip("no .venv-teacher (make realset creates it)")
    if not VTEST.is_file():
        pytest.skip(f"no {VTEST} (make realset installs Debian's opencv-doc)")
    out = tmp_path / "vtest"
    run = subprocess.run([str(TEACHER_PYTHON), str(ROOT / "quantize" / "teacher_labels.py"),
                          str(VTEST), "--out", str(out), "--frames", "0:201:200",
                          "--split-name", "eval"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "people kept" in run.stdout and "rejected:" in run.stdout
    ann = json.loads((out / "annotations.json").read_text())
    assert ann["info"]["frame_indices"] == [0, 200] and ann["info"]["split"] == "eval"
    assert ann["info"]["teacher"]["package"] == "mediapipe==0.10.21"
    assert ann["info"]["teacher"]["settings"]["model_complexity"] == 1
    data = datasets.coco(out / "annotations.json", out / "images")
    assert len(data.instances) >= 2
    for inst in data.instances:
        assert inst.visible.sum() >= tl.MIN_VISIBLE
        x0, y0, x1, y1 = inst.box
        assert 0 <= x0 < x1 <= 768 and 0 <= y0 < y1 <= 576
