"""Batched passes give FINN's graphs byte for byte, with one inference per transformation."""

from __future__ import annotations

import contextlib
import random
from types import SimpleNamespace

import pytest
from finn.transformation.fpgadataflow.minimize_accumulator_width import MinimizeAccumulatorWidth
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_datatypes import InferDataTypes

from bnnpose.hw_build.batched_passes import BATCHED, batched_passes
from bnnpose.hw_build.steps import step_minimize_bit_width, step_streamline_pose


def _run(step, path, batched: bool, monkeypatch) -> tuple[bytes, dict]:
    """The graph ``step`` makes of the model at ``path`` and how often FINN's one-node
    transformations and the datatype inference ran."""
    calls = {cls.__name__: 0 for cls, *_ in BATCHED} | {"InferDataTypes": 0}

    def counting(name, apply):
        def run(self, model):
            calls[name] += 1
            return apply(self, model)
        return run

    with monkeypatch.context() as m:
        for cls, *_ in BATCHED:
            m.setattr(cls, "apply", counting(cls.__name__, cls.apply))
        m.setattr(InferDataTypes, "apply", counting("InferDataTypes", InferDataTypes.apply))
        random.seed(0)  # qonnx names new tensors with Python's generator
        ctx = SimpleNamespace(golden=SimpleNamespace(out_scale=None), host_ops=[])
        with batched_passes() if batched else contextlib.nullcontext():
            model = step(ModelWrapper(str(path)), ctx)
    return model.model.SerializeToString(), calls


def test_batched_streamlining_gives_finns_graph(small_build, monkeypatch):
    out, _ = small_build
    path = out / "intermediate_models" / "01_tidy_up.onnx"
    finn, finn_calls = _run(step_streamline_pose, path, False, monkeypatch)
    ours, our_calls = _run(step_streamline_pose, path, True, monkeypatch)
    assert ours == finn
    # FINN re-infers after every changed node; batched, each run infers at most twice.
    passes = {k: v for k, v in finn_calls.items()  # the two passes streamlining batches
              if k in ("AbsorbScalarBiasIntoMultiThreshold", "RoundAndClipThresholds")}
    assert min(passes.values()) > 2, passes
    assert our_calls["InferDataTypes"] < finn_calls["InferDataTypes"]
    # The same passes, fewer inferences; threshold rounding re-runs FINN's last pass, which
    # sets every threshold again, after passes that set only the thresholds they change.
    assert {k: our_calls[k] for k in passes} == {
        **passes, "RoundAndClipThresholds": passes["RoundAndClipThresholds"] + 1}


@pytest.mark.parametrize("before", ["04_check_mapped.onnx", "10_apply_folding_config.onnx"])
def test_batched_bit_width_minimization_gives_finns_graph(small_build, monkeypatch, before):
    out, _ = small_build
    path = out / "intermediate_models" / before
    finn, finn_calls = _run(step_minimize_bit_width, path, False, monkeypatch)
    ours, our_calls = _run(step_minimize_bit_width, path, True, monkeypatch)
    assert ours == finn
    assert our_calls["InferDataTypes"] < finn_calls["InferDataTypes"]


def test_the_context_restores_finns_transformations():
    saved = [(cls.apply, cls) for cls, *_ in BATCHED] + [
        (MinimizeAccumulatorWidth.apply, MinimizeAccumulatorWidth)]
    with batched_passes():
        assert all(cls.apply is not apply for apply, cls in saved)
    assert all(cls.apply is apply for apply, cls in saved)
    assert ModelWrapper.transform.__module__ == "qonnx.core.modelwrapper"
    assert ModelWrapper.find_consumers.__module__ == "qonnx.core.modelwrapper"
    assert ModelWrapper.make_empty_exec_context.__module__ == "qonnx.core.modelwrapper"
    # resumed passes see their own enumerate only between their first pass and their end
    assert not any("enumerate" in vars(batch.module) for batch in BATCHED)


def test_batched_weight_folding_gives_finns_graph(small_export, tmp_path, monkeypatch):
    """FINN's qonnx_to_finn step on the exported network: one weight quantizer folded per
    pass, with a shape inference after each in FINN's, once at the end batched."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from finn.builder.build_dataflow_steps import step_qonnx_to_finn
    from qonnx.transformation.infer_shapes import InferShapes

    export_dir, _ = small_export
    cfg = DataflowBuildConfig(output_dir=str(tmp_path), synth_clk_period_ns=10.0,
                              generate_outputs=[])
    results = []
    for batched in (False, True):
        calls = {"fold": 0, "shapes": 0}
        with monkeypatch.context() as m:
            for name, cls in (("fold", BATCHED[2][0]), ("shapes", InferShapes)):
                def counting(self, model, _apply=cls.apply, _name=name):
                    calls[_name] += 1
                    return _apply(self, model)
                m.setattr(cls, "apply", counting)
            random.seed(0)
            with batched_passes() if batched else contextlib.nullcontext():
                model = step_qonnx_to_finn(ModelWrapper(str(export_dir / "model.onnx")), cfg)
        results.append((model.model.SerializeToString(), calls))
    (finn, finn_calls), (ours, our_calls) = results
    assert ours == finn
    assert our_calls["fold"] == finn_calls["fold"] > 3  # one pass per weight quantizer
    assert our_calls["shapes"] < finn_calls["shapes"] - 3


def test_batched_elementwise_conversion_gives_finns_graph(small_build, tmp_path):
    """FINN's convert_to_hw step: the residual Adds are converted one per pass, each followed
    by whole-graph inference in FINN's; batched, only the datatypes downstream of each."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from finn.builder.build_dataflow_steps import step_convert_to_hw

    out, _ = small_build
    path = out / "intermediate_models" / "02_streamline_pose.onnx"
    assert any(n.op_type == "Add" for n in ModelWrapper(str(path)).graph.node)
    cfg = DataflowBuildConfig(output_dir=str(tmp_path), synth_clk_period_ns=10.0,
                              generate_outputs=[])
    graphs = []
    for batched in (False, True):
        random.seed(0)
        with batched_passes() if batched else contextlib.nullcontext():
            graphs.append(step_convert_to_hw(ModelWrapper(str(path)), cfg)
                          .model.SerializeToString())
    assert graphs[0] == graphs[1]
