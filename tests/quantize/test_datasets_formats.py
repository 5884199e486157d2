"""MPII (JSON and the official .mat) and 300W loaders, PCKh and NME, on files written here."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from bnnpose.host.common import BnnposeError
from bnnpose.host.codec import nme, pckh
from bnnpose.host.skeleton import FACE68_JOINTS, MPII_JOINTS
from bnnpose.quantize import datasets, synthetic
from bnnpose.quantize.evaluate import evaluate_dataset, main

SEEDS = range(synthetic.EVAL_SEED_OFFSET, synthetic.EVAL_SEED_OFFSET + 12)
J = {name: i for i, name in enumerate(MPII_JOINTS)}


def grey(path: Path, w: int = 120, h: int = 100) -> None:
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))


# --------------------------------------------------------------------------- metrics


def test_pckh_by_hand():
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, :, 0] = [3, 6, 4]  # head size 10: 0.3, 0.6, 0.4
    pred[1, :, 1] = [9, 11, 30]  # head size 20: 0.45, 0.55, 1.5 (unlabelled)
    visible = np.array([[1, 1, 1], [1, 1, 0]], bool)
    mean, per_joint = pckh(pred, gt, visible, np.array([10.0, 20.0]))
    assert mean == pytest.approx(3 / 5)
    np.testing.assert_array_equal(per_joint, [1.0, 0.0, 1.0])
    assert pckh(pred, gt, visible, np.array([10.0, 20.0]), thr=0.6)[0] == 1.0


def test_nme_by_hand():
    gt = np.zeros((4, 3, 2))
    pred = gt.copy()
    pred[:, :, 0] = [3, 6, 4]
    pred[1, :, 0] = [9, 11, 30]
    visible = np.ones((4, 3), bool)
    visible[1, 2] = False  # the point off by 30 is not scored
    visible[3] = False  # no point to score
    norm = np.array([10.0, 20.0, np.nan, 10.0])
    mean, per_image = nme(pred, gt, visible, norm)
    np.testing.assert_allclose(per_image[:2], [(0.3 + 0.6 + 0.4) / 3, (0.45 + 0.55) / 2])
    assert np.isnan(per_image[2:]).all()
    assert mean == pytest.approx((13 / 30 + 0.5) / 2)


# --------------------------------------------------------------------------- MPII JSON


def mpii_entry(image: str, joints: dict, center=(60.0, 40.0), scale=0.3, **extra) -> dict:
    """One person in 1-based pixels; ``joints`` maps names to (x, y), the rest unlabelled."""
    xy = [list(joints.get(n, (-1.0, -1.0))) for n in MPII_JOINTS]
    return {"image": image, "joints": xy, "joints_vis": [int(n in joints) for n in MPII_JOINTS],
            "center": list(center), "scale": scale, **extra}


def write_json(path: Path, entries: list) -> Path:
    path.write_text(json.dumps(entries))
    return path


def test_mpii_json_people(tmp_path):
    grey(tmp_path / "a.jpg")
    grey(tmp_path / "b.jpg")
    ann = write_json(tmp_path / "val.json", [
        mpii_entry("a.jpg", {"head_top": (11, 21), "r_ankle": (120, 100)},
                   head_box=[5, 10, 35, 50]),
        mpii_entry("a.jpg", {}),  # nobody labelled: skipped
        mpii_entry("b.jpg", {"pelvis": (1, 1)}, center=(51, 31), scale=0.5),
    ])
    data = datasets.mpii_json(ann, tmp_path)
    assert data.joints == MPII_JOINTS and data.skipped == {"no labelled joints": 1}
    first, second = data.instances
    assert first.keypoints[J["head_top"]].tolist() == [10, 20]
    assert first.keypoints[J["r_ankle"]].tolist() == [119, 99]  # the last pixel's centre
    assert first.visible.sum() == 2 and first.visible[[J["head_top"], J["r_ankle"]]].all()
    # scale * 200 = 60 px square about the 0-based centre (59, 39), moved down 15 * 0.3 px.
    assert first.box == pytest.approx((29, 13.5, 89, 73.5))
    assert first.head_size == pytest.approx(0.6 * 50)  # 0.6 x the 30 x 40 box's diagonal
    assert first.source == str(tmp_path / "a.jpg") and first.interocular is None
    assert second.keypoints[J["pelvis"]].tolist() == [0, 0] and second.head_size is None
    assert second.box == pytest.approx((0, -12.5, 100, 87.5))

    # mmpose's mpii_gt_val.mat: one (x1, y1; x2, y2) box per entry, skipped people included.
    boxes = np.zeros((2, 2, 3))
    boxes[:, :, 2] = [[1, 1], [7, 9]]  # 6 x 8 box: diagonal 10
    savemat(tmp_path / "gt_val.mat", {"headboxes_src": boxes})
    with_file = datasets.mpii_json(ann, tmp_path, tmp_path / "gt_val.mat")
    assert [i.head_size for i in with_file.instances] == pytest.approx([0.0, 6.0])
    savemat(tmp_path / "short.mat", {"headboxes_src": boxes[:, :, :2]})
    with pytest.raises(BnnposeError, match=r"expected \(2, 2, 3\) for the 3 annotations"):
        datasets.mpii_json(ann, tmp_path, tmp_path / "short.mat")


def test_bad_mpii_json_inputs_are_one_line_errors(tmp_path):
    grey(tmp_path / "a.jpg")
    good = [mpii_entry("a.jpg", {"thorax": (5, 5)})]
    ann = write_json(tmp_path / "ann.json", good)
    cases = {
        "annotation file not found": (tmp_path / "nope.json", tmp_path),
        "image folder not found": (ann, tmp_path / "nope"),
        "not an MPII JSON annotation file": (write_json(tmp_path / "dict.json", {"a": 1}),
                                             tmp_path),
        "l_wrist outside its 120x100 image": (
            write_json(tmp_path / "out.json", [mpii_entry("a.jpg", {"l_wrist": (122, 5)})]),
            tmp_path),
        "no person to evaluate": (write_json(tmp_path / "none.json", [mpii_entry("a.jpg", {})]),
                                  tmp_path),
        "cannot decode image": (write_json(tmp_path / "broken.json",
                                           [mpii_entry("broken.jpg", {"thorax": (5, 5)})]),
                                tmp_path),
    }
    (tmp_path / "broken.jpg").write_bytes(b"broken")
    (tmp_path / "junk.json").write_text("{not json")
    cases["not an MPII JSON annotation file: "] = (tmp_path / "junk.json", tmp_path)
    for message, (path, images) in cases.items():
        with pytest.raises(BnnposeError, match=message) as err:
            datasets.mpii_json(path, images)
        assert "\n" not in str(err.value), message
    with pytest.raises(BnnposeError, match="head box file not found"):
        datasets.mpii_json(ann, tmp_path, tmp_path / "nope.mat")


# --------------------------------------------------------------------------- MPII release .mat


def struct_array(records: list[dict]) -> np.ndarray:
    """A MATLAB 1 x n struct array for savemat; loadmat(squeeze_me=True) makes a 1 x 1 one a
    bare struct, as it does with the real release."""
    out = np.empty((1, len(records)), dtype=[(k, object) for k in records[0]])
    for i, record in enumerate(records):
        for k, v in record.items():
            out[k][0, i] = v
    return out


def annorect(points: list[tuple] | None, head=(10, 10, 30, 34), objpos=(60, 50), scale=0.4):
    """One person of the release: points as (MPII id, x, y) in 1-based pixels."""
    x1, y1, x2, y2 = head
    rect = {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "scale": scale,
            "objpos": {"x": objpos[0], "y": objpos[1]}}
    rect["annopoints"] = np.zeros((0, 0)) if points is None else {"point": struct_array(
        [{"id": i, "x": float(x), "y": float(y), "is_visible": 1} for i, x, y in points])}
    return rect


def write_release(path: Path, images: list[tuple[str, list[dict] | None, int]]) -> Path:
    """``images``: (file name, annorects or None for none, img_train) per image."""
    annolist = struct_array([
        {"image": {"name": name},
         "annorect": np.zeros((0, 0)) if rects is None else struct_array(rects)}
        for name, rects, _ in images])
    savemat(path, {"RELEASE": {"annolist": annolist,
                               "img_train": np.array([[t for *_, t in images]])}})
    return path


def test_mpii_release_people(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        grey(tmp_path / name)
    mat = write_release(tmp_path / "release.mat", [
        # Two people, one without labelled joints.
        ("a.jpg", [annorect([(9, 21, 31), (0, 1, 100)]), annorect(None)], 1),
        # One person with a single point: squeeze_me hands both back as bare structs.
        ("b.jpg", [annorect([(7, 120, 1)], head=(1, 2, 4, 6), objpos=(31, 21), scale=0.5)], 1),
        ("c.jpg", [{"scale": 1.0, "objpos": {"x": 5, "y": 5}}], 0),  # a test image
        ("d.jpg", None, 1),  # nobody
    ])
    data = datasets.mpii_mat(mat, tmp_path)
    assert data.name == f"mpii:{mat}" and data.joints == MPII_JOINTS
    assert data.skipped == {"no labelled joints": 2}
    a, b = data.instances
    assert a.keypoints[J["head_top"]].tolist() == [20, 30]
    assert a.keypoints[J["r_ankle"]].tolist() == [0, 99]
    assert a.visible.sum() == 2 and a.visible[[J["head_top"], J["r_ankle"]]].all()
    assert a.head_size == pytest.approx(0.6 * np.hypot(20, 24))
    # scale * 200 = 80 px square about the 0-based (59, 49), moved down 15 * 0.4 px.
    assert a.box == pytest.approx((19, 15, 99, 95))
    assert b.keypoints[J["thorax"]].tolist() == [119, 0] and b.visible.sum() == 1
    assert b.head_size == pytest.approx(0.6 * 5) and b.source == str(tmp_path / "b.jpg")
    assert b.box == pytest.approx((-20, -22.5, 80, 77.5))

    train = datasets.mpii_mat(mat, tmp_path, split="train")
    assert len(train.instances) == 2
    assert train.skipped == {"no labelled joints": 1, "not a training image": 1}


def test_bad_mpii_release_inputs_are_one_line_errors(tmp_path):
    grey(tmp_path / "a.jpg")
    savemat(tmp_path / "other.mat", {"headboxes_src": np.zeros((2, 2, 1))})
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    cases = {
        "annotation file not found": tmp_path / "nope.mat",
        "not an MPII release file: .*other.mat": tmp_path / "other.mat",
        "not an MPII release file: .*junk.mat": tmp_path / "junk.mat",
        "a.jpg annorect 2 puts l_ankle outside its 120x100 image": write_release(
            tmp_path / "out.mat",
            [("a.jpg", [annorect([(9, 5, 5)]), annorect([(5, 5, 0)])], 1)]),
        "no person to evaluate": write_release(tmp_path / "none.mat",
                                               [("a.jpg", [annorect(None)], 1)]),
    }
    for message, path in cases.items():
        with pytest.raises(BnnposeError, match=message) as err:
            datasets.mpii_mat(path, tmp_path)
        assert "\n" not in str(err.value), message
    with pytest.raises(BnnposeError, match="unknown MPII split 'val'"):
        datasets.mpii_mat(tmp_path / "none.mat", tmp_path, split="val")


# --------------------------------------------------------------------------- 300W


def write_pts(path: Path, xy: np.ndarray) -> Path:
    rows = "\n".join(f"{x:.3f} {y:.3f}" for x, y in xy)
    path.write_text(f"version: 1\nn_points:  {len(xy)}\n{{\n{rows}\n}}\n")
    return path


def face(shift: float = 0.0) -> np.ndarray:
    """68 points in 1-based pixels, spread over x 11..78, y 21..41."""
    xy = np.stack([np.arange(68) + 11.0, 21 + (np.arange(68) % 21.0)], axis=1)
    return xy + shift


def test_w300_faces(tmp_path):
    (tmp_path / "helen").mkdir()
    write_pts(tmp_path / "helen" / "1.pts", face())
    grey(tmp_path / "helen" / "1.png")
    write_pts(tmp_path / "z.pts", face(2.0))
    grey(tmp_path / "z.jpg")
    data = datasets.w300(tmp_path)
    assert data.joints == FACE68_JOINTS and len(FACE68_JOINTS) == 68 and data.skipped == {}
    first, second = data.instances
    assert first.source == str(tmp_path / "helen" / "1.png")
    assert second.source == str(tmp_path / "z.jpg")
    np.testing.assert_allclose(first.keypoints, face() - 1)
    assert first.visible.all() and first.head_size is None
    assert first.box == pytest.approx((10, 20, 77, 40))
    assert first.interocular == pytest.approx(np.linalg.norm(face()[36] - face()[45]))
    listed = datasets.w300([tmp_path / "z.pts"])
    assert len(listed.instances) == 1 and listed.instances[0].box == pytest.approx((12, 22, 79, 42))


def test_bad_w300_inputs_are_one_line_errors(tmp_path):
    grey(tmp_path / "a.png")
    (tmp_path / "bad.pts").write_text("version: 1\nn_points: 68\n{\n1 2 3\n}\n")
    write_pts(tmp_path / "few.pts", face()[:5])
    write_pts(tmp_path / "lonely.pts", face())
    write_pts(tmp_path / "a.pts", face(50.0))
    (tmp_path / "empty").mkdir()
    cases = {
        "300W folder not found": tmp_path / "nope",
        ".pts file not found": [tmp_path / "nope.pts"],
        "not a .pts landmark file": [tmp_path / "bad.pts"],
        "5 points, 300W has 68": [tmp_path / "few.pts"],
        "no image beside it": [tmp_path / "lonely.pts"],
        "face68_.* outside its 120x100 image": [tmp_path / "a.pts"],
        "no person to evaluate": tmp_path / "empty",
    }
    for message, source in cases.items():
        with pytest.raises(BnnposeError, match=message) as err:
            datasets.w300(source)
        assert "\n" not in str(err.value), message


def test_body_model_on_faces_is_a_one_line_error(shipped, mean_pose, tmp_path):
    write_pts(tmp_path / "1.pts", face())
    grey(tmp_path / "1.png")
    with pytest.raises(ValueError, match=r"model's joints \(16: r_ankle \.\.\. l_wrist\) and the "
                                         r"data's \(68: face68_0 \.\.\. face68_67\) share none"):
        evaluate_dataset(shipped, datasets.w300(tmp_path), mean_pose=mean_pose)


# --------------------------------------------------------------------------- evaluation


def write_rendered_mpii(folder: Path, seeds=SEEDS) -> tuple[Path, Path]:
    """Rendered people as an MPII JSON and head box .mat, boxed so that the host crops them
    exactly as the synthetic eval's crops."""
    entries, heads = [], []
    for seed in seeds:
        s = synthetic.render_sample(seed, synthetic.CROP_CANVAS)
        cv2.imwrite(str(folder / f"{seed}.png"), cv2.cvtColor(s["image"], cv2.COLOR_RGB2BGR))
        x0, y0, x1, y1 = synthetic.person_box(seed, s["keypoints"], s["visible"])
        scale = max(x1 - x0, y1 - y0) / 200
        kp = s["keypoints"].astype(np.float64) + 1
        entries.append({"image": f"{seed}.png",
                        "joints": np.where(s["visible"][:, None], kp, -1).tolist(),
                        "joints_vis": s["visible"].astype(int).tolist(),
                        "center": [(x0 + x1) / 2 + 1, (y0 + y1) / 2 + 1 - 15 * scale],
                        "scale": scale})
        # A square head box on the head_top - upper_neck segment, as MPII's head rectangles.
        top, neck = kp[J["head_top"]], kp[J["upper_neck"]]
        half = np.linalg.norm(top - neck) / 2
        heads.append([(top + neck) / 2 - half, (top + neck) / 2 + half])
    write_json(folder / "mpii.json", entries)
    savemat(folder / "gt.mat", {"headboxes_src": np.transpose(heads, (1, 2, 0))})
    return folder / "mpii.json", folder / "gt.mat"


def test_mpii_people_score_as_their_synthetic_crops(shipped, mean_pose, tmp_path):
    ann, heads = write_rendered_mpii(tmp_path)
    on_mpii = evaluate_dataset(shipped, datasets.mpii_json(ann, tmp_path, heads),
                               mean_pose=mean_pose)
    on_crops = evaluate_dataset(shipped, datasets.synthetic(12), mean_pose=mean_pose)
    assert on_mpii["joints"] == list(MPII_JOINTS)
    # 1-based labels and MPII's box convention must land on the very crops the synthetic
    # eval scores, so PCK agrees joint by joint.
    for n in MPII_JOINTS:
        assert on_mpii["per_joint"][n]["n"] == on_crops["per_joint"][n]["n"], n
        assert on_mpii["per_joint"][n]["pck"] == pytest.approx(on_crops["per_joint"][n]["pck"]), n
    assert 0 <= on_mpii["pckh"] <= 1 and "pckh" in on_mpii["per_joint"]["pelvis"]
    assert "pckh" not in on_crops and on_crops["n_people_without_head_box"] == 12


def test_eval_cli_on_mpii_json(tmp_path):
    ann, heads = write_rendered_mpii(tmp_path, SEEDS[:4])
    assert main(["--data", f"mpii:{ann}", "--images", str(tmp_path), "--headboxes", str(heads),
                 "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for key in ("pck", "pck_mean_pose", "n_instances", "joints", "pckh", "pckh_mean_pose"):
        assert key in metrics, key
    assert 0 <= metrics["pckh"] <= 1 and 0 <= metrics["pckh_mean_pose"] <= 1
    assert 0 <= metrics["per_joint"]["head_top"]["pckh"] <= 1
    assert metrics["n_instances"] == sum(v["n"] for v in metrics["per_joint"].values())


def test_nme_and_torso_free_scoring(shipped, mean_pose):
    data = datasets.synthetic(4)
    for inst in data.instances:
        inst.interocular = 10.0
    result = evaluate_dataset(shipped, data, mean_pose=mean_pose)
    assert result["nme"] > 0 and result["nme_mean_pose"] > 0 and result["pck"] is not None
    # Without the hips there is no torso diagonal: no PCK, but the other metrics still come.
    keep = [i for i, n in enumerate(MPII_JOINTS) if not n.endswith("hip")]
    no_hips = datasets.Dataset("no hips", tuple(MPII_JOINTS[i] for i in keep), [
        datasets.Instance(i.image, None, i.keypoints[keep], i.visible[keep], i.source,
                          head_size=20.0, interocular=10.0) for i in data.instances], {})
    result = evaluate_dataset(shipped, no_hips, mean_pose=mean_pose)
    assert result["pck"] is None and result["per_joint"]["thorax"]["pck"] is None
    assert 0 <= result["pckh"] <= 1 and result["nme"] > 0


def test_data_specs(tmp_path):
    with pytest.raises(BnnposeError, match="needs --images DIR"):
        datasets.from_spec("mpii:x.json")
    with pytest.raises(BnnposeError, match="--headboxes goes with --data mpii:FILE.json"):
        datasets.from_spec("mpii:x.mat", tmp_path, tmp_path / "h.mat")
    with pytest.raises(BnnposeError, match="--images is for coco: and mpii: data"):
        datasets.from_spec("300w:x", tmp_path)
    with pytest.raises(BnnposeError, match="unknown --data 'lsp:x'"):
        datasets.from_spec("lsp:x")
