"""The golden checks' fast sanitizer behaves exactly like qonnx's."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model, sanitize_quant_values

from bnnpose.quantize.qonnx_exec import _sanitize_quant_values


@pytest.fixture
def model():
    def info(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 3])

    node = helper.make_node("Identity", ["ints"], ["near"])
    m = ModelWrapper(qonnx_make_model(helper.make_graph([node], "g", [info("ints")],
                                                        [info("near")])))
    for name in ("ints", "near", "far"):
        m.set_tensor_datatype(name, DataType["INT2"])
    return m


def _context(rng):
    ints = rng.integers(-2, 2, (2, 3)).astype(np.float32)
    return {"ints": ints, "near": ints + rng.uniform(-1e-4, 1e-4, ints.shape).astype(np.float32),
            "far": ints + 0.4, "floats": rng.normal(size=(2, 3)).astype(np.float32)}


def test_same_result_as_qonnx(model):
    m = model
    for seed in range(5):
        with pytest.warns(UserWarning, match="near"):
            ours = _sanitize_quant_values(m, ["ints", "near", "floats"],
                                          _context(np.random.default_rng(seed)))
        with pytest.warns(UserWarning, match="near"):
            theirs = sanitize_quant_values(m, ["ints", "near", "floats"],
                                           _context(np.random.default_rng(seed)))
        for k in theirs:
            assert np.array_equal(ours[k], theirs[k]), k
    assert np.array_equal(ours["near"], ours["ints"])


def test_far_values_fail_like_qonnx(model):
    m = model
    with pytest.raises(Exception, match="Rounding error is too high") as ours:
        _sanitize_quant_values(m, ["far"], _context(np.random.default_rng(0)))
    with pytest.raises(Exception, match="Rounding error is too high"):
        sanitize_quant_values(m, ["far"], _context(np.random.default_rng(0)))
    assert "far" in str(ours.value)
