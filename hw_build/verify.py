"""Golden-vector checks: every stage of the build must reproduce the torch integers exactly."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper


@dataclass
class Golden:
    """Golden inputs/outputs from the export stage, in torch layout.

    x: [N, C, H, W] integer-valued pixels; y: [N, J, h, w] network output (float, exact).
    ``out_scale`` is the per-channel factor the build has cut off the graph for the host.
    """

    x: np.ndarray
    y: np.ndarray
    out_scale: np.ndarray | None = None
    results: dict[str, dict] = field(default_factory=dict)

    def _fit(self, arr: np.ndarray, shape: list[int]) -> np.ndarray:
        if list(arr.shape[1:]) == list(shape[1:]):
            return arr
        if arr.ndim == 4 and list(arr.transpose(0, 2, 3, 1).shape[1:]) == list(shape[1:]):
            return arr.transpose(0, 2, 3, 1)
        raise ValueError(f"golden shape {arr.shape} does not fit graph shape {shape}")

    def expected(self, model: ModelWrapper) -> np.ndarray:
        y = self.y
        if self.out_scale is not None:
            # the scale is per channel: axis 1 of the torch layout
            y = y / self.out_scale.reshape(1, -1, *[1] * (y.ndim - 2))
        return self._fit(y, model.get_tensor_shape(model.graph.output[0].name))

    def inputs(self, model: ModelWrapper) -> np.ndarray:
        return self._fit(self.x, model.get_tensor_shape(model.graph.input[0].name))

    def check(self, stage: str, model: ModelWrapper, run) -> bool:
        """Run ``run(model, x_one) -> y_one`` on every golden input; record exactness."""
        xs, ys = self.inputs(model), self.expected(model)
        mismatched, max_abs = 0, 0.0
        for x1, y1 in zip(xs, ys):
            out = np.asarray(run(model, x1[None]))[0]
            diff = float(np.max(np.abs(out - y1)))
            max_abs = max(max_abs, diff)
            mismatched += int(not np.array_equal(out, y1))
        ok = mismatched == 0
        self.results[stage] = {"bitexact": ok, "n_inputs": len(xs), "n_mismatched": mismatched,
                               "max_abs_diff": max_abs}
        return ok


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
    """Python execution of a QONNX/FINN graph (qonnx/finn ``execute_onnx``)."""
    from finn.core.onnx_exec import execute_onnx

    use_fast_sanitize()

    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    return execute_onnx(model, {iname: x.astype(np.float32)})[oname]


def exec_hw(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    from bnnpose.hw_build.sim import execute_hw_graph

    return execute_hw_graph(model, x)
