import numpy as np
import pytest

from bnnpose.host.preprocess import DEFAULT_MARGIN, PAD_GREY, preprocess
from bnnpose.host.codec import inside_image
from bnnpose.quantize.synthetic import (
    BOX_PAD,
    BOX_SCALE_JITTER,
    BOX_SHIFT_JITTER,
    CROP_CANVAS,
    EVAL_SEED_OFFSET,
    person_box,
    render_batch,
    render_crop_sample,
    render_sample,
)


def _joint_box(keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half size (x, y) of the padded, unjittered box of the visible joints."""
    pts = keypoints[visible]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (lo + hi) / 2, (hi - lo) / 2 + BOX_PAD * (hi - lo).max()


@pytest.fixture(scope="module")
def crops() -> list[dict[str, np.ndarray]]:
    return [render_crop_sample(seed, clean=True) for seed in range(120)]


def test_crop_format_and_determinism():
    for seed in (0, 77, EVAL_SEED_OFFSET + 3):
        a, b = render_crop_sample(seed), render_crop_sample(seed)
        assert set(a) == {"image", "keypoints", "visible", "box"}
        assert a["image"].shape == (128, 128, 3) and a["image"].dtype == np.uint8
        assert a["keypoints"].shape == (16, 2) and a["keypoints"].dtype == np.float32
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert render_crop_sample(1)["image"].tobytes() != render_crop_sample(2)["image"].tobytes()
    assert render_crop_sample(5, size=96)["image"].shape == (96, 96, 3)


def test_crop_is_the_hosts_preprocessing_of_the_canvas_render():
    for seed in (3, 40):
        full, crop = render_sample(seed, CROP_CANVAS), render_crop_sample(seed)
        image, host_crop = preprocess(full["image"], crop["box"], (128, 128))
        np.testing.assert_array_equal(crop["image"], image)
        np.testing.assert_allclose(crop["keypoints"], host_crop.to_crop(full["keypoints"]),
                                   atol=1e-4)
        np.testing.assert_array_equal(
            crop["visible"], full["visible"] & inside_image(crop["keypoints"], (128, 128)))


def test_visible_crop_keypoints_lie_on_the_figure(crops):
    hits = total = 0
    for sample in crops:
        mask = np.pad(sample["mask"], 1)
        x, y = np.floor(sample["keypoints"][sample["visible"]] + 0.5).astype(int).T + 1
        # Bilinear resampling can shave a thin limb's pixel; a 3x3 neighbourhood tolerates it.
        near = np.zeros(x.size, bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near |= mask[y + dy, x + dx]
        hits += near.sum()
        total += x.size
    assert hits >= 0.99 * total


def test_the_figure_fills_a_centred_person_crop(crops):
    for sample in crops:
        kp = sample["keypoints"][sample["visible"]]
        centre = (kp.min(axis=0) + kp.max(axis=0)) / 2
        extent = (kp.max(axis=0) - kp.min(axis=0)).max()
        # Box grown by the margin and jittered by at most 15% in size and 8% in position.
        assert np.all(np.abs(centre - 63.5) <= 0.1 * 128), centre
        assert 128 / DEFAULT_MARGIN / 1.4 < extent < 128 / DEFAULT_MARGIN * 1.2, extent
    visible = np.array([s["visible"] for s in crops])
    assert visible.mean() > 0.9
    # Where the canvas ends inside the crop the host pads grey, and so do the training crops.
    corners = np.array([s["image"][[0, 0, -1, -1], [0, -1, 0, -1]] for s in crops])
    assert (corners == PAD_GREY).all(axis=-1).any()


def test_boxes_jitter_in_scale_and_position(crops):
    shifts, scales = [], []
    for seed in range(120):
        sample = render_sample(seed, CROP_CANVAS)
        box = person_box(seed, sample["keypoints"], sample["visible"])
        np.testing.assert_array_equal(box, crops[seed]["box"])
        centre, half = _joint_box(sample["keypoints"], sample["visible"])
        ratio = (box[2:] - box[:2]) / 2 / half
        assert np.isclose(ratio[0], ratio[1])
        scales.append(ratio[0])
        shifts.append(((box[:2] + box[2:]) / 2 - centre) / (2 * half))
    shifts, scales = np.array(shifts), np.array(scales)
    assert np.all(np.abs(scales - 1) <= BOX_SCALE_JITTER + 1e-9)
    assert np.all(np.abs(shifts) <= BOX_SHIFT_JITTER + 1e-9)
    # Spread over the whole range, not a constant offset.
    assert scales.min() < 0.9 < 1.1 < scales.max()
    assert (shifts.min(axis=0) < -0.05).all() and (shifts.max(axis=0) > 0.05).all()


def test_render_batch_crop_mode_matches_render_crop_sample():
    images, keypoints, visible = render_batch([4, 5], crop=True)
    one = render_crop_sample(5)
    np.testing.assert_array_equal(images[1], one["image"])
    np.testing.assert_array_equal(keypoints[1], one["keypoints"])
    np.testing.assert_array_equal(visible[1], one["visible"])
