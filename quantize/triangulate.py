"""Calibrated views checking each other: a teacher's 2-D joints seen by several synchronised
cameras are triangulated, and a view whose label does not land where the other views put the
joint is caught by its reprojection error.

A single teacher can be confidently wrong (a left/right swap, an elbow on the wrong side of the
body, a neighbour's leg); it is much less likely to be wrong in the same 3-D way from four
directions at once. So a label kept after this check agrees with the teacher *and* with the
geometry of the scene.

How a joint is checked: it is triangulated (linear DLT, :func:`triangulate`) from every view
that labelled it; while it has more than two views and the worst view's reprojection error is
over ``joint_limit``, that view is set aside and the joint triangulated again from the rest
(one wrong view drags the point, and so every view's error, with it). Each view's label is then
measured against the consensus point: its *error* is the pixel distance between the label and
the projection of the point triangulated from the views that were kept. A joint seen by fewer
than two views cannot be checked and has no error.

Cameras are read from a Qualisys ``.qca.txt`` calibration (:func:`read_qca`), converted to
OpenCV's pinhole convention as Pose2Sim does (``Pose2Sim/calibration.py``: ``read_qca``,
``world_to_camera_persp``, ``rotate_cam``), lengths in metres.

Runs in the teacher's venv as well as the project's (numpy only).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnnpose.quantize.footage import LabelError

#: Qualisys writes the intrinsics in sub-pixel units: 64 per pixel.
QCA_SUBPIXELS = 64.0


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: pixel ``x ~ K (R X + t)`` for a world point ``X``."""

    name: str
    K: np.ndarray  # [3, 3]
    R: np.ndarray  # [3, 3], world -> camera
    t: np.ndarray  # [3]
    size: tuple[int, int]  # width, height in pixels

    @property
    def P(self) -> np.ndarray:
        """The ``[3, 4]`` projection matrix."""
        return self.K @ np.column_stack([self.R, self.t])

    def project(self, X: np.ndarray) -> np.ndarray:
        """World points ``[N, 3]`` -> pixels ``[N, 2]`` (NaN where a point is not in front)."""
        X = np.asarray(X, dtype=np.float64).reshape(-1, 3)
        cam = X @ self.R.T + self.t
        uvw = cam @ self.K.T
        with np.errstate(invalid="ignore", divide="ignore"):
            xy = uvw[:, :2] / uvw[:, 2:3]
        xy[cam[:, 2] <= 0] = np.nan
        return xy


def read_qca(path: str | Path) -> list[Camera]:
    """The cameras of a Qualisys calibration, in the file's order.

    Distortion is not modelled: Pose2Sim triangulates this demo without undistorting
    (``undistort_points = false``), and Qualisys' coefficients here move a corner pixel by less
    than one pixel once scaled to pixels as Pose2Sim scales them.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise LabelError(f"cannot read the calibration {path}: {e}") from None
    cams = []
    for tag in root.findall("cameras/camera"):
        try:
            fov = tag.find("fov_video").attrib
            intr = tag.find("intrinsic").attrib
            tr = tag.find("transform").attrib
            left, top = float(fov["left"]), float(fov["top"])
            size = (int(float(fov["right"]) - left + 1), int(float(fov["bottom"]) - top + 1))
            K = np.array([
                [float(intr["focalLengthU"]) / QCA_SUBPIXELS, 0,
                 float(intr["centerPointU"]) / QCA_SUBPIXELS - left],
                [0, float(intr["focalLengthV"]) / QCA_SUBPIXELS,
                 float(intr["centerPointV"]) / QCA_SUBPIXELS - top],
                [0, 0, 1]])
            # The transform is the camera's pose in the world (position in mm); its rotation,
            # read row by row, is already world -> camera as Pose2Sim reads it.
            M = np.array([[float(tr[f"r{i}{j}"]) for j in (1, 2, 3)] for i in (1, 2, 3)])
            pos = np.array([float(tr[k]) for k in ("x", "y", "z")]) / 1000
        except (AttributeError, KeyError, ValueError) as e:
            raise LabelError(f"{path}: camera {tag.get('serial')!r} is incomplete ({e})") from None
        # World -> camera, then turned half a turn about x: Qualisys cameras look down their
        # -z axis with y up, OpenCV's down +z with y down.
        flip = np.diag([1.0, -1.0, -1.0])
        R = flip @ M
        t = -R @ pos
        cams.append(Camera(tag.get("serial") or f"cam{len(cams) + 1:02d}", K, R, t, size))
    if not cams:
        raise LabelError(f"no camera in the calibration {path}")
    return cams


def triangulate(Ps: list[np.ndarray], xys: np.ndarray) -> np.ndarray:
    """One world point ``[3]`` from its pixels ``xys`` ``[V, 2]`` in ``V >= 2`` views with
    projection matrices ``Ps``: the least-squares solution of the linear (DLT) system."""
    rows = []
    for P, (x, y) in zip(Ps, np.asarray(xys, dtype=np.float64)):
        rows += [x * P[2] - P[0], y * P[2] - P[1]]
    A = np.asarray(rows)
    # Rows scaled to unit length, so no view weighs more for being further away.
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    X = np.linalg.svd(A)[2][-1]
    return X[:3] / X[3]


@dataclass
class ViewCheck:
    """The geometry check of one person seen in several views."""

    errors: np.ndarray  # [V, J] pixels; NaN where the view did not label the joint or < 2 views
    points: np.ndarray  # [J, 3] world points; NaN where fewer than two views labelled
    outliers: np.ndarray  # [V, J] bool: views set aside when the joint was triangulated

    def median_error(self, view: int) -> float:
        """The view's median error over its checked joints (NaN when none was checked)."""
        e = self.errors[view]
        e = e[np.isfinite(e)]
        return float(np.median(e)) if len(e) else float("nan")


def check_views(cams: list[Camera], keypoints: np.ndarray, joint_limit: float) -> ViewCheck:
    """Triangulate each joint of one person from ``keypoints`` ``[V, J, 3]`` (x, y, v per view,
    ``v > 0`` labelled) and measure each view against the others (see the module's docstring).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    V, J = kp.shape[:2]
    if V != len(cams):
        raise ValueError(f"{V} views of keypoints for {len(cams)} cameras")
    Ps = [c.P for c in cams]
    errors = np.full((V, J), np.nan)
    points = np.full((J, 3), np.nan)
    outliers = np.zeros((V, J), bool)
    for j in range(J):
        views = [v for v in range(V) if kp[v, j, 2] > 0]
        if len(views) < 2:
            continue
        kept = list(views)
        while True:
            X = triangulate([Ps[v] for v in kept], kp[kept, j, :2])
            err = {v: _reprojection(cams[v], X, kp[v, j, :2]) for v in kept}
            worst = max(kept, key=lambda v: err[v])
            if len(kept) <= 2 or err[worst] <= joint_limit:
                break
            kept.remove(worst)
        points[j] = X
        for v in views:
            errors[v, j] = _reprojection(cams[v], X, kp[v, j, :2])
            outliers[v, j] = v not in kept
    return ViewCheck(errors, points, outliers)


def _reprojection(cam: Camera, X: np.ndarray, xy: np.ndarray) -> float:
    p = cam.project(X)[0]
    # A point behind the camera is as wrong as a label can be.
    return float(np.hypot(*(p - xy))) if np.isfinite(p).all() else float("inf")
