"""The export's parameter-metadata pass, linear in the parameter count, exports torch's graph."""

from __future__ import annotations

import contextlib
import io

import torch
import torch.export._trace as trace
import torch.export.exported_program as exported_program
from brevitas.export import export_qonnx

from bnnpose.quantize import export

NAME = "_populate_param_buffer_metadata_to_new_gm"


def test_the_linear_metadata_pass_exports_torchs_graph(small_net, tmp_path, monkeypatch):
    originals = [getattr(m, NAME) for m in (trace, exported_program)]
    calls, ours = [], export._populate_param_buffer_metadata

    def counting(*args):
        calls.append(len(args[0]))
        return ours(*args)

    monkeypatch.setattr(export, "_populate_param_buffer_metadata", counting)
    graphs = []
    for linear in (False, True):
        path = tmp_path / f"linear-{linear}.onnx"
        with (export._linear_export_metadata() if linear else contextlib.nullcontext()), \
                contextlib.redirect_stdout(io.StringIO()):
            export_qonnx(small_net, args=torch.zeros(1, 3, 32, 32), export_path=str(path))
        graphs.append(path.read_bytes())
    assert graphs[0] == graphs[1]
    assert calls and max(calls) > 10  # it ran, on the network's parameters and buffers
    assert [getattr(m, NAME) for m in (trace, exported_program)] == originals
