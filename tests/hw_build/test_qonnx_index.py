"""The indexed lookups answer what qonnx's own methods answer, on the graphs of a real build."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import get_by_name  # the original, bound before any patching

from bnnpose.hw_build.make_bitstream import BuildConfig, build
from bnnpose.quantize import qonnx_index
from bnnpose.quantize.qonnx_index import LookupMismatch, indexed_lookups


def _names(model: ModelWrapper) -> list[str]:
    g = model.graph
    names = {t for n in g.node for t in [*n.input, *n.output]}
    names |= {x.name for x in [*g.input, *g.output, *g.value_info, *g.initializer]}
    names |= {a.tensor_name for a in g.quantization_annotation}
    return sorted(names) + ["no_such_tensor", ""]


def _answers(model: ModelWrapper) -> list:
    """Every lookup of every tensor of ``model``, as comparable values."""
    out = []
    for t in _names(model):
        producer = model.find_producer(t)
        init = model.get_initializer(t, return_dtype=True)
        vi = model.get_tensor_valueinfo(t)
        out.append((t, None if producer is None else model.get_node_index(producer),
                    model.get_tensor_shape(t), str(model.get_tensor_datatype(t)),
                    model.get_tensor_layout(t),
                    None if vi is None else vi.SerializeToString(),
                    None if init[0] is None else (init[0].tobytes(), init[0].dtype, init[1])))
    return out


def test_every_stage_of_a_build_answers_alike(small_build):
    out, _ = small_build
    stages = sorted((out / "intermediate_models").glob("*.onnx"))
    assert len(stages) >= 10
    for path in stages:
        model = ModelWrapper(str(path))
        plain = _answers(model)
        with indexed_lookups(verify=True):
            indexed = _answers(model)
        assert indexed == plain, path.name


def test_lookups_follow_edits_the_way_transformations_make_them(small_build):
    """Edits made through the wrapper and straight on the protobuf lists, each followed by
    every lookup, checked against qonnx's answer."""
    out, _ = small_build
    model = ModelWrapper(str(out / "intermediate_models" / "02_streamline_pose.onnx"))
    g = model.graph
    assert min(len(g.node), len(g.value_info), len(g.initializer),
               len(g.quantization_annotation)) >= qonnx_index.MIN_INDEXED  # all indexed
    with indexed_lookups(verify=True):
        _answers(model)  # indexes built
        edits = [
            lambda: model.set_tensor_datatype(g.node[3].output[0], DataType["INT7"]),
            lambda: model.set_tensor_datatype("fresh_tensor", DataType["UINT3"]),
            lambda: model.rename_tensor(g.node[5].output[0], "renamed_out"),
            lambda: model.rename_tensor(g.initializer[2].name, "renamed_param"),
            lambda: g.node.remove(g.node[4]),  # its output now has no producer
            lambda: g.node[6].output.__setitem__(0, "rewired"),
            lambda: g.node.insert(0, onnx.helper.make_node("Relu", ["rewired"], ["early"])),
            lambda: model.set_tensor_shape(g.value_info[7].name, [1, 2, 3]),
            lambda: g.value_info.remove(g.value_info[9]),
            lambda: g.value_info.append(onnx.helper.make_tensor_value_info(
                "appended", onnx.TensorProto.FLOAT, [4])),
            lambda: model.set_initializer(g.initializer[1].name, np.ones(3, np.float32)),
            lambda: model.set_initializer("new_param", np.zeros((2, 2), np.float32)),
            lambda: model.del_initializer(g.initializer[0].name),
            lambda: g.quantization_annotation.remove(g.quantization_annotation[5]),
            lambda: g.node.remove(g.node[2]),
        ]
        # as FINN's threshold rounding does: every initializer set again, lookups between,
        # past the removals an index follows before it re-indexes
        def set_again(k: int) -> None:
            name = g.initializer[k % 7].name
            model.set_initializer(name, model.get_initializer(name))

        edits += [lambda k=k: set_again(k)
                  for k in range(qonnx_index._ListIndex.MAX_REMOVED + 8)]
        for edit in edits:
            edit()
            _answers(model)  # raises LookupMismatch at the first difference


def test_duplicate_names_raise_as_qonnx_does(small_build):
    out, _ = small_build
    model = ModelWrapper(str(out / "intermediate_models" / "02_streamline_pose.onnx"))
    g = model.graph
    g.value_info.append(g.value_info[3])
    name = g.value_info[3].name
    with indexed_lookups(verify=True):
        with pytest.raises(AssertionError, match="Multiple ValueInfoProto"):
            model.get_tensor_shape(name)
        with pytest.raises(Exception, match="multiple get_by_name"):
            qonnx_index.qutil.get_by_name(g.value_info, name)


def test_verify_catches_an_index_that_goes_stale(small_build):
    """A list element renamed in place, not through the wrapper, is the one edit the index
    cannot see; verification reports it, so a build that made it would fail loudly."""
    out, _ = small_build
    model = ModelWrapper(str(out / "intermediate_models" / "02_streamline_pose.onnx"))
    g = model.graph
    assert len(g.value_info) >= qonnx_index.MIN_INDEXED
    with indexed_lookups(verify=True):
        assert model.get_tensor_valueinfo("sneaky") is None
        g.value_info[len(g.value_info) // 2].name = "sneaky"
        with pytest.raises(LookupMismatch, match="sneaky"):
            model.get_tensor_valueinfo("sneaky")


def test_patches_are_undone_and_nest():
    original = ModelWrapper.find_producer
    with indexed_lookups():
        with indexed_lookups():
            assert ModelWrapper.find_producer is not original
        assert ModelWrapper.find_producer is not original
    assert ModelWrapper.find_producer is original
    assert qonnx_index.qutil.get_by_name is get_by_name


def test_a_build_under_verification_matches_qonnx_throughout(small_export, small_build,
                                                             tmp_path):
    """The whole flow with every lookup checked: same answers, same hardware graph."""
    export_dir, _ = small_export
    with indexed_lookups(verify=True):
        report = build(BuildConfig(model=export_dir / "model.onnx", board="pynq-z2",
                                   out=tmp_path / "b", fps=20000))
    assert report["estimate"] == small_build[1]["estimate"]
    assert (tmp_path / "b" / "model_hw.onnx").read_bytes() == \
        (small_build[0] / "model_hw.onnx").read_bytes()


def test_sort_graph_orders_as_qonnx_does(small_build):
    """A real graph shuffled, with a node no input reaches, sorted both ways (verify mode
    raises on any difference in order); a cycle still fails as qonnx's sort fails."""
    from qonnx.transformation.general import SortGraph
    from toposort import CircularDependencyError

    out, _ = small_build
    model = ModelWrapper(str(out / "intermediate_models" / "03_convert_to_hw.onnx"))
    g = model.graph
    nodes = list(g.node)
    order = np.random.default_rng(0).permutation(len(nodes))
    shuffled = [onnx.NodeProto.FromString(nodes[i].SerializeToString()) for i in order]
    del g.node[:]
    g.node.extend(shuffled)
    g.node.append(onnx.helper.make_node("Relu", ["nowhere"], ["floating"]))
    # An omitted optional input ("") beside a real one, as Resize's roi is.
    g.node.insert(0, onnx.helper.make_node("Resize", [nodes[3].output[0], ""], ["resized"]))
    with indexed_lookups(verify=True):
        sorted_model = model.transform(SortGraph(), cleanup=False)
    assert len(sorted_model.graph.node) == len(nodes) + 1  # the floating node is dropped
    assert [n.op_type for n in sorted_model.graph.node].index("Resize") > 0
    g.node.append(onnx.helper.make_node("Relu", ["loop_b"], ["loop_a"]))
    g.node.append(onnx.helper.make_node("Relu", ["loop_a"], ["loop_b"]))
    with indexed_lookups(), pytest.raises(CircularDependencyError):
        model.transform(SortGraph(), cleanup=False)


def test_the_topological_order_check_answers_as_qonnx_does(small_build):
    """Sorted stage graphs, a shuffled one, and a node duplicated out of order: the linear
    check gives qonnx's answer each time (verify mode raises otherwise)."""
    from qonnx.analysis.topology import nodes_topologically_sorted as qonnx_check

    out, _ = small_build
    for path in sorted((out / "intermediate_models").glob("0*.onnx")):
        model = ModelWrapper(str(path))
        with indexed_lookups(verify=True):
            assert model.analysis(qonnx_index.topology.nodes_topologically_sorted) == \
                {"nodes_topologically_sorted": True}
    g = model.graph
    nodes = list(g.node)
    for order in (np.random.default_rng(1).permutation(len(nodes)), range(len(nodes))):
        del g.node[:]
        g.node.extend(onnx.NodeProto.FromString(nodes[i].SerializeToString()) for i in order)
        if isinstance(order, range):  # a copy of the last node at the front
            g.node.insert(0, onnx.NodeProto.FromString(nodes[-1].SerializeToString()))
        expected = qonnx_check(model)["nodes_topologically_sorted"]
        with indexed_lookups(verify=True):
            got = model.analysis(qonnx_index.topology.nodes_topologically_sorted)
        assert got == {"nodes_topologically_sorted": expected}
    assert expected is False  # the copy in front consumes what later nodes produce


def test_unique_parameters_are_given_as_qonnx_gives_them(small_build):
    """Three nodes made to share one parameter: the linear pass copies it for the second and
    third under new names exactly as qonnx's does (verify mode compares the graphs)."""
    import random

    from qonnx.transformation.general import GiveUniqueParameterTensors

    out, _ = small_build
    model = ModelWrapper(str(out / "intermediate_models" / "02_streamline_pose.onnx"))
    thresholds = [n for n in model.graph.node if n.op_type == "MultiThreshold"][:3]
    shared = thresholds[0].input[1]
    for n in thresholds[1:]:
        n.input[1] = shared
    random.seed(0)
    with indexed_lookups(verify=True):
        model = model.transform(GiveUniqueParameterTensors(), cleanup=False)
    names = [n.input[1] for n in model.graph.node if n.op_type == "MultiThreshold"][:3]
    assert names[0] == shared and len(set(names)) == 3
    for name in names[1:]:
        np.testing.assert_array_equal(model.get_initializer(name),
                                      model.get_initializer(shared))
