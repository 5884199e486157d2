"""exec_onnx's faster standard-node execution gives qonnx's own results, on every stage of a
real build."""

from __future__ import annotations

import numpy as np
import qonnx.core.onnx_exec as oxe
from qonnx.core.modelwrapper import ModelWrapper

from bnnpose.hw_build.sim import to_generic
from bnnpose.quantize import qonnx_exec


def test_standard_nodes_run_as_qonnx_runs_them(small_build, small_export, monkeypatch):
    out, _ = small_build
    x = np.load(small_export[0] / "golden_in.npy")[:2]
    stages = sorted((out / "intermediate_models").glob("*.onnx"))
    checked = 0
    for path in stages:
        if not path.name[:2].isdigit():
            continue
        model = ModelWrapper(str(path))
        if any(n.domain.startswith("finn.custom_op.fpgadataflow") for n in model.graph.node):
            model = to_generic(model)
        shape = model.get_tensor_shape(model.graph.input[0].name)
        xs = x if shape[1] == 3 else x.transpose(0, 2, 3, 1)
        fast = [qonnx_exec.exec_onnx(model, xi[None]) for xi in xs]
        assert qonnx_exec._QONNX_EXECUTE_NODE is not None
        with monkeypatch.context() as m:
            m.setattr(oxe, "execute_node", qonnx_exec._QONNX_EXECUTE_NODE)
            plain = [qonnx_exec.exec_onnx(model, xi[None]) for xi in xs]
        for a, b in zip(fast, plain, strict=True):
            np.testing.assert_array_equal(a, b)
        checked += 1
    assert checked >= 10
    assert qonnx_exec._sessions  # standard nodes ran through the session cache
