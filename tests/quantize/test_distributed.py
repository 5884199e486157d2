"""Data-parallel training under torchrun: two CPU processes on the gloo backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from bnnpose.models.checkpoint_io import load_checkpoint


def test_two_process_torchrun_trains_one_model(tmp_path):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "bnnpose.quantize.train_cli", "--n-train", "64", "--n-val", "32", "--epochs", "2",
         "--batch-size", "16", "--warmup-steps", "2", "--out", str(out),
         "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dist = json.loads((out / "distributed.json").read_text())
    # DDP averaged every gradient: both processes end on the same weights, bit for bit.
    assert dist == {"world_size": 2, "backend": "gloo", "replicas_identical": True}
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]  # written once, by rank 0
    assert all(h["world_size"] == 2 for h in history)
    model, ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["metrics"]["world_size"] == 2
    assert torch.isfinite(torch.stack([p.abs().sum() for p in model.parameters()])).all()
