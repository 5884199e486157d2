from dataclasses import replace

import cv2
import numpy as np
import pytest

from bnnpose.host.preprocess import PAD_GREY, person_crop
from bnnpose.host.codec import HeatmapCodec
from bnnpose.host.skeleton import MPII_JOINTS
from bnnpose.quantize.crops import apply_affines, people_arrays, random_affines
from bnnpose.host.skeleton import COCO_JOINTS
from bnnpose.quantize.datasets import Dataset, Instance
from bnnpose.quantize.train_data import make_batch


def _dots(size: int, points: np.ndarray) -> np.ndarray:
    """Black crop with a white 3x3 dot at each integer point."""
    img = np.zeros((size, size, 3), np.uint8)
    for x, y in points.astype(int):
        img[y - 1:y + 2, x - 1:x + 2] = 255
    return img


def test_affine_moves_keypoints_with_the_pixels():
    rng = np.random.default_rng(0)
    pts = np.array([[40.0, 50.0], [90.0, 70.0], [64.0, 30.0]])
    images = np.stack([_dots(128, pts)] * 6)
    kp = np.repeat(pts[None].astype(np.float32), 6, axis=0)
    affines = random_affines(rng, 6, 128, rotate=40, scale=0.3)
    out, moved = apply_affines(images, kp, affines)
    assert out.shape == images.shape and moved.dtype == np.float32
    for img, p in zip(out, moved, strict=True):
        for x, y in p:
            patch = img[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2]
            assert patch.max() > 200, "a dot did not land where its keypoint went"
    # Corners uncovered by a rotation carry the host's crop fill, not black or smeared edges.
    turn = cv2.getRotationMatrix2D((63.5, 63.5), 45, 1.0)[None]
    rotated, _ = apply_affines(images[:1], kp[:1], turn)
    assert tuple(rotated[0, 0, 0]) == tuple(PAD_GREY)


def test_no_augmentation_leaves_batches_untouched():
    assert random_affines(np.random.default_rng(0), 4, 128, 0, 0) is None
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 128, 128, 3), dtype=np.uint8)
    kp = rng.uniform(10, 118, (4, 16, 2)).astype(np.float32)
    vis = np.ones((4, 16), bool)
    flips = np.zeros(4, bool)
    a = make_batch(images, kp, vis, flips, HeatmapCodec())
    identity = np.repeat(np.array([[[1.0, 0, 0], [0, 1.0, 0]]]), 4, axis=0)
    b = make_batch(images, kp, vis, flips, HeatmapCodec(), identity)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.numpy(), y.numpy())


def test_people_arrays_take_joints_by_name():
    img = np.full((200, 300, 3), 90, np.uint8)
    kp = np.zeros((17, 2))
    kp[:, 0], kp[:, 1] = np.linspace(110, 190, 17), np.linspace(40, 160, 17)
    vis = np.ones(17, bool)
    vis[COCO_JOINTS.index("left_knee")] = False
    data = Dataset("coco:t", COCO_JOINTS, [Instance(img, (100, 30, 200, 170), kp, vis, "a.png")],
                   {})
    images, keypoints, visible = people_arrays(data, tuple(MPII_JOINTS), 128)
    assert images.shape == (1, 128, 128, 3) and keypoints.shape == (1, 16, 2)
    names = list(MPII_JOINTS)
    # 12 limb joints are shared; the left knee is one of them but unlabelled here.
    assert visible[0].sum() == 11 and not visible[0, names.index("l_knee")]
    assert np.isnan(keypoints[0, names.index("head_top")]).all()
    ls, rs = names.index("l_shoulder"), names.index("r_shoulder")
    # Scale preserved between the two shoulders (the crop is a similarity transform).
    d_img = np.linalg.norm(kp[COCO_JOINTS.index("left_shoulder")]
                           - kp[COCO_JOINTS.index("right_shoulder")])
    d_crop = np.linalg.norm(keypoints[0, ls] - keypoints[0, rs])
    scale = person_crop(img.shape, (100, 30, 200, 170), (128, 128)).scale
    assert d_crop == pytest.approx(d_img * scale, rel=1e-5)


def test_training_on_a_coco_file_holds_out_whole_images(tmp_path):
    from test_eval import write_coco

    from bnnpose.quantize import synthetic
    from bnnpose.quantize.train import train
    from bnnpose.quantize.train_config import TrainConfig
    from bnnpose.quantize.train_data import training_arrays
    from bnnpose.models.registry import MODELS

    seeds = range(synthetic.TRAIN_SEED_OFFSET, synthetic.TRAIN_SEED_OFFSET + 24)
    ann, images, _ = write_coco(tmp_path / "coco", seeds)
    cfg = TrainConfig(data=f"coco:{ann}", images=str(images), n_train=1000, n_val=8,
                      epochs=1, batch_size=8, warmup_steps=1, rotate=30, scale=0.25,
                      out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"))
    (tr, va) = training_arrays(cfg, MODELS["bhg-tiny"].config)
    assert len(tr[0]) == 16 and len(va[0]) == 8  # one person per image here
    # COCO-17 labels on an MPII-16 model: head_top, upper_neck, thorax, pelvis never labelled.
    assert not tr[2][:, [MPII_JOINTS.index(n) for n in
                         ("head_top", "upper_neck", "thorax", "pelvis")]].any()
    assert list(tmp_path.joinpath("cache").glob("people-*.npz"))  # second run reads the cache
    again = training_arrays(cfg, MODELS["bhg-tiny"].config)
    assert all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
               for a, b in zip(tr, again[0], strict=True))
    run = train(cfg)
    metrics = [line for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and (run / "best.pt").is_file()


def test_training_data_errors_are_one_line(tmp_path):
    from bnnpose.host.common import BnnposeError
    from bnnpose.quantize.train import train
    from bnnpose.quantize.train_config import TrainConfig

    base = TrainConfig(epochs=1, out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "c"))
    for cfg, message in (
        (replace(base, data=f"coco:{tmp_path}/missing.json", images=str(tmp_path)),
         "annotation file not found"),
        (replace(base, images=str(tmp_path)), "--images names the image folder"),
        (replace(base, rotate=200), "rotate"),
        (replace(base, mix_repeat=0), "mix_repeat must be >= 1"),
        (replace(base, channels=30), "channels must be a positive multiple of 4"),
        (replace(base, n_train=10_000_001), "would reach the held-out evaluation seeds"),
        (replace(base, model="bhg-huge"), "unknown model 'bhg-huge'"),
        (replace(base, mix="coco:missing.json", mix_images=str(tmp_path)),
         "annotation file not found"),
        (replace(base, mix=["coco:a.json", "coco:b.json"], mix_images=[str(tmp_path)]),
         "--mix-images: 1 folders for 2 --mix sets"),
        (replace(base, data="mesh", images=str(tmp_path)), "not mesh"),
    ):
        with pytest.raises(BnnposeError, match=message):
            train(cfg)


def test_a_mixed_in_set_joins_the_synthetic_training_samples(tmp_path):
    from test_eval import write_coco

    from bnnpose.models.registry import MODELS
    from bnnpose.quantize import synthetic
    from bnnpose.quantize.train_config import TrainConfig
    from bnnpose.quantize.train_data import training_arrays

    seeds = range(synthetic.TRAIN_SEED_OFFSET + 100, synthetic.TRAIN_SEED_OFFSET + 105)
    ann, images, _ = write_coco(tmp_path / "coco", seeds)
    cfg = TrainConfig(n_train=16, n_val=4, mix=f"coco:{ann}", mix_images=str(images),
                      mix_repeat=3, cache_dir=str(tmp_path / "cache"))
    train, val = training_arrays(cfg, MODELS["bhg-tiny"].config)
    assert len(train[0]) == 16 + 3 * 5 and len(val[0]) == 4
    assert np.array_equal(train[0][16:21], train[0][21:26])  # the repeats
    # The mixed-in people are the renders of those seeds, cut by the same host crop.
    assert np.isnan(train[1][16:]).any() and not np.isnan(train[1][:16]).any()

    # Relabelled at the same path, the set is new data: a new run key (mix_digest goes into
    # trained_run's) and no stale crops from the cache.
    import json

    from bnnpose.quantize.train_data import mix_digest

    before = mix_digest(cfg)
    assert before is not None and mix_digest(replace(cfg, mix=None, mix_images=None)) is None
    coco = json.loads(ann.read_text())
    coco["annotations"] = coco["annotations"][:-1]
    ann.write_text(json.dumps(coco))
    assert mix_digest(cfg) != before
    relabelled, _ = training_arrays(cfg, MODELS["bhg-tiny"].config)
    assert len(relabelled[0]) == 16 + 3 * 4
