import subprocess
import sys

import numpy as np
import pytest

from bnnpose.host.codec import (
    HeatmapCodec,
    inside_image,
    mean_pose_baseline,
    pck,
    torso_size,
)
from bnnpose.host.skeleton import MPII_JOINTS

J = len(MPII_JOINTS)
CODEC = HeatmapCodec(blur=0.0)  # the sub-pixel refinement alone
SMOOTHED = HeatmapCodec()  # as networks' heatmaps are decoded
ALL = np.ones(J, bool)


def _poses(n: int, lo: float, hi: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, (n, J, 2))


def _encode_all(poses: np.ndarray) -> np.ndarray:
    return np.stack([CODEC.encode(kp, ALL)[0] for kp in poses])


def test_encode_peaks_on_pixel_centres():
    kp = np.full((J, 2), 1.5)  # the centre of heatmap pixel (0, 0) with stride 4
    kp[1] = (65.5, 33.5)  # heatmap pixel x=16, y=8
    heatmaps, weights = CODEC.encode(kp, ALL)
    assert heatmaps.shape == (J, 32, 32) and heatmaps.dtype == np.float32
    assert weights.shape == (J,) and weights.dtype == np.float32
    assert heatmaps[0, 0, 0] == 1.0
    assert heatmaps[1, 8, 16] == 1.0
    assert np.unravel_index(heatmaps[1].argmax(), (32, 32)) == (8, 16)
    # sigma = 1 heatmap pixel: one pixel away the Gaussian is exp(-1/2).
    assert heatmaps[1, 8, 17] == pytest.approx(np.exp(-0.5), rel=1e-6)


def test_invisible_and_out_of_frame_joints_get_zero_weight_and_map():
    kp = _poses(1, 10, 110)[0]
    visible = ALL.copy()
    kp[3] = (-0.6, 50)  # just left of the first pixel
    kp[4] = (127.49, 127.49)  # still on the last pixel
    kp[5] = np.nan
    visible[6] = False
    heatmaps, weights = CODEC.encode(kp, visible)
    expected = np.ones(J, np.float32)
    expected[[3, 5, 6]] = 0
    np.testing.assert_array_equal(weights, expected)
    assert not heatmaps[[3, 5, 6]].any()
    assert np.isfinite(heatmaps).all()
    assert heatmaps[4].max() > 0.5


def test_inside_image_uses_pixel_areas():
    kp = np.array([[-0.5, 0], [-0.51, 0], [127.49, 3], [127.5, 3], [5, np.nan]])
    np.testing.assert_array_equal(inside_image(kp, (128, 64)), [True, False, True, False, False])


def test_round_trip_is_exact_away_from_the_border():
    # Keypoints whose heatmap maximum has both neighbours: measured max error 4e-6 px.
    poses = _poses(300, 4.0, 123.0)
    decoded, scores = CODEC.decode(_encode_all(poses))
    assert decoded.shape == (300, J, 2) and decoded.dtype == np.float32
    assert np.abs(decoded - poses).max() < 1e-3
    assert np.all(scores > 0.6)


def test_round_trip_near_the_border_is_within_half_a_heatmap_pixel():
    # A maximum on the heatmap's border is not refined along that axis: at most 0.5 heatmap
    # pixel = 2 input pixels off (measured 1.99998).
    poses = _poses(300, -0.5, 127.49, seed=1)
    decoded, _ = CODEC.decode(_encode_all(poses))
    assert np.abs(decoded - poses).max() <= 2.0 + 1e-3


def test_round_trip_with_other_sizes_and_sigmas():
    codec = HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0, blur=0.0)
    kp = np.random.default_rng(2).uniform((8, 8), (184, 248), (J, 2))
    heatmaps, _ = codec.encode(kp, ALL)
    assert heatmaps.shape == (J, 64, 48)
    decoded, _ = codec.decode(heatmaps)
    assert np.abs(decoded - kp).max() < 1e-3


def test_decode_batch_matches_single_maps():
    heatmaps = _encode_all(_poses(4, 0, 127))
    batch, batch_scores = CODEC.decode(heatmaps)
    for i in range(4):
        single, scores = CODEC.decode(heatmaps[i])
        np.testing.assert_array_equal(batch[i], single)
        np.testing.assert_array_equal(batch_scores[i], scores)


def test_decode_uint8_heatmaps():
    poses = _poses(200, 4.0, 123.0, seed=3)
    quantised = np.round(255 * _encode_all(poses)).astype(np.uint8)
    decoded, scores = CODEC.decode(quantised)
    assert scores.dtype == np.float32 and scores.max() == 255
    # 8-bit rounding of the Gaussian moves the log-parabola fit by at most 0.019 px (measured).
    assert np.abs(decoded - poses).max() < 0.05


def test_decode_signed_integer_heatmaps_falls_back_to_quarter_shift():
    poses = _poses(200, 4.0, 123.0, seed=4)
    # Accumulator-like output: negative away from the peak, so the log fit cannot apply.
    accumulators = np.round(100 * _encode_all(poses) - 70).astype(np.int32)
    decoded, scores = CODEC.decode(accumulators)
    error = np.abs(decoded - poses)
    # Quarter shift: at most 0.25 heatmap pixel (1 input pixel) plus integer-rounding ties.
    assert error.max() <= 1.1
    assert error.max() > 0.5  # the exact Gaussian fit was not used
    assert np.all(scores == accumulators.reshape(200, J, -1).max(axis=-1))


def test_smoothing_keeps_interior_gaussians_exact():
    # A Gaussian target blurred by a Gaussian is a wider Gaussian with the same centre.
    poses = _poses(300, 24.0, 103.0, seed=6)  # 5+ heatmap pixels from the border
    decoded, scores = SMOOTHED.decode(_encode_all(poses))
    assert np.abs(decoded - poses).max() < 1e-3
    assert np.all(scores > 0.6)  # the raw maps' values at the decoded pixels


def test_smoothing_finds_the_peak_under_ragged_noise():
    # Binary networks' maps are ragged: a broad peak plus cell-to-cell noise.
    poses = _poses(300, 24.0, 103.0, seed=7)
    broad = HeatmapCodec(sigma=2.0, blur=0.0)
    clean = np.stack([broad.encode(kp, ALL)[0] for kp in poses])
    noisy = clean + np.random.default_rng(8).normal(0, 0.15, clean.shape)
    raw_err = np.linalg.norm(CODEC.decode(noisy)[0] - poses, axis=-1)
    smooth_err = np.linalg.norm(SMOOTHED.decode(noisy)[0] - poses, axis=-1)
    assert smooth_err.mean() < 0.6 * raw_err.mean(), (smooth_err.mean(), raw_err.mean())
    assert (smooth_err > 8).mean() < (raw_err > 8).mean()  # fewer jumps to a wrong cell


def test_decode_flat_map_is_deterministic():
    keypoints, scores = CODEC.decode(np.zeros((J, 32, 32), np.int16))
    np.testing.assert_array_equal(keypoints, np.full((J, 2), 1.5, np.float32))
    np.testing.assert_array_equal(scores, np.zeros(J, np.float32))


def test_decode_rejects_wrong_shape():
    with pytest.raises(ValueError):
        CODEC.decode(np.zeros((J, 32, 16)))
    with pytest.raises(ValueError):
        CODEC.decode(np.zeros((32, 32)))


def _torso_poses(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    gt = _poses(n, 20, 100, seed=5)
    gt[:, 13] = (40, 40)  # l_shoulder
    gt[:, 2] = (40 + 30, 40 + 40)  # r_hip: diagonal of 50 px
    return gt, np.ones((n, J), bool)


def test_torso_size_uses_left_shoulder_to_right_hip_then_falls_back():
    gt, visible = _torso_poses(3)
    gt[:, 12] = (0, 0)  # r_shoulder
    gt[:, 3] = (6, 8)  # l_hip: other diagonal of 10 px
    visible[1, 13] = False
    visible[2, [13, 12]] = False
    np.testing.assert_allclose(torso_size(gt, visible), [50, 10, np.nan])


def test_pck_of_perfect_prediction_is_one():
    gt, visible = _torso_poses()
    mean, per_joint = pck(gt, gt, visible, torso_size(gt, visible))
    assert mean == 1.0
    np.testing.assert_array_equal(per_joint, np.ones(J))


def test_pck_of_shifted_prediction():
    gt, visible = _torso_poses()
    norm = torso_size(gt, visible)
    pred = gt.copy()
    pred[:, :8, 0] += 0.15 * norm[:, None]  # within 0.2 torso
    pred[:, 8:, 1] -= 0.25 * norm[:, None]  # beyond it
    mean, per_joint = pck(pred, gt, visible, norm)
    assert mean == pytest.approx(0.5)
    np.testing.assert_array_equal(per_joint, [1.0] * 8 + [0.0] * 8)
    mean, _ = pck(pred, gt, visible, norm, thr=0.3)
    assert mean == 1.0


def test_pck_counts_only_visible_joints_of_normalisable_poses():
    gt, visible = _torso_poses(4)
    norm = torso_size(gt, visible)
    pred = gt.copy()
    pred[0, 0] += 1000  # wrong but invisible: ignored
    visible[0, 0] = False
    pred[1] += 1000  # all wrong but without a torso size: ignored
    norm[1] = np.nan
    pred[2, 1] = np.nan  # an undecodable prediction counts as wrong
    visible[:, 5] = False  # no joint of this type counts
    mean, per_joint = pck(pred, gt, visible, norm)
    counted = 3 * (J - 1) - 1
    assert mean == pytest.approx((counted - 1) / counted)
    assert np.isnan(per_joint[5])
    assert per_joint[1] == pytest.approx(2 / 3)
    assert per_joint[0] == 1.0


def test_mean_pose_baseline():
    poses = np.stack([np.zeros((J, 2)), np.full((J, 2), 4.0)])
    baseline = mean_pose_baseline(poses)
    assert baseline.shape == (J, 2) and baseline.dtype == np.float32
    np.testing.assert_array_equal(baseline, np.full((J, 2), 2.0))


def test_codec_imports_only_numpy():
    code = (
        "import sys, bnnpose.host.codec; "
        "print(sorted({'cv2', 'torch', 'scipy', 'matplotlib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_peak_confidence_reads_heatmaps_as_softmax_distributions():
    from bnnpose.host.codec import peak_confidence

    flat = np.zeros((2, 32, 32))
    sharp = np.zeros((32, 32))
    sharp[5, 7] = 50.0
    corner = np.zeros((32, 32))
    corner[0, 0] = 50.0
    conf = peak_confidence(np.stack([flat[0], sharp, corner])[None])
    assert conf.shape == (1, 3)
    # A flat map's first maximum is the corner cell, whose window holds 4 cells.
    np.testing.assert_allclose(conf[0, 0], 4 / 1024, rtol=1e-6)
    assert conf[0, 1] > 0.999 and conf[0, 2] > 0.999  # the border does not lose the peak
    # Scale-free in the sense that matters: a sharper map of the same shape is more confident.
    rng = np.random.default_rng(0)
    noisy = rng.normal(size=(16, 32, 32))
    assert np.all(peak_confidence(3 * noisy) >= peak_confidence(noisy) - 1e-6)
