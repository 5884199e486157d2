"""Binarized stacked hourglass of HPM blocks (Bulat & Tzimiropoulos) in hardware-mappable form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bnnpose.models.blocks import (BinaryConvBN, HPMBlock, NetConfig, Stem, StreamRequant, conv,
                                   stream_quant)


@dataclass(frozen=True)
class HourglassConfig(NetConfig):
    stem_channels: int = 16  #: output of the 8-bit x 1-bit stride-2 stem conv
    channels: int = 32  #: width of every HPM block
    depth: int = 2  #: hourglass recursion depth (number of pooling levels)
    stacks: int = 1  #: hourglasses in sequence, each supervised in training
    #: the stride-2 conv after the stem reads the stem's k-bit stream, not only its signs
    down_reads_stream: bool = False


class Hourglass(nn.Module):
    """One hourglass level: ``HPM(x) + up(recurse(HPM(pool(x))))``."""

    def __init__(self, cfg: HourglassConfig, depth: int):
        super().__init__()
        c, k, b, p = cfg.channels, cfg.bits, cfg.binary, cfg.pad_value
        self.skip = HPMBlock(c, k, b, p)
        self.pool = nn.MaxPool2d(2)
        self.down = HPMBlock(c, k, b, p)
        self.inner = Hourglass(cfg, depth - 1) if depth > 1 else HPMBlock(c, k, b, p)
        self.up_block = HPMBlock(c, k, b, p)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.merge = stream_quant(b, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up_block(self.inner(self.down(self.pool(x))))
        return self.merge(self.skip(x) + self.upsample(low))


class Remap(StreamRequant):
    """Feeds a stack's heatmaps back into the stream of the next stack, as stacked hourglasses
    do, with integer tensors only: heatmaps -> BN -> k-bit stream -> 1x1 binary conv."""

    def __init__(self, cfg: HourglassConfig):
        super().__init__()
        self._init_requant(cfg.num_joints, cfg.bits, cfg.binary)
        self.conv = BinaryConvBN(cfg.num_joints, cfg.channels, cfg.bits, cfg.binary, kernel=1)

    def forward(self, heat: torch.Tensor, head: nn.Module) -> torch.Tensor:
        """``heat`` is the output of the conv ``head``."""
        return self.conv(self.requantize(heat, head))


class BinaryHourglassNet(nn.Module):
    """Stacked binary hourglass: RGB uint8 values -> heatmaps at 1/4 resolution.

    The input is the raw 0..255 pixel grid (the accelerator's UINT8 input); the stem reads it,
    the heads and (with ``down_reads_stream``) ``down`` read a k-bit stream, and every other
    conv reads signs. Each head is a 1x1 conv with ``end_bits`` weights on the k-bit stream;
    the last head's per-channel scale is left to the host, which only needs the argmax.
    Between stacks, ``x + remap(features) + remap(heatmaps)`` starts the next one.

    In training mode a multi-stack network returns every stack's heatmaps (intermediate
    supervision); otherwise, and always on hardware, only the last stack's.

    Shapes: [N, 3, S, S] float in 0..255 -> [N, J, S/4, S/4].
    """

    def __init__(self, cfg: HourglassConfig):
        super().__init__()
        self.cfg = cfg
        b, k, p, c = cfg.binary, cfg.bits, cfg.pad_value, cfg.channels
        self.stem = Stem(cfg.stem_channels, k, b, cfg.end_bits)
        self.down = BinaryConvBN(cfg.stem_channels, c, k, b, stride=2, pad_value=p,
                                 reads_stream=cfg.down_reads_stream)
        self.hourglasses = nn.ModuleList(Hourglass(cfg, cfg.depth) for _ in range(cfg.stacks))
        self.posts = nn.ModuleList(HPMBlock(c, k, b, p) for _ in range(cfg.stacks))
        self.heads = nn.ModuleList(conv(b, c, cfg.num_joints, 1, weight_bits=cfg.end_bits)
                                   for _ in range(cfg.stacks))
        between = cfg.stacks - 1
        self.feature_remaps = nn.ModuleList(
            BinaryConvBN(c, c, k, b, kernel=1) for _ in range(between))
        self.heatmap_remaps = nn.ModuleList(Remap(cfg) for _ in range(between))
        self.merges = nn.ModuleList(stream_quant(b, k) for _ in range(between))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x = self.down(self.stem(x))
        outs = []
        for i, (hourglass, post, head) in enumerate(zip(self.hourglasses, self.posts,
                                                        self.heads, strict=True)):
            features = post(hourglass(x))
            outs.append(head(features))
            if i < len(self.merges):
                x = self.merges[i](x + self.feature_remaps[i](features)
                                   + self.heatmap_remaps[i](outs[-1], head))
        return outs if self.training and len(outs) > 1 else outs[-1]
