"""Ship a trained pair as a registered network's checkpoints, with its record.

Copies the binary network and its float twin (their ``best.pt``) to
``models/checkpoints/MODEL.pt`` and ``MODEL-float.pt`` and writes the record ``MODEL.json``
beside them: the architecture, the parameter count, the data, the ``bnnpose train`` commands
that train both again, every epoch's held-out score and the wall times. The pair is one that
``bench/realism.py`` trained (one training data's rows of its JSON): then the record also holds
the benchmark's scores on every eval split (the real splits' labels come from a teacher:
agreement, not accuracy) and whether this checkout's renderer code and labels trained them. Or
any two finished runs of ``bnnpose train`` (``--runs``). Files are written under temporary
names and renamed, so a failure leaves the shipped ones as they were.

    .venv/bin/python bench/ship.py MODEL [--results bench/results/realism-MODEL.json]
        [--train-data mesh+footage] [--to models/checkpoints]
    .venv/bin/python bench/ship.py MODEL --runs BINARY_RUN FLOAT_RUN [--to DIR]
    .venv/bin/python bench/ship.py MODEL --binary-run RUN [--to DIR]

With ``--binary-run``, only the binary network is replaced: by a run of ``bnnpose train`` that
was distilled by the shipped float twin and started from it (a longer or changed binary step)
or from the shipped binary network (a further schedule; the record then lists both commands).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

from bnnpose.host.common import (BnnposeError, atomic_writer, run_main, sha256_file, shown_path,
                                 versions, write_json)
from bnnpose.models.checkpoint_io import checkpoint_dir, load_checkpoint
from bnnpose.models.registry import model_entry
from bnnpose.quantize.train import run_history, run_key
from bnnpose.quantize.train_config import TrainConfig, mix_sets, train_command
from bnnpose.quantize.train_data import renderer_digest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
KINDS = {"binary": "", "float": "-float"}  #: row key -> checkpoint name suffix
#: The parts of a shipped record that ``--binary-run`` keeps or updates.
RECORD_PARTS = ("data", "val", "scores", "wall_time_s", "sha256", "source")
#: How a continued binary network's time was measured, after its first run's phrase.
CONTINUATIONS = ", then the sum of the epochs' times of each continuation"


def results_path(model: str) -> Path:
    """Where ``bench/realism.py --model MODEL`` wrote its JSON (``realism.json`` for the
    benchmark's own network, which the check on the runs' model then confirms)."""
    own = RESULTS / f"realism-{model}.json"
    return own if own.is_file() else RESULTS / "realism.json"


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BnnposeError(f"cannot read {what} {path}: {e}") from None


def _run(row: dict, kind: str) -> Path:
    """The run folder of ``kind`` in a results row, with its finished best.pt."""
    best = Path(row["checkpoints"][kind])
    best = best if best.is_absolute() else REPO / best
    if not best.is_file():
        raise BnnposeError(f"the {kind} checkpoint of the results is missing: {best}")
    return best.parent


def _data(cfg: TrainConfig) -> dict:
    sets = [Path(spec.split(":", 1)[-1]).parent.name for spec, _ in mix_sets(cfg)]
    return {"rendered": cfg.data, "n_train": cfg.n_train, "n_val": cfg.n_val,
            "mixed_in": sets, "mix_repeat": cfg.mix_repeat if sets else None,
            "augmentation": {"flip": cfg.flip, "rotate_deg": cfg.rotate, "scale": cfg.scale}}


def benchmark_runs(results: Path, train_data: str) -> tuple[dict[str, Path], dict]:
    """``({"binary": run, "float": run}, result)`` of one training data in realism's JSON."""
    result = _read_json(results, "realism results")
    rows = [r for r in result.get("rows", []) if r.get("train_data") == train_data]
    if not rows:
        known = sorted({r.get("train_data") for r in result.get("rows", [])})
        raise BnnposeError(f"{results} has no rows trained on {train_data!r}; it has: "
                           f"{', '.join(map(str, known)) or 'none'}")
    result = {**result, "rows": rows, "path": results, "train_data": train_data}
    return {kind: _run(rows[0], kind) for kind in KINDS}, result


def _epochs(run: Path) -> list[dict]:
    epochs = run_history(run)
    if not epochs:
        raise BnnposeError(f"no epochs recorded in {run / 'metrics.jsonl'}")
    return epochs


def _val(epochs: list[dict]) -> dict:
    """A run's held-out scores: the best epoch's (the one ``best.pt`` keeps) and every one."""
    best = max(epochs, key=lambda e: e["val_pck"])
    return {"pck_at_0.2": round(best["val_pck"], 4), "best_epoch": best["epoch"],
            "steps": epochs[-1]["step"], "epochs": [round(e["val_pck"], 4) for e in epochs]}


def _registered_net(checkpoint: Path, model: str):
    """The binary network of ``checkpoint``, checked to be ``model`` as registered."""
    net, _ = load_checkpoint(checkpoint)
    if net.cfg != replace(model_entry(model).config, rsign=net.cfg.rsign):
        raise BnnposeError(f"the binary run's network is not {model} as registered")
    return net


def _hand_runs(model: str, binary_out: str | None = None) -> tuple[dict[str, str], list[str]]:
    """The run folders a record's ``bnnpose train`` commands write (binary, float; the binary
    one ``binary_out`` when given), and the command lines that copy their best.pt to the
    shipped checkpoints."""
    outs = {"binary": binary_out or f"out/train/{model}", "float": f"out/train/{model}-float"}
    return outs, [shlex.join(["cp", f"{outs[kind]}/best.pt", f"models/checkpoints/{model}{sfx}.pt"])
                  for kind, sfx in KINDS.items()]


def _is_file_with(path: str | None, sha: str | None) -> bool:
    """Whether ``path`` names a file whose sha256 is ``sha``."""
    return path is not None and Path(path).is_file() and sha256_file(path) == sha


def _out_dir(command: str) -> str:
    """The ``--out`` folder of a recorded ``bnnpose train`` command line."""
    words = shlex.split(command)
    if "--out" not in words[:-1]:
        raise BnnposeError(f"a recorded command names no --out folder: {command}")
    return words[words.index("--out") + 1]


def _copy_in(src: Path, dest: Path) -> str:
    """Copy under a temporary name, renamed when complete; returns the copy's sha256."""
    with atomic_writer(dest, "wb") as f, open(src, "rb") as s:
        shutil.copyfileobj(s, f)
    return sha256_file(dest)


def ship(model: str, runs: dict[str, Path], to: Path, result: dict | None = None) -> dict:
    """Copy the pair's best.pt and write the record; returns the record. ``result``: what
    :func:`benchmark_runs` read, for the benchmark's command and scores."""
    entry = model_entry(model)
    for kind, run in runs.items():
        if not (run / "best.pt").is_file():
            raise BnnposeError(f"no finished {kind} run in {run} (best.pt missing)")
    configs = {kind: TrainConfig.load(run / "config.json") for kind, run in runs.items()}
    for kind, cfg in configs.items():
        if cfg.model != model:
            raise BnnposeError(f"the {kind} run {runs[kind]} trained {cfg.model}, not {model}")
        if cfg.binary != (kind == "binary"):
            raise BnnposeError(f"{runs[kind]} is not a {kind} run")
    net = _registered_net(runs["binary"] / "best.pt", model)

    # The same two runs by hand: the float twin first, then the binary network from it.
    outs, copies = _hand_runs(model)
    teacher = f"{outs['float']}/best.pt"
    again = {kind: replace(cfg, out_dir=outs[kind],
                           **({"init_from": teacher, "distill_from": teacher}
                              if kind == "binary" and cfg.init_from else {}))
             for kind, cfg in configs.items()}
    commands = []
    if result is not None:
        budget = result["recipe"]
        commands += [shlex.join([
            "python", "bench/realism.py", "--model", model, "--data", result["train_data"],
            "--n-train", str(budget["n_train"]), "--epochs", str(budget["epochs"]),
            "--num-threads", str(configs["float"].num_threads)]),
            "# the same two runs with bnnpose train:"]
    commands += [train_command(again["float"], REPO), train_command(again["binary"], REPO),
                 *copies]
    record = {
        "model": model,
        "family": entry.family,
        "architecture": asdict(net.cfg),
        "parameters": sum(p.numel() for p in net.parameters()),
        "data": _data(configs["float"]),
        "commands": commands,
        "val": {},
        "scores": {},
        "wall_time_s": {},
        "sha256": {},
        "source": {"runs": {kind: shown_path(run, REPO) for kind, run in runs.items()}},
        "shipped_with": versions(),
    }
    if result is not None:
        record["source"].update(results=shown_path(result["path"], REPO),
                                train_data=result["train_data"], versions=result.get("versions"))
    for kind, run in runs.items():
        epochs = _epochs(run)
        name = "float_twin" if kind == "float" else kind
        record["val"][name] = _val(epochs)
        record["val"]["mean_pose"] = round(epochs[0]["val_pck_mean_pose"], 4)
        # bench/realism.py's runs record their whole session (rendering included); a run of
        # bnnpose train records its epochs.
        marker = run / "finished.json"
        finished = _read_json(marker, "run marker") if marker.is_file() else None
        record["wall_time_s"][name] = round(finished["session_wall_time_s"] if finished else
                                            sum(e.get("epoch_time_s", 0.0) for e in epochs))
        record["wall_time_s"]["measured"] = ("the training session, rendering included"
                                             if finished else "the sum of the epochs' times")
        if result is not None and finished is not None:
            # bench/realism.py keys a run by its recipe, its mixed-in labels and the renderer's
            # code. The same key now: this checkout's code and labels trained it. A different
            # one says they changed since, not that the renders did.
            record["data"][f"{name}_by_this_checkouts_code"] = finished["key"] == run_key(
                configs[kind], {"renderer": renderer_digest(configs[kind].data)})
    record["val"]["data"] = (f"{configs['float'].n_val} held-out samples of the training data's "
                             "kind: the epoch kept is the best on them")
    for r in result["rows"] if result is not None else []:
        record["scores"][r["eval_data"]] = {
            "people": r["n_people"], "teacher_labels": r["teacher_labels"],
            "mean_pose": round(r["mean_pose"], 4), "binary": round(r["binary"], 4),
            "float_twin": round(r["float"], 4), "binary_pck_box": round(r["binary_pck_box"], 4),
            "binary_coco_ap": round(r["binary_coco_ap"], 4)}
    to.mkdir(parents=True, exist_ok=True)
    for kind, suffix in KINDS.items():
        dest = to / f"{model}{suffix}.pt"
        record["sha256"][dest.name] = _copy_in(runs[kind] / "best.pt", dest)
    write_json(to / f"{model}.json", record, indent=1)
    return record


def reship_binary(model: str, run: Path, to: Path) -> dict:
    """Ship a binary network trained again from the shipped float twin (a longer or changed
    binary step), or one that continued the shipped binary network (a further schedule,
    distilled by the twin): the twin, its record and the data stay; the binary network, its
    held-out scores, its commands and its wall time are replaced (a continuation keeps the
    earlier commands and scores before its own, and adds its time to theirs). The scores on
    the eval splits that bench/realism.py gave the earlier binary network no longer hold: only
    the float twin's stay (bench/binary_vs_float.py scores the new pair)."""
    record = _read_json(to / f"{model}.json", "shipped record")
    float_command = next((c for c in record.get("commands", [])
                          if c.startswith("bnnpose train --float")), None)
    if float_command is None or not all(isinstance(record.get(k), dict) for k in RECORD_PARTS):
        raise BnnposeError(f"{to / model}.json is not a record bench/ship.py wrote (it needs "
                           f"the float twin's command and {', '.join(RECORD_PARTS)})")
    twin = to / f"{model}-float.pt"
    twin_sha = sha256_file(twin) if twin.is_file() else None
    if twin_sha is None or twin_sha != record["sha256"].get(twin.name):
        raise BnnposeError(f"{twin} is missing or not the float twin its record names")
    if not (run / "best.pt").is_file():
        raise BnnposeError(f"no finished binary run in {run} (best.pt missing)")
    cfg = TrainConfig.load(run / "config.json")
    if cfg.model != model or not cfg.binary:
        raise BnnposeError(f"{run} is not a binary run of {model}")
    # A run either starts again from the twin or continues the shipped binary network.
    continued = _is_file_with(cfg.init_from, record["sha256"].get(f"{model}.pt"))
    starts = [] if continued else [("--init-from", cfg.init_from)]
    for flag, path in (*starts, ("--distill-from", cfg.distill_from)):
        if not _is_file_with(path, twin_sha):
            nor = "" if flag == "--distill-from" else " nor continue the shipped binary network"
            raise BnnposeError(f"the run {run} did not train from the shipped float twin "
                               f"{twin}{nor} ({flag} {path})")
    shipped_data = {k: v for k, v in record["data"].items()
                    if not k.endswith("_by_this_checkouts_code")}
    if _data(cfg) != shipped_data:
        raise BnnposeError(f"the run {run} trained on other data than the shipped pair")
    net = _registered_net(run / "best.pt", model)

    outs, copies = _hand_runs(model)
    teacher = f"{outs['float']}/best.pt"
    epochs = _epochs(run)
    this_wall = round(sum(e.get("epoch_time_s", 0.0) for e in epochs))
    wall = record["wall_time_s"]
    measured = wall.get("measured", "not recorded")
    twin_measured = measured["float_twin"] if isinstance(measured, dict) else measured
    binary_measured = "the sum of the epochs' times"
    if continued:
        # The shipped network's own binary commands first, then this one from its best.pt.
        steps = [c for c in record["commands"]
                 if c.startswith("bnnpose train") and c != float_command]
        if not steps:
            raise BnnposeError(f"{to / model}.json names no bnnpose train command of the "
                               f"binary network that the run {run} continues")
        outs, copies = _hand_runs(model, f"{outs['binary']}-continued{len(steps)}")
        again = replace(cfg, out_dir=outs["binary"],
                        init_from=f"{_out_dir(steps[-1])}/best.pt", distill_from=teacher)
        binary_commands = [*steps, train_command(again, REPO)]
        val = {**_val(epochs), "continued_from": record["val"]["binary"]}
        before = measured["binary"] if isinstance(measured, dict) else measured
        if before != binary_measured:
            binary_measured = before if before.endswith(CONTINUATIONS) else before + CONTINUATIONS
        this_wall += int(wall.get("binary", 0))
        how = "continued from the shipped binary network"
    else:
        again = replace(cfg, out_dir=outs["binary"], init_from=teacher, distill_from=teacher)
        binary_commands = [train_command(again, REPO)]
        val = _val(epochs)
        how = "trained again from the shipped float twin"
    record.update(architecture=asdict(net.cfg), shipped_with=versions(),
                  commands=[float_command, *binary_commands, *copies])
    record["val"]["binary"] = val
    record["data"].pop("binary_by_this_checkouts_code", None)
    wall["binary"] = this_wall
    # How each was measured, one phrase while both runs were measured alike.
    wall["measured"] = (binary_measured if twin_measured == binary_measured else
                        {"binary": binary_measured, "float_twin": twin_measured})
    for scores in record["scores"].values():
        for key in [k for k in scores if k.startswith("binary")]:
            del scores[key]
    record["source"].setdefault("runs", {})["binary"] = shown_path(run, REPO)
    record["source"]["binary"] = (f"{how}, distilled by the shipped float twin; its scores on "
                                  "the eval splits: bench/results/binary_vs_float.json")
    record["sha256"][f"{model}.pt"] = _copy_in(run / "best.pt", to / f"{model}.pt")
    write_json(to / f"{model}.json", record, indent=1)
    return record



def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv, "ship.py")


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="registry name of the network")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--results", type=Path,
                        help="bench/realism.py's JSON (default: bench/results/realism-MODEL.json)")
    source.add_argument("--runs", type=Path, nargs=2, metavar=("BINARY", "FLOAT"),
                        help="two finished run folders of bnnpose train instead (no scores)")
    source.add_argument("--binary-run", type=Path, metavar="RUN",
                        help="a finished binary run of bnnpose train distilled by the shipped "
                        "float twin, started from it or from the shipped binary network: "
                        "replaces the binary network only")
    p.add_argument("--train-data", default="mesh+footage",
                   help="which trained pair of the results (default: %(default)s)")
    p.add_argument("--to", type=Path, default=checkpoint_dir(),
                   help="checkpoint folder (default: the package's models/checkpoints)")
    a = p.parse_args(argv)
    model_entry(a.model)
    if a.binary_run:
        record = reship_binary(a.model, a.binary_run, a.to)
        print(f"binary network: held-out PCK@0.2 {record['val']['binary']['pck_at_0.2']:.3f} "
              f"at epoch {record['val']['binary']['best_epoch']}")
    else:
        if a.runs:
            runs, result = dict(zip(KINDS, a.runs, strict=True)), None
        else:
            runs, result = benchmark_runs(a.results or results_path(a.model), a.train_data)
        record = ship(a.model, runs, a.to, result)
        for split, s in record["scores"].items():
            print(f"{split:<22} binary {s['binary']:.3f}  float twin {s['float_twin']:.3f}  "
                  f"mean pose {s['mean_pose']:.3f}")
    print(f"-> {a.to / a.model}.pt, {a.model}-float.pt, {a.model}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
