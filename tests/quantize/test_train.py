import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bnnpose.host.common import BnnposeError
from bnnpose.host.codec import HeatmapCodec
from bnnpose.host.skeleton import MPII_FLIP_PAIRS
from bnnpose.quantize import synthetic
from bnnpose.quantize.evaluate import evaluate
from bnnpose.models.checkpoint_io import load_checkpoint
from bnnpose.quantize.losses import keypoint_mse_loss
from bnnpose.quantize.train import CHECKPOINT_KEYS, RESUME_KEYS, train
from bnnpose.quantize.train_cli import main
from bnnpose.quantize.train_config import TrainConfig
from bnnpose.quantize.train_data import cached_renders, make_batch
from bnnpose.quantize.train_model import create_model

CODEC = HeatmapCodec()


@pytest.fixture(scope="module")
def full_run(tiny) -> Path:
    return train(tiny)


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_run_folder(full_run, tiny):
    for name in ("config.json", "metrics.jsonl", "best.pt", "last.pt", "curves.png"):
        assert (full_run / name).stat().st_size > 0, name
    assert TrainConfig.load(full_run / "config.json") == tiny
    history = [json.loads(line) for line in (full_run / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert {"train_loss", "val_pck", "val_pck_mean_pose", "val_per_joint", "lr"} <= set(h)
        assert 0.0 <= h["val_pck"] <= 1.0 and 0.0 <= h["val_pck_mean_pose"] <= 1.0
        assert h["val_instances"] > 0
    best, last = _state(full_run / "best.pt"), _state(full_run / "last.pt")
    assert set(best) == set(CHECKPOINT_KEYS)
    assert set(last) == set(CHECKPOINT_KEYS) | set(RESUME_KEYS)
    assert best["metrics"]["val_pck"] == max(h["val_pck"] for h in history)
    # The training set is cached under a key, and a rerun reads the cache instead of rendering.
    cached = list(Path(tiny.cache_dir).glob("*.npz"))
    assert len(cached) == 2
    images, keypoints, _ = cached_renders(64, synthetic.TRAIN_SEED_OFFSET, 128, tiny.cache_dir)
    # Training sees person crops, as the host feeds them at inference.
    np.testing.assert_array_equal(keypoints[:3],
                                  synthetic.render_batch(range(3), crop=True)[1])
    assert images.shape == (64, 128, 128, 3)


def test_config_json_round_trip(tmp_path):
    cfg = TrainConfig(bits=3, lr=1e-3, stop_after=2)
    assert TrainConfig.load(cfg.save(tmp_path / "c.json")) == cfg
    with pytest.raises(BnnposeError, match="unknown training options: colour"):
        TrainConfig.from_dict({**cfg.to_dict(), "colour": 1})


def test_train_command_trains_the_same_recipe(tmp_path):
    import shlex

    from bnnpose.quantize.train_cli import parse_given
    from bnnpose.quantize.train_config import train_command

    sets = [tmp_path / "a-train", tmp_path / "b-train"]
    cfg = TrainConfig(model="bhg-c64-z2", binary=False, data="mesh", rotate=15.0, rsign=True,
                      head_affine=True, mix=[f"coco:{s / 'ann.json'}" for s in sets],
                      mix_images=[str(s / "images") for s in sets], mix_repeat=4,
                      init_from=str(tmp_path / "twin.pt"), out_dir=str(tmp_path / "run"),
                      stop_after=2, num_threads=2,
                      arch={"depth": 3, "down_reads_stream": True})
    line = train_command(cfg, root=tmp_path)
    words = shlex.split(line)
    assert words[:3] == ["bnnpose", "train", "--float"] and "--stop-after" not in words
    assert "coco:a-train/ann.json" in words and "--out" in words and "run" in words
    assert "depth=3" in words and "down_reads_stream=true" in words
    given, resume = parse_given(words[2:])
    assert resume is None
    moved = {k: getattr(cfg, k) for k in ("mix", "mix_images", "init_from", "out_dir")}
    rooted = TrainConfig(**given)
    assert rooted.mix == [m.replace(f"{tmp_path}/", "") for m in moved["mix"]]
    assert replace(rooted, **moved, stop_after=2) == cfg
    with pytest.raises(BnnposeError, match="no architecture knob 'colour'"):
        parse_given(["--arch", "colour=3"])
    with pytest.raises(BnnposeError, match="expected NAME=VALUE"):
        parse_given(["--arch", "depth"])


def test_flip_mirrors_images_and_targets_and_swaps_sides():
    images, keypoints, visible = synthetic.render_batch(range(4))
    flips = np.array([False, True, False, True])
    x0, t0, w0 = make_batch(images, keypoints, visible, np.zeros(4, bool), CODEC)
    x1, t1, w1 = make_batch(images, keypoints, visible, flips, CODEC)
    assert x1.shape == (4, 3, 128, 128) and t1.shape == (4, 16, 32, 32) and w1.shape == (4, 16)
    torch.testing.assert_close(x1[~flips], x0[~flips], rtol=0, atol=0)
    torch.testing.assert_close(x1[flips], x0[flips].flip(-1), rtol=0, atol=0)
    perm = np.arange(16)
    for a, b in MPII_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    # Input and heatmap grids share their pixel areas, so mirroring commutes with encoding.
    torch.testing.assert_close(t1[flips][:, perm], t0[flips].flip(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w1[flips][:, perm], w0[flips], rtol=0, atol=0)
    left_ankle = MPII_FLIP_PAIRS[0][1]
    assert w1[1, 0] == w0[1, left_ankle]


def test_loss_decreases_on_a_fixed_batch(tiny):
    torch.set_num_threads(1)
    model, _ = create_model(tiny)
    images, keypoints, visible = synthetic.render_batch(range(8))
    x, target, weight = make_batch(images, keypoints, visible, np.zeros(8, bool), CODEC)
    optimizer = torch.optim.Adam(model.parameters(), lr=tiny.lr)
    losses = []
    for _ in range(12):
        loss = keypoint_mse_loss(model(x), target, weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses


def test_weighted_loss_ignores_unlabelled_joints():
    pred, target = torch.rand(2, 16, 32, 32), torch.rand(2, 16, 32, 32)
    weight = torch.ones(2, 16)
    weight[0, 3] = 0.0
    changed = pred.clone()
    changed[0, 3] += 5.0
    assert keypoint_mse_loss(changed, target, weight) == keypoint_mse_loss(pred, target, weight)
    assert keypoint_mse_loss(changed, target, torch.ones(2, 16)) > keypoint_mse_loss(
        pred, target, torch.ones(2, 16))


def test_resume_matches_an_uninterrupted_run(full_run, tiny, tmp_path):
    split = replace(tiny, out_dir=str(tmp_path / "split"), stop_after=1)
    train(split)
    assert _state(tmp_path / "split" / "last.pt")["epoch"] == 1
    main(["--resume", str(tmp_path / "split")])
    resumed, full = _state(tmp_path / "split" / "last.pt"), _state(full_run / "last.pt")
    assert resumed["epoch"] == full["epoch"] == 2
    assert resumed["state_dict"].keys() == full["state_dict"].keys()
    for key, value in full["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    for a, b in zip(resumed["history"], full["history"], strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_pck"] == b["val_pck"]
    with pytest.raises(BnnposeError, match="drop: lr"):
        main(["--resume", str(tmp_path / "split"), "--lr", "0.1"])
    with pytest.raises(BnnposeError, match="different recipe: lr"):
        train(replace(split, lr=0.1, resume=True))


def test_binary_run_starts_from_a_float_checkpoint(full_run, tiny, tmp_path, capsys):
    float_run = train(replace(tiny, binary=False, epochs=1, out_dir=str(tmp_path / "float")))
    source = _state(float_run / "best.pt")["state_dict"]
    model, _ = create_model(replace(tiny, init_from=str(float_run / "best.pt")))
    own = model.state_dict()
    # The twins share every tensor name: the binary quantizers keep no state of their own.
    assert set(source) == set(own)
    for key, value in source.items():
        if not key.startswith("heads."):
            assert torch.equal(own[key], value), key
    # The head keeps the float head's signs, at the binary head's initial scale.
    assert torch.equal(own["heads.0.weight"].sign(), source["heads.0.weight"].sign())
    log = capsys.readouterr().out + capsys.readouterr().err
    assert f"{len(source)} tensors loaded; missing []; unexpected []" in log
    with pytest.raises(BnnposeError, match="cannot initialise from"):
        create_model(replace(tiny, init_from=str(tmp_path / "none.pt")))


def test_binary_run_warm_starts_from_a_binary_checkpoint(tiny, tmp_path):
    first = train(replace(tiny, epochs=1, head_affine=True, loss="softmax",
                          out_dir=str(tmp_path / "first")))
    source = _state(first / "best.pt")
    model, loaded = create_model(replace(tiny, init_from=str(first / "best.pt")))
    # Same kind of network: every tensor, the head's scale included, continues as it was.
    for key, value in source["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value), key
    assert loaded["head_affine"] == source["head_affine"]
    second = train(replace(tiny, epochs=1, head_affine=True, loss="softmax",
                           init_from=str(first / "best.pt"), out_dir=str(tmp_path / "second")))
    first_loss = json.loads((first / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]
    second_loss = json.loads((second / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]
    assert second_loss < first_loss  # it went on from where the first run stopped


def test_distillation_pulls_toward_the_teacher(full_run, tiny, tmp_path):
    from bnnpose.quantize.losses import LOSSES, teacher_heatmaps

    def distillation_loss(pred, teacher, gain, x, weight, loss):
        return LOSSES[loss](pred, teacher_heatmaps(teacher, gain, x, loss), weight)

    teacher, _ = load_checkpoint(full_run / "best.pt")
    x = torch.rand(2, 3, 128, 128) * 255
    weight = torch.ones(2, 16)
    with torch.no_grad():
        same = teacher(x)
    other = same + torch.randn_like(same)
    assert distillation_loss(same, teacher, None, x, weight, "mse") == 0
    # Cross-entropy against the teacher's softmax is smallest at the teacher's own logits.
    assert (distillation_loss(same, teacher, None, x, weight, "softmax")
            < distillation_loss(other, teacher, None, x, weight, "softmax"))
    # A gain sharpens the teacher's distribution: the temperature it was trained at.
    sharp = distillation_loss(same * 3, teacher, torch.full((16,), 3.0), x, weight, "softmax")
    assert sharp < distillation_loss(same, teacher, torch.full((16,), 3.0), x, weight, "softmax")
    for loss in ("softmax", "awing"):
        run = train(replace(tiny, epochs=1, loss=loss, distill_from=str(full_run / "best.pt"),
                            out_dir=str(tmp_path / loss)))
        assert json.loads((run / "metrics.jsonl").read_text())["train_loss"] > 0


def test_load_checkpoint_round_trip(full_run, tiny):
    model, ckpt = load_checkpoint(full_run / "best.pt")
    assert not model.training
    assert ckpt["model"] == "bhg-tiny" and ckpt["config"]["binary"] is True
    assert TrainConfig.from_dict(ckpt["train_config"]) == tiny
    val = cached_renders(tiny.n_val, synthetic.EVAL_SEED_OFFSET, 128, tiny.cache_dir)
    train_kp = cached_renders(tiny.n_train, synthetic.TRAIN_SEED_OFFSET, 128, tiny.cache_dir)[1]
    result = evaluate(model, *val, train_kp)
    assert result["pck"] == ckpt["metrics"]["val_pck"]
    assert result["pck_mean_pose"] == ckpt["metrics"]["val_pck_mean_pose"]


def test_load_checkpoint_errors_are_one_line(full_run, tmp_path):
    with pytest.raises(BnnposeError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((full_run / "best.pt").read_bytes()[:5000])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all\n" * 10)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path in (truncated, garbage, foreign):
        with pytest.raises(BnnposeError, match="not a valid bnnpose checkpoint") as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value)


def test_head_affine_trains_and_is_stored_outside_the_network(full_run, tiny, tmp_path):
    run = train(replace(tiny, head_affine=True, epochs=1, out_dir=str(tmp_path / "affine")))
    best = _state(run / "best.pt")
    assert set(best) == set(CHECKPOINT_KEYS) | {"head_affine"}
    affine = best["head_affine"]
    assert set(affine) == {"gain", "bias"}
    assert len(affine["gain"]) == len(affine["bias"]) == 16
    assert all(type(v) is float for v in affine["gain"] + affine["bias"])
    assert all(g > 0 for g in affine["gain"])
    # The affine was trained, not left at the identity.
    assert affine["gain"] != [1.0] * 16 or affine["bias"] != [0.0] * 16
    # The exported network is exactly the plain one: same tensors, no extra keys.
    assert best["state_dict"].keys() == _state(full_run / "best.pt")["state_dict"].keys()
    model, ckpt = load_checkpoint(run / "best.pt")
    assert model.state_dict().keys() == best["state_dict"].keys()
    assert ckpt["head_affine"] == affine
    # Validation PCK is that of the raw network output, which the hardware produces.
    val = cached_renders(tiny.n_val, synthetic.EVAL_SEED_OFFSET, 128, tiny.cache_dir)
    train_kp = cached_renders(tiny.n_train, synthetic.TRAIN_SEED_OFFSET, 128, tiny.cache_dir)[1]
    assert evaluate(model, *val, train_kp)["pck"] == ckpt["metrics"]["val_pck"]
    assert 0.0 <= ckpt["metrics"]["val_pck_affine"] <= 1.0
    # A plain checkpoint has no head_affine and still loads.
    assert "head_affine" not in load_checkpoint(full_run / "best.pt")[1]
    # The affine's state is part of last.pt, so a resumed run continues it.
    assert _state(run / "last.pt")["head_affine"] == affine


def test_spatial_softmax_loss_is_minimal_at_the_target_and_ignores_unlabelled_joints():
    from bnnpose.quantize.losses import spatial_softmax_loss

    images, keypoints, visible = synthetic.render_batch(range(2))
    _, target, weight = make_batch(images, keypoints, visible, np.zeros(2, bool), CODEC)
    logits = torch.log(target.clamp_min(1e-12))
    at_target = spatial_softmax_loss(logits, target, weight)
    assert at_target < spatial_softmax_loss(torch.zeros_like(logits), target, weight)
    # Shifting a heatmap by a constant (the affine's bias) changes nothing.
    torch.testing.assert_close(spatial_softmax_loss(logits + 3.0, target, weight), at_target)
    changed = logits.clone()
    changed[0, 3] = torch.randn_like(changed[0, 3])
    weight = weight.clone()
    weight[0, 3] = 0.0
    torch.testing.assert_close(spatial_softmax_loss(changed, target, weight),
                               spatial_softmax_loss(logits, target, weight))


def test_adaptive_wing_loss_matches_its_formula():
    from bnnpose.quantize.losses import adaptive_wing_loss

    def one(p, t):
        return adaptive_wing_loss(torch.tensor([[[[p]]]]), torch.tensor([[[[t]]]]),
                                  torch.ones(1, 1)).item()

    assert one(0.7, 0.7) == 0.0
    # Inside theta: omega * ln(1 + |d / epsilon| ** (alpha - y)).
    assert one(0.2, 0.0) == pytest.approx(14 * np.log1p(0.2**2.1), rel=1e-6)
    assert one(0.9, 1.0) == pytest.approx(14 * np.log1p(0.1**1.1), rel=1e-6)
    # The two branches meet at theta, in value and in slope.
    for t in (0.0, 0.5, 1.0):
        lo, hi = one(t + 0.5 - 1e-4, t), one(t + 0.5 + 1e-4, t)
        assert hi == pytest.approx(lo, abs=1e-2)
        x = torch.tensor([[[[t + 0.5 - 1e-3, t + 0.5 + 1e-3]]]], requires_grad=True)
        adaptive_wing_loss(x, torch.full_like(x, t), torch.ones(1, 1)).backward()
        g = x.grad.flatten()
        assert g[0].item() == pytest.approx(g[1].item(), rel=1e-2)
    # Unweighted joints cost nothing; the gradient at a perfect prediction is finite.
    x = torch.zeros(1, 2, 4, 4, requires_grad=True)
    t = torch.zeros(1, 2, 4, 4)
    t[0, 1, 2, 2] = 1.0
    adaptive_wing_loss(x + t, t, torch.tensor([[0.0, 1.0]])).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(("model", "extra"), [
    ("bhg-s2-z2", {}),
    ("face-bhg-z2", {}),
    ("bihrnet-z2", {"loss": "awing", "distill_loss": "softmax"}),
    ("bidrn-z2", {"bits": 3}),
])
def test_every_family_trains(model, extra, tiny, full_run, tmp_path):
    """One epoch of each family: the run folder, a finite loss and a PCK on its own layout."""
    from bnnpose.models.registry import MODELS, model_joints

    if extra.get("distill_loss"):  # the teacher must share the student's heatmaps
        teacher = train(replace(tiny, model=model, binary=False, epochs=1, n_train=32,
                                out_dir=str(tmp_path / "teacher")))
        extra = {**extra, "distill_from": str(teacher / "best.pt")}
    run = train(replace(tiny, model=model, epochs=1, n_train=32, n_val=16,
                        out_dir=str(tmp_path / model), **extra))
    metrics = json.loads((run / "metrics.jsonl").read_text())
    assert np.isfinite(metrics["train_loss"]) and metrics["train_loss"] > 0
    joints = model_joints(MODELS[model].config)
    assert set(metrics["val_per_joint"]) == set(joints)
    assert metrics["val_instances"] > 0
    loaded, _ = load_checkpoint(run / "best.pt")
    assert loaded.cfg.num_joints == len(joints)
    if model == "face-bhg-z2":  # faces are scored like 300W: NME beside the mean face
        from bnnpose.quantize.datasets import from_spec
        from bnnpose.quantize.evaluate import evaluate_dataset

        result = evaluate_dataset(loaded, from_spec("synthetic-face:8", None), flip_test=True)
        assert result["joints"] == list(joints)
        assert result["nme"] > 0 and result["nme_mean_pose"] > 0


def test_device_and_time_budget(tmp_path):
    """--device cpu/auto train here; cuda without a GPU and a bad budget are one-line errors;
    a time budget ends the session between epochs, and --resume finishes the run."""
    from bnnpose.quantize.train_config import resolve_device

    base = TrainConfig(n_train=32, n_val=8, epochs=3, batch_size=16,
                       cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "run"))
    if not torch.cuda.is_available():
        with pytest.raises(BnnposeError, match="--device cuda: torch .* sees no CUDA GPU"):
            train(replace(base, device="cuda"))
        assert resolve_device("auto").type == "cpu"
    with pytest.raises(BnnposeError, match="time budget must be positive"):
        train(replace(base, time_budget_s=0))
    with pytest.raises(BnnposeError, match="unknown device 'tpu'"):
        train(replace(base, device="tpu"))
    # A budget shorter than two epochs: the first epoch runs, the session stops after it.
    out = train(replace(base, device="auto", time_budget_s=1e-3))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["device"] == "cpu"
    train(replace(base, device="auto", resume=True))
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
