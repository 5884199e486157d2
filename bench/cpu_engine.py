"""The cpu backend's engine against float inference of the same network, one thread each.

Contenders, all on one 128x128 input, measured interleaved in one run so that load from other
processes hits them alike:

* ``engine_native``: the bit-packed XNOR-popcount plan of the overlay, C kernels;
* ``engine_numpy``: the same plan, numpy only (the reference path);
* ``torch_float``: PyTorch running the float twin (same topology, real-valued);
* ``onnxruntime_float``: ONNX Runtime running the float twin exported to ONNX.

Writes ``bench/results/cpu_engine.json`` (with ``speedup_vs_torch_float`` and
``speedup_vs_onnxruntime_float``; with ``--per-op`` the time of every native instruction and the
frame's time by kind of op), a bar chart ``cpu_engine.png`` beside it, and prints a table.

``--models`` adds a row per registered network (``models`` in the JSON; all of them when no name
follows), from the build ``bnnpose models`` makes and caches: its plan compiled from that
``model_hw.onnx``, native equal to numpy equal to FINN's execution of the graph on real
photographs of people (``people_photos``: evaluation-only sample images), and the same
contenders timed on one of them, fewer rounds for the larger networks.

    .venv/bin/python bench/cpu_engine.py [--overlay DIR] [--rounds 7] [--iters 20] [--per-op]
                                         [--models [NAME ...]]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# One thread everywhere, set before numpy/torch load their thread pools.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from bnnpose.host.common import run_main, versions, write_json  # noqa: E402
from bnnpose.host.backends import load_overlay  # noqa: E402
from bnnpose.host.cpu_engine import Plan, native_kernels  # noqa: E402
from bnnpose.hw_build.cpu_plan import compile_plan  # noqa: E402
from bnnpose.models.registry import MODELS, build_model, model_entry  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OVERLAY = REPO / "overlays" / "pynq-z2" / "bhg-tiny"
RESULTS = REPO / "bench" / "results"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def timed(fn: Callable[[], object], iters: int) -> float:
    """Mean seconds per call over ``iters`` calls."""
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def contenders(overlay: Path, x_uint8: np.ndarray, workdir: Path) -> dict[str, Callable]:
    ov = load_overlay(overlay)
    plan = Plan.load(ov.cpu_plan) if ov.cpu_plan else compile_plan(ov.model_hw)
    return contenders_of(plan, ov.manifest.get("model", "bhg-tiny"), x_uint8, workdir)


def contenders_of(plan: Plan, name: str, x_uint8: np.ndarray, workdir: Path
                  ) -> dict[str, Callable]:
    """The plan, native and numpy, and the registered network ``name``'s float twin in PyTorch
    and ONNX Runtime, each a call on ``x_uint8`` [1, H, W, 3]."""
    model = build_model(name, binary=False).eval()
    x_nchw = torch.from_numpy(x_uint8.transpose(0, 3, 1, 2).astype(np.float32))

    import onnxruntime as ort

    onnx_path = workdir / f"{name}-float.onnx"
    torch.onnx.export(model, x_nchw, str(onnx_path), dynamo=False, opset_version=17)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x_nchw.numpy()}

    def torch_float():
        with torch.no_grad():
            return model(x_nchw)

    out = {
        "engine_numpy": lambda: plan.run(x_uint8, native=False),
        "torch_float": torch_float,
        "onnxruntime_float": lambda: sess.run(None, feed),
    }
    if native_kernels() is not None:
        out["engine_native"] = lambda: plan.run(x_uint8, native=True)
        # Same integers, or the comparison is meaningless.
        assert np.array_equal(plan.run(x_uint8, native=True), plan.run(x_uint8, native=False))
    return out


def interleaved(fns: dict[str, Callable], rounds: int, iters: int) -> dict[str, list[float]]:
    """Seconds per call of every contender, ``rounds`` times, the order rotated each round so
    that no contender always runs right after the same neighbour."""
    for fn in fns.values():  # warm-up: caches, lazy init, kernel compilation
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        names = list(fns)[r % len(fns):] + list(fns)[: r % len(fns)]
        for k in names:
            samples[k].append(timed(fns[k], iters))
    return samples


def people_photos(size: int) -> tuple[list[str], np.ndarray]:
    """Real photographs of people (evaluation only: never trained on), each resized whole to
    ``size`` x ``size``: scikit-image's astronaut and, where Debian's opencv-doc is installed,
    OpenCV's footballer and basketball players. Names and uint8 [N, size, size, 3] RGB."""
    import cv2

    from bnnpose.hw_build.demo import real_photo

    shown, frames = ["skimage astronaut"], [real_photo()]
    for name in ("messi5.jpg", "basketball1.png", "basketball2.png"):
        image = cv2.imread(str(OPENCV_DATA / name))
        if image is not None:
            shown.append(f"opencv {name}")
            frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return shown, np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
                            for f in frames])


def model_rows(names: list[str], workdir: Path, budget_s: float = 600.0) -> tuple[list, list]:
    """One row per registered network: its ``bnnpose models`` build (cached in out/models),
    the plan from that graph checked against FINN and timed beside the float twin."""
    from bnnpose.hw_build.models_table import DEFAULT_CACHE, table
    from bnnpose.hw_build.sim import execute_hw_graph

    rows, skipped = [], []
    for name in names:
        built, missed = table([name], [MODELS[name].boards[0]], 1000.0, DEFAULT_CACHE,
                              budget_s=budget_s)
        skipped += missed
        if not built:
            continue
        graph = Path(built[0]["work_dir"]) / "build" / "model_hw.onnx"
        plan = compile_plan(graph)
        size = plan.input_shape[1]
        names_shown, frames = people_photos(size)
        finn = np.concatenate([execute_hw_graph(graph, f[None].astype(np.float32))
                               for f in frames])
        native, numpy_path = plan.run(frames, native=True), plan.run(frames, native=False)
        # A big network's numpy path takes a while: fewer calls where a frame is larger.
        iters = max(1, 4 * 128 * 128 // (size * size))
        ms = {k: 1e3 * statistics.median(v) for k, v in
              interleaved(contenders_of(plan, name, frames[:1], workdir), 3, iters).items()}
        kinds = {}
        for s in plan.steps:
            kinds[s.op] = kinds.get(s.op, 0) + 1
        rows.append({
            "model": name, "family": MODELS[name].family, "board": built[0]["board"],
            "input": [1, size, size, 3], "plan_steps": kinds,
            "xnor_mac_share": built[0]["xnor_mac_share"],
            "native_equals_numpy": bool(np.array_equal(native, numpy_path)),
            "numpy_equals_finn": bool(np.array_equal(numpy_path, finn)),
            "bitexact_on": names_shown,
            "median_ms": ms, "iters_per_round": iters, "rounds": 3,
            "speedup_vs_torch_float": ms["torch_float"] / ms["engine_native"],
            "speedup_vs_onnxruntime_float": ms["onnxruntime_float"] / ms["engine_native"],
        })
        print(f"{name}: native {ms['engine_native']:.2f} ms, ORT float "
              f"{ms['onnxruntime_float']:.2f} ms, torch float {ms['torch_float']:.2f} ms, "
              f"bit-exact {rows[-1]['native_equals_numpy'] and rows[-1]['numpy_equals_finn']}",
              file=sys.stderr)
    return rows, skipped


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv, "cpu_engine.py")


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--overlay", type=Path, default=DEFAULT_OVERLAY)
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median taken)")
    ap.add_argument("--iters", type=int, default=20, help="calls per contender per round")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--per-op", action="store_true",
                    help="also time every native instruction alone (per_op in the JSON)")
    ap.add_argument("--models", nargs="*", metavar="NAME",
                    help="also a row per registered network (no name: all of them)")
    args = ap.parse_args(argv)
    for name in args.models or ():
        model_entry(name)  # an unknown name fails before any timing

    torch.set_num_threads(1)
    # Torch allows this once per process, and a second call of main() (tests) finds it done.
    if torch.get_num_interop_threads() != 1:
        torch.set_num_interop_threads(1)
    x = np.random.default_rng(0).integers(0, 256, (1, 128, 128, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        samples = interleaved(contenders(args.overlay, x, Path(tmp)), args.rounds, args.iters)
        if args.models is not None:
            models, skipped = model_rows(args.models or list(MODELS), Path(tmp))

    ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
    engine = "engine_native" if "engine_native" in ms else "engine_numpy"
    result = {
        "command": "python bench/cpu_engine.py " + " ".join(argv),
        "overlay": str(args.overlay),
        "input": [1, 128, 128, 3],
        "threads": 1,
        "rounds": args.rounds,
        "iters_per_round": args.iters,
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpu_count": os.cpu_count(),
                    "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "median_ms": ms,
        "all_rounds_ms": {k: [1e3 * s for s in v] for k, v in samples.items()},
        "engine": engine,
        "speedup_vs_torch_float": ms["torch_float"] / ms[engine],
        "speedup_vs_onnxruntime_float": ms["onnxruntime_float"] / ms[engine],
        "native_vs_numpy": (ms["engine_numpy"] / ms["engine_native"]
                            if "engine_native" in ms else None),
        "goal_speedup_vs_torch_float": 10.0,
        "goal_speedup_vs_onnxruntime_float": 3.0,
        "versions": versions(),
    }
    if args.models is not None:
        result["models"], result["models_skipped"] = models, skipped
    if args.per_op:
        result["per_op"] = per_op(args.overlay, x[0], args.iters)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "cpu_engine.json", result)
    _plot(ms, args.out / "cpu_engine.png")

    print("| contender | ms / frame | vs torch float |\n|---|---:|---:|")
    for k, v in sorted(ms.items(), key=lambda kv: kv[1]):
        print(f"| {k} | {v:.2f} | {ms['torch_float'] / v:.2f}x |")
    print(f"-> {args.out / 'cpu_engine.json'}")
    return 0


def per_op(overlay: Path, frame: np.ndarray, iters: int) -> dict:
    """Every native instruction timed alone, and the frame's time by kind of op."""
    plan = Plan.load(overlay / "cpu_plan.npz")
    rows = plan.profile(frame, iters)
    total = sum(r["seconds"] for r in rows)
    kinds: dict[str, float] = {}
    for r in rows:
        kinds[r["op"]] = kinds.get(r["op"], 0.0) + r["seconds"]
    print("| op | ms | share |\n|---|---:|---:|")
    for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {1e3 * v:.3f} | {v / total:.0%} |")
    return {"sum_ms": 1e3 * total,
            "by_kind_ms": {k: 1e3 * v for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
            "instructions": [{**r, "ms": 1e3 * r.pop("seconds")} for r in rows],
            "note": "each instruction run alone, median of iters calls; a call adds about "
                    "a microsecond of ctypes overhead"}


def _plot(ms: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(ms, key=ms.get)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(names, [ms[n] for n in names],
            color=["tab:blue" if n.startswith("engine") else "tab:grey" for n in names])
    ax.set(xlabel="ms per 128x128 frame, one thread (median)", title="cpu backend vs float")
    for i, n in enumerate(names):
        ax.text(ms[n], i, f" {ms[n]:.1f}", va="center")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
