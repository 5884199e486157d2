"""Design-space exploration: ``bnnpose dse``, accuracy against speed and resources per board.

A sweep takes one family's network sized for a board (``BASES``), varies architecture knobs
(any field of its config: width, depth, stacks, blocks, input size, stream bits, end bits) and
FINN folding targets, and gives every point

* FINN's estimate from the real flow: export with random weights and BatchNorm statistics drawn
  like a trained network's (``models_table.random_batchnorm``; resources and FPS are the trained
  network's), build to the estimate, every stage checked bit-exact on ``--golden`` inputs:
  FPS, LUT, BRAM18, URAM, DSP and their shares, fits; parameters and MACs by bit width;
* an accuracy **proxy**: PCK@0.2 on held-out renders after a short training of that
  architecture (``--train-samples`` x ``--train-epochs``, the same recipe for every point, so
  points compare; the number is not what full training reaches).

The points that fit the board, reach ``--min-fps`` and are not beaten on both accuracy and FPS
by another form the frontier. ``DIR/dse.json`` holds every point and the frontier,
``DIR/dse_<board>.png`` plots them (accuracy vs FPS; marker size: LUT share, colour: BRAM
share; the frontier drawn, the shipped network starred) and a table is printed.

Points run in a process pool (``--jobs``) or on an existing Dask cluster (``--scheduler
tcp://HOST:PORT``; its workers must see ``--out`` and the render caches, as on one machine or a
shared file system). Every finished point is written at once, so an interrupted sweep resumes
where it stopped (training runs resume from their last epoch too).

    bnnpose dse --board pynq-z2 [--family hourglass] [--knob channels=32,48 --knob stacks=1,2]
                [--fps 300,1000] [--min-fps 300] [--train-samples 2048] [--train-epochs 2]
                [--jobs 2 | --scheduler ADDRESS] [--out out/dse/pynq-z2-hourglass]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bnnpose.host.common import BnnposeError, one_line, run_main, versions, write_json

#: family -> board -> the registered network a sweep starts from. The hourglass starts small
#: on both boards: the seeds' 4-stack size does not finish compiling (README).
BASES = {
    "hourglass": {"pynq-z2": "bhg-tiny", "zcu104": "bhg-tiny"},
    "bihrnet": {"pynq-z2": "bihrnet-z2", "zcu104": "bihrnet-full"},
    "bidrn": {"pynq-z2": "bidrn-z2", "zcu104": "bidrn-full"},
    "face": {"pynq-z2": "face-bhg-z2", "zcu104": "face-bhg-z2"},
}
#: The knobs a sweep varies when none are given: width and depth around the base.
DEFAULT_KNOBS = {
    "hourglass": ["channels=32,64", "stacks=1,2"],
    "face": ["channels=32,64"],
    "bihrnet": ["widths=24x48x96,32x64x128"],
    "bidrn": ["widths=32x64x128,48x96x192"],
}
#: The folding target of the shipped networks.
SHIPPED_FPS = 1000.0
DEFAULT_OUT = Path("out/dse")
#: Where proxy trainings go, shared by every sweep and board.
DEFAULT_RUNS = DEFAULT_OUT / "runs"


@dataclass(frozen=True)
class Proxy:
    """The short training every point gets: its accuracy is a proxy, comparable between
    points of one sweep."""

    data: str = "mesh"
    #: 1,024 steps of 32 samples: minutes per architecture on a GPU, tens on two CPU cores
    n_train: int = 8192
    epochs: int = 4
    n_val: int = 256
    batch_size: int = 32

    def label(self) -> str:
        return (f"proxy: PCK@0.2 on {self.n_val} held-out {self.data} renders after "
                f"{self.epochs} epochs of {self.n_train} samples")


@dataclass(frozen=True)
class Point:
    """One design: the base network with ``knobs`` replaced, folded for ``fps``."""

    base: str
    board: str
    knobs: tuple[tuple[str, object], ...]
    fps: float
    proxy: Proxy = field(default_factory=Proxy)
    golden: int = 4

    def arch(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.knobs}

    def name(self) -> str:
        knobs = " ".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, tuple) else v}"
                         for k, v in self.knobs)
        return f"{knobs or self.base} @{self.fps:g}"

    def key(self, flow_digest: str) -> str:
        ident = {"base": self.base, "board": self.board, "arch": self.arch(), "fps": self.fps,
                 "proxy": vars(self.proxy), "golden": self.golden, "flow": flow_digest}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def parse_knobs(base: str, specs: list[str]) -> dict[str, list]:
    """``["channels=32,64", "widths=24x48x96,32x64x128"]`` -> knob -> values, each checked
    against the base network's config (one line naming the knobs there are)."""
    from bnnpose.models.registry import arch_overrides, arch_value

    knobs: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not values:
            raise BnnposeError(f"--knob {spec!r}: expected NAME=V1,V2,... (tuples as 24x48x96)")
        try:
            parsed = [arch_value(v) for v in values.split(",")]
        except ValueError:
            raise BnnposeError(f"--knob {spec!r}: values must be numbers, or true/false") \
                from None
        knobs[name] = [arch_overrides(base, {name: v})[name] for v in parsed]
    return knobs


def shipped_knobs(base: str, order: Sequence[str] = ()) -> tuple[tuple[str, object], ...] | None:
    """The shipped default network (``DEFAULT_MODEL``) as knobs on ``base``, the knobs of
    ``order`` first: the architecture fields where their configs differ. None when it is not
    ``base`` with other knob values (another family, other joints)."""
    from dataclasses import fields

    from bnnpose.models.checkpoint_io import DEFAULT_MODEL
    from bnnpose.models.registry import MODELS, NOT_ARCH

    cfg, shipped = MODELS[base].config, MODELS[DEFAULT_MODEL].config
    if type(cfg) is not type(shipped) or any(getattr(cfg, k) != getattr(shipped, k)
                                             for k in NOT_ARCH):
        return None
    changed = [(f.name, getattr(shipped, f.name)) for f in fields(cfg)
               if getattr(cfg, f.name) != getattr(shipped, f.name)]
    rank = {k: i for i, k in enumerate(order)}
    return tuple(sorted(changed, key=lambda kv: rank.get(kv[0], len(rank))))


def grid(base: str, board: str, knobs: dict[str, list], fps: list[float], proxy: Proxy,
         golden: int, with_shipped: bool = True) -> list[Point]:
    """Every combination of the knobs' values and the FPS targets, knobs equal to the base's
    dropped (so the base itself is one point), plus the shipped network at its target when
    it is the base with other knobs."""
    from bnnpose.models.checkpoint_io import DEFAULT_MODEL
    from bnnpose.models.registry import MODELS

    cfg = MODELS[base].config
    points = []
    for values in itertools.product(*knobs.values()):
        changed = tuple((k, v) for k, v in zip(knobs, values) if getattr(cfg, k) != v)
        points += [Point(base, board, changed, f, proxy, golden) for f in fps]
    shipped = shipped_knobs(base, list(knobs))
    if with_shipped and shipped is not None and board in MODELS[DEFAULT_MODEL].boards:
        points.append(Point(base, board, shipped, SHIPPED_FPS, proxy, golden))
    return list(dict.fromkeys(points))


def is_shipped(row: dict, base: str) -> bool:
    """Whether a sweep's row is the shipped default network at its folding target."""
    shipped = shipped_knobs(base)
    return (shipped is not None and row["target_fps"] == SHIPPED_FPS
            and row["knobs"] == Point(base, "", shipped, SHIPPED_FPS).arch())


def estimate(point: Point, work: str) -> dict:
    """One point's hardware: FINN's estimate and the counts of its architecture, built in
    ``work``. A failure is a row with ``error`` (one line), so the sweep goes on."""
    import numpy as np
    import torch

    from bnnpose.hw_build.config import BuildConfig, Until
    from bnnpose.hw_build.make_bitstream import build
    from bnnpose.hw_build.models_table import build_columns, param_counts, random_batchnorm
    from bnnpose.models.registry import MODELS, arch_overrides, build_model
    from bnnpose.quantize.export import export_network

    row = {"point": point.name(), "base": point.base, "family": MODELS[point.base].family,
           "board": point.board, "knobs": point.arch(), "target_fps": point.fps}
    try:
        torch.manual_seed(0)
        model = build_model(point.base, **arch_overrides(point.base, point.arch()))
        model = random_batchnorm(model).eval()
        row["config"] = model.cfg.to_dict()
        row.update(param_counts(model))
        size = model.cfg.input_size
        hw = Path(work) / "builds" / f"{_arch_key(point.arch())}-{point.fps:g}"
        started = time.perf_counter()
        x = np.random.default_rng(0).integers(0, 256, (point.golden, 3, size, size))
        export_network(model, x.astype(np.float32), hw / "export", point.name(),
                       {"model": point.base, "arch": point.arch()})
        report = build(BuildConfig(model=hw / "export" / "model.onnx", board=point.board,
                                   out=hw / "build", fps=point.fps, until=Until.ESTIMATE,
                                   max_golden=point.golden, must_fit=False))
        row.update(build_columns(report),
                   build_wall_s=round(time.perf_counter() - started, 1))
    except Exception as e:  # noqa: BLE001 - a failed point is a result of the sweep
        row["error"] = one_line(e, 300)
    return row


def proxy_score(base: str, arch: dict, recipe: Proxy, runs: str, device: str = "cpu") -> dict:
    """:func:`trained_score` as a task of the sweep: a failure is ``{"error": one line}``."""
    started = time.perf_counter()
    try:
        score = trained_score(base, arch, recipe, Path(runs), device)
    except Exception as e:  # noqa: BLE001 - a failed training is a result of the sweep
        return {"error": one_line(e, 300)}
    return {**score, "wall_s": round(time.perf_counter() - started, 1)}


def _arch_key(arch: dict) -> str:
    return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:10]


def trained_score(base: str, arch: dict, recipe: Proxy, runs: Path, device: str = "cpu"
                  ) -> dict:
    """Train ``base`` with ``arch`` by ``recipe`` in ``runs`` (a finished run with the same
    recipe is reused, an interrupted one resumed) and its best held-out PCK@0.2."""
    from bnnpose.quantize.train import run_history, trained_run
    from bnnpose.quantize.train_config import TrainConfig

    cfg = TrainConfig(model=base, arch=arch or None, data=recipe.data, n_train=recipe.n_train,
                      n_val=recipe.n_val, epochs=recipe.epochs, batch_size=recipe.batch_size,
                      device=device)
    run = trained_run(cfg, runs, f"{base}-{_arch_key(arch)}")
    history = run_history(run)
    best = max(history, key=lambda h: h["val_pck"])
    return {"pck": best["val_pck"], "mean_pose": best["val_pck_mean_pose"],
            "label": recipe.label(), "run": str(run)}


def frontier(rows: list[dict], min_fps: float = 0.0) -> list[dict]:
    """The rows that fit, reach ``min_fps`` and no other such row beats on both accuracy and
    FPS (at least as good on both, better on one), by ascending FPS."""
    ok = [r for r in rows if "error" not in r and r["fits"] and r["fps"] >= min_fps]

    def beaten(r):
        return any(o["proxy"]["pck"] >= r["proxy"]["pck"] and o["fps"] >= r["fps"]
                   and (o["proxy"]["pck"], o["fps"]) != (r["proxy"]["pck"], r["fps"])
                   for o in ok)

    return sorted((r for r in ok if not beaten(r)), key=lambda r: r["fps"])


def run_points(points: list[Point], work: Path, runs: Path, jobs: int = 1, client=None,
               flow_digest: str = "", device: str = "cpu") -> list[dict]:
    """Rows of every point, in order: read where a finished one was written; for the others,
    a build per point and a proxy training per architecture (points that differ only in the
    folding target share it) run in a process pool or on the Dask ``client``'s cluster, and a
    point's row is written as soon as both of its parts are in."""
    from tqdm import tqdm

    done = work / "points"
    rows: dict[Point, dict] = {}
    todo = []
    for p in points:
        path = done / f"{p.key(flow_digest)}.json"
        if path.is_file():
            rows[p] = json.loads(path.read_text())
        else:
            todo.append(p)
    tasks: list[tuple[tuple, Callable, tuple]] = [(("build", p), estimate, (p, str(work)))
                                                  for p in todo]
    archs = {_arch_key(p.arch()): p for p in todo}
    tasks += [(("train", a), proxy_score, (p.base, p.arch(), p.proxy, str(runs), device))
              for a, p in archs.items()]
    built: dict[Point, dict] = {}
    trained: dict[str, dict] = {}
    bar = tqdm(total=len(points), initial=len(rows), desc="dse", unit="point", disable=None)
    for (kind, what), result in _run_tasks(tasks, jobs, client):
        (built if kind == "build" else trained)[what] = result
        for p in [p for p in todo if p not in rows and p in built
                  and _arch_key(p.arch()) in trained]:
            row, score = dict(built[p]), trained[_arch_key(p.arch())]
            if "error" in score and "error" not in row:
                row["error"] = f"proxy training: {score['error']}"
            elif "error" not in score:
                row["proxy"] = score
            write_json(done / f"{p.key(flow_digest)}.json", row)
            rows[p] = row
            bar.set_postfix_str(p.name())
            bar.update()
    bar.close()
    return [rows[p] for p in points]


def _run_tasks(tasks: list[tuple[tuple, Callable, tuple]], jobs: int, client
               ) -> Iterator[tuple[tuple, dict]]:
    """``(tag, function, args)`` -> ``(tag, function(*args))`` as each finishes."""
    if not tasks:
        return
    if client is not None:
        from distributed import as_completed

        futures = {client.submit(fn, *args, pure=False): tag for tag, fn, args in tasks}
        for future in as_completed(list(futures), loop=client.loop):
            yield futures[future], future.result()
        return
    if jobs == 1:
        for tag, fn, args in tasks:
            yield tag, fn(*args)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: FINN and torch keep threads and state a forked child must not inherit.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(fn, *args): tag for tag, fn, args in tasks}
        for future in as_completed(futures):
            yield futures[future], future.result()


def connect(address: str):
    """A Dask client of the scheduler at ``address``; one line when it does not answer."""
    try:
        from distributed import Client
    except ImportError:
        raise BnnposeError("--scheduler needs Dask's distributed: pip install "
                           "'bnnpose[build]'") from None
    try:
        return Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise BnnposeError(f"scheduler {address} does not answer ({one_line(e, 200)})") from None


def plot(rows: list[dict], front: list[dict], board: str, family: str, base: str,
         min_fps: float, path: Path) -> None:
    """Accuracy (proxy) against estimated FPS: size by LUT share, colour by BRAM share; the
    shipped network (a sweep from ``base`` may reach it) starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    fits = [r for r in ok if r["fits"]]
    over = [r for r in ok if not r["fits"]]
    sc = ax.scatter([r["fps"] for r in fits], [r["proxy"]["pck"] for r in fits],
                    s=[40 + 600 * r["lut_share"] for r in fits],
                    c=[r["bram_share"] for r in fits], cmap="viridis", vmin=0, vmax=1,
                    edgecolors="black", linewidths=0.5, zorder=3)
    if over:
        ax.scatter([r["fps"] for r in over], [r["proxy"]["pck"] for r in over], marker="x",
                   color="grey", s=60, zorder=3, label="does not fit the board")
    if front:
        ax.plot([r["fps"] for r in front], [r["proxy"]["pck"] for r in front], "-",
                color="tab:red", lw=1.5, zorder=2, label="frontier")
    shipped = [r for r in ok if is_shipped(r, base)]
    if shipped:
        from bnnpose.models.checkpoint_io import DEFAULT_MODEL

        ax.scatter([r["fps"] for r in shipped], [r["proxy"]["pck"] for r in shipped],
                   marker="*", s=320, facecolors="none", edgecolors="tab:red", linewidths=1.5,
                   zorder=4, label=f"shipped ({DEFAULT_MODEL})")
    for r in ok:
        # DSP slices are named where placement used them (none otherwise).
        dsp = f" ({r['dsp']} DSP)" if r.get("dsp") else ""
        ax.annotate(r["point"] + dsp, (r["fps"], r["proxy"]["pck"]), fontsize=7,
                    xytext=(5, 4), textcoords="offset points")
    if min_fps:
        ax.axvline(min_fps, ls="--", color="grey", lw=1, label=f"--min-fps {min_fps:g}")
    mean_pose = [r["proxy"]["mean_pose"] for r in ok if "mean_pose" in r["proxy"]]
    if mean_pose:  # a proxy below this has not learnt to find joints yet
        ax.axhline(sum(mean_pose) / len(mean_pose), ls=":", color="black", lw=1,
                   label="mean pose on the same renders")
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.08)  # room for the labels of the outermost points
    proxy = ok[0]["proxy"]["label"] if ok else ""
    ax.set(xlabel="estimated FPS (FINN, log scale)", ylabel="PCK@0.2 (proxy)",
           title=f"{family} on {board}: marker area = LUT share, colour = BRAM18 share, "
                 f"DSP slices in the labels\n{proxy}")
    ax.title.set_fontsize(9)
    fig.colorbar(sc, ax=ax, label="BRAM18 share of the board")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    tmp.replace(path)


def table(rows: list[dict], front: list[dict]) -> str:
    on_front = {r["point"] for r in front}
    lines = ["| point | est. FPS | LUT | BRAM18 | DSP | params | PCK@0.2 (proxy) | frontier |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    final = {r["point"]: r["final"]["pck"] for r in front if "final" in r}
    for r in sorted(rows, key=lambda r: r.get("fps", 0)):
        if "error" in r:
            lines.append(f"| {r['point']} | failed: {r['error']} | | | | | | |")
            continue
        fit = "" if r["fits"] else " (does not fit)"
        lines.append(f"| {r['point']} | {r['fps']:,.0f}{fit} | {r['lut_share']:.0%} | "
                     f"{r['bram_share']:.0%} | {r['dsp']} | {r['params']:,} | "
                     f"{r['proxy']['pck']:.3f} | "
                     f"{_front_cell(r['point'], on_front, final)} |")
    return "\n".join(lines)


def _front_cell(point: str, on_front: set[str], final: dict[str, float]) -> str:
    if point not in on_front:
        return ""
    return f"yes, {final[point]:.3f} trained longer" if point in final else "yes"


def sweep(board: str, family: str, knob_specs: list[str] | None, fps: list[float],
          proxy: Proxy, out: Path, jobs: int = 1, scheduler: str | None = None,
          min_fps: float = 0.0, golden: int = 4, with_shipped: bool = True,
          command: str = "", runs: Path | None = None, final: Proxy | None = None,
          device: str = "cpu", report: Callable[[str], None] = print) -> dict:
    """The whole sweep: points, rows, frontier, ``dse.json`` and the plot in ``out``
    (``with_shipped``: the shipped network at its folding target is a point too; ``final``:
    the frontier's architectures are trained again by this longer recipe, ``final`` in their
    rows)."""
    from bnnpose.quantize.train_config import resolve_device

    from bnnpose.hw_build.boards import board as board_spec
    from bnnpose.hw_build.models_table import current_flow_digest

    board_spec(board)
    if family not in BASES:
        raise BnnposeError(f"unknown family {family!r}; known: {', '.join(BASES)}")
    base = BASES[family][board]
    knobs = parse_knobs(base, DEFAULT_KNOBS[family] if knob_specs is None else knob_specs)
    if not fps or any(f <= 0 for f in fps):
        raise BnnposeError(f"--fps needs positive targets, got {fps}")
    if jobs < 1:
        raise BnnposeError(f"--jobs must be >= 1, got {jobs}")
    resolve_device(device)  # --device cuda without a GPU: one line, before any work
    points = grid(base, board, knobs, fps, proxy, golden, with_shipped)
    runs = runs or DEFAULT_RUNS
    # Connected first: a scheduler that does not answer fails before any work.
    client = None if scheduler is None else connect(scheduler)
    try:
        rows = run_points(points, out, runs, jobs, client, current_flow_digest(), device)
    finally:
        if client is not None:
            client.close()
    front = frontier(rows, min_fps)
    if final is not None:
        trained: dict[str, dict] = {}
        for r in front:  # the points of one architecture at other folding targets share it
            arch = _arch_key(r["knobs"])
            if arch not in trained:
                trained[arch] = trained_score(base, r["knobs"], final, runs, device)
            r["final"] = trained[arch]
    result = {
        "command": command or "bnnpose dse",
        "board": board, "family": family, "base": base, "knobs": knobs, "fps_targets": fps,
        "min_fps": min_fps, "proxy": {**vars(proxy), "label": proxy.label()},
        "final": None if final is None else {**vars(final), "label": final.label()},
        "points": rows, "frontier": [r["point"] for r in front],
        "shipped": next((r["point"] for r in rows if "error" not in r
                         and is_shipped(r, base)), None),
        "versions": versions(),
    }
    write_json(out / "dse.json", result)
    plot(rows, front, board, family, base, min_fps, out / f"dse_{board}.png")
    report(table(rows, front))
    report(f"-> {out / 'dse.json'}, {out / f'dse_{board}.png'}")
    reached = [r["fps"] for r in rows if "error" not in r and r["fits"]]
    if min_fps and not front:
        best = f"{max(reached):,.0f}" if reached else "none (no point fits the board)"
        raise BnnposeError(f"no point reaches --min-fps {min_fps:g}; the best that fits: {best}")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bnnpose dse", description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", required=True, help="pynq-z2 or zcu104")
    ap.add_argument("--family", default="hourglass", help=f"one of {', '.join(BASES)}")
    ap.add_argument("--knob", action="append", metavar="NAME=V1,V2",
                    help="an architecture knob and its values (repeatable; tuples as 24x48x96); "
                         "default: width and depth around the base network")
    ap.add_argument("--fps", default="300,1000", help="FINN folding targets (default %(default)s)")
    ap.add_argument("--min-fps", type=float, default=0.0,
                    help="the frontier keeps points at least this fast")
    ap.add_argument("--data", default=None, help="proxy training data (default: mesh renders, "
                                                 "stick figures for face and whole-body)")
    ap.add_argument("--train-samples", type=int, default=Proxy.n_train)
    ap.add_argument("--train-epochs", type=int, default=Proxy.epochs)
    ap.add_argument("--val", type=int, default=Proxy.n_val, help="held-out renders scored")
    ap.add_argument("--final-samples", type=int, metavar="N",
                    help="train the frontier's architectures again on N samples (with "
                         "--final-epochs): the accuracy they ship with, not a proxy")
    ap.add_argument("--final-epochs", type=int, default=8)
    ap.add_argument("--device", default="cpu", help="training device: cpu, cuda or auto")
    ap.add_argument("--golden", type=int, default=4, help="inputs checked per FINN stage")
    ap.add_argument("--jobs", type=int, default=1, help="points evaluated side by side")
    ap.add_argument("--scheduler", metavar="ADDRESS",
                    help="a Dask scheduler (tcp://host:port) whose workers take the points")
    ap.add_argument("--out", type=Path, help="default: out/dse/BOARD-FAMILY")
    ap.add_argument("--runs", type=Path, default=DEFAULT_RUNS,
                    help="proxy training runs, shared by sweeps: an architecture trains once "
                         "(default %(default)s)")
    a = ap.parse_args(argv)
    try:
        fps = [float(f) for f in a.fps.split(",")]
    except ValueError:
        raise BnnposeError(f"--fps {a.fps!r}: expected numbers like 300,1000") from None
    data = a.data or ("mesh" if a.family in ("hourglass", "bihrnet") else "synthetic")
    proxy = replace(Proxy(), data=data, n_train=a.train_samples, epochs=a.train_epochs,
                    n_val=a.val)
    sweep(a.board, a.family, a.knob, fps, proxy, a.out or DEFAULT_OUT / f"{a.board}-{a.family}",
          a.jobs, a.scheduler, a.min_fps, a.golden,
          command=" ".join(["bnnpose dse", *(argv if argv is not None else sys.argv[1:])]),
          runs=a.runs, device=a.device,
          final=None if a.final_samples is None else replace(
              proxy, n_train=a.final_samples, epochs=a.final_epochs, n_val=max(a.val, 512)))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main, None, "bnnpose dse"))
