"""The threshold datatype of a Thresholding layer whose thresholds are exactly -1 and 0.

FINN's ``Thresholding.minimize_weight_bit_width`` takes the smallest type holding the most
negative threshold when that one outweighs the largest; for thresholds {-1, 0} that is
BIPOLAR, which cannot hold 0, and the build stops with "Thresholds can't be expressed with
type BIPOLAR". Such layers are common once sign() has a learnable per-channel threshold
(RSign, ``NetConfig.rsign``): on a k-bit stream it settles on x >= 0 in some channels and
x >= -1 in others. :func:`threshold_types` gives them INT2, the smallest type holding both;
every other layer gets FINN's own choice, and the HLS and RTL variants' widening on top.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from finn.custom_op.fpgadataflow.thresholding import Thresholding
from qonnx.core.datatype import DataType


def _minimize(original):
    def minimize_weight_bit_width(self, model, datatype_only=False):
        thresholds = model.get_initializer(self.onnx_node.input[1])
        if (not datatype_only and thresholds is not None
                and self.get_input_datatype(0).is_integer()
                and self.get_input_datatype(1).is_integer()
                and thresholds.min() == -1 and thresholds.max() == 0):
            self.set_nodeattr("weightDataType", "INT2")
            model.set_tensor_datatype(self.onnx_node.input[1], DataType["INT2"])
            return DataType["INT2"]
        return original(self, model, datatype_only=datatype_only)

    return minimize_weight_bit_width


@contextlib.contextmanager
def threshold_types() -> Iterator[None]:
    """Within the context, Thresholding layers with thresholds {-1, 0} get INT2."""
    saved = Thresholding.minimize_weight_bit_width
    Thresholding.minimize_weight_bit_width = _minimize(saved)
    try:
        yield
    finally:
        Thresholding.minimize_weight_bit_width = saved
