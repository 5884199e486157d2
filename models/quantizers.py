"""Brevitas quantizers of the hardware-mappable binarization.

Three kinds of tensor exist in our networks, and each maps to one FINN datatype:

* binary weights: ``sign(w)`` times a per-output-channel power-of-two scale. The scale is a
  power of two so that sums of scaled ±1 products are exact in float32 (torch and ONNX Runtime
  then agree bit for bit); BatchNorm after every conv makes its value irrelevant to accuracy.
* bipolar activations: ``sign(x)`` with a clipped straight-through estimator, exported as
  ``BipolarQuant``; FINN turns the 1b x 1b dot products into XNOR-popcount.
* k-bit integer streams: signed k-bit integers with a constant scale of 1. Every residual,
  concatenation and upsample path carries these, so Add/Concat join integers of one scale
  and FINN maps them to ``ElementwiseAdd``/``StreamingConcat`` without float arithmetic.
"""

from __future__ import annotations

from brevitas.core.function_wrapper import CeilSte, TensorClampSte
from brevitas.core.restrict_val import RestrictValueType
from brevitas.core.scaling import ScalingImplType
from brevitas.core.stats import StatsOp
from brevitas.inject.enum import ScalingPerOutputType
from brevitas.quant.base import IntQuant, PerTensorConstScaling2bit
from brevitas.quant.binary import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint
from brevitas.quant.solver import ActQuantSolver
from dependencies import value


class BinaryWeightPerChannel(SignedBinaryWeightPerTensorConst):
    """1-bit weights ``sign(w) * 2**ceil(log2(max|w_c|))`` per output channel.

    Examples:
        >>> from brevitas.nn import QuantConv2d
        >>> conv = QuantConv2d(4, 8, 3, bias=False, weight_quant=BinaryWeightPerChannel)
        >>> w = conv.quant_weight().value
        >>> int((w.abs().amax(dim=(1, 2, 3)) == w.abs().amin(dim=(1, 2, 3))).sum())
        8
    """

    scaling_impl_type = ScalingImplType.STATS
    scaling_stats_op = StatsOp.MAX
    scaling_per_output_type = ScalingPerOutputType.CHANNEL
    restrict_scaling_type = RestrictValueType.POWER_OF_TWO
    restrict_value_float_to_int_impl = CeilSte
    # The stock in-place clamp edits the latent weights and breaks autograd on weight views.
    tensor_clamp_impl = TensorClampSte


class IntWeightPerChannel(Int8WeightPerChannelFixedPoint):
    """Signed k-bit weights (narrow range, default k = 8) times a per-output-channel power-of-two
    scale, for the first and last layers (set ``weight_bit_width`` on the layer).

    Power-of-two scales keep sums exact in float32 as long as a dot product's integer sum stays
    below 2**24 (the stem: 27 x 255 x 127 < 2**20).

    Examples:
        >>> from brevitas.nn import QuantConv2d
        >>> conv = QuantConv2d(3, 4, 3, bias=False, weight_quant=IntWeightPerChannel)
        >>> q = conv.quant_weight()
        >>> bool(((q.value / q.scale) == (q.value / q.scale).round()).all()), int(q.bit_width)
        (True, 8)
    """


class BipolarAct(SignedBinaryActPerTensorConst):
    """``sign(x)`` in {-1, +1} (0 maps to +1) with gradient 1 on [-1, 1] and 0 outside.

    Examples:
        >>> import torch
        >>> from brevitas.nn import QuantIdentity
        >>> QuantIdentity(act_quant=BipolarAct)(torch.tensor([-0.3, 0.0, 2.0]))
        tensor([-1.,  1.,  1.])
    """

    scaling_const = 1.0


class IntStreamAct(IntQuant, PerTensorConstScaling2bit, ActQuantSolver):
    """Signed k-bit integers with scale 1: values ``-2**(k-1) .. 2**(k-1)-1``.

    Set ``bit_width`` on the layer (``QuantIdentity(act_quant=IntStreamAct, bit_width=3)``).

    Examples:
        >>> import torch
        >>> from brevitas.nn import QuantIdentity
        >>> QuantIdentity(act_quant=IntStreamAct, bit_width=2)(torch.tensor([-7.0, -0.6, 0.4, 9.0]))
        tensor([-2., -1.,  0.,  1.])
    """

    @value
    def scaling_init(bit_width):
        # Brevitas divides the constant by the integer range 2**(k-1); undo it for a scale of 1.
        return 2.0 ** (bit_width - 1)
