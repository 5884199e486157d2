"""Every multi-branch family through the FINN flow (small sizes), with and without RSign's
thresholds: all mapped, all bit-exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnnpose.hw_build.make_bitstream import BuildConfig, Until, build
from bnnpose.hw_build.models_table import random_batchnorm
from bnnpose.models.blocks import enable_rsign
from bnnpose.quantize.export import export_network


@pytest.mark.slow
@pytest.mark.parametrize("rsign", [False, True], ids=["sign", "rsign"])
@pytest.mark.parametrize("name", ["stacked hourglass", "bihrnet", "bidrn"])
def test_family_maps_to_finn_bit_exactly(name, rsign, small_families, tmp_path,
                                         cpu_plan_matches_finn):
    torch.manual_seed(0)
    model = random_batchnorm(small_families[name](True)).eval()
    if rsign:
        # RSign's learnable thresholds before sign(), between and on the integer levels of
        # a 2-bit stream: FINN absorbs them into the thresholds that compute sign(), some
        # of which are then exactly {-1, 0} (hw_build/threshold_types.py).
        enable_rsign(model)
        shifts = [p for n, p in model.named_parameters() if n.endswith(".shift")]
        assert shifts
        with torch.no_grad():
            for p in shifts:
                p.copy_(torch.randint(-5, 5, p.shape) / 4.0)
    x = np.random.default_rng(2).integers(0, 256, (16, 3, 32, 32)).astype(np.float32)
    export_network(model, x, tmp_path / "export", name, {"model": name})
    report = build(BuildConfig(model=tmp_path / "export" / "model.onnx", board="pynq-z2",
                               out=tmp_path / "build", fps=1000, until=Until.ESTIMATE))
    assert report["unmapped_nodes"] == []
    assert report["bitexact"] and all(report["bitexact"].values()), report["verification"]
    assert all(v["n_inputs"] == 16 for v in report["verification"].values())
    assert report["xnor_mac_share"] > 0.5

    # The cpu engine runs every family's graph too, numpy and native, with FINN's integers.
    cpu_plan_matches_finn(tmp_path / "build" / "model_hw.onnx", x[:3].transpose(0, 2, 3, 1))


def test_down_conv_reading_the_stem_stream_maps_to_finn_bit_exactly(tmp_path,
                                                                    cpu_plan_matches_finn):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from bnnpose.models.hourglass import BinaryHourglassNet, HourglassConfig

    torch.manual_seed(0)
    model = random_batchnorm(enable_rsign(BinaryHourglassNet(HourglassConfig(
        input_size=32, stem_channels=4, channels=8, depth=1, bits=3, end_bits=8,
        rsign=True, down_reads_stream=True)))).eval()
    x = np.random.default_rng(3).integers(0, 256, (16, 3, 32, 32)).astype(np.float32)
    export_network(model, x, tmp_path / "export", "hg", {"model": "hg"})
    report = build(BuildConfig(model=tmp_path / "export" / "model.onnx", board="pynq-z2",
                               out=tmp_path / "build", fps=1000, until=Until.ESTIMATE))
    assert report["unmapped_nodes"] == []
    assert report["bitexact"] and all(report["bitexact"].values()), report["verification"]
    # The down conv multiplies the stem's 3-bit integers by +-1 weights: no XNOR there.
    hw = ModelWrapper(str(tmp_path / "build" / "model_hw.onnx"))
    down = [n for n in hw.graph.node if n.op_type.startswith("MVAU")
            and getCustomOp(n).get_nodeattr("inputDataType") == "INT3"
            and set(np.unique(hw.get_initializer(n.input[1]))) == {-1, 1}]
    assert len(down) == 1 and getCustomOp(down[0]).get_nodeattr("binaryXnorMode") == 0
    assert getCustomOp(down[0]).get_nodeattr("MW") == 9 * 4
    cpu_plan_matches_finn(tmp_path / "build" / "model_hw.onnx", x[:3].transpose(0, 2, 3, 1))


def test_batchnorm_on_rounding_ties_stays_bit_exact(tmp_path, cpu_plan_matches_finn):
    """Every stream's BatchNorm puts grid values exactly on level boundaries (z = n/4 + 1/2),
    half of the channels with a negative slope: PyTorch's half-to-even rounding of BatchNorm
    would disagree with FINN's thresholds there; the integer thresholds agree in every stage."""
    import torch.nn.functional as F

    from bnnpose.models.blocks import StreamRequant
    from bnnpose.models.hourglass import BinaryHourglassNet, HourglassConfig

    torch.manual_seed(0)
    model = BinaryHourglassNet(HourglassConfig(
        input_size=32, stem_channels=4, channels=8, depth=1, bits=3, end_bits=8)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, StreamRequant):
                step = m.conv.quant_weight().scale.flatten()
                signs = torch.tensor([1.0, -1.0]).repeat(len(step) // 2)
                m.bn.eps = 0.0
                m.bn.running_var.fill_(1.0)
                m.bn.running_mean.zero_()
                m.bn.weight.copy_(signs / (4 * step))
                m.bn.bias.fill_(0.5)
    x = np.random.default_rng(4).integers(0, 256, (16, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        z = model.stem.bn(model.stem.conv(F.pad(torch.from_numpy(x), (1, 1, 1, 1))))
    assert int(((z - 0.5) == torch.floor(z - 0.5)).sum()) > 1000  # ties met
    export_network(model, x, tmp_path / "export", "ties", {"model": "ties"})
    report = build(BuildConfig(model=tmp_path / "export" / "model.onnx", board="pynq-z2",
                               out=tmp_path / "build", fps=1000, until=Until.ESTIMATE))
    assert report["unmapped_nodes"] == []
    assert report["bitexact"] and all(report["bitexact"].values()), report["verification"]
    cpu_plan_matches_finn(tmp_path / "build" / "model_hw.onnx", x[:3].transpose(0, 2, 3, 1))
