"""`bnnpose eval` on data the project has never seen: a COCO keypoints file written here."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from bnnpose.host import skeleton
from bnnpose.host.common import BnnposeError
from bnnpose.quantize import datasets, synthetic
from bnnpose.quantize.evaluate import evaluate_dataset, main
from bnnpose.host.skeleton import MPII_JOINTS

SEEDS = range(synthetic.EVAL_SEED_OFFSET, synthetic.EVAL_SEED_OFFSET + 12)


def write_coco(folder, seeds=SEEDS) -> tuple:
    """Rendered people on full canvases, labelled in COCO's 17-joint layout (face unlabelled)."""
    (folder / "images").mkdir(parents=True)
    images, anns = [], []
    for k, seed in enumerate(seeds):
        s = synthetic.render_sample(seed, synthetic.CROP_CANVAS)
        box = synthetic.person_box(seed, s["keypoints"], s["visible"])
        name = f"{seed}.png"
        cv2.imwrite(str(folder / "images" / name), cv2.cvtColor(s["image"], cv2.COLOR_RGB2BGR))
        kp = np.zeros((17, 3))
        for m, d, _ in skeleton.shared_joints(tuple(MPII_JOINTS), skeleton.COCO_JOINTS):
            if s["visible"][m]:
                kp[d] = [*s["keypoints"][m], 2]
        x0, y0, x1, y1 = (float(v) for v in box)
        images.append({"id": k + 1, "file_name": name, "width": synthetic.CROP_CANVAS,
                       "height": synthetic.CROP_CANVAS})
        anns.append({"id": 100 + k, "image_id": k + 1, "category_id": 1, "iscrowd": 0,
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                     "keypoints": kp.reshape(-1).tolist(),
                     "num_keypoints": int((kp[:, 2] > 0).sum())})
    ann = {"images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "person", "keypoints": list(skeleton.COCO_JOINTS),
                           "skeleton": []}]}
    (folder / "ann.json").write_text(json.dumps(ann))
    return folder / "ann.json", folder / "images", ann


def test_coco_people_score_as_their_synthetic_crops(shipped, mean_pose, tmp_path):
    ann, images, _ = write_coco(tmp_path)
    coco = datasets.coco(ann, images)
    assert len(coco.instances) == 12 and coco.skipped == {}
    on_coco = evaluate_dataset(shipped, coco, mean_pose=mean_pose)
    # MPII-16 on COCO-17: scored on the 12 limb joints both name.
    assert len(on_coco["joints"]) == 12 and "head_top" not in on_coco["joints"]
    # The same people through the host's top-down crop are the synthetic eval's crops, so
    # the two paths must agree exactly on the joints they share.
    crops = datasets.synthetic(12)
    on_crops = evaluate_dataset(shipped, crops, mean_pose=mean_pose)
    names = on_coco["joints"]
    for n in names:
        assert on_coco["per_joint"][n]["n"] == on_crops["per_joint"][n]["n"], n
        assert on_coco["per_joint"][n]["pck"] == pytest.approx(on_crops["per_joint"][n]["pck"]), n


def test_eval_cli_writes_metrics_and_pictures(tmp_path):
    ann, images, _ = write_coco(tmp_path, SEEDS[:4])
    assert main(["--data", f"coco:{ann}", "--images", str(images),
                 "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for key in ("pck", "pck_mean_pose", "n_instances", "joints", "per_joint", "coco_ap",
                "pck_box", "by_extent", "normalisers"):
        assert key in metrics, key
    assert 0 <= metrics["coco_ap"] <= 1
    facing = metrics["mirrored_by_facing"]
    assert sum(g["n_people"] for g in facing.values()) == 4
    assert sum(g["mirrored"] for g in facing.values()) == metrics["n_people_mirrored"]
    assert metrics["n_instances"] == sum(v["n"] for v in metrics["per_joint"].values())
    assert cv2.imread(str(tmp_path / "out" / "predictions.png")) is not None


def test_bad_coco_inputs_are_one_line_errors(tmp_path):
    ann, images, raw = write_coco(tmp_path, SEEDS[:2])
    with pytest.raises(BnnposeError, match="annotation file not found"):
        datasets.coco(tmp_path / "nope.json", images)
    bad = json.loads(json.dumps(raw))
    bad["annotations"][0]["keypoints"][5 * 3] = 500.0  # left_shoulder far outside
    bad["annotations"][0]["keypoints"][5 * 3 + 2] = 2
    (tmp_path / "outside.json").write_text(json.dumps(bad))
    with pytest.raises(BnnposeError, match="left_shoulder outside"):
        datasets.coco(tmp_path / "outside.json", images)
    empty = {**raw, "annotations": []}
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    with pytest.raises(BnnposeError, match="no person to evaluate"):
        datasets.coco(tmp_path / "empty.json", images)
    (images / raw["images"][0]["file_name"]).write_bytes(b"broken")
    with pytest.raises(BnnposeError, match="cannot decode image"):
        datasets.coco(ann, images)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(BnnposeError, match="not a COCO annotation file"):
        datasets.coco(tmp_path / "junk.json", images)


def test_oks_sigmas_are_cocoevals():
    from pycocotools.cocoeval import Params

    ours = np.array([skeleton.COCO_SIGMAS[n] for n in skeleton.COCO_JOINTS])
    assert np.array_equal(ours, Params(iouType="keypoints").kpt_oks_sigmas)


def test_coco_wholebody_adds_feet_face_and_hands(tmp_path):
    ann_file, images, ann = write_coco(tmp_path, SEEDS[:2])
    face = np.zeros((68, 3))
    face[:, :2] = np.linspace(20, 60, 68)[:, None]
    face[:, 2] = 1
    ann["annotations"][0]["face_kpts"] = face.reshape(-1).tolist()
    ann["annotations"][0]["lefthand_kpts"] = [0.0] * 63
    ann_file.write_text(json.dumps(ann))
    data = datasets.coco(ann_file, images)
    assert data.joints[:17] == skeleton.COCO_JOINTS
    assert data.joints[17:] == skeleton.WHOLEBODY_PARTS["face_kpts"] + \
        skeleton.WHOLEBODY_PARTS["lefthand_kpts"]
    first, second = data.instances
    assert first.visible[17:85].all() and not first.visible[85:].any()
    assert np.allclose(first.keypoints[17:85], face[:, :2])
    assert not second.visible[17:].any()  # an annotation without the parts: unlabelled
    # The body model still scores the body joints, and COCO AP stays on them.
    assert main(["--data", f"coco:{ann_file}", "--images", str(images),
                 "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["joints"]) == 12 and metrics["coco_ap"] is not None
    ann["annotations"][1]["face_kpts"] = [1.0] * 30
    ann_file.write_text(json.dumps(ann))
    with pytest.raises(BnnposeError, match="has 10 face_kpts, COCO-WholeBody has 68"):
        datasets.coco(ann_file, images)


def test_flip_test_heatmaps_are_mirror_symmetric(shipped, mean_pose, tmp_path):
    from bnnpose.host.skeleton import flip_permutation
    from bnnpose.quantize.evaluate import flip_test_heatmaps, predict_heatmaps

    images = np.stack([i.image for i in datasets.synthetic(4).instances])
    maps = flip_test_heatmaps(shipped, images)
    mirrored = flip_test_heatmaps(shipped, np.ascontiguousarray(images[:, :, ::-1]))
    # The average is the same whichever way round the person came in.
    assert np.array_equal(mirrored, maps[:, flip_permutation(16), :, ::-1])
    assert not np.array_equal(maps, predict_heatmaps(shipped, images))
    ann, image_dir, _ = write_coco(tmp_path, SEEDS[:4])
    assert main(["--data", f"coco:{ann}", "--images", str(image_dir), "--flip-test",
                 "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["flip_test"] is True


def _upper_bodies(ann: dict) -> dict:
    """The same people with hips, knees and ankles unlabelled, as waist-up photos have them."""
    lower = [skeleton.COCO_JOINTS.index(n) for n in skeleton.COCO_JOINTS[11:]]
    for a in ann["annotations"]:
        kp = np.array(a["keypoints"]).reshape(17, 3)
        kp[lower] = 0
        a["keypoints"], a["num_keypoints"] = kp.reshape(-1).tolist(), int((kp[:, 2] > 0).sum())
    return ann


def test_upper_body_people_are_scored_not_skipped(shipped, mean_pose, tmp_path):
    ann_file, images, ann = write_coco(tmp_path, SEEDS[:6])
    ann_file.write_text(json.dumps(_upper_bodies(ann)))
    result = evaluate_dataset(shipped, datasets.coco(ann_file, images), mean_pose=mean_pose)
    # No hips: the torso diagonal is missing for everyone, the box normalises everyone.
    assert result["pck"] is None or np.isnan(result["pck"])
    assert result["n_people_without_torso"] == 6 and result["n_people_box"] == 6
    assert 0 <= result["pck_box"] <= 1
    assert result["by_extent"]["upper_body"]["n_people"] == 6
    assert result["by_extent"]["full_body"]["n_people"] == 0
    scored = sum(v["n"] for v in result["per_joint"].values())
    assert scored == 0  # torso PCK counts none of them ...
    assert all(result["per_joint"][n]["pck_box"] is not None
               for n in ("l_shoulder", "r_wrist"))  # ... the box PCK does


def test_ap_and_box_pck_of_perfect_and_wrong_predictions(tmp_path):
    from bnnpose.quantize.evaluate import box_side, oks_ap

    ann_file, images, _ = write_coco(tmp_path, SEEDS[:5])
    data = datasets.coco(ann_file, images)
    shared = skeleton.shared_joints(skeleton.COCO_JOINTS, data.joints)
    exact = np.stack([i.keypoints for i in data.instances])
    assert oks_ap(data, {"shared": shared, "predictions": exact}) == pytest.approx(1.0)
    sides = np.array([box_side(i) for i in data.instances])
    off = exact + sides[:, None, None] * 0.5  # half a box away: no keypoint similarity left
    assert oks_ap(data, {"shared": shared, "predictions": off}) < 0.05
    crop = datasets.synthetic(1).instances[0]
    assert box_side(crop) == pytest.approx(128 / 1.25)


def test_predictions_nearer_the_mirrored_labels_are_counted():
    from bnnpose.quantize.evaluate import mirrored_mask

    names = ["l_shoulder", "r_shoulder", "head_top"]
    gt = np.array([[[10.0, 0], [0, 0], [5, -8]]] * 3)
    visible = np.ones((3, 3), bool)
    pred = gt.copy()
    pred[1] = gt[1][[1, 0, 2]]  # left and right swapped: a back view taken for a front view
    pred[2] = gt[2] + 0.5  # near the labels: not mirrored
    assert mirrored_mask(pred, gt, visible, names).sum() == 1
    visible[1, :2] = False  # only the head left: as near mirrored as not
    assert mirrored_mask(pred, gt, visible, names).sum() == 0
    assert mirrored_mask(pred, gt, visible, ["face68_0", "face68_1", "face68_2"]) is None


def test_mirrored_people_are_counted_by_the_way_they_face():
    from bnnpose.quantize.evaluate import mirrored_by_facing, mirrored_mask

    names = ["l_shoulder", "r_shoulder", "l_hip", "r_hip"]
    front = np.array([[10.0, 0], [0, 0], [9, 20], [1, 20]])  # their left on the image's right
    back = front[[1, 0, 3, 2]]
    gt = np.stack([front, back, back, front])
    visible = np.ones((4, 4), bool)
    visible[3, 2:] = visible[3, 0] = False  # one shoulder only: neither
    pred = gt.copy()
    pred[1:3] = front  # both back views taken for front views
    mirrored = mirrored_mask(pred, gt, visible, names)
    assert mirrored.tolist() == [False, True, True, False]
    assert mirrored_by_facing(mirrored, gt, visible, names) == {
        "front": {"n_people": 1, "mirrored": 0}, "back": {"n_people": 2, "mirrored": 2},
        "unclear": {"n_people": 1, "mirrored": 0}}
