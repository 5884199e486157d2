"""Compile a folded FINN dataflow graph (``model_hw.onnx``) into the CPU engine's :class:`Plan`.

The build side of ``host.cpu_engine``: it reads the graph with onnx and qonnx (a build host
has them, a board does not) and writes the numpy-only plan the board runs. How FINN's streaming
nodes map onto plan steps is told in ``host/cpu_engine.py``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper
from qonnx.core.datatype import DataType

from bnnpose.host.common import BnnposeError, sha256_file
from bnnpose.host.cpu_engine import ALIASES, FLOAT_EXACT, Plan, Step



def compile_plan(model_path: str | os.PathLike) -> Plan:
    """Compile a folded FINN dataflow graph (``model_hw.onnx``) into a :class:`Plan`.

    Raises:
        BnnposeError: an op the engine does not implement, or a pattern it cannot map.
    """
    model = onnx.load(str(model_path))
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producer_of = {name: node for node in graph.node for name in node.output}

    def attrs_of(node) -> dict[str, Any]:
        out = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else (
                [e.decode() if isinstance(e, bytes) else e for e in v]
                if isinstance(v, list) else v)
        return out

    def kind(node) -> str:
        base = node.op_type
        for suffix in ("_hls", "_rtl"):
            base = base.removesuffix(suffix)
        return base

    absorbed: set[int] = set()  # id() of nodes folded into a later step
    steps: list[Step] = []
    for node in graph.node:
        if id(node) in absorbed:
            continue
        op, a = kind(node), attrs_of(node)
        if op == "FMPadding":
            nxt = consumers.get(node.output[0], [])
            if len(nxt) != 1 or kind(nxt[0]) != "ConvolutionInputGenerator":
                raise BnnposeError(f"cpu engine: {node.name or op} pads a stream that is not "
                                   "a window generator's input")
            continue  # read back by the window generator below
        if op == "ConvolutionInputGenerator":
            pads, src = [0, 0, 0, 0], node.input[0]
            producer = producer_of.get(src)
            if producer is not None and kind(producer) == "FMPadding":
                pad_attr = attrs_of(producer)["Padding"]  # [top, left, bottom, right]
                pads, src = list(pad_attr), producer.input[0]
            nxt = consumers.get(node.output[0], [])
            if len(nxt) != 1:
                raise BnnposeError(f"cpu engine: window generator {node.name} feeds "
                                   f"{len(nxt)} nodes")
            absorbed.add(id(nxt[0]))
            window = {"kernel": list(a["ConvKernelDim"]), "stride": list(a["Stride"]),
                      "dilation": list(a.get("Dilation", [1, 1])), "pads": pads}
            if kind(nxt[0]) == "MVAU" and not a.get("depthwise", 0):
                steps.append(_conv_step(nxt[0], attrs_of(nxt[0]), inits, src, window))
            elif kind(nxt[0]) == "Pool" and attrs_of(nxt[0])["Function"] == "MaxPool":
                steps.append(Step("maxpool", [src], list(nxt[0].output),
                                  {**window, "pad_value": 0}))
            else:
                raise BnnposeError(f"cpu engine: window generator followed by "
                                   f"{nxt[0].op_type} is not supported")
        elif op == "MVAU":  # a 1x1 conv or a fully connected layer: rows of the last axis
            steps.append(_conv_step(node, a, inits, node.input[0], None))
        elif op == "Thresholding":
            st = {"bipolar": a["outputDataType"] == "BIPOLAR", "act_val": int(a.get("ActVal", 0))}
            steps.append(Step("threshold", [node.input[0]], list(node.output), st,
                              {"thresholds": _int_thresholds(inits[node.input[1]])}))
        elif op in ("ElementwiseAdd", "ElementwiseSub", "ElementwiseMul", "AddStreams"):
            func = "Add" if op == "AddStreams" else op.removeprefix("Elementwise")
            arrays = {side: inits[name].astype(np.int32)
                      for side, name in zip(("lhs", "rhs"), node.input) if name in inits}
            _check_integral(arrays, node)
            steps.append(Step("binary", [i for i in node.input if i not in inits],
                              list(node.output), {"func": func}, arrays))
        elif op == "StreamingConcat":
            steps.append(Step("concat", list(node.input), list(node.output)))
        elif op == "UpsampleNearestNeighbour":
            scale = [round(a["HO"] / a["HI"]), round(a["WO"] / a["WI"])]
            steps.append(Step("upsample", [node.input[0]], list(node.output), {"scale": scale}))
        elif op in ALIASES:
            steps.append(Step("alias", [node.input[0]], list(node.output),
                              {"n_outputs": len(node.output)}))
        else:
            raise BnnposeError(f"cpu engine: {node.op_type} ({node.name}) is not supported")

    def shape(vi) -> tuple[int, ...]:
        return tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)

    steps = _fuse_binarising_thresholds(steps, graph.output[0].name)
    return Plan(steps, graph.input[0].name, graph.output[0].name, shape(graph.input[0]),
                shape(graph.output[0]), sha256_file(model_path))


def _fuse_binarising_thresholds(steps: list[Step], graph_output: str) -> list[Step]:
    """Fold each 0/1 threshold that feeds only one XNOR conv into that conv's bit packing.

    Binarising a k-bit stream and packing its bits is one pass over the tensor; as separate
    steps it is two, plus a tensor in between.
    """
    uses: dict[str, int] = {graph_output: 1}
    for step in steps:
        for name in step.inputs:
            uses[name] = uses.get(name, 0) + 1
    producer = {name: step for step in steps for name in step.outputs}
    fused: set[int] = set()
    for step in steps:
        if step.op != "conv" or not step.attrs["xnor"]:
            continue
        src = producer.get(step.inputs[0])
        if (src is None or src.op != "threshold" or uses[step.inputs[0]] != 1
                or src.arrays["thresholds"].shape[1] != 1 or src.attrs["bipolar"]
                or src.attrs["act_val"] != 0):
            continue
        channels = step.attrs["k_bits"] // (step.attrs["kernel"][0] * step.attrs["kernel"][1])
        t = src.arrays["thresholds"][:, 0]
        step.arrays["in_thresholds"] = np.ascontiguousarray(np.broadcast_to(t, (channels,)))
        step.inputs = list(src.inputs)
        fused.add(id(src))
    return [s for s in steps if id(s) not in fused]


def _int_thresholds(t: np.ndarray) -> np.ndarray:
    # For an integer accumulator acc >= t <=> acc >= ceil(t); clipping keeps +-inf-like
    # sentinels (never/always reached) representable without changing any comparison.
    t = np.clip(np.ceil(np.asarray(t, dtype=np.float64)), -(2**31), 2**31 - 1)
    return np.ascontiguousarray(np.atleast_2d(t), dtype=np.int32)


def _check_integral(arrays: dict[str, np.ndarray], node) -> None:
    for v in arrays.values():
        if not np.all(np.mod(v, 1) == 0):
            raise BnnposeError(f"cpu engine: {node.name} has a non-integer constant")


def pack_weight_words(weight: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Binary weights ``[KH*KW*C, MH]`` (0/1, rows in (kh, kw, c) order) -> ``[MH, W]``
    uint64: each output channel's window, its taps' channels packed 8 per byte (little bit
    order) one tap after another, zero-filled to whole words, as the engine packs inputs."""
    mw, mh = weight.shape
    bits = weight.reshape(kh, kw, mw // (kh * kw), mh).transpose(3, 0, 1, 2).astype(np.uint8)
    packed = np.packbits(bits, axis=-1, bitorder="little").reshape(mh, -1)
    width = -(-packed.shape[1] // 8) * 8
    packed = np.pad(packed, ((0, 0), (0, width - packed.shape[1])))
    return np.ascontiguousarray(packed).view(np.uint64)


def _conv_step(node, a: dict[str, Any], inits: dict[str, np.ndarray], src: str,
               window: dict[str, Any] | None) -> Step:
    weight = np.asarray(inits[node.input[1]])  # [MW = KH*KW*C, MH], rows in (kh, kw, c) order
    mw, mh = weight.shape
    dense = window is None
    if dense:
        window = {"kernel": [1, 1], "stride": [1, 1], "dilation": [1, 1], "pads": [0] * 4}
    kh, kw = window["kernel"]
    attrs: dict[str, Any] = {**window, "dense": dense, "mw": int(mw),
                             "out_shape": [*a.get("numInputVectors", [1]), int(mh)]}
    arrays: dict[str, np.ndarray] = {}
    xnor = bool(a.get("binaryXnorMode", 0))
    if not xnor and a["inputDataType"] == "BIPOLAR" and a["weightDataType"] == "BIPOLAR":
        raise BnnposeError(f"cpu engine: {node.name} has bipolar streams; export with "
                           "binary (0/1) activations")
    attrs["xnor"] = xnor
    if xnor:
        arrays["weight_words"] = pack_weight_words(weight, kh, kw)
        attrs["k_bits"] = int(mw)
    else:
        imax = max(abs(DataType[a["inputDataType"]].min()), abs(DataType[a["inputDataType"]].max()))
        bound = int(mw) * imax * float(np.abs(weight).max(initial=0))
        attrs["float_exact"] = bound < FLOAT_EXACT
        arrays["weight"] = np.ascontiguousarray(weight, dtype=np.int32)
    if not a.get("noActivation", 0):
        arrays["thresholds"] = _int_thresholds(inits[node.input[2]])
        attrs["bipolar"] = a["outputDataType"] == "BIPOLAR"
        attrs["act_val"] = int(a.get("ActVal", 0))
    return Step("conv", [src], list(node.output), attrs, arrays)
