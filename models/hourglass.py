"""Binarized stacked hourglass of HPM blocks (Bulat & Tzimiropoulos) in hardware-mappable form."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from bnnpose.models.blocks import BinaryConvBN, HPMBlock, conv, stream_quant


@dataclass(frozen=True)
class HourglassConfig:
    input_size: int = 128  #: square RGB input side, pixels
    stem_channels: int = 16  #: output of the 8-bit x 1-bit stride-2 stem conv
    channels: int = 32  #: width of every HPM block
    depth: int = 2  #: hourglass recursion depth (number of pooling levels)
    bits: int = 2  #: k of the integer streams at every merge point; 0 keeps them real-valued
    pad_value: float = -1.0  #: border value of every binary conv's sign() input (-1 or 0)
    num_joints: int = 16  #: heatmap channels
    binary: bool = True  #: False builds the float twin

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 4

    def to_dict(self) -> dict:
        return asdict(self)


class Hourglass(nn.Module):
    """One hourglass level: ``HPM(x) + up(recurse(HPM(pool(x))))``."""

    def __init__(self, cfg: HourglassConfig, depth: int):
        super().__init__()
        c, k, b = cfg.channels, cfg.bits, cfg.binary
        p = cfg.pad_value
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


class BinaryHourglassNet(nn.Module):
    """Single-stack binary hourglass: RGB uint8 values -> heatmaps at 1/4 resolution.

    The input is the raw 0..255 pixel grid (the accelerator's UINT8 input); the stem is the
    only layer with a multi-bit input. The head is a 1x1 conv with binary weights on the
    k-bit stream; its per-channel scale is left to the host, which only needs the argmax.

    Shapes: [N, 3, S, S] float in 0..255 -> [N, J, S/4, S/4].
    """

    def __init__(self, cfg: HourglassConfig):
        super().__init__()
        self.cfg = cfg
        b, k = cfg.binary, cfg.bits
        self.stem_conv = conv(b, 3, cfg.stem_channels, 3, stride=2)
        self.stem_bn = nn.BatchNorm2d(cfg.stem_channels)
        self.stem_quant = stream_quant(b, k)
        self.down = BinaryConvBN(cfg.stem_channels, cfg.channels, k, b, stride=2,
                                 pad_value=cfg.pad_value)
        self.hourglass = Hourglass(cfg, cfg.depth)
        self.post = HPMBlock(cfg.channels, k, b, cfg.pad_value)
        self.head = conv(b, cfg.channels, cfg.num_joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Zero padding of the UINT8 image is a legal input value, unlike for bipolar tensors.
        x = nn.functional.pad(x, (1, 1, 1, 1), value=0.0)
        x = self.stem_quant(self.stem_bn(self.stem_conv(x)))
        x = self.post(self.hourglass(self.down(x)))
        return self.head(x)
