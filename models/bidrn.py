"""BiDRN: Binarized Dual Residual Blocks, a binarized BoxNet and a whole-body keypoint head,
in hardware-mappable form.

The seed keeps its two residuals real-valued; here they carry k-bit integer streams. A Local
Convolution Residual (LCR) wraps every binary conv, and where a conv changes the shape the
shortcut changes it without binarizing: max-pooling for a stride of 2, repeating the
channels for a wider output, both for both. The Block Residual (BR) adds the block's input,
through the same shortcut, to its output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bnnpose.models.blocks import BinaryConvBN, NetConfig, Stem, conv, stream_quant

#: Pseudo-joints after the whole-body keypoints: the centres of the boxes BoxNet predicts.
BOX_JOINTS = ("face_box", "left_hand_box", "right_hand_box")


@dataclass(frozen=True)
class BiDRNConfig(NetConfig):
    num_joints: int = 133 + len(BOX_JOINTS)
    layout: str = "wholebody-boxes"
    stem_channels: int = 16  #: output of the 8-bit stride-2 stem
    widths: tuple[int, ...] = (32, 64, 128)  #: backbone stages at 1/4, 1/8, 1/16 resolution
    blocks: int = 1  #: same-shape BiDRBs after each stage's first
    box_channels: int = 32  #: width of BoxNet

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))


class Shortcut(nn.Module):
    """The shape change of a LCR/BR path without binarization: MaxPool(2) for stride 2, the
    channels repeated ``cout / cin`` times for a wider output (identity when neither).

    Each repeat goes through its own k-bit requantizer, the identity on a k-bit stream: a
    graph node that reads one tensor twice is lost by ONNX tooling, and FINN forks streams
    between nodes, not within one.
    """

    def __init__(self, cin: int, cout: int, stride: int, bits: int = 2, binary: bool = True):
        super().__init__()
        if cout % cin:
            raise ValueError(f"a shortcut widens by a whole factor, got {cin}->{cout}")
        self.pool = nn.MaxPool2d(2) if stride == 2 else None
        self.copies = nn.ModuleList(stream_quant(binary, bits) for _ in range(cout // cin - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        return torch.cat([x, *(copy(x) for copy in self.copies)], dim=1) if self.copies else x


class BiDRB(nn.Module):
    """Binarized Dual Residual Block: two 3x3 binary convs, each inside a LCR, and a BR.

    The first conv may change the shape in any of the four ways the paper names (same shape,
    channel change, stride change, both); the shortcut follows it.

    Shapes: [N, cin, H, W] -> [N, cout, H/stride, W/stride].
    """

    def __init__(self, cin: int, cout: int, bits: int, binary: bool, pad_value: float,
                 stride: int = 1):
        super().__init__()
        self.shortcut = Shortcut(cin, cout, stride, bits, binary)
        self.conv1 = BinaryConvBN(cin, cout, bits, binary, stride=stride, pad_value=pad_value)
        self.conv2 = BinaryConvBN(cout, cout, bits, binary, pad_value=pad_value)
        self.lcr1 = stream_quant(binary, bits)
        self.lcr2 = stream_quant(binary, bits)
        self.block = stream_quant(binary, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shortcut(x)
        y = self.lcr1(s + self.conv1(x))
        y = self.lcr2(y + self.conv2(y))
        return self.block(y + s)


class Up(nn.Module):
    """Decoder step: 1x1 binary conv to the finer width, nearest x2, plus the encoder's stream."""

    def __init__(self, cin: int, cout: int, bits: int, binary: bool):
        super().__init__()
        self.conv = BinaryConvBN(cin, cout, bits, binary, kernel=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.merge = stream_quant(binary, bits)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.merge(self.up(self.conv(coarse)) + skip)


class BiDRN(nn.Module):
    """BiDRB encoder (1/4 -> 1/16), a decoder back to 1/4, BoxNet, one 1x1 head.

    BoxNet reads the 1/8-resolution body features (a BiDRB and a 1x1 conv) and its stream,
    upsampled to 1/4, joins the keypoint features before the head. The head's last
    ``len(BOX_JOINTS)`` channels are the face and hand box centres; the rest are the
    COCO-WholeBody keypoints (body, feet, face, hands).

    Shapes: [N, 3, S, S] float in 0..255 -> [N, J, S/4, S/4].
    """

    def __init__(self, cfg: BiDRNConfig):
        super().__init__()
        self.cfg = cfg
        w, k, b, p = cfg.widths, cfg.bits, cfg.binary, cfg.pad_value

        def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(BiDRB(cin, cout, k, b, p, stride),
                                 *(BiDRB(cout, cout, k, b, p) for _ in range(cfg.blocks)))

        self.stem = Stem(cfg.stem_channels, k, b, cfg.end_bits)
        self.encoder = nn.ModuleList([stage(cfg.stem_channels, w[0], 2)]
                                     + [stage(w[i], w[i + 1], 2) for i in range(len(w) - 1)])
        self.decoder = nn.ModuleList(Up(w[i + 1], w[i], k, b) for i in reversed(range(len(w) - 1)))
        self.refine = BiDRB(w[0], w[0], k, b, p)
        self.boxnet = nn.Sequential(BiDRB(w[1], w[1], k, b, p),
                                    BinaryConvBN(w[1], cfg.box_channels, k, b, kernel=1),
                                    nn.Upsample(scale_factor=2, mode="nearest"))
        self.heads = nn.ModuleList([conv(b, w[0] + cfg.box_channels, cfg.num_joints, 1,
                                         weight_bits=cfg.end_bits)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        for up, skip in zip(self.decoder, reversed(skips[:-1]), strict=True):
            x = up(x, skip)
        features = torch.cat([self.refine(x), self.boxnet(skips[1])], dim=1)
        return self.heads[0](features)
