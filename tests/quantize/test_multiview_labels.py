"""quantize/triangulate.py and quantize/multiview_labels.py with synthetic cameras and people.

Four cameras on a circle look at a body whose joints are known in 3-D; their projections are
the teacher's labels. A view whose labels are shifted, mirrored or of another person must be
caught by its reprojection error, a single wrong joint must be unlabelled, and labels that
agree must come through untouched. The calibration reader is checked on a Qualisys file
written here from known cameras. MediaPipe is not needed: the teacher is a stand-in.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bnnpose.quantize import footage
from bnnpose.quantize import multiview_labels as mv
from bnnpose.quantize import teacher_labels as tl
from bnnpose.quantize import triangulate as tri

W, H = 640, 960


def look_at(pos, target=(0.0, 0.0, 1.0), f=800.0, name="cam") -> tri.Camera:
    """A camera at ``pos`` looking at ``target`` (world z up, image y down)."""
    pos, target = np.asarray(pos, float), np.asarray(target, float)
    z = target - pos
    z /= np.linalg.norm(z)
    x = np.cross(z, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]])
    return tri.Camera(name, K, R, -R @ pos, (W, H))


def rig(n=4) -> list[tri.Camera]:
    return [look_at((4 * np.cos(a), 4 * np.sin(a), 1.5), name=f"cam{i + 1:02d}")
            for i, a in enumerate(np.linspace(0, 2 * np.pi, n, endpoint=False))]


def body(shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    """17 COCO joints of a standing person, metres, z up."""
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-0.25, 0.25, 17), rng.uniform(-0.15, 0.15, 17),
                           np.linspace(1.7, 0.1, 17)])
    return pts + shift


def labels(cams, X, noise=0.0, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kp = np.zeros((len(cams), len(X), 3))
    for v, c in enumerate(cams):
        kp[v, :, :2] = c.project(X) + rng.normal(0, noise, (len(X), 2))
        kp[v, :, 2] = 2
    return kp


def test_triangulation_recovers_points_and_projection_matches_opencv():
    cams, X = rig(), body()
    kp = labels(cams, X)
    for j in range(len(X)):
        assert np.allclose(tri.triangulate([c.P for c in cams], kp[:, j, :2]), X[j], atol=1e-6)
    c = cams[1]
    ref = cv2.projectPoints(X, cv2.Rodrigues(c.R)[0], c.t, c.K, None)[0].reshape(-1, 2)
    assert np.allclose(c.project(X), ref, atol=1e-6)
    cv_X = cv2.triangulatePoints(cams[0].P, cams[2].P, kp[0, :, :2].T, kp[2, :, :2].T)
    assert np.allclose((cv_X[:3] / cv_X[3]).T, X, atol=1e-6)
    # Behind the camera: no pixel.
    behind = -(c.R.T @ c.t) - c.R[2]  # one metre behind the camera's centre
    assert np.isnan(c.project(behind)).all()


def test_agreeing_views_have_small_errors():
    cams, X = rig(), body()
    check = tri.check_views(cams, labels(cams, X, noise=1.0), joint_limit=20)
    assert np.nanmax(check.errors) < 5 and not check.outliers.any()
    assert np.allclose(check.points, X, atol=0.02)
    assert all(check.median_error(v) < 3 for v in range(4))


def test_a_view_of_another_person_is_caught_and_does_not_spoil_the_others():
    cams, X = rig(), body()
    kp = labels(cams, X, noise=1.0)
    kp[2] = labels(cams, body(shift=(0, 0.6, 0)))[2]  # view 3 labelled a neighbour
    check = tri.check_views(cams, kp, joint_limit=20)
    assert check.median_error(2) > 50
    assert all(check.median_error(v) < 5 for v in (0, 1, 3))
    assert check.outliers[2].all() and not check.outliers[[0, 1, 3]].any()


def test_one_mirrored_view_is_rejected_by_judge_views():
    cams, X = rig(), body()
    kp = labels(cams, X, noise=1.0)
    mirror = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    kp[1] = kp[1, mirror]  # view 2: the teacher swapped left and right
    people = [((0.0, 0.0, float(W), float(H)), kp[v]) for v in range(4)]
    out, why = mv.judge_views(cams, people, max_median=10, joint_limit=20)
    assert out[1] is None and why["geometry: median reprojection error over 10 px"] == 1
    assert all(out[v] is not None and out[v][2] < 5 for v in (0, 2, 3))


def test_a_single_wrong_joint_is_unlabelled_and_the_view_kept():
    cams, X = rig(), body()
    kp = labels(cams, X, noise=1.0)
    kp[0, 9, :2] += (80, -40)  # one wrist far off in view 1
    people = [((0.0, 0.0, float(W), float(H)), kp[v]) for v in range(4)]
    out, why = mv.judge_views(cams, people, max_median=10, joint_limit=20)
    assert why == {"joints unlabelled by geometry": 1}
    assert out[0][1][9].tolist() == [0, 0, 0] and out[0][1][:, 2].sum() == 2 * 16
    assert all(o is not None for o in out)


def test_a_person_in_one_view_cannot_be_checked():
    cams, X = rig(), body()
    kp = labels(cams, X)
    people = [((0.0, 0.0, float(W), float(H)), kp[0]), None, None, None]
    out, why = mv.judge_views(cams, people)
    assert out == [None] * 4 and why == {"geometry: seen in fewer than 2 views": 1}


def test_too_few_consistent_joints_left_rejects_the_view():
    cams, X = rig(), body()
    kp = labels(cams, X, noise=1.0)
    kp[3, :8, :2] += 100  # half the body wrong, the median still passes a loose threshold
    people = [((0.0, 0.0, float(W), float(H)), kp[v]) for v in range(4)]
    out, why = mv.judge_views(cams, people, max_median=150, joint_limit=20)
    assert out[3] is None and why["geometry: too few consistent joints left"] == 1


def write_qca(path: Path, cams: list[tri.Camera]) -> Path:
    """A Qualisys calibration of ``cams``, written the way Qualisys stores cameras."""
    flip = np.diag([1.0, -1.0, -1.0])
    rows = []
    for c in cams:
        M = (flip @ c.R).tolist()
        pos = (-c.R.T @ c.t * 1000).tolist()
        r = " ".join(f'r{i + 1}{j + 1}="{M[i][j]!r}"' for i in range(3) for j in range(3))
        k = (c.K * 64).tolist()
        rows.append(
            f'<camera active="1" avg-residual="0.4" model="none" serial="{c.name}">'
            f'<fov_video bottom="{H - 1}" left="0" right="{W - 1}" top="0"/>'
            f'<transform {r} x="{pos[0]!r}" y="{pos[1]!r}" z="{pos[2]!r}"/>'
            f'<intrinsic centerPointU="{k[0][2]!r}" centerPointV="{k[1][2]!r}" '
            f'focalLengthU="{k[0][0]!r}" focalLengthV="{k[1][1]!r}"/></camera>')
    path.write_text(f"<?xml version='1.0'?><calibration><cameras>{''.join(rows)}</cameras>"
                    "</calibration>")
    return path


def test_qualisys_calibration_reads_back_the_cameras(tmp_path):
    cams = rig()
    read = tri.read_qca(write_qca(tmp_path / "Calib.qca.txt", cams))
    assert [c.name for c in read] == ["cam01", "cam02", "cam03", "cam04"]
    for a, b in zip(cams, read):
        assert np.allclose(a.P, b.P) and b.size == (W, H)
    (tmp_path / "bad.qca.txt").write_text("<calibration><cameras></cameras></calibration>")
    with pytest.raises(footage.LabelError, match="no camera"):
        tri.read_qca(tmp_path / "bad.qca.txt")
    (tmp_path / "broken.qca.txt").write_text("<calibration>")
    with pytest.raises(footage.LabelError, match="cannot read the calibration"):
        tri.read_qca(tmp_path / "broken.qca.txt")


def test_pose2sim_demo_calibration_looks_at_the_floor():
    """The real file, where make realset has unpacked it: the origin (on the floor) projects
    into every 1088x1920 view below a point 1.8 m above it."""
    calib = Path(__file__).resolve().parents[2] / "out/footage/pose2sim/Calib.qca.txt"
    if not calib.is_file():
        pytest.skip(f"no {calib} (make realset unpacks it from the pose2sim wheel)")
    for c in tri.read_qca(calib):
        floor, head = c.project(np.array([[0, 0, 0], [0, 0, 1.8]]))
        assert 0 < floor[0] < 1088 and 0 < floor[1] < 1920 and head[1] < floor[1] - 500


def write_views(tmp_path: Path, cams, n: int = 6) -> list[Path]:
    paths = []
    for v, c in enumerate(cams):
        path = tmp_path / f"{c.name}.avi"
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W + 8 * v, H))
        for k in range(n):
            vw.write(np.full((H, W + 8 * v, 3), 40 + 10 * k, np.uint8))
        vw.release()
        paths.append(path)
    return paths


def test_label_multiview_writes_coco_with_geometry_info(tmp_path, monkeypatch, capsys):
    cams, X = rig(), body()
    calib = write_qca(tmp_path / "Calib.qca.txt", cams)
    videos = write_views(tmp_path, cams)
    truth = {W + 8 * v: labels([c], X, noise=1.0, seed=v)[0] for v, c in enumerate(cams)}
    truth[W + 8 * 2][:, 0] += 100  # cam03's teacher found someone else

    def label_frame(frame, detect, pose, rejected):
        h, w = frame.shape[:2]
        return [((0.0, 0.0, float(w), float(h)), truth[w].copy())]

    monkeypatch.setattr(tl, "label_frame", label_frame)
    s = mv.label_multiview(videos, calib, tmp_path / "set", slice(0, 6, 2), "eval",
                           pose=lambda crop: None, teacher_info={"name": "stand-in"},
                           source={"licence": "test"}, max_median=10, joint_limit=20)
    assert s["images"] == 9 and s["frames"] == 3
    assert s["geometry"] == {"geometry: median reprojection error over 10 px": 3}
    coco = json.loads((tmp_path / "set" / "annotations.json").read_text())
    names = sorted(i["file_name"] for i in coco["images"])
    assert names[:3] == ["cam01_frame_0000.png", "cam01_frame_0002.png", "cam01_frame_0004.png"]
    assert not any(n.startswith("cam03") for n in names)
    assert {i["view"] for i in coco["images"]} == {"cam01", "cam02", "cam04"}
    assert all(a["reprojection_median_px"] < 5 for a in coco["annotations"])
    for a in coco["annotations"]:
        # The whole frame was the detector's box; the person's box is the joints' box, padded.
        kp = np.array(a["keypoints"]).reshape(17, 3)
        x, y, w, h = a["bbox"]
        assert x <= kp[:, 0].min() and kp[:, 0].max() <= x + w and w < W / 2
        assert y <= kp[:, 1].min() and kp[:, 1].max() <= y + h <= H
    info = coco["info"]
    assert info["licence"] == "test" and info["frame_indices"] == [0, 2, 4]
    assert info["geometry"]["rejected"] == s["geometry"]
    assert info["geometry"]["max_median_error_px"] == 10 and len(info["source_videos"]) == 4
    assert "eval: frame 4 (3/3), 9 views kept" in capsys.readouterr().err


def test_multiview_errors_are_one_line(tmp_path, capsys):
    cams = rig()
    calib = write_qca(tmp_path / "Calib.qca.txt", cams)
    videos = write_views(tmp_path, cams[:2], n=3)
    base = ["--calibration", str(calib), "--frames", "0:3", "--split-name", "eval",
            "--out", str(tmp_path / "set")]
    assert mv.main([str(videos[0]), *base]) == 2
    assert capsys.readouterr().err.strip() == ("multiview_labels.py: error: need at least two "
                                               "views to check geometry, got 1")
    other = tmp_path / "cam09.avi"
    other.write_bytes(videos[0].read_bytes())
    assert mv.main([str(videos[0]), str(other), *base]) == 2
    assert "no camera named 'cam09'" in capsys.readouterr().err
    assert mv.main([str(v) for v in videos] + base + ["--max-median-error", "90"]) == 2
    assert "--max-median-error <= --joint-limit" in capsys.readouterr().err
    assert mv.main([str(v) for v in videos] + base[:1] + [str(tmp_path / "no.qca")] + base[2:]
                   ) == 2
    assert "cannot read the calibration" in capsys.readouterr().err
    assert not (tmp_path / "set").exists()
