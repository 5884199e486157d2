"""bench/train_gpu.sh on this CPU: the session a GPU machine runs, on a tiny budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "train_gpu.sh"


def _run(*args, **env):
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "BNNPOSE_VENV": str(Path(sys.executable).parents[1]),
                               **env}, cwd=REPO)


def test_budgeted_session_writes_run_log_and_machine(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    out = tmp_path / "out"
    result = _run(wheels, out, "0.001", "--n-train", "32", "--n-val", "8", "--epochs", "3",
                  "--batch-size", "16", "--num-threads", "1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    machine = json.loads((out / "machine.json").read_text())
    assert machine["cores"] >= 1 and "torch" in machine
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # the budget ends the session after its first epoch
    assert json.loads(lines[0])["device"] == ("cuda" if machine["cuda"] else "cpu")
    assert "time budget" in (out / "train.log").read_text()
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["device"] == "auto" and config["time_budget_s"] == 0.001


def test_session_trains_on_a_pack_with_an_empty_cache(tmp_path):
    # What travels to a GPU machine: the pack, not the renderer, its caches or the footage.
    from bnnpose.quantize import pack

    folder = tmp_path / "pack"
    assert pack.main(["--n-train", "32", "--n-val", "8", "--cache-dir", str(tmp_path / "here"),
                      "--out", str(folder)]) == 0
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    out = tmp_path / "out"
    result = _run(wheels, out, "600", "--data", f"packed:{folder}", "--n-train", "32",
                  "--n-val", "8", "--epochs", "1", "--batch-size", "16", "--num-threads", "1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert len((out / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (out / "cache").exists()  # nothing rendered there


def test_bad_arguments_are_one_line(tmp_path):
    for args, message in (((tmp_path / "none", tmp_path / "o", "60"), "wheel folder not found"),
                          ((tmp_path, tmp_path / "o", "soon"), "BUDGET_S must be a number"),
                          ((tmp_path,), "usage:")):
        result = _run(*args)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
