"""The training-only facing loss: labels from the keypoints, a probe on the head's input, and
a run that trains it and keeps it out of the exported network."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from bnnpose.host.common import BnnposeError
from bnnpose.host.skeleton import COCO_JOINTS, MPII_JOINTS
from bnnpose.models.registry import build_model
from bnnpose.quantize import anny_body, mesh_render
from bnnpose.quantize.facing import FacingProbe, facing_loss, facing_targets
from bnnpose.quantize.train import loss_label, train
from bnnpose.quantize.train_config import check_config

MPII = tuple(MPII_JOINTS)


def _person(front: bool, turn_deg: float = 0.0, width: float = 20.0) -> np.ndarray:
    """MPII keypoints of an upright person, 40 px from hips to shoulders, ``width`` apart,
    facing the camera (their left on the image's right) or turned away, then rotated in the
    image by ``turn_deg``."""
    kp = np.zeros((16, 2))
    side = width / 2 if front else -width / 2
    for name, xy in {"l_shoulder": (side, -20), "r_shoulder": (-side, -20),
                     "l_hip": (side * 0.8, 20), "r_hip": (-side * 0.8, 20)}.items():
        kp[MPII.index(name)] = xy
    t = np.radians(turn_deg)
    return kp @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) + 64


def _four(*people: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kp = np.stack(people)
    weight = np.zeros(kp.shape[:2])
    weight[:, [MPII.index(n) for n in ("l_shoulder", "r_shoulder", "l_hip", "r_hip")]] = 1
    return kp, weight


def test_front_and_back_from_the_keypoints_whatever_the_roll():
    for turn in (0, 30, 90, 180, -120):
        kp, w = _four(_person(True, turn), _person(False, turn))
        front, scored = facing_targets(kp, w, MPII)
        assert front.tolist() == [1, 0] and scored.tolist() == [1, 1], turn


def test_unclear_and_unlabelled_people_are_not_scored():
    # Shoulders one above the other, as a body seen side-on from above shows them.
    along = _person(True)
    along[MPII.index("l_shoulder")] = along[MPII.index("r_shoulder")] + (1, -14)
    kp, w = _four(along, _person(True), _person(False))
    w[1, MPII.index("l_shoulder")] = 0  # shoulders incomplete: the hips decide
    w[2] = 0
    front, scored = facing_targets(kp, w, MPII)
    assert scored.tolist() == [0, 1, 0] and front[1] == 1
    # Upper bodies: no hips, the image's up is the person's.
    kp, w = _four(_person(False))
    w[0, [MPII.index("l_hip"), MPII.index("r_hip")]] = 0
    assert [t.tolist() for t in facing_targets(kp, w, MPII)] == [[0.0], [1.0]]
    # The layout is read by name: COCO's order gives the same answer.
    coco = np.zeros((1, len(COCO_JOINTS), 2))
    cw = np.zeros((1, len(COCO_JOINTS)))
    for c, m in (("left_shoulder", "l_shoulder"), ("right_shoulder", "r_shoulder"),
                 ("left_hip", "l_hip"), ("right_hip", "r_hip")):
        coco[0, COCO_JOINTS.index(c)] = _person(True)[MPII.index(m)]
        cw[0, COCO_JOINTS.index(c)] = 1
    assert [t.tolist() for t in facing_targets(coco, cw, tuple(COCO_JOINTS))] == [[1.0], [1.0]]


def test_labels_agree_with_the_renderers_turn():
    """On 96 held-out mesh renders, the keypoint rule calls every person turned over 30
    degrees from side-on as their yaw says."""
    anny_body.prepare_cache()
    body = anny_body.load_body()
    seeds = range(mesh_render.EVAL_SEED_OFFSET, mesh_render.EVAL_SEED_OFFSET + 96)
    yaw = np.array([mesh_render.sample_scene(s, body).people[0].yaw for s in seeds])
    samples = mesh_render.crop_samples(seeds)
    kp = np.stack([s["keypoints"] for s in samples])
    vis = np.stack([s["visible"] for s in samples]).astype(np.float32)
    front, scored = facing_targets(kp, vis, MPII)
    clear = (np.abs(np.abs(yaw) - 90) > 30) & (scored > 0)
    assert clear.sum() > 60 and (~(np.abs(yaw) < 90))[clear].sum() > 5
    np.testing.assert_array_equal(front[clear], (np.abs(yaw) < 90)[clear])


@pytest.mark.parametrize("name", ["bhg-c64-z2", "bihrnet-z2", "bidrn-z2"])
def test_the_probe_reads_what_the_last_head_reads(name):
    model = build_model(name).eval()
    probe = FacingProbe(model)
    handle = probe.attach(model)
    with torch.no_grad():
        model(torch.rand(2, 3, model.cfg.input_size, model.cfg.input_size) * 255)
        logits = probe()
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    handle.remove()
    loss = facing_loss(torch.tensor([3.0, -3.0, 9.0]), torch.tensor([1.0, 0.0, 0.0]),
                       torch.tensor([1.0, 1.0, 0.0]))
    assert 0 < loss < 0.05  # the unscored third sample would cost 9


def test_a_run_trains_the_probe_beside_the_network_only(tiny, tmp_path):
    cfg = replace(tiny, facing_weight=1.0, out_dir=str(tmp_path / "run"))
    assert loss_label(cfg) == f"{tiny.loss} + 1 x facing"
    out = train(cfg)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert best["train_config"]["facing_weight"] == 1.0
    fc = best["facing_probe"]["fc.weight"]
    assert fc.shape == (1, build_model(tiny.model).heads[-1].in_channels) and fc.abs().sum() > 0
    assert set(best["state_dict"]) == set(build_model(tiny.model).state_dict())
    with pytest.raises(BnnposeError, match="facing weight must be >= 0"):
        check_config(replace(tiny, facing_weight=-1.0))
