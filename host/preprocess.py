"""Image loading and the top-down person crop that feeds the accelerator.

Coordinates everywhere follow OpenCV's convention: the centre of pixel (row i, column j) is
at (x=j, y=i), so the whole of a W x H image spans [-0.5, W-0.5] x [-0.5, H-0.5]. Keypoints
are (x, y) pairs in that convention, in the original image or in the crop.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bnnpose.host.common import BnnposeError

#: Person boxes are grown by this factor so limbs at the box edge keep some context.
DEFAULT_MARGIN = 1.25

#: Fill for crop areas outside the image. A constant mid grey rather than BORDER_REPLICATE:
#: replicating smears edge pixels into long straight streaks that a binarized first layer
#: readily mistakes for limbs, while a flat mid-range value carries no edges at all and sits
#: at the centre of the UINT8 input range. Training crops must pad with the same value.
PAD_GREY = (128, 128, 128)


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (for failures that get a one-line error of ours)."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # LOG_LEVEL_SILENT
    try:
        yield
    finally:
        cv2.setLogLevel(level)


def check_image_file(path: str | os.PathLike) -> Path:
    """Fail with a one-line BnnposeError unless ``path`` is a non-empty regular file."""
    path = Path(path)
    if not path.exists():
        raise BnnposeError(f"image not found: {path}")
    if not path.is_file():
        raise BnnposeError(f"image is not a file: {path}")
    if path.stat().st_size == 0:
        raise BnnposeError(f"image file is empty: {path}")
    return path


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB.

    Returns:
        ``[H, W, 3]`` uint8 RGB; grey images are expanded and alpha is dropped.
    """
    path = check_image_file(path)
    try:
        # Reading the bytes ourselves separates "cannot read" from "cannot decode", which
        # cv2.imread folds into one silent None.
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise BnnposeError(f"cannot read image {path}: {e.strerror or e}") from None
    # OpenCV prints its own multi-line warnings for broken files; ours replaces them.
    with quiet_opencv():
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise BnnposeError(f"cannot decode image {path}: corrupt, or not a format OpenCV reads")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Crop:
    """Affine map from original-image pixels to the network input crop."""

    matrix: np.ndarray  #: [2, 3] float64, original (x, y, 1) -> crop (x, y)
    size: tuple[int, int]  #: crop (width, height)

    @property
    def inverse(self) -> np.ndarray:
        """[2, 3] float64, crop (x, y, 1) -> original (x, y)."""
        return cv2.invertAffineTransform(self.matrix)

    @property
    def scale(self) -> float:
        """Crop pixels per original pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Original-image points ``[..., 2]`` -> crop points ``[..., 2]`` (float64)."""
        return _apply(self.matrix, points)

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Crop points ``[..., 2]`` -> original-image points ``[..., 2]`` (float64)."""
        return _apply(self.inverse, points)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def person_crop(
    image_shape: Sequence[int],
    box: Sequence[float] | None = None,
    size: Sequence[int] = (128, 128),
    margin: float = DEFAULT_MARGIN,
) -> Crop:
    """The crop that maps a person box, grown by ``margin``, onto a ``size`` network input.

    Args:
        image_shape: the original image's ``shape`` (height, width, ...).
        box: (x0, y0, x1, y1) in original pixels; ``None`` means the whole image.
        size: (width, height) of the crop, as the codec and cv2 spell sizes.
        margin: growth factor applied after the box is widened to the crop's aspect ratio.

    Returns:
        A :class:`Crop` that centres the box and keeps its aspect ratio (no stretching).
    """
    h, w = int(image_shape[0]), int(image_shape[1])
    out_w, out_h = int(size[0]), int(size[1])
    if box is None:
        box = (-0.5, -0.5, w - 0.5, h - 0.5)
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise BnnposeError(f"invalid person box {tuple(box)}: need x0 < x1 and y0 < y1")
    bw, bh = x1 - x0, y1 - y0
    aspect = out_w / out_h
    # Grow the short side rather than squeeze the long one, so the person is never cut off.
    bw, bh = max(bw, bh * aspect) * margin, max(bh, bw / aspect) * margin
    s = out_w / bw
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    matrix = np.array(
        [[s, 0.0, (out_w - 1) / 2 - s * cx], [0.0, s, (out_h - 1) / 2 - s * cy]]
    )
    return Crop(matrix=matrix, size=(out_w, out_h))


def warp(image: np.ndarray, crop: Crop, pad_value: Sequence[int] = PAD_GREY) -> np.ndarray:
    """Cut ``crop`` out of ``image``.

    Args:
        image: ``[H, W, C]`` uint8.

    Returns:
        ``[crop.size[1], crop.size[0], C]`` uint8.
    """
    out_w, out_h = crop.size
    matrix = crop.matrix
    src = image
    if crop.scale < 0.5:
        # warpAffine samples bilinearly, which aliases badly when shrinking a camera frame by
        # 5-15x; INTER_AREA on just the source region first leaves a <=2x bilinear step.
        src, matrix = _area_shrink(image, crop, target_scale=0.5)
    return cv2.warpAffine(
        src, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(int(v) for v in pad_value),
    )


def _area_shrink(
    image: np.ndarray, crop: Crop, target_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Area-resample the part of ``image`` the crop sees; return it and its crop matrix."""
    out_w, out_h = crop.size
    corners = crop.to_original(np.array([[-0.5, -0.5], [out_w - 0.5, out_h - 0.5]]))
    h, w = image.shape[:2]
    # One pixel of slack keeps the bilinear taps at the region edge on real image data.
    c0 = int(np.clip(np.floor(corners[:, 0].min()) - 1, 0, w - 1))
    r0 = int(np.clip(np.floor(corners[:, 1].min()) - 1, 0, h - 1))
    c1 = int(np.clip(np.ceil(corners[:, 0].max()) + 2, c0 + 1, w))
    r1 = int(np.clip(np.ceil(corners[:, 1].max()) + 2, r0 + 1, h))
    roi = image[r0:r1, c0:c1]
    f = crop.scale / target_scale
    new_w = max(1, round(roi.shape[1] * f))
    new_h = max(1, round(roi.shape[0] * f))
    small = cv2.resize(roi, (new_w, new_h), interpolation=cv2.INTER_AREA)
    fx, fy = new_w / roi.shape[1], new_h / roi.shape[0]
    # Original -> small: shift to the ROI, then cv2.resize's centre mapping x' = (x+.5)f - .5.
    to_small = np.array([[fx, 0.0, (0.5 - c0) * fx - 0.5], [0.0, fy, (0.5 - r0) * fy - 0.5]])
    small_to_orig = cv2.invertAffineTransform(to_small)
    matrix = crop.matrix[:, :2] @ small_to_orig[:, :2]
    offset = crop.matrix[:, :2] @ small_to_orig[:, 2] + crop.matrix[:, 2]
    return small, np.hstack([matrix, offset[:, None]])


def preprocess(
    image_rgb: np.ndarray,
    box: Sequence[float] | None = None,
    size: Sequence[int] = (128, 128),
    margin: float = DEFAULT_MARGIN,
    pad_value: Sequence[int] = PAD_GREY,
) -> tuple[np.ndarray, Crop]:
    """Person crop of an RGB image, ready for the accelerator.

    Args:
        image_rgb: ``[H, W, 3]`` uint8.
        box: (x0, y0, x1, y1) person box; ``None`` means the whole image.
        size: (width, height) of the network input.

    Returns:
        ``([size[1], size[0], 3]`` uint8 crop, the :class:`Crop` to map keypoints back).
    """
    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise BnnposeError(
            f"expected an RGB uint8 image [H, W, 3], got {image_rgb.dtype}{list(image_rgb.shape)}"
        )
    crop = person_crop(image_rgb.shape, box, size, margin)
    return warp(image_rgb, crop, pad_value), crop
