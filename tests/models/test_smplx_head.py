"""The optional SMPL-X head. SMPL-X's model files are licence-restricted and absent here, so the
body model is a stand-in with SMPL-X's call signature and output (joints from parameters); the
head, the projection, the joint matching and the training integration are the real code."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bnnpose.host.common import BnnposeError
from bnnpose.models import smplx_head as sx
from bnnpose.models.bidrn import BiDRN, BiDRNConfig
from bnnpose.quantize.train import train
from bnnpose.quantize.train_config import TrainConfig

BODY_JOINTS = ["pelvis", "left_hip", "right_hip", "nose", "left_wrist", "right_wrist",
               "left_ankle", "right_ankle", "jaw"]


class StandInBody(nn.Module):
    """Joints linear in the parameters SMPL-X takes, around a fixed rest skeleton."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.rest = nn.Parameter(torch.randn(len(BODY_JOINTS), 3) * 0.5, requires_grad=False)
        self.pose = nn.Linear(63 + 3 + 10, len(BODY_JOINTS) * 3, bias=False)
        self.pose.requires_grad_(False)

    def forward(self, betas, global_orient, body_pose, **others):
        assert set(others) == {"jaw_pose", "left_hand_pose", "right_hand_pose", "expression"}
        shift = self.pose(torch.cat([body_pose, global_orient, betas], dim=1)).view(
            -1, len(BODY_JOINTS), 3)
        return SimpleNamespace(joints=self.rest + 0.1 * shift)


def _net() -> BiDRN:
    return BiDRN(BiDRNConfig(input_size=64, stem_channels=4, widths=(8, 16, 32),
                             box_channels=4))


def test_head_starts_at_the_mean_body_and_follows_the_network():
    net = _net().eval()
    head = sx.SMPLXHead(net)
    with pytest.raises(RuntimeError, match="run the attached BiDRN first"):
        head()
    head.attach(net)
    net(torch.rand(2, 3, 64, 64) * 255)
    params = head()
    assert {k: tuple(v.shape) for k, v in params.items()} == \
        {k: (2, n) for k, n in sx.SMPLX_PARAMS.items()}
    assert torch.equal(params["camera"], torch.tensor([[1.0, 0, 0]] * 2))
    assert all(not v.any() for k, v in params.items() if k != "camera")


def test_reprojection_loss_matches_joints_by_name_and_trains_the_head():
    net, body = _net().eval(), StandInBody()
    head = sx.SMPLXHead(net)
    head.attach(net)
    images = torch.rand(4, 3, 64, 64) * 255
    model_joints = ("nose", "left_wrist", "right_wrist", "left_ankle", "right_ankle", "tail")
    # Labels: the stand-in's own joints under random parameters, projected into the crop.
    with torch.no_grad():
        truth = {k: torch.randn(4, n) * 0.5 for k, n in sx.SMPLX_PARAMS.items()}
        truth["camera"] = torch.tensor([[0.8, 0.1, -0.1]]).repeat(4, 1)
        idx = [BODY_JOINTS.index(n) for n in model_joints[:-1]]
        xy = sx.project(body(**{k: v for k, v in truth.items() if k != "camera"}).joints[:, idx],
                        truth["camera"])
    keypoints = torch.cat([(xy + 1) * 32, torch.full((4, 1, 2), 5.0)], dim=1)
    weight = torch.ones(4, len(model_joints))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        net(images)
        loss = sx.reprojection_loss(body, head(), keypoints, weight, 64, model_joints,
                                    BODY_JOINTS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    # The truth itself costs nothing; "tail" is not a body-model joint and is ignored.
    assert sx.reprojection_loss(body, truth, keypoints, weight, 64, model_joints,
                                BODY_JOINTS).item() == pytest.approx(0, abs=1e-5)
    with pytest.raises(BnnposeError, match="share no name"):
        sx.reprojection_loss(body, truth, keypoints, weight, 64, ("a", "b"), BODY_JOINTS)


def test_missing_model_or_package_is_one_line(tmp_path):
    with pytest.raises(BnnposeError, match="SMPL-X model not found: .*not shipped"):
        sx.load_body_model(tmp_path / "nope")
    with pytest.raises(BnnposeError, match="SMPL-X head; bhg-tiny is a hourglass model"):
        train(TrainConfig(model="bhg-tiny", smplx_model=str(tmp_path), out_dir=str(tmp_path)))


def test_training_with_the_head_saves_and_resumes_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sx, "load_body_model", lambda path: StandInBody())
    monkeypatch.setattr(sx, "body_joint_names", lambda: BODY_JOINTS)
    cfg = TrainConfig(model="bidrn-z2", smplx_model=str(tmp_path), n_train=32, n_val=8,
                      epochs=2, stop_after=1, batch_size=16, warmup_steps=1,
                      out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"))
    run = train(cfg)
    first = torch.load(run / "last.pt", weights_only=True)["smplx_head"]
    assert set(first) >= {"fc.weight", "fc.bias"} and first["fc.weight"].abs().sum() > 0
    run = train(replace(cfg, stop_after=None, resume=True))
    second = torch.load(run / "last.pt", weights_only=True)
    assert "smplx_head" in second and not torch.equal(second["smplx_head"]["fc.weight"],
                                                      first["fc.weight"])
