"""The four model families: shapes, twins, registry, and torch == QONNX on small sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantIdentity

from bnnpose.models.bidrn import BOX_JOINTS, BiDRB, Shortcut
from bnnpose.host.common import BnnposeError
from bnnpose.models.registry import MODELS, build_model, model_joints

FAMILY_NAMES = ("stacked hourglass", "bihrnet", "bidrn")


def _trained_like(model):
    """BatchNorm statistics like a trained network's (fresh ones sit on rounding ties)."""
    from bnnpose.hw_build.models_table import random_batchnorm

    torch.manual_seed(0)
    return random_batchnorm(model).eval()


def test_registry_is_consistent():
    # Full sizes target the ZCU104 alone; every family has a size for the PYNQ-Z2.
    assert {n for n, e in MODELS.items() if "pynq-z2" not in e.boards} == {
        n for n in MODELS if n.endswith("-full")}
    families = {e.family for e in MODELS.values()}
    assert {e.family for e in MODELS.values() if "pynq-z2" in e.boards} == families
    assert families == {"hourglass", "bihrnet", "bidrn", "face"}
    for name, e in MODELS.items():
        assert len(model_joints(e.config)) == e.config.num_joints, name
        assert isinstance(build_model(name), e.builder), name
    assert model_joints(MODELS["bidrn-z2"].config)[-3:] == BOX_JOINTS
    assert model_joints(MODELS["face-bhg-z2"].config)[36] == "face68_36"
    with pytest.raises(BnnposeError, match="unknown model"):
        build_model("nope")


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_binary_and_float_twins(name, small_families):
    x = torch.rand(2, 3, 32, 32) * 255
    binary, twin = small_families[name](True).eval(), small_families[name](False).eval()
    quantized = [m for m in binary.modules() if isinstance(m, QuantConv2d | QuantIdentity)]
    assert quantized and not any(isinstance(m, QuantConv2d | QuantIdentity)
                                 for m in twin.modules())
    # The twins share parameter names, so a float run initialises a binary one.
    assert set(twin.state_dict()) <= set(binary.state_dict())
    assert binary(x).shape == twin(x).shape == (2, binary.cfg.num_joints, 8, 8)


def test_conv_reading_the_stream_sees_its_integers_zero_padded():
    import torch.nn.functional as F

    from bnnpose.models.blocks import BinaryConvBN, SignAct, enable_rsign

    torch.manual_seed(0)
    conv = enable_rsign(BinaryConvBN(4, 8, 3, stride=2, reads_stream=True)).eval()
    assert conv.shift is None and not any(isinstance(m, SignAct) for m in conv.modules())
    x = torch.randint(-4, 4, (2, 4, 8, 8)).float()  # a 3-bit stream
    w = conv.conv.quant_weight().value
    want = conv.quant(conv.bn(F.conv2d(F.pad(x, (1,) * 4, value=0.0), w, stride=2)))
    torch.testing.assert_close(conv(x), want, rtol=0, atol=0)
    # Its float twin reads the real-valued stream unclipped; a sign() conv clips it.
    twin = BinaryConvBN(4, 8, 3, binary=False, reads_stream=True)
    assert isinstance(twin.sign, torch.nn.Identity) and twin.pad_value == 0.0
    assert isinstance(BinaryConvBN(4, 8, 3, binary=False).sign, torch.nn.Hardtanh)
    # As a knob of the hourglass: only the down conv changes, and it keeps its parameters.
    plain = build_model("bhg-tiny", rsign=True)
    net = build_model("bhg-tiny", rsign=True, down_reads_stream=True)
    assert net.down.reads_stream and not isinstance(net.down.sign, SignAct)
    assert set(plain.state_dict()) - set(net.state_dict()) == {"down.shift"}


def test_stacked_hourglass_supervises_every_stack(small_families):
    net = small_families["stacked hourglass"](True)
    x = torch.rand(2, 3, 32, 32) * 255
    outs = net.train()(x)
    assert isinstance(outs, list) and len(outs) == 2
    final = net.eval()(x)
    assert isinstance(final, torch.Tensor) and final.shape == outs[-1].shape


@pytest.mark.parametrize(("cin", "cout", "stride"), [(8, 8, 1), (8, 16, 1), (8, 8, 2), (8, 16, 2)])
def test_bidrb_shapes_and_unbinarized_shortcut(cin, cout, stride):
    x = torch.randint(-2, 2, (1, cin, 8, 8)).float()  # a 2-bit stream
    block = BiDRB(cin, cout, 2, True, -1.0, stride).eval()
    assert block(x).shape == (1, cout, 8 // stride, 8 // stride)
    s = Shortcut(cin, cout, stride)(x)
    # The shortcut keeps every stream value: max-pooled and repeated, never sign()ed.
    pooled = torch.nn.functional.max_pool2d(x, stride) if stride == 2 else x
    assert torch.equal(s, pooled.repeat(1, cout // cin, 1, 1))
    # With both convs silenced the block is requant(requant(s) + s): the shortcut alone.
    for bn in (block.conv1.bn, block.conv2.bn):
        bn.weight.data.zero_()
        bn.bias.data.zero_()
    assert torch.equal(block(x), torch.clamp(2 * s, -2, 1))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_qonnx_export_is_bit_exact(name, tmp_path, small_families):
    from bnnpose.quantize.export import export_network

    model = _trained_like(small_families[name](True))
    x = np.random.default_rng(1).integers(0, 256, (2, 3, 32, 32)).astype(np.float32)
    info = export_network(model, x, tmp_path / "export", name, {"model": name})
    assert info["bitexact"] == {"torch_vs_qonnx": True}
    assert len(info["output"]["joints"]) == model.cfg.num_joints


def test_export_bytes_do_not_depend_on_the_caller_or_the_checkout(small_families, tmp_path):
    """The overlay records the exported model's sha256: it must be the same from any checkout
    and any entry point, so no source path or line number may land in the file."""
    import bnnpose.models
    from bnnpose.host.common import sha256_file
    from bnnpose.quantize.export import export_network

    model = _trained_like(small_families["stacked hourglass"](True))
    x = np.random.default_rng(1).integers(0, 256, (2, 3, 32, 32)).astype(np.float32)
    export_network(model, x, tmp_path / "a", "a", {})

    def from_another_frame():
        export_network(model, x, tmp_path / "b", "b", {})

    from_another_frame()
    data = (tmp_path / "a" / "model.onnx").read_bytes()
    assert sha256_file(tmp_path / "a" / "model.onnx") == sha256_file(tmp_path / "b" / "model.onnx")
    assert str(Path(bnnpose.models.__file__).parent).encode() not in data
    assert b"stack_trace" not in data


def test_export_compares_qonnx_with_torch_for_real(small_families, tmp_path, monkeypatch):
    """A QONNX run that is off by one somewhere fails the export and writes nothing."""
    from bnnpose.host.common import BnnposeError
    from bnnpose.quantize import qonnx_exec
    from bnnpose.quantize.export import export_network

    model = _trained_like(small_families["stacked hourglass"](True))
    x = np.random.default_rng(1).integers(0, 256, (2, 3, 32, 32)).astype(np.float32)
    real = qonnx_exec.exec_onnx
    calls = []

    def off_by_one_on_the_second_input(qmodel, xi):
        calls.append(1)
        y = real(qmodel, xi)
        if len(calls) == 2:
            y = y.copy()
            y.flat[0] += 1
        return y

    monkeypatch.setattr(qonnx_exec, "exec_onnx", off_by_one_on_the_second_input)
    with pytest.raises(BnnposeError, match="differs from torch on 1/2 golden inputs"):
        export_network(model, x, tmp_path / "export", "planted", {"model": "planted"})
    assert not (tmp_path / "export").exists()
