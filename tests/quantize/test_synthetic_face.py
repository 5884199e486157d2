import numpy as np
import pytest

from bnnpose.host.common import BnnposeError
from bnnpose.host.codec import inside_image, nme
from bnnpose.host.skeleton import (
    FACE68_FLIP_PAIRS,
    FACE68_JOINTS,
    MPII_FLIP_PAIRS,
    flip_permutation,
)
from bnnpose.quantize import datasets
from bnnpose.quantize.face_shape import MEAN_FACE_3D
from bnnpose.quantize.synthetic_face import (
    EVAL_SEED_OFFSET,
    FACE_FILL,
    TRAIN_SEED_OFFSET,
    render_face,
    render_face_batch,
)

MIDLINE = {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}
# Pairs (subject's right, subject's left) whose order along x holds at any pose the renderer
# draws: yaw and roll never swap them.
LEFT_OF = ((0, 16), (36, 45), (39, 42), (17, 26), (31, 35), (48, 54), (60, 64))


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return render_face_batch(range(200))


def test_sample_format():
    sample = render_face(7)
    assert set(sample) == {"image", "keypoints", "visible"}
    assert sample["image"].shape == (128, 128, 3) and sample["image"].dtype == np.uint8
    assert sample["keypoints"].shape == (68, 2) and sample["keypoints"].dtype == np.float32
    assert sample["visible"].shape == (68,) and sample["visible"].dtype == bool
    assert render_face(7, size=96)["image"].shape == (96, 96, 3)
    assert TRAIN_SEED_OFFSET + 1_000_000 < EVAL_SEED_OFFSET


def test_rendering_is_deterministic(batch):
    for seed in (0, 31, EVAL_SEED_OFFSET + 3):
        a, b = render_face(seed), render_face(seed)
        for key in a:
            assert a[key].tobytes() == b[key].tobytes(), key
    assert render_face(1)["image"].tobytes() != render_face(2)["image"].tobytes()
    images, keypoints, visible = batch
    assert images.shape == (200, 128, 128, 3) and images.dtype == np.uint8
    assert keypoints.shape == (200, 68, 2) and keypoints.dtype == np.float32
    assert visible.shape == (200, 68) and visible.dtype == bool
    single = render_face(5)
    assert np.array_equal(images[5], single["image"])
    assert np.array_equal(keypoints[5], single["keypoints"])
    assert np.array_equal(visible[5], single["visible"])


def test_framing_like_300w_crops(batch):
    _, keypoints, visible = batch
    inside = inside_image(keypoints, (128, 128))
    assert inside.all(axis=1).mean() >= 0.95
    assert not (visible & ~inside).any()
    span = (keypoints.max(axis=1) - keypoints.min(axis=1)).max(axis=1) / 128
    assert FACE_FILL[0] - 1e-4 <= span.min() and span.max() <= FACE_FILL[1] + 1e-4
    assert span.std() > 0.03
    # The face is not always in the middle.
    centre = (keypoints.max(axis=1) + keypoints.min(axis=1)) / 2
    assert centre.std(axis=0).min() > 3


def test_left_right_order_and_variety(batch):
    _, keypoints, _ = batch
    for right, left in LEFT_OF:
        assert (keypoints[:, right, 0] < keypoints[:, left, 0]).all(), (right, left)
    # Brows above the eyes, the nose between eyes and mouth, the chin below the mouth,
    # along the face's own vertical axis (rolled faces included).
    eyes = keypoints[:, 36:48].mean(axis=1)
    mouth = keypoints[:, 48:60].mean(axis=1)
    down = (mouth - eyes) / np.linalg.norm(mouth - eyes, axis=1, keepdims=True)

    def height(i):
        return np.einsum("nj,nj->n", keypoints[:, i] - eyes, down)

    assert (height(19) < 0).all() and (height(24) < 0).all()
    assert (height(33) > 0).all() and (height(33) < height(51)).all()
    assert (height(57) < height(8)).all()
    # Expressions: some mouths open, some eyes closed, most neither.
    io = np.linalg.norm(keypoints[:, 36] - keypoints[:, 45], axis=1)
    mouth_gap = np.linalg.norm(keypoints[:, 62] - keypoints[:, 66], axis=1) / io
    assert 0.15 < (mouth_gap > 0.05).mean() < 0.5
    lids = np.linalg.norm(keypoints[:, [37, 38, 43, 44]] - keypoints[:, [41, 40, 47, 46]],
                          axis=2).mean(axis=1) / io
    assert 0.03 < (lids < 0.04).mean() < 0.35
    # Shapes differ: mouth width relative to the eye distance.
    mouth_width = np.linalg.norm(keypoints[:, 48] - keypoints[:, 54], axis=1) / io
    assert mouth_width.std() > 0.03


def test_landmarks_sit_on_painted_features(batch):
    images, keypoints, visible = batch
    eyes = (range(36, 42), range(42, 48))
    checked = differs = 0
    for img, kp, vis in zip(images, keypoints, visible, strict=True):
        for eye in eyes:
            eye = list(eye)
            opening = np.linalg.norm(kp[eye[1:3]] - kp[eye[5:3:-1]], axis=1).mean()
            # Skin beside the nose, on the side away from the shaded bridge line.
            near_wing = 31 if kp[30, 0] > kp[27, 0] else 35
            points = eye + [29, near_wing]
            if opening < 2.5 or not vis[points].all():
                continue
            iris = img[tuple(np.rint(kp[eye].mean(axis=0)[::-1]).astype(int))]
            skin = img[tuple(np.rint(kp[[29, near_wing]].mean(axis=0)[::-1]).astype(int))]
            checked += 1
            differs += np.abs(iris.astype(int) - skin.astype(int)).sum() > 45
    assert checked > 150
    assert differs / checked > 0.9


def test_face68_flip_pairs_and_permutation():
    flat = [i for pair in FACE68_FLIP_PAIRS for i in pair]
    assert len(flat) == len(set(flat)) == 68 - len(MIDLINE)
    assert set(range(68)) - set(flat) == MIDLINE
    perm = flip_permutation(68)
    assert sorted(perm) == list(range(68))
    assert [perm[p] for p in perm] == list(range(68))
    assert perm[36] == 45 and perm[0] == 16 and perm[48] == 54 and perm[65] == 67
    # Every pair lies across the mean face's midline at mirrored positions.
    for a, b in FACE68_FLIP_PAIRS:
        assert MEAN_FACE_3D[a, 0] * MEAN_FACE_3D[b, 0] < 0
        assert np.allclose(MEAN_FACE_3D[a] * (-1, 1, 1), MEAN_FACE_3D[b])
    assert np.allclose(MEAN_FACE_3D[sorted(MIDLINE), 0], 0)
    assert len(FACE68_JOINTS) == 68


def test_flip_permutation_keeps_mpii_and_rejects_unknown_layouts():
    mpii = list(range(16))
    for a, b in MPII_FLIP_PAIRS:
        mpii[a], mpii[b] = b, a
    assert flip_permutation(16) == mpii
    assert flip_permutation(6) == [5, 4, 3, 2, 1, 0]
    assert flip_permutation(4) == [0, 1, 3, 2]
    for n in (17, 33, 67, 69, -1):
        with pytest.raises(ValueError, match="no joint layout"):
            flip_permutation(n)


def test_flip_mirrors_a_rendered_face(batch):
    images, keypoints, visible = batch
    perm = flip_permutation(68)
    for i in range(20):
        img, kp, vis = images[i], keypoints[i], visible[i]
        flipped = img[:, ::-1]
        kp_f = kp.copy()
        kp_f[:, 0] = 127 - kp_f[:, 0]
        kp_f, vis_f = kp_f[perm], vis[perm]
        # The mirrored face is again a face in iBUG order: right before left.
        for right, left in LEFT_OF:
            assert kp_f[right, 0] < kp_f[left, 0]
        assert np.array_equal(np.sort(kp_f[:, 1]), np.sort(kp[:, 1]))
        # Each point lands on the mirrored pixel of its partner.
        on = inside_image(kp_f, (128, 128))
        src = np.rint(kp[perm][on]).astype(int)
        dst = np.rint(kp_f[on]).astype(int)
        exact = np.abs(kp[perm][on, 0] % 1 - 0.5) > 1e-3  # rounding ties may go either way
        assert np.array_equal(flipped[dst[exact, 1], dst[exact, 0]],
                              img[src[exact, 1], src[exact, 0]])
        assert np.array_equal(vis_f[perm], vis)


def test_far_jaw_hidden_at_strong_yaw():
    near_counts = []
    for seed in range(12):
        front = render_face(seed, pose=(0.0, 0.0, 0.0))
        right = render_face(seed, pose=(45.0, 0.0, 0.0))
        left = render_face(seed, pose=(-45.0, 0.0, 0.0))
        # Positive yaw turns the face toward the image's right: its left jaw goes behind.
        kp = right["keypoints"]
        assert kp[30, 0] > kp[[36, 45], 0].mean()
        assert not right["visible"][11:17].any()
        assert not left["visible"][0:6].any()
        near_counts += [right["visible"][0:6].mean(), left["visible"][11:17].mean(),
                        front["visible"][0:17].mean()]
        # Hidden points keep their projected place: the far jaw turns in toward the nose.
        assert kp[16, 0] < kp[45, 0] + 0.5 * (kp[45, 0] - kp[36, 0])
        assert np.isfinite(kp).all()
    assert np.mean(near_counts) > 0.8


def test_occluders_hide_landmarks(batch):
    _, keypoints, visible = batch
    inside = inside_image(keypoints, (128, 128))
    # Points off the jaw are hidden only by occluders.
    hidden = (~visible[:, 17:] & inside[:, 17:]).any(axis=1)
    assert 0.1 < hidden.mean() < 0.4


def test_synthetic_face_spec_scores_nme():
    data = datasets.from_spec("synthetic-face:5")
    assert data.name == "synthetic-face:5" and data.joints == FACE68_JOINTS
    assert len(data.instances) == 5 and data.skipped == {}
    for k, inst in enumerate(data.instances):
        sample = render_face(EVAL_SEED_OFFSET + k)
        assert inst.box is None and inst.source == f"synthetic-face:{EVAL_SEED_OFFSET + k}"
        assert np.array_equal(inst.image, sample["image"])
        assert inst.keypoints.dtype == np.float64
        assert np.allclose(inst.keypoints, sample["keypoints"])
        assert np.array_equal(inst.visible, inside_image(sample["keypoints"], (128, 128)))
        assert inst.interocular == pytest.approx(
            float(np.linalg.norm(inst.keypoints[36] - inst.keypoints[45])))
    gt = np.stack([i.keypoints for i in data.instances])
    vis = np.stack([i.visible for i in data.instances])
    io = np.array([i.interocular for i in data.instances])
    assert nme(gt + (3.0, 4.0), gt, vis, io)[0] == pytest.approx(np.mean(5.0 / io))
    assert "synthetic-face[:N]" in datasets.DATA_SPECS
    with pytest.raises(BnnposeError, match="n >= 1"):
        datasets.from_spec("synthetic-face:0")
    with pytest.raises(BnnposeError, match="--images"):
        datasets.from_spec("synthetic-face:2", images="somewhere")
