"""FINN's one-node-per-pass transformations, with their graph-wide re-inference done once.

``AbsorbScalarBiasIntoMultiThreshold`` and ``RoundAndClipThresholds`` change one node and then
re-infer the datatypes (and shapes) of the whole graph before looking for the next, so a graph
of n nodes costs n passes of O(n): the quadratic part of streamlining a full-size network.
Neither decides anything from what the re-inference changes:

* the bias absorption looks at the graph's structure, initializers and the threshold node's
  own ``out_dtype``, and sets the datatype of the one tensor it rewires itself;
* threshold rounding reads each threshold node's input datatype, which no rounding changes (a
  threshold node's output datatype is its attribute); after the first pass's inference those
  datatypes are settled.

:func:`batched_passes` runs each of them as FINN does for the first pass, then runs the
remaining passes with the inference (and the copy and clean-up of the graph that qonnx's
``transform`` does around it) skipped and each pass's consumer lookups answered from an index
made at its start, and infers once at the end, as FINN's last pass (which finds nothing to
change) does. Threshold rounding also sets every threshold again, each pass, up to the one it
changes, and each set moves the tensor to the end of the graph's lists (a list removal):
between the first and the last pass only changed thresholds are set, and FINN's last pass,
which sets them all in node order, decides the lists' order as in FINN. Both restart every
pass from the first node, and would find the nodes before the one the last pass changed as
that pass left them: the remaining passes start at that node (:class:`_Resume`), so a run
visits each node a few times instead of once per changed node.

``FoldQuantWeights`` folds one weight quantizer per pass and then infers shapes: the
quantizers it folds read only initializers, and the shapes it reads (the rank of a conv's
output) are ones no fold changes. Between its passes the graph is sorted, as the clean-up of
FINN's inference does, so that each pass takes the same quantizer; the execution context of
each pass holds the initializers only, read on demand, instead of a zero array per tensor.

``InferElementwiseBinaryOperation`` converts one Add (or other elementwise op) per pass and
re-infers shapes and datatypes: a conversion changes no shape, and the datatypes it may change
are those downstream of the converted node, which are inferred again after each pass.

``MinimizeAccumulatorWidth`` re-infers the whole graph after every hardware node, so that a
node whose output narrows passes its datatype on; most nodes change nothing that inference
would pass on, and after those the re-inference is skipped; after the others, only the node
and what lies downstream of its changed outputs are inferred again.

The graphs that come out are byte-identical to FINN's (tested on real builds).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections.abc import Iterator
from typing import NamedTuple

import finn.transformation.fpgadataflow.convert_to_hw.elementwise_binary_operation as elementwise
import finn.transformation.qonnx.fold_quant_weights as fold_quant_weights
import finn.transformation.streamline.absorb as absorb
import finn.transformation.streamline.round_thresholds as round_thresholds
import qonnx.util.basic as qutil
from finn.transformation.fpgadataflow.minimize_accumulator_width import MinimizeAccumulatorWidth
from finn.util.fpgadataflow import is_fpgadataflow_node
from onnx import numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import SortGraph
from qonnx.transformation.infer_datatypes import InferDataTypes, _infer_node_datatype

from bnnpose.quantize.qonnx_index import consumer_index


class _Batch(NamedTuple):
    """A transformation batched: the module whose inference names its passes call, those
    inferences in the order its passes run them (each once at the end, batched), whether the
    graph is sorted between passes (as the clean-up of FINN's shape inference there does) and
    whether the datatypes downstream of the nodes a pass adds are inferred after it."""

    cls: type
    module: object
    inferences: tuple[str, ...]
    resort: bool = False
    downstream: bool = False
    #: passes set every initializer again up to the one they change: only its last pass's
    #: re-sets (all of them, in node order) decide the initializers' and value infos' order
    resets: bool = False
    #: a pass changes only the node it stops at and what follows it, and would find the
    #: nodes before it again as it left them: the next pass starts at that node
    resumes: bool = False


BATCHED = (
    _Batch(absorb.AbsorbScalarBiasIntoMultiThreshold, absorb, ("InferDataTypes", "InferShapes"),
           resumes=True),
    _Batch(round_thresholds.RoundAndClipThresholds, round_thresholds, ("InferDataTypes",),
           resets=True, resumes=True),
    _Batch(fold_quant_weights.FoldQuantWeights, fold_quant_weights, ("InferShapes",),
           resort=True),
    _Batch(elementwise.InferElementwiseBinaryOperation, elementwise,
           ("InferShapes", "InferDataTypes"), downstream=True),
)


class _Skip(Transformation):
    """Stands for an inference transformation between two batched passes; ``transform``
    returns the model itself for it (no copy, no clean-up)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def apply(self, model):
        return model, False


def _transform_skipping(transform):
    def run(self, transformation, *args, **kwargs):
        if isinstance(transformation, _Skip):
            return self
        return transform(self, transformation, *args, **kwargs)
    return run


def _consumers_of(nodes, find_consumers):
    """``ModelWrapper.find_consumers`` answered, for the graph whose node list is ``nodes``,
    from an index of it made at the first lookup: valid until the graph is edited, which the
    batched transformations do only at the end of a pass, after their last lookup."""
    index = None

    def run(self, tensor_name):
        nonlocal index
        if self._model_proto.graph.node is not nodes:
            return find_consumers(self, tensor_name)
        if index is None:
            index = consumer_index(nodes)
        return list(index.get(tensor_name, ()))
    return run


class _Resume:
    """``enumerate`` as the module of a resuming transformation sees it between its first
    pass and its end: from the node the previous pass stopped at. FINN's pass would visit the
    nodes before it again and find each as the previous passes left it: a threshold rounded
    and clipped to the same input datatype, which no rounding changes (and FINN's last pass
    of the rounding, run as it is, visits them all); a threshold whose consumer is no Add
    with a constant scalar bias it can absorb (a bias absorption rewires only the node it
    stops at and removes that node's consumer). A pass starts one node early: had the removed
    consumer stood before the node, the node moved up by one."""

    def __init__(self):
        self.at = 0

    def __call__(self, nodes):
        first = max(self.at - 1, 0)
        for i, node in enumerate(itertools.islice(nodes, first, None), first):
            self.at = i
            yield i, node


class _Initializers(dict):
    """An execution context holding only the graph's initializers, each read when first
    asked for: all a weight quantizer's execution reads (its inputs are all initializers)."""

    def __init__(self, model: ModelWrapper):
        super().__init__()
        self.model = model

    def __missing__(self, name: str):
        value = self.model.get_initializer(name)
        if value is None:
            raise KeyError(name)
        self[name] = value
        return value


def _initializer_context(self):
    return _Initializers(self)


def _set_if_changed(set_initializer):
    """``set_initializer`` that leaves an initializer holding the very same tensor alone
    (qonnx's moves it and its value info to the end of their lists)."""
    def run(self, tensor_name, tensor_value):
        # qutil's: the indexed lookup when indexed_lookups is active
        old = qutil.get_by_name(self._model_proto.graph.initializer, tensor_name)
        if old is not None:
            new = numpy_helper.from_array(tensor_value)
            new.name = tensor_name
            if new.SerializeToString() == old.SerializeToString():
                return
        set_initializer(self, tensor_name, tensor_value)
    return run


def _batched(apply, batch: _Batch):
    module = batch.module

    def run(self, model):
        model, changed = apply(self, model)
        if not changed:
            return model, False
        names = {n: getattr(module, n) for n in batch.inferences}
        transform, find_consumers = ModelWrapper.transform, ModelWrapper.find_consumers
        make_context = ModelWrapper.make_empty_exec_context
        set_initializer = ModelWrapper.set_initializer
        if batch.resets:
            ModelWrapper.set_initializer = _set_if_changed(set_initializer)
        if batch.resumes:
            module.enumerate = _Resume()
        for n in names:
            setattr(module, n, _Skip)
        ModelWrapper.transform = _transform_skipping(transform)
        # Weight folding executes one quantizer per pass, on initializers only; qonnx's
        # context would be a zero array for every tensor of the graph, made again each pass.
        ModelWrapper.make_empty_exec_context = _initializer_context
        try:
            while changed:
                # A pass restarts from the first node and asks every threshold node whether
                # it forks: with qonnx's scan for consumers, a pass costs O(n^2).
                ModelWrapper.find_consumers = _consumers_of(model.graph.node, find_consumers)
                # held, so that their ids stay theirs
                before = list(model.graph.node) if batch.downstream else []
                model, changed = apply(self, model)
                if changed and batch.downstream:
                    # A converted node's outputs may take new datatypes; FINN's whole-graph
                    # inference passes them on before the next pass decides.
                    known = {id(n) for n in before}
                    downstream = _Downstream(model)
                    for node in [n for n in model.graph.node if id(n) not in known]:
                        downstream.infer_from(node)
                if changed and batch.resort:
                    # The shape inference FINN runs between passes also sorts the graph,
                    # and the next pass takes the first node it finds: keep that order.
                    model = transform(model, SortGraph(), make_deepcopy=False, cleanup=False)
            if batch.resets:
                # FINN's last pass, re-setting everything and changing nothing.
                ModelWrapper.set_initializer = set_initializer
                vars(module).pop("enumerate", None)
                changed = True
                while changed:
                    ModelWrapper.find_consumers = _consumers_of(model.graph.node,
                                                                find_consumers)
                    model, changed = apply(self, model)
        finally:
            ModelWrapper.transform, ModelWrapper.find_consumers = transform, find_consumers
            ModelWrapper.make_empty_exec_context = make_context
            ModelWrapper.set_initializer = set_initializer
            vars(module).pop("enumerate", None)
            for n, v in names.items():
                setattr(module, n, v)
        for name in batch.inferences:
            model = model.transform(names[name]())
        return model, False
    return run


def _fingerprint(model: ModelWrapper, node) -> tuple:
    return (node.SerializeToString(),
            tuple(str(model.get_tensor_datatype(t)) for t in node.output))


class _Downstream:
    """Datatype inference from one node on, of a settled, sorted graph whose structure does
    not change: what qonnx's whole-graph ``InferDataTypes`` does after the node changed. The
    nodes before it and beside it see the inputs they saw and infer what they inferred, so
    only the node and, in graph order, the consumers of every output whose datatype changed
    are inferred again."""

    def __init__(self, model: ModelWrapper):
        self.model = model
        self.nodes = list(model.graph.node)
        self.position = {id(n): i for i, n in enumerate(self.nodes)}
        self.users = consumer_index(self.nodes)

    def _push(self, queue: list[int], queued: set[int], node) -> None:
        for t in node.output:
            for user in self.users.get(t, ()):
                i = self.position[id(user)]
                if i not in queued:
                    queued.add(i)
                    heapq.heappush(queue, i)

    def infer_from(self, node) -> None:
        queue: list[int] = []
        queued: set[int] = set()
        _infer_node_datatype(self.model, node, False)
        self._push(queue, queued, node)  # its outputs may have been set before inference
        while queue:
            user = self.nodes[heapq.heappop(queue)]
            if _infer_node_datatype(self.model, user, False):
                self._push(queue, queued, user)


def minimize_accumulator_width(self, model: ModelWrapper):
    """FINN's ``MinimizeAccumulatorWidth.apply``, re-inferring datatypes after a node only
    when the node changed (its attributes or its outputs' datatypes), and then only from it
    downstream (:class:`_Downstream`): FINN infers the whole graph after every node, and an
    inference from the settled state with nothing changed changes nothing. The first node is
    followed by FINN's whole-graph inference, as in FINN's, which settles (and sorts) the
    graph."""
    downstream = None
    for node_id in range(len(model.graph.node)):
        node = model.graph.node[node_id]
        if not is_fpgadataflow_node(node):
            continue
        inst = getCustomOp(node)
        if not hasattr(inst, "minimize_accumulator_width"):
            continue
        before = _fingerprint(model, node)
        inst.minimize_accumulator_width(model, datatype_only=self.datatype_only)
        if downstream is None:
            model = model.transform(InferDataTypes())
            downstream = _Downstream(model)
        elif _fingerprint(model, node) != before:
            downstream.infer_from(node)
    return (model, False)


@contextlib.contextmanager
def batched_passes() -> Iterator[None]:
    """Within the context, the transformations of :data:`BATCHED` infer once per run and
    :class:`MinimizeAccumulatorWidth` only after the nodes it changed."""
    saved = [(cls, cls.apply) for cls, *_ in BATCHED] + [
        (MinimizeAccumulatorWidth, MinimizeAccumulatorWidth.apply)]
    for batch in BATCHED:
        batch.cls.apply = _batched(batch.cls.apply, batch)
    MinimizeAccumulatorWidth.apply = minimize_accumulator_width
    try:
        yield
    finally:
        for cls, apply in saved:
            cls.apply = apply
