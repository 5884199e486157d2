"""make_bitstream takes any Brevitas binary QONNX of supported ops, not only bnnpose's blocks."""

from __future__ import annotations

import json

import numpy as np
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
from torch import nn

from bnnpose.hw_build.make_bitstream import main
from bnnpose.quantize.export import export_network


class UnitBinaryWeight(SignedBinaryWeightPerTensorConst):
    # The stock scale 0.1 leaves a float classifier output that torch and ONNX Runtime round
    # differently (4e-6); any power of two keeps the golden comparison exact.
    scaling_const = 1.0


class SmallCNV(nn.Module):
    """A BNN-PYNQ CNV-style net with Brevitas's stock 1-bit quantizers: valid-padded convs,
    MaxPool, Flatten and a fully connected classifier."""

    def __init__(self):
        super().__init__()
        w, a = UnitBinaryWeight, SignedBinaryActPerTensorConst
        self.features = nn.Sequential(
            QuantConv2d(3, 16, 3, bias=False, weight_quant=w), nn.BatchNorm2d(16),
            QuantIdentity(act_quant=a),
            QuantConv2d(16, 16, 3, bias=False, weight_quant=w), nn.BatchNorm2d(16),
            QuantIdentity(act_quant=a), nn.MaxPool2d(2))
        self.fc = QuantLinear(16 * 6 * 6, 10, bias=False, weight_quant=w)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


def test_cnv_style_model_maps_bit_exactly(tmp_path, cpu_plan_matches_finn):
    torch.manual_seed(0)
    net = SmallCNV().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-3, 3)
            m.running_var.uniform_(0.5, 4)
    x = np.random.default_rng(0).integers(0, 256, (16, 3, 16, 16)).astype(np.float32)
    export_network(net, x, tmp_path / "exp", "cnv", {"model": "cnv"})
    assert main(["--model", str(tmp_path / "exp" / "model.onnx"), "--board", "zcu104",
                 "--out", str(tmp_path / "build"), "--until", "estimate"]) == 0
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    assert report["unmapped_nodes"] == []
    assert all(report["bitexact"].values()) and report["verification"]["folded_hw"]["n_inputs"] == 16
    assert report["xnor_mac_share"] > 0.5
    assert report["estimate"]["board"]["name"] == "zcu104"

    # The cpu engine maps this graph too (valid-padded convs, max-pool, flatten into a fully
    # connected layer) and gives FINN's integers, numpy and native alike.
    cpu_plan_matches_finn(tmp_path / "build" / "model_hw.onnx", x[:4].transpose(0, 2, 3, 1))
