"""Export a trained binary network to QONNX with golden vectors.

    bnnpose export --checkpoint CKPT --out DIR [--n-golden 16]

Writes ``DIR/model.onnx`` (QONNX, input annotated UINT8 NCHW), ``DIR/golden_in.npy``
([N, 3, H, W] held-out synthetic crops, 0..255), ``DIR/golden_out.npy`` (the torch outputs) and
``DIR/export.json``. Every golden input is also executed by qonnx; the export fails unless
QONNX reproduces torch exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bnnpose.host.common import (BnnposeError, atomic_dir, one_line, run_main, sha256_file,
                                 versions, write_json)
from bnnpose.host.skeleton import MPII_JOINTS


#: node metadata of torch's ONNX exporter that names source files and lines
STACK_TRACE = "pkg.torch.onnx.stack_trace"


def golden_images(n: int, size: int) -> np.ndarray:
    """``n`` held-out synthetic person crops, uint8 [n, size, size, 3] (never used in training)."""
    from bnnpose.quantize import synthetic

    seeds = range(synthetic.EVAL_SEED_OFFSET + 900_000, synthetic.EVAL_SEED_OFFSET + 900_000 + n)
    return np.stack([synthetic.render_crop_sample(s, size=size)["image"] for s in seeds])


def export(checkpoint: str | Path, out: str | Path, n_golden: int = 16) -> dict:
    """Export a trained checkpoint to ``out``; returns the export.json dict."""
    from bnnpose.models.checkpoint_io import load_checkpoint

    model, ckpt = load_checkpoint(checkpoint)
    cfg = dict(ckpt["config"])
    if not cfg.get("binary", True):
        raise BnnposeError(f"{checkpoint} holds a float twin; only binary networks export to FINN")
    if n_golden < 1:
        raise BnnposeError(f"--n-golden must be at least 1, got {n_golden}")
    size = int(cfg["input_size"])
    x = golden_images(n_golden, size).transpose(0, 3, 1, 2).astype(np.float32)
    # Named like finn-examples' networks: model, precisions, training data, input size.
    data = (ckpt.get("train_config") or {}).get("data", "synthetic")
    data = data if data in ("synthetic", "mesh") else "real"
    name = f"{ckpt['model']}_w1a1-k{cfg['bits']}-in8_{data}-{size}x{size}"
    return export_network(model, x, out, name, {
        "model": ckpt["model"], "config": cfg, "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint), "metrics": ckpt.get("metrics", {})})


def _populate_param_buffer_metadata(params_buffers_to_node_meta: dict, gm, new_sig) -> None:
    """torch's ``_populate_param_buffer_metadata_to_new_gm`` with the signature's two name
    maps built once: torch's rebuilds both from every input spec for every placeholder, a
    time quadratic in the parameter count (a third of a 4-stack network's export). The loop
    changes only node metadata, never the signature, so the maps stay what they were."""
    for metadata in params_buffers_to_node_meta.values():
        metadata.pop("nn_module_stack", None)
        metadata.pop("stack_trace", None)
    to_parameters, to_buffers = new_sig.inputs_to_parameters, new_sig.inputs_to_buffers
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        for names in (to_parameters, to_buffers):
            if node.target in names and names[node.target] in params_buffers_to_node_meta:
                node.meta.update(params_buffers_to_node_meta[names[node.target]])


@contextlib.contextmanager
def _linear_export_metadata():
    """torch.export's modules call :func:`_populate_param_buffer_metadata` while it runs."""
    import torch.export._trace as trace
    import torch.export.exported_program as exported_program

    name = "_populate_param_buffer_metadata_to_new_gm"
    saved = [(m, getattr(m, name)) for m in (trace, exported_program) if hasattr(m, name)]
    for module, _ in saved:
        setattr(module, name, _populate_param_buffer_metadata)
    try:
        yield
    finally:
        for module, original in saved:
            setattr(module, name, original)


def export_network(model: torch.nn.Module, x: np.ndarray, out: str | Path, name: str,
                   meta: dict) -> dict:
    """Export ``model`` (eval mode) with golden inputs ``x`` [N, C, H, W] (0..255) to ``out``."""
    from brevitas.export import export_qonnx
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    from bnnpose.models.registry import model_joints
    from bnnpose.quantize.golden import Golden
    from bnnpose.quantize.qonnx_exec import exec_onnx
    from bnnpose.quantize.qonnx_index import indexed_lookups

    t0 = time.perf_counter()
    model = model.eval()
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    joints = model_joints(model.cfg) if hasattr(model, "cfg") else MPII_JOINTS[: y.shape[1]]
    with atomic_dir(out) as tmp, indexed_lookups():
        onnx_path = tmp / "model.onnx"
        try:
            # The exporter reports its own fallbacks at length; they are not errors.
            with contextlib.redirect_stdout(io.StringIO()), _linear_export_metadata():
                export_qonnx(model, args=torch.from_numpy(x[:1]), export_path=str(onnx_path))
            qmodel = cleanup_model(ModelWrapper(str(onnx_path)))
            # torch's exporter keeps each node's Python stack trace (absolute paths, line
            # numbers): the same network would export to other bytes from another checkout.
            for node in qmodel.graph.node:
                keep = [p for p in node.metadata_props if p.key != STACK_TRACE]
                del node.metadata_props[:]
                node.metadata_props.extend(keep)
            # The accelerator's input is the raw 8-bit pixel grid.
            qmodel.set_tensor_datatype(qmodel.graph.input[0].name, DataType["UINT8"])
            qmodel.save(str(onnx_path))
            golden = Golden(x=x, y=y)
            exact = golden.check("torch_vs_qonnx", qmodel, exec_onnx)
        except Exception as e:  # Brevitas's and qonnx's failures, as one line
            raise BnnposeError(f"QONNX export of {name} failed: {type(e).__name__}: "
                               f"{one_line(e, 400)}") from e
        if not exact:
            r = golden.results["torch_vs_qonnx"]
            raise BnnposeError(f"QONNX execution differs from torch on {r['n_mismatched']}/"
                               f"{len(x)} golden inputs (max |diff| {r['max_abs_diff']:.3g})")
        np.save(tmp / "golden_in.npy", x)
        np.save(tmp / "golden_out.npy", y)
        info = {
            "name": name, **meta, "onnx_sha256": sha256_file(onnx_path),
            "input": {"datatype": "UINT8", "layout": "NCHW", "shape": [1, *x.shape[1:]]},
            "output": {"layout": "NCHW", "shape": list(y.shape[1:]),
                       "joints": list(joints)},
            "n_golden": len(x),
            "bitexact": {k: r["bitexact"] for k, r in golden.results.items()},
            "verification": golden.results,
            "versions": versions(), "seconds": round(time.perf_counter() - t0, 2),
        }
        write_json(tmp / "export.json", info)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bnnpose export", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n-golden", type=int, default=16)
    a = p.parse_args(argv)
    info = export(a.checkpoint, a.out, a.n_golden)
    print(f"exported {info['name']} to {a.out} (QONNX == torch on {info['n_golden']} inputs)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, None, "bnnpose export"))
