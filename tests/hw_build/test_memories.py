"""Weight-memory placement: FINN's own estimate of the placed graph fits, computes the same."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
from finn.analysis.fpgadataflow.op_and_param_counts import aggregate_dict_keys
from finn.analysis.fpgadataflow.res_estimation import res_estimation
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from bnnpose.hw_build.boards import BOARDS, Board
from bnnpose.hw_build.config import Until
from bnnpose.hw_build.make_bitstream import BuildConfig, build
from bnnpose.hw_build.memories import place_memories
from bnnpose.hw_build.sim import execute_hw_graph

ZCU = BOARDS["zcu104"]


def _tight(base: Board, name: str, bram18: int, uram: int) -> Board:
    """``base`` with too few BRAM18 for the small network as FINN leaves it."""
    return Board(name, base.finn_board, base.part, lut=40_000, bram18=bram18, uram=uram,
                 dsp=base.dsp, clock_mhz=base.clock_mhz, shell=base.shell)


def _totals(model: ModelWrapper, board: Board) -> dict:
    t = aggregate_dict_keys(model.analysis(partial(res_estimation, fpgapart=board.part)))
    return {"lut": int(t.get("LUT", 0)), "bram18": int(t.get("BRAM_18K", 0)),
            "uram": int(t.get("URAM", 0))}


def _styles(model: ModelWrapper) -> list[tuple[str, int]]:
    return [(getCustomOp(n).get_nodeattr("ram_style"),
             getCustomOp(n).get_nodeattr("runtime_writeable_weights"))
            for n in model.graph.node if n.op_type.startswith("MVAU")]


@pytest.mark.parametrize("uram", [0, 8])
def test_placement_fits_by_finns_estimate_and_computes_the_same(small_build, uram):
    out, _ = small_build
    model = ModelWrapper(str(out / "model_hw.onnx"))
    before = _totals(model, ZCU)
    assert before["bram18"] > 12 and before["uram"] == 0
    board = _tight(ZCU, "tight", bram18=15, uram=uram)  # 12 BRAM18 usable
    summary = place_memories(model, board, before)
    after = _totals(model, board)
    assert summary["placed"] and summary["before"] == before
    # The greedy's running totals are FINN's own estimate of the placed graph.
    assert summary["after"] == after
    assert after["bram18"] <= 12 and after["lut"] <= board.limits()["lut_max"]
    assert after["uram"] <= uram and board.fits(after) and not board.fits(before)
    styles = _styles(model)
    assert {s for s, _ in styles} <= {"block", "distributed", "ultra"}
    assert sum(summary["memories"].values()) == len(styles)
    # FINN needs URAM weights writable at run time on UltraScale+; nothing else is.
    assert all((s == "ultra") == bool(w) for s, w in styles)
    if uram == 0:
        assert summary["memories"]["ultra"] == 0
    x = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    placed = out.parent / f"placed_{uram}.onnx"
    model.save(str(placed))
    for xi in x:
        np.testing.assert_array_equal(execute_hw_graph(str(placed), xi[None]),
                                      execute_hw_graph(str(out / "model_hw.onnx"), xi[None]))


def test_the_fit_rule_is_the_boards():
    cap = ZCU.capacity()
    assert cap == {"lut": 161_280, "bram18": 499, "uram": 96, "dsp": 1_728}
    assert ZCU.fits(cap) and ZCU.fits({})
    for k in cap:
        assert not ZCU.fits({**cap, k: cap[k] + 1}), k
    assert ZCU.limits()["lut_max"] == cap["lut"] and ZCU.limits()["bram18_max"] == cap["bram18"]
    assert not BOARDS["pynq-z2"].fits({"uram": 1})  # the Z2 has none


def test_a_design_that_fits_is_left_as_finn_left_it(small_build):
    out, _ = small_build
    model = ModelWrapper(str(out / "model_hw.onnx"))
    raw = model.model.SerializeToString()
    summary = place_memories(model, ZCU, _totals(model, ZCU))
    assert summary == {"placed": False, "before": _totals(model, ZCU)}
    assert model.model.SerializeToString() == raw


def test_a_build_places_memories_to_fit(small_export, tmp_path, monkeypatch):
    export_dir, _ = small_export
    monkeypatch.setitem(BOARDS, "tight", _tight(ZCU, "tight", bram18=15, uram=8))
    report = build(BuildConfig(model=export_dir / "model.onnx", board="tight",
                               out=tmp_path / "b", fps=20000))
    placement = report["memory_placement"]
    est = report["estimate"]
    assert placement["placed"] and est["fits"] and est["bram18"] <= 12
    assert {k: est[k] for k in ("lut", "bram18", "uram")} == placement["after"]
    assert all(report["bitexact"].values())
    saved = json.loads((tmp_path / "b" / "report.json").read_text())
    assert saved["memory_placement"] == placement
    styles = _styles(ModelWrapper(str(tmp_path / "b" / "model_hw.onnx")))
    assert {s for s, _ in styles} != {"block"}
    assert all((s == "ultra") == bool(w) for s, w in styles)


@pytest.mark.vivado
def test_uram_weights_ship_in_the_overlay(small_export, tmp_path, monkeypatch):
    from bnnpose.hw_build.overlay import package_overlay

    export_dir, _ = small_export
    monkeypatch.setitem(BOARDS, "tight", _tight(ZCU, "tight", bram18=15, uram=8))
    report = build(BuildConfig(model=export_dir / "model.onnx", board="tight",
                               out=tmp_path / "b", fps=20000, until=Until.BITSTREAM))
    ultra = report["memory_placement"]["memories"]["ultra"]
    assert ultra > 0
    package_overlay(tmp_path / "b", tmp_path / "overlay", "small-hg")
    assert len(list((tmp_path / "overlay" / "runtime_weights").glob("*.dat"))) == ultra
