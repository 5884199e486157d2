"""bench/ship.py: a pair bench/realism.py trained, shipped as checkpoints with their record."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest

from bnnpose.models.checkpoint_io import load_checkpoint
from bnnpose.quantize.train_cli import build_parser
from bnnpose.quantize.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
BENCH = "ship"
sys.path.insert(0, str(REPO / "tests" / "quantize"))
from test_eval import SEEDS, write_coco  # noqa: E402

sys.path.pop(0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """bench/realism.py's results for bhg-tiny on mesh renders + a toy footage split."""
    root = tmp_path_factory.mktemp("realism")
    spec = importlib.util.spec_from_file_location("bench_realism_for_ship",
                                                  REPO / "bench" / "realism.py")
    realism = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(realism)
    realsets = root / "realset"
    for split, seeds in (("toy-eval", SEEDS[:4]), ("toy-train", SEEDS[4:10])):
        write_coco(realsets / split, seeds)
        (realsets / split / "ann.json").rename(realsets / split / "annotations.json")
    realism.REALSETS = realsets
    realism.RECIPE = {**realism.RECIPE, "n_val": 8, "batch_size": 8, "warmup_steps": 1}
    argv = ["--data", "mesh+footage", "--n-train", "16", "--epochs", "2", "--n-render", "4",
            "--render-workers", "1", "--work", str(root / "work"),
            "--cache-dir", str(root / "cache"), "--out", str(root / "out")]
    assert realism.main(argv) == 0
    return root, root / "out" / "realism.json"


def test_pair_is_copied_with_a_record_that_trains_it_again(bench, trained, capsys):
    root, results = trained
    to = root / "checkpoints"
    assert bench.main(["bhg-tiny", "--results", str(results), "--to", str(to)]) == 0
    rows = json.loads(results.read_text())["rows"]
    record = json.loads((to / "bhg-tiny.json").read_text())
    for kind, name in (("binary", "bhg-tiny.pt"), ("float", "bhg-tiny-float.pt")):
        run = Path(rows[0]["checkpoints"][kind]).parent
        assert (to / name).read_bytes() == (run / "best.pt").read_bytes()
        assert load_checkpoint(to / name)[1]["config"]["binary"] == (kind == "binary")
        # The recorded command line is `bnnpose train` with the run's own recipe.
        line = next(c for c in record["commands"] if c.startswith("bnnpose train")
                    and ("--float" in c) == (kind == "float"))
        given = {k: v for k, v in vars(build_parser().parse_args(shlex.split(line)[2:])).items()
                 if v is not None and k != "resume"}
        stored = TrainConfig.load(run / "config.json").recipe()
        again = TrainConfig(**given).recipe()
        for key in ("init_from", "distill_from", "mix", "mix_images"):
            stored.pop(key), again.pop(key)  # paths: the record's are the hand-run folders
        assert again == stored
        history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        name = "float_twin" if kind == "float" else kind
        assert record["val"][name]["epochs"] == [round(h["val_pck"], 4) for h in history]
        assert record["data"][f"{name}_by_this_checkouts_code"] is True
    assert record["data"]["mixed_in"] == ["toy-train"]
    assert "--mix-images" in record["commands"][3] and "--init-from" in record["commands"][3]
    assert set(record["scores"]) == {r["eval_data"] for r in rows}
    assert record["scores"]["toy-eval"]["teacher_labels"] is True
    assert record["parameters"] > 0 and record["architecture"]["binary"] is True
    assert "toy-eval" in capsys.readouterr().out


def test_any_two_runs_ship_without_scores(bench, trained):
    root, results = trained
    row = json.loads(results.read_text())["rows"][0]
    runs = [str(Path(row["checkpoints"][k]).parent) for k in ("binary", "float")]
    to = root / "from-runs"
    assert bench.main(["bhg-tiny", "--runs", *runs, "--to", str(to)]) == 0
    record = json.loads((to / "bhg-tiny.json").read_text())
    assert record["scores"] == {} and record["commands"][0].startswith("bnnpose train --float")
    assert not any(k.endswith("_by_this_checkouts_code") for k in record["data"])
    assert (to / "bhg-tiny.pt").read_bytes() == (Path(runs[0]) / "best.pt").read_bytes()
    assert record["wall_time_s"]["measured"] == "the training session, rendering included"
    # A run of bnnpose train has no bench marker: its epochs' times stand in.
    for run in runs:
        (Path(run) / "finished.json").rename(Path(run) / "finished.moved")
    try:
        assert bench.main(["bhg-tiny", "--runs", *runs, "--to", str(root / "plain")]) == 0
    finally:
        for run in runs:
            (Path(run) / "finished.moved").rename(Path(run) / "finished.json")
    plain = json.loads((root / "plain" / "bhg-tiny.json").read_text())
    assert plain["wall_time_s"]["measured"] == "the sum of the epochs' times"
    assert plain["wall_time_s"]["binary"] >= 0
    # Swapped, the binary run is refused before anything is written.
    assert bench.main(["bhg-tiny", "--runs", *runs[::-1], "--to", str(root / "swapped")]) == 2
    assert not (root / "swapped").exists()


def test_a_binary_network_trained_again_from_the_shipped_twin_replaces_the_binary_only(
        bench, trained, capsys):
    from dataclasses import replace

    from bnnpose.quantize.train import train

    root, results = trained
    to = root / "reshipped"
    assert bench.main(["bhg-tiny", "--results", str(results), "--to", str(to)]) == 0
    before = json.loads((to / "bhg-tiny.json").read_text())
    twin = (to / "bhg-tiny-float.pt").read_bytes()
    row = json.loads(results.read_text())["rows"][0]
    shipped = TrainConfig.load(Path(row["checkpoints"]["binary"]).parent / "config.json")
    run = train(replace(shipped, epochs=3, init_from=str(to / "bhg-tiny-float.pt"),
                        distill_from=str(to / "bhg-tiny-float.pt"), out_dir=str(root / "again")))
    assert bench.main(["bhg-tiny", "--binary-run", str(run), "--to", str(to)]) == 0
    record = json.loads((to / "bhg-tiny.json").read_text())
    assert (to / "bhg-tiny.pt").read_bytes() == (run / "best.pt").read_bytes()
    assert (to / "bhg-tiny-float.pt").read_bytes() == twin
    assert len(record["val"]["binary"]["epochs"]) == 3
    # The twin's wall time was its bench session's; the binary network's, its epochs' sum.
    assert record["wall_time_s"]["measured"] == {
        "binary": "the sum of the epochs' times",
        "float_twin": "the training session, rendering included"}
    assert record["wall_time_s"]["float_twin"] == before["wall_time_s"]["float_twin"]
    for kept in ("float_twin", "mean_pose"):
        assert record["val"][kept] == before["val"][kept]
    assert record["data"] == {k: v for k, v in before["data"].items()
                              if k != "binary_by_this_checkouts_code"}
    # The earlier binary network's split scores are gone; the float twin's stay.
    assert {k for s in record["scores"].values() for k in s if k.startswith("binary")} == set()
    assert record["scores"]["toy-eval"]["float_twin"] == before["scores"]["toy-eval"]["float_twin"]
    # The commands train the twin as before, then this binary step from it.
    float_cmd, binary_cmd = record["commands"][:2]
    assert float_cmd in before["commands"] and "--epochs 3" in binary_cmd
    assert "--init-from out/train/bhg-tiny-float/best.pt" in binary_cmd
    assert "held-out PCK@0.2" in capsys.readouterr().out

    # A further schedule from the shipped binary network, distilled by the twin, continues it:
    # the record trains the twin, then the first binary step, then this one from its best.pt.
    further = train(replace(shipped, epochs=1, init_from=str(to / "bhg-tiny.pt"),
                            distill_from=str(to / "bhg-tiny-float.pt"),
                            out_dir=str(root / "further")))
    first = record
    assert bench.main(["bhg-tiny", "--binary-run", str(further), "--to", str(to)]) == 0, \
        capsys.readouterr().err
    record = json.loads((to / "bhg-tiny.json").read_text())
    assert (to / "bhg-tiny.pt").read_bytes() == (further / "best.pt").read_bytes()
    assert (to / "bhg-tiny-float.pt").read_bytes() == twin
    assert record["commands"][:2] == first["commands"][:2]
    cont = record["commands"][2]
    assert "--init-from out/train/bhg-tiny/best.pt" in cont and "--epochs 1" in cont
    assert "--out out/train/bhg-tiny-continued1" in cont
    assert "--distill-from out/train/bhg-tiny-float/best.pt" in cont
    assert record["commands"][3] == ("cp out/train/bhg-tiny-continued1/best.pt "
                                     "models/checkpoints/bhg-tiny.pt")
    # Run as written, the continuation's command is the run's own recipe.
    again = build_parser().parse_args(shlex.split(cont)[2:])
    assert again.epochs == 1 and again.model in (None, "bhg-tiny")  # bhg-tiny: the default
    assert record["val"]["binary"]["continued_from"] == first["val"]["binary"]
    assert len(record["val"]["binary"]["epochs"]) == 1
    assert record["wall_time_s"]["binary"] >= first["wall_time_s"]["binary"]
    assert record["source"]["binary"].startswith("continued from the shipped binary network")
    capsys.readouterr()  # the continuation's training and shipping output

    # A run from another starting point is refused, and nothing changes.
    shipped_files = {p.name: p.read_bytes() for p in to.iterdir()}
    foreign = root / "foreign"
    foreign.mkdir()
    for name in ("best.pt", "metrics.jsonl"):
        (foreign / name).write_bytes((run / name).read_bytes())
    replace(TrainConfig.load(run / "config.json"),
            init_from=row["checkpoints"]["binary"]).save(foreign / "config.json")
    assert bench.main(["bhg-tiny", "--binary-run", str(foreign), "--to", str(to)]) == 2
    err = capsys.readouterr().err.strip()
    assert "did not train from the shipped float twin" in err and len(err.splitlines()) == 1
    assert "nor continue the shipped binary network (--init-from" in err
    assert {p.name: p.read_bytes() for p in to.iterdir()} == shipped_files
    # A continuation of a record that names no binary command to continue is refused.
    orphan = root / "orphan"
    orphan.mkdir()
    for name in ("best.pt", "metrics.jsonl"):
        (orphan / name).write_bytes((further / name).read_bytes())
    replace(TrainConfig.load(further / "config.json"),
            init_from=str(to / "bhg-tiny.pt")).save(orphan / "config.json")
    bare = {**record, "commands": [record["commands"][0], *record["commands"][-2:]]}
    (to / "bhg-tiny.json").write_text(json.dumps(bare))
    assert bench.main(["bhg-tiny", "--binary-run", str(orphan), "--to", str(to)]) == 2
    err = capsys.readouterr().err.strip()
    assert "names no bnnpose train command of the binary network" in err
    assert len(err.splitlines()) == 1
    assert json.loads((to / "bhg-tiny.json").read_text()) == bare
    assert (to / "bhg-tiny.pt").read_bytes() == shipped_files["bhg-tiny.pt"]
    # So is a record that bench/ship.py did not write.
    (to / "bhg-tiny.json").write_text(json.dumps({"model": "bhg-tiny"}))
    assert bench.main(["bhg-tiny", "--binary-run", str(run), "--to", str(to)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a record bench/ship.py wrote" in err and len(err.splitlines()) == 1
    assert (to / "bhg-tiny.pt").read_bytes() == shipped_files["bhg-tiny.pt"]


@pytest.mark.parametrize("args, says", [
    (["--train-data", "stick"], "no rows trained on 'stick'; it has: mesh+footage"),
    (["--model-swap"], "trained bhg-tiny, not bhg-c64-z2"),
    (["--results-missing"], "cannot read realism results"),
])
def test_bad_input_is_one_line_and_ships_nothing(bench, trained, capsys, args, says):
    root, results = trained
    to = root / "refused"
    model = "bhg-c64-z2" if args == ["--model-swap"] else "bhg-tiny"
    if args == ["--results-missing"]:
        results = root / "nothing.json"
    argv = [model, "--results", str(results), "--to", str(to)]
    argv += args if args[0] == "--train-data" else []
    assert bench.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1
    assert not to.exists() or not any(to.iterdir())
