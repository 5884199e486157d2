"""Markers that skip themselves when their tool or board is absent."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest


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
