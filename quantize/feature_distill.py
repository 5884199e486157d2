"""Real-to-binary attention transfer (Martinez et al., ICLR 2020): the binary network's block
outputs are pulled toward the float twin's, through their spatial attention maps.

A block's attention map is the mean over channels of its output squared, normalised to unit
L2 norm per sample, so the binary network's integer streams and the float twin's real ones
compare whatever their scales. Training only: nothing of it reaches the exported network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from bnnpose.host.common import BnnposeError
from bnnpose.models.bidrn import BiDRB
from bnnpose.models.blocks import HPMBlock
from bnnpose.models.hrnet import IRBottleneck, MSBlock

#: the modules whose outputs are compared: each family's residual blocks
FEATURE_BLOCKS = (HPMBlock, MSBlock, IRBottleneck, BiDRB)


class BlockTaps:
    """Forward hooks on every :data:`FEATURE_BLOCKS` module of a network; the outputs of the
    forward passes run inside :meth:`recording` are kept (in order) until :meth:`take`."""

    def __init__(self, model: nn.Module):
        self.names = [n for n, m in model.named_modules() if isinstance(m, FEATURE_BLOCKS)]
        self._outputs: list[torch.Tensor] = []
        self._on = False
        for m in model.modules():
            if isinstance(m, FEATURE_BLOCKS):
                m.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        if self._on:
            self._outputs.append(output)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        self._on = True
        try:
            yield
        finally:
            self._on = False

    def take(self) -> list[torch.Tensor]:
        out, self._outputs = self._outputs, []
        return out


def check_same_blocks(student: BlockTaps, teacher: BlockTaps) -> None:
    """One line when the two networks' blocks do not pair up by name."""
    if not student.names:
        raise BnnposeError("feature distillation: the network has no residual blocks to compare")
    if student.names != teacher.names:
        raise BnnposeError(f"feature distillation: the teacher's blocks ({len(teacher.names)}) "
                           f"do not pair with the network's ({len(student.names)})")


def attention(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, H*W]``: mean over channels of x**2, unit L2 norm per sample."""
    a = x.pow(2).mean(dim=1).flatten(1)
    return a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)


def attention_transfer_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]
                            ) -> torch.Tensor:
    """Mean over blocks and samples of the L2 distance between the attention maps."""
    if len(student) != len(teacher) or not student:
        raise BnnposeError(f"feature distillation: {len(student)} student and {len(teacher)} "
                           "teacher block outputs in one step")
    return sum((attention(s) - attention(t.detach())).norm(dim=1).mean()
               for s, t in zip(student, teacher, strict=True)) / len(student)
