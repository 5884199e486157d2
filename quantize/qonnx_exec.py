"""Execution of QONNX and FINN graphs by qonnx's executor, with integer sanitizing at numpy speed.

Used by the export (QONNX against torch), the build's golden checks and the simulated
accelerator. FINN's own ``execute_onnx`` hands a graph without an ``exec_mode`` (RTL
simulation) to this very executor, and FINN's custom ops register with qonnx, so streamlined and
HW-layer graphs run here too.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper


def _sanitize_quant_values(model: ModelWrapper, names: list[str], context: dict,
                           check_values: bool = False) -> dict:
    """qonnx's ``sanitize_quant_values`` (round integer-annotated tensors that float arithmetic
    left a little off, fail if they are far off) at numpy speed.

    qonnx's version takes Python's built-in ``max`` over every element of every integer tensor
    after every node, even when nothing needs rounding; on 256x256 graphs that was half of a
    golden check's time. Same rules, same warning, same errors.
    """
    import warnings

    from qonnx.util.basic import get_execution_error_thresh

    for name in names:
        dtype = model.get_tensor_datatype(name)
        if not dtype.is_integer():
            continue
        values = context[name]
        if np.all(dtype.allowed(values)):
            continue
        rounded = np.round(values)
        warnings.warn(f"The values of tensor {name} can't be represented with the set datatype "
                      f"annotation ({dtype.name}), they will be rounded to match the datatype "
                      "annotation.")
        if np.max(np.abs(values - rounded)) > get_execution_error_thresh():
            raise Exception(f"Rounding error is too high to match set QONNX datatype ({dtype}) "
                            f"for input {name}")
        if check_values and not np.all(dtype.allowed(rounded)):
            raise Exception(f"Values can't be represented with set finn datatype ({dtype}) "
                            f"for input {name}")
        context[name] = rounded
    return context


def use_fast_sanitize() -> None:
    """Make qonnx's graph execution sanitize with :func:`_sanitize_quant_values`."""
    import qonnx.core.onnx_exec

    qonnx.core.onnx_exec.sanitize_quant_values = _sanitize_quant_values


def exec_onnx(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    """Run a QONNX/FINN graph on one input batch; the graph's one output."""
    from qonnx.core.onnx_exec import execute_onnx

    use_fast_sanitize()
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    return execute_onnx(model, {iname: np.asarray(x, dtype=np.float32)})[oname]
