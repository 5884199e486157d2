"""Ablations of bhg-tiny's binary training, on one budget: the accuracy cost of the
hardware-mappable form (suite ``streams``) and the binary-training tricks (suite ``tricks``).

The binary hourglass carries its residual and merge paths as k-bit integer streams and pads
every binary conv's sign() input with -1, so that each tensor has a FINN datatype. The seed
papers keep real-valued residuals and zero padding. This bench trains one recipe (the shipped
binary step of ``models/checkpoints/bhg-tiny.json``, shortened) for each variant of suite
``streams``:

* ``k2``, ``k3``, ``k4``: k-bit streams, -1 padding (what FINN maps);
* ``k0-real``: real-valued streams (the seeds' form), -1 padding;
* ``k2-pad0``: 2-bit streams, zero padding;
* ``k2-ends8``: 2-bit streams, -1 padding, 8-bit weights in the stem and head convs (the
  first and last layers; FINN maps them as 8-bit MVAUs);
* ``float``: the float twin, the ceiling.

and, on top of ``shipped`` (bhg-tiny's registered form: k = 3 streams, -1 padding, 8-bit
ends), each trick of suite ``tricks`` alone; each maps to FINN or is training-only:

* ``rsign``: a learnable threshold per channel before every sign() (ReActNet's RSign),
  absorbed by FINN into the thresholds that compute sign();
* ``approx``: Bi-Real Net's ApproxSign gradient for sign() (training only);
* ``at``: real-to-binary attention transfer from the float twin at every block's output
  (training only);
* ``2stage``: two-stage training, binary activations with real weights for the first 2 of
  the 5 epochs (training only);
* ``wd``: Adam weight decay 1e-4 on everything but the latent 1-bit weights;
* ``rsign-approx``: the two that helped alone, together.

Every variant starts from the shipped float twin and distils from it, with the same seed,
data, steps and loss, and is scored by validation PCK@0.2 on held-out synthetic crops next to
the training set's mean pose. Each run lives in its own folder under ``--work``, named by its
recipe; a finished run is reused, so a second call only re-reads and re-plots.

Writes ``bench/results/ablation.json`` and ``ablation.png`` (suite ``streams``) or
``ablation_tricks.json`` and ``.png`` (suite ``tricks``) and prints a table.

    .venv/bin/python bench/ablation.py [--suite streams|tricks] [--variants NAME...]
        [--n-train 4096] [--epochs 5] [--work out/bench/ablation] [--num-threads 1]
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bnnpose.host.common import (BnnposeError, atomic_writer, run_main, sha256_file, shown_path,
                                 versions, write_json)
from bnnpose.models.checkpoint_io import load_checkpoint, shipped_checkpoint
from bnnpose.quantize.train import run_history, train
from bnnpose.quantize.train_config import recipe_digest, train_command, TrainConfig

REPO = Path(__file__).resolve().parents[1]
FLOAT_TWIN = shipped_checkpoint("bhg-tiny-float")
RESULTS = REPO / "bench" / "results"
WORK = REPO / "out" / "bench" / "ablation"
CACHE = REPO / "out" / "cache" / "synthetic"


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    binary: bool = True
    bits: int | None = None  #: None: the model's default (only meaningful for binary)
    pad_value: float | None = None
    end_bits: int | None = None  #: None: the model's stem and head weight bits
    #: the binary-training tricks, as TrainConfig fields (rsign, sign_grad, ...)
    tricks: tuple[tuple[str, object], ...] = ()

    def maps_to_finn(self) -> tuple[bool, str]:
        """Whether FINN can map this form, and why, from its definition alone."""
        if not self.binary:
            return False, "float weights and activations"
        if self.bits == 0:
            return False, "real-valued residual/merge streams have no integer datatype"
        if self.pad_value == 0.0:
            return False, "a zero border is not a bipolar value (see notes)"
        if dict(self.tricks).get("rsign"):
            return True, ("k-bit integer streams and -1 (bipolar) padding; RSign's thresholds "
                          "join FINN's (tests/hw_build/test_families_finn.py)")
        return True, "k-bit integer streams and -1 (bipolar) padding"


VARIANTS = (
    Variant("k2", "k=2\npad -1", bits=2, pad_value=-1.0, end_bits=1),
    Variant("k3", "k=3\npad -1", bits=3, pad_value=-1.0, end_bits=1),
    Variant("k4", "k=4\npad -1", bits=4, pad_value=-1.0, end_bits=1),
    Variant("k0-real", "real streams\npad -1", bits=0, pad_value=-1.0, end_bits=1),
    Variant("k2-pad0", "k=2\npad 0", bits=2, pad_value=0.0, end_bits=1),
    Variant("k2-ends8", "k=2\n8-bit ends", bits=2, pad_value=-1.0, end_bits=8),
    Variant("float", "float\ntwin", binary=False),
    Variant("shipped", "shipped form\nk=3, 8-bit ends"),
    Variant("rsign", "+RSign", tricks=(("rsign", True),)),
    Variant("approx", "+ApproxSign", tricks=(("sign_grad", "approx"),)),
    Variant("at", "+attention\ntransfer", tricks=(("feature_distill_weight", 5.0),)),
    Variant("2stage", "two-stage", tricks=(("float_weight_epochs", 2),)),
    Variant("wd", "+weight\ndecay", tricks=(("weight_decay", 1e-4),)),
    Variant("rsign-approx", "+RSign\n+ApproxSign",
            tricks=(("rsign", True), ("sign_grad", "approx"))),
)
BY_NAME = {v.name: v for v in VARIANTS}
#: suite -> (its variants, the stem of its result files, the variant the others are
#: compared with seed by seed)
SUITES = {
    "streams": (("k2", "k3", "k4", "k0-real", "k2-pad0", "k2-ends8", "float"), "ablation",
                "k2"),
    "tricks": (("shipped", "rsign", "approx", "at", "2stage", "wd", "rsign-approx"),
               "ablation_tricks", "shipped"),
}

#: The shipped binary step (``bhg-tiny-v6`` in bhg-tiny.json) on a budget: its loss, sigma,
#: learning rate, head affine and distillation weight, but 4096 crops for 5 epochs (640
#: steps) instead of 16,000 for 4 (2,000), so that six variants fit an hour on one thread.
RECIPE = {
    "model": "bhg-tiny",
    "n_train": 4096,
    "n_val": 512,
    "epochs": 5,
    "batch_size": 32,
    "lr": 1e-3,
    "warmup_steps": 100,
    "sigma": 2.0,
    "loss": "softmax",
    "head_affine": True,
    "distill_weight": 1.0,
    "seed": 0,
}

NOTES = {
    "maps_to_finn": "stated from each variant's form, not from a FINN build: k >= 1 with -1 "
                    "padding is the form the shipped network compiles in (bnnpose build); "
                    "k = 0 leaves the residual and merge paths real-valued, which no FINN "
                    "integer stream carries; zero padding puts 0 into the input of a binary "
                    "conv, whose inputs FINN holds as bipolar {-1, +1} (one bit, XNOR form), "
                    "so 0 has no encoding there",
    "val_pck": "PCK@0.2 (torso diagonal) of the last epoch's network on the held-out "
               "synthetic crops (no checkpoint selection on the validation set); "
               "val_pck_best is the best epoch",
    "val_pck_mean_pose": "the same crops scored with the mean pose of the training crops",
    "seed": "each variant trains once per seed (0 .. seeds-1; the seed orders the samples "
            "and draws the flips); val_pck is the mean over seeds, val_pck_std their sample "
            "standard deviation, val_pck_per_seed each; with one seed the spread is not "
            "measured and differences of a few points are not significant on their own",
    "vs_baseline": "per seed, the variant's val_pck minus the suite's baseline's (k2 for "
                   "streams, shipped for tricks) with the same seed, so the same samples in the "
                   "same order: mean and sample standard deviation of those differences",
    "init": "every variant starts from the same float twin (float_twin.sha256) and distils "
            "from it; the binary head is rescaled at the start as training does for a float "
            "source",
    "train_time_s": "sum of the epochs' wall times, each including its validation passes; "
                    "wall_time_s: the whole training session of the variant",
    "source": "per variant, taken when it trained: the commit and which imported bnnpose "
              "files and float twin differed from it",
}


def train_config(variant: Variant, recipe: dict, teacher: Path, run_dir: Path, cache_dir: Path,
                 num_threads: int) -> TrainConfig:
    return TrainConfig(**{**recipe, **dict(variant.tricks)}, binary=variant.binary,
                       bits=variant.bits, pad_value=variant.pad_value,
                       end_bits=variant.end_bits, init_from=str(teacher),
                       distill_from=str(teacher), out_dir=str(run_dir),
                       cache_dir=str(cache_dir), num_threads=num_threads)


def recipe_key(cfg: TrainConfig, teacher_sha256: str) -> str:
    """Digest of a run's recipe. The teacher enters by content, so the key holds wherever the
    work folder lives, and changes if the float twin does."""
    recipe = cfg.recipe()
    for k in ("init_from", "distill_from"):
        recipe[k] = f"sha256:{teacher_sha256}"
    return recipe_digest(recipe)


def model_form(model) -> dict:
    """What the built network really contains: its stream quantizers' bit widths, how many
    sign() quantizers it has, the border values of its binary convs and how many RSign
    thresholds it learned."""
    from brevitas.nn import QuantIdentity

    widths = Counter()
    for m in model.modules():
        if isinstance(m, QuantIdentity):
            widths[int(m.act_quant.bit_width())] += 1
    pads = sorted({float(m.pad_value) for m in model.modules() if hasattr(m, "pad_value")})
    return {"stream_quantizer_bits": {str(k): n for k, n in sorted(widths.items()) if k > 1},
            "sign_quantizers": widths.get(1, 0), "pad_values": pads,
            "rsign_thresholds": sum(p.numel() for n, p in model.named_parameters()
                                    if n.endswith(".shift"))}


def run_variant(variant: Variant, recipe: dict, teacher: Path, teacher_sha256: str,
                work: Path, cache_dir: Path, num_threads: int) -> dict:
    """Train one variant unless its run folder already holds the finished run; its record."""
    probe = train_config(variant, recipe, teacher, work, cache_dir, num_threads)
    key = recipe_key(probe, teacher_sha256)
    run_dir = work / f"{variant.name}-{key[:10]}"
    cfg = replace(probe, out_dir=str(run_dir))
    marker = run_dir / "finished.json"
    reused = marker.is_file() and json.loads(marker.read_text()).get("key") == key
    if not reused:
        # An interrupted run of the same recipe continues from its last saved epoch.
        resume = (run_dir / "last.pt").is_file() and bool(run_history(run_dir))
        # Taken before training: the work tree may change while a run trains.
        source = _source_state(teacher)
        started = time.perf_counter()
        train(replace(cfg, resume=resume))
        write_json(marker, {"key": key, "session_wall_time_s": time.perf_counter() - started,
                            "resumed": resume, "source": source})
    finished = json.loads(marker.read_text())
    history = run_history(run_dir)
    if len(history) != cfg.epochs:
        raise BnnposeError(f"{run_dir}: {len(history)} of {cfg.epochs} epochs logged")
    last, best = history[-1], max(history, key=lambda h: h["val_pck"])
    model, _ = load_checkpoint(run_dir / "last.pt")
    maps, why = variant.maps_to_finn()
    steps_per_epoch = cfg.n_train // cfg.batch_size
    return {
        "name": variant.name,
        "seed": cfg.seed,
        "label": variant.label,
        "binary": variant.binary,
        "tricks": dict(variant.tricks),
        "bits": model.cfg.bits if variant.binary else None,
        "pad_value": model.cfg.pad_value,
        "steps": steps_per_epoch * cfg.epochs,
        "val_pck": last["val_pck"],
        "val_pck_mean_pose": last["val_pck_mean_pose"],
        "val_pck_best": best["val_pck"],
        "best_epoch": best["epoch"],
        "val_instances": last["val_instances"],
        "curve": [{"epoch": h["epoch"], "step": h["step"], "val_pck": h["val_pck"],
                   "train_loss": h["train_loss"]} for h in history],
        "train_time_s": sum(h["epoch_time_s"] for h in history),
        "wall_time_s": finished["session_wall_time_s"],
        "maps_to_finn": maps,
        "maps_to_finn_reason": why,
        "model_form": model_form(model),
        "run_dir": shown_path(run_dir, REPO),
        "recipe_key": key,
        "reused": reused,
        "command": train_command(cfg, REPO),
        "source": finished.get("source"),
    }


def float_twin_as_given(teacher: Path, recipe: dict, cache_dir: Path) -> dict:
    """The float twin itself, before any of this bench's steps, on the same crops."""
    from bnnpose.host.codec import mean_pose_baseline
    from bnnpose.quantize.evaluate import evaluate
    from bnnpose.quantize.train_data import training_arrays

    model, _ = load_checkpoint(teacher)
    cfg = TrainConfig(**recipe, cache_dir=str(cache_dir))
    (_, train_kp, _), val = training_arrays(cfg, model.cfg)
    # The baseline exactly as training scores it beside every epoch.
    mean_pose = mean_pose_baseline(train_kp, np.isfinite(train_kp).all(axis=-1))
    r = evaluate(model, *val, mean_pose)
    return {"val_pck": r["pck"], "val_pck_mean_pose": r["pck_mean_pose"], "steps": 0}


def _over_seeds(runs: list[dict]) -> dict:
    """One variant's row from its runs (one per seed): the first run's record, with the
    scores averaged over the runs and each run listed under ``runs``."""
    pck = np.array([r["val_pck"] for r in runs])
    row = dict(runs[0])
    row.update(
        seeds=[r["seed"] for r in runs],
        val_pck=float(pck.mean()),
        val_pck_std=float(pck.std(ddof=1)) if len(runs) > 1 else None,
        val_pck_per_seed=pck.tolist(),
        val_pck_best=float(np.mean([r["val_pck_best"] for r in runs])),
        train_time_s=sum(r["train_time_s"] for r in runs),
        wall_time_s=sum(r["wall_time_s"] for r in runs),
        reused=all(r["reused"] for r in runs),
        runs=[{k: r[k] for k in ("seed", "val_pck", "run_dir", "recipe_key", "reused",
                                 "command", "source")} for r in runs],
    )
    return row


def _versus(rows: list[dict], baseline: str) -> None:
    """Add each row's paired difference from the baseline row (same seeds) as vs_baseline."""
    base = next((r for r in rows if r["name"] == baseline), None)
    if base is None:
        return
    for r in rows:
        if r is base or r["seeds"] != base["seeds"]:
            continue
        d = np.subtract(r["val_pck_per_seed"], base["val_pck_per_seed"])
        r["vs_baseline"] = {"baseline": baseline, "mean": float(d.mean()),
                            "std": float(d.std(ddof=1)) if len(d) > 1 else None,
                            "per_seed": d.tolist()}


def run_ablation(variants: list[Variant], recipe: dict, work: Path, float_twin: Path,
                 cache_dir: Path, num_threads: int = 1, seeds: int = 1,
                 baseline: str = "k2") -> dict:
    """Train (or reuse) every variant once per seed; the result the JSON holds."""
    digest = sha256_file(float_twin)
    work.mkdir(parents=True, exist_ok=True)
    # A private copy: every variant then starts from the same bytes even if the shipped
    # checkpoint is replaced while the bench runs.
    teacher = work / f"float-twin-{digest[:12]}.pt"
    if not teacher.is_file() or sha256_file(teacher) != digest:
        with atomic_writer(teacher, "wb") as f, open(float_twin, "rb") as src:
            shutil.copyfileobj(src, f)
    rows = []
    for variant in tqdm(variants, desc="ablation", unit="variant"):
        tqdm.write(f"--- {variant.name}: {' '.join(variant.label.split())}")
        rows.append(_over_seeds([run_variant(variant, {**recipe, "seed": seed}, teacher, digest,
                                             work, cache_dir, num_threads)
                                 for seed in range(seeds)]))
    _versus(rows, baseline)
    return {
        "metric": "PCK@0.2 (torso diagonal) on held-out synthetic crops "
                  f"(seeds from EVAL_SEED_OFFSET, n={recipe['n_val']})",
        "variants": rows,
        "float_twin": {"file": shown_path(float_twin, REPO), "sha256": digest,
                       **float_twin_as_given(teacher, recipe, cache_dir)},
        "recipe": {**recipe, "init_from": "float twin", "distill_from": "float twin",
                   "flip": TrainConfig().flip, "num_threads": num_threads,
                   "based_on": "models/checkpoints/bhg-tiny.json, binary step bhg-tiny-v6 "
                             "(16,000 crops x 4 epochs = 2,000 steps there)"},
        "notes": NOTES,
        "versions": versions(),
    }



def _source_state(float_twin: Path, commit: str = "HEAD") -> dict:
    """The repository's commit, and which of the bnnpose files this process imported (and the
    float twin it uses) differ from it, by git blob id: the code can be imported from elsewhere
    than the repository's work tree, and the work tree can hold uncommitted edits."""
    def git(*args: str, stdin: str | None = None) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True,
                                  text=True, check=True, input=stdin).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", commit)
    # Package bnnpose.X lives in the repository's folder X (pyproject's package-dir).
    files = {}
    for name, module in sorted(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name.startswith("bnnpose.") and file and file.endswith(".py"):
            parts = name.split(".")[1:]
            folder = parts if file.endswith("__init__.py") else parts[:-1]
            files["/".join([*folder, Path(file).name])] = Path(file)
    files[str(FLOAT_TWIN.relative_to(REPO))] = Path(float_twin)
    committed = {}
    for line in git("ls-tree", "-r", commit or "HEAD", "--", *files).splitlines():
        meta, path = line.split("\t", 1)
        committed[path] = meta.split()[2]
    names = list(files)
    ids = git("hash-object", "--stdin-paths", stdin="\n".join(str(files[n]) for n in names))
    differ = [n for n, blob in zip(names, ids.splitlines(), strict=False)
              if committed.get(n) != blob]
    return {"commit": commit or None, "files_checked": len(names),
            "files_differing_from_commit": differ if commit else None}


def write_results(result: dict, out: Path, stem: str = "ablation") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = write_json(out / f"{stem}.json", result)
    _plot(result, out / f"{stem}.png")
    return path


def print_table(result: dict) -> None:
    print(f"{'variant':<10} {'bits':>4} {'pad':>4} {'FINN':>5} {'steps':>5} {'seeds':>5} "
          f"{'PCK':>6} {'+-':>5} {'vs base':>13} {'best':>6} {'mean pose':>9} {'time':>7}")
    for r in result["variants"]:
        bits = "-" if r["bits"] is None else r["bits"]
        finn = "yes" if r["maps_to_finn"] else "no"
        std = "" if r.get("val_pck_std") is None else f"{r['val_pck_std']:.3f}"
        vs = r.get("vs_baseline")
        vs = "" if vs is None else f"{vs['mean']:+.3f}" + (
            "" if vs["std"] is None else f" +-{vs['std']:.3f}")
        print(f"{r['name']:<10} {bits:>4} {r['pad_value']:>4g} {finn:>5} {r['steps']:>5} "
              f"{len(r.get('seeds', [0])):>5} {r['val_pck']:>6.3f} {std:>5} {vs:>13} "
              f"{r['val_pck_best']:>6.3f} {r['val_pck_mean_pose']:>9.3f} "
              f"{r['train_time_s'] / 60:>5.1f} m")
    ft = result["float_twin"]
    print(f"float twin as given (0 steps): {ft['val_pck']:.3f}, "
          f"mean pose {ft['val_pck_mean_pose']:.3f}")


def _plot(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    rows = result["variants"]
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax, ax_curve = fig.subplots(1, 2, width_ratios=(3, 2))
    x = range(len(rows))
    colours = ["tab:blue" if r["maps_to_finn"] else ("tab:gray" if r["binary"] else "tab:green")
               for r in rows]
    bars = ax.bar(x, [r["val_pck"] for r in rows], color=colours,
                  yerr=[r.get("val_pck_std") or 0.0 for r in rows], capsize=3)
    ax.bar_label(bars, fmt="%.3f", padding=6)
    for i, r in enumerate(rows):  # each seed's run
        per_seed = r.get("val_pck_per_seed", [r["val_pck"]])
        if len(per_seed) > 1:
            ax.plot([i] * len(per_seed), per_seed, "k.", ms=4)
    mean_pose = rows[0]["val_pck_mean_pose"] if rows else 0.0
    ax.axhline(mean_pose, color="k", ls="--", lw=1, label=f"mean pose {mean_pose:.3f}")
    ax.set(xticks=list(x), xticklabels=[r["label"] for r in rows],
           ylabel="val PCK@0.2", ylim=(0, max([0.6] + [r["val_pck"] * 1.15 for r in rows])),
           title=f"after {rows[0]['steps'] if rows else 0} steps from the float twin, mean "
                 f"of {len(rows[0].get('seeds', [0])) if rows else 0} seeds "
                 "(blue: maps to FINN)")
    ax.legend(loc="upper left")
    for r in rows:
        ax_curve.plot([c["step"] for c in r["curve"]], [c["val_pck"] for c in r["curve"]],
                      marker="o", ms=3, label=r["name"])
    ax_curve.axhline(mean_pose, color="k", ls="--", lw=1)
    ax_curve.set(xlabel="step", ylabel="val PCK@0.2", ylim=(0, ax.get_ylim()[1]),
                 title="validation per epoch (first seed)")
    ax_curve.legend(fontsize=8, ncol=3, loc="upper left", bbox_to_anchor=(0, 0.8))
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv, "ablation.py")


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", choices=list(SUITES), default="streams",
                   help="which ablation, and so the default variants and the result files' "
                   "names (default: streams)")
    p.add_argument("--variants", nargs="+", choices=list(BY_NAME), metavar="NAME",
                   help=f"any of {', '.join(BY_NAME)} (default: the suite's)")
    p.add_argument("--n-train", type=int, default=RECIPE["n_train"])
    p.add_argument("--n-val", type=int, default=RECIPE["n_val"])
    p.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    p.add_argument("--float-twin", type=Path, default=FLOAT_TWIN,
                   help="initialisation and distillation teacher of every variant")
    p.add_argument("--work", type=Path, default=WORK, help="one run folder per variant")
    p.add_argument("--cache-dir", type=Path, default=CACHE)
    p.add_argument("--seeds", type=int, default=1,
                   help="train each variant with seeds 0 .. N-1 (default: 1)")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)

    recipe = {**RECIPE, "n_train": a.n_train, "n_val": a.n_val, "epochs": a.epochs}
    started = time.perf_counter()
    names, stem, baseline = SUITES[a.suite]
    result = run_ablation([BY_NAME[n] for n in a.variants or names], recipe, a.work,
                          a.float_twin, a.cache_dir, a.num_threads, a.seeds, baseline)
    result["command"] = shlex.join(["python", "bench/ablation.py",
                                    *argv])
    result["total_train_time_s"] = sum(r["train_time_s"] for r in result["variants"])
    result["total_wall_time_s"] = sum(r["wall_time_s"] for r in result["variants"])
    # Short when the runs were reused: then this call only re-read and re-plotted them.
    result["this_call_wall_time_s"] = time.perf_counter() - started
    path = write_results(result, a.out, stem)
    print_table(result)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
