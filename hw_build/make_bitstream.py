"""Compile a binary QONNX model into a FINN dataflow accelerator for a PYNQ board.

    python hw_build/make_bitstream.py --model M.onnx --board pynq-z2 --out DIR [--fps 1000]
        [--golden-in X.npy --golden-out Y.npy] [--until {estimate,codegen,bitstream}]
    python hw_build/make_bitstream.py --config build.json [--out DIR ...]

``--config`` reads a :class:`BuildConfig` as JSON (the ``config`` a report.json records);
options given beside it override its fields.

Runs the steps of ``bnnpose.hw_build.steps.STEPS`` in order, checks the golden vectors after the
marked steps, and writes ``DIR/report.json`` (estimates, MAC split, bit-exactness per stage,
versions, timings), ``DIR/io_shape.json``, ``DIR/model_hw.onnx`` and every intermediate model.
Without Vivado it stops after code generation and says so; ``--until bitstream`` then fails.
DIR appears only when the build succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from bnnpose.host.common import (BnnposeError, atomic_dir, run_main, sha256_file, versions,
                                 write_json)
from bnnpose.hw_build.boards import Board, board
from bnnpose.hw_build.config import (DEFAULT_FPS, LEVELS, MAX_FPS, BuildConfig, BuildContext,
                                     Until)

def _load_qonnx(path: Path):
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper

    if not path.is_file():
        raise BnnposeError(f"model file not found: {path}")
    try:
        proto = onnx.load(str(path))
    except Exception as e:
        raise BnnposeError(f"not an ONNX model: {path} ({type(e).__name__})") from None
    if not proto.graph.node:
        raise BnnposeError(f"not an ONNX model: {path} (empty graph)")
    qonnx_ops = {"Quant", "BipolarQuant", "BinaryQuant", "Trunc", "MultiThreshold"}
    if not any(n.op_type in qonnx_ops for n in proto.graph.node):
        raise BnnposeError(f"not a QONNX model: {path} has no Quant/BipolarQuant nodes "
                           "(export it with brevitas.export.export_qonnx)")
    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise BnnposeError(f"{path}: expected one input and one output, got "
                           f"{len(proto.graph.input)} and {len(proto.graph.output)}")
    from bnnpose.quantize.qonnx_index import indexed_lookups

    with indexed_lookups():  # the wrapper checks every tensor's shape: a lookup each
        return ModelWrapper(proto)


def _load_golden(cfg: BuildConfig, model) -> object:
    from qonnx.core.datatype import DataType
    from qonnx.util.cleanup import cleanup_model

    from bnnpose.quantize.golden import Golden
    from bnnpose.quantize.qonnx_exec import exec_onnx

    gin = cfg.golden_in or (cfg.model.parent / "golden_in.npy")
    gout = cfg.golden_out or (cfg.model.parent / "golden_out.npy")
    ishape = model.get_tensor_shape(model.graph.input[0].name)
    if cfg.golden_in is not None or gin.is_file():
        try:
            x = np.load(gin)
        except Exception as e:
            raise BnnposeError(f"cannot read golden input {gin} ({type(e).__name__})") from None
    else:
        rng = np.random.default_rng(0)
        idt = model.get_tensor_datatype(model.graph.input[0].name)
        lo, hi = (idt.min(), idt.max()) if idt != DataType["FLOAT32"] else (0, 255)
        x = rng.integers(lo, hi + 1, size=(cfg.max_golden, *ishape[1:])).astype(np.float32)
    x = x[: cfg.max_golden].astype(np.float32)
    if list(x.shape[1:]) != list(ishape[1:]):
        raise BnnposeError(f"golden input shape {list(x.shape)} does not match the model input "
                           f"{ishape}")
    source = "file"
    if cfg.golden_out is not None or (gin.is_file() and gout.is_file()):
        y = np.load(gout)[: len(x)].astype(np.float32)
    else:
        clean = cleanup_model(model)
        y = np.concatenate([exec_onnx(clean, xi[None]) for xi in x])
        source = "qonnx_exec"
    return Golden(x=x, y=y), source


def _io_shape(model) -> dict:
    """The FINN driver's io_shape dict, from the first/last dataflow node's folding."""
    from finn.util.data_packing import finnpy_to_packed_bytearray
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.util.basic import gen_finn_dt_tensor

    first = getCustomOp(model.find_consumer(model.graph.input[0].name))
    last = getCustomOp(model.find_producer(model.graph.output[0].name))
    idt, odt = first.get_input_datatype(), last.get_output_datatype()
    ifold, ofold = tuple(first.get_folded_input_shape()), tuple(last.get_folded_output_shape())
    ipacked = finnpy_to_packed_bytearray(gen_finn_dt_tensor(idt, ifold), idt).shape
    opacked = finnpy_to_packed_bytearray(gen_finn_dt_tensor(odt, ofold), odt).shape
    return {
        "idt": [f"DataType['{idt.name}']"], "odt": [f"DataType['{odt.name}']"],
        "ishape_normal": [list(model.get_tensor_shape(model.graph.input[0].name))],
        "oshape_normal": [list(model.get_tensor_shape(model.graph.output[0].name))],
        "ishape_folded": [list(ifold)], "oshape_folded": [list(ofold)],
        "ishape_packed": [list(ipacked)], "oshape_packed": [list(opacked)],
        "idma_names": ["idma0"], "odma_names": ["odma0"],
        "number_of_external_weights": 0, "num_inputs": 1, "num_outputs": 1,
    }


def build(cfg: BuildConfig) -> dict:
    """Run the build; returns the report dict (also written to ``cfg.out/report.json``).

    A failure is one :class:`BnnposeError` line; ``cfg.out`` is left as it was and what the
    build had written is kept in ``failed/<name>`` beside it, for inspection.
    """
    target = board(cfg.board)
    model = _load_qonnx(cfg.model)
    from bnnpose.hw_build import finn_env

    if cfg.until == Until.BITSTREAM and not finn_env.vivado_available():
        # Fail before minutes of compilation that could not end in a bitstream anyway.
        raise finn_env.ToolchainError("--until bitstream needs Vivado: set XILINX_VIVADO, or "
                                      "run inside the FINN Docker image with Vivado mounted")
    from bnnpose.hw_build.resume import find_resumable, inputs_digest

    digest = inputs_digest(cfg)
    resumed = find_resumable(cfg, digest) if cfg.resume else None
    failed = Path(cfg.out).resolve().parent / "failed" / Path(cfg.out).name
    try:
        with atomic_dir(cfg.out, keep_failed=failed) as tmp:
            report, stopped_for_vivado = _build_in(cfg, target, model, tmp, digest, resumed)
    except BnnposeError as e:
        if failed.is_dir():
            raise BnnposeError(f"{e} (partial build kept in {failed}; --resume continues "
                               "it)") from None
        raise
    if resumed is not None:  # its steps live on in cfg.out
        shutil.rmtree(resumed[0], ignore_errors=True)
    if stopped_for_vivado:
        print("bnnpose: bitstream not built: it needs Vivado (set XILINX_VIVADO or use "
              "the FINN Docker image); estimates, HLS/RTL code and the simulation model are in "
              f"{cfg.out}", file=sys.stderr)
    return report


def _build_in(cfg: BuildConfig, target: Board, model, tmp: Path, digest: str,
              resumed: tuple[Path, dict] | None) -> tuple[dict, bool]:
    """The build into the temporary folder ``tmp``: ``(report, stopped for lack of Vivado)``.
    ``resumed``: the folder and progress of an earlier build to continue."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model
    from tqdm import tqdm

    from bnnpose.hw_build import finn_env
    from bnnpose.hw_build.batched_passes import batched_passes
    from bnnpose.hw_build.folding import Probe, fastest_fit, misfit_error
    from bnnpose.hw_build.resume import restore, save_progress
    from bnnpose.quantize.qonnx_index import indexed_lookups

    with contextlib.ExitStack() as stack:
        stack.enter_context(indexed_lookups())
        stack.enter_context(batched_passes())
        # qonnx names the tensors it creates with Python's global random generator; seeded,
        # a build of the same model gives a byte-identical model_hw.onnx.
        stack.callback(random.setstate, random.getstate())
        random.seed(0)
        finn_env.configure(tmp)
        from bnnpose.hw_build.sim import execute_hw_graph
        from bnnpose.hw_build.steps import STEPS, StepError, run_step
        from bnnpose.quantize.qonnx_exec import exec_onnx

        golden, golden_source = _load_golden(cfg, model)
        searching = cfg.fps == MAX_FPS
        ctx = BuildContext(cfg=cfg, board=target, out=tmp, golden=golden,
                           fps=DEFAULT_FPS if searching else float(cfg.fps))
        ctx.finn_cfg = ctx.make_finn_config()
        ctx.report = {"model": str(cfg.model), "model_sha256": sha256_file(cfg.model),
                      "board": cfg.board, "config": cfg.to_dict(), "unmapped_nodes": [],
                      "golden_source": golden_source}
        inter = tmp / "intermediate_models"
        last_level = LEVELS.index(cfg.until.value)
        stopped_for_vivado = False
        steps = [s for s in STEPS if LEVELS.index(s.level) <= last_level]
        folding = [s for s in steps if s.folds]
        unfolded = None  # the graph every folding starts from, for the search
        start = 0
        if resumed is not None:
            folder, state = resumed
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            timings = restore(state, ctx, golden)
            ctx.report["config"] = cfg.to_dict()
            names = [s.name for s in steps]
            # Code generation writes this folder's path into the graph: redo it and after.
            start = min(state["step_index"] + 1,
                        names.index("hw_codegen") if "hw_codegen" in names else len(steps))
            model = ModelWrapper(str(inter / f"{start - 1:02d}_{steps[start - 1].name}.onnx"))
            if folding and start > steps.index(folding[0]):
                before = steps.index(folding[0]) - 1
                unfolded = ModelWrapper(str(inter / f"{before:02d}_{steps[before].name}.onnx"))
            print(f"make_bitstream: resuming {folder} after step {steps[start - 1].name}",
                  file=sys.stderr)
        else:
            try:
                model = cleanup_model(model)
                golden.check("qonnx", model, exec_onnx)
            except Exception as e:
                raise StepError("qonnx_cleanup", e) from e
            timings: dict[str, float] = {}
            inter.mkdir()
        # FINN's warnings and prints go to DIR/build.log; the terminal shows progress only.
        log_file = stack.enter_context(open(tmp / "build.log", "a"))
        handler = logging.StreamHandler(log_file)
        finn_log = logging.getLogger("finn_logger")
        finn_log.addHandler(handler)
        finn_log.propagate = False
        stack.callback(finn_log.removeHandler, handler)
        stack.callback(setattr, finn_log, "propagate", True)
        # Python warnings of FINN, qonnx and the golden checks too (restored on exit).
        stack.enter_context(warnings.catch_warnings())
        warnings.showwarning = lambda message, category, filename, lineno, file=None, \
            line=None: log_file.write(warnings.formatwarning(message, category, filename,
                                                             lineno, line))
        progress = tqdm(steps[start:], desc="build", unit="step", file=sys.stderr,
                        initial=start, total=len(steps))
        for i, step in enumerate(progress, start=start):
            if step.name == "bitstream":
                if not finn_env.vivado_available() and cfg.until != Until.BITSTREAM:
                    stopped_for_vivado = True
                    continue
            if step.folds and unfolded is None:
                unfolded = ModelWrapper(model.model.__deepcopy__())
                if searching:
                    with contextlib.redirect_stdout(log_file):
                        best, probes = fastest_fit(unfolded, ctx, folding, tmp / "fps_search")
                    if best is None:
                        raise misfit_error(cfg.board, None, probes)
                    ctx.fps = best.target
                    ctx.finn_cfg = ctx.make_finn_config()
                    ctx.report["fps_search"] = {"chosen_target": best.target, "fps": best.fps,
                                                "probes": [p.to_dict() for p in probes]}
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(log_file):
                model = run_step(step, model, ctx)
            timings[step.name] = round(time.perf_counter() - t0, 3)
            model.save(str(inter / f"{i:02d}_{step.name}.onnx"))
            if step.snapshot:
                model.save(str(tmp / "model_hw.onnx"))
                write_json(tmp / "io_shape.json", _io_shape(model))
            if step.verify:
                try:
                    golden.check(step.verify, model,
                                 execute_hw_graph if step.verify_with == "hw" else exec_onnx)
                except Exception as e:
                    raise StepError(f"{step.name} (golden check)", e) from e
            if folding and step is folding[-1] and cfg.must_fit \
                    and not ctx.report["estimate"]["fits"]:
                e = ctx.report["estimate"]
                own = Probe(ctx.fps, e["fps"], e["lut_share"], e["bram_share"], False)
                with contextlib.redirect_stdout(log_file):
                    best, probes = fastest_fit(unfolded, ctx, folding, tmp / "fps_search",
                                               known=[own])
                raise misfit_error(cfg.board, best, probes, {**e, "target": ctx.fps})
            save_progress(tmp, digest, i, step.name, ctx, golden, timings)
        if cfg.until != Until.ESTIMATE and not finn_env.vivado_available():
            stopped_for_vivado = True
        ctx.report.update({
            "bitexact": {stage: r["bitexact"] for stage, r in golden.results.items()},
            "verification": golden.results,
            "host_ops": ctx.host_ops,
            "vivado": finn_env.vivado_available(),
            "bitstream": ctx.artifacts or None,
            "versions": versions(),
            "timings_s": timings,
        })
        write_json(tmp / "report.json", ctx.report)
        # Judged after the last step, so that a graph that cannot map at all fails for that
        # reason (an op FINN lacks may also compute in float, and so inexactly).
        inexact = [stage for stage, r in golden.results.items() if not r["bitexact"]]
        if inexact and cfg.must_match:
            r = golden.results[inexact[0]]
            raise BnnposeError(
                f"the {inexact[0]} graph is not bit-exact: {r['n_mismatched']} of "
                f"{r['n_inputs']} golden outputs differ (max |diff| {r['max_abs_diff']:.3g}), "
                f"so the accelerator would not compute the network; --allow-inexact builds on")
    return ctx.report, stopped_for_vivado


def parse_args(argv: list[str] | None = None) -> BuildConfig:
    from bnnpose.hw_build.boards import BOARDS

    p = argparse.ArgumentParser(prog="make_bitstream", description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, metavar="JSON",
                   help="a build config as JSON (e.g. the 'config' of a report.json); the "
                        "options below override its fields")
    p.add_argument("--model", type=Path, help="QONNX model (.onnx); required")
    p.add_argument("--board", help=f"one of: {', '.join(BOARDS)}; required")
    p.add_argument("--out", type=Path, help="output folder; required")
    p.add_argument("--fps", help=f"target frames/s, or 'max': the fastest folding that fits "
                                 f"the board (default {DEFAULT_FPS:g})")
    p.add_argument("--allow-misfit", dest="must_fit", action="store_const", const=False,
                   help="estimate even when the folding exceeds the board's limits (exit 0, "
                        "fits=false in the report) instead of failing")
    p.add_argument("--allow-inexact", dest="must_match", action="store_const", const=False,
                   help="build on when a stage is not bit-exact against the golden outputs "
                        "(recorded in the report) instead of failing")
    p.add_argument("--resume", action="store_const", const=True,
                   help="continue a killed or failed build of the same inputs into --out "
                        "from its last finished step")
    p.add_argument("--golden-in", type=Path, help="golden inputs .npy [N,C,H,W]")
    p.add_argument("--golden-out", type=Path, help="golden outputs .npy [N,J,h,w]")
    p.add_argument("--until", choices=LEVELS, help="last stage (default: codegen)")
    p.add_argument("--folding", type=Path, help="FINN folding config JSON")
    p.add_argument("--clock-mhz", type=float, help="fabric clock (default: board's usual)")
    a = vars(p.parse_args(argv))
    config = a.pop("config")
    base = BuildConfig.from_json(config).to_dict() if config is not None else {}
    given = {k: str(v) if isinstance(v, Path) else v for k, v in a.items() if v is not None}
    missing = [f"--{k}" for k in ("model", "board", "out") if k not in {**base, **given}]
    if missing:
        p.error(f"the following arguments are required: {', '.join(missing)}")
    return BuildConfig.from_dict({**base, **given})


def summary_line(report: dict) -> str:
    e = report["estimate"]
    exact = all(report["bitexact"].values())
    return (f"{report['board']}: {e['fps']:.0f} FPS at {e['clock_mhz']:g} MHz, LUT {e['lut']} "
            f"({100 * e['lut_share']:.0f}%), BRAM18 {e['bram18']} ({100 * e['bram_share']:.0f}%), "
            f"fits={e['fits']}, XNOR MAC share {report['xnor_mac_share']:.2f}, "
            f"bit-exact {'all stages' if exact else report['bitexact']}")


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv, "make_bitstream")


def _main(argv: list[str]) -> int:
    report = build(parse_args(argv))
    search = report.get("fps_search")
    if search:
        print(f"--fps max: the fastest folding that fits is FINN's for --fps "
              f"{search['chosen_target']:.4g} ({len(search['probes'])} foldings estimated)")
    print(summary_line(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
