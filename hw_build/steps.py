"""The build as data: ``STEPS`` lists ``(name, function, golden stage, last --until level)``.

Every step is ``step_<verb>_<object>(model, ctx) -> model``. Steps named after FINN's builder
steps call them; the others are ours and say why in their docstring.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from bnnpose.host.common import BnnposeError, one_line
from bnnpose.hw_build.placement import RESOURCES, place_resources

if TYPE_CHECKING:
    from bnnpose.hw_build.config import BuildContext

#: Ops FINN has no resource model for; their LUT/BRAM are reported as 0 by the estimate.
UNMODELLED_OPS = ("UpsampleNearestNeighbour", "StreamingConcat", "ElementwiseAdd",
                  "DuplicateStreams", "Pool")


class UnmappedNodesError(BnnposeError):
    """Nodes that FINN could not turn into hardware layers."""

    def __init__(self, nodes: list[tuple[str, str]]):
        self.nodes = nodes
        ops = sorted({op for _, op in nodes})
        super().__init__(f"FINN cannot map {len(nodes)} node(s) to hardware: op types "
                         f"{', '.join(ops)} (first: {nodes[0][0]})")


class StepError(BnnposeError):
    """A FINN or qonnx failure inside a build step, as one line: the step, the node being
    worked on when it failed (when one was) and the library's own message."""

    def __init__(self, step: str, error: BaseException):
        node = _failing_node(error)
        at = f" at node {node}" if node else ""
        self.step, self.node = step, node
        super().__init__(f"step {step} failed{at}: {type(error).__name__}: "
                         f"{one_line(error, 400)}")


def _failing_node(error: BaseException) -> str | None:
    """``name (op_type)`` of the innermost ONNX node a frame of the traceback was handling:
    FINN's and qonnx's transformations walk the graph with a local ``node`` (or ``n``)."""
    from onnx import NodeProto

    for frame, _ in reversed(list(traceback.walk_tb(error.__traceback__))):
        for name in ("node", "n", "cnode"):
            value = frame.f_locals.get(name)
            if isinstance(value, NodeProto):
                return f"{value.name or '?'} ({value.op_type})"
    return None


def run_step(step: Step, model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """``step`` on ``model``: our own errors pass as they are, any other becomes a
    :class:`StepError`, so no library traceback reaches the user."""
    try:
        return step.run(model, ctx)
    except BnnposeError:
        raise
    except Exception as e:
        raise StepError(step.name, e) from e


def _finn(name: str) -> Callable:
    def run(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
        import finn.builder.build_dataflow_steps as finn_steps

        return getattr(finn_steps, name)(model, ctx.finn_cfg)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"FINN builder's ``{name}``."
    return run


def step_streamline_pose(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Streamline a binary pose graph with residual Adds, Concats, MaxPools and Upsamples.

    FINN's stock streamlining cannot cancel the layout Transposes across forks and joins nor
    handle -1-padded bipolar convs; ours lowers convs, folds the -1 Pad into the window
    generator, rewrites the graph in NHWC, converts 1b x 1b MatMuls to XNOR-popcount, and cuts
    the head's per-channel scale off for the host.
    """
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.fpgadataflow.convert_to_hw.upsample import InferUpsample
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from finn.transformation.streamline.streamline_plus import StreamlinePlus
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    from bnnpose.hw_build import transforms as T

    # Merges here join integer streams of scale 1, so the classic per-layer Streamline is
    # enough (StreamlinePlus's residual movers found nothing more and took twice as long).
    model = model.transform(Streamline())
    if _inner_linear_ops(model):
        # Quantizer scales other than 1 (a QuantReLU's, say) stay as Muls at forks and joins,
        # where the per-layer Streamline cannot move them; StreamlinePlus carries them past
        # forks, Adds, Concats and invariants into the next thresholds or the output.
        model = model.transform(StreamlinePlus())
    T.refuse_zero_padded_bipolar_convs(model)
    model = model.transform(LowerConvsToMatMul())
    model = model.transform(T.AbsorbPadIntoIm2Col())
    model = model.transform(T.ConvertStreamsToNHWC())
    model = model.transform(T.ConvertBipolarMatMulToXnorPopcountPadAware())
    # The XNOR rewrite leaves 2*popcount - K in front of each threshold.
    model = model.transform(absorb.AbsorbAddIntoMultiThreshold())
    model = model.transform(absorb.AbsorbMulIntoMultiThreshold())
    model = model.transform(RoundAndClipThresholds())
    trailing = T.RemoveTrailingScale()
    model = model.transform(trailing)
    if trailing.scale is not None:
        ctx.golden.out_scale = trailing.scale
        ctx.host_ops.append({"op": "Mul", "what": "per-channel output scale",
                             "scale": trailing.scale.tolist()})
    model = model.transform(InferUpsample())
    return model.transform(InferDataLayouts())


def _inner_linear_ops(model: ModelWrapper) -> bool:
    """Whether a Mul or Add with a constant operand is left anywhere but at the output."""
    out = model.graph.output[0].name
    return any(n.op_type in ("Mul", "Add") and n.output[0] != out
               and any(model.get_initializer(t) is not None for t in n.input)
               for n in model.graph.node)


def step_check_mapped(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Refuse a graph with nodes FINN did not convert: they would have to run in software."""
    unmapped = [(n.name, n.op_type) for n in model.graph.node
                if not n.domain.startswith("finn.custom_op.fpgadataflow")]
    ctx.report["unmapped_nodes"] = [f"{name} ({op})" for name, op in unmapped]
    if unmapped:
        raise UnmappedNodesError(unmapped)
    return model


def step_minimize_bit_width(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """FINN's bit-width minimization, with XNOR accumulators kept wide enough to count.

    FINN sizes an XNOR-popcount MVAU's accumulator from its weights as if it summed
    ``+-w * {0, 1}``, a signed range that can fall short of the popcount's ``0..MW``; the
    thresholds are then clipped to that range and some that never fired start firing at the
    largest counts (seen on 1x1 binary convs, where MW is small). The popcount range is
    restored before thresholds are rounded and clipped.
    """
    from finn.transformation.fpgadataflow.minimize_accumulator_width import (
        MinimizeAccumulatorWidth,
    )
    from finn.transformation.fpgadataflow.minimize_weight_bit_width import (
        MinimizeWeightBitWidth,
    )
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.core.datatype import DataType
    from qonnx.transformation.infer_datatypes import InferDataTypes

    from bnnpose.hw_build.threshold_types import threshold_types

    with threshold_types():
        model = model.transform(MinimizeWeightBitWidth())
    model = model.transform(MinimizeAccumulatorWidth())
    for node in model.graph.node:
        if not node.op_type.startswith("MVAU"):
            continue
        inst = getCustomOp(node)
        if inst.get_nodeattr("binaryXnorMode") and not inst.get_nodeattr("noActivation"):
            popcount = DataType[f"UINT{int(np.ceil(np.log2(inst.get_nodeattr('MW') + 1)))}"]
            if DataType[inst.get_nodeattr("accDataType")].max() < popcount.max():
                inst.set_nodeattr("accDataType", popcount.name)
    model = model.transform(InferDataTypes())
    model = model.transform(RoundAndClipThresholds())
    model = model.transform(InferDataTypes())
    with threshold_types():
        model = model.transform(MinimizeWeightBitWidth())
    return model.transform(InferDataTypes())


def step_fold_stream_ops(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Parallelise the streaming ops FINN's ``SetFolding`` leaves at PE/SIMD 1.

    ``SetFolding`` never folds Upsample, ElementwiseAdd or Pool here, so at high FPS targets
    one of them becomes the bottleneck. Each gets the smallest channel divisor that meets the
    cycle target.
    """
    target = ctx.target_cycles()
    for node in model.graph.node:
        inst = getCustomOp(node)
        attr = next((a for a in ("SIMD", "PE") if a in inst.get_nodeattr_types()), None)
        if attr is None or node.op_type.startswith(("MVAU", "ConvolutionInputGenerator",
                                                    "Thresholding")):
            continue
        if inst.get_exp_cycles() <= target:
            continue
        channels = int(inst.get_normal_output_shape()[-1])
        for d in (d for d in range(1, channels + 1) if channels % d == 0):
            inst.set_nodeattr(attr, d)
            if inst.get_exp_cycles() <= target:
                break
    return model


def step_estimate_reports(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """FINN's analytic estimates, the MAC split by bit width, and the fit against the board;
    when the network does not fit as FINN left it, weight memories and multipliers are placed
    first (:func:`~bnnpose.hw_build.placement.place_resources`)."""
    from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.op_and_param_counts import (
        aggregate_dict_keys, op_and_param_counts)
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles

    board = ctx.board
    per_layer = model.analysis(partial(res_estimation, fpgapart=board.part))
    total = aggregate_dict_keys(per_layer)
    placement = place_resources(model, board, _totals(total))
    if placement["placed"]:
        per_layer = model.analysis(partial(res_estimation, fpgapart=board.part))
        total = aggregate_dict_keys(per_layer)
    ctx.report["placement"] = placement
    cycles = model.analysis(exp_cycles_per_layer)
    counts = model.analysis(op_and_param_counts)
    model = model.transform(AnnotateCycles())
    perf = model.analysis(dataflow_performance)
    clock = ctx.clock_mhz()
    fps = clock * 1e6 / perf["max_cycles"]
    macs = {k.removeprefix("op_mac_"): int(v) for k, v in counts["total"].items()
            if k.startswith("op_mac_")}
    limits = board.limits()
    lut, bram, uram, dsp = _totals(total).values()
    estimate = {
        "fps": round(fps, 1), "latency_ms": round(perf["critical_path_cycles"] / clock / 1e3, 3),
        "clock_mhz": clock, "bottleneck": perf["max_cycles_node_name"],
        "lut": lut, "bram18": bram, "uram": uram,
        "dsp": dsp,
        "board": {k: limits[k] for k in ("name", "part", "lut", "bram18", "uram", "dsp",
                                         "lut_max", "bram18_max")},
        "lut_share": round(lut / board.lut, 4), "bram_share": round(bram / board.bram18, 4),
        "fits": board.fits({"lut": lut, "bram18": bram, "uram": uram, "dsp": dsp}),
        "unmodelled_ops": sorted({n.op_type for n in model.graph.node
                                  if n.op_type.rsplit("_", 1)[0] in UNMODELLED_OPS}),
    }
    ctx.report["estimate"] = estimate
    ctx.report["macs_by_bitwidth"] = macs
    ctx.report["xnor_mac_share"] = round(macs.get("1bx1b", 0) / max(1, sum(macs.values())), 4)
    rep = ctx.out / "report"
    rep.mkdir(exist_ok=True)
    for name, obj in (("estimate_layer_resources", {**per_layer, "total": total}),
                      ("estimate_layer_cycles", cycles), ("op_and_param_counts", counts),
                      ("estimate_network_performance", perf)):
        (rep / f"{name}.json").write_text(json.dumps(obj, indent=2, default=_np_default))
    return model


def _totals(total: dict) -> dict[str, int]:
    """FINN's aggregated resource estimate under our names (``placement.RESOURCES``)."""
    return {r: int(total.get(k, 0))
            for r, k in zip(RESOURCES, ("LUT", "BRAM_18K", "URAM", "DSP"))}


def _np_default(o):
    return o.tolist() if isinstance(o, np.ndarray | np.generic) else str(o)


def step_bitstream(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """HLS synthesis, stitched IP and the Zynq bitstream (FINN's ``ZynqBuild``); needs Vivado."""
    from finn.transformation.fpgadataflow.make_zynq_proj import ZynqBuild

    from bnnpose.hw_build.finn_env import ToolchainError, vivado_available

    if not vivado_available():
        raise ToolchainError("the bitstream needs Vivado: set XILINX_VIVADO, or run inside "
                             "the FINN Docker image with Vivado mounted")
    model = model.transform(ZynqBuild(ctx.board.finn_board, 1e3 / ctx.clock_mhz()))
    bit = model.get_metadata_prop("bitfile")
    hwh = model.get_metadata_prop("hw_handoff")
    if not bit or not hwh:
        raise ToolchainError(f"synthesis produced no bitfile; see the logs under {ctx.out}")
    ctx.artifacts["bitfile"], ctx.artifacts["hwh"] = bit, hwh
    if any(n.op_type.startswith(("MVAU", "Thresholding"))
           and getCustomOp(n).get_nodeattr("runtime_writeable_weights")
           for n in _dataflow_nodes(model)):
        # URAM weights are not in the bitstream: FINN's driver generator writes them as the
        # runtime_weights/ files finn-plus-driver loads at start.
        from finn.transformation.fpgadataflow.make_driver import MakePYNQDriver

        model = model.transform(MakePYNQDriver(ctx.board.shell, "FINNDMAOverlay"))
        ctx.artifacts["runtime_weights"] = str(
            Path(model.get_metadata_prop("pynq_driver_dir")) / "runtime_weights")
    return model


def _dataflow_nodes(model: ModelWrapper):
    """The nodes of ``model`` and of the dataflow partitions it calls."""
    for node in model.graph.node:
        if node.op_type == "StreamingDataflowPartition":
            yield from _dataflow_nodes(ModelWrapper(getCustomOp(node).get_nodeattr("model")))
        else:
            yield node


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[ModelWrapper, BuildContext], ModelWrapper]
    verify: str | None = None  #: golden stage name checked after the step, if any
    verify_with: str = "onnx"  #: "onnx" (QONNX/FINN python exec) or "hw" (folded graph sim)
    level: str = "estimate"  #: the ``--until`` level this step belongs to
    #: save the result as ``model_hw.onnx``: the folded graph before code generation bakes
    #: build-folder paths into it, so the simulated accelerator is reproducible byte for byte
    snapshot: bool = False
    #: depends on the frame-rate target: the folding search re-runs these steps per target
    folds: bool = False


STEPS: list[Step] = [
    Step("qonnx_to_finn", _finn("step_qonnx_to_finn"), verify="finn_onnx"),
    Step("tidy_up", _finn("step_tidy_up")),
    Step("streamline_pose", step_streamline_pose, verify="streamlined"),
    Step("convert_to_hw", _finn("step_convert_to_hw"), verify="hw_layers"),
    Step("check_mapped", step_check_mapped),
    Step("minimize_bit_width_initial", step_minimize_bit_width),
    Step("create_dataflow_partition", _finn("step_create_dataflow_partition")),
    Step("specialize_layers", _finn("step_specialize_layers")),
    Step("target_fps_parallelization", _finn("step_target_fps_parallelization"), folds=True),
    Step("fold_stream_ops", step_fold_stream_ops, folds=True),
    Step("apply_folding_config", _finn("step_apply_folding_config"), folds=True),
    Step("minimize_bit_width", step_minimize_bit_width, verify="folded_hw",
         verify_with="hw", folds=True),
    Step("estimate_reports", step_estimate_reports, snapshot=True, folds=True),
    Step("hw_codegen", _finn("step_hw_codegen"), level="codegen"),
    Step("bitstream", step_bitstream, level="bitstream"),
]
