"""FINN's estimate of the full-size binary hourglass on the ZCU104, measured a stack at a time.

A FINN build of ``bhg-full`` (256x256, four stacks of depth-4 hourglasses, 128 channels) takes
longer than hours on two cores: qonnx's graph passes look tensors and nodes up by scanning the
graph, so a build's time grows with the square of its node count. The stacks are identical
layer for layer and FINN folds every layer on its own to the target rate, so the network is
built (exported with 16 golden inputs, checked bit-exactly stage by stage, folded, estimated)
with ``--stacks`` stacks instead of four, by the same code as ``bnnpose models``, and the
full network is projected from those builds:

* FPS: the slowest layer's rate. Adding identical stacks adds no slower layer.
* LUT, BRAM18, URAM, DSP: with builds of 1 and 2 stacks, ``R(S) = R(1) + (S - 1) (R(2) - R(1))``
  (the difference is one stack with the remap layers between stacks); with the 1-stack build
  only, ``S x R(1)``, which counts the stem S times and the remaps not at all.

Writes ``bench/results/full_size.json`` (the builds' rows, the projection, the bottleneck
layers) and prints a summary. Rows are cached like ``bnnpose models`` rows (``out/models``),
with each build's FINN reports kept beside them.

    .venv/bin/python bench/full_size.py [--model bhg-full] [--stacks 1 2] [--board zcu104]
        [--fps 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from bnnpose.host.common import BnnposeError, versions, write_json
from bnnpose.hw_build import models_table
from bnnpose.hw_build.boards import BOARDS
from bnnpose.hw_build.config import DEFAULT_FPS
from bnnpose.models import registry

RESULTS = Path(__file__).resolve().parent / "results"
RESOURCES = ("lut", "bram18", "uram", "dsp")


def register_stacks(model: str, stacks: int) -> str:
    """Register ``model`` with ``stacks`` stacks under its own name; the name."""
    name = f"{model}@stacks={stacks}"
    entry = registry.MODELS[model]
    registry.MODELS[name] = replace(entry, config=replace(entry.config, stacks=stacks))
    return name


def slowest_layers(work_dir: str, n: int = 5) -> list[dict]:
    """The ``n`` layers with the most cycles per frame in a row's kept build."""
    report = Path(work_dir) / "build" / "report"
    cycles = json.loads((report / "estimate_layer_cycles.json").read_text())
    top = sorted(cycles.items(), key=lambda kv: -kv[1])[:n]
    return [{"layer": k, "cycles": int(v)} for k, v in top]


def project(rows: dict[int, dict], stacks: int, board: str) -> dict:
    one = rows[1]
    if 2 in rows:
        per_stack = {r: rows[2][r] - one[r] for r in RESOURCES}
        est = {r: one[r] + (stacks - 1) * per_stack[r] for r in RESOURCES}
        how = "R(1) + (S-1) * (R(2) - R(1)) from the 1- and 2-stack builds"
    else:
        est = {r: stacks * one[r] for r in RESOURCES}
        how = "S * R(1) from the 1-stack build (stem counted S times, remaps not at all)"
    limits = BOARDS[board].limits()
    est["fps"] = min(r["fps"] for r in rows.values())
    est["lut_share"] = est["lut"] / limits["lut"]
    est["bram_share"] = est["bram18"] / limits["bram18"]
    est["fits"] = (est["lut"] <= limits["lut_max"] and est["bram18"] <= limits["bram18_max"]
                   and est["uram"] <= limits["uram"] and est["dsp"] <= limits["dsp"])
    return {"stacks": stacks, "method": how, **est, "limits": limits}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bhg-full")
    p.add_argument("--stacks", type=int, nargs="+", default=[1], choices=(1, 2))
    p.add_argument("--board", default="zcu104", choices=sorted(BOARDS))
    p.add_argument("--fps", type=float, default=DEFAULT_FPS)
    p.add_argument("--cache", type=Path, default=models_table.DEFAULT_CACHE)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    if a.model not in registry.MODELS or registry.MODELS[a.model].family != "hourglass":
        raise BnnposeError(f"--model must be a registered hourglass, got {a.model!r}")
    digest = models_table.current_flow_digest()
    rows = {}
    for s in sorted(set(a.stacks)):
        name = register_stacks(a.model, s)
        rows[s] = models_table.measure(name, a.board, a.fps, a.cache, flow_digest=digest)
    full = registry.MODELS[a.model].config.stacks
    result = {
        "model": a.model, "board": a.board, "target_fps": a.fps,
        "config": registry.MODELS[a.model].config.to_dict(),
        "projection": project(rows, full, a.board),
        "builds": [{**row, "slowest_layers": slowest_layers(row["work_dir"])}
                   for row in rows.values()],
        "versions": versions(),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(a.out / "full_size.json", result)
    pr = result["projection"]
    for s, row in rows.items():
        print(f"{a.model} with {s} stack(s) on {a.board}: {row['fps']:,.0f} FPS, "
              f"{row['lut']:,} LUT, {row['bram18']} BRAM18, {row['uram']} URAM, {row['dsp']} DSP, "
              f"XNOR share {row['xnor_mac_share']:.3f}, unmapped {row['unmapped_nodes']}, "
              f"bit-exact {row['bitexact']}")
    print(f"{a.model} ({full} stacks), projected ({pr['method']}): {pr['fps']:,.0f} FPS, "
          f"{pr['lut']:,.0f} LUT ({pr['lut_share']:.0%}), {pr['bram18']:,.0f} BRAM18 "
          f"({pr['bram_share']:.0%}), fits: {pr['fits']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
