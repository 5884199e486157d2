"""Python simulation of a folded FINN dataflow graph: the accelerator without Vivado.

After ``SpecializeLayers`` FINN nodes (``MVAU_hls``, ``Thresholding_rtl``, ...) only execute in
cppsim/rtlsim, which need Vivado/Vitis. Their generic parents (``MVAU``, ``Thresholding``) hold
the same weights, thresholds and datatypes and execute in Python; folding attributes (PE, SIMD)
change the schedule, not the arithmetic. So the simulated accelerator runs the specialized graph
with every node mapped back to its generic op.

:class:`SimBackend` puts that simulation behind the board's DMA byte layout: the ``sim`` backend
of ``bnnpose run`` on a build host, which ``host.backends`` finds through the ``bnnpose.backends``
entry point (pyproject.toml).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from bnnpose.host.backends import MODEL_FILE, OverlayBackend
from bnnpose.host.common import BnnposeError
from bnnpose.host.packing import TensorSpec, input_spec, output_spec, to_normal, to_packed
from bnnpose.quantize.qonnx_exec import exec_onnx

_SPECIAL_DOMAINS = ("finn.custom_op.fpgadataflow.hls", "finn.custom_op.fpgadataflow.rtl")
_GENERIC_DOMAIN = "finn.custom_op.fpgadataflow"


def to_generic(model: ModelWrapper) -> ModelWrapper:
    """A copy of ``model`` whose specialized HW nodes are their generic, Python-executable ops."""
    model = ModelWrapper(model.model.__deepcopy__())
    for node in model.graph.node:
        if node.domain in _SPECIAL_DOMAINS:
            node.domain = _GENERIC_DOMAIN
            node.op_type = node.op_type.rsplit("_", 1)[0]
    return model


def execute_hw_graph(model: ModelWrapper | str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """Run a (folded) HW graph on one batch of normal-shaped input.

    Args:
        model: ModelWrapper or path to the ``.onnx`` of a FINN dataflow graph.
        x: input in the graph's normal shape (e.g. [1, 128, 128, 3] NHWC), integer-valued.
    Returns:
        the output in the graph's normal shape, integer-valued float32.
    """
    if not isinstance(model, ModelWrapper):
        model = ModelWrapper(str(Path(model)))
    if any(n.domain in _SPECIAL_DOMAINS for n in model.graph.node):
        model = to_generic(model)
    return exec_onnx(model, x)


class SimBackend(OverlayBackend):
    """Executes ``model_hw.onnx`` of an overlay in FINN's simulation, behind the DMA byte layout.

    The packed input is unpacked with the same functions the board host uses to pack it, and
    the simulated output is packed the way the output DMA delivers it, so a pack/unpack bug
    shows up in simulation rather than first on the board.
    """

    def __init__(self, overlay_dir: str | os.PathLike) -> None:
        super().__init__(overlay_dir)
        if self.overlay.model_hw is None:
            raise BnnposeError(f"overlay {self.overlay.path} has no {MODEL_FILE} to simulate")
        # Parsed once rather than per image, so batch runs are bounded by the simulation.
        self._model = ModelWrapper(str(self.overlay.model_hw))
        self._ispec = input_spec(self.overlay.io_shape)
        self._ospec = output_spec(self.overlay.io_shape)
        _check_graph_io(self._model, self._ispec, self._ospec, self.overlay.path)

    def execute_packed(self, ibuf_packed: np.ndarray) -> np.ndarray:
        """uint8 ``[N, *ishape_packed[1:]]`` -> uint8 ``[N, *oshape_packed[1:]]``."""
        x = to_normal(ibuf_packed, self._ispec)
        # The graph is built for batch 1, as the accelerator streams one frame at a time.
        y = np.concatenate([np.asarray(execute_hw_graph(self._model, xi[None])) for xi in x])
        want = (x.shape[0], *self._ospec.normal[1:])
        if y.shape != want:
            raise BnnposeError(f"simulation returned {list(y.shape)}, io_shape says {list(want)}")
        return to_packed(y, self._ospec)


def _check_graph_io(model: Any, ispec: TensorSpec, ospec: TensorSpec, where: Path) -> None:
    """Fail unless the graph's input/output shapes and FINN datatypes are io_shape.json's."""
    for what, name, spec in (("input", model.graph.input[0].name, ispec),
                             ("output", model.graph.output[0].name, ospec)):
        shape, dt = tuple(model.get_tensor_shape(name)), model.get_tensor_datatype(name)
        if shape != tuple(spec.normal) or dt.name != spec.dtype.name:
            raise BnnposeError(f"overlay {where}: {MODEL_FILE} {what} is {dt.name}{list(shape)}, "
                               f"io_shape.json says {spec.dtype.name}{list(spec.normal)}")


def sim_backend(overlay_dir: str, engine: str = "native") -> SimBackend:
    """``bnnpose run --backend sim`` (entry point ``bnnpose.backends:sim``); ``engine`` is the
    cpu backend's option and means nothing here."""
    return SimBackend(overlay_dir)
