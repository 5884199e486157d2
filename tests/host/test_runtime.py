"""Throughput test and the deploy folder, on the built overlay through the cpu backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig

import cv2
import numpy as np
import pytest

from bnnpose.host import cli
from bnnpose.host.common import BnnposeError, sha256_file
from bnnpose.host.backends import CpuBackend, load_overlay
from bnnpose.host.pipeline import run
from bnnpose.host.runtime import deploy, throughput_test


def test_throughput_reports_every_batch_size(real_overlay, tmp_path, capsys):
    rows = throughput_test(CpuBackend(real_overlay), batch_sizes=(1, 2), repeats=2)
    assert [r["batch_size"] for r in rows] == [1, 2]
    for r in rows:
        assert r["fps"] == pytest.approx(r["batch_size"] / (r["runtime_ms"] / 1e3))
        assert r["dram_in_mb_s"] > 0 and r["dram_out_mb_s"] > 0
    assert cli.main(["throughput", "--backend", "cpu", "--overlay", str(real_overlay),
                     "--batch", "1", "--repeats", "1", "--out", str(tmp_path / "tp")]) == 0
    saved = json.loads((tmp_path / "tp" / "throughput.json").read_text())
    assert saved["backend"] == "cpu" and saved["results"][0]["batch_size"] == 1
    assert cv2.imread(str(tmp_path / "tp" / "throughput.png")) is not None
    with pytest.raises(BnnposeError, match="batch sizes >= 1"):
        throughput_test(CpuBackend(real_overlay), batch_sizes=(0,))


def test_deploy_folder_runs_on_its_own(real_overlay, tmp_path):
    man = deploy(real_overlay, tmp_path / "board")
    board = tmp_path / "board"
    for rel in ("run_pose.py", "README.md", "requirements.txt", "overlay/cpu_plan.npz",
                "overlay/io_shape.json", "bnnpose/host/cli.py", "bnnpose/host/codec.py"):
        assert rel in man["files"], rel
        assert sha256_file(board / rel) == man["files"][rel]
    assert not (board / "overlay" / "model_hw.onnx").exists()  # simulation stays on the PC
    assert "board_image_demo.ipynb" in man["files"]
    assert "finn-plus-driver==" in (board / "requirements.txt").read_text()
    load_overlay(board / "overlay")  # its manifest still checks out without the graph

    image = np.random.default_rng(5).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    run([tmp_path / "p.png"], CpuBackend(real_overlay), tmp_path / "here")
    # No site: only the deployed copy of bnnpose is importable, with the libraries beside it.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    proc = subprocess.run(
        [sys.executable, "-S", str(board / "run_pose.py"), "run", "--backend", "cpu",
         "--out", str(tmp_path / "there"), str(tmp_path / "p.png")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    here, there = ((tmp_path / d / "keypoints.jsonl").read_text() for d in ("here", "there"))
    assert json.loads(here)["keypoints"] == json.loads(there)["keypoints"]
    probe = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(board)!r}); "
         "import bnnpose.host.cli as c; print(c.__file__)"],
        capture_output=True, text=True, env=env, timeout=60)
    assert probe.stdout.strip().startswith(str(board))


def test_deploy_refuses_a_broken_overlay(real_overlay, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(real_overlay, broken)
    (broken / "host.json").write_text((broken / "host.json").read_text().replace("128", "96"))
    with pytest.raises(BnnposeError, match="does not match its sha256"):
        deploy(broken, tmp_path / "board")
    assert not (tmp_path / "board").exists()
