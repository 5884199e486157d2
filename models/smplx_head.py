"""Optional SMPL-X regression from BiDRN's body features, as the BiDRN paper adds it.

The head reads BiDRN's deepest stream (1/16 resolution) through a stride-2 BiDRB, averages it
over the image and maps it with one real-valued linear layer (the seeds keep the last layer
real) to SMPL-X parameters and a weak-perspective camera. It is not part of the FINN graph: the
accelerator outputs the keypoint heatmaps, the head runs beside it on the host or in training.

SMPL-X itself, the body model that turns parameters into joints, is licence-restricted and not
shipped. Training the head needs it, from the user: ``bnnpose train --model bidrn-z2
--smplx-model DIR`` with ``DIR`` holding ``SMPLX_NEUTRAL.npz`` (smpl-x.is.tue.mpg.de) and the
``smplx`` package installed (``pip install 'bnnpose[smplx]'``). The loss is the 2-D
reprojection error of the body model's joints against the labelled keypoints, matched by name,
so no 3-D labels are needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from bnnpose.host.common import BnnposeError
from bnnpose.models.bidrn import BiDRB, BiDRN

#: Regressed parameters and their sizes; hands as 12 PCA components each, as SMPL-X's fitting
#: code does, and ``camera`` as weak perspective (scale, x shift, y shift).
SMPLX_PARAMS: dict[str, int] = {
    "global_orient": 3, "body_pose": 63, "jaw_pose": 3, "left_hand_pose": 12,
    "right_hand_pose": 12, "betas": 10, "expression": 10, "camera": 3,
}
HAND_PCA = 12


class SMPLXHead(nn.Module):
    """SMPL-X parameters of a BiDRN's input from its deepest stream.

    Call :meth:`attach` once; every forward pass of the BiDRN then leaves its deepest stream
    where :meth:`forward` reads it, so the keypoint network runs unchanged.

    Shapes: [N, C, S/16, S/16] stream -> {name: [N, size]} (see ``SMPLX_PARAMS``).
    """

    def __init__(self, net: BiDRN):
        super().__init__()
        cfg = net.cfg
        c = cfg.widths[-1]
        self.block = BiDRB(c, c, cfg.bits, cfg.binary, cfg.pad_value, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, sum(SMPLX_PARAMS.values()))
        # Zeros: the mean body in the rest pose, seen by a camera of scale 1 at the centre.
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        self._features: torch.Tensor | None = None

    def attach(self, net: BiDRN) -> torch.utils.hooks.RemovableHandle:
        def keep(_module, _inputs, output):
            self._features = output

        return net.encoder[-1].register_forward_hook(keep)

    def forward(self, features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x = self._features if features is None else features
        if x is None:
            raise RuntimeError("SMPLXHead: run the attached BiDRN first")
        flat = self.fc(self.pool(self.block(x)).flatten(1))
        params = dict(zip(SMPLX_PARAMS, flat.split(list(SMPLX_PARAMS.values()), dim=1),
                          strict=True))
        params["camera"] = params["camera"] + torch.tensor([1.0, 0.0, 0.0])
        return params


def load_body_model(path: str | os.PathLike) -> nn.Module:
    """The user's SMPL-X body model (neutral) from a folder or ``.npz``, via ``smplx``."""
    path = Path(path)
    if not path.exists():
        raise BnnposeError(f"SMPL-X model not found: {path} (the files are not shipped; "
                           "download SMPLX_NEUTRAL.npz from smpl-x.is.tue.mpg.de)")
    try:
        import smplx
    except ImportError:
        raise BnnposeError("the SMPL-X head needs the smplx package: "
                           "pip install 'bnnpose[smplx]'") from None
    try:
        return smplx.create(str(path), model_type="smplx", gender="neutral", use_pca=True,
                            num_pca_comps=HAND_PCA, num_betas=SMPLX_PARAMS["betas"],
                            num_expression_coeffs=SMPLX_PARAMS["expression"])
    except Exception as e:  # smplx's own errors are asserts and KeyErrors on the archive
        raise BnnposeError(f"cannot load SMPL-X model {path}: {type(e).__name__}: {e}") from None


def body_joint_names() -> list[str]:
    """Names of the body model's output joints, in order (``smplx``'s list)."""
    from smplx.joint_names import JOINT_NAMES

    return list(JOINT_NAMES)


def joint_indices(model_joints: tuple[str, ...], body_joints: list[str]) -> tuple[list, list]:
    """``(indices into model_joints, indices into body_joints)`` of the joints both name."""
    where = {name: i for i, name in enumerate(body_joints)}
    pairs = [(i, where[name]) for i, name in enumerate(model_joints) if name in where]
    return [i for i, _ in pairs], [j for _, j in pairs]


def project(joints3d: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Weak perspective: ``s * (x, -y) + t`` in crop coordinates scaled to [-1, 1] (SMPL-X's
    y axis points up, an image's down). [N, K, 3], [N, 3] -> [N, K, 2]."""
    s, t = camera[:, :1, None], camera[:, None, 1:]
    return s * joints3d[..., :2] * torch.tensor([1.0, -1.0]) + t


def reprojection_loss(body_model: nn.Module, params: dict[str, torch.Tensor],
                      keypoints: torch.Tensor, weight: torch.Tensor, crop_size: int,
                      model_joints: tuple[str, ...], body_joints: list[str]) -> torch.Tensor:
    """Mean L1 distance, in units of half the crop, between the labelled keypoints and the
    projected body-model joints of the same names.

    Args:
        keypoints: [N, J, 2] crop pixels in the model's joint order; weight: [N, J] (0 where
            a joint is unlabelled). ``body_joints``: names of the body model's output joints.
    """
    out = body_model(**{k: v for k, v in params.items() if k != "camera"})
    ours, theirs = joint_indices(model_joints, body_joints[: out.joints.shape[1]])
    if not ours:
        raise BnnposeError("the model's joints and the SMPL-X joints share no name")
    pred = project(out.joints[:, theirs], params["camera"])
    target = keypoints[:, ours] / (crop_size / 2) - 1
    w = weight[:, ours]
    return ((pred - target).abs().sum(-1) * w).sum() / w.sum().clamp(min=1)
