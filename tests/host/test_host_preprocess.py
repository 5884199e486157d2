"""Crop geometry must invert exactly; bad image files must fail with one line naming them."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from bnnpose.host.common import BnnposeError
from bnnpose.host.preprocess import PAD_GREY, load_image, person_crop, preprocess

RNG = np.random.default_rng(1)


@pytest.mark.parametrize(
    "image_hw, box, size",
    [
        ((480, 640), None, (128, 128)),
        ((1080, 720), (100.0, 50.0, 400.5, 1000.0), (128, 128)),
        ((300, 300), (10, 20, 30, 200), (128, 96)),
    ],
)
def test_inverse_of_forward_is_identity(image_hw, box, size):
    crop = person_crop(image_hw, box, size)
    pts = RNG.uniform(-50, 1200, size=(5, 16, 2))
    np.testing.assert_allclose(crop.to_original(crop.to_crop(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(crop.to_crop(crop.to_original(pts)), pts, atol=1e-9)


def test_box_is_centred_with_margin_and_not_stretched():
    crop = person_crop((400, 1000), (100, 100, 200, 300), (128, 128), margin=1.25)
    # Box centre -> crop centre; the long side (200 px) * 1.25 spans the 128 px crop.
    np.testing.assert_allclose(crop.to_crop([150, 200]), [63.5, 63.5])
    assert crop.scale == pytest.approx(128 / 250)
    assert crop.matrix[0, 0] == crop.matrix[1, 1] and crop.matrix[0, 1] == 0


def test_default_box_is_whole_image_inside_crop():
    crop = person_crop((480, 640), None, (128, 128))
    corners = crop.to_crop([[-0.5, -0.5], [639.5, 479.5]])
    assert (corners >= -0.5).all() and (corners <= 127.5).all()
    np.testing.assert_allclose(corners.mean(axis=0), [63.5, 63.5])


@pytest.mark.parametrize(
    "image_hw, box",
    [
        ((200, 160), None),  # bilinear only
        ((1440, 1920), None),  # area-shrink of the whole frame first
        ((1440, 1920), (800, 300, 1100, 1200)),  # area-shrink of just the box region
    ],
)
def test_warp_puts_pixels_where_the_mapping_says(image_hw, box):
    h, w = image_hw
    img = np.zeros((h, w, 3), np.uint8)
    spot = np.array([w * 0.3, h * 0.6]) if box is None else np.array([990.0, 700.0])
    r = max(2, int(0.01 * max(h, w)))
    cv2.circle(img, tuple(int(v) for v in spot), r, (255, 255, 255), -1)
    crop_img, crop = preprocess(img, box=box)
    assert crop_img.shape == (128, 128, 3) and crop_img.dtype == np.uint8
    # Only the white spot is brighter than the grey padding.
    weight = np.clip(crop_img[..., 0].astype(float) - PAD_GREY[0], 0, None)
    ys, xs = np.indices(weight.shape)
    centroid = np.array([np.average(xs, weights=weight), np.average(ys, weights=weight)])
    np.testing.assert_allclose(centroid, crop.to_crop(spot), atol=0.3)
    if box is None:
        # The padding around a non-square image is the constant grey, not smeared image edges.
        pad = crop_img[:, 0] if w < h else crop_img[0]
        assert (pad == PAD_GREY).all()


def test_load_image_returns_rgb(tmp_path):
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((4, 4), 9, np.uint8))
    rgb = load_image(tmp_path / "red.png")
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == 255).all() and (rgb[..., 2] == 0).all()
    assert load_image(tmp_path / "grey.png").shape == (4, 4, 3)


def _one_line_error(path, match):
    with pytest.raises(BnnposeError) as info:
        load_image(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and match in msg, msg


def test_bad_image_files_fail_with_one_line_naming_the_file(tmp_path):
    _one_line_error(tmp_path / "nope.jpg", "not found")
    (tmp_path / "empty.png").write_bytes(b"")
    _one_line_error(tmp_path / "empty.png", "empty")
    (tmp_path / "garbage.jpg").write_bytes(RNG.integers(0, 256, 500, dtype=np.uint8).tobytes())
    _one_line_error(tmp_path / "garbage.jpg", "cannot decode")
    ok, png = cv2.imencode(".png", RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "truncated.png").write_bytes(png.tobytes()[: len(png) // 2])
    _one_line_error(tmp_path / "truncated.png", "cannot decode")
    (tmp_path / "folder.png").mkdir()
    _one_line_error(tmp_path / "folder.png", "not a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_image(tmp_path):
    f = tmp_path / "secret.png"
    f.write_bytes(cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))[1].tobytes())
    f.chmod(0)
    _one_line_error(f, "cannot read")


def test_decode_failure_prints_nothing_of_its_own(tmp_path, capfd):
    ok, png = cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))
    (tmp_path / "cut.png").write_bytes(png.tobytes()[:60])
    with pytest.raises(BnnposeError):
        load_image(tmp_path / "cut.png")
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("box", [(10, 10, 5, 20), (0, 0, 10, float("nan"))])
def test_invalid_box(box):
    with pytest.raises(BnnposeError, match="invalid person box"):
        person_crop((100, 100), box)


def test_preprocess_rejects_non_rgb():
    with pytest.raises(BnnposeError, match="RGB uint8"):
        preprocess(np.zeros((10, 10), np.uint8))
