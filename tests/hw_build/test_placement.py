"""Placement of weight memories and multipliers: FINN's own estimate of the placed graph fits,
and the graph computes the same."""

from __future__ import annotations

import json
from dataclasses import replace
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
from bnnpose.hw_build.placement import place_resources
from bnnpose.hw_build.sim import execute_hw_graph

ZCU = BOARDS["zcu104"]


def _tight(base: Board, name: str, bram18: int, uram: int, lut: int = 40_000,
           dsp: int | None = None) -> Board:
    """``base`` with too few BRAM18 (or LUTs) for the small network as FINN leaves it."""
    return Board(name, base.finn_board, base.part, lut=lut, bram18=bram18, uram=uram,
                 dsp=base.dsp if dsp is None else dsp, clock_mhz=base.clock_mhz,
                 shell=base.shell)


def _totals(model: ModelWrapper, board: Board) -> dict:
    t = aggregate_dict_keys(model.analysis(partial(res_estimation, fpgapart=board.part)))
    return {"lut": int(t.get("LUT", 0)), "bram18": int(t.get("BRAM_18K", 0)),
            "uram": int(t.get("URAM", 0)), "dsp": int(t.get("DSP", 0))}


def _styles(model: ModelWrapper) -> list[tuple[str, int]]:
    return [(getCustomOp(n).get_nodeattr("ram_style"),
             getCustomOp(n).get_nodeattr("runtime_writeable_weights"))
            for n in model.graph.node if n.op_type.startswith("MVAU")]


def _multipliers(model: ModelWrapper) -> dict[str, tuple[str, bool]]:
    """MVAU name -> (resType, whether it is an XNOR-popcount layer)."""
    return {n.name: (getCustomOp(n).get_nodeattr("resType"),
                     bool(getCustomOp(n).get_nodeattr("binaryXnorMode")))
            for n in model.graph.node if n.op_type.startswith("MVAU")}


def _same_outputs(a, b) -> None:
    x = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    for xi in x:
        np.testing.assert_array_equal(execute_hw_graph(str(a), xi[None]),
                                      execute_hw_graph(str(b), xi[None]))


def _lut_tight(model: ModelWrapper) -> Board:
    """The Z2 with 300 LUTs too few for ``model`` as FINN leaves it and BRAM to spare: the
    small network's only multi-bit multipliers (its 8-bit stem's and 2-bit head's) have to
    move to DSPs."""
    z2 = BOARDS["pynq-z2"]
    need = _totals(model, z2)["lut"] - 300
    return _tight(z2, "lut-tight", bram18=z2.bram18, uram=0,
                  lut=int(need / z2.lut_limit))


@pytest.mark.parametrize("uram", [0, 8])
def test_placement_fits_by_finns_estimate_and_computes_the_same(small_build, uram):
    out, _ = small_build
    model = ModelWrapper(str(out / "model_hw.onnx"))
    before = _totals(model, ZCU)
    assert before["bram18"] > 12 and before["uram"] == 0
    board = _tight(ZCU, "tight", bram18=15, uram=uram)  # 12 BRAM18 usable
    summary = place_resources(model, board, before)
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
    placed = out.parent / f"placed_{uram}.onnx"
    model.save(str(placed))
    _same_outputs(placed, out / "model_hw.onnx")


def test_multipliers_move_to_dsps_when_luts_run_out(small_build):
    out, _ = small_build
    model = ModelWrapper(str(out / "model_hw.onnx"))
    board = _lut_tight(model)
    before = _totals(model, board)
    assert before["dsp"] == 0 and not board.fits(before)
    summary = place_resources(model, board, before)
    after = _totals(model, board)
    # The running totals (DSPs included) are FINN's own estimate of the placed graph.
    assert summary["placed"] and summary["after"] == after
    assert board.fits(after) and 0 < after["dsp"] <= board.dsp
    assert after["lut"] < before["lut"] and after["bram18"] == before["bram18"]
    moved = {name for name, (res, _) in _multipliers(model).items() if res == "dsp"}
    assert len(moved) == summary["multipliers"]["dsp"] > 0
    # XNOR-popcount layers have no multipliers to move.
    assert not moved & {name for name, (_, xnor) in _multipliers(model).items() if xnor}
    placed = out.parent / "placed_dsp.onnx"
    model.save(str(placed))
    _same_outputs(placed, out / "model_hw.onnx")


def test_without_dsps_multipliers_stay_in_luts(small_build):
    out, _ = small_build
    model = ModelWrapper(str(out / "model_hw.onnx"))
    board = replace(_lut_tight(model), dsp=0)
    summary = place_resources(model, board, _totals(model, board))
    assert summary["multipliers"] == {"lut": 0, "dsp": 0}
    assert {res for res, _ in _multipliers(model).values()} == {"lut"}


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
    summary = place_resources(model, ZCU, _totals(model, ZCU))
    assert summary == {"placed": False, "before": _totals(model, ZCU)}
    assert model.model.SerializeToString() == raw


def test_a_build_places_memories_to_fit(small_export, tmp_path, monkeypatch):
    export_dir, _ = small_export
    monkeypatch.setitem(BOARDS, "tight", _tight(ZCU, "tight", bram18=15, uram=8))
    report = build(BuildConfig(model=export_dir / "model.onnx", board="tight",
                               out=tmp_path / "b", fps=20000))
    placement = report["placement"]
    est = report["estimate"]
    assert placement["placed"] and est["fits"] and est["bram18"] <= 12
    assert {k: est[k] for k in ("lut", "bram18", "uram", "dsp")} == placement["after"]
    assert all(report["bitexact"].values())
    saved = json.loads((tmp_path / "b" / "report.json").read_text())
    assert saved["placement"] == placement
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
    ultra = report["placement"]["memories"]["ultra"]
    assert ultra > 0
    package_overlay(tmp_path / "b", tmp_path / "overlay", "small-hg")
    assert len(list((tmp_path / "overlay" / "runtime_weights").glob("*.dat"))) == ultra


def test_a_build_puts_multipliers_on_dsps_in_the_generated_hls(small_export, small_build,
                                                               tmp_path, monkeypatch):
    """The placement reaches the code Vivado HLS compiles: each moved layer's MVAU call is
    generated with ``ap_resource_dsp()``, every other with ``ap_resource_lut()``."""
    export_dir, _ = small_export
    board = _lut_tight(ModelWrapper(str(small_build[0] / "model_hw.onnx")))
    monkeypatch.setitem(BOARDS, board.name, board)
    report = build(BuildConfig(model=export_dir / "model.onnx", board=board.name,
                               out=tmp_path / "b", fps=20000, until=Until.CODEGEN))
    est = report["estimate"]
    assert est["fits"] and est["dsp"] > 0 and all(report["bitexact"].values())
    assert report["placement"]["multipliers"]["dsp"] > 0
    model = ModelWrapper(str(tmp_path / "b" / "model_hw.onnx"))
    styles = {}
    for node in model.graph.node:
        if node.op_type != "MVAU_hls":
            continue
        # The build renames its work folder when complete: find the code under its final name.
        (code,) = (tmp_path / "b" / "finn_tmp").glob(
            f"code_gen_ipgen_{node.name}_*/top_{node.name}.cpp")
        text = code.read_text()
        styles[node.name] = ("ap_resource_dsp()" in text, "ap_resource_lut()" in text)
    moved = {name for name, (res, _) in _multipliers(model).items() if res == "dsp"}
    assert moved and {n for n, (dsp, _) in styles.items() if dsp} == moved
    assert all(lut for n, (_, lut) in styles.items() if n not in moved)
