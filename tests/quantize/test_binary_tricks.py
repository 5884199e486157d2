"""The binary-training tricks: RSign, ApproxSign, two-stage training, attention transfer and
weight decay kept off the latent 1-bit weights."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from bnnpose.host.common import BnnposeError
from bnnpose.models.blocks import SignAct, binary_weight_convs, set_sign_gradient
from bnnpose.models.registry import build_model
from bnnpose.quantize.feature_distill import BlockTaps, attention, attention_transfer_loss
from bnnpose.quantize.train import loss_label, lr_schedule, optimizer_groups, train
from bnnpose.quantize.train_config import TrainConfig, check_config, recipe_digest


@pytest.fixture(scope="module")
def float_teacher(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "float"
    return train(replace(tiny, binary=False, epochs=1, out_dir=str(out))) / "best.pt"


def _sign_grad(grad: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    act = SignAct().train()
    act.grad = grad
    x = x.clone().requires_grad_(True)
    y = act(x)
    y.sum().backward()
    return y.detach(), x.grad


def test_approx_sign_changes_the_gradient_only():
    x = torch.tensor([-2.0, -1.0, -0.75, -0.25, 0.0, 0.5, 0.9, 1.0, 3.0])
    y_ste, g_ste = _sign_grad("ste", x)
    y_approx, g_approx = _sign_grad("approx", x)
    assert torch.equal(y_ste, y_approx)
    assert torch.equal(y_ste, torch.where(x >= 0, 1.0, -1.0))
    assert torch.equal(g_ste, ((x >= -1) & (x <= 1)).float())
    # Bi-Real's ApproxSign: 2 - 2|x| inside [-1, 1], 0 outside.
    torch.testing.assert_close(g_approx, torch.where(x.abs() <= 1, 2 - 2 * x.abs(), 0.0))
    model = build_model("bhg-tiny")
    set_sign_gradient(model, "approx")
    assert {m.grad for m in model.modules() if isinstance(m, SignAct)} == {"approx"}
    with pytest.raises(ValueError, match="unknown sign gradient"):
        set_sign_gradient(model, "tanh")


def test_rsign_adds_a_threshold_per_input_channel():
    plain, rsign = build_model("bhg-tiny"), build_model("bhg-tiny", rsign=True)
    extra = set(rsign.state_dict()) - set(plain.state_dict())
    assert extra and all(k.endswith(".shift") for k in extra)
    assert set(plain.state_dict()) <= set(rsign.state_dict())
    conv = next(m for m in rsign.modules() if getattr(m, "shift", None) is not None)
    assert conv.shift.shape == (1, conv.cin, 1, 1)
    with torch.no_grad():
        conv.shift.fill_(0.5)
    x = torch.tensor([0.0, 1.0, -1.0]).view(1, 1, 1, 3).expand(1, conv.cin, 1, 3)
    # sign(x - 0.5): the 0 level now maps to -1.
    assert torch.equal(conv.sign(x - conv.shift)[0, :, 0],
                       torch.tensor([-1.0, 1.0, -1.0]).expand(conv.cin, 3))


def test_lr_schedule_restarts_for_the_second_stage():
    one, two = lr_schedule(2, 10), lr_schedule(2, 10, restart=4)
    assert [one(s) for s in range(4)] != [two(s) for s in range(4)]
    assert two(4) == two(0) == 0.5 and two(5) == 1.0  # a second warmup
    assert two(3) < two(2) and two(9) < two(6)
    assert [lr_schedule(2, 10, 0)(s) for s in range(10)] == [one(s) for s in range(10)]


def test_weight_decay_skips_the_latent_binary_weights():
    model = build_model("bhg-tiny")
    latent = {id(m.weight) for m in binary_weight_convs(model)}
    assert len(latent) == 25
    groups = optimizer_groups(model, [], 1e-4)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 1e-4 and groups[1]["weight_decay"] == 0.0
    assert {id(p) for p in groups[1]["params"]} == latent and not decayed & latent
    assert len(decayed) + len(latent) == len(list(model.parameters()))
    assert len(optimizer_groups(model, [], 0.0)) == 1


def test_attention_transfer_compares_normalised_maps():
    torch.manual_seed(0)
    a = torch.randn(2, 8, 4, 4)
    assert attention(a).shape == (2, 16)
    torch.testing.assert_close(attention(a).norm(dim=1), torch.ones(2))
    # Blind to scale (integer streams against real ones), not to where the energy lies.
    assert attention_transfer_loss([a * 7], [a]) < 1e-6
    assert attention_transfer_loss([a], [torch.randn(2, 8, 4, 4)]) > 0.05
    with pytest.raises(BnnposeError, match="1 student and 2 teacher"):
        attention_transfer_loss([a], [a, a])
    for name in ("bhg-tiny", "bihrnet-z2", "bidrn-z2"):
        assert BlockTaps(build_model(name)).names, name


def test_later_fields_keep_earlier_recipes(tiny):
    recipe = TrainConfig().recipe()
    assert not {"rsign", "sign_grad", "float_weight_epochs", "feature_distill_weight"} & set(
        recipe)
    assert recipe_digest(replace(TrainConfig(), sign_grad="approx").recipe()) != recipe_digest(
        recipe)
    for bad, match in ((dict(sign_grad="tanh"), "unknown sign gradient"),
                       (dict(float_weight_epochs=2), "float_weight_epochs must be"),
                       (dict(feature_distill_weight=1.0), "needs a teacher")):
        with pytest.raises(BnnposeError, match=match):
            check_config(replace(tiny, **bad))


def test_the_curves_name_every_loss_term(tiny):
    assert loss_label(tiny) == tiny.loss
    both = replace(tiny, distill_from="teacher.pt", distill_weight=1.0, feature_distill_weight=5.0)
    assert loss_label(both) == (f"{tiny.loss} + 1 x {tiny.loss} distillation"
                                " + 5 x attention transfer")


def test_tricks_train_together(tiny, float_teacher, tmp_path):
    cfg = replace(tiny, rsign=True, sign_grad="approx", float_weight_epochs=1,
                  feature_distill_weight=1.0, weight_decay=1e-4, init_from=str(float_teacher),
                  distill_from=str(float_teacher), out_dir=str(tmp_path / "run"))
    out = train(cfg)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["stage"] for h in history] == [1, 2]
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert best["metrics"]["epoch"] == 2  # a first-stage network is never best.pt
    shifts = [v for k, v in best["state_dict"].items() if k.endswith(".shift")]
    assert shifts and any(bool(s.abs().sum() > 0) for s in shifts)  # the thresholds learned
    # Resuming with another trick is refused by name.
    with pytest.raises(BnnposeError, match="different recipe: sign_grad"):
        train(replace(cfg, sign_grad="ste", resume=True))
