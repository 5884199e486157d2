"""The CLI reports user errors as one stderr line with exit status 2 and forwards stages."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from bnnpose.host import cli
from bnnpose.hw_build import cli as full_cli


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bnnpose.host.cli", *args],
                          capture_output=True, text=True, timeout=60)


def assert_one_line_error(stderr: str, *needles: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("bnnpose: error: "), stderr
    for needle in needles:
        assert needle in lines[0], stderr


def test_missing_image_is_one_line_and_exit_2(overlay_dir, tmp_path):
    missing = tmp_path / "no_such.jpg"
    proc = run_cli("run", "--backend", "sim", "--overlay", str(overlay_dir),
                   "--out", str(tmp_path / "out"), str(missing))
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "not found", str(missing))
    assert not (tmp_path / "out").exists()


def test_empty_image_is_one_line_and_exit_2(overlay_dir, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    proc = run_cli("run", "--backend", "pynq", "--overlay", str(overlay_dir), str(empty))
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "empty", str(empty))


def test_bad_overlay_in_process(tmp_path, capsys):
    image = tmp_path / "x.png"
    image.write_bytes(b"not checked before the overlay")
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--backend", "sim", "--overlay", str(tmp_path / "missing"), str(image)])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "overlay folder not found")


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--backend", "fpga"])
    assert info.value.code == 2


def test_forwarded_commands_get_their_argv_verbatim(monkeypatch):
    seen = []
    fake = types.SimpleNamespace(main=lambda argv: seen.append(argv) or 3)
    monkeypatch.setitem(sys.modules, "bnnpose.quantize.train_cli", fake)
    assert full_cli.main(["train", "--epochs", "3", "--help", "--", "pos"]) == 3
    assert seen == [["--epochs", "3", "--help", "--", "pos"]]


def test_forwarded_command_without_its_module(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bnnpose.hw_build.demo", None)
    with pytest.raises(SystemExit) as info:
        full_cli.main(["demo", "--camera", "0"])
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "bnnpose demo", "bnnpose.hw_build.demo")


def test_forwarded_command_missing_an_extra(monkeypatch, capsys):
    def no_torch(name):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(full_cli.importlib, "import_module", no_torch)
    with pytest.raises(SystemExit):
        full_cli.main(["train"])
    assert_one_line_error(capsys.readouterr().err, "bnnpose[train]")


def test_help_lists_all_commands(capsys):
    with pytest.raises(SystemExit) as info:
        full_cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("run", "train", "export", "build", "demo"):
        assert name in out


def test_board_cli_has_the_host_commands_only(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "run" in out and "deploy" in out and "train" not in out


def test_host_imports_stay_board_sized():
    """The board has numpy, cv2, pynq and finn-plus-driver only: no torch, brevitas or FINN."""
    code = (
        "import sys\n"
        "import bnnpose.host.cli, bnnpose.host.pipeline, bnnpose.host.backends, bnnpose.host.draw\n"
        "heavy = [m for m in ('torch', 'brevitas', 'finn', 'onnx', 'onnxruntime')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
