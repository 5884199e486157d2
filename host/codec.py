"""Heatmap targets, keypoint decoding and pose metrics (PCK, PCKh, NME).

Numpy only (besides the constants in ``skeleton``): this module also runs on the ARM board.

Coordinate convention, shared by the synthetic renderer and the host: a keypoint ``(x, y)`` is
in continuous pixel units of its image with **integer values at pixel centres** (the OpenCV
drawing convention), so an image of width ``w`` spans ``[-0.5, w - 0.5)`` and pixel ``i`` covers
``[i - 0.5, i + 0.5)``. Input and heatmap grids are aligned by their pixel areas (not by their
first pixel centres), so with stride ``s = input / heatmap``::

    x_heatmap = (x_input + 0.5) / s - 0.5        x_input = (x_heatmap + 0.5) * s - 0.5

e.g. for 128 -> 32 the centre of heatmap pixel 0 is input coordinate 1.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skeleton import MPII_JOINTS

#: Torso diameters used as the PCK normaliser, in order of preference, as joint-index pairs:
#: left shoulder to right hip (the classic PCK definition), else right shoulder to left hip.
TORSO_DIAGONALS = (
    (MPII_JOINTS.index("l_shoulder"), MPII_JOINTS.index("r_hip")),
    (MPII_JOINTS.index("r_shoulder"), MPII_JOINTS.index("l_hip")),
)


def inside_image(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Whether keypoints ``[..., 2]`` fall on a pixel of an image of ``size=(w, h)``.

    Returns bool ``[...]``; non-finite coordinates are outside.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    w, h = size
    with np.errstate(invalid="ignore"):
        return (
            (kp[..., 0] >= -0.5) & (kp[..., 0] < w - 0.5)
            & (kp[..., 1] >= -0.5) & (kp[..., 1] < h - 0.5)
        )


@dataclass(frozen=True)
class HeatmapCodec:
    """Encode keypoints as Gaussian heatmaps and decode heatmaps back to keypoints.

    ``input_size`` and ``heatmap_size`` are ``(w, h)``; ``sigma`` (the targets' width) and
    ``blur`` (the Gaussian that smooths a heatmap before decoding, 0 for none) are in heatmap
    pixels. See the module docstring for the coordinate convention.
    """

    input_size: tuple[int, int] = (128, 128)
    heatmap_size: tuple[int, int] = (32, 32)
    sigma: float = 1.0
    #: DARK's distribution modulation (Zhang et al., CVPR 2020): binary networks' heatmaps are
    #: ragged, and a smoothed map's maximum is a better estimate than the raw one. A Gaussian
    #: target stays a Gaussian with the same centre, so decoding stays exact away from the
    #: border (within a few pixels of it the smoothing pulls a peak inwards). 1.0 was the
    #: best of 0.5-1.5 for the binary and float bhg-tiny on 512 renders from seed 30,000,000,
    #: which no training, validation or demo set uses (+3 to +4 PCK@0.2 points binary).
    blur: float = 1.0

    @property
    def stride(self) -> np.ndarray:
        """Input pixels per heatmap pixel, ``[2]`` as (x, y)."""
        return np.asarray(self.input_size, np.float64) / np.asarray(self.heatmap_size, np.float64)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian targets for one pose.

        Args:
            keypoints: ``[J, 2]`` (x, y) in input-image pixels.
            visible: ``[J]`` truthy for labelled joints.

        Returns:
            heatmaps: float32 ``[J, H, W]``, an unnormalised Gaussian with peak value 1 at the
                exact sub-pixel keypoint position (the unbiased variant of mmpose's MSRA
                target: no rounding of the centre, so decoding can recover it exactly).
            weights: float32 ``[J]``, 1 for visible joints inside the input image, else 0; the
                heatmaps of zero-weight joints are all zero.
        """
        kp = np.asarray(keypoints, dtype=np.float64)
        vis = np.asarray(visible).astype(bool)
        if kp.ndim != 2 or kp.shape[1] != 2 or vis.shape != kp.shape[:1]:
            raise ValueError(f"expected keypoints [J, 2] and visible [J], got {kp.shape}, "
                             f"{vis.shape}")
        weights = vis & inside_image(kp, self.input_size)
        mu = (kp + 0.5) / self.stride - 0.5
        # Unlabelled joints may carry NaN coordinates; park them so 0 * map stays 0, not NaN.
        mu[~weights] = 0.0
        w, h = self.heatmap_size
        scale = -0.5 / self.sigma**2
        gx = np.exp(scale * (np.arange(w) - mu[:, :1]) ** 2)
        gy = np.exp(scale * (np.arange(h) - mu[:, 1:]) ** 2)
        heatmaps = gy[:, :, None] * gx[:, None, :] * weights[:, None, None]
        return heatmaps.astype(np.float32), weights.astype(np.float32)

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints at the heatmap maxima, refined to sub-pixel precision.

        Each axis is refined independently from the argmax and its two neighbours: a parabola
        through the log values (exact for the Gaussians ``encode`` makes) when all three are
        positive, else the classic quarter-pixel shift toward the higher neighbour (integer
        FPGA outputs can be zero or negative off-peak). An argmax on the border is not refined
        along that axis. Ties go to the first maximum in row-major order.

        Args:
            heatmaps: ``[J, H, W]`` or ``[N, J, H, W]``, any real dtype.

        Returns:
            keypoints: float32 ``[..., J, 2]`` (x, y) in input-image pixels.
            scores: float32 ``[..., J]``, each heatmap's own value (unsmoothed) at the decoded
                pixel, in its own units.
        """
        hm = np.asarray(heatmaps)
        w, h = self.heatmap_size
        if hm.ndim not in (3, 4) or hm.shape[-2:] != (h, w):
            raise ValueError(f"expected heatmaps [(N,) J, {h}, {w}], got {hm.shape}")
        raw = hm.reshape(-1, h, w)
        maps = _gaussian_blur(raw.astype(np.float64), self.blur) if self.blur > 0 else raw
        rows = np.arange(maps.shape[0])
        peak = maps.reshape(len(maps), -1).argmax(axis=1)
        iy, ix = np.divmod(peak, w)

        def at(y: np.ndarray, x: np.ndarray) -> np.ndarray:
            return maps[rows, np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)].astype(np.float64)

        centre = at(iy, ix)
        dx = _refine(at(iy, ix - 1), centre, at(iy, ix + 1), (ix > 0) & (ix < w - 1))
        dy = _refine(at(iy - 1, ix), centre, at(iy + 1, ix), (iy > 0) & (iy < h - 1))
        xy = np.stack([ix + dx, iy + dy], axis=-1)
        keypoints = (xy + 0.5) * self.stride - 0.5
        return (keypoints.reshape(*hm.shape[:-2], 2).astype(np.float32),
                raw[rows, iy, ix].reshape(hm.shape[:-2]).astype(np.float32))


def _gaussian_blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian smoothing of ``[M, H, W]`` maps, radius ``ceil(4 sigma)``, the edge
    pixels repeated beyond the border."""
    r = int(np.ceil(4 * sigma))
    taps = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    taps /= taps.sum()
    h, w = maps.shape[-2:]
    padded = np.pad(maps, ((0, 0), (r, r), (0, 0)), mode="edge")
    maps = sum(t * padded[:, i:i + h] for i, t in enumerate(taps))
    padded = np.pad(maps, ((0, 0), (0, 0), (r, r)), mode="edge")
    return sum(t * padded[:, :, i:i + w] for i, t in enumerate(taps))


def peak_confidence(heatmaps: np.ndarray) -> np.ndarray:
    """Softmax probability mass in the 3x3 cells around each heatmap's maximum, in [0, 1].

    The networks are trained with a softmax over each heatmap, so this reads the heatmap as
    the distribution it was trained to be: about 1 for one sharp peak, ``9 / (H * W)`` for a
    flat map. Unlike the raw maximum it does not depend on the head's output scale.

    Args:
        heatmaps: ``[J, H, W]`` or ``[N, J, H, W]``.

    Returns:
        float32 ``[..., J]``.
    """
    hm = np.asarray(heatmaps, dtype=np.float64)
    h, w = hm.shape[-2:]
    maps = hm.reshape(-1, h, w)
    p = np.exp(maps - maps.max(axis=(1, 2), keepdims=True))
    p /= p.sum(axis=(1, 2), keepdims=True)
    iy, ix = np.divmod(maps.reshape(len(maps), -1).argmax(axis=1), w)
    padded = np.pad(p, ((0, 0), (1, 1), (1, 1)))
    rows = np.arange(len(maps))[:, None, None]
    ys = (iy[:, None, None] + np.arange(3)[None, :, None])
    xs = (ix[:, None, None] + np.arange(3)[None, None, :])
    mass = padded[rows, ys, xs].sum(axis=(1, 2))
    return mass.reshape(hm.shape[:-2]).astype(np.float32)


def _refine(lo: np.ndarray, centre: np.ndarray, hi: np.ndarray, interior: np.ndarray) -> np.ndarray:
    """Sub-pixel offset in [-0.5, 0.5] of a maximum ``centre`` between neighbours ``lo``, ``hi``."""
    positive = (lo > 0) & (centre > 0) & (hi > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Drops below the peak on each side; both are >= 0 because centre is the maximum.
        down_lo = np.log(centre) - np.log(lo)
        down_hi = np.log(centre) - np.log(hi)
        total = down_lo + down_hi
        gaussian = np.where(total > 0, 0.5 * (down_lo - down_hi) / total, 0.0)
    quarter = 0.25 * np.sign(hi - lo)
    return np.where(interior, np.where(positive, gaussian, quarter), 0.0)


def torso_size(gt: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Torso diameter per pose: the PCK normaliser.

    The distance from the left shoulder to the right hip if both are visible, else from the
    right shoulder to the left hip if both are visible, else NaN (such poses drop out of
    ``pck``). See ``TORSO_DIAGONALS``.

    Args:
        gt: ``[N, J, 2]`` ground-truth keypoints.
        visible: ``[N, J]`` truthy for labelled joints.

    Returns:
        float64 ``[N]``.
    """
    kp = np.asarray(gt, dtype=np.float64)
    vis = np.asarray(visible).astype(bool)
    size = np.full(kp.shape[0], np.nan)
    for a, b in reversed(TORSO_DIAGONALS):
        ok = vis[:, a] & vis[:, b]
        size[ok] = np.linalg.norm(kp[ok, a] - kp[ok, b], axis=-1)
    return size


def pck(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, norm: np.ndarray, thr: float = 0.2
) -> tuple[float, np.ndarray]:
    """Percentage of correct keypoints: a joint is correct if ``|pred - gt| <= thr * norm``.

    Only visible joints of poses with a finite, positive ``norm`` count; a non-finite
    prediction counts as wrong. PCK@0.2 with ``norm = torso_size(gt, visible)`` is the
    project's headline metric.

    Args:
        pred, gt: ``[N, J, 2]`` keypoints in the same pixel units.
        visible: ``[N, J]`` truthy for joints to score.
        norm: ``[N]`` per-pose normaliser.
        thr: threshold as a fraction of ``norm``.

    Returns:
        mean: fraction correct over all counted joints (each joint instance weighs the same),
            NaN if none count.
        per_joint: float64 ``[J]`` fraction correct per joint type, NaN where none count.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    n = np.asarray(norm, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        counted = np.asarray(visible).astype(bool) & (np.isfinite(n) & (n > 0))[:, None]
        dist = np.linalg.norm(p - g, axis=-1) / n[:, None]
        correct = (dist <= thr) & counted
    total = counted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = correct.sum(axis=0) / total
    mean = float(correct.sum() / total.sum()) if total.sum() else float("nan")
    return mean, per_joint


def pckh(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray,
    thr: float = 0.5,
) -> tuple[float, np.ndarray]:
    """MPII's PCKh: :func:`pck` normalised by each person's head size.

    ``head_size`` ``[N]`` is MPII's normaliser, 0.6 times the diagonal of the labelled head
    box. The official benchmark averages over all joints but pelvis and thorax; pass a
    ``visible`` without them for that mean. Returns ``(mean, per_joint)`` as :func:`pck` does.
    """
    return pck(pred, gt, visible, head_size, thr)


def nme(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, norm: np.ndarray
) -> tuple[float, np.ndarray]:
    """Normalised mean error, the face-landmark metric (300W: ``norm`` = inter-ocular distance).

    Args:
        pred, gt: ``[N, J, 2]`` keypoints in the same pixel units.
        visible: ``[N, J]`` truthy for points to score.
        norm: ``[N]`` per-image normaliser.

    Returns:
        mean: mean of the per-image NMEs over the images that have one, NaN if none does.
        per_image: float64 ``[N]``, the mean over visible points of ``|pred - gt| / norm``;
            NaN for images without visible points or a finite, positive ``norm``. A
            non-finite prediction makes its image's NME infinite.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    n = np.asarray(norm, dtype=np.float64)
    vis = np.asarray(visible).astype(bool)
    dist = np.linalg.norm(p - g, axis=-1)
    dist[np.isnan(dist) & vis] = np.inf
    with np.errstate(invalid="ignore", divide="ignore"):
        per_image = np.where(vis, dist, 0.0).sum(axis=1) / vis.sum(axis=1) / n
    per_image[~(np.isfinite(n) & (n > 0)) | ~vis.any(axis=1)] = np.nan
    scored = per_image[~np.isnan(per_image)]
    return (float(scored.mean()) if len(scored) else float("nan")), per_image


def mean_pose_baseline(train_keypoints: np.ndarray, visible: np.ndarray | None = None
                       ) -> np.ndarray:
    """The training set's mean pose ``[J, 2]`` (float32), predicted for every image as a
    sanity floor for PCK. ``train_keypoints`` is ``[N, J, 2]``; with ``visible`` ``[N, J]``
    each joint is averaged over the samples that label it (a joint nobody labels is NaN)."""
    kp = np.asarray(train_keypoints, dtype=np.float64)
    if visible is None:
        return kp.mean(axis=0).astype(np.float32)
    vis = np.asarray(visible).astype(bool)[..., None]
    with np.errstate(invalid="ignore"):
        mean = np.where(vis, kp, 0.0).sum(axis=0) / vis.sum(axis=0)
    return mean.astype(np.float32)
