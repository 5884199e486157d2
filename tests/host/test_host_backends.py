"""Overlay validation errors, and the backends' packed-byte contract."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from bnnpose.host.common import BnnposeError, manifest, write_json
from bnnpose.host.backends import PynqBackend, load_overlay
from bnnpose.hw_build.sim import SimBackend
from bnnpose.host.packing import input_spec, output_spec, to_normal, to_packed

REPO = Path(__file__).resolve().parents[2]
REAL_OVERLAY = REPO / "overlays" / "pynq-z2" / "bhg-tiny"


def one_line_error(overlay_dir, *needles: str) -> str:
    with pytest.raises(BnnposeError) as info:
        load_overlay(overlay_dir)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_valid_overlay_loads(overlay_dir, io_shape):
    ov = load_overlay(overlay_dir)
    assert ov.io_shape == io_shape
    assert ov.host.joints[0] == "r_ankle" and ov.host.output_scale.shape == (16,)
    assert ov.model_hw == overlay_dir / "model_hw.onnx" and ov.bitfile is None


@pytest.mark.parametrize("name", ["io_shape.json", "host.json", "manifest.json"])
def test_missing_required_file(overlay_dir, name):
    (overlay_dir / name).unlink()
    one_line_error(overlay_dir, name)


def test_missing_folder(tmp_path):
    one_line_error(tmp_path / "nowhere", "not found", "nowhere")


def test_wrong_hash_of_model(overlay_dir):
    (overlay_dir / "model_hw.onnx").write_bytes(b"a different graph")
    one_line_error(overlay_dir, "model_hw.onnx", "sha256")


def test_listed_file_missing(overlay_dir):
    (overlay_dir / "model_hw.onnx").unlink()
    one_line_error(overlay_dir, "model_hw.onnx", "missing")


def test_unlisted_bitfile(overlay_dir):
    (overlay_dir / "bhg-tiny.bit").write_bytes(b"\x00" * 64)
    one_line_error(overlay_dir, "bhg-tiny.bit", "not listed")


def test_bad_json(overlay_dir):
    (overlay_dir / "host.json").write_text('{"input_size": [128, 128],\n oops}')
    write_json(overlay_dir / "manifest.json", manifest(overlay_dir))
    one_line_error(overlay_dir, "host.json", "line 2")


def test_host_and_io_shape_disagree(make_overlay, host_dict):
    folder = make_overlay()
    write_json(folder / "host.json", {**host_dict, "heatmap_size": [64, 64]})
    write_json(folder / "manifest.json", manifest(folder))
    one_line_error(folder, "[1, 64, 64, 16]")


def test_host_scale_per_joint(make_overlay, host_dict):
    folder = make_overlay()
    write_json(folder / "host.json", {**host_dict, "output_scale": [1.0, 2.0]})
    write_json(folder / "manifest.json", manifest(folder))
    one_line_error(folder, "output_scale")


def test_pynq_backend_names_the_missing_bitfile(overlay_dir):
    with pytest.raises(BnnposeError, match=r"no bitfile \(\*\.bit\)"):
        PynqBackend(overlay_dir)


@pytest.mark.skipif(importlib.util.find_spec("pynq") is not None, reason="pynq is installed")
def test_pynq_backend_names_missing_pynq(make_overlay):
    folder = make_overlay(extra_files={"bhg-tiny.bit": b"\x00" * 64, "bhg-tiny.hwh": b"<x/>"})
    with pytest.raises(BnnposeError, match="needs the pynq package"):
        PynqBackend(folder)


@pytest.mark.skipif(not (REAL_OVERLAY / "manifest.json").is_file(),
                    reason=f"no built overlay at {REAL_OVERLAY.relative_to(REPO)} yet")
def test_sim_backend_on_the_built_overlay():
    backend = SimBackend(REAL_OVERLAY)
    ispec, ospec = input_spec(backend.io_shape), output_spec(backend.io_shape)
    image = np.random.default_rng(4).integers(0, 256, ispec.normal, dtype=np.uint8)
    obuf = backend.execute_packed(to_packed(image, ispec))
    assert obuf.dtype == np.uint8 and obuf.shape == ospec.packed
    out = to_normal(obuf, ospec)
    assert out.shape == ospec.normal
    assert out.min() >= ospec.dtype.min() and out.max() <= ospec.dtype.max()


@pytest.mark.board
@pytest.mark.skipif(importlib.util.find_spec("pynq") is None, reason="pynq is not installed")
def test_pynq_backend_on_the_board():
    if not list(REAL_OVERLAY.glob("*.bit")):
        pytest.skip(f"no bitfile in {REAL_OVERLAY}")
    backend = PynqBackend(REAL_OVERLAY)
    ispec, ospec = input_spec(backend.io_shape), output_spec(backend.io_shape)
    image = np.random.default_rng(5).integers(0, 256, ispec.normal, dtype=np.uint8)
    obuf = backend.execute_packed(to_packed(image, ispec))
    assert obuf.shape == ospec.packed
    out = to_normal(obuf, ospec)
    assert out.min() >= ospec.dtype.min() and out.max() <= ospec.dtype.max()
    # The accelerator is deterministic: a second run on the same bytes gives the same bytes.
    np.testing.assert_array_equal(backend.execute_packed(to_packed(image, ispec)), obuf)
