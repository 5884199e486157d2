"""Accuracy cost of binarization: each family's binary network against its float twin.

The pairs are every network shipped with its float twin (``models/checkpoints``), plus, for
each family that ships none, its PYNQ-Z2 size trained here by one recipe (``RECIPE``): the
float twin from scratch, then the binary network initialised from it and distilled from it.
Runs live under ``--work`` in folders named by their recipe; a finished run is reused, an
interrupted one resumes.

Both of a pair are scored with ``bnnpose eval``'s code (host crop, shared codec, joints matched
by name) on the same people: bodies by PCK@0.2, faces by NME (inter-ocular), on

* held-out renders (seeds from EVAL_SEED_OFFSET) of the kind the pair was trained on (stick
  figures or mesh bodies), exact labels;
* every teacher-labelled eval split of ``make realset`` (people, MediaPipe) and the carphone
  splits of ``make realset-faces`` (faces, dlib) when built. Those labels come from a
  teacher network, so the numbers there measure agreement with that teacher, not accuracy.

Writes ``bench/results/binary_vs_float.json`` and a bar chart ``binary_vs_float.png`` beside
it, and prints a table. The goal is a gap of at most 3 PCK points.

    .venv/bin/python bench/binary_vs_float.py [--families MODEL...] [--pair NAME BIN.pt FLOAT.pt]...
        [--n-render 512] [--work out/bench/families] [--num-threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bnnpose.host.common import (BnnposeError, atomic_writer, run_main, shown_path, versions,
                                 write_json)
from bnnpose.host.skeleton import LIMB_JOINTS, canonical
from bnnpose.models.registry import MODELS, model_entry
from bnnpose.quantize import datasets
from bnnpose.quantize.evaluate import evaluate_dataset
from bnnpose.models.checkpoint_io import checkpoint_dir, load_checkpoint
from bnnpose.quantize.train import trained_run
from bnnpose.quantize.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = checkpoint_dir()
#: Trained by RECIPE for a family that ships no pair.
FAMILY_MODELS = ("bhg-s2-z2", "bihrnet-z2", "bidrn-z2", "face-bhg-z2")
REALSETS = REPO / "out" / "realset"
RESULTS = REPO / "bench" / "results"
WORK = REPO / "out" / "bench" / "families"
CACHE = REPO / "out" / "cache" / "synthetic"
GOAL_GAP = 0.03

#: One short recipe for every family (the shipped bhg-tiny's loss, sigma and head affine):
#: 4 epochs of 4,096 renders, 512 steps, for the float twin and then for the binary network.
RECIPE = {"n_train": 4096, "n_val": 256, "epochs": 4, "batch_size": 32, "warmup_steps": 50,
          "sigma": 2.0, "loss": "softmax", "head_affine": True, "seed": 0}
FLOAT_STEP = {"lr": 2e-3}
BINARY_STEP = {"lr": 1e-3, "distill_weight": 1.0}


def shipped_pairs() -> list[tuple[str, Path, Path]]:
    """``(name, binary, float twin)`` of every registered network shipped with its float twin
    (``models/checkpoints/NAME.pt`` and ``NAME-float.pt``)."""
    return [(name, CHECKPOINTS / f"{name}.pt", CHECKPOINTS / f"{name}-float.pt")
            for name in MODELS if (CHECKPOINTS / f"{name}.pt").is_file()
            and (CHECKPOINTS / f"{name}-float.pt").is_file()]


def family_of(checkpoint: dict) -> str:
    """The family of a checkpoint's registry model. The checkpoint, not a pair's name, says
    what the network is: a candidate scored under a name of its own keeps its model there."""
    registered = checkpoint.get("model")
    return MODELS[registered].family if registered in MODELS else "hourglass"


def unshipped_families(pairs: list[tuple[str, Path, Path]]) -> list[str]:
    """The models of FAMILY_MODELS whose family has no pair among ``pairs``."""
    shipped = {family_of(load_checkpoint(float_path)[1]) for _, _, float_path in pairs}
    return [m for m in FAMILY_MODELS if MODELS[m].family not in shipped]


def trained_pair(model: str, recipe: dict, work: Path, cache_dir: Path,
                 num_threads: int) -> tuple[Path, Path]:
    """``(binary last.pt, float last.pt)`` of ``model`` trained by ``recipe`` (see RECIPE)."""
    common = {"model": model, **recipe, "cache_dir": str(cache_dir), "num_threads": num_threads}
    float_run = trained_run(TrainConfig(binary=False, **common, **FLOAT_STEP), work,
                            f"{model}-float")
    teacher = str(float_run / "last.pt")
    binary_run = trained_run(TrainConfig(binary=True, **common, **BINARY_STEP,
                                         init_from=teacher, distill_from=teacher),
                             work, f"{model}-binary")
    return binary_run / "last.pt", float_run / "last.pt"


def eval_sets(face: bool, rendered: str | None, n_render: int) -> dict:
    """The held-out renders of the kind the pair was trained on (``rendered``: synthetic or
    mesh) and every teacher-labelled real eval split that exists, by name."""
    if face:
        sets = {f"synthetic-face:{n_render}": datasets.synthetic_face(n_render)}
        for split in ("carphone-eval", "carphone-train"):
            if (REALSETS / split / "info.json").is_file():
                sets[f"{split} (dlib labels)"] = datasets.w300(REALSETS / split)
        return sets
    spec = f"{'mesh' if rendered == 'mesh' else 'synthetic'}:{n_render}"
    sets = {spec: datasets.from_spec(spec)}
    for ann in sorted(REALSETS.glob("*-eval/annotations.json")):
        sets[f"{ann.parent.name} (MediaPipe labels)"] = datasets.coco(ann, ann.parent / "images")
    return sets


def limb_pck(result: dict, key: str) -> float | None:
    """``key`` (``pck`` or ``pck_mean_pose``) of an evaluation over the limb joints it scored,
    each weighted by its labelled count, as the overall PCK weighs them."""
    scored = [(v[key], v["n"]) for name, v in result["per_joint"].items()
              if canonical(name) in LIMB_JOINTS and v.get(key) is not None and v["n"]]
    total = sum(n for _, n in scored)
    return sum(p * n for p, n in scored) / total if total else None


def score_pair(name: str, binary_path: Path, float_path: Path, n_render: int) -> list[dict]:
    nets, metas = {}, {}
    for kind, path in (("binary", binary_path), ("float", float_path)):
        nets[kind], metas[kind] = load_checkpoint(path)
        if metas[kind]["config"]["binary"] != (kind == "binary"):
            raise BnnposeError(f"{path} is not a {kind} checkpoint")
    family = family_of(metas["float"])
    face = family == "face"
    # Both of a pair train on one kind of render; the float twin's record says which.
    rendered = (metas["float"].get("train_config") or {}).get("data")
    rows = []
    for set_name, data in eval_sets(face, rendered, n_render).items():
        results = {kind: evaluate_dataset(net, data) for kind, net in nets.items()}
        metric = "pck" if results["float"]["pck"] is not None else "nme"
        row = {"model": name, "family": family, "data": set_name,
               "metric": metric, "n_people": len(data.instances),
               "binary": results["binary"][metric], "float": results["float"][metric],
               "mean_pose": results["float"][f"{metric}_mean_pose"],
               # People whose joints lie nearer their labels mirrored left for right: a
               # network that takes a front for a back (None for faces, which have no sides).
               "mirrored": {kind: results[kind]["n_people_mirrored"] for kind in nets}
               if metric == "pck" else None,
               # The same among people facing the camera, turned away, or neither.
               "mirrored_by_facing": {kind: results[kind]["mirrored_by_facing"]
                                      for kind in nets} if metric == "pck" else None,
               # PCK over the limb joints alone: comparable between body layouts.
               "limbs": {**{kind: limb_pck(results[kind], "pck") for kind in nets},
                         "mean_pose": limb_pck(results["float"], "pck_mean_pose")}
               if metric == "pck" else None,
               "checkpoint_binary": shown_path(binary_path, REPO),
               "checkpoint_float": shown_path(float_path, REPO)}
        # How much worse the binary network is, in the metric's units (NME: lower is better).
        sign = 1 if metric == "pck" else -1
        row["gap"] = sign * (row["float"] - row["binary"])
        row["goal_met"] = row["gap"] <= GOAL_GAP if metric == "pck" else None
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv, "binary_vs_float.py")


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="*",
                   help="models to train and score by RECIPE (default: those of "
                   f"{' '.join(FAMILY_MODELS)} whose family ships no pair)")
    p.add_argument("--pair", nargs=3, action="append", metavar=("NAME", "BINARY", "FLOAT"),
                   help="checkpoint pairs to score as they are (default: every shipped pair)")
    p.add_argument("--n-render", type=int, default=512,
                   help="held-out renders, of the kind each pair was trained on")
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--cache-dir", type=Path, default=CACHE)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--recipe", type=json.loads, default={},
                   help="JSON overriding RECIPE fields (e.g. a short run)")
    a = p.parse_args(argv)
    given = [(n, Path(b), Path(f)) for n, b, f in a.pair] if a.pair else shipped_pairs()
    if a.families is None:
        a.families = unshipped_families(given)
    for m in a.families:
        model_entry(m)  # an unknown name fails before any training
    recipe = {**RECIPE, **a.recipe}

    started = time.perf_counter()
    pairs = list(given)
    for m in tqdm(a.families, desc="families", unit="model", disable=None):
        pairs.append((m, *trained_pair(m, recipe, a.work, a.cache_dir, a.num_threads)))
    rows = []
    for name, binary_path, float_path in pairs:
        rows += score_pair(name, binary_path, float_path, a.n_render)
    result = {"metric": {"pck": "PCK@0.2 (torso diagonal), joints shared by name",
                         "nme": "mean error / inter-ocular distance (faces; lower is better)"},
              "gap": "float - binary for PCK, binary - float for NME: how much worse binary is",
              "mirrored": "bodies: people whose predictions lie nearer their labels mirrored "
                          "left for right than the labels (bnnpose eval's n_people_mirrored); "
                          "mirrored_by_facing: the same among people whose labels face the "
                          "camera (front), turn away (back) or say neither (unclear)",
              "limbs": "bodies: PCK@0.2 over the 12 limb joints every body layout names "
                       "(shoulders, elbows, wrists, hips, knees, ankles), comparable between "
                       "families whose other joints differ",
              "goal_gap": GOAL_GAP, "recipe": {**recipe, "float": FLOAT_STEP,
                                               "binary": BINARY_STEP},
              "rows": rows, "wall_time_s": round(time.perf_counter() - started, 1),
              "versions": versions()}
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(a.out / "binary_vs_float.json", result)
    _plot(rows, a.out / "binary_vs_float.png")
    print(f"{'model':<12} {'data':<32} {'metric':>6} {'float':>6} {'binary':>6} {'gap':>6} "
          f"{'mean pose':>9}  limbs: float binary mean pose")
    for r in rows:
        limbs = ("" if r["limbs"] is None else "  " + " ".join(
            "-" if r["limbs"][k] is None else f"{r['limbs'][k]:.3f}"
            for k in ("float", "binary", "mean_pose")))
        print(f"{r['model']:<12} {r['data']:<32} {r['metric']:>6} {r['float']:>6.3f} "
              f"{r['binary']:>6.3f} {r['gap']:>6.3f} {r['mean_pose']:>9.3f}{limbs}")
    print(f"-> {a.out / 'binary_vs_float.json'}")
    return 0


def _plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    groups = [(m, [r for r in rows if r["metric"] == m]) for m in ("pck", "nme")]
    groups = [(m, g) for m, g in groups if g]
    fig = Figure(figsize=(max(6, 1.6 * len(rows)), 4), layout="constrained")
    axes = fig.subplots(1, len(groups), squeeze=False,
                        width_ratios=[len(g) for _, g in groups])[0]
    for ax, (metric, group) in zip(axes, groups, strict=True):
        x = np.arange(len(group))
        for k, (key, name) in enumerate((("float", "float twin"), ("binary", "binary"),
                                         ("mean_pose", "mean pose"))):
            ax.bar(x + (k - 1) * 0.27, [r[key] for r in group], 0.27, label=name)
        ax.set_xticks(x, [f"{r['model']}\n{r['data'].split(' ')[0]}" for r in group],
                      fontsize=7)
        ax.set(ylabel="PCK@0.2 (higher is better)" if metric == "pck"
               else "NME (lower is better)", ylim=(0, 1) if metric == "pck" else None)
        ax.legend(fontsize=7)
    fig.suptitle("binary network vs its float twin")
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


if __name__ == "__main__":
    sys.exit(main())
