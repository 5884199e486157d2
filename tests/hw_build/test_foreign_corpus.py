"""A corpus of user-written Brevitas networks, each compiled to FINN's estimates with no
unmapped node and bit-exact at every stage on 16 golden inputs (``foreign_models.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bnnpose.hw_build.make_bitstream import main
from bnnpose.quantize.export import export_network

sys.path.insert(0, str(Path(__file__).parent))
import foreign_models as fm  # noqa: E402

STAGES = {"qonnx", "finn_onnx", "streamlined", "hw_layers", "folded_hw"}


def pixels(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """16 NCHW images of UINT8-range pixels."""
    return np.random.default_rng(seed).integers(0, 256, (16, *shape)).astype(np.float32)


def compile_checked(net, x: np.ndarray, tmp_path: Path, name: str,
                    board: str = "pynq-z2") -> dict:
    """Export ``net`` with golden inputs ``x``, build it to FINN's estimates and assert the
    report: every node mapped, every stage bit-exact on all 16 inputs."""
    export_network(net, x, tmp_path / "exp", name, {"model": name})
    assert main(["--model", str(tmp_path / "exp" / "model.onnx"), "--board", board,
                 "--out", str(tmp_path / "build"), "--until", "estimate"]) == 0
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    assert report["unmapped_nodes"] == []
    assert set(report["bitexact"]) == STAGES
    assert all(report["bitexact"].values()), report["verification"]
    assert all(r["n_inputs"] == 16 for r in report["verification"].values())
    return report


@pytest.mark.slow
def test_bnn_pynq_cnv_1w1a(tmp_path):
    report = compile_checked(fm.bnn_pynq("cnv_1w1a"), pixels((3, 32, 32)), tmp_path, "cnv")
    assert report["xnor_mac_share"] > 0.9


def test_bnn_pynq_cnv_1w1a_reduced(tmp_path):
    """The CNV constructor with 16..64 channels: the full one's code path, a fraction of its
    build time."""
    report = compile_checked(fm.bnn_pynq("cnv_1w1a", reduced=True), pixels((3, 32, 32)),
                             tmp_path, "cnv-reduced")
    assert report["xnor_mac_share"] > 0.8


def test_bnn_pynq_lfc_1w1a(tmp_path):
    report = compile_checked(fm.bnn_pynq("lfc_1w1a"), pixels((1, 28, 28)), tmp_path, "lfc")
    assert report["xnor_mac_share"] == 1.0


def test_bnn_pynq_tfc_1w1a(tmp_path):
    report = compile_checked(fm.bnn_pynq("tfc_1w1a"), pixels((1, 28, 28)), tmp_path, "tfc")
    assert report["xnor_mac_share"] == 1.0


def test_bnn_pynq_tfc_2w2a(tmp_path):
    """2-bit weights and activations (ternary values of scale 1) through the same FC code."""
    compile_checked(fm.bnn_pynq("tfc_2w2a"), pixels((1, 28, 28)), tmp_path, "tfc-2w2a")


def test_issue_model_normalised_forks_residual_upsample_concat(tmp_path):
    """x*2/255-1 -> 8-bit QuantIdentity -> bipolar stem -> MaxPool -> unsigned 2-bit forks ->
    residual Add, nearest Upsample, skip Concat: once failed in step_convert_to_hw."""
    report = compile_checked(fm.IssueNet(), pixels((3, 32, 32)), tmp_path, "issue")
    assert report["host_ops"][0]["op"] == "Mul"  # the 2-bit stream's scale on the output


def test_per_channel_sub_div_normalisation(tmp_path):
    # 16 channels at 16x16: the output's NCHW and NHWC shapes agree, so the golden
    # comparison goes by the graph's layout annotation.
    compile_checked(fm.random_bn(fm.NormalisedNet()), pixels((3, 16, 16)), tmp_path, "norm")


def test_signed_unsigned_kbit_activations_and_padding(tmp_path):
    compile_checked(fm.random_bn(fm.KBitNet()), pixels((3, 16, 16)), tmp_path, "kbit")


def test_signed_residual_and_skip_concat(tmp_path):
    compile_checked(fm.random_bn(fm.ResidualSkipNet()), pixels((3, 16, 16)), tmp_path, "res")


def test_unmappable_model_fails_in_one_line(tmp_path, capsys):
    """A zero-padded bipolar conv cannot map: exit code 2, one line naming the step, the node,
    its op and why, no traceback and no output folder."""
    x = pixels((3, 12, 12))
    export_network(fm.random_bn(fm.ZeroPaddedBipolarNet()), x, tmp_path / "exp", "zpad",
                   {"model": "zpad"})
    capsys.readouterr()
    rc = main(["--model", str(tmp_path / "exp" / "model.onnx"), "--board", "pynq-z2",
               "--out", str(tmp_path / "build"), "--until", "estimate"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("make_bitstream:")]
    assert rc == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "build").exists()
    line = lines[0]
    assert "step streamline_pose failed at node Conv_1 (Conv)" in line, line
    assert "zero padding of a bipolar" in line and "value=-1" in line, line


def test_a_stage_that_is_not_bit_exact_fails_in_one_line(tmp_path, capsys):
    """Golden outputs the network does not produce: the first stage checked against them
    fails the build, naming it; --allow-inexact records the mismatch and builds on."""
    export_network(fm.bnn_pynq("tfc_1w1a"), pixels((1, 28, 28)), tmp_path / "exp", "tfc",
                   {"model": "tfc"})
    golden_out = tmp_path / "exp" / "golden_out.npy"
    wrong = np.load(golden_out)
    wrong[3] += 1.0
    np.save(golden_out, wrong)
    argv = ["--model", str(tmp_path / "exp" / "model.onnx"), "--board", "pynq-z2",
            "--until", "estimate"]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "not bit-exact: 1 of 16 golden outputs differ" in err.strip().splitlines()[-1], err
    assert not (tmp_path / "strict").exists()
    assert main([*argv, "--out", str(tmp_path / "lenient"), "--allow-inexact"]) == 0
    report = json.loads((tmp_path / "lenient" / "report.json").read_text())
    assert report["verification"]["qonnx"]["n_mismatched"] == 1
    assert not all(report["bitexact"].values())
