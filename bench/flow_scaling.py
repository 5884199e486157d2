"""Flow time against graph size: the full-size binary hourglass with 1, 2 and 4 stacks.

Each network (``bhg-full``, or ``--model``, with ``--stacks`` stacks, seeded weights and random
BatchNorm statistics, as ``bnnpose models`` builds untrained rows) is exported to QONNX with 16 golden
inputs and built for the board up to FINN's estimate, every stage checked bit-exactly, in a
fresh folder each time (nothing cached). Recorded per stack count: nodes of the exported, the
streamlined and the hardware graph, seconds of the export, of each build step and of the golden
checks between steps, and the growth exponent of time against node count from the smallest to
the largest graph (1: linear, 2: quadratic). ``--profile`` adds the functions that took longest
in each run (cProfile, own time).

Writes ``bench/results/flow_scaling.json`` and ``flow_scaling.png``.

    .venv/bin/python bench/flow_scaling.py [--model bhg-full] [--stacks 1 2 4] [--board zcu104]
        [--fps 1000] [--profile] [--work out/bench/flow_scaling]
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from bnnpose.host.common import BnnposeError, run_main, versions, write_json
from bnnpose.hw_build.boards import BOARDS
from bnnpose.hw_build.config import DEFAULT_FPS, BuildConfig, Until
from bnnpose.hw_build.make_bitstream import build
from bnnpose.hw_build.models_table import N_GOLDEN, random_batchnorm
from bnnpose.models import registry
from bnnpose.quantize.export import export_network

RESULTS = Path(__file__).resolve().parent / "results"
#: Build steps plotted on their own; the rest are summed as "other steps".
MAIN_STEPS = ("qonnx_to_finn", "streamline_pose", "convert_to_hw",
              "minimize_bit_width_initial", "minimize_bit_width")


def _nodes(path: Path) -> int:
    return len(onnx.load(str(path), load_external_data=False).graph.node)


def _top_functions(profile: cProfile.Profile, n: int = 15) -> list[dict]:
    stats = pstats.Stats(profile)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:n]
    return [{"function": f"{Path(f).name}:{line}({name})", "calls": nc,
             "own_s": round(tt, 2), "cumulative_s": round(ct, 2)}
            for (f, line, name), (_, nc, tt, ct, _) in rows]


def run_one(model_name: str, stacks: int, board: str, fps: float, work: Path,
            profile: bool) -> dict:
    """Export and build ``model_name`` with ``stacks`` stacks in ``work``; its timings."""
    import torch

    entry = registry.MODELS[model_name]
    name = f"{model_name}@stacks={stacks}"
    registry.MODELS[name] = replace(entry, config=replace(entry.config, stacks=stacks))
    torch.manual_seed(0)
    model = random_batchnorm(registry.build_model(name)).eval()
    size = entry.config.input_size
    x = np.random.default_rng(0).integers(0, 256, (N_GOLDEN, 3, size, size)).astype(np.float32)
    shutil.rmtree(work, ignore_errors=True)
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    t0 = time.perf_counter()
    export_network(model, x, work / "export", name, {"model": name})
    t1 = time.perf_counter()
    report = build(BuildConfig(model=work / "export" / "model.onnx", board=board,
                               out=work / "build", fps=fps, until=Until.ESTIMATE,
                               must_fit=False))
    t2 = time.perf_counter()
    if prof:
        prof.disable()
    steps = report["timings_s"]
    inter = work / "build" / "intermediate_models"
    row = {
        "stacks": stacks,
        "nodes": {"qonnx": _nodes(work / "export" / "model.onnx"),
                  "streamlined": _nodes(next(inter.glob("*_streamline_pose.onnx"))),
                  "hw": _nodes(work / "build" / "model_hw.onnx")},
        "seconds": {"export": round(t1 - t0, 1), "build": round(t2 - t1, 1),
                    "total": round(t2 - t0, 1),
                    "golden_checks_and_io": round(t2 - t1 - sum(steps.values()), 1),
                    "steps": steps},
        "estimate": {k: report["estimate"][k] for k in ("fps", "lut", "bram18", "uram", "fits")},
        "unmapped_nodes": report["unmapped_nodes"],
        "bitexact": report["bitexact"],
        "golden_inputs": N_GOLDEN,
    }
    if prof:
        row["profile_top_own_time"] = _top_functions(prof)
    return row


def growth(rows: list[dict], key: str) -> float | None:
    """Exponent b of ``time ~ nodes^b`` between the smallest and the largest graph."""
    a, b = rows[0], rows[-1]
    n0, n1 = a["nodes"]["qonnx"], b["nodes"]["qonnx"]
    t0, t1 = a["seconds"][key], b["seconds"][key]
    if n1 == n0 or t0 <= 0:
        return None
    return round(math.log(t1 / t0) / math.log(n1 / n0), 2)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["runs"]
    nodes = [r["nodes"]["qonnx"] for r in rows]
    series = {"export": [r["seconds"]["export"] for r in rows]}
    for s in MAIN_STEPS:
        series[s] = [r["seconds"]["steps"].get(s, 0) for r in rows]
    series["other steps"] = [sum(v for k, v in r["seconds"]["steps"].items()
                                 if k not in MAIN_STEPS) for r in rows]
    series["golden checks"] = [r["seconds"]["golden_checks_and_io"] for r in rows]
    total = [r["seconds"]["total"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.stackplot(nodes, *series.values(), labels=list(series), alpha=0.85)
    ax.plot(nodes, total, "k-o", label="total")
    ax.plot(nodes, [total[0] * n / nodes[0] for n in nodes], "k:",
            label="linear from the smallest")
    for r, n, t in zip(rows, nodes, total, strict=True):
        ax.annotate(f"{r['stacks']} stack(s)\n{t / 60:.1f} min", (n, t),
                    textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xlabel("nodes of the exported QONNX graph")
    ax.set_ylabel("seconds (2-core machine)")
    ax.set_title(f"{result['model']} export + build to estimate on {result['board']}: "
                 f"growth exponent {result['growth_exponent']['total']}")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bhg-full", help="a registered hourglass")
    p.add_argument("--stacks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--board", default="zcu104", choices=sorted(BOARDS))
    p.add_argument("--fps", type=float, default=DEFAULT_FPS)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--work", type=Path, default=Path("out/bench/flow_scaling"))
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    if any(s < 1 for s in a.stacks):
        raise BnnposeError(f"--stacks must be positive, got {a.stacks}")
    entry = registry.MODELS.get(a.model)
    if entry is None or entry.family != "hourglass":
        raise BnnposeError(f"--model must be a registered hourglass, got {a.model!r}")
    rows = []
    for s in sorted(set(a.stacks)):
        row = run_one(a.model, s, a.board, a.fps, a.work / f"stacks{s}", a.profile)
        sec = row["seconds"]
        print(f"{a.model} with {s} stack(s): {row['nodes']['qonnx']} nodes, export "
              f"{sec['export']} s, build {sec['build']} s (golden checks and I/O "
              f"{sec['golden_checks_and_io']} s), bit-exact {all(row['bitexact'].values())}",
              flush=True)
        rows.append(row)
    result = {"model": a.model, "board": a.board, "target_fps": a.fps, "runs": rows,
              "growth_exponent": {k: growth(rows, k) for k in ("export", "build", "total")},
              "command": " ".join(["bench/flow_scaling.py", *argv]),
              "versions": versions()}
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(a.out / "flow_scaling.json", result)
    plot(result, a.out / "flow_scaling.png")
    print(f"growth exponent of time against nodes: {result['growth_exponent']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, None, "bench/flow_scaling.py"))
