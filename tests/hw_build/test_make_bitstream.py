from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from bnnpose.hw_build.make_bitstream import main

STAGES = {"qonnx", "finn_onnx", "streamlined", "hw_layers", "folded_hw"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bnnpose.hw_build.make_bitstream", *args],
                          capture_output=True, text=True)


def test_report_has_contract_fields(small_build):
    out, report = small_build
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["unmapped_nodes"] == []
    assert set(on_disk["bitexact"]) == STAGES and all(on_disk["bitexact"].values())
    assert all(v["n_inputs"] == 16 for v in on_disk["verification"].values())
    est = on_disk["estimate"]
    for key in ("fps", "lut", "bram18", "dsp", "uram", "clock_mhz", "board", "fits"):
        assert key in est
    assert est["board"]["lut"] == 53_200 and est["clock_mhz"] == 100.0
    assert est["fps"] > 0 and est["lut"] > 0
    assert on_disk["versions"]["finn-plus"] == "1.6.1"
    assert on_disk["timings_s"]["streamline_pose"] > 0


def test_every_merge_op_is_hardware_and_binary_convs_are_xnor(small_build):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    out, report = small_build
    model = ModelWrapper(str(out / "model_hw.onnx"))
    ops = {n.op_type for n in model.graph.node}
    for op in ("ElementwiseAdd_hls", "StreamingConcat_hls", "UpsampleNearestNeighbour_hls",
               "Pool_hls", "DuplicateStreams_hls", "MVAU_hls"):
        assert op in ops
    mvaus = [getCustomOp(n) for n in model.get_nodes_by_op_type("MVAU_hls")]
    xnor = [m for m in mvaus if m.get_nodeattr("binaryXnorMode") == 1]
    # stem (8-bit input) and head (2-bit input) are the only non-XNOR layers
    assert len(mvaus) - len(xnor) == 2
    macs = report["macs_by_bitwidth"]
    assert report["xnor_mac_share"] == pytest.approx(macs["1bx1b"] / sum(macs.values()), 1e-3)
    assert report["xnor_mac_share"] > 0.5


def test_fps_target_drives_folding(small_build):
    _, report = small_build
    assert report["estimate"]["fps"] >= 20000


def test_io_shape_matches_graph(small_build):
    out, _ = small_build
    io = json.loads((out / "io_shape.json").read_text())
    assert io["ishape_normal"] == [[1, 32, 32, 3]] and io["oshape_normal"] == [[1, 8, 8, 4]]
    assert io["idt"] == ["DataType['UINT8']"]


def test_host_takes_the_head_scale(small_build, small_export):
    out, report = small_build
    assert [op["op"] for op in report["host_ops"]] == ["Mul"]
    assert len(report["host_ops"][0]["scale"]) == 4


def test_missing_model_is_one_line_error(tmp_path):
    r = run_cli("--model", str(tmp_path / "nope.onnx"), "--board", "pynq-z2",
                "--out", str(tmp_path / "o"))
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("make_bitstream: error: model file not")
    assert len([ln for ln in r.stderr.splitlines() if "error" in ln]) == 1
    assert not (tmp_path / "o").exists()


def test_non_onnx_and_non_qonnx_are_refused(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a protobuf at all" * 10)
    assert main(["--model", str(junk), "--board", "pynq-z2", "--out", str(tmp_path / "a")]) == 2
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])],
                                                "g", [x], [y]))
    onnx.save(plain, tmp_path / "plain.onnx")
    r = run_cli("--model", str(tmp_path / "plain.onnx"), "--board", "pynq-z2",
                "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "not a QONNX model" in r.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unknown_board_is_refused(small_export, tmp_path, capsys):
    export_dir, _ = small_export
    rc = main(["--model", str(export_dir / "model.onnx"), "--board", "zedboard-9000",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1] == ("make_bitstream: error: unknown board 'zedboard-9000'; "
                                   "known: pynq-z2, zcu104")
    assert not (tmp_path / "o").exists()


def test_unmappable_op_fails_cleanly(tiny_export, tmp_path, capsys):
    export_dir = tiny_export
    model = onnx.load(export_dir / "model.onnx")
    out_name = model.graph.output[0].name
    model.graph.node.append(helper.make_node("Cos", [out_name], ["cos_out"]))
    model.graph.output[0].name = "cos_out"
    onnx.save(model, tmp_path / "cos.onnx")
    rc = main(["--model", str(tmp_path / "cos.onnx"), "--board", "pynq-z2",
               "--out", str(tmp_path / "o"), "--golden-in", str(export_dir / "golden_in.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("make_bitstream: error: FINN cannot map ")
    assert "op types Cos" in err[-1]
    assert not (tmp_path / "o").exists()
    assert not list(tmp_path.glob(".o.partial-*"))


def test_bitstream_without_vivado_fails_with_one_line(small_export, tmp_path, monkeypatch,
                                                     capsys):
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    export_dir, _ = small_export
    rc = main(["--model", str(export_dir / "model.onnx"), "--board", "pynq-z2", "--out",
               str(tmp_path / "o"), "--until", "bitstream", "--fps", "20000"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "needs Vivado" in err[-1] and err[-1].startswith("make_bitstream: error")
    assert not (tmp_path / "o").exists()


@pytest.mark.vivado
def test_bitstream_with_vivado(small_export, tmp_path):
    export_dir, _ = small_export
    assert main(["--model", str(export_dir / "model.onnx"), "--board", "pynq-z2", "--out",
                 str(tmp_path / "o"), "--until", "bitstream"]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["bitstream"]["bitfile"].endswith(".bit")


def test_golden_vectors_match_export(small_export):
    export_dir, info = small_export
    x, y = np.load(export_dir / "golden_in.npy"), np.load(export_dir / "golden_out.npy")
    assert x.shape == (16, 3, 32, 32) and y.shape == (16, 4, 8, 8)
    assert info["bitexact"]["torch_vs_qonnx"]


def test_overlay_runs_bit_exact_through_host_packing(small_build, small_export, tmp_path):
    from bnnpose.host.backends import load_overlay
    from bnnpose.hw_build.overlay import check_host, package_overlay

    build_dir, _ = small_build
    export_dir, _ = small_export
    overlay = tmp_path / "overlays" / "pynq-z2" / "small-hg"
    man = package_overlay(build_dir, overlay, "small-hg", joints=["a", "b", "c", "d"])
    assert {"model_hw.onnx", "io_shape.json", "host.json", "estimate.json",
            "cpu_plan.npz"} <= set(man["files"])
    assert man["versions"]["finn-plus"] == "1.6.1"
    assert load_overlay(overlay).host.joints == ("a", "b", "c", "d")
    for backend in ("sim", "cpu"):  # torch's golden outputs through either backend's bytes
        result = check_host(overlay, export_dir, backend)
        assert result == {**result, "bitexact": True, "n_inputs": 16, "n_mismatched": 0}


def test_a_rebuild_gives_a_byte_identical_overlay(small_build, small_export, tmp_path):
    """The same export, built again in another process (other hash seed, other folder), packages
    into the same bytes: rebuilt overlays do not show up as changes in git."""
    import os
    import subprocess
    import sys

    from bnnpose.hw_build.overlay import package_overlay

    build_dir, report = small_build
    export_dir, _ = small_export
    again = tmp_path / "again"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-m", "bnnpose.hw_build.make_bitstream", "--model",
                    str(export_dir / "model.onnx"), "--board", "pynq-z2", "--out", str(again),
                    "--fps", str(report["config"]["fps"]), "--until", "estimate"],
                   check=True, capture_output=True, env=env, timeout=600)
    first, second = tmp_path / "first", tmp_path / "second"
    package_overlay(build_dir, first, "small-hg", joints=["a", "b", "c", "d"])
    package_overlay(again, second, "small-hg", joints=["a", "b", "c", "d"])
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and "cpu_plan.npz" in names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_eight_bit_first_and_last_layers_map_bit_exactly(tmp_path):
    """``--end-bits 8``: stem and head convs with 8-bit per-channel weights stay exact in FINN."""
    import torch

    from bnnpose.hw_build.make_bitstream import BuildConfig, Until, build
    from bnnpose.hw_build.models_table import random_batchnorm
    from bnnpose.models.hourglass import BinaryHourglassNet, HourglassConfig
    from bnnpose.quantize.export import export_network

    torch.manual_seed(3)
    net = BinaryHourglassNet(HourglassConfig(input_size=32, stem_channels=8, channels=16,
                                             depth=1, bits=2, num_joints=4, end_bits=8))
    net = random_batchnorm(net).eval()
    x = np.random.default_rng(4).integers(0, 256, (16, 3, 32, 32)).astype(np.float32)
    export_network(net, x, tmp_path / "export", "small-hg-ends8", {"model": "small-hg-ends8"})
    report = build(BuildConfig(model=tmp_path / "export" / "model.onnx", board="pynq-z2",
                               out=tmp_path / "build", fps=20000, until=Until.ESTIMATE))
    assert report["unmapped_nodes"] == []
    assert set(report["bitexact"]) == STAGES and all(report["bitexact"].values())
    # the stem's 8-bit weights meet the 8-bit image, the head's meet the 2-bit stream
    assert set(report["macs_by_bitwidth"]) == {"8bx8b", "1bx1b", "2bx8b"}
    assert report["macs_by_bitwidth"]["2bx8b"] == 16 * 4 * 8 * 8  # head: 16 ch -> 4 joints


def test_build_config_round_trips_through_json(tmp_path):
    from bnnpose.hw_build.config import DEFAULT_FPS, BuildConfig, Until
    from bnnpose.hw_build.make_bitstream import parse_args

    cfg = BuildConfig(model=tmp_path / "m.onnx", board="zcu104", out=tmp_path / "b", fps=250.0,
                      until=Until.ESTIMATE, clock_mhz=150.0)
    path = tmp_path / "build.json"
    path.write_text(cfg.to_json())
    assert BuildConfig.from_json(path) == cfg
    assert parse_args(["--config", str(path)]) == cfg
    # Options beside --config override its fields; the rest keep the file's values.
    again = parse_args(["--config", str(path), "--fps", "500", "--out", str(tmp_path / "c")])
    assert (again.fps, again.out, again.board, again.until) == (500.0, tmp_path / "c",
                                                               "zcu104", Until.ESTIMATE)
    assert parse_args(["--model", "m.onnx", "--board", "pynq-z2", "--out", "o"]).fps == DEFAULT_FPS


def test_bad_build_configs_are_one_line_errors(tmp_path, capsys):
    from bnnpose.hw_build.make_bitstream import main

    cases = [({"model": "m.onnx", "board": "pynq-z2", "out": "o", "fpss": 3}, "unknown build "
              "options: fpss"),
             ({"model": "m.onnx", "board": "pynq-z2", "out": "o", "until": "gds"}, "bad build "
              "config"),
             ({"model": "m.onnx"}, "build config lacks board, out"),
             ({"model": "m.onnx", "board": "pynq-z2", "out": "o", "fps": "fast"},
              "--fps takes frames per second or 'max', got 'fast'")]
    for i, (cfg, message) in enumerate(cases):
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps(cfg))
        assert main(["--config", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("make_bitstream: error: ") and message in err[0]
    assert main(["--config", str(tmp_path / "absent.json")]) == 2
    assert "cannot read build config" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--board", "pynq-z2"])
    assert info.value.code == 2 and "--model, --out" in capsys.readouterr().err


def test_folding_is_fitted_to_the_board(small_export, tmp_path, monkeypatch):
    """An out-of-reach --fps fails naming the fastest rate that fits, keeping the partial build
    in failed/; --fps max builds exactly that folding."""
    from dataclasses import replace

    from bnnpose.host.common import BnnposeError
    from bnnpose.hw_build import boards
    from bnnpose.hw_build.config import BuildConfig, Until
    from bnnpose.hw_build.make_bitstream import build

    # A board a third of the Z2's LUTs: the small hourglass fits it only when folded.
    monkeypatch.setitem(boards.BOARDS, "pynq-z2",
                        replace(boards.BOARDS["pynq-z2"], lut=boards.BOARDS["pynq-z2"].lut // 3))
    export_dir, _ = small_export
    model = export_dir / "model.onnx"
    with pytest.raises(BnnposeError, match="does not fit pynq-z2") as info:
        build(BuildConfig(model=model, board="pynq-z2", out=tmp_path / "o", fps=1e6,
                          until=Until.ESTIMATE))
    message = str(info.value)
    assert "\n" not in message and "partial build kept in" in message
    assert not (tmp_path / "o").exists() and (tmp_path / "failed" / "o" / "build.log").is_file()
    best = float(message.split("the fastest folding that fits reaches ")[1].split(" FPS")[0])

    report = build(BuildConfig(model=model, board="pynq-z2", out=tmp_path / "max", fps="max",
                               until=Until.ESTIMATE))
    e, search = report["estimate"], report["fps_search"]
    assert e["fits"] and round(e["fps"]) == best and search["fps"] == e["fps"]
    assert all(v for v in report["bitexact"].values())
    # Every probe above the chosen target either fails to fit or is no faster.
    assert all(not p["fits"] or p["fps"] <= e["fps"] for p in search["probes"])
    assert any(not p["fits"] for p in search["probes"])
    # The search's shortcut: a target up to the rate reached gives that very folding.
    again = build(BuildConfig(model=model, board="pynq-z2", out=tmp_path / "reached",
                              fps=e["fps"], until=Until.ESTIMATE))["estimate"]
    assert {k: again[k] for k in ("fps", "lut", "bram18")} == {k: e[k] for k in
                                                                ("fps", "lut", "bram18")}
    assert search["chosen_target"] < e["fps"]


def test_a_killed_build_resumes_from_its_last_step(small_export, small_build, tmp_path):
    """Killed after streamlining, ``--resume`` continues there and ends as a whole build."""
    import os
    import signal
    import time
    from pathlib import Path

    from bnnpose.hw_build.config import BuildConfig
    from bnnpose.hw_build.make_bitstream import build

    export_dir, _ = small_export
    _, whole = small_build
    out = tmp_path / "o"
    args = [sys.executable, "-m", "bnnpose.hw_build.make_bitstream", "--model",
            str(export_dir / "model.onnx"), "--board", "pynq-z2", "--out", str(out), "--fps",
            str(whole["config"]["fps"])]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not list(tmp_path.glob(".o.partial-*/intermediate_models/03_*.onnx")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    (partial,) = tmp_path.glob(".o.partial-*")
    progress = json.loads((partial / "progress.json").read_text())
    assert progress["step_index"] >= 2 and not out.exists()

    cfg = BuildConfig(model=export_dir / "model.onnx", board="pynq-z2", out=out,
                      fps=whole["config"]["fps"], resume=True)
    report = build(cfg)
    assert not partial.exists()  # its steps now live in the finished build
    same = ("bitexact", "verification", "estimate", "macs_by_bitwidth", "xnor_mac_share",
            "unmapped_nodes", "host_ops")
    assert {k: report[k] for k in same} == {k: whole[k] for k in same}
    # Only the steps after the last recorded one ran again.
    assert set(report["timings_s"]) == set(whole["timings_s"])
    assert (out / "model_hw.onnx").read_bytes() == \
        (Path(whole["config"]["out"]) / "model_hw.onnx").read_bytes()
