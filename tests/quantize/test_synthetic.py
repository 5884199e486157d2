import subprocess
import sys

import numpy as np
import pytest

from bnnpose.host.codec import inside_image
from bnnpose.host.skeleton import MPII_JOINTS, MPII_SKELETON
from bnnpose.quantize import synthetic
from bnnpose.quantize.synthetic import (
    EVAL_SEED_OFFSET,
    LIMB_RADII,
    render_batch,
    render_sample,
)

J = {name: i for i, name in enumerate(MPII_JOINTS)}


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return render_batch(range(300))


def test_sample_format():
    sample = render_sample(7)
    assert set(sample) == {"image", "keypoints", "visible"}
    assert sample["image"].shape == (128, 128, 3) and sample["image"].dtype == np.uint8
    assert sample["keypoints"].shape == (16, 2) and sample["keypoints"].dtype == np.float32
    assert sample["visible"].shape == (16,) and sample["visible"].dtype == bool
    big = render_sample(7, size=256)
    assert big["image"].shape == (256, 256, 3)


def test_rendering_is_deterministic():
    for seed in (0, 123, EVAL_SEED_OFFSET + 5):
        a, b = render_sample(seed), render_sample(seed)
        for key in a:
            assert a[key].tobytes() == b[key].tobytes()
    assert render_sample(1)["image"].tobytes() != render_sample(2)["image"].tobytes()


def test_clean_render_shows_the_same_scene_without_degradations():
    for seed in range(10):
        full, clean = render_sample(seed), render_sample(seed, clean=True)
        np.testing.assert_array_equal(full["keypoints"], clean["keypoints"])
        assert clean["mask"].shape == (128, 128) and clean["mask"].dtype == bool
        # The scene behind the figure is the clean image wherever the figure is not.
        outside = ~clean["mask"]
        np.testing.assert_array_equal(clean["image"][outside], clean["background"][outside])


def test_visible_means_inside_the_frame(batch):
    _, keypoints, visible = batch
    np.testing.assert_array_equal(visible, inside_image(keypoints, (128, 128)))
    outside = keypoints[~visible]
    assert ((outside < -0.5) | (outside >= 127.5)).any(axis=-1).all()
    # Most joints are in frame, some figures are truncated.
    assert 0.9 < visible.mean() < 1.0
    # The head is never cut off at the top edge.
    assert np.all(keypoints[:, J["head_top"], 1] >= -0.5)


def test_visible_joints_and_limbs_lie_on_the_painted_figure():
    limbs = np.array(list(LIMB_RADII))
    joints = differing = 0
    for seed in range(150):
        sample = render_sample(seed, clean=True)
        keypoints, visible, mask = sample["keypoints"], sample["visible"], sample["mask"]
        x, y = np.floor(keypoints[visible] + 0.5).astype(int).T
        assert mask[y, x].all(), seed
        middles = keypoints[limbs].mean(axis=1)[visible[limbs].all(axis=1)]
        mx, my = np.floor(middles + 0.5).astype(int).T
        assert mask[my, mx].all(), seed
        joints += x.size
        differing += np.any(sample["image"][y, x] != sample["background"][y, x], axis=-1).sum()
    assert differing >= 0.98 * joints


def test_keypoints_scale_with_the_image_size_in_the_pixel_centre_convention():
    small, large = render_sample(11)["keypoints"], render_sample(11, size=512)["keypoints"]
    np.testing.assert_allclose((small + 0.5) * 4 - 0.5, large, atol=1e-3)


@pytest.mark.parametrize("kind", ["capsule", "ellipse"])
def test_parts_are_drawn_where_their_coordinates_say(kind):
    # Filled shapes snap to whole pixels; over sub-pixel offsets the snapping must not be biased.
    errors = []
    for dx, dy in np.random.default_rng(0).random((32, 2)):
        cx, cy = 30 + dx, 20 + dy
        if kind == "capsule":
            geometry = (cx - 12, cy, cx + 12, cy, 6.0, 6.0)
        else:
            geometry = (cx, cy, 12.0, 7.0, 30.0)
        canvas = np.zeros((64, 64), np.uint8)
        synthetic._paint(canvas, synthetic._Part(0.0, kind, 0, geometry), 1)
        ys, xs = np.nonzero(canvas)
        errors.append((xs.mean() - cx, ys.mean() - cy))
    errors = np.array(errors)
    assert np.abs(errors).max() <= 0.6
    assert np.abs(errors.mean(axis=0)).max() < 0.1


def test_figure_fills_half_to_nine_tenths_of_the_frame_height(batch):
    _, keypoints, _ = batch
    height = np.ptp(keypoints[..., 1], axis=1) / 128
    assert height.max() <= 0.9 + 1e-6
    assert 0.5 < np.median(height) < 0.8
    assert np.percentile(height, 5) > 0.3


def test_images_are_varied(batch):
    images, keypoints, _ = batch
    assert images.std() > 40
    assert np.abs(np.diff(images.astype(np.int16), axis=2)).mean() > 3  # not flat colour
    centres = keypoints[:, J["pelvis"]]
    assert centres.std(axis=0).min() > 10  # figures are not always in the same spot


def _poses(n: int) -> np.ndarray:
    return np.stack([synthetic._pose_3d(np.random.default_rng(s))[0] for s in range(n)])


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = np.sum(a * b, axis=-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_knees_and_elbows_bend_within_human_range():
    p = _poses(400)
    for hip, knee, ankle in (("r_hip", "r_knee", "r_ankle"), ("l_hip", "l_knee", "l_ankle")):
        flexion = _angle(p[:, J[knee]] - p[:, J[hip]], p[:, J[ankle]] - p[:, J[knee]])
        assert flexion.max() <= 140 + 1e-6 and np.median(flexion) < 60
    for shoulder, elbow, wrist in (("r_shoulder", "r_elbow", "r_wrist"),
                                   ("l_shoulder", "l_elbow", "l_wrist")):
        flexion = _angle(p[:, J[elbow]] - p[:, J[shoulder]], p[:, J[wrist]] - p[:, J[elbow]])
        assert flexion.max() <= 145 + 1e-6


def test_left_and_right_limbs_have_equal_lengths():
    p = _poses(200)
    for a, b in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow"), ("elbow", "wrist")):
        right = np.linalg.norm(p[:, J[f"r_{a}"]] - p[:, J[f"r_{b}"]], axis=-1)
        left = np.linalg.norm(p[:, J[f"l_{a}"]] - p[:, J[f"l_{b}"]], axis=-1)
        np.testing.assert_allclose(right, left, rtol=1e-9)


def test_a_figure_facing_the_camera_shows_its_right_side_on_the_image_left():
    p = _poses(400)
    box = p[:, synthetic._TORSO_BOX]
    # The first torso-box corner is the right shoulder pushed toward the figure's front.
    facing = box[:, 0, 2] - p[:, J["r_shoulder"], 2] > 0.03
    away = box[:, 0, 2] - p[:, J["r_shoulder"], 2] < -0.03
    right_left_of_left = p[:, J["r_shoulder"], 0] < p[:, J["l_shoulder"], 0]
    assert facing.sum() > 100 and away.sum() > 50
    assert right_left_of_left[facing].all()
    assert not right_left_of_left[away].any()


def test_drawn_limbs_are_skeleton_limbs():
    assert set(LIMB_RADII) <= set(MPII_SKELETON)


def test_render_batch_matches_render_sample():
    images, keypoints, visible = render_batch([3, 1])
    assert images.shape == (2, 128, 128, 3) and keypoints.shape == (2, 16, 2)
    one = render_sample(1)
    np.testing.assert_array_equal(images[1], one["image"])
    np.testing.assert_array_equal(keypoints[1], one["keypoints"])
    np.testing.assert_array_equal(visible[1], one["visible"])
    assert render_batch([])[0].shape == (0, 128, 128, 3)


def test_module_does_not_import_torch():
    code = "import sys, bnnpose.quantize.synthetic; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_photo_backgrounds_load_offline_and_take_their_share(monkeypatch):
    from bnnpose.quantize import paint

    photos = paint.photos()
    assert len(photos) == len(paint.PHOTOS)
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 and min(p.shape[:2]) >= 128
               for p in photos)
    calls = []
    real = paint.photo_cut
    monkeypatch.setattr(paint, "photo_cut", lambda u, size: calls.append(1) or real(u, size))
    n = 200
    for seed in range(n):
        img = paint.scene_background(np.random.default_rng(seed), 64)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert 0.3 < len(calls) / n < 0.5
