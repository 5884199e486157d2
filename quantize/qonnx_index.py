"""Indexed tensor and node lookups for qonnx's ``ModelWrapper``.

qonnx finds a tensor's datatype, shape, value info, initializer or producer by scanning the
graph's lists on every call, and FINN's transformations make such calls for every node, pass
after pass, so a build's time grows with the square of the graph (in a profile of the 1-stack
``bhg-full`` flow, 60% of the time went to these scans). :func:`indexed_lookups` answers them,
for its duration, from name -> element indexes of those lists, with the same results.

Transformations edit the protobuf lists directly, so an index is never trusted blindly:

* a list is re-indexed when its length or its last element changed (protobuf hands out the same
  Python object for an element while it stays in its list); when its old last element is still
  in place, only the elements appended after it are indexed (qonnx and FINN add value infos,
  initializers and annotations only at the end);
* a hit is used only when the element is still at its position under the same name;
* a name the index lacks is absent: the lists' own elements are renamed in place only by
  ``rename_tensor`` (kept in step here) and, for graph inputs and outputs, by qonnx's
  ``InsertIdentity``; those two short lists are always scanned;
* node outputs change in place all the time, so a producer lookup that misses scans the nodes
  as qonnx does, unless the tensor is an initializer or a graph input, which no node produces.

The wrapper's own edits (``set_initializer``, ``del_initializer``, ``rename_tensor`` and
qonnx's ``remove_by_name``) keep the indexes up to date instead of invalidating them: FINN's
threshold rounding sets every threshold again on each pass. Five whole-graph passes are
replaced by ones linear in the graph with the same result: ``SortGraph``, ``InferShapes``
(custom ops swapped for their shape stand-ins in place), ``GiveUniqueParameterTensors`` and
the two renaming passes; so is the topological-order check ``execute_onnx`` makes before
every execution.

``indexed_lookups(verify=True)`` also runs qonnx's own method on every call and raises
:class:`LookupMismatch` at the first difference; the tests build real networks under it.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections import OrderedDict, defaultdict
from collections.abc import Iterator

import numpy as np
import qonnx.analysis.topology as topology
import qonnx.util.basic as qutil
from onnx import NodeProto, numpy_helper, shape_inference
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import is_custom_op
from qonnx.transformation.infer_shapes import InferShapes, _make_shape_compatible_op
from qonnx.transformation.general import (GiveReadableTensorNames, GiveUniqueParameterTensors,
                                          GiveUniqueTensorNames, SortGraph)

#: Lists shorter than this are scanned: indexing them would cost more than it saves.
MIN_INDEXED = 16
#: Indexes kept at once (each holds its list, and so its model, alive).
MAX_INDEXES = 32


class LookupMismatch(AssertionError):
    """An indexed lookup answered differently from qonnx's own method."""


class _ListIndex:
    """``name -> [position, element, count, removals]`` for the first element of a repeated
    field with that name (``count``: how many share it). Stale once the field's length or last
    element changed, except through the edits the wrapper makes, which it follows: appends, and
    removals at known positions (``removals``: how many of those were already counted when the
    position was taken)."""

    __slots__ = ("field", "attr", "entries", "length", "last", "removed")

    #: Removals followed before re-indexing (each costs a step per lookup).
    MAX_REMOVED = 64

    def __init__(self, field, attr: str):
        self.field, self.attr = field, attr
        self.entries: dict[str, list] = {}
        self.length, self.last = 0, None
        self.removed: list[int] = []
        self.extend()

    def add(self, i: int, element) -> None:
        name = getattr(element, self.attr)
        hit = self.entries.get(name)
        if hit is None:
            self.entries[name] = [i, element, 1, len(self.removed)]
        else:
            hit[2] += 1

    def extend(self) -> None:
        """Index the elements appended since the index was last brought up to date."""
        field = self.field
        for i in range(self.length, len(field)):
            self.add(i, field[i])
        self.length = len(field)
        self.last = field[-1] if self.length else None

    def fresh(self) -> bool:
        n = len(self.field)
        return n == self.length and (n == 0 or self.field[-1] is self.last)

    def appended_to(self) -> bool:
        """Whether elements were only appended since: the old last is still in place."""
        n = len(self.field)
        return n > self.length and (self.length == 0
                                    or self.field[self.length - 1] is self.last)

    def locate(self, hit: list) -> int:
        """The entry's position now (-1: its element was removed)."""
        i = hit[0]
        for r in self.removed[hit[3]:]:
            if i == r:
                return -1
            if i > r:
                i -= 1
        return i

    def valid(self, hit: list, name: str) -> bool:
        i = self.locate(hit)
        return 0 <= i < self.length and self.field[i] is hit[1] \
            and getattr(hit[1], self.attr) == name

    def remove(self, element) -> bool:
        """Remove ``element`` (the first of its name) from the field and follow; False when
        it is not the indexed one, and nothing was done."""
        name = getattr(element, self.attr)
        hit = self.entries.get(name)
        if hit is None or hit[1] is not element or hit[2] > 1 \
                or len(self.removed) >= self.MAX_REMOVED:
            return False
        i = self.locate(hit)
        if i < 0:
            return False
        self.field.remove(element)
        del self.entries[name]
        self.removed.append(i)
        self.length -= 1
        self.last = self.field[-1] if self.length else None
        return True

    def renamed(self, old: str, new: str) -> None:
        """Follow an in-place rename of the first element called ``old``."""
        hit = self.entries.pop(old)
        if hit[2] > 1 or new in self.entries:  # names shared: index again next time
            self.length = -1
        else:
            self.entries[new] = hit


class _OutputIndex(_ListIndex):
    """``tensor -> [position, node, 1, removals]`` of the first node listing it among its
    outputs."""

    def add(self, i: int, node) -> None:
        for t in node.output:
            self.entries.setdefault(t, [i, node, 1, len(self.removed)])

    def valid(self, hit: list, name: str) -> bool:
        i = self.locate(hit)
        return 0 <= i < self.length and self.field[i] is hit[1] and name in hit[1].output


_indexes: OrderedDict[int, _ListIndex] = OrderedDict()


def _index(field, attr: str, kind: type[_ListIndex] = _ListIndex) -> _ListIndex:
    key = id(field)
    idx = _indexes.get(key)
    if idx is not None and idx.field is field and not idx.fresh() and idx.appended_to():
        idx.extend()
    if idx is None or idx.field is not field or not idx.fresh():
        idx = kind(field, attr)
        _indexes[key] = idx
        if len(_indexes) > MAX_INDEXES:
            _indexes.popitem(last=False)
    else:
        _indexes.move_to_end(key)
    return idx


def _find(field, name: str, attr: str = "name") -> tuple[object, int]:
    """``(first element named name or None, how many are)`` in ``field``."""
    if len(field) < MIN_INDEXED:
        found = [e for e in field if getattr(e, attr) == name]
        return (found[0] if found else None), len(found)
    idx = _index(field, attr)
    hit = idx.entries.get(name)
    if hit is not None and not idx.valid(hit, name):
        _indexes.pop(id(field), None)
        idx = _index(field, attr)
        hit = idx.entries.get(name)
    return (None, 0) if hit is None else (hit[1], hit[2])


# The replacements, each answering what the qonnx function of the same name answers.

def get_by_name(container, name: str, name_field: str = "name"):
    found, count = _find(container, name, name_field)
    if count > 1:
        raise Exception("Found multiple get_by_name matches, undefined behavior")
    return found


def get_tensor_valueinfo(self: ModelWrapper, tensor_name: str):
    graph = self._model_proto.graph
    io = [x for x in graph.input if x.name == tensor_name]
    io += [x for x in graph.output if x.name == tensor_name]
    vi, count = _find(graph.value_info, tensor_name)
    assert len(io) + count <= 1, "Multiple ValueInfoProto found for " + tensor_name
    return io[0] if io else vi


def get_tensor_shape(self: ModelWrapper, tensor_name: str, fix_missing_init_shape: bool = False):
    vi = self.get_tensor_valueinfo(tensor_name)
    if vi is not None:
        return [x.dim_value for x in vi.type.tensor_type.shape.dim]
    init, dtype = self.get_initializer(tensor_name, return_dtype=True)
    if init is None:
        return None
    if fix_missing_init_shape:
        self.set_tensor_shape(tensor_name, init.shape, dtype=dtype)
    return list(init.shape)


def get_initializer(self: ModelWrapper, tensor_name: str, return_dtype: bool = False):
    init, _ = _find(self._model_proto.graph.initializer, tensor_name)
    if init is None:
        return (None, None) if return_dtype else None
    value = numpy_helper.to_array(init)
    return (value, init.data_type) if return_dtype else value


def _remove(field, element) -> None:
    """``field.remove(element)``, followed by the field's index when it has one."""
    idx = _indexes.get(id(field))
    if idx is None or idx.field is not field or not idx.fresh() or not idx.remove(element):
        field.remove(element)


def remove_by_name(container, name: str, name_field: str = "name") -> None:
    item = get_by_name(container, name, name_field)
    if item is not None:
        _remove(container, item)


def set_initializer(self: ModelWrapper, tensor_name: str, tensor_value: np.ndarray) -> None:
    graph = self._model_proto.graph
    proto = numpy_helper.from_array(tensor_value)
    proto.name = tensor_name
    old, _ = _find(graph.initializer, tensor_name)
    if old is not None:
        _remove(graph.initializer, old)
    graph.initializer.append(proto)
    self.set_tensor_shape(tensor_name, list(tensor_value.shape), proto.data_type)


def del_initializer(self: ModelWrapper, initializer_name: str) -> None:
    init = get_by_name(self._model_proto.graph.initializer, initializer_name)
    if init is not None:
        _remove(self._model_proto.graph.initializer, init)


def find_producer(self: ModelWrapper, tensor_name: str):
    graph = self._model_proto.graph
    nodes = graph.node
    if len(nodes) >= MIN_INDEXED:
        idx = _index(nodes, "output", _OutputIndex)
        hit = idx.entries.get(tensor_name)
        if hit is not None and idx.valid(hit, tensor_name):
            return hit[1]
        if hit is None and (_find(graph.initializer, tensor_name)[1]
                            or any(x.name == tensor_name for x in graph.input)):
            return None
        producer = _ORIGINAL["find_producer"](self, tensor_name)
        if producer is not None or hit is not None:  # stale: the next lookup re-indexes
            _indexes.pop(id(nodes), None)
        return producer
    return _ORIGINAL["find_producer"](self, tensor_name)


def rename_tensor(self: ModelWrapper, old_name: str, new_name: str) -> None:
    graph = self._model_proto.graph
    for field, attr in ((graph.input, "name"), (graph.output, "name"),
                        (graph.value_info, "name"), (graph.initializer, "name"),
                        (graph.quantization_annotation, "tensor_name")):
        element = get_by_name(field, old_name, attr)
        if element is None:
            continue
        setattr(element, attr, new_name)
        idx = _indexes.get(id(field))
        if idx is not None and idx.field is field:
            idx.renamed(old_name, new_name)
    users = _users(graph)
    positions = graph.node if users is None else sorted(users.at.pop(old_name, ()))
    for i in positions:
        n = i if users is None else graph.node[i]
        # as qonnx: the first occurrence among the node's inputs, and among its outputs
        if old_name in n.input:
            n.input[list(n.input).index(old_name)] = new_name
        if old_name in n.output:
            n.output[list(n.output).index(old_name)] = new_name
        if users is not None:
            users.at[new_name].add(i)
            if old_name in n.input or old_name in n.output:
                users.at[old_name].add(i)


class _Users:
    """``tensor -> positions of the nodes that name it`` (inputs or outputs) of a node list."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.at: defaultdict[str, set[int]] = defaultdict(set)
        for i, n in enumerate(nodes):
            for t in (*n.input, *n.output):
                self.at[t].add(i)


#: One scope per running renaming pass (qonnx's ``GiveUniqueTensorNames`` and
#: ``GiveReadableTensorNames`` rename every tensor, one ``rename_tensor`` each, which scans
#: every node): within a pass nothing but ``rename_tensor`` edits the nodes, so the nodes
#: naming each tensor are indexed once per graph and pass, and kept up to date.
_renaming: list[dict[int, _Users]] = []


def _users(graph) -> _Users | None:
    if not _renaming:
        return None
    scope = _renaming[-1]
    users = scope.get(id(graph.node))
    if users is None or users.nodes is not graph.node:
        users = scope[id(graph.node)] = _Users(graph.node)
    return users


def _renaming_pass(original):
    def apply(self, model):
        _renaming.append({})
        try:
            return original(self, model)
        finally:
            _renaming.pop()
    return apply


def infer_shapes(self, model: ModelWrapper):
    """qonnx's ``InferShapes.apply``, with its custom ops swapped for their shape stand-ins
    and back in place: qonnx inserts and removes each one, a list search every time."""
    hidden = {}
    for node in model.graph.node:
        if is_custom_op(node.domain):
            stand_in = _make_shape_compatible_op(node, model)
            stand_in.name = node.name
            original = NodeProto()
            original.CopyFrom(node)
            hidden[str(stand_in)] = original
            node.CopyFrom(stand_in)
    model = ModelWrapper(shape_inference.infer_shapes(model.model))
    for node in model.graph.node:
        original = hidden.get(str(node))
        if original is not None:
            node.CopyFrom(original)
    return (model, False)


def sort_graph(self, model: ModelWrapper):
    """qonnx's ``SortGraph.apply`` in time linear in the graph: the same order (nodes by their
    longest path from the graph's inputs, then by position) and the same floating nodes
    dropped; qonnx's own pass is quadratic (a list search per edge, a rescan of the remaining
    nodes per level, a list removal per node). A cycle is left to qonnx's, for its error."""
    nodes = model.graph.node
    if len(nodes) == 1:
        return (model, False)
    node_list = list(nodes)
    # qonnx's find_producer: the first node, in graph order, with the tensor among its
    # outputs (an omitted optional input, "", included); one map for the whole sort.
    producer: dict[str, int] = {}
    for i, n in enumerate(node_list):
        for t in n.output:
            producer.setdefault(t, i)
    deps: dict[int, set[int]] = {}
    for i, n in enumerate(node_list):
        # qonnx's find_direct_predecessors
        preds = {producer[t] for t in n.input if t in producer}
        if not preds:
            if any(qutil.get_by_name(model.graph.initializer, t)
                   or qutil.get_by_name(model.graph.input, t) for t in n.input):
                deps[i] = set()
            continue
        deps[i] = preds - {i}
    for d in list(deps.values()):
        for j in d:
            deps.setdefault(j, set())
    level = _longest_path_levels(deps)
    if level is None:
        return _ORIGINAL["sort_graph"](self, model)
    order = sorted(deps, key=lambda i: (level[i], i))
    del nodes[:]
    nodes.extend(node_list[i] for i in order)
    return (model, False)


def give_unique_parameter_tensors(self, model: ModelWrapper):
    """qonnx's ``GiveUniqueParameterTensors.apply`` with the parameters seen kept in a set:
    qonnx's list made it a list search per node input, and every clean-up runs it. A
    parameter that more than one input takes gets a copy under a new name for each input
    after its first, as in qonnx's."""
    seen: set[str] = set()
    for node in model.graph.node:
        for i, name in enumerate(list(node.input)):
            value = model.get_initializer(name)
            if value is None:
                continue
            if name not in seen:
                seen.add(name)
                continue
            new_name = model.make_new_valueinfo_name()
            model.set_initializer(new_name, value)
            model.set_tensor_datatype(new_name, model.get_tensor_datatype(name))
            node.input[i] = new_name
    return (model, False)


def consumer_index(nodes) -> dict[str, list]:
    """``tensor -> the nodes that take it as an input``, in graph order and a node once per
    such input: qonnx's ``find_consumers`` for every tensor at once, valid until the nodes
    are edited."""
    index: dict[str, list] = {}
    for n in nodes:
        for t in n.input:
            index.setdefault(t, []).append(n)
    return index


def nodes_topologically_sorted(model: ModelWrapper) -> dict:
    """qonnx's analysis of the same name in time linear in the graph: no node consumes an
    output of a node after it. qonnx's finds the consumers and the positions of every node's
    successors by scanning the graph, and ``execute_onnx`` runs it on every execution (the
    golden checks execute whole graphs 80 times a build). A node's position is, as qonnx's
    ``get_node_index`` has it, that of the first node equal to it."""
    nodes = list(model.graph.node)  # one set of element objects for the ids below
    first: dict[bytes, int] = {}
    position = {id(n): first.setdefault(n.SerializeToString(), i) for i, n in enumerate(nodes)}
    consumers = consumer_index(nodes)
    ok = all(position[id(n)] <= position[id(c)] for n in nodes
             for t in n.output for c in consumers.get(t, ()))
    return {"nodes_topologically_sorted": ok}


def _longest_path_levels(deps: dict[int, set[int]]) -> dict[int, int] | None:
    """Each item's longest chain of dependencies (Kahn's order); None when there is a cycle."""
    users: dict[int, list[int]] = {i: [] for i in deps}
    waiting = {i: len(d) for i, d in deps.items()}
    for i, d in deps.items():
        for j in d:
            users[j].append(i)
    ready = [i for i, w in waiting.items() if w == 0]
    level = dict.fromkeys(ready, 0)
    while ready:
        j = ready.pop()
        for i in users[j]:
            level[i] = max(level.get(i, 0), level[j] + 1)
            waiting[i] -= 1
            if waiting[i] == 0:
                ready.append(i)
    return level if len(level) == len(deps) else None


_METHODS = ("get_tensor_valueinfo", "get_tensor_shape", "get_initializer", "find_producer",
            "rename_tensor", "set_initializer", "del_initializer")
#: Methods that edit the graph: not run twice to be verified; the lookups after them are.
_EDITS = ("rename_tensor", "set_initializer", "del_initializer")
_ORIGINAL = {name: getattr(ModelWrapper, name) for name in _METHODS}
_ORIGINAL["get_by_name"] = qutil.get_by_name
_ORIGINAL["remove_by_name"] = qutil.remove_by_name
#: The passes replaced: (class, our apply, qonnx's apply).
_PASSES = [(SortGraph, sort_graph, SortGraph.apply),
           (InferShapes, infer_shapes, InferShapes.apply),
           (GiveUniqueParameterTensors, give_unique_parameter_tensors,
            GiveUniqueParameterTensors.apply)] + [
    (cls, _renaming_pass(cls.apply), cls.apply)
    for cls in (GiveUniqueTensorNames, GiveReadableTensorNames)]
_ORIGINAL["sort_graph"] = SortGraph.apply
_ORIGINAL["nodes_topologically_sorted"] = topology.nodes_topologically_sorted
_depth = 0


def _same(a, b) -> bool:
    if isinstance(a, tuple | list) and type(a) is type(b):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.dtype == b.dtype and np.array_equal(a, b))
    if isinstance(a, str | int | type(None)):
        return a == b
    return a is b  # protobuf elements: the very same one


def _verified(name: str, ours, theirs):
    def both(*args, **kwargs):
        try:
            expected = theirs(*args, **kwargs)
        except Exception as e:  # qonnx's error is the answer to match
            expected = e
        try:
            got = ours(*args, **kwargs)
        except Exception as e:
            got = e
        if isinstance(expected, Exception) or isinstance(got, Exception):
            if type(got) is not type(expected) or str(got) != str(expected):
                raise LookupMismatch(f"{name}{args[1:]}: qonnx gives {expected!r}, "
                                     f"the index {got!r}")
            raise got
        if not _same(got, expected):
            raise LookupMismatch(f"{name}{args[1:]}: qonnx gives {expected!r}, "
                                 f"the index {got!r}")
        return got
    return both


def _verified_pass(ours, theirs):
    """A transformation's ``apply`` that runs ``ours`` and checks the graph it leaves against
    the one ``theirs`` leaves on a copy."""
    def apply(self, model: ModelWrapper):
        state = random.getstate()  # qonnx names new tensors with Python's generator
        expected, _ = theirs(self, ModelWrapper(copy.deepcopy(model.model)))
        random.setstate(state)
        got, modified = ours(self, model)
        if got.graph.SerializeToString() != expected.graph.SerializeToString():
            raise LookupMismatch(f"{type(self).__name__}: the graph differs from qonnx's")
        return got, modified
    return apply


def _verified_analysis(ours, theirs):
    def both(model: ModelWrapper) -> dict:
        expected, got = theirs(model), ours(model)
        if got != expected:
            raise LookupMismatch(f"{theirs.__name__}: qonnx gives {expected}, the index {got}")
        return got
    return both


@contextlib.contextmanager
def indexed_lookups(verify: bool = False) -> Iterator[None]:
    """Answer qonnx's tensor and node lookups from indexes while the block runs (nested uses
    are one). ``verify``: check every answer against qonnx's own method."""
    global _depth
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    ours = {name: globals()[name] for name in _METHODS}
    if verify:
        ours = {name: (f if name in _EDITS else _verified(name, f, _ORIGINAL[name]))
                for name, f in ours.items()}
    lookup = _verified("get_by_name", get_by_name, _ORIGINAL["get_by_name"]) if verify \
        else get_by_name
    _depth = 1
    try:
        for name, f in ours.items():
            setattr(ModelWrapper, name, f)
        qutil.get_by_name = lookup
        qutil.remove_by_name = remove_by_name
        for cls, apply, theirs in _PASSES:
            cls.apply = _verified_pass(apply, theirs) if verify else apply
        topology.nodes_topologically_sorted = _verified_analysis(
            nodes_topologically_sorted, _ORIGINAL["nodes_topologically_sorted"]) if verify \
            else nodes_topologically_sorted
        yield
    finally:
        for name in _METHODS:
            setattr(ModelWrapper, name, _ORIGINAL[name])
        qutil.get_by_name = _ORIGINAL["get_by_name"]
        qutil.remove_by_name = _ORIGINAL["remove_by_name"]
        for cls, _, theirs in _PASSES:
            cls.apply = theirs
        topology.nodes_topologically_sorted = _ORIGINAL["nodes_topologically_sorted"]
        _indexes.clear()
        _depth = 0
