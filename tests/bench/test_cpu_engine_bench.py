"""bench/cpu_engine.py on one round: its report, per-op table and plot."""

from __future__ import annotations

import json

import pytest

from bnnpose.host.cpu_engine import native_kernels

BENCH = "cpu_engine"


@pytest.mark.skipif(native_kernels() is None, reason="no C compiler for the native kernels")
def test_one_round_writes_speedups_per_op_rows_and_a_plot(bench, tmp_path):
    assert bench.main(["--rounds", "1", "--iters", "1", "--per-op", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "cpu_engine.json").read_text())
    ms = result["median_ms"]
    assert set(ms) == {"engine_native", "engine_numpy", "torch_float", "onnxruntime_float"}
    assert result["speedup_vs_onnxruntime_float"] == pytest.approx(
        ms["onnxruntime_float"] / ms["engine_native"])
    per_op = result["per_op"]
    assert {"xnor conv", "int conv", "concat+add+threshold"} <= set(per_op["by_kind_ms"])
    assert per_op["sum_ms"] == pytest.approx(sum(r["ms"] for r in per_op["instructions"]))
    assert (tmp_path / "cpu_engine.png").stat().st_size > 0
    assert "models" not in result  # only with --models


def test_bitexact_photos_are_real_people_at_the_network_size(bench):
    names, frames = bench.people_photos(96)
    assert names[0] == "skimage astronaut" and len(names) == len(frames)
    assert frames.dtype == "uint8" and frames.shape[1:] == (96, 96, 3)
    if bench.OPENCV_DATA.is_dir():  # Debian's opencv-doc, which make setup installs
        assert "opencv messi5.jpg" in names
    assert len({f.tobytes() for f in frames}) == len(frames)


@pytest.mark.parametrize("argv, cause", [
    (["--models", "nosuch"], "unknown model 'nosuch'"),
    (["--overlay", "{tmp}/none"], "overlay folder not found"),
])
def test_bad_input_is_one_line(bench, tmp_path, capsys, argv, cause):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert bench.main([*argv, "--rounds", "1", "--iters", "1",
                       "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and cause in err
    assert not (tmp_path / "out").exists()
