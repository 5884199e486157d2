"""BiHRNet: a binary HRNet (parallel multi-resolution branches with repeated fusion) in
hardware-mappable form.

Every branch and every fusion sum is a k-bit integer stream; convs read ``sign(stream)`` with
-1 padding. Fusion goes down by strided 3x3 binary convs and up by a 1x1 binary conv then
nearest upsampling, as in HRNet; the sum of the resampled streams is requantized to k bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bnnpose.models.blocks import BinaryConvBN, NetConfig, Stem, conv, stream_quant


@dataclass(frozen=True)
class BiHRNetConfig(NetConfig):
    stem_channels: int = 16  #: output of the 8-bit stride-2 stem
    #: branch widths from the 1/4-resolution branch down; one more branch per stage
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: int = 1  #: MS-Blocks per branch in every stage

    def __post_init__(self):
        # Checkpoints and JSON store the widths as a list.
        object.__setattr__(self, "widths", tuple(self.widths))


class IRBottleneck(nn.Module):
    """The information-reconstruction bottleneck that takes the stem to 1/4 resolution.

    Binarizing the first layers loses the most information, so the stem's k-bit stream is
    carried on unbinarized: the stride-2 binary conv only adds ``cout - cin`` new channels to
    the max-pooled stem stream, and a 3x3 and a 1x1 binary conv then refine the result, each
    around a residual.

    Shapes: [N, cin, H, W] -> [N, cout, H/2, W/2].
    """

    def __init__(self, cin: int, cout: int, bits: int, binary: bool, pad_value: float):
        super().__init__()
        if cout <= cin:
            raise ValueError(f"IR bottleneck widens the stem: need cout > cin, got {cin}->{cout}")
        self.pool = nn.MaxPool2d(2)
        self.new = BinaryConvBN(cin, cout - cin, bits, binary, stride=2, pad_value=pad_value)
        self.spatial = BinaryConvBN(cout, cout, bits, binary, pad_value=pad_value)
        self.point = BinaryConvBN(cout, cout, bits, binary, kernel=1)
        self.merge1 = stream_quant(binary, bits)
        self.merge2 = stream_quant(binary, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.pool(x), self.new(x)], dim=1)
        x = self.merge1(x + self.spatial(x))
        return self.merge2(x + self.point(x))


class MSBlock(nn.Module):
    """Multi-scale basic block: a 3x3 and a 1x1 binary conv side by side (two receptive
    fields, concatenated to C channels) around a residual, then a 3x3 binary conv around a
    second residual.

    Shapes: [N, C, H, W] -> [N, C, H, W].
    """

    def __init__(self, channels: int, bits: int, binary: bool, pad_value: float):
        super().__init__()
        if channels % 2:
            raise ValueError(f"MS-Block needs an even width, got {channels}")
        half = channels // 2
        self.wide = BinaryConvBN(channels, half, bits, binary, pad_value=pad_value)
        self.narrow = BinaryConvBN(channels, half, bits, binary, kernel=1)
        self.second = BinaryConvBN(channels, channels, bits, binary, pad_value=pad_value)
        self.merge1 = stream_quant(binary, bits)
        self.merge2 = stream_quant(binary, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.merge1(x + torch.cat([self.wide(x), self.narrow(x)], dim=1))
        return self.merge2(x + self.second(x))


class Fuse(nn.Module):
    """HRNet's exchange unit: output branch i = k-bit(sum over inputs j of resample_ij(x_j))."""

    def __init__(self, cfg: BiHRNetConfig, n_in: int, n_out: int):
        super().__init__()
        w, k, b, p = cfg.widths, cfg.bits, cfg.binary, cfg.pad_value
        self.paths = nn.ModuleList()
        for i in range(n_out):
            row = nn.ModuleList()
            for j in range(n_in):
                if j == i:
                    row.append(nn.Identity())
                elif j < i:  # higher resolution: strided 3x3 convs, width changes at the last
                    row.append(nn.Sequential(*(
                        BinaryConvBN(w[j], w[i] if s == i - j - 1 else w[j], k, b, stride=2,
                                     pad_value=p) for s in range(i - j))))
                else:
                    row.append(nn.Sequential(
                        BinaryConvBN(w[j], w[i], k, b, kernel=1),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
            self.paths.append(row)
        self.merges = nn.ModuleList(stream_quant(b, k) for _ in range(n_out))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for row, merge in zip(self.paths, self.merges, strict=True):
            total = row[0](xs[0])
            for path, x in zip(row[1:], xs[1:], strict=True):
                total = total + path(x)
            out.append(merge(total))
        return out


class Stage(nn.Module):
    """MS-Blocks on every branch, then a fusion to ``n_out`` branches."""

    def __init__(self, cfg: BiHRNetConfig, branches: int, n_out: int):
        super().__init__()
        k, b, p = cfg.bits, cfg.binary, cfg.pad_value
        self.branches = nn.ModuleList(
            nn.Sequential(*(MSBlock(cfg.widths[i], k, b, p) for _ in range(cfg.blocks)))
            for i in range(branches))
        self.fuse = Fuse(cfg, branches, n_out)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.fuse([branch(x) for branch, x in zip(self.branches, xs, strict=True)])


class BiHRNet(nn.Module):
    """Stem -> IR bottleneck (1/4) -> stages of 1, 2, ... branches -> 1x1 head on branch 0.

    Stage s (s = 1..B) runs MS-Blocks on its s branches and fuses them into s + 1 outputs:
    the extra one, at half the lowest resolution, opens the next stage's new branch. The last
    stage fuses everything into the 1/4-resolution branch only, which the head reads.

    Shapes: [N, 3, S, S] float in 0..255 -> [N, J, S/4, S/4].
    """

    def __init__(self, cfg: BiHRNetConfig):
        super().__init__()
        self.cfg = cfg
        w, k, b, p = cfg.widths, cfg.bits, cfg.binary, cfg.pad_value
        n = len(w)
        self.stem = Stem(cfg.stem_channels, k, b, cfg.end_bits)
        self.bottleneck = IRBottleneck(cfg.stem_channels, w[0], k, b, p)
        self.stages = nn.ModuleList(
            Stage(cfg, s, s + 1 if s < n else 1) for s in range(1, n + 1))
        self.heads = nn.ModuleList([conv(b, w[0], cfg.num_joints, 1, weight_bits=cfg.end_bits)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = [self.bottleneck(self.stem(x))]
        for stage in self.stages:
            xs = stage(xs)
        return self.heads[0](xs[0])
