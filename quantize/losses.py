"""Heatmap losses (by ``TrainConfig.loss``) and the targets a distilled student regresses to."""

from __future__ import annotations

import torch
from torch import nn


def keypoint_mse_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """mmpose ``KeypointMSELoss`` with target weights: mean of ``(w * (pred - target))**2``.

    Shapes: pred, target ``[B, J, h, w]``; weight ``[B, J]``.
    """
    return ((pred - target) * weight[:, :, None, None]).pow(2).mean()


def spatial_softmax_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Weighted mean over joints of the cross-entropy between ``softmax(pred)`` over each
    heatmap's pixels and the target heatmap normalised to sum 1. Joints with an empty target
    are skipped. Shapes as :func:`keypoint_mse_loss`."""
    logp = torch.log_softmax(pred.flatten(2), dim=-1)
    t = target.flatten(2)
    mass = t.sum(-1)
    w = weight * (mass > 0)
    ce = -(t / mass.clamp_min(1e-12)[..., None] * logp).sum(-1)
    return (ce * w).sum() / w.sum().clamp_min(1.0)


def adaptive_wing_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, omega: float = 14.0,
    theta: float = 0.5, epsilon: float = 1.0, alpha: float = 2.1,
) -> torch.Tensor:
    """Adaptive Wing loss (Wang et al., ICCV 2019) with target weights, mean over pixels.

    Near a target's foreground (target -> 1) the exponent ``alpha - target`` makes it
    steeper than MSE for small errors, so the peak is not blurred; on the background it
    tends to a plain L1. ``theta`` joins the log and the linear branch with a continuous
    gradient. Shapes as :func:`keypoint_mse_loss`.
    """
    diff = (pred - target).abs()
    power = alpha - target
    ratio = theta / epsilon
    a = omega / (1 + ratio**power) * power * ratio ** (power - 1) / epsilon
    c = theta * a - omega * torch.log1p(ratio**power)
    loss = torch.where(diff < theta, omega * torch.log1p((diff / epsilon) ** power),
                       a * diff - c)
    return (loss * weight[:, :, None, None]).mean()


#: heatmap loss functions by ``TrainConfig.loss``
LOSSES = {"mse": keypoint_mse_loss, "awing": adaptive_wing_loss, "softmax": spatial_softmax_loss}


def teacher_heatmaps(teacher: nn.Module, teacher_gain: torch.Tensor | None,
                     inputs: torch.Tensor, loss: str) -> torch.Tensor:
    """The targets a student regresses to under ``loss``: the teacher's heatmaps at the
    temperature the teacher was trained at (its head gain), or with the softmax loss their
    spatial softmax, so that the cross-entropy is the KL divergence up to the teacher's
    constant entropy."""
    with torch.no_grad():
        soft = teacher(inputs)
        if teacher_gain is not None:
            soft = soft * teacher_gain[:, None, None]
    if loss == "softmax":
        soft = torch.softmax(soft.flatten(2), dim=-1).view_as(soft)
    return soft
