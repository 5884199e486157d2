"""Package a build into ``overlays/<board>/<model>/``: everything the board side needs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from bnnpose.host.common import BnnposeError, atomic_dir, manifest, write_json
from bnnpose.host.cpu_engine import PLAN_FILE
from bnnpose.host.skeleton import MPII_JOINTS
from bnnpose.hw_build.boards import board
from bnnpose.hw_build.cpu_plan import compile_plan


def host_config(report: dict, io_shape: dict, joints: list[str] | None = None) -> dict:
    """host.json: the work left to the host around the accelerator (layouts, output scale)."""
    _, h, w, _ = io_shape["ishape_normal"][0]
    _, hh, hw, j = io_shape["oshape_normal"][0]
    scale = [1.0]
    for op in report.get("host_ops", []):
        if op["op"] == "Mul":
            scale = [float(s) for s in op["scale"]]
    return {
        "input_layout": "NHWC", "input_size": [w, h], "heatmap_size": [hw, hh],
        "output_layout": "NHWC", "output_scale": scale, "output_bias": [0.0],
        "joints": list(joints or MPII_JOINTS[:j]),
    }


def package_overlay(build_dir: str | Path, overlay_dir: str | Path, name: str,
                    joints: list[str] | None = None) -> dict:
    """Copy the board-side files of ``build_dir`` into ``overlay_dir``; returns the manifest."""
    build_dir = Path(build_dir)
    report_path = build_dir / "report.json"
    if not report_path.is_file():
        raise BnnposeError(f"not a make_bitstream output folder (no report.json): {build_dir}")
    report = json.loads(report_path.read_text())
    io_shape = json.loads((build_dir / "io_shape.json").read_text())
    with atomic_dir(overlay_dir) as tmp:
        shutil.copy2(build_dir / "model_hw.onnx", tmp / "model_hw.onnx")
        # The cpu backend's program, so a board runs it with numpy alone (no onnx there).
        compile_plan(tmp / "model_hw.onnx").save(tmp / PLAN_FILE)
        write_json(tmp / "io_shape.json", io_shape)
        write_json(tmp / "host.json", host_config(report, io_shape, joints))
        write_json(tmp / "estimate.json", {k: report[k] for k in (
            "estimate", "xnor_mac_share", "macs_by_bitwidth", "unmapped_nodes", "bitexact")})
        for kind in ("bitfile", "hwh"):
            src = (report.get("bitstream") or {}).get(kind)
            if src:
                shutil.copy2(src, tmp / f"{name}{Path(src).suffix}")
        weights = (report.get("bitstream") or {}).get("runtime_weights")
        if weights:
            shutil.copytree(weights, tmp / "runtime_weights")
        # platform: the board's FINN shell, which finn-plus-driver needs to drive it
        man = manifest(tmp, model=name, board=report["board"],
                       platform=board(report["board"]).shell,
                       model_sha256=report["model_sha256"], bitstream=bool(report.get("bitstream")))
        write_json(tmp / "manifest.json", man)
    return man


def check_host(overlay_dir: Path, export_dir: Path, backend: str = "sim") -> dict:
    """Golden inputs through pack -> ``backend`` ("sim" or "cpu") -> unpack, against torch."""
    from bnnpose.host.backends import CpuBackend
    from bnnpose.host.packing import input_spec, output_spec, to_normal, to_packed
    from bnnpose.hw_build.sim import SimBackend

    runner = {"sim": SimBackend, "cpu": CpuBackend}[backend](overlay_dir)
    ispec, ospec = input_spec(runner.io_shape), output_spec(runner.io_shape)
    scale = runner.host_cfg.output_scale
    x = np.load(export_dir / "golden_in.npy").transpose(0, 2, 3, 1).astype(np.uint8)
    y = np.load(export_dir / "golden_out.npy").transpose(0, 2, 3, 1)
    mismatched, t = 0, time.perf_counter()
    for xi, yi in zip(x, y):
        out = to_normal(runner.execute_packed(to_packed(xi[None], ispec)), ospec)[0]
        mismatched += int(not np.array_equal(out * scale, yi))
    return {"bitexact": mismatched == 0, "n_inputs": len(x), "n_mismatched": mismatched,
            "seconds_per_frame": round((time.perf_counter() - t) / len(x), 4)}
