"""Binary building blocks whose every tensor maps to a FINN integer stream.

Each block exists in two twins selected by ``binary``: the binarized network (Brevitas
quantizers, what goes to hardware) and its float twin (same topology, real-valued, used as
the distillation teacher and to measure what binarization costs).

Stream convention: blocks take and return k-bit integer streams (``IntStreamAct``). A binary
conv never sees the stream itself, only ``sign(stream)``, padded with -1 (a 0 bit in XNOR form)
so that the padded border is a legal bipolar value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from brevitas.nn import QuantConv2d, QuantIdentity
from torch import nn

from bnnpose.models.quantizers import (BinaryWeightPerChannel, BipolarAct, IntStreamAct,
                                         IntWeightPerChannel)


def stream_quant(binary: bool, bits: int) -> nn.Module:
    """Requantizer of a k-bit integer stream (identity in the float twin).

    ``bits=0`` keeps the stream real-valued, as the seed papers' residual paths are; such a
    network trains and evaluates but does not map to FINN.
    """
    if binary and bits > 0:
        return QuantIdentity(act_quant=IntStreamAct, bit_width=bits, return_quant_tensor=False)
    return nn.Identity()


#: Largest integer sum, in grid steps, a stream threshold may name: every conv's sum stays
#: below it (the stem's: 27 x 255 x 127 < 2**20), and steps times a power-of-two weight scale
#: stay exact in float32.
THRESHOLD_LIMIT = 2**23


def stream_thresholds(bn: nn.BatchNorm2d, bits: int, step: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm -> round -> clamp to a signed k-bit stream, as thresholds on its input's grid.

    A stream's BatchNorm reads a conv output: integer sums times the conv's per-channel
    power-of-two weight scale ``step``. In float32 BatchNorm can land a grid value within
    rounding error of a level boundary ``z = L + 1/2``, which PyTorch, ONNX Runtime and FINN's
    thresholds then round three ways (the dense sums of 8-bit stems meet such ties). Here each
    boundary is solved in float64 and moved up to the next grid value, so a level is
    ``#{j : sign * y >= T_j} - 2**(k-1)``: integer comparisons, the same in every stage, ties
    rounding up as FINN's thresholds do.

    Returns ``sign`` [C] (+-1, the sign of BatchNorm's slope, folded into the comparison) and
    ``thresholds`` [C, 2**k - 1], ascending per channel; both float32.

    Examples:
        >>> bn = nn.BatchNorm2d(2, eps=0.0).eval()
        >>> _ = bn.weight.data.copy_(torch.tensor([0.5, -1.0]))
        >>> sign, t = stream_thresholds(bn, 2, torch.tensor([1.0, 0.25]))
        >>> sign.tolist(), t.tolist()
        ([1.0, -1.0], [[-3.0, -1.0, 1.0], [-1.5, -0.5, 0.5]])
    """
    a = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    c = bn.bias.detach().double() - bn.running_mean.double() * a
    levels = torch.arange(-2 ** (bits - 1), 2 ** (bits - 1) - 1, dtype=torch.float64,
                          device=a.device) + 0.5
    # |a| (sign y) + c >= L + 1/2  <=>  sign y >= (L + 1/2 - c) / |a|; a = 0 is a constant level
    need = levels[None, :] - c[:, None]
    mag = a.abs()[:, None]
    flat = torch.where(need <= 0, -torch.inf, torch.inf)
    t = torch.where(mag > 0, need / torch.where(mag > 0, mag, 1.0), flat)
    s = step.detach().double().reshape(-1, 1)
    n = torch.ceil(t / s).clamp(-THRESHOLD_LIMIT, THRESHOLD_LIMIT)
    sign = torch.where(a < 0, -1.0, 1.0)
    return sign.float(), (n * s).float()


class StreamRequant(nn.Module):
    """Base of a module whose conv output goes through ``self.bn`` to a k-bit stream.

    Training and the float twin run BatchNorm and the quantizer. A binary network in eval mode
    computes the same levels with :func:`stream_thresholds`, exactly, and exports them as one
    qonnx ``MultiThreshold`` (behind a Mul by the slope signs when one is negative), the node
    FINN would have made of BatchNorm and the quantizer, so torch, QONNX, FINN and the host
    agree bit for bit whatever the BatchNorm parameters.
    """

    def _init_requant(self, cout: int, bits: int, binary: bool) -> None:
        self.bn = nn.BatchNorm2d(cout)
        self.quant = stream_quant(binary, bits)
        self.bits = bits
        #: thresholds of the last eager eval forward; the ONNX export, which traces with
        #: placeholder parameters, writes these (export runs the network eagerly first)
        self._thresholds: tuple[torch.Tensor | None, torch.Tensor] | None = None

    def requantize(self, y: torch.Tensor, conv: nn.Module) -> torch.Tensor:
        """``quant(bn(y))`` for ``y`` the output of ``conv`` (a QuantConv2d in a binary net)."""
        # With the weights' quantizer off (the real-weight first stage of two-stage training)
        # ``y`` lies on no grid and the network maps to no hardware: BatchNorm as trained.
        if (self.training or not isinstance(self.quant, QuantIdentity)
                or conv.weight_quant.disable_quant):
            return self.quant(self.bn(y))
        exporting = torch.onnx.is_in_onnx_export()
        if not exporting:
            sign, thresholds = stream_thresholds(self.bn, self.bits, conv.quant_weight().scale)
            # The Mul is left out where every sign is +1; decided here, not while tracing.
            self._thresholds = (sign.view(1, -1, 1, 1) if bool((sign < 0).any()) else None,
                                thresholds)
        elif self._thresholds is None:
            raise RuntimeError("run the network once in eval mode before exporting it")
        sign, thresholds = self._thresholds
        if sign is not None:
            y = y * sign
        low = -2.0 ** (self.bits - 1)
        if exporting:
            return torch.onnx.ops.symbolic(
                "qonnx.custom_op.general::MultiThreshold", (y, thresholds),
                {"out_dtype": f"INT{self.bits}", "out_bias": low, "data_layout": "NCHW"},
                dtype=y.dtype, shape=y.shape, version=2)
        out = torch.full_like(y, low)
        for t in thresholds.T:
            out += (y >= t.view(1, -1, 1, 1)).to(y.dtype)
        return out


#: backward passes of sign(): "ste" (gradient 1 on [-1, 1], the quantizer's own) or "approx"
#: (Bi-Real Net's piecewise-quadratic ApproxSign, gradient 2 - 2|x| on [-1, 1])
SIGN_GRADIENTS = ("ste", "approx")


class SignAct(QuantIdentity):
    """sign() of :class:`BipolarAct` whose backward pass ``grad`` selects (SIGN_GRADIENTS).

    The forward value, the state dict and the export are the quantizer's own: "approx" adds
    ``h(x) - h(x).detach()`` with ``h = ApproxSign - hardtanh`` in training only, which is 0
    in value and turns the clipped STE's gradient into ApproxSign's.
    """

    grad = "ste"

    def __init__(self):
        super().__init__(act_quant=BipolarAct, return_quant_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.training and self.grad == "approx":
            xc = x.clamp(-1.0, 1.0)
            h = (2 * xc - xc * xc.abs()) - xc  # ApproxSign minus the clipped identity
            out = out + (h - h.detach())
        return out


def set_sign_gradient(model: nn.Module, grad: str) -> None:
    """Give every sign() of ``model`` the backward pass ``grad`` (one of SIGN_GRADIENTS)."""
    if grad not in SIGN_GRADIENTS:
        raise ValueError(f"unknown sign gradient {grad!r}; known: {', '.join(SIGN_GRADIENTS)}")
    for m in model.modules():
        if isinstance(m, SignAct):
            m.grad = grad


def binary_weight_convs(model: nn.Module) -> list[nn.Module]:
    """The convs of ``model`` whose weights are 1-bit (their ``weight`` is a latent real)."""
    return [m for m in model.modules() if isinstance(m, QuantConv2d)
            and int(m.weight_quant.bit_width()) == 1]


def sign_act(binary: bool) -> nn.Module:
    """sign() with a clipped STE; the float twin uses hardtanh, the function sign() replaces."""
    return SignAct() if binary else nn.Hardtanh()


def conv(binary: bool, cin: int, cout: int, k: int, stride: int = 1,
         weight_bits: int = 1) -> nn.Module:
    """Unpadded conv: 1-bit weights with a per-channel scale (``weight_bits`` > 1: integers with
    a power-of-two per-channel scale, for first and last layers), or float weights in the twin."""
    if binary and weight_bits == 1:
        return QuantConv2d(cin, cout, k, stride=stride, padding=0, bias=False,
                           weight_quant=BinaryWeightPerChannel)
    if binary:
        return QuantConv2d(cin, cout, k, stride=stride, padding=0, bias=False,
                           weight_quant=IntWeightPerChannel, weight_bit_width=weight_bits)
    return nn.Conv2d(cin, cout, k, stride=stride, padding=0, bias=False)


@dataclass(frozen=True)
class NetConfig:
    """What every family's config holds; each family adds its own architecture fields."""

    input_size: int = 128  #: square RGB input side, pixels
    num_joints: int = 16  #: heatmap channels
    layout: str = "mpii"  #: joint names of the heatmap channels (see registry.model_joints)
    bits: int = 2  #: k of the integer streams at every merge point; 0 keeps them real-valued
    pad_value: float = -1.0  #: border value of every binary conv's sign() input (-1 or 0)
    end_bits: int = 1  #: weight bits of the stem and head convs (first and last layers)
    #: a learnable per-channel threshold before every binary conv's sign() (ReActNet's RSign);
    #: FINN absorbs it into the thresholds that compute sign()
    rsign: bool = False
    binary: bool = True  #: False builds the float twin

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 4

    def to_dict(self) -> dict:
        return asdict(self)


class Stem(StreamRequant):
    """The one multi-bit input: 3x3 stride-2 conv on the 0..255 RGB grid -> BN -> k-bit stream.

    Zero padding is right here: 0 is a legal UINT8 pixel, unlike for bipolar tensors.
    Shapes: [N, 3, S, S] -> [N, cout, S/2, S/2].
    """

    def __init__(self, cout: int, bits: int, binary: bool = True, weight_bits: int = 1):
        super().__init__()
        self.conv = conv(binary, 3, cout, 3, stride=2, weight_bits=weight_bits)
        self._init_requant(cout, bits, binary)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.requantize(self.conv(F.pad(x, (1, 1, 1, 1), value=0.0)), self.conv)


class BinaryConvBN(StreamRequant):
    """sign(stream) -> pad(-1) -> kxk binary conv -> BN -> k-bit stream.

    With ``reads_stream`` the conv reads the k-bit stream itself, zero-padded (0 is a legal
    stream value): k-bit x 1-bit products instead of XNOR, for a layer where the signs alone
    pinch the information (the first conv after the stem).

    Args:
        cin, cout: channels. bits: output stream width k. stride: 1 or 2. kernel: 3 or 1.
    Shapes: [N, cin, H, W] stream -> [N, cout, H/stride, W/stride] stream.
    """

    def __init__(self, cin: int, cout: int, bits: int, binary: bool = True, stride: int = 1,
                 pad_value: float = -1.0, kernel: int = 3, reads_stream: bool = False):
        super().__init__()
        self.sign = nn.Identity() if reads_stream else sign_act(binary)
        self.conv = conv(binary, cin, cout, kernel, stride)
        self._init_requant(cout, bits, binary)
        self.reads_stream = reads_stream
        self.pad_value = 0.0 if reads_stream else pad_value
        self.pad = kernel // 2
        self.cin = cin
        self.register_parameter("shift", None)

    def enable_rsign(self) -> None:
        """Add RSign's learnable per-channel threshold: sign(x - shift), shift starting at 0."""
        self.shift = nn.Parameter(torch.zeros(1, self.cin, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift is not None:
            x = x - self.shift
        x = self.sign(x)
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, value=self.pad_value)
        return self.requantize(self.conv(x), self.conv)


def enable_rsign(model: nn.Module) -> nn.Module:
    """Give every binary conv of ``model`` that takes a sign() RSign's threshold
    (``NetConfig.rsign``); returns it. A conv that reads the stream keeps its integers."""
    for m in model.modules():
        if isinstance(m, BinaryConvBN) and not m.reads_stream:
            m.enable_rsign()
    return model


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
