"""Execution of QONNX and FINN graphs by qonnx's executor, with integer sanitizing at numpy speed.

Used by the export (QONNX against torch), the build's golden checks and the simulated
accelerator. FINN's own ``execute_onnx`` hands a graph without an ``exec_mode`` (RTL
simulation) to this very executor, and FINN's custom ops register with qonnx, so streamlined and
HW-layer graphs run here too.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
from onnx import helper
from qonnx.core import onnx_exec
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model


def _sanitize_quant_values(model: ModelWrapper, names: list[str], context: dict,
                           check_values: bool = False) -> dict:
    """qonnx's ``sanitize_quant_values`` (round integer-annotated tensors that float arithmetic
    left a little off, fail if they are far off) at numpy speed.

    qonnx's version takes Python's built-in ``max`` over every element of every integer tensor
    after every node, even when nothing needs rounding; on 256x256 graphs that was half of a
    golden check's time. Same rules, same warning, same errors.
    """
    import warnings

    from qonnx.util.basic import get_execution_error_thresh

    for name in names:
        dtype = model.get_tensor_datatype(name)
        if not dtype.is_integer():
            continue
        values = context[name]
        if np.all(dtype.allowed(values)):
            continue
        rounded = np.round(values)
        warnings.warn(f"The values of tensor {name} can't be represented with the set datatype "
                      f"annotation ({dtype.name}), they will be rounded to match the datatype "
                      "annotation.")
        if np.max(np.abs(values - rounded)) > get_execution_error_thresh():
            raise Exception(f"Rounding error is too high to match set QONNX datatype ({dtype}) "
                            f"for input {name}")
        if check_values and not np.all(dtype.allowed(rounded)):
            raise Exception(f"Values can't be represented with set finn datatype ({dtype}) "
                            f"for input {name}")
        context[name] = rounded
    return context


#: ``id(graph) -> (graph, tensor -> [(list rank, position, ValueInfoProto)])`` for the graphs
#: :func:`exec_onnx` is running (graph inputs rank 0, outputs 1, value infos 2); graphs do not
#: change while they run. Other callers of qonnx's ``execute_node`` (FINN's constant folding,
#: between edits) get qonnx's own.
_value_infos: dict[int, tuple[object, dict]] = {}
_running = 0
#: Sessions of single-node models, by the model's bytes (the same node, run for every golden
#: input, builds the same model each time).
_sessions: OrderedDict[bytes, object] = OrderedDict()
_MAX_SESSIONS = 4096


def _value_info_index(graph) -> dict:
    held = _value_infos.get(id(graph))
    if held is None or held[0] is not graph:
        index: dict[str, list] = {}
        for rank, field in enumerate((graph.input, graph.output, graph.value_info)):
            for i, vi in enumerate(field):
                index.setdefault(vi.name, []).append((rank, i, vi))
        held = _value_infos[id(graph)] = (graph, index)
    return held[1]


def _execute_node(node, context, graph, opset_version, return_full_exec_context=False):
    """qonnx's ``execute_node``: a standard ONNX node runs alone in onnxruntime, in a model
    of the node and its tensors' value infos. qonnx finds those value infos by scanning the
    graph's lists for every node and builds a new session each time; here they come from an
    index of the graph, and a session is reused for the same single-node model."""
    if not _running or onnx_exec.is_custom_op(node.domain, node.op_type) or any(
            a.type == a.GRAPH for a in node.attribute):
        return _QONNX_EXECUTE_NODE(node, context, graph, opset_version,
                                   return_full_exec_context)
    index = _value_info_index(graph)

    def value_infos(names, ranks):
        # qonnx's order: matching graph inputs, then outputs, then value infos, in list order
        found = {(r, i): vi for name in set(names) for r, i, vi in index.get(name, ())
                 if r in ranks}
        return [found[k] for k in sorted(found)]

    node_inputs = value_infos(node.input, (0, 1, 2))
    node_outputs = value_infos(node.output, (1, 2))
    node_model = qonnx_make_model(helper.make_graph(
        nodes=[node], name="single-node-exec", inputs=node_inputs, outputs=node_outputs))
    node_model.opset_import[0].version = opset_version
    blob = node_model.SerializeToString()
    sess = _sessions.get(blob)
    if sess is None:
        sess = _sessions[blob] = onnx_exec.rt.InferenceSession(blob)
        if len(_sessions) > _MAX_SESSIONS:
            _sessions.popitem(last=False)
    output_list = sess.run(None, {inp: context[inp] for inp in node.input})
    names = [vi.name for vi in node_outputs]
    for outp in node.output:
        if outp not in names:
            raise Exception("Output %s not found in node outputs." % outp)
        value = output_list[len(names) - 1 - names[::-1].index(outp)]
        if value.shape != context[outp].shape:
            warnings.warn("Output shapes disagree after node %s execution: found %s vs "
                          "expected %s" % (node, value.shape, context[outp].shape))
        context[outp] = value


_QONNX_EXECUTE_NODE = None


def use_fast_execution() -> None:
    """Make qonnx's graph execution sanitize with :func:`_sanitize_quant_values` and run
    standard nodes with :func:`_execute_node`."""
    global _QONNX_EXECUTE_NODE
    onnx_exec.sanitize_quant_values = _sanitize_quant_values
    if _QONNX_EXECUTE_NODE is None:
        _QONNX_EXECUTE_NODE = onnx_exec.execute_node
        onnx_exec.execute_node = _execute_node


def exec_onnx(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    """Run a QONNX/FINN graph on one input batch; the graph's one output."""
    global _running
    use_fast_execution()
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    _running += 1
    try:
        return onnx_exec.execute_onnx(model, {iname: np.asarray(x, dtype=np.float32)})[oname]
    finally:
        _running -= 1
        if not _running:
            _value_infos.clear()
