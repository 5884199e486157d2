"""bench/realism.py on a tiny budget: the three training data, their scores, goals and reuse."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BENCH = "realism"
sys.path.insert(0, str(REPO / "tests" / "quantize"))
from test_eval import SEEDS, write_coco  # noqa: E402

sys.path.pop(0)


@pytest.mark.parametrize("argv, says", [
    (["--model", "nosuch"], "unknown model 'nosuch'"),
    (["--binary-epochs", "0"], "--binary-epochs must be at least 1, not 0"),
    pytest.param(["--device", "cuda"], "sees no CUDA GPU", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_bad_model_or_device_is_one_line(bench, capsys, argv, says):
    assert bench.main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_three_data_trained_scored_and_reused(bench, tmp_path, monkeypatch, capsys):
    # Stand-ins for make realset's splits: rendered people written as COCO keypoints.
    realsets = tmp_path / "realset"
    write_coco(realsets / "toy-eval", SEEDS[:4])
    write_coco(realsets / "toy-train", SEEDS[4:10])
    for split in ("toy-eval", "toy-train"):
        (realsets / split / "ann.json").rename(realsets / split / "annotations.json")
    monkeypatch.setattr(bench, "REALSETS", realsets)
    monkeypatch.setattr(bench, "RECIPE", {**bench.RECIPE, "n_val": 8, "batch_size": 8,
                                          "warmup_steps": 1})
    argv = ["--n-train", "16", "--epochs", "1", "--binary-epochs", "2", "--n-render", "4",
            "--render-workers", "1",
            "--work", str(tmp_path / "work"), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out")]
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "out" / "realism.json").read_text())
    rows = {(r["train_data"], r["eval_data"]): r for r in result["rows"]}
    assert set(rows) == {(t, e) for t in bench.DATA
                         for e in ("toy-eval", "stick renders:4", "mesh renders:4")}
    assert all(r["teacher_labels"] == (r["eval_data"] == "toy-eval") for r in rows.values())
    for r in rows.values():
        assert 0 <= r["float"] <= 1 and 0 <= r["binary"] <= 1
        assert r["float_margin"] == pytest.approx(r["float"] - r["mean_pose"])
        assert 0 <= r["binary_pck_box"] <= 1 and 0 <= r["float_coco_ap"] <= 1
        assert set(r["float_by_extent"]) == {"upper_body", "full_body"}
        assert set(r["binary_mirrored_by_facing"]) == {"front", "back", "unclear"}
        assert 0 <= r["float_flip_test"] <= 1 and 0 <= r["binary_flip_test"] <= 1
    config = json.loads(next((tmp_path / "work").glob("mesh+footage-float-*/config.json"))
                        .read_text())
    assert config["data"] == "mesh" and config["mix"][0].endswith("toy-train/annotations.json")
    binary = json.loads(next((tmp_path / "work").glob("mesh-binary-*/config.json")).read_text())
    assert binary["rsign"] is True and binary["init_from"].endswith("best.pt")
    assert binary["epochs"] == 2 == result["recipe"]["binary"]["epochs"]
    assert json.loads(next((tmp_path / "work").glob("mesh-float-*/config.json")).read_text()
                      )["epochs"] == 1
    assert set(result["goals_met"]) == set(bench.DATA)
    speed = result["renderers"]["crops_per_s_one_core"]
    assert speed["stick"] > 0 and speed["mesh"] > 0
    assert (tmp_path / "out" / "realism.png").read_bytes()[:4] == b"\x89PNG"
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*/last.pt")}
    assert len(stamps) == 6
    capsys.readouterr()
    assert bench.main(argv) == 0  # finished runs are reused
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_goals_count_a_margin_of_exactly_the_goal(bench):
    # pose2sim-eval's 630 joints: 181 found against the mean pose's 118 is exactly +0.10.
    row = {"train_data": "mesh+footage", "float_margin": 0.25,
           "binary_margin": 181 / 630 - 118 / 630}
    assert row["binary_margin"] < 0.10  # what the subtraction gives
    assert bench.goals_met([row], ["mesh+footage"]) == {
        "mesh+footage": {"float": True, "binary": True}}
    short = {**row, "binary_margin": 180 / 630 - 118 / 630}
    assert bench.goals_met([row, short], ["mesh+footage"])["mesh+footage"]["binary"] is False
