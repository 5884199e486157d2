"""Brevitas networks written the way users write them, for the foreign-model corpus.

None of them uses bnnpose's blocks: stock Brevitas layers and quantizers, the ``bnn_pynq``
examples shipped in the Brevitas wheel, input normalisation in the forward pass, and the
usual topologies (forks into Add and Concat, MaxPool, nearest Upsample, padded 1x1 and 3x3
convs). Every model takes NCHW images of integer pixels 0..255.
"""

from __future__ import annotations

from contextlib import contextmanager
from unittest import mock

import torch
import torch.nn.functional as F
from brevitas.nn import QuantConv2d, QuantIdentity, QuantReLU
from brevitas.quant import (Int8ActPerTensorFixedPoint, SignedBinaryActPerTensorConst,
                            SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFixedPoint)
from torch import nn


class UnitBinaryWeight(SignedBinaryWeightPerTensorConst):
    # Any power-of-two scale keeps torch's and ONNX's float sums identical.
    scaling_const = 1.0


#: Brevitas's fixed-point activation quantizers have power-of-two scales, as FINN users pick:
#: the stock QuantReLU's 1/3 would leave float outputs that no two executors round alike.
UintFixed = Uint8ActPerTensorFixedPoint


def random_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Valid, non-trivial BatchNorm statistics (and affine), so thresholds differ per channel."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if type(m).__name__ == "TensorNorm":
            # bnn_pynq's scalar BatchNorm on the float logits: integer mean and bias and
            # power-of-two scales keep them exact floats in every executor (var + eps is
            # exactly 4 in float32, its square root 2).
            m.running_mean.fill_(float(torch.randint(-3, 4, (1,), generator=g)))
            m.running_var.fill_(4.0 - m.eps)
            m.weight.data.fill_(0.5)
            m.bias.data.fill_(float(torch.randint(-2, 3, (1,), generator=g)))
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 6 - 3)
            m.running_var.copy_(torch.rand(n, generator=g) * 3.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return net.eval()


# ---- bnn_pynq examples (brevitas_examples) ----------------------------------------------

class Pixels01(nn.Module):
    """The bnn_pynq models expect ToTensor's [0, 1] input; the accelerator gets raw pixels."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x / 255.0)


@contextmanager
def _cnv_widths(conv: list, fc: list, last_in: int):
    from brevitas_examples.bnn_pynq.models import CNV

    with mock.patch.multiple(CNV, CNV_OUT_CH_POOL=conv, INTERMEDIATE_FC_FEATURES=fc,
                             LAST_FC_IN_FEATURES=last_in):
        yield


def bnn_pynq(name: str, seed: int = 0, reduced: bool = False) -> nn.Module:
    """``cnv_1w1a``, ``lfc_1w1a``, ``tfc_1w1a`` (or another bnn_pynq config) from its own
    config file and constructor, random weights and BatchNorm statistics.

    ``reduced``: the same constructor with narrower layers (CNV: 16..64 channels and 64-wide
    classifier layers; FC: 128-wide hidden layers).
    """
    from brevitas_examples.bnn_pynq.models import get_model_cfg, model_impl

    torch.manual_seed(seed)
    cfg = get_model_cfg(name)
    arch = cfg.get("MODEL", "ARCH")
    if reduced and arch == "CNV":
        with _cnv_widths([(16, False), (16, True), (32, False), (32, True), (64, False),
                          (64, False)], [(64, 64), (64, 64)], 64):
            net = model_impl[arch](cfg)
    else:
        if reduced:
            cfg.set("MODEL", "OUT_FEATURES", "[128, 128, 128]")
        net = model_impl[arch](cfg)
    random_bn(net, seed)
    return Pixels01(net).eval()


# ---- the model of issue 15 -----------------------------------------------------------------

class IssueNet(nn.Module):
    """Input ``x*2/255-1`` into an 8-bit signed QuantIdentity, a bipolar stem into MaxPool,
    unsigned 2-bit streams that fork into a residual Add and a skip Concat, a nearest Upsample."""

    def __init__(self, c: int = 16):
        super().__init__()
        w = UnitBinaryWeight
        self.inp = QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=8)
        self.stem = QuantConv2d(3, c, 3, padding=1, bias=False, weight_quant=w)
        self.stem_bn = nn.BatchNorm2d(c)
        self.stem_act = QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
        self.pool = nn.MaxPool2d(2)
        self.conv1 = QuantConv2d(c, c, 3, bias=False, weight_quant=w)
        self.bn1 = nn.BatchNorm2d(c)
        self.act1 = QuantReLU(act_quant=UintFixed, bit_width=2)
        self.conv2 = QuantConv2d(c, c, 3, padding=1, bias=False, weight_quant=w)
        self.bn2 = nn.BatchNorm2d(c)
        self.act2 = QuantReLU(act_quant=UintFixed, bit_width=2)
        self.down = nn.MaxPool2d(2)
        self.conv3 = QuantConv2d(c, c, 1, bias=False, weight_quant=w)
        self.bn3 = nn.BatchNorm2d(c)
        self.act3 = QuantReLU(act_quant=UintFixed, bit_width=2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = QuantConv2d(2 * c, 8, 1, bias=False, weight_quant=w)

    def forward(self, x):
        x = self.inp(x * 2 / 255 - 1)
        x = self.pool(self.stem_act(self.stem_bn(self.stem(x))))
        a = self.act1(self.bn1(self.conv1(F.pad(x, (1, 1, 1, 1), value=-1.0))))
        # a forks: into a zero-padded conv (0 is an unsigned 2-bit value) and the residual Add
        b = self.act2(self.bn2(self.conv2(a)))
        r = self.act2(a + b)
        d = self.act3(self.bn3(self.conv3(self.down(r))))
        return self.head(torch.cat([r, self.up(d)], dim=1))


# ---- input normalisation, k-bit activations, padding ---------------------------------------

def _signed(bits: int) -> QuantIdentity:
    return QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits)


def _unsigned(bits: int) -> QuantReLU:
    return QuantReLU(act_quant=UintFixed, bit_width=bits)


def _bipolar() -> QuantIdentity:
    return QuantIdentity(act_quant=SignedBinaryActPerTensorConst)


def _conv(cin: int, cout: int, k: int, padding: int = 0) -> QuantConv2d:
    return QuantConv2d(cin, cout, k, padding=padding, bias=False, weight_quant=UnitBinaryWeight)


class NormalisedNet(nn.Module):
    """ImageNet-style per-channel ``(x/255 - mean) / std`` (Div, Sub, Div) into an 8-bit signed
    QuantIdentity, a zero-padded 3x3 conv on it, then a 1x1 conv and a 3-bit signed output."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.inp = _signed(8)
        self.conv1, self.bn1, self.act1 = _conv(3, c, 3, padding=1), nn.BatchNorm2d(c), _bipolar()
        self.conv2, self.bn2, self.act2 = _conv(c, c, 1), nn.BatchNorm2d(c), _signed(3)

    def forward(self, x):
        x = self.inp((x / 255 - self.mean) / self.std)
        x = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(x)))


class KBitNet(nn.Module):
    """Signed and unsigned k-bit activations between binary-weight convs, 1x1 and 3x3, padded
    with zeros where the stream is k-bit (0 is a value) and with -1 where it is bipolar."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.inp = _signed(8)
        self.stem, self.bn0, self.act0 = _conv(3, c, 3, padding=1), nn.BatchNorm2d(c), _signed(3)
        self.conv1, self.bn1, self.act1 = _conv(c, c, 3, padding=1), nn.BatchNorm2d(c), _unsigned(4)
        self.conv2, self.bn2, self.act2 = _conv(c, c, 1), nn.BatchNorm2d(c), _bipolar()
        self.conv3, self.bn3, self.act3 = _conv(c, c, 3), nn.BatchNorm2d(c), _unsigned(2)
        self.pool = nn.MaxPool2d(2)
        self.conv4, self.bn4, self.act4 = _conv(c, c, 3, padding=1), nn.BatchNorm2d(c), _signed(4)

    def forward(self, x):
        x = self.act0(self.bn0(self.stem(self.inp(x * 2 / 255 - 1))))
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.act3(self.bn3(self.conv3(F.pad(x, (1, 1, 1, 1), value=-1.0))))
        return self.act4(self.bn4(self.conv4(self.pool(x))))


class ResidualSkipNet(nn.Module):
    """Signed 2-bit streams forking into a residual Add (over a -1-padded 3x3 binary conv on
    their sign) and a skip Concat around a MaxPool / 1x1 conv / ``F.interpolate`` nearest
    branch; a binary 1x1 head on the concatenation's sign."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.inp = _signed(8)
        self.stem, self.bn0, self.act0 = _conv(3, c, 3, padding=1), nn.BatchNorm2d(c), _signed(2)
        self.sign1 = _bipolar()
        self.conv1, self.bn1 = _conv(c, c, 3), nn.BatchNorm2d(c)
        self.res = _signed(2)
        self.conv2, self.bn2, self.act2 = _conv(c, c, 1), nn.BatchNorm2d(c), _signed(2)
        self.sign3 = _bipolar()
        self.head = _conv(2 * c, 8, 1)

    def forward(self, x):
        x = self.act0(self.bn0(self.stem(self.inp(x * 2 / 255 - 1))))
        y = self.bn1(self.conv1(F.pad(self.sign1(x), (1, 1, 1, 1), value=-1.0)))
        x = self.res(x + self.res(y))
        d = self.act2(self.bn2(self.conv2(F.max_pool2d(x, 2))))
        u = F.interpolate(d, scale_factor=2, mode="nearest")
        return self.head(self.sign3(torch.cat([x, u], dim=1)))


class ZeroPaddedBipolarNet(nn.Module):
    """A bipolar stream padded with zeros: 0 is not a 1-bit value, so no XNOR layer computes
    it and the build must refuse it."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.stem, self.bn0, self.act0 = _conv(3, c, 3), nn.BatchNorm2d(c), _bipolar()
        self.conv1, self.bn1, self.act1 = _conv(c, c, 3, padding=1), nn.BatchNorm2d(c), _bipolar()

    def forward(self, x):
        return self.act1(self.bn1(self.conv1(self.act0(self.bn0(self.stem(x))))))
