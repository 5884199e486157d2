"""The network a recipe trains: seeded or warm-started from a checkpoint, its head scaled for
binary training, and the training-only head affine."""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm import tqdm

from bnnpose.host.common import BnnposeError, one_line
from bnnpose.models.registry import arch_overrides, build_model
from bnnpose.quantize.train_config import TrainConfig


class HeadAffine(nn.Module):
    """Per-joint ``gain_j * x + bias_j`` with ``gain_j = softplus(p_j) > 0``, for training only.

    A binary head's power-of-two scale cannot follow the targets' peak of 1 (Adam drives it to
    1/256 and below); a positive gain absorbs that mismatch in the loss. The gain is positive
    and per channel, so the arg-max of every heatmap, and so the hardware's decoding, is the
    same with or without it; the network itself is what gets exported and evaluated.
    """

    def __init__(self, num_joints: int):
        super().__init__()
        # softplus(log(e - 1)) = 1: the identity at the start.
        self.gain_param = nn.Parameter(torch.full((num_joints,), math.log(math.e - 1.0)))
        self.bias = nn.Parameter(torch.zeros(num_joints))

    @property
    def gain(self) -> torch.Tensor:
        return nn.functional.softplus(self.gain_param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain[:, None, None] + self.bias[:, None, None]

    def to_lists(self) -> dict:
        """``{"gain": [...], "bias": [...]}`` as plain floats (checkpoint key ``head_affine``)."""
        with torch.no_grad():
            return {"gain": [float(v) for v in self.gain], "bias": [float(v) for v in self.bias]}

    def load_lists(self, d: dict) -> None:
        with torch.no_grad():
            gain = torch.tensor(d["gain"], dtype=torch.float32)
            # Inverse softplus, stable for large gains.
            self.gain_param.copy_(gain + torch.log(-torch.expm1(-gain)))
            self.bias.copy_(torch.tensor(d["bias"], dtype=torch.float32))


class WithAffine(nn.Module):
    """``affine(model(x))``, to score the affine-corrected heatmaps next to the raw ones."""

    def __init__(self, model: nn.Module, affine: HeadAffine):
        super().__init__()
        self.model, self.affine = model, affine

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        out = self.model(x)
        return [self.affine(o) for o in out] if isinstance(out, list) else self.affine(out)


def init_head(model: nn.Module, max_abs: float) -> None:
    """Rescale each output channel of every head in ``model.heads`` to ``max |w| = max_abs``.

    A binary head outputs ``scale * sum(+-stream)`` with ``scale = 2**ceil(log2(max |w|))``,
    and the default init (scale 1/4) makes its outputs about 50x larger than Gaussian targets
    of peak 1. Only the largest latent weight of a channel sees a gradient toward a smaller
    scale, so shrinking it in training takes thousands of steps; 2**-5.5 starts the scale at
    1/32, where 32 agreeing stream values of 1 make a peak of exactly 1.
    """
    with torch.no_grad():
        for head in model.heads:
            head.weight.mul_(max_abs / head.weight.abs().amax(dim=(1, 2, 3), keepdim=True))


def init_from(model: nn.Module, path: str) -> dict:
    """Copy the tensors of checkpoint ``path`` whose names and shapes ``model`` shares;
    returns the checkpoint.

    The float twin names its convs and BNs like the binary network, so this starts a binary
    run from a trained float one; the quantizers' own state stays at its initial value.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = ckpt["state_dict"]
    except Exception as e:  # the user needs one answer for a missing or foreign file
        raise BnnposeError(f"cannot initialise from {path}: {one_line(e, 300)}") from None
    own = model.state_dict()
    mismatched = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if mismatched:
        raise BnnposeError(f"{path} has other shapes for: {', '.join(mismatched)}")
    result = model.load_state_dict(state, strict=False)
    tqdm.write(f"init from {path}: {len(state) - len(result.unexpected_keys)} tensors loaded; "
               f"missing {sorted(result.missing_keys)}; "
               f"unexpected {sorted(result.unexpected_keys)}")
    return ckpt


def create_model(cfg: TrainConfig) -> tuple[nn.Module, dict | None]:
    """The untrained network of a recipe, seeded by ``cfg.seed`` or loaded from
    ``cfg.init_from``, and the checkpoint it was loaded from.

    A float head's weights are far larger than a binary head's scale should start, so the
    head is rescaled unless the source is of the same kind: then the run is a warm start.
    """
    overrides = {k: getattr(cfg, k) for k in ("bits", "channels", "stem_channels", "pad_value",
                                              "end_bits", "rsign") if getattr(cfg, k) is not None}
    overrides.update(arch_overrides(cfg.model, cfg.arch or {}))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, binary=cfg.binary, **overrides)
    source = None if cfg.init_from is None else init_from(model, cfg.init_from)
    warm = source is not None and source.get("config", {}).get("binary") == cfg.binary
    if cfg.head_init is not None and not warm:
        init_head(model, cfg.head_init)
    return model, source
