"""PCK of a heatmap network on labelled images, next to the mean-pose floor."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bnnpose.models.codec import HeatmapCodec, mean_pose_baseline, pck, torso_size
from bnnpose.models.skeleton import MPII_JOINTS


def predict_heatmaps(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Run ``model`` on uint8 images ``[N, H, W, 3]``: float32 heatmaps ``[N, J, h, w]``.

    The model is put in eval mode for the call and restored to its previous mode afterwards.
    """
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
                out.append(model(chunk.permute(0, 3, 1, 2).float()).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


def evaluate(
    model: nn.Module,
    images: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    train_keypoints: np.ndarray,
    *,
    batch_size: int = 64,
    thr: float = 0.2,
) -> dict:
    """PCK@``thr`` (torso-diagonal normaliser) of ``model`` and of the training mean pose.

    Args:
        model: maps float ``[B, 3, H, W]`` in 0..255 to heatmaps ``[B, J, h, w]``.
        images: uint8 ``[N, H, W, 3]`` RGB.
        keypoints: ``[N, J, 2]`` ground truth (x, y) in image pixels.
        visible: ``[N, J]`` truthy for joints to score.
        train_keypoints: ``[M, J, 2]``; their mean is the baseline prediction for every image.

    Returns:
        ``pck`` and ``pck_mean_pose`` (floats), ``per_joint`` {joint name: PCK of the model}
        and ``n_instances``, the number of joint instances scored.
    """
    if len(images) == 0:
        raise ValueError("evaluate needs at least one image")
    heatmaps = predict_heatmaps(model, images, batch_size)
    h, w = images.shape[1:3]
    codec = HeatmapCodec(input_size=(w, h), heatmap_size=(heatmaps.shape[-1], heatmaps.shape[-2]))
    pred, _ = codec.decode(heatmaps)
    norm = torso_size(keypoints, visible)
    score, per_joint = pck(pred, keypoints, visible, norm, thr)
    mean_pose = np.broadcast_to(mean_pose_baseline(train_keypoints), np.shape(keypoints))
    score_mean_pose, _ = pck(mean_pose, keypoints, visible, norm, thr)
    counted = np.asarray(visible).astype(bool) & (np.isfinite(norm) & (norm > 0))[:, None]
    return {
        "pck": score,
        "pck_mean_pose": score_mean_pose,
        "per_joint": {name: float(v) for name, v in zip(MPII_JOINTS, per_joint, strict=True)},
        "n_instances": int(counted.sum()),
    }
