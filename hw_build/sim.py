"""Python simulation of a folded FINN dataflow graph: the accelerator without Vivado.

After ``SpecializeLayers`` FINN nodes (``MVAU_hls``, ``Thresholding_rtl``, ...) only execute in
cppsim/rtlsim, which need Vivado/Vitis. Their generic parents (``MVAU``, ``Thresholding``) hold
the same weights, thresholds and datatypes and execute in Python; folding attributes (PE, SIMD)
change the schedule, not the arithmetic. So the simulated accelerator runs the specialized graph
with every node mapped back to its generic op.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

_SPECIAL_DOMAINS = ("finn.custom_op.fpgadataflow.hls", "finn.custom_op.fpgadataflow.rtl")
_GENERIC_DOMAIN = "finn.custom_op.fpgadataflow"


def to_generic(model: ModelWrapper) -> ModelWrapper:
    """A copy of ``model`` whose specialized HW nodes are their generic, Python-executable ops."""
    model = ModelWrapper(model.model.__deepcopy__())
    for node in model.graph.node:
        if node.domain in _SPECIAL_DOMAINS:
            node.domain = _GENERIC_DOMAIN
            node.op_type = node.op_type.rsplit("_", 1)[0]
    return model


def execute_hw_graph(model: ModelWrapper | str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """Run a (folded) HW graph on one batch of normal-shaped input.

    Args:
        model: ModelWrapper or path to the ``.onnx`` of a FINN dataflow graph.
        x: input in the graph's normal shape (e.g. [1, 128, 128, 3] NHWC), integer-valued.
    Returns:
        the output in the graph's normal shape, integer-valued float32.
    """
    from finn.core.onnx_exec import execute_onnx

    from bnnpose.hw_build.verify import use_fast_sanitize

    use_fast_sanitize()
    if not isinstance(model, ModelWrapper):
        model = ModelWrapper(str(Path(model)))
    if any(n.domain in _SPECIAL_DOMAINS for n in model.graph.node):
        model = to_generic(model)
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    return execute_onnx(model, {iname: np.asarray(x, dtype=np.float32)})[oname]
