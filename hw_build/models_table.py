"""``bnnpose models``: every registered network on every board, measured by the FINN flow.

Each (model, board) row comes from a real build up to FINN's estimates
(``make_bitstream`` with ``--until estimate``): the network is exported to QONNX with 16 golden
inputs, compiled, checked bit-exactly stage by stage, folded to ``--fps`` and estimated. The
network is the shipped checkpoint ``models/checkpoints/<name>.pt`` when it matches the
registry's config (trained thresholds), else the registry's seeded initialisation (``weights``
says which). Rows are cached in ``--cache`` under a key of the weights, the config, the board,
the target FPS, the flow's source code and the tool versions, so a second call builds nothing;
beside each row, ``<row>/export`` and ``<row>/build`` keep the exported model and FINN's reports
(``build/report.json``, the per-layer estimates) for inspection.

Each row that is not cached is built in a child process under a time budget (``--budget``,
default 10 minutes): a row past it is skipped with a line saying so, and ``--all`` waits for
every row, so the command always ends.

    bnnpose models [--boards pynq-z2 zcu104] [--fps 1000|max] [--json] [--refresh]
                   [--budget SECONDS | --all]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from bnnpose.host.common import BnnposeError, one_line, versions, write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path("out/models")
#: Sources whose change can change a row: the flow, the export and the networks' layers (the
#: registry's part, the config, is in the key on its own; skeletons and the codec are not).
FLOW_SOURCES = ("hw_build", "quantize/export.py", "quantize/golden.py", "quantize/qonnx_exec.py",
                "models/quantizers.py", "models/blocks.py", "models/hourglass.py",
                "models/hrnet.py", "models/bidrn.py")
#: Within FLOW_SOURCES, what gathers and shows rows rather than computes them: no reason to
#: rebuild a row when it changes.
ORCHESTRATION = ("hw_build/models_table.py", "hw_build/dse.py", "hw_build/demo.py",
                 "hw_build/cli.py", "hw_build/cross_check.py", "hw_build/docker")
N_GOLDEN = 16
#: Seconds one uncached row may take to build before it is skipped.
DEFAULT_BUDGET_S = 600.0


def _network(name: str):
    """``(binary network in eval mode, weights label, bytes identifying the weights)``."""
    from dataclasses import replace

    import torch

    from bnnpose.models.checkpoint_io import load_checkpoint, shipped_checkpoint
    from bnnpose.models.registry import MODELS, build_model

    ckpt = shipped_checkpoint(name, required=False)
    if ckpt is not None:
        model, meta = load_checkpoint(ckpt)
        # Compared as rebuilt, so fields added since the checkpoint count at their defaults.
        # RSign is the training recipe's choice, not the architecture's: its thresholds fold
        # into the MultiThresholds FINN builds anyway.
        if replace(model.cfg, rsign=MODELS[name].config.rsign) == MODELS[name].config:
            return model, "checkpoint", ckpt.read_bytes()
    torch.manual_seed(0)
    model = random_batchnorm(build_model(name))
    return model.eval(), "untrained (seed 0, random BatchNorm statistics)", b"init:0:bn"


def random_batchnorm(model):
    """``model`` with BatchNorm statistics and affine drawn like a trained network's.

    Freshly initialised BatchNorm (mean 0, var 1) gives every channel the same thresholds, on
    the quantizers' rounding ties; trained statistics differ from channel to channel, and so do
    the threshold memories FINN sizes from them.
    """
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-4, 4)
            m.running_var.uniform_(0.5, 6)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    return model


def current_flow_digest() -> str:
    h = hashlib.sha256()
    for src in FLOW_SOURCES:
        path = REPO / src
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            rel = f.relative_to(REPO).as_posix()
            if any(rel == o or rel.startswith(o + "/") for o in ORCHESTRATION):
                continue
            h.update(rel.encode())
            h.update(f.read_bytes())
    h.update(json.dumps(versions(), sort_keys=True).encode())
    return h.hexdigest()


def param_counts(model) -> dict:
    """Parameters, those held as 1-bit weights, and the stored size (1-bit weights packed,
    everything else float32)."""
    from bnnpose.models.blocks import binary_weight_convs

    total = sum(p.numel() for p in model.parameters())
    binary = sum(m.weight.numel() for m in binary_weight_convs(model))
    return {"params": total, "binary_params": binary,
            "size_kb": round((binary / 8 + (total - binary) * 4) / 1024, 1)}


def _row_path(name: str, board: str, fps: float | str, cache: Path, flow_digest: str | None
              ) -> tuple[object, str, Path]:
    """``(network, weights label, the row's cache file)``."""
    from bnnpose.models.registry import MODELS

    model, weights, weights_id = _network(name)
    cfg = MODELS[name].config
    key = hashlib.sha256(b"|".join([
        weights_id, json.dumps(cfg.to_dict(), sort_keys=True).encode(), board.encode(),
        repr(fps if isinstance(fps, str) else float(fps)).encode(),
        (flow_digest or current_flow_digest()).encode(),
    ])).hexdigest()[:20]
    return model, weights, cache / f"{name}-{board}-{key}.json"


def _cached(path: Path) -> dict | None:
    """The row cached at ``path`` (where its export and build folders are beside), or None."""
    if not path.is_file():
        return None
    return {**json.loads(path.read_text()), "cached": True, "work_dir": str(path.with_suffix(""))}


def measure(name: str, board: str, fps: float | str, cache: Path, refresh: bool = False,
            flow_digest: str | None = None) -> dict:
    """One row of the table; built by FINN unless the cache holds it. The returned row also
    says whether it came from the cache and where its export and build folders are.
    ``fps="max"``: the fastest folding that fits, with the target the search chose."""
    import numpy as np

    from bnnpose.hw_build.config import BuildConfig, Until
    from bnnpose.hw_build.make_bitstream import build
    from bnnpose.models.registry import MODELS
    from bnnpose.quantize.export import export_network

    model, weights, path = _row_path(name, board, fps, cache, flow_digest)
    cfg = MODELS[name].config
    work = path.with_suffix("")
    if not refresh and (row := _cached(path)) is not None:
        return row
    size = cfg.input_size
    x = np.random.default_rng(0).integers(0, 256, (N_GOLDEN, 3, size, size))
    export_network(model, x.astype(np.float32), work / "export", name,
                   {"model": name, "weights": weights})
    # Measured as asked, fitting or not: the table says which rows fit ("max" must fit).
    report = build(BuildConfig(model=work / "export" / "model.onnx", board=board,
                               out=work / "build", fps=fps, until=Until.ESTIMATE,
                               must_fit=False))
    row = {
        "model": name, "family": MODELS[name].family, "board": board, "weights": weights,
        "input_size": size, **param_counts(model), "target_fps": fps, **build_columns(report),
        "bitexact_stages": report["bitexact"], "golden_inputs": N_GOLDEN,
        "versions": report["versions"],
    }
    if "fps_search" in report:
        row["fps_search"] = {"chosen_target": report["fps_search"]["chosen_target"],
                             "probes": len(report["fps_search"]["probes"])}
    write_json(path, row)
    return {**row, "cached": False, "work_dir": str(work)}


def build_columns(report: dict) -> dict:
    """What a row of a table (``bnnpose models``, ``bnnpose dse``) takes from a build's
    ``report.json``: MACs, FINN's estimate and its fit, unmapped nodes, bit-exactness."""
    est = report["estimate"]
    return {"macs_by_bitwidth": report["macs_by_bitwidth"],
            "xnor_mac_share": report["xnor_mac_share"],
            **{k: est[k] for k in ("fps", "clock_mhz", "lut", "bram18", "uram", "dsp",
                                   "lut_share", "bram_share", "fits", "bottleneck")},
            "memories": report.get("placement", {}).get("memories"),
            "multipliers": report.get("placement", {}).get("multipliers"),
            "unmapped_nodes": report["unmapped_nodes"],
            "bitexact": all(report["bitexact"].values())}


def _measure_in_child(conn, entry, args: tuple) -> None:
    """The child's side of :func:`measure_within`: the row, or the error as one line."""
    from bnnpose.models import registry

    name = args[0]
    registry.MODELS.setdefault(name, entry)  # a name registered at run time (benches, tests)
    try:
        conn.send(("row", measure(*args)))
    except BnnposeError as e:
        conn.send(("error", str(e)))
    except BaseException as e:  # anything else FINN raises, as one line all the same
        conn.send(("error", f"{type(e).__name__}: {one_line(e, 400)}"))


def measure_within(budget_s: float, work: Path, name: str, board: str, fps: float | str,
                   cache: Path, refresh: bool = False, flow_digest: str | None = None
                   ) -> dict | None:
    """:func:`measure` in a child process that is stopped after ``budget_s`` seconds; None
    then, with the row's half-built folder ``work`` removed."""
    import multiprocessing
    import shutil

    from bnnpose.models.registry import MODELS

    # spawn, not fork: the parent has torch's thread pools running, which a fork would copy
    # in an unusable state.
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_measure_in_child, daemon=True, args=(
        send, MODELS[name], (name, board, fps, cache, refresh, flow_digest)))
    child.start()
    send.close()
    try:
        if not receive.poll(budget_s):
            child.kill()
            child.join()
            shutil.rmtree(work, ignore_errors=True)
            return None
        kind, value = receive.recv()
    except EOFError:  # the child died without a word (killed, out of memory)
        child.join()
        raise BnnposeError(f"{name} on {board}: the build process ended with status "
                           f"{child.exitcode}") from None
    child.join()
    if kind == "error":
        raise BnnposeError(value)
    return value


def table(models: list[str], boards: list[str] | None, fps: float | str, cache: Path,
          refresh: bool = False, budget_s: float | None = DEFAULT_BUDGET_S
          ) -> tuple[list[dict], list[str]]:
    """Rows of ``models`` x ``boards`` (``boards=None`` takes each model's own boards) and a
    line for each row skipped for exceeding ``budget_s`` (None: no budget)."""
    from tqdm import tqdm

    from bnnpose.models.registry import MODELS

    digest = current_flow_digest()
    pairs = [(m, b) for m in models for b in (MODELS[m].boards if boards is None else boards)]
    rows, skipped = [], []
    bar = tqdm(pairs, desc="models", unit="row", disable=None)
    for m, b in bar:
        bar.set_postfix_str(f"{m} on {b}")
        path = _row_path(m, b, fps, cache, digest)[2]
        row = None if refresh else _cached(path)
        if row is None and budget_s is None:
            row = measure(m, b, fps, cache, refresh, digest)
        elif row is None:
            row = measure_within(budget_s, path.with_suffix(""), m, b, fps, cache, refresh,
                                 digest)
        if row is None:
            skipped.append(f"{m} on {b}: not built within the {budget_s:g} s budget "
                           "(--budget SECONDS to allow more, --all to wait for every row)")
            tqdm.write(f"bnnpose models: skipped {skipped[-1]}", file=sys.stderr)
        else:
            rows.append(row)
    return rows, skipped


def _print(rows: list[dict]) -> None:
    head = ("model", "family", "board", "params", "binary", "KB", "XNOR", "FPS", "LUT",
            "BRAM18", "URAM", "DSP", "fits", "unmapped", "bit-exact")
    lines = [head] + [(
        r["model"], r["family"], r["board"], f"{r['params']:,}", f"{r['binary_params']:,}",
        f"{r['size_kb']:g}", f"{r['xnor_mac_share']:.3f}", f"{r['fps']:,.0f}", f"{r['lut']:,}",
        str(r["bram18"]), str(r["uram"]), str(r["dsp"]), "yes" if r["fits"] else "NO",
        str(len(r["unmapped_nodes"])), "yes" if r["bitexact"] else "NO") for r in rows]
    widths = [max(len(line[k]) for line in lines) for k in range(len(head))]
    for line in lines:
        print("  ".join(v.ljust(w) if k < 3 else v.rjust(w)
                        for k, (v, w) in enumerate(zip(line, widths, strict=True))))


def main(argv: list[str] | None = None) -> int:
    """``bnnpose models``: params, MACs, FINN estimate and fit per model and board."""
    from bnnpose.hw_build.boards import board
    from bnnpose.hw_build.config import DEFAULT_FPS, parse_fps
    from bnnpose.models.registry import MODELS, model_entry

    p = argparse.ArgumentParser(prog="bnnpose models", description=main.__doc__)
    p.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    p.add_argument("--boards", nargs="+", default=None,
                   help="default: the boards each model is sized for (-full: zcu104 only)")
    p.add_argument("--fps", default=DEFAULT_FPS,
                   help="FINN folding target, or 'max': the fastest folding that fits each "
                        "board (default %(default)g)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--refresh", action="store_true", help="rebuild cached rows")
    p.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                       help="skip an uncached row whose build takes longer "
                            "(default %(default)g)")
    limit.add_argument("--all", action="store_true", help="build every row, however long")
    a = p.parse_args(argv)
    if a.budget <= 0:
        raise BnnposeError(f"--budget must be positive, got {a.budget:g}")
    models = a.models or list(MODELS)
    for m in models:
        model_entry(m)
    for b in a.boards or []:
        board(b)
    fps = parse_fps(a.fps)
    rows, _ = table(models, a.boards, fps, a.cache, a.refresh, None if a.all else a.budget)
    if a.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        _print(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
