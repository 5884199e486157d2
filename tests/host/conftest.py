"""Fixtures for host tests: a fake overlay folder that satisfies the overlay contract."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from bnnpose.host.common import manifest, write_json
from bnnpose.host.skeleton import MPII_JOINTS

#: The shapes of the bhg-tiny overlay: UINT8 NHWC image in (SIMD 3), INT5 heatmaps out (PE 4).
IO_SHAPE = {
    "idt": ["DataType['UINT8']"],
    "odt": ["DataType['INT5']"],
    "ishape_normal": [[1, 128, 128, 3]],
    "oshape_normal": [[1, 32, 32, 16]],
    "ishape_folded": [[1, 128, 128, 1, 3]],
    "oshape_folded": [[1, 32, 32, 4, 4]],
    "ishape_packed": [[1, 128, 128, 1, 3]],
    "oshape_packed": [[1, 32, 32, 4, 3]],
    "input_dma_name": ["idma0"],
    "output_dma_name": ["odma0"],
    "number_of_external_weights": 0,
    "num_inputs": 1,
    "num_outputs": 1,
}

HOST = {
    "input_layout": "NHWC",
    "input_size": [128, 128],
    "heatmap_size": [32, 32],
    "output_layout": "NHWC",
    "output_scale": [0.0625] * 16,
    "output_bias": [0.0],
    "joints": list(MPII_JOINTS),
}


def write_overlay(folder: Path, extra_files: dict[str, bytes] | None = None) -> Path:
    """A contract-conforming overlay folder with a placeholder model_hw.onnx."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "io_shape.json", IO_SHAPE)
    write_json(folder / "host.json", HOST)
    (folder / "model_hw.onnx").write_bytes(b"placeholder, never parsed by these tests")
    for name, data in (extra_files or {}).items():
        (folder / name).write_bytes(data)
    write_json(folder / "manifest.json", manifest(folder, model="bhg-tiny", board="pynq-z2"))
    return folder


@pytest.fixture
def io_shape() -> dict:
    return copy.deepcopy(IO_SHAPE)


@pytest.fixture
def host_dict() -> dict:
    return copy.deepcopy(HOST)


@pytest.fixture
def make_overlay(tmp_path: Path):
    """Factory: ``make_overlay(name="overlay", extra_files=None) -> Path``."""
    return lambda name="overlay", extra_files=None: write_overlay(tmp_path / name, extra_files)


@pytest.fixture
def overlay_dir(make_overlay) -> Path:
    return make_overlay()

