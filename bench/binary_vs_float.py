"""Accuracy cost of binarization: each binary network against its float twin.

Both of a pair are scored with ``bnnpose eval``'s code (host crop, shared codec, joints matched
by name) on the same people:

* ``synthetic``: held-out renders (seeds from EVAL_SEED_OFFSET), exact labels;
* any ``--real`` set in COCO format, e.g. the teacher-labelled footage of ``make realset``.
  Its labels come from a teacher network, so the numbers there measure agreement with that
  teacher, not accuracy.

Writes ``bench/results/binary_vs_float.json`` and a bar chart ``binary_vs_float.png`` beside
it, and prints a table. The goal is a gap of at most 3 PCK points.

    .venv/bin/python bench/binary_vs_float.py [--pair NAME BINARY.pt FLOAT.pt]...
        [--real NAME ANN.json IMAGES]... [--n-synthetic 512]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bnnpose.host.artifacts import BnnposeError, atomic_writer, versions, write_json
from bnnpose.quantize import datasets
from bnnpose.quantize.evaluate import evaluate_dataset, train_mean_pose
from bnnpose.quantize.train import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "models" / "checkpoints"
DEFAULT_PAIRS = [("bhg-tiny", CHECKPOINTS / "bhg-tiny.pt", CHECKPOINTS / "bhg-tiny-float.pt")]
REALSETS = REPO / "out" / "realset"
#: Both splits of ``make realset``: the footage's eval and train frames are scored apart.
DEFAULT_REAL = [("vtest-eval", REALSETS / "vtest-eval"), ("vtest-train", REALSETS / "vtest-train")]
RESULTS = REPO / "bench" / "results"
GOAL_GAP = 0.03


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", nargs=3, action="append", metavar=("NAME", "BINARY", "FLOAT"),
                   help="default: the shipped bhg-tiny and its float twin")
    p.add_argument("--real", nargs=3, action="append", metavar=("NAME", "ANN", "IMAGES"),
                   help="COCO-format real sets (default: those of "
                        f"{', '.join(str(d.relative_to(REPO)) for _, d in DEFAULT_REAL)} "
                        "that `make realset` has built)")
    p.add_argument("--n-synthetic", type=int, default=512)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)

    pairs = a.pair or DEFAULT_PAIRS
    sets = {f"synthetic:{a.n_synthetic}": datasets.synthetic(a.n_synthetic)}
    real = a.real or [(name, d / "annotations.json", d / "images") for name, d in DEFAULT_REAL
                      if (d / "annotations.json").is_file()]
    for name, ann, images in real:
        sets[f"{name} (teacher labels)"] = datasets.coco(ann, images)
    mean_pose = train_mean_pose()
    rows = []
    for family, binary_path, float_path in pairs:
        for set_name, data in sets.items():
            row = {"model": family, "data": set_name, "n_people": len(data.instances)}
            for kind, path in (("binary", binary_path), ("float", float_path)):
                model, meta = load_checkpoint(path)
                if meta["config"]["binary"] != (kind == "binary"):
                    raise BnnposeError(f"{path} is not a {kind} checkpoint")
                r = evaluate_dataset(model, data, mean_pose=mean_pose)
                row[f"pck_{kind}"] = r["pck"]
                row["pck_mean_pose"] = r["pck_mean_pose"]
                row[f"checkpoint_{kind}"] = str(Path(path).resolve().relative_to(REPO))
            row["gap"] = row["pck_float"] - row["pck_binary"]
            row["goal_met"] = row["gap"] <= GOAL_GAP
            rows.append(row)
    result = {"metric": "PCK@0.2 (torso diagonal), joints shared by name",
              "goal_gap": GOAL_GAP, "rows": rows, "versions": versions()}
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(a.out / "binary_vs_float.json", result)
    _plot(rows, a.out / "binary_vs_float.png")
    print(f"{'model':<10} {'data':<28} {'float':>6} {'binary':>6} {'gap':>6} {'mean pose':>9}")
    for r in rows:
        print(f"{r['model']:<10} {r['data']:<28} {r['pck_float']:>6.3f} {r['pck_binary']:>6.3f} "
              f"{r['gap']:>6.3f} {r['pck_mean_pose']:>9.3f}")
    print(f"-> {a.out / 'binary_vs_float.json'}")
    return 0


def _plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    labels = [f"{r['model']}\n{r['data']}" for r in rows]
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(5, 2.2 * len(rows)), 3.8), layout="constrained")
    ax = fig.subplots()
    for k, (key, name) in enumerate((("pck_float", "float twin"), ("pck_binary", "binary"),
                                     ("pck_mean_pose", "mean pose"))):
        ax.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=name)
    ax.set(xticks=x, xticklabels=labels, ylabel="PCK@0.2", ylim=(0, 1),
           title="binary network vs its float twin")
    ax.legend()
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


if __name__ == "__main__":
    sys.exit(main())
