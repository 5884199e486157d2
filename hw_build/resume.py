"""Resumable builds: what a build records after each finished step, and the build to continue.

A build writes ``progress.json`` into its folder after every step: the step, the report and
golden results so far, and a digest of its inputs (model, golden files, options, the flow's
source, tool versions). A build killed midway leaves its temporary folder
(``.<name>.partial-*`` beside the output folder); one that failed leaves ``failed/<name>``.
``make_bitstream.py --resume`` continues the one of those whose inputs are this build's and
that got furthest, from its last finished step. Code generation bakes the build folder's path
into the graph, so a resumed build redoes it and what follows.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np

from bnnpose.host.common import sha256_file, versions, write_json
from bnnpose.hw_build.config import BuildConfig

PROGRESS_FILE = "progress.json"
#: Options that steer where and how a build runs, not what it builds.
SESSION_OPTIONS = ("out", "resume")


def _flow_sources() -> list[Path]:
    from bnnpose.quantize import golden, qonnx_exec

    here = Path(__file__).resolve().parent
    return [*sorted(here.glob("*.py")), Path(golden.__file__), Path(qonnx_exec.__file__)]


def inputs_digest(cfg: BuildConfig) -> str:
    """sha256 of everything a build's result depends on."""
    h = hashlib.sha256()
    options = {k: v for k, v in cfg.to_dict().items() if k not in SESSION_OPTIONS}
    h.update(json.dumps(options, sort_keys=True).encode())
    h.update(json.dumps(versions(), sort_keys=True).encode())
    for path in (cfg.model, cfg.golden_in or cfg.model.parent / "golden_in.npy",
                 cfg.golden_out or cfg.model.parent / "golden_out.npy", cfg.folding):
        if path is not None and Path(path).is_file():
            h.update(sha256_file(path).encode())
    for src in _flow_sources():
        h.update(src.read_bytes())
    return h.hexdigest()


def save_progress(folder: Path, digest: str, index: int, step: str, ctx, golden,
                  timings: dict) -> None:
    """Record that step ``index`` (``step``) finished, with the state the next steps need."""
    write_json(folder / PROGRESS_FILE, {
        "inputs": digest, "step_index": index, "step": step, "fps": ctx.fps,
        "report": ctx.report, "host_ops": ctx.host_ops, "artifacts": ctx.artifacts,
        "golden_results": golden.results,
        "golden_out_scale": None if golden.out_scale is None else golden.out_scale.tolist(),
        "timings": timings,
        # qonnx's next tensor names: a resumed build names them as the whole one would have.
        "random_state": _random_state(),
    })


def _random_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def restore(state: dict, ctx, golden) -> dict:
    """Put a recorded state back into a build's context and golden vectors; the timings."""
    ctx.fps = float(state["fps"])
    ctx.finn_cfg = ctx.make_finn_config()
    ctx.report = state["report"]
    ctx.host_ops = state["host_ops"]
    ctx.artifacts = state["artifacts"]
    golden.results = state["golden_results"]
    scale = state["golden_out_scale"]
    golden.out_scale = None if scale is None else np.asarray(scale, dtype=np.float32)
    version, internal, gauss = state["random_state"]
    random.setstate((version, tuple(internal), gauss))
    return dict(state["timings"])


def candidates(out: Path) -> list[Path]:
    """Folders a build of ``out`` may have left: killed (partial) or failed."""
    out = Path(out).resolve()
    return [*sorted(out.parent.glob(f".{out.name}.partial-*")),
            out.parent / "failed" / out.name]


def find_resumable(cfg: BuildConfig, digest: str) -> tuple[Path, dict] | None:
    """The left-behind build of the same inputs that got furthest, and its progress."""
    best = None
    for folder in candidates(cfg.out):
        try:
            state = json.loads((folder / PROGRESS_FILE).read_text())
        except (OSError, ValueError):
            continue
        if state.get("inputs") == digest and (best is None
                                              or state["step_index"] > best[1]["step_index"]):
            best = (folder, state)
    return best
