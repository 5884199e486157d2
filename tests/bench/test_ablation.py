"""bench/ablation.py on a tiny budget: two variants of 2 steps each, then a reusing rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

BENCH = "ablation"
VARIANT_KEYS = {"name", "bits", "pad_value", "binary", "steps", "val_pck", "val_pck_mean_pose",
                "curve", "train_time_s", "wall_time_s", "maps_to_finn", "model_form", "run_dir",
                "command", "source"}


@pytest.fixture(scope="module")
def ablation(bench):
    return bench


@pytest.fixture(scope="module")
def tiny(ablation, tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    # Real-valued streams with -1 padding against 2-bit streams with zero padding: the two
    # differ from each other on both axes the bench varies.
    argv = ["--variants", "k0-real", "k2-pad0", "--n-train", "64", "--n-val", "16",
            "--epochs", "1", "--work", str(root / "work"), "--cache-dir", str(root / "cache"),
            "--out", str(root / "out")]
    assert ablation.main(argv) == 0
    return argv, root, json.loads((root / "out" / "ablation.json").read_text())


def test_result_records_every_variant(tiny):
    _, root, result = tiny
    assert {"metric", "variants", "float_twin", "recipe", "notes", "versions", "command",
            "total_wall_time_s"} <= set(result)
    assert [v["name"] for v in result["variants"]] == ["k0-real", "k2-pad0"]
    for v in result["variants"]:
        assert VARIANT_KEYS <= set(v), VARIANT_KEYS - set(v)
        assert v["steps"] == 2 and [c["step"] for c in v["curve"]] == [2]
        assert 0.0 <= v["val_pck"] <= 1.0
        assert v["val_pck_mean_pose"] == result["variants"][0]["val_pck_mean_pose"]
        assert v["maps_to_finn"] is False
    assert "bipolar" in result["notes"]["maps_to_finn"]
    assert 0.0 < result["float_twin"]["val_pck"] <= 1.0
    assert (root / "out" / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variants_are_built_as_configured(tiny):
    _, root, result = tiny
    real, pad0 = result["variants"]
    assert (real["bits"], real["pad_value"]) == (0, -1.0)
    assert (pad0["bits"], pad0["pad_value"]) == (2, 0.0)
    # No quantizer on the k=0 network's streams, only its sign() activations.
    assert real["model_form"]["stream_quantizer_bits"] == {}
    assert real["model_form"]["sign_quantizers"] > 0
    assert real["model_form"]["pad_values"] == [-1.0]
    assert set(pad0["model_form"]["stream_quantizer_bits"]) == {"2"}
    assert pad0["model_form"]["pad_values"] == [0.0]
    teachers = set()
    for v in result["variants"]:
        ckpt = torch.load(root / "work" / Path(v["run_dir"]).name / "last.pt",
                          map_location="cpu", weights_only=True)
        assert (ckpt["config"]["bits"], ckpt["config"]["pad_value"]) == (v["bits"],
                                                                        v["pad_value"])
        train_cfg = ckpt["train_config"]
        assert train_cfg["init_from"] == train_cfg["distill_from"]
        teachers.add(train_cfg["init_from"])
    assert len(teachers) == 1


def test_maps_to_finn_follows_the_form(ablation):
    maps = {v.name: v.maps_to_finn()[0] for v in ablation.VARIANTS}
    assert maps == {"k2": True, "k3": True, "k4": True, "k0-real": False, "k2-pad0": False,
                    "k2-ends8": True, "float": False, "shipped": True, "rsign": True,
                    "approx": True, "at": True, "2stage": True, "wd": True,
                    "rsign-approx": True}


def test_tricks_suite_trains_each_trick_and_records_a_runnable_command(ablation, tmp_path):
    import shlex

    from bnnpose.quantize.train_cli import build_parser
    from bnnpose.quantize.train_config import TrainConfig

    argv = ["--suite", "tricks", "--variants", "shipped", "rsign", "2stage", "--seeds", "2",
            "--n-train", "32", "--n-val", "16", "--epochs", "3", "--work", str(tmp_path / "work"),
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert ablation.main(argv) == 0
    assert not (tmp_path / "out" / "ablation.json").exists()
    result = json.loads((tmp_path / "out" / "ablation_tricks.json").read_text())
    base, rsign, two_stage = result["variants"]
    assert rsign["tricks"] == {"rsign": True} and rsign["model_form"]["rsign_thresholds"] > 0
    assert two_stage["tricks"] == {"float_weight_epochs": 2}
    assert two_stage["model_form"]["rsign_thresholds"] == 0
    assert (base["bits"], base["pad_value"]) == (3, -1.0)  # bhg-tiny as registered
    # Two seeds each: the mean, the spread and the paired difference from the shipped form.
    assert "vs_baseline" not in base
    for v in result["variants"]:
        assert v["seeds"] == [0, 1] and [r["seed"] for r in v["runs"]] == [0, 1]
        assert v["val_pck"] == pytest.approx(sum(v["val_pck_per_seed"]) / 2)
        assert v["val_pck_std"] is not None and len({r["run_dir"] for r in v["runs"]}) == 2
        if v is not base:
            assert v["vs_baseline"]["per_seed"] == pytest.approx(
                [a - b for a, b in zip(v["val_pck_per_seed"], base["val_pck_per_seed"])])
    for run in (r for v in result["variants"] for r in v["runs"]):
        ckpt = torch.load(tmp_path / "work" / Path(run["run_dir"]).name / "last.pt",
                          map_location="cpu", weights_only=True)
        assert ckpt["train_config"]["seed"] == run["seed"]
        # The recorded command is `bnnpose train` with the run's recipe.
        words = shlex.split(run["command"])
        assert words[:2] == ["bnnpose", "train"]
        given = {k: x for k, x in vars(build_parser().parse_args(words[2:])).items()
                 if x is not None and k != "resume"}
        assert TrainConfig(**given).recipe() | {"init_from": None, "distill_from": None} == \
            TrainConfig.from_dict(ckpt["train_config"]).recipe() | {
                "init_from": None, "distill_from": None}
    assert (tmp_path / "out" / "ablation_tricks.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_reuses_finished_runs_and_a_new_recipe_does_not(ablation, tiny, monkeypatch):
    argv, root, first = tiny

    def no_training(cfg):
        raise AssertionError(f"retrained {cfg.out_dir}")

    monkeypatch.setattr(ablation, "train", no_training)
    assert ablation.main(argv) == 0
    again = json.loads((root / "out" / "ablation.json").read_text())
    assert all(v["reused"] for v in again["variants"])
    for a, b in zip(first["variants"], again["variants"], strict=True):
        assert (a["run_dir"], a["val_pck"], a["curve"]) == (b["run_dir"], b["val_pck"],
                                                            b["curve"])
    with pytest.raises(AssertionError, match="retrained"):
        ablation.main([*argv, "--epochs", "2"])


def test_a_missing_float_twin_is_one_line(ablation, tmp_path, capsys):
    argv = ["--variants", "k0-real", "--n-train", "8", "--n-val", "8", "--epochs", "1",
            "--float-twin", str(tmp_path / "none.pt"), "--work", str(tmp_path / "work"),
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert ablation.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.pt" in err
    assert not (tmp_path / "out").exists()
