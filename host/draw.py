"""Skeleton overlays and contact sheets for predicted keypoints (OpenCV only)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from bnnpose.host.common import BnnposeError, atomic_writer
from bnnpose.host.skeleton import MPII_JOINTS, skeleton_of

#: RGB colours by body side, so left/right swaps are visible at a glance.
SIDE_COLOURS = {"l": (66, 135, 245), "r": (245, 130, 48), "c": (60, 200, 90)}

#: Joints and limbs under the score threshold are blended in at this opacity: still visible
#: for debugging, but clearly not a claim.
FADED_ALPHA = 0.3


def _side(name: str) -> str:
    return name[0] if name[:2] in ("l_", "r_") else "c"


def draw_pose(
    image_rgb: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    threshold: float = 0.3,
    joints: Sequence[str] = MPII_JOINTS,
    skeleton: Sequence[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Draw limbs and joints on a copy of an image.

    Args:
        image_rgb: ``[H, W, 3]`` uint8.
        keypoints: ``[J, 2]`` (x, y) in image pixels; non-finite joints are skipped.
        scores: ``[J]``; joints below ``threshold``, and limbs touching one, are drawn faded.
        skeleton: limbs as index pairs; default :func:`skeleton_of` ``joints``.

    Returns:
        ``[H, W, 3]`` uint8 annotated copy.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    skeleton = skeleton_of(tuple(joints)) if skeleton is None else skeleton
    if kp.shape != (len(joints), 2) or sc.shape != (len(joints),):
        raise BnnposeError(
            f"expected keypoints [{len(joints)}, 2] and scores [{len(joints)}], "
            f"got {list(kp.shape)} and {list(sc.shape)}"
        )
    h, w = image_rgb.shape[:2]
    thickness = max(1, round(min(h, w) / 120))
    visible = np.isfinite(kp).all(axis=1)
    confident = visible & (sc >= threshold)
    # cv2 drawing takes int32 pixels; shift=4 (1/16 px) keeps sub-pixel placement on crops,
    # and clipping far-off joints keeps 16x their coordinates inside int32.
    span = 4 * max(h, w)
    fixed = np.round(np.clip(np.where(visible[:, None], kp, 0), -span, span) * 16).astype(int)
    limbs = [(a, b) for a, b in skeleton if visible[a] and visible[b]]
    strong = [(a, b) for a, b in limbs if confident[a] and confident[b]]
    weak = [(a, b) for a, b in limbs if not (confident[a] and confident[b])]

    out = image_rgb.copy()
    if weak or (visible & ~confident).any():
        # Faded parts go underneath, so confident limbs stay crisp where they cross.
        _draw_layer(out, fixed, visible & ~confident, weak, joints, thickness)
        out = cv2.addWeighted(out, FADED_ALPHA, image_rgb, 1 - FADED_ALPHA, 0)
    _draw_layer(out, fixed, confident, strong, joints, thickness)
    return out


def _draw_layer(
    canvas: np.ndarray,
    fixed: np.ndarray,
    joint_mask: np.ndarray,
    limbs: Sequence[tuple[int, int]],
    joints: Sequence[str],
    thickness: int,
) -> None:
    for a, b in limbs:
        sa, sb = _side(joints[a]), _side(joints[b])
        colour = SIDE_COLOURS[sa if sa == sb else "c"]
        cv2.line(canvas, tuple(map(int, fixed[a])), tuple(map(int, fixed[b])), colour,
                 thickness, cv2.LINE_AA, shift=4)
    radius = (thickness + 2) * 16
    for j in np.flatnonzero(joint_mask):
        centre = tuple(map(int, fixed[j]))
        cv2.circle(canvas, centre, radius, SIDE_COLOURS[_side(joints[j])], -1, cv2.LINE_AA, 4)
        cv2.circle(canvas, centre, radius, (255, 255, 255), 1, cv2.LINE_AA, 4)


def save_png(path: str | os.PathLike, image_rgb: np.ndarray) -> Path:
    """Write an ``[H, W, 3]`` uint8 RGB image as PNG, atomically (temp file + rename)."""
    path = Path(path)
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image_rgb),
                                                 cv2.COLOR_RGB2BGR))
    if not ok:
        raise BnnposeError(f"cannot encode PNG for {path}")
    with atomic_writer(path) as f:
        f.write(data.tobytes())
    return path


def keypoints_grid(
    images: Sequence[np.ndarray],
    keypoints: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    path: str | os.PathLike | None = None,
    cols: int = 4,
    cell: int = 256,
    threshold: float = 0.3,
    joints: Sequence[str] = MPII_JOINTS,
) -> np.ndarray:
    """Annotate several images and tile them into one contact sheet.

    Each image is scaled to fit a ``cell`` x ``cell`` tile (letterboxed in black) before
    drawing, so line widths are uniform across the sheet.

    Args:
        images: N ``[H_i, W_i, 3]`` uint8 RGB images.
        keypoints: N ``[J, 2]`` arrays in the coordinates of the matching image.
        scores: N ``[J]`` arrays.
        path: if given, the sheet is also saved there as PNG.

    Returns:
        ``[rows * cell, min(N, cols) * cell, 3]`` uint8 RGB with ``rows = ceil(N / cols)``.
    """
    if not len(images) == len(keypoints) == len(scores) or not images:
        raise BnnposeError("keypoints_grid needs the same non-zero number of images, "
                           "keypoints and scores")
    n_cols = min(cols, len(images))
    rows = math.ceil(len(images) / n_cols)
    sheet = np.zeros((rows * cell, n_cols * cell, 3), np.uint8)
    for i, (img, kp, sc) in enumerate(zip(images, keypoints, scores, strict=True)):
        h, w = img.shape[:2]
        s = cell / max(h, w)
        tw, th = max(1, round(w * s)), max(1, round(h * s))
        ox, oy = (cell - tw) // 2, (cell - th) // 2
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        tile = cv2.resize(img, (tw, th), interpolation=interp)
        # Same pixel-centre convention as preprocess: x' = (x + 0.5) * s - 0.5.
        kp_tile = (np.asarray(kp, dtype=np.float64) + 0.5) * [tw / w, th / h] - 0.5
        tile = draw_pose(tile, kp_tile, sc, threshold=threshold, joints=joints)
        r, c = divmod(i, n_cols)
        sheet[r * cell + oy : r * cell + oy + th, c * cell + ox : c * cell + ox + tw] = tile
    if path is not None:
        save_png(path, sheet)
    return sheet
