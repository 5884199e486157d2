"""Drawing keeps image sizes, fades low scores, and writes real PNGs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bnnpose.host.common import BnnposeError
from bnnpose.host.draw import draw_pose, keypoints_grid, save_png

RNG = np.random.default_rng(2)


def random_pose(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return RNG.uniform([0, 0], [w - 1, h - 1], size=(16, 2)), RNG.uniform(0, 1, 16)


def test_draw_pose_keeps_size_and_input():
    img = np.full((120, 90, 3), 40, np.uint8)
    kp, sc = random_pose(120, 90)
    kp[3] = np.nan  # an undetected joint is skipped, not drawn at (0, 0)
    out = draw_pose(img, kp, sc)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (img == 40).all(), "input must not be drawn on"
    assert (out != img).any()


def test_low_scores_are_drawn_faded():
    img = np.zeros((100, 100, 3), np.uint8)
    kp = np.full((16, 2), np.nan)
    kp[9] = [50, 50]  # head_top alone: no limb, just the joint marker
    strong = draw_pose(img, kp, np.ones(16), threshold=0.5)[50, 50].astype(int)
    faded = draw_pose(img, kp, np.zeros(16), threshold=0.5)[50, 50].astype(int)
    assert strong.sum() > 0 and 0 < faded.sum() < strong.sum() * 0.5


def test_draw_pose_rejects_wrong_shapes():
    with pytest.raises(BnnposeError, match=r"\[16, 2\]"):
        draw_pose(np.zeros((10, 10, 3), np.uint8), np.zeros((15, 2)), np.zeros(15))


def test_save_png_has_the_image_size(tmp_path):
    img = draw_pose(np.zeros((70, 50, 3), np.uint8), *random_pose(70, 50))
    path = save_png(tmp_path / "sub" / "pose.png", img)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.shape == (70, 50, 3)
    np.testing.assert_array_equal(back[..., ::-1], img)
    assert [p.name for p in path.parent.iterdir()] == ["pose.png"], "no temp files left"


def test_keypoints_grid_png(tmp_path):
    sizes = [(120, 90), (60, 200), (64, 64), (300, 100), (50, 50)]
    images = [RNG.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    poses = [random_pose(h, w) for h, w in sizes]
    sheet = keypoints_grid(images, [p[0] for p in poses], [p[1] for p in poses],
                           tmp_path / "grid.png", cols=4, cell=64)
    assert sheet.shape == (128, 256, 3)
    assert cv2.imread(str(tmp_path / "grid.png")).shape == (128, 256, 3)
    with pytest.raises(BnnposeError):
        keypoints_grid(images, [], [])
