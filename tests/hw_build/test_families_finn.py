"""Every multi-branch family through the FINN flow (small sizes): all mapped, all bit-exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnnpose.hw_build.make_bitstream import BuildConfig, Until, build
from bnnpose.hw_build.models_table import random_batchnorm
from bnnpose.quantize.export import export_network


@pytest.mark.slow
@pytest.mark.parametrize("name", ["stacked hourglass", "bihrnet", "bidrn"])
def test_family_maps_to_finn_bit_exactly(name, small_families, tmp_path, cpu_plan_matches_finn):
    torch.manual_seed(0)
    model = random_batchnorm(small_families[name](True)).eval()
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
