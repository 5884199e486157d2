"""The notebooks in notebooks/: committed without outputs, and executed end to end."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

BOARD_NOTEBOOKS = ("board_image_demo.ipynb", "board_camera_demo.ipynb",
                   "board_throughput.ipynb")


def _images_shown(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def _text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def _notebook_versions():
    """(label, text) of every notebook in the work tree and, in a git checkout, in git's index
    (what a commit records)."""
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        yield path.name, path.read_text()
    repo = NOTEBOOKS.parent
    listed = subprocess.run(["git", "ls-files", "--", "notebooks/*.ipynb"], cwd=repo,
                            capture_output=True, text=True)
    for rel in listed.stdout.split() if listed.returncode == 0 else []:
        staged = subprocess.run(["git", "show", f":{rel}"], cwd=repo, capture_output=True,
                                text=True, check=True)
        yield f"{rel} (git index)", staged.stdout


def test_committed_notebooks_have_no_outputs():
    import nbformat

    found = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert set(BOARD_NOTEBOOKS) | {"pc_walkthrough.ipynb"} <= found
    for label, text in _notebook_versions():
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{label} cell {i} has outputs"
                assert cell.execution_count is None, f"{label} cell {i} has an execution count"
            assert "execution" not in cell.metadata, f"{label} cell {i} has execution timings"


def test_image_demo_in_simulation_matches_the_cpu_engine(execute_notebook, built_overlay,
                                                         tmp_path):
    from skimage import data

    from bnnpose.host.backends import CpuBackend
    from bnnpose.host.pipeline import STAGES, PosePipeline

    nb = execute_notebook("board_image_demo.ipynb", tmp_path, BNNPOSE_NB_BACKEND="sim",
                          BNNPOSE_NB_REPEATS="2")
    saved = json.loads((tmp_path / "astronaut_pose.json").read_text())
    assert saved["backend"] == "sim" and Path(saved["overlay"]) == built_overlay
    assert set(saved["latency_ms_median"]) == set(STAGES)
    assert cv2.imread(str(tmp_path / "astronaut_pose.png")).shape == (512, 512, 3)
    assert _images_shown(nb) == 2  # the skeleton and the latency chart
    # The simulated accelerator in the kernel and the XNOR engine here agree joint for joint.
    cpu = CpuBackend(built_overlay)
    ref = PosePipeline(cpu, cpu.host_cfg).predict(data.astronaut())
    got = np.array(saved["keypoints"])
    np.testing.assert_allclose(got[:, :2], ref["keypoints"], atol=0.006)
    np.testing.assert_allclose(got[:, 2], ref["scores"], atol=1e-4)


def test_image_demo_runs_inside_a_deploy_folder(execute_notebook, real_overlay, tmp_path):
    from bnnpose.host.runtime import deploy

    board = tmp_path / "bnnpose-board"
    deploy(real_overlay, board)
    execute_notebook("board_image_demo.ipynb", board, BNNPOSE_NB_BACKEND="cpu",
                     BNNPOSE_NB_REPEATS="2")
    saved = json.loads((board / "astronaut_pose.json").read_text())
    # The folder's own overlay (no simulation graph, the cpu plan) served the notebook.
    assert Path(saved["overlay"]) == board / "overlay" and saved["backend"] == "cpu"
    assert len(saved["keypoints"]) == 16


def test_camera_demo_falls_back_to_a_video_and_stops(execute_notebook, built_overlay, tmp_path):
    frames = 12
    nb = execute_notebook("board_camera_demo.ipynb", tmp_path, BNNPOSE_NB_BACKEND="cpu",
                          BNNPOSE_NB_CAMERA="99", BNNPOSE_NB_FRAMES=str(frames))
    out = tmp_path / "camera_out"
    clip = cv2.VideoCapture(str(out / "synthetic_walk.mp4"))
    clip_frames = int(clip.get(cv2.CAP_PROP_FRAME_COUNT))
    clip.release()
    assert clip_frames == frames + 30
    records = [json.loads(line) for line in (out / "keypoints.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    # Stopped like an interrupted kernel: shortly after MAX_FRAMES, long before the clip ends.
    assert summary["interrupted"] is True
    assert frames <= summary["frames"] == len(records) < clip_frames
    assert [r["frame"] for r in records] == list(range(len(records)))
    assert all(len(r["keypoints"]) == 16 for r in records)
    assert summary["fps"]["accelerator"] > 0 and summary["backend"] == "CpuBackend"
    annotated = cv2.VideoCapture(str(out / "synthetic_walk_pose.mp4"))
    assert annotated.isOpened() and annotated.read()[0]
    annotated.release()
    assert _images_shown(nb) == 2  # the latency plot and the frames
    assert f"{summary['frames']} frames (stopped)" in _text(nb)


def test_throughput_notebook_writes_every_batch_size(execute_notebook, built_overlay, tmp_path):
    nb = execute_notebook("board_throughput.ipynb", tmp_path, BNNPOSE_NB_BACKEND="cpu",
                          BNNPOSE_NB_MAX_BATCH="16", BNNPOSE_NB_REPEATS="2")
    saved = json.loads((tmp_path / "throughput_out" / "throughput.json").read_text())
    assert saved["backend"] == "cpu"
    rows = saved["results"]
    assert [r["batch_size"] for r in rows] == [1, 2, 4, 8, 16]
    for r in rows:
        assert r["fps"] == pytest.approx(r["batch_size"] / (r["runtime_ms"] / 1e3))
        assert r["repeats"] == 2 and math.isfinite(r["dram_in_mb_s"])
    assert cv2.imread(str(tmp_path / "throughput_out" / "throughput.png")) is not None
    assert _images_shown(nb) == 1


@pytest.mark.slow
def test_pc_walkthrough_from_training_to_both_backends(execute_notebook, tmp_path):
    from bnnpose.host.backends import load_overlay

    nb = execute_notebook("pc_walkthrough.ipynb", tmp_path, timeout=1200)
    out = tmp_path / "walkthrough_out"
    history = [json.loads(line) for line in
               (out / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(math.isfinite(h["train_loss"]) for h in history)
    assert (out / "train" / "best.pt").is_file()
    exported = json.loads((out / "export" / "export.json").read_text())
    assert exported["n_golden"] == 4 and exported["bitexact"]["torch_vs_qonnx"] is True
    report = json.loads((out / "build" / "report.json").read_text())
    assert set(report["bitexact"]) == {"qonnx", "finn_onnx", "streamlined", "hw_layers",
                                       "folded_hw"}
    assert all(report["bitexact"].values()) and report["unmapped_nodes"] == []
    assert report["estimate"]["fits"] and report["xnor_mac_share"] > 0.5
    overlay = load_overlay(out / "overlay")
    assert overlay.cpu_plan is not None and overlay.model_hw is not None
    text = _text(nb)
    assert "sim == cpu, byte for byte: True" in text
    assert "heatmaps == torch:         True" in text
    pck = float(text.split("through the host pipeline: ")[1].split()[0])
    assert 0.0 < pck <= 1.0
    assert _images_shown(nb) == 4  # data, training curves, heatmaps, skeletons
