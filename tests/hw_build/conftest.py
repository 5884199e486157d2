"""A small random binary hourglass, exported once per session, and its FINN build."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnnpose.host.cpu_engine import native_kernels
from bnnpose.hw_build.cpu_plan import compile_plan
from bnnpose.hw_build.make_bitstream import BuildConfig, build
from bnnpose.hw_build.sim import execute_hw_graph
from bnnpose.hw_build.models_table import random_batchnorm
from bnnpose.models.hourglass import BinaryHourglassNet, HourglassConfig
from bnnpose.quantize.export import export_network

#: Every mergeable op of the full model (HPM Concat, residual Add, MaxPool, Upsample) at 32x32.
SMALL = HourglassConfig(input_size=32, stem_channels=8, channels=16, depth=1, bits=2,
                        num_joints=4)


def small_network(seed: int = 0, bits: int = 2) -> torch.nn.Module:
    """Random weights and non-trivial BatchNorm statistics, so thresholds are not all alike."""
    torch.manual_seed(seed)
    model = BinaryHourglassNet(HourglassConfig(**{**SMALL.to_dict(), "bits": bits}))
    return random_batchnorm(model).eval()


@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "small"
    x = np.random.default_rng(1).integers(0, 256, (16, 3, 32, 32)).astype(np.float32)
    info = export_network(small_network(), x, out, "small-hg", {"model": "small-hg"})
    return out, info


@pytest.fixture(scope="session")
def small_build(small_export, tmp_path_factory):
    export_dir, _ = small_export
    out = tmp_path_factory.mktemp("build") / "pynq-z2"
    report = build(BuildConfig(model=export_dir / "model.onnx", board="pynq-z2", out=out,
                               fps=20000))
    return out, report


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """Two binary convs: enough to reach FINN's conversion quickly."""
    from torch import nn

    from bnnpose.models.blocks import BinaryConvBN, conv, stream_quant

    torch.manual_seed(0)
    net = nn.Sequential(conv(True, 3, 8, 3), nn.BatchNorm2d(8), stream_quant(True, 2),
                        BinaryConvBN(8, 8, 2)).eval()
    out = tmp_path_factory.mktemp("export") / "tiny"
    x = np.random.default_rng(2).integers(0, 256, (4, 3, 12, 12)).astype(np.float32)
    export_network(net, x, out, "tiny", {"model": "tiny"})
    return out


def _cpu_plan_matches_finn(model_hw, xs: np.ndarray) -> None:
    plan = compile_plan(model_hw)
    want = np.concatenate([execute_hw_graph(str(model_hw), xi[None]) for xi in xs])
    np.testing.assert_array_equal(plan.run(xs, native=False), want)
    if native_kernels() is not None:
        np.testing.assert_array_equal(plan.run(xs, native=True), want)


@pytest.fixture
def cpu_plan_matches_finn():
    """``check(model_hw, xs)``: the cpu engine's plan of a built graph gives FINN's own
    integers on NHWC inputs ``xs``, numpy and native path alike."""
    return _cpu_plan_matches_finn


@pytest.fixture(scope="session")
def small_net() -> torch.nn.Module:
    return small_network()
