"""Synthetic-to-real: what the training data is worth on real people.

The same network (bhg-tiny: its float twin, then the binary network initialised from and
distilled by that twin) and the same recipe (``RECIPE``) are trained on

* ``stick``: the stick-figure renders (``quantize/synthetic.py``);
* ``mesh``: the mesh-body renders (``quantize/mesh_render.py``);
* ``mesh+footage``: the mesh-body renders plus the people of every teacher-labelled *train*
  split of ``make realset`` (``out/realset/*-train``), each seen ``mix_repeat`` times an epoch;

and scored with ``bnnpose eval``'s code on every real *eval* split of ``make realset`` and on
held-out renders of both renderers. The real splits are labelled by a teacher network
(MediaPipe): their numbers measure **agreement with the teacher, not accuracy**. Each score
stands next to the mean pose of the training data (the higher of the stick renders' and the
run's own), the floor a network must clear to have learnt anything about the image.

The renderers' throughput (crops per second on one core, both measured in this run, one after
the other, each pinned to one CPU: ``quantize/render_speed.py``) goes into the same JSON.

Writes ``bench/results/realism.json`` and ``realism.png`` (``realism-MODEL.*`` for another
``--model``) and prints a table. Runs live under ``--work`` in folders named by their recipe; a
finished run is reused.

    .venv/bin/python bench/realism.py [--data stick mesh mesh+footage] [--n-train 8000]
        [--epochs 16] [--binary-epochs N] [--model bhg-tiny] [--render-workers 2]
        [--work out/bench/realism] [--num-threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bnnpose.host.common import (BnnposeError, atomic_writer, run_main, shown_path, versions,
                                 write_json)
from bnnpose.models.checkpoint_io import load_checkpoint
from bnnpose.models.registry import model_entry
from bnnpose.quantize import datasets
from bnnpose.quantize.evaluate import evaluate_dataset, oks_ap, train_mean_pose
from bnnpose.quantize.render_speed import crops_per_second
from bnnpose.quantize.train import trained_run
from bnnpose.quantize.train_config import DEVICES, TrainConfig, resolve_device
from bnnpose.quantize.train_data import renderer_digest

REPO = Path(__file__).resolve().parents[1]
REALSETS = REPO / "out" / "realset"
RESULTS = REPO / "bench" / "results"
WORK = REPO / "out" / "bench" / "realism"
CACHE = REPO / "out" / "cache" / "synthetic"
MODEL = "bhg-tiny"
DATA = ("stick", "mesh", "mesh+footage")
#: The shipped bhg-tiny's loss, sigma, head affine and augmentation.
RECIPE = {"model": MODEL, "n_val": 256, "batch_size": 32, "warmup_steps": 50, "sigma": 2.0,
          "loss": "softmax", "head_affine": True, "rotate": 15.0, "scale": 0.15, "seed": 0}
FLOAT_STEP = {"binary": False, "lr": 2e-3}
#: RSign's learnt thresholds: +4.0 PCK points on the binary step in
#: bench/results/ablation_tricks.json (3 seeds), and FINN absorbs them.
BINARY_STEP = {"binary": True, "lr": 1e-3, "distill_weight": 1.0, "rsign": True}
MIX_REPEAT = 4
#: Goals: float twin and binary network above the mean pose on every real eval split.
GOAL_FLOAT, GOAL_BINARY = 0.20, 0.10
EPS = 1e-9


def real_splits(kind: str) -> dict[str, Path]:
    """The teacher-labelled splits of ``make realset`` that exist: ``kind`` is eval or train."""
    return {p.parent.name: p.parent for p in sorted(REALSETS.glob(f"*-{kind}/annotations.json"))}


def data_recipe(name: str) -> dict:
    if name == "stick":
        return {"data": "synthetic"}
    if name == "mesh":
        return {"data": "mesh"}
    if name == "mesh+footage":
        train_sets = real_splits("train")
        if not train_sets:
            raise BnnposeError("mesh+footage needs teacher-labelled footage: run `make realset`")
        return {"data": "mesh", "mix_repeat": MIX_REPEAT,
                "mix": [f"coco:{p / 'annotations.json'}" for p in train_sets.values()],
                "mix_images": [str(p / "images") for p in train_sets.values()]}
    raise BnnposeError(f"unknown training data {name!r}; known: {', '.join(DATA)}")


def trained_pair(name: str, budget: dict, session: dict, work: Path,
                 binary_epochs: int) -> dict[str, Path]:
    """``{"float": best.pt, "binary": best.pt}`` trained on data ``name``; the float twin
    runs ``budget["epochs"]``, the binary step ``binary_epochs``."""
    common = {**RECIPE, **budget, **data_recipe(name), **session}
    if common["model"] != MODEL:
        name = f"{common['model']}-{name}"
    # A changed renderer is a new run.
    identity = {"renderer": renderer_digest(common["data"])}
    float_run = trained_run(TrainConfig(**common, **FLOAT_STEP), work, f"{name}-float",
                            identity)
    teacher = str(float_run / "best.pt")
    binary = {**common, "epochs": binary_epochs}
    binary_run = trained_run(TrainConfig(**binary, **BINARY_STEP, init_from=teacher,
                                         distill_from=teacher), work, f"{name}-binary", identity)
    return {"float": float_run / "best.pt", "binary": binary_run / "best.pt"}


def eval_sets(n_render: int) -> dict:
    sets = {name: datasets.coco(p / "annotations.json", p / "images")
            for name, p in real_splits("eval").items()}
    if not sets:
        raise BnnposeError("no teacher-labelled eval split: run `make realset`")
    sets[f"stick renders:{n_render}"] = datasets.synthetic(n_render)
    sets[f"mesh renders:{n_render}"] = datasets.mesh(n_render)
    return sets


def goals_met(real_rows: list[dict], data: list[str]) -> dict:
    """Per training data: whether the float twin and the binary network clear the mean pose by
    their goals on every real eval split."""
    goals = {}
    for name in data:
        mine = [r for r in real_rows if r["train_data"] == name]
        # PCKs are shares of joint counts: a margin of exactly the goal (e.g. 63 of 630
        # joints) comes out of the subtraction a rounding error below it.
        goals[name] = {"float": all(r["float_margin"] >= GOAL_FLOAT - EPS for r in mine),
                       "binary": all(r["binary_margin"] >= GOAL_BINARY - EPS for r in mine)}
    return goals


def run_mean_pose(run_dir: Path, model_cfg) -> np.ndarray:
    """The mean pose of a run's own training crops (renders and mixed-in people)."""
    from bnnpose.quantize.train_data import training_arrays

    cfg = TrainConfig.load(run_dir / "config.json")
    (_, kp, vis), _ = training_arrays(cfg, model_cfg)
    return np.nanmean(np.where(vis[..., None], kp, np.nan), axis=0)


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv, "realism.py")


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="*", default=list(DATA), choices=DATA)
    p.add_argument("--model", default=MODEL, help="registry name of the network (default: "
                   "%(default)s, the network the goals are set for)")
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=16)
    # The binary network learns more slowly than its float twin (it is still climbing at 16
    # epochs in bench/results/realism-bhg-c64-z2.json), so its schedule can be longer.
    p.add_argument("--binary-epochs", type=int, default=None,
                   help="epochs of the binary step (default: --epochs)")
    p.add_argument("--n-render", type=int, default=256, help="held-out renders per renderer")
    p.add_argument("--render-workers", type=int, default=2)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=DEVICES,
                   help="where the networks train (not part of a run's recipe)")
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--cache-dir", type=Path, default=CACHE)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    model_entry(a.model)  # an unknown name or a missing GPU is one line, before anything runs
    for flag, value in (("--epochs", a.epochs), ("--binary-epochs", a.binary_epochs)):
        if value is not None and value < 1:
            raise BnnposeError(f"{flag} must be at least 1, not {value}")
    resolve_device(a.device)
    binary_epochs = a.binary_epochs or a.epochs

    started = time.perf_counter()
    speed = crops_per_second()
    budget = {"model": a.model, "n_train": a.n_train, "epochs": a.epochs}
    session = {"cache_dir": str(a.cache_dir), "num_threads": a.num_threads,
               "render_workers": a.render_workers, "device": a.device}
    # Train everything first: the eval splits are listed afterwards, so a split labelled
    # meanwhile is scored too.
    pairs = {name: trained_pair(name, budget, session, a.work, binary_epochs)
             for name in a.data}
    sets = eval_sets(a.n_render)
    real_names = set(real_splits("eval"))
    rows = []
    for name, paths in pairs.items():
        nets = {kind: load_checkpoint(path)[0] for kind, path in paths.items()}
        own = run_mean_pose(paths["float"].parent, nets["float"].cfg)
        stick = train_mean_pose(cfg=nets["float"].cfg)
        for set_name, data in sets.items():
            row = {"train_data": name, "eval_data": set_name, "n_people": len(data.instances),
                   "teacher_labels": set_name in real_names,
                   "checkpoints": {k: shown_path(v, REPO) for k, v in paths.items()}}
            scored = {kind: evaluate_dataset(net, data, mean_pose=own)
                      for kind, net in nets.items()}
            # The mean pose's score depends on the data alone: the run's own comes with the
            # scores above, the stick renders' needs one more pass.
            floors = [evaluate_dataset(nets["float"], data, mean_pose=stick)["pck_mean_pose"],
                      scored["float"]["pck_mean_pose"]]
            row["mean_pose"] = max(f for f in floors if f is not None)
            for kind, r in scored.items():
                row[kind] = r["pck"]
                # As `bnnpose run --flip-test` deploys it: each crop and its mirror image.
                row[f"{kind}_flip_test"] = evaluate_dataset(nets[kind], data, mean_pose=own,
                                                            flip_test=True)["pck"]
                row[f"{kind}_per_joint"] = {j: v["pck"] for j, v in r["per_joint"].items()}
                # Every person (the box normaliser), upper vs full bodies, and OKS AP.
                row[f"{kind}_pck_box"] = r["pck_box"]
                row[f"{kind}_by_extent"] = r["by_extent"]
                # Left-right mirrored people among those facing the camera or turned away.
                row[f"{kind}_mirrored_by_facing"] = r["mirrored_by_facing"]
                row[f"{kind}_coco_ap"] = oks_ap(data, r)
            row["float_margin"] = row["float"] - row["mean_pose"]
            row["binary_margin"] = row["binary"] - row["mean_pose"]
            rows.append(row)
    real = [r for r in rows if r["teacher_labels"]]
    goals = goals_met(real, a.data)
    result = {
        "metric": "PCK@0.2 of the torso diagonal, joints shared by name; mean_pose is the "
                  "higher of the stick renders' and the run's own training mean pose; "
                  "*_pck_box: PCK@0.1 of the person box, every person; *_by_extent: "
                  "upper-body (no ankle labelled) and full-body people; *_coco_ap: OKS AP; "
                  "*_mirrored_by_facing: people predicted left for right, among those "
                  "whose labels face the camera, turn away or say neither; "
                  "*_flip_test: PCK@0.2 with flip-test (`bnnpose run --flip-test`), beside "
                  "the goals, which are on the plain networks",
        "teacher_labels": "real eval splits are labelled by MediaPipe: agreement with the "
                          "teacher, not accuracy",
        "goal": {"float_margin": GOAL_FLOAT, "binary_margin": GOAL_BINARY,
                 "on": "every real eval split"},
        "goals_met": goals,
        "recipe": {**RECIPE, **budget, "float": FLOAT_STEP,
                   "binary": {**BINARY_STEP, "epochs": binary_epochs},
                   "mix_repeat": MIX_REPEAT},
        "renderers": speed, "rows": rows,
        "wall_time_s": round(time.perf_counter() - started, 1), "versions": versions(),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    stem = "realism" if a.model == MODEL else f"realism-{a.model}"
    write_json(a.out / f"{stem}.json", result)
    _plot(rows, a.out / f"{stem}.png", a.model)
    print(f"{'train':<13} {'eval':<22} {'people':>6} {'float':>6} {'binary':>6} {'mean':>6}"
          f" {'float+flip':>10} {'binary+flip':>11}")
    for r in rows:
        print(f"{r['train_data']:<13} {r['eval_data']:<22} {r['n_people']:>6} "
              f"{r['float']:>6.3f} {r['binary']:>6.3f} {r['mean_pose']:>6.3f} "
              f"{r['float_flip_test']:>10.3f} {r['binary_flip_test']:>11.3f}")
    print(f"renderers (crops/s, one core): {speed['crops_per_s_one_core']}")
    print(f"-> {a.out / stem}.json")
    return 0


def _plot(rows: list[dict], path: Path, model: str) -> None:
    from matplotlib.figure import Figure

    evals = list(dict.fromkeys(r["eval_data"] for r in rows))
    trains = list(dict.fromkeys(r["train_data"] for r in rows))
    fig = Figure(figsize=(max(7, 2.2 * len(evals)), 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    x = np.arange(len(evals))
    width = 0.8 / len(trains)
    for ax, kind in zip(axes, ("float", "binary"), strict=True):
        for k, train_name in enumerate(trains):
            mine = {r["eval_data"]: r for r in rows if r["train_data"] == train_name}
            xs = x + (k - (len(trains) - 1) / 2) * width
            ax.bar(xs, [mine[e][kind] for e in evals], width, label=f"trained on {train_name}")
            ax.scatter(xs, [mine[e]["mean_pose"] for e in evals], marker="_", s=300,
                       color="black", label="mean pose" if k == 0 else None, zorder=3)
        ax.set_xticks(x, [e.replace(" ", "\n") for e in evals], fontsize=7)
        ax.set(title=f"{'float twin' if kind == 'float' else 'binary network'}",
               ylabel="PCK@0.2", ylim=(0, 1))
        ax.legend(fontsize=7)
    fig.suptitle(f"{model} trained on stick figures, mesh bodies, mesh bodies + footage "
                 "(real splits: teacher labels)", fontsize=9)
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


if __name__ == "__main__":
    sys.exit(main())
