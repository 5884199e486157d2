"""Test-session settings: each xdist worker's share of the cores, markers that skip themselves
when their tool or board is absent, and the built overlay."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from bnnpose.host.common import manifest, write_json

OVERLAYS = Path(__file__).resolve().parents[1] / "overlays" / "pynq-z2"
REAL_OVERLAY = OVERLAYS / "bhg-tiny"


def pytest_configure(config):
    """Under ``pytest -n N`` each worker takes its share of the cores: torch and OpenMP would
    otherwise start a thread per core in every worker, and the workers would fight over them.
    The environment carries the share to the CLIs that tests run as subprocesses."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        share = str(max(1, len(os.sched_getaffinity(0)) // workers))
        os.environ.setdefault("OMP_NUM_THREADS", share)
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    no_vivado = pytest.mark.skip(reason="needs Vivado: XILINX_VIVADO unset and no vivado on PATH")
    no_board = pytest.mark.skip(reason="needs a PYNQ board: the pynq package is not installed")
    have_vivado = bool(os.environ.get("XILINX_VIVADO")) or shutil.which("vivado") is not None
    have_board = importlib.util.find_spec("pynq") is not None
    for item in items:
        if "vivado" in item.keywords and not have_vivado:
            item.add_marker(no_vivado)
        if "board" in item.keywords and not have_board:
            item.add_marker(no_board)


@pytest.fixture(scope="session")
def small_families() -> dict:
    """``name -> builder(binary)`` of each multi-branch family at 32x32 input, small widths."""
    from bnnpose.models.bidrn import BiDRN, BiDRNConfig
    from bnnpose.models.hourglass import BinaryHourglassNet, HourglassConfig
    from bnnpose.models.hrnet import BiHRNet, BiHRNetConfig

    return {
        "stacked hourglass": lambda b: BinaryHourglassNet(HourglassConfig(
            input_size=32, stem_channels=8, channels=8, depth=1, stacks=2, binary=b)),
        "bihrnet": lambda b: BiHRNet(BiHRNetConfig(input_size=32, stem_channels=4,
                                                   widths=(8, 8, 16), binary=b)),
        "bidrn": lambda b: BiDRN(BiDRNConfig(input_size=32, stem_channels=4,
                                             widths=(8, 16, 32), box_channels=4,
                                             num_joints=12, layout="mpii", binary=b)),
    }


@pytest.fixture(scope="session")
def real_overlay(tmp_path_factory) -> Path:
    """A copy of the built bhg-tiny overlay with its cpu plan, as package_overlay writes it."""
    return _overlay_copy(REAL_OVERLAY, tmp_path_factory)


@pytest.fixture(scope="session")
def default_overlay(tmp_path_factory) -> Path:
    """The same for the PYNQ-Z2's default network, the overlay `make demo` builds."""
    from bnnpose.models.checkpoint_io import DEFAULT_MODEL

    return _overlay_copy(OVERLAYS / DEFAULT_MODEL, tmp_path_factory)


def _overlay_copy(overlay: Path, tmp_path_factory) -> Path:
    from bnnpose.host.cpu_engine import PLAN_FILE
    from bnnpose.hw_build.cpu_plan import compile_plan

    if not (overlay / "model_hw.onnx").is_file():
        pytest.skip(f"no built overlay {overlay.name} yet (make demo builds it)")
    folder = tmp_path_factory.mktemp("overlay") / overlay.name
    shutil.copytree(overlay, folder)
    compile_plan(folder / "model_hw.onnx").save(folder / PLAN_FILE)
    old = json.loads((folder / "manifest.json").read_text())
    write_json(folder / "manifest.json", manifest(
        folder, **{k: v for k, v in old.items() if k not in ("versions", "files")}))
    return folder
