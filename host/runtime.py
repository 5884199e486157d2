"""Board-side runtime tools: the throughput test and the self-contained deploy folder."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bnnpose.host.common import (BnnposeError, atomic_dir, atomic_writer, manifest, versions,
                                 write_json)
from bnnpose.host.backends import Backend, load_overlay
from bnnpose.host.packing import input_spec, output_spec, to_normal, to_packed

#: Board-side pins: what a PYNQ image adds to its own numpy, OpenCV and pynq.
BOARD_REQUIREMENTS = ("finn-plus-driver==1.6.1", "tqdm>=4.66")


def throughput_test(backend: Backend, batch_sizes: Sequence[int] = (1, 2, 4, 8, 16),
                    repeats: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """FPS and latency of ``backend`` at each batch size, as finn-examples' throughput test.

    Each batch size is run once to allocate its buffers, then ``repeats`` times on the same
    random input; the median run is reported with the host's packing costs beside it.
    """
    if not batch_sizes or min(batch_sizes) < 1 or repeats < 1:
        raise BnnposeError("throughput test needs batch sizes >= 1 and repeats >= 1")
    ispec, ospec = input_spec(backend.io_shape), output_spec(backend.io_shape)
    dt = ispec.dtype
    rng = np.random.default_rng(seed)
    rows = []
    for n in tqdm(batch_sizes, desc="throughput", unit="batch", disable=None):
        x = rng.integers(int(dt.min()), int(dt.max()) + 1, (n, *ispec.normal[1:]))
        t0 = time.perf_counter()
        ibuf = to_packed(x.astype(np.uint8) if dt.name == "UINT8" else x, ispec)
        pack_ms = (time.perf_counter() - t0) * 1e3
        obuf = backend.execute_packed(ibuf)  # allocation and first-call costs, not timed
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            obuf = backend.execute_packed(ibuf)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        to_normal(obuf, ospec)
        unpack_ms = (time.perf_counter() - t0) * 1e3
        runtime = float(np.median(times))
        rows.append({
            "batch_size": n,
            "runtime_ms": runtime * 1e3,
            "fps": n / runtime,
            "latency_ms_per_frame": runtime * 1e3 / n,
            "dram_in_mb_s": ibuf.nbytes / runtime / 1e6,
            "dram_out_mb_s": obuf.nbytes / runtime / 1e6,
            "pack_input_ms": pack_ms,
            "unpack_output_ms": unpack_ms,
            "repeats": repeats,
        })
    return rows


def write_throughput(rows: list[dict[str, Any]], out_dir: str | os.PathLike,
                     meta: dict[str, Any]) -> Path:
    """``throughput.json`` (+ ``throughput.png`` where matplotlib is installed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "throughput.json", {**meta, "results": rows, "versions": versions()})
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bnnpose: matplotlib not installed; throughput.png skipped", file=sys.stderr)
        return out
    fig, (ax_fps, ax_lat) = plt.subplots(1, 2, figsize=(9, 3.5))
    batch = [r["batch_size"] for r in rows]
    ax_fps.plot(batch, [r["fps"] for r in rows], marker="o")
    ax_fps.set(xlabel="batch size", ylabel="frames / s", xscale="log", title=meta.get("backend"))
    ax_lat.plot(batch, [r["runtime_ms"] for r in rows], marker="o")
    ax_lat.set(xlabel="batch size", ylabel="ms per batch", xscale="log")
    fig.tight_layout()
    with atomic_writer(out / "throughput.png") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------- deploy

_ENTRY = '''\
#!/usr/bin/env python3
"""bnnpose on the board: `python3 run_pose.py run --backend pynq IMAGE|VIDEO|FOLDER|CAMERA`.

Everything it needs is in this folder; see README.md.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("BNNPOSE_OVERLAY", os.path.join(HERE, "overlay"))

from bnnpose.host.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
'''

_README = '''\
# bnnpose on the board: {model} for {board}

Copy this whole folder to the board (e.g. `scp -r {name} xilinx@pynq:`), then on the board:

```
sudo pip3 install -r requirements.txt        # once: finn-plus-driver (numpy, OpenCV, pynq come with the PYNQ image)
sudo python3 run_pose.py run --backend pynq --out out photo.jpg clip.mp4 0
sudo python3 run_pose.py throughput --backend pynq --batch 1 2 4 8 16 --out out/throughput
python3 run_pose.py run --backend cpu --out out photo.jpg      # the ARM cores, no FPGA
```

`run` takes images, folders, video files and a camera index (`0`); `--person hog|track|roi`
picks the person region. It writes `out/keypoints.jsonl` (one line per frame: `source`,
`frame`, `keypoints` as [x, y, score] in source pixels, `latency_ms`), annotated images or
videos, and `summary.json`. The `pynq` backend needs root for the FPGA.

`board_*.ipynb` are the image, camera and throughput notebooks for the board's Jupyter.

Contents: `overlay/` ({bitstream}driver io shapes, host settings, the cpu engine's plan,
manifest with sha256 of every file, checked before each run), `bnnpose/` (the host code),
`requirements.txt`, `manifest.json` (this folder's own checksums and the versions that built it).
'''


def deploy(overlay_dir: str | os.PathLike, to: str | os.PathLike) -> dict[str, Any]:
    """Write a self-contained folder to copy to a board; returns its manifest.

    The overlay is validated first (checksums, io shapes), so a broken overlay never reaches
    the board. The folder holds the overlay (minus the simulation graph the board cannot run),
    the host package, an entry script, pinned board requirements and a README.
    """
    ov = load_overlay(overlay_dir)
    man = ov.manifest
    if ov.cpu_plan is None and ov.bitfile is None:
        raise BnnposeError(f"overlay {ov.path} has neither a bitfile nor a cpu plan: nothing "
                           "would run on a board (rebuild it with make_bitstream.py)")
    src_root = Path(__file__).resolve().parent
    with atomic_dir(to) as tmp:
        shutil.copytree(ov.path, tmp / "overlay",
                        ignore=shutil.ignore_patterns("model_hw.onnx", ".*"))
        # The overlay's manifest still lists model_hw.onnx; the board side checks the rest.
        ov_man = json.loads((tmp / "overlay" / "manifest.json").read_text())
        digest = ov_man["files"].pop("model_hw.onnx", None)
        if digest:  # what the cpu plan must have been compiled from
            ov_man["model_hw_sha256"] = digest
        write_json(tmp / "overlay" / "manifest.json", ov_man)
        # The host package is the whole board runtime: it imports nothing above it.
        shutil.copytree(src_root, tmp / "bnnpose" / "host",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        notebooks = src_root.parent / "notebooks"
        # Beside run_pose.py, where the board notebooks find ./overlay and ./bnnpose.
        for nb in sorted(notebooks.glob("board_*.ipynb")) if notebooks.is_dir() else ():
            shutil.copy2(nb, tmp / nb.name)
        (tmp / "run_pose.py").write_text(_ENTRY)
        os.chmod(tmp / "run_pose.py", 0o755)
        (tmp / "requirements.txt").write_text("\n".join(BOARD_REQUIREMENTS) + "\n")
        (tmp / "README.md").write_text(_README.format(
            model=man.get("model", "?"), board=man.get("board", "?"), name=Path(to).name,
            bitstream="bitfile and hwh, " if ov.bitfile else "no bitstream (built without "
                                                            "Vivado: cpu backend only), "))
        result = manifest(tmp, model=man.get("model"), board=man.get("board"),
                          overlay_model_sha256=man.get("model_sha256"),
                          bitstream=ov.bitfile is not None)
        write_json(tmp / "manifest.json", result)
    return result
