"""Golden vectors: every stage after torch must reproduce the torch network's integers exactly.

The export checks QONNX against torch with them and the build every FINN stage after it; each
records ``bitexact`` per stage from a real comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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

    @staticmethod
    def _fit(arr: np.ndarray, model: Any, name: str) -> np.ndarray:
        """``arr`` (torch layout) in the layout of the graph tensor ``name``: its layout
        annotation decides where it has one, since the shapes of NCHW and NHWC agree when
        C == H == W; the shape decides otherwise."""
        shape = model.get_tensor_shape(name)
        nhwc = arr.ndim == 4 and list(arr.transpose(0, 2, 3, 1).shape[1:]) == list(shape[1:])
        if nhwc and list(arr.shape[1:]) == list(shape[1:]):
            nhwc = list(model.get_tensor_layout(name) or []) == ["N", "H", "W", "C"]
        if nhwc:
            return arr.transpose(0, 2, 3, 1)
        if list(arr.shape[1:]) == list(shape[1:]):
            return arr
        raise ValueError(f"golden shape {arr.shape} does not fit graph shape {shape}")

    def expected(self, model: Any) -> np.ndarray:
        y = self.y
        if self.out_scale is not None:
            # the scale is per channel: axis 1 of the torch layout
            y = y / self.out_scale.reshape(1, -1, *[1] * (y.ndim - 2))
        return self._fit(y, model, model.graph.output[0].name)

    def inputs(self, model: Any) -> np.ndarray:
        return self._fit(self.x, model, model.graph.input[0].name)

    def check(self, stage: str, model: Any, run) -> bool:
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
