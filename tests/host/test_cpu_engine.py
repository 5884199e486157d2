"""The bit-packed CPU engine against FINN's own execution of the same folded graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bnnpose.host.common import BnnposeError, manifest, write_json
from bnnpose.host.backends import CpuBackend
from bnnpose.host.cpu_engine import PLAN_FILE, Plan, native_kernels
from bnnpose.hw_build.cpu_plan import compile_plan
from bnnpose.hw_build.sim import SimBackend
from bnnpose.host.packing import input_spec, output_spec, to_packed
from bnnpose.hw_build.sim import execute_hw_graph

REAL_OVERLAY = Path(__file__).resolve().parents[2] / "overlays" / "pynq-z2" / "bhg-tiny"

pytestmark = pytest.mark.skipif(not (REAL_OVERLAY / "model_hw.onnx").is_file(),
                                reason="no built overlay yet (make demo builds it)")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def finn_out(images) -> np.ndarray:
    model = str(REAL_OVERLAY / "model_hw.onnx")
    return np.concatenate([execute_hw_graph(model, x[None].astype(np.float32)) for x in images])


@pytest.fixture(scope="module")
def plan() -> Plan:
    return compile_plan(REAL_OVERLAY / "model_hw.onnx")


def test_numpy_path_equals_finn_execution(plan, images, finn_out):
    y = plan.run(images, native=False)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, finn_out)


@pytest.mark.skipif(native_kernels() is None, reason="no C compiler for the native kernels")
def test_native_kernels_equal_the_numpy_path(plan, images, finn_out):
    np.testing.assert_array_equal(plan.run(images, native=True), finn_out)


@pytest.mark.skipif(native_kernels() is None, reason="no C compiler for the native kernels")
def test_profile_times_every_instruction_and_leaves_results_intact(plan, images, finn_out):
    rows = plan.profile(images[0], iters=2)
    outputs = [s.outputs[0] for s in plan.steps if s.op != "alias"]
    # One row per instruction, in plan order; a residual join's concat and add are folded
    # into its threshold's row.
    assert [r["output"] for r in rows] == [o for o in outputs if o in {r["output"] for r in rows}]
    folded = [s for s in plan.steps if s.op != "alias" and s.outputs[0] not in
              {r["output"] for r in rows}]
    assert {s.op for s in folded} == {"concat", "binary"}
    assert all(r["seconds"] > 0 for r in rows)
    kinds = {r["op"] for r in rows}
    assert {"xnor conv", "int conv", "concat+add+threshold"} <= kinds
    # Running instructions one at a time again leaves the program's buffers as a full run does.
    np.testing.assert_array_equal(plan.run(images, native=True), finn_out)


def test_binary_convs_run_as_xnor_popcount_on_packed_words(plan):
    convs = [s for s in plan.steps if s.op == "conv"]
    xnor = [s for s in convs if s.attrs["xnor"]]
    assert len(xnor) >= len(convs) - 2  # only the 8-bit stem and the head are wider
    for s in xnor:
        words = s.arrays["weight_words"]
        assert words.dtype == np.uint64 and words.shape[0] == s.attrs["out_shape"][-1]
        assert words.shape[1] * 64 >= s.attrs["k_bits"]


def test_plan_round_trips_through_npz(plan, images, finn_out, tmp_path):
    plan.save(tmp_path / PLAN_FILE)
    loaded = Plan.load(tmp_path / PLAN_FILE)
    assert loaded.source_sha256 == plan.source_sha256 and len(loaded.steps) == len(plan.steps)
    np.testing.assert_array_equal(loaded.run(images[:1], native=False), finn_out[:1])


def test_bad_plan_files_are_one_line_errors(plan, tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(BnnposeError, match="not a cpu engine plan"):
        Plan.load(tmp_path / "junk.npz")
    plan.save(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as npz:
        arrays = dict(npz)
    header = json.loads(str(arrays["header"]))
    header["format"] = 999
    np.savez(tmp_path / "old.npz", **{**arrays, "header": np.array(json.dumps(header))})
    with pytest.raises(BnnposeError, match="plan format 999"):
        Plan.load(tmp_path / "old.npz")
    with pytest.raises(BnnposeError, match="does not match"):
        plan.run(np.zeros((1, 64, 64, 3), np.uint8))


def test_unsupported_op_is_refused_by_name(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])
    node = helper.make_node("LabelSelect_hls", ["x"], ["y"], name="top1",
                            domain="finn.custom_op.fpgadataflow.hls")
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y])), tmp_path / "m.onnx")
    with pytest.raises(BnnposeError, match=r"LabelSelect_hls \(top1\) is not supported"):
        compile_plan(tmp_path / "m.onnx")


def copy_overlay(tmp_path, edit=None):
    folder = tmp_path / "overlay"
    shutil.copytree(REAL_OVERLAY, folder)
    if edit:
        edit(folder)
    old = json.loads((folder / "manifest.json").read_text())
    fields = {k: v for k, v in old.items() if k not in ("versions", "files")}
    write_json(folder / "manifest.json", manifest(folder, **fields))
    return folder


def test_cpu_and_sim_backends_return_the_same_bytes(tmp_path, images):
    folder = copy_overlay(tmp_path)
    cpu, sim = CpuBackend(folder), SimBackend(folder)
    ibuf = to_packed(images[:2], input_spec(cpu.io_shape))
    out = cpu.execute_packed(ibuf)
    assert out.dtype == np.uint8 and out.shape == output_spec(cpu.io_shape).packed_shape(2)
    np.testing.assert_array_equal(out, sim.execute_packed(ibuf))


def test_plan_from_another_model_is_refused(tmp_path, plan):
    def stale_plan(folder):
        plan.source_sha256 = "0" * 64
        plan.save(folder / PLAN_FILE)

    folder = copy_overlay(tmp_path, stale_plan)
    with pytest.raises(BnnposeError, match="compiled from another model_hw.onnx"):
        CpuBackend(folder)


def test_io_shape_that_disagrees_with_the_graph_is_refused(tmp_path):
    def wrong_datatype(folder):
        io = json.loads((folder / "io_shape.json").read_text())
        io["odt"] = ["DataType['INT9']"]
        io["oshape_packed"] = [[*io["oshape_folded"][0][:-1],
                                -(-io["oshape_folded"][0][-1] * 9 // 8)]]
        write_json(folder / "io_shape.json", io)

    folder = copy_overlay(tmp_path, wrong_datatype)
    with pytest.raises(BnnposeError, match="io_shape.json says INT9"):
        SimBackend(folder)


def test_overlay_without_plan_or_model(tmp_path):
    def strip(folder):
        (folder / "model_hw.onnx").unlink()
        (folder / PLAN_FILE).unlink(missing_ok=True)

    with pytest.raises(BnnposeError, match="neither cpu_plan.npz nor model_hw.onnx"):
        CpuBackend(copy_overlay(tmp_path, strip))


@pytest.fixture
def broken_cc(tmp_path, monkeypatch):
    """A C compiler that answers --version and fails every build, with a fresh kernel cache."""
    cc = tmp_path / "cc"
    cc.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "fakecc 1.0"; exit 0; fi\n'
                  'echo "xnor_kernels.c:9:1: warning: a warning first" >&2\n'
                  'echo "xnor_kernels.c:12:5: error: unknown type name" >&2\nexit 1\n')
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("BNNPOSE_CACHE_DIR", str(tmp_path / "cache"))
    native_kernels.cache_clear()
    yield cc
    native_kernels.cache_clear()


def test_a_failed_compile_is_one_line_naming_the_numpy_engine(broken_cc, images, finn_out):
    with pytest.raises(BnnposeError) as e:
        CpuBackend(REAL_OVERLAY)
    message = str(e.value)
    assert "\n" not in message and "error: unknown type name" in message
    assert "warning" not in message and "--engine numpy" in message
    # Asked for, the numpy path runs without a compiler, and gives the same integers.
    cpu = CpuBackend(REAL_OVERLAY, engine="numpy")
    np.testing.assert_array_equal(cpu.plan.run(images, native=False), finn_out)


def test_a_missing_compiler_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    native_kernels.cache_clear()
    try:
        with pytest.raises(BnnposeError, match=r"does not run\); --engine numpy"):
            CpuBackend(REAL_OVERLAY)
    finally:
        native_kernels.cache_clear()


def test_cli_never_falls_back_silently(broken_cc, tmp_path):
    import os
    import subprocess
    import sys

    import cv2

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8))

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "bnnpose.host.cli", "run", "--backend", "cpu",
                               "--overlay", str(REAL_OVERLAY), "--out", str(tmp_path / "out"),
                               "--no-annotate", *extra, str(image)],
                              capture_output=True, text=True, timeout=120, env=dict(os.environ))

    failed = run()
    assert failed.returncode == 2 and len(failed.stderr.splitlines()) == 1, failed.stderr
    assert "--engine numpy" in failed.stderr
    assert run("--engine", "numpy").returncode == 0
