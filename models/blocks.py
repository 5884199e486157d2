"""Binary building blocks whose every tensor maps to a FINN integer stream.

Each block exists in two twins selected by ``binary``: the binarized network (Brevitas
quantizers, what goes to hardware) and its float twin (same topology, real-valued, used as
the distillation teacher and to measure what binarization costs).

Stream convention: blocks take and return k-bit integer streams (``IntStreamAct``). A binary
conv never sees the stream itself, only ``sign(stream)``, padded with -1 (a 0 bit in XNOR form)
so that the padded border is a legal bipolar value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from brevitas.nn import QuantConv2d, QuantIdentity
from torch import nn

from bnnpose.quantize.quantizers import BinaryWeightPerChannel, BipolarAct, IntStreamAct


def stream_quant(binary: bool, bits: int) -> nn.Module:
    """Requantizer of a k-bit integer stream (identity in the float twin).

    ``bits=0`` keeps the stream real-valued, as the seed papers' residual paths are; such a
    network trains and evaluates but does not map to FINN.
    """
    if binary and bits > 0:
        return QuantIdentity(act_quant=IntStreamAct, bit_width=bits, return_quant_tensor=False)
    return nn.Identity()


def sign_act(binary: bool) -> nn.Module:
    """sign() with a clipped STE; the float twin uses hardtanh, the function sign() replaces."""
    if binary:
        return QuantIdentity(act_quant=BipolarAct, return_quant_tensor=False)
    return nn.Hardtanh()


def conv(binary: bool, cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
    """Unpadded conv: 1-bit weights with a per-channel scale, or float weights in the twin."""
    if binary:
        return QuantConv2d(cin, cout, k, stride=stride, padding=0, bias=False,
                           weight_quant=BinaryWeightPerChannel)
    return nn.Conv2d(cin, cout, k, stride=stride, padding=0, bias=False)


class BinaryConvBN(nn.Module):
    """sign(stream) -> pad(-1) -> 3x3 binary conv -> BN -> k-bit stream.

    Args:
        cin, cout: channels. stride: 1 or 2. bits: output stream width k.
    Shapes: [N, cin, H, W] stream -> [N, cout, H/stride, W/stride] stream.
    """

    def __init__(self, cin: int, cout: int, bits: int, binary: bool = True, stride: int = 1,
                 pad_value: float = -1.0):
        super().__init__()
        self.sign = sign_act(binary)
        self.conv = conv(binary, cin, cout, 3, stride)
        self.bn = nn.BatchNorm2d(cout)
        self.quant = stream_quant(binary, bits)
        self.pad_value = pad_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(self.sign(x), (1, 1, 1, 1), value=self.pad_value)
        return self.quant(self.bn(self.conv(x)))


class HPMBlock(nn.Module):
    """Hierarchical, parallel and multi-scale block (Bulat & Tzimiropoulos, ICCV'17).

    Three cascaded 3x3 binary convs with widths C/2, C/4, C/4, their outputs concatenated back
    to C channels and added to the identity; no 1x1 convs. The sum of two k-bit streams is
    requantized to k bits so the block's output is again a k-bit stream.

    Shapes: [N, C, H, W] -> [N, C, H, W].
    """

    def __init__(self, channels: int, bits: int, binary: bool = True, pad_value: float = -1.0):
        super().__init__()
        c2, c4 = channels // 2, channels // 4
        if c2 + 2 * c4 != channels:
            raise ValueError(f"HPM block needs channels divisible by 4, got {channels}")
        self.b1 = BinaryConvBN(channels, c2, bits, binary, pad_value=pad_value)
        self.b2 = BinaryConvBN(c2, c4, bits, binary, pad_value=pad_value)
        self.b3 = BinaryConvBN(c4, c4, bits, binary, pad_value=pad_value)
        self.out = stream_quant(binary, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.b1(x)
        y2 = self.b2(y1)
        y3 = self.b3(y2)
        return self.out(x + torch.cat([y1, y2, y3], dim=1))
