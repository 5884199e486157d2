"""Training arrays from labelled people, and the per-sample geometric augmentation.

Real data reaches training the way the host sees a person: the host's top-down crop of the
labelled box, warped once to the network's input size. Joints are taken into the model's
layout by name, so a COCO-17 file trains the 12 limb joints an MPII-16 model shares with it
and leaves the others unlabelled (zero target weight).
"""

from __future__ import annotations

import cv2
import numpy as np

from bnnpose.host.common import BnnposeError
from bnnpose.host.preprocess import PAD_GREY, person_crop, warp


def people_arrays(data, model_joints: tuple[str, ...], size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops of every person of a :class:`~bnnpose.quantize.datasets.Dataset`.

    Returns images uint8 ``[N, size, size, 3]``, keypoints float32 ``[N, J, 2]`` in crop
    pixels (NaN where unlabelled) and visible bool ``[N, J]``, in ``model_joints`` order.
    """
    from bnnpose.host.skeleton import shared_joints

    shared = shared_joints(model_joints, data.joints)
    if not shared:
        raise BnnposeError(f"{data.name}: none of its joints is one of the model's "
                           f"({', '.join(model_joints[:4])}, ...)")
    mi, di = [m for m, _, _ in shared], [d for _, d, _ in shared]
    n, j = len(data.instances), len(model_joints)
    images = np.empty((n, size, size, 3), np.uint8)
    keypoints = np.full((n, j, 2), np.nan, np.float32)
    visible = np.zeros((n, j), bool)
    for k, inst in enumerate(data.instances):
        crop = person_crop(inst.image.shape, inst.box, (size, size))
        images[k] = warp(inst.image, crop)
        vis = inst.visible[di]
        keypoints[k, mi] = np.where(vis[:, None], crop.to_crop(inst.keypoints[di]), np.nan)
        visible[k, mi] = vis
    return images, keypoints, visible


def random_affines(rng: np.random.Generator, n: int, size: int, rotate: float, scale: float
                   ) -> np.ndarray | None:
    """``[n, 2, 3]`` rotations by U(-rotate, rotate) degrees and zooms by U(1-scale, 1+scale)
    about the crop centre, or None when both ranges are zero (the arrays stay untouched)."""
    if rotate == 0 and scale == 0:
        return None
    angles = rng.uniform(-rotate, rotate, n)
    zooms = rng.uniform(1 - scale, 1 + scale, n)
    c = (size - 1) / 2
    return np.stack([cv2.getRotationMatrix2D((c, c), float(a), float(z))
                     for a, z in zip(angles, zooms, strict=True)])


def apply_affines(images: np.ndarray, keypoints: np.ndarray, affines: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Warp crops ``[B, S, S, 3]`` and their keypoints ``[B, J, 2]`` by ``[B, 2, 3]``.

    Uncovered corners get the host's crop fill, as a person near a frame edge does.
    Joints that leave the crop keep their coordinates; the codec gives them zero weight.
    """
    size = images.shape[2], images.shape[1]
    out = np.empty_like(images)
    for b, m in enumerate(affines):
        out[b] = cv2.warpAffine(images[b], m, size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT,
                                borderValue=tuple(int(v) for v in PAD_GREY))
    kp = np.einsum("bjk,bik->bji", keypoints, affines[:, :, :2]) + affines[:, None, :, 2]
    return out, kp.astype(keypoints.dtype)
