"""`bnnpose models` on a small registered hourglass: a real FINN build, then the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bnnpose.host.common import BnnposeError
from bnnpose.hw_build import models_table
from bnnpose.models import registry
from bnnpose.models.hourglass import HourglassConfig

KEYS = {"model", "family", "board", "params", "xnor_mac_share", "fps", "lut", "bram18", "uram",
        "dsp", "fits", "unmapped_nodes", "bitexact"}


@pytest.fixture
def small_registered(monkeypatch):
    small = HourglassConfig(input_size=32, stem_channels=8, channels=8, depth=1, num_joints=2)
    monkeypatch.setitem(registry.MODELS, "bhg-test", registry.ModelEntry(small, "hourglass"))
    return "bhg-test"


def test_models_json_measures_then_reads_the_cache(small_registered, tmp_path, capsys):
    args = ["--models", small_registered, "--boards", "pynq-z2", "--fps", "20000",
            "--cache", str(tmp_path), "--json"]
    assert models_table.main(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert KEYS <= set(row) and row["cached"] is False
    assert row["family"] == "hourglass" and row["weights"].startswith("untrained")
    assert row["unmapped_nodes"] == [] and row["bitexact"] is True, row["bitexact_stages"]
    assert set(row["bitexact_stages"]) >= {"qonnx", "finn_onnx", "streamlined", "hw_layers",
                                           "folded_hw"}
    assert row["fps"] > 0 and row["lut"] > 0 and row["fits"] is True
    # Every conv holds 1-bit weights; BatchNorm parameters are the rest.
    assert 0 < row["binary_params"] < row["params"]
    assert sum(row["macs_by_bitwidth"].values()) > 0 and 0 < row["xnor_mac_share"] < 1
    assert models_table.main(args) == 0
    (again,) = json.loads(capsys.readouterr().out)
    assert again["cached"] is True
    assert {k: v for k, v in again.items() if k != "cached"} == \
        {k: v for k, v in row.items() if k != "cached"}
    models_table.main(args[:-1])  # the table
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["model", "family", "board"] and "bhg-test" in out[1]


def test_a_row_past_its_budget_is_skipped_with_a_line(small_registered, tmp_path, capsys):
    args = ["--models", small_registered, "--boards", "pynq-z2", "zcu104", "--fps", "20000",
            "--cache", str(tmp_path), "--json", "--budget", "0.5"]
    assert models_table.main(args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == []
    skipped = [line for line in err.splitlines() if line.startswith("bnnpose models: skipped")]
    assert len(skipped) == 2 and "bhg-test on pynq-z2: not built within the 0.5 s budget" in \
        skipped[0] and "--all" in skipped[0]
    assert list(tmp_path.iterdir()) == []  # nothing half-built is left in the cache


def test_fps_max_rows_are_the_fastest_folding_that_fits(small_registered, tmp_path, capsys):
    args = ["--models", small_registered, "--boards", "pynq-z2", "--fps", "max",
            "--cache", str(tmp_path), "--json", "--all"]
    assert models_table.main(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["target_fps"] == "max" and row["fits"] is True and row["bitexact"] is True
    search = row["fps_search"]
    assert search["probes"] >= 2 and search["chosen_target"] > 0
    report = json.loads((Path(row["work_dir"]) / "build" / "report.json").read_text())
    assert report["fps_search"]["chosen_target"] == search["chosen_target"]
    # No probe that fits is faster than the chosen folding.
    assert max(p["fps"] for p in report["fps_search"]["probes"] if p["fits"]) == row["fps"]


@pytest.mark.parametrize("args, message", [
    (["--budget", "0"], "--budget must be positive"),
    (["--models", "nope"], "unknown model 'nope'"),
    (["--boards", "zedboard"], "unknown board 'zedboard'"),
    (["--fps", "0"], "--fps must be positive"),
    (["--fps", "fast"], "--fps takes frames per second or 'max'"),
])
def test_bad_arguments_are_one_line_errors(args, message, tmp_path):
    with pytest.raises(BnnposeError, match=message):
        models_table.main([*args, "--cache", str(tmp_path)])
