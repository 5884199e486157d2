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
``transform`` does around it) skipped, and infers once at the end, as FINN's last pass
(which finds nothing to change) does. The graph that comes out is byte-identical to FINN's
(tested on real builds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import finn.transformation.streamline.absorb as absorb
import finn.transformation.streamline.round_thresholds as round_thresholds
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

#: The transformations batched, with the module whose inference names they call.
BATCHED = ((absorb.AbsorbScalarBiasIntoMultiThreshold, absorb),
           (round_thresholds.RoundAndClipThresholds, round_thresholds))


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


def _batched(apply, module):
    def run(self, model):
        model, changed = apply(self, model)
        if not changed:
            return model, False
        names = {n: getattr(module, n) for n in ("InferDataTypes", "InferShapes")
                 if hasattr(module, n)}
        transform = ModelWrapper.transform
        for n in names:
            setattr(module, n, _Skip)
        ModelWrapper.transform = _transform_skipping(transform)
        try:
            while changed:
                model, changed = apply(self, model)
        finally:
            ModelWrapper.transform = transform
            for n, v in names.items():
                setattr(module, n, v)
        model = model.transform(InferDataTypes())
        if "InferShapes" in names:
            model = model.transform(InferShapes())
        return model, False
    return run


@contextlib.contextmanager
def batched_passes() -> Iterator[None]:
    """Within the context, the transformations of :data:`BATCHED` infer once per run."""
    saved = [(cls, cls.apply) for cls, _ in BATCHED]
    for cls, module in BATCHED:
        cls.apply = _batched(cls.apply, module)
    try:
        yield
    finally:
        for cls, apply in saved:
            cls.apply = apply
