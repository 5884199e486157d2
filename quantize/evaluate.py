"""PCK (and PCKh, NME) of a heatmap network on labelled images, next to the mean-pose floor."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bnnpose.host.codec import HeatmapCodec, mean_pose_baseline, nme, pck, pckh, torso_size
from bnnpose.host.skeleton import MPII_JOINTS


def predict_heatmaps(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Run ``model`` on uint8 images ``[N, H, W, 3]``: float32 heatmaps ``[N, J, h, w]``.

    The model is put in eval mode for the call and restored to its previous mode afterwards.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
                chunk = chunk.to(device).permute(0, 3, 1, 2).float()
                out.append(model(chunk).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out)


def flip_test_heatmaps(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Flip-test averaging: the mean of the heatmaps of ``images`` and of their mirror images,
    the latter mirrored back with left and right joints swapped.

    The crop's pixel x maps to ``W - 1 - x`` and a stride-s heatmap's column c to
    ``w - 1 - c``, so mirroring the heatmap array is exact; no shift is needed.
    """
    from bnnpose.models.registry import model_joints
    from bnnpose.host.skeleton import flip_permutation, flip_permutation_of

    plain = predict_heatmaps(model, images, batch_size)
    mirrored = predict_heatmaps(model, np.ascontiguousarray(images[:, :, ::-1]), batch_size)
    cfg = getattr(model, "cfg", None)
    perm = (flip_permutation(plain.shape[1]) if cfg is None
            else flip_permutation_of(model_joints(cfg)))
    return (plain + mirrored[:, perm, :, ::-1]) / 2


def evaluate(
    model: nn.Module,
    images: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    train_keypoints: np.ndarray,
    *,
    batch_size: int = 64,
    thr: float = 0.2,
    joints: tuple[str, ...] | None = None,
    flip_test: bool = False,
) -> dict:
    """PCK@``thr`` of ``model`` and of the training mean pose, normalised by the torso
    diagonal, or by the inter-ocular distance for a layout without a torso (faces).
    ``flip_test`` scores :func:`flip_test_heatmaps`.

    Args:
        model: maps float ``[B, 3, H, W]`` in 0..255 to heatmaps ``[B, J, h, w]``.
        images: uint8 ``[N, H, W, 3]`` RGB.
        keypoints: ``[N, J, 2]`` ground truth (x, y) in image pixels.
        visible: ``[N, J]`` truthy for joints to score.
        train_keypoints: ``[M, J, 2]``, whose mean is the baseline prediction for every
            image, or that mean pose ``[J, 2]`` itself.
        joints: names of the J channels (default: the first J MPII joints).

    Returns:
        ``pck`` and ``pck_mean_pose`` (floats), ``per_joint`` {joint name: PCK of the model}
        and ``n_instances``, the number of joint instances scored.
    """
    if len(images) == 0:
        raise ValueError("evaluate needs at least one image")
    heatmaps = (flip_test_heatmaps if flip_test else predict_heatmaps)(model, images, batch_size)
    h, w = images.shape[1:3]
    codec = HeatmapCodec(input_size=(w, h), heatmap_size=(heatmaps.shape[-1], heatmaps.shape[-2]))
    pred, _ = codec.decode(heatmaps)
    joints = tuple(MPII_JOINTS[: heatmaps.shape[1]] if joints is None else joints)
    norm = _normaliser(np.asarray(keypoints), np.asarray(visible).astype(bool), joints)
    score, per_joint = pck(pred, keypoints, visible, norm, thr)
    mean_pose = np.asarray(train_keypoints)
    if mean_pose.ndim == 3:
        mean_pose = mean_pose_baseline(mean_pose)
    mean_pose = np.broadcast_to(mean_pose, np.shape(keypoints))
    score_mean_pose, _ = pck(mean_pose, keypoints, visible, norm, thr)
    counted = np.asarray(visible).astype(bool) & (np.isfinite(norm) & (norm > 0))[:, None]
    return {
        "pck": score,
        "pck_mean_pose": score_mean_pose,
        "per_joint": {name: float(v) for name, v in zip(joints, per_joint, strict=True)},
        "n_instances": int(counted.sum()),
    }


# --------------------------------------------------------------------------- bnnpose eval


def train_mean_pose(n: int = 512, cfg=None) -> np.ndarray:
    """Mean pose ``[J, 2]`` of ``n`` training renders in a model's input pixels: the
    baseline's prediction. Faces for a face layout, else bodies, with their MPII joints put
    where the model's layout names them (NaN elsewhere); ``cfg=None`` means MPII-16 at 128.

    Rendered from the first training seeds, so it is the same for every run and machine.
    """
    from bnnpose.quantize import synthetic

    size = 128 if cfg is None else cfg.input_size
    if cfg is not None and cfg.layout == "face68":
        from bnnpose.quantize import synthetic_face

        seeds = range(synthetic_face.TRAIN_SEED_OFFSET, synthetic_face.TRAIN_SEED_OFFSET + n)
        return mean_pose_baseline(synthetic_face.render_face_batch(seeds, size)[1])
    body = mean_pose_baseline(np.stack([
        synthetic.render_crop_sample(synthetic.TRAIN_SEED_OFFSET + i, size=size)["keypoints"]
        for i in range(n)]))
    if cfg is None:
        return body
    from bnnpose.models.registry import model_joints
    from bnnpose.quantize.datasets import to_layout

    return to_layout(body, np.ones(len(body), bool), MPII_JOINTS, model_joints(cfg))[0]


def evaluate_dataset(model: nn.Module, data, thr: float = 0.2, batch_size: int = 32,
                     mean_pose: np.ndarray | None = None, flip_test: bool = False) -> dict:
    """PCK@``thr`` of ``model`` and of the training mean pose on a :class:`Dataset`, with
    PCKh@0.5 and NME where the data has their normalisers; with ``flip_test`` the heatmaps
    are :func:`flip_test_heatmaps` (as the seeds' papers report).

    Each person is cut out with the host's top-down crop, run through the model, decoded
    with the shared codec and mapped back to image pixels; both predictions are scored on the
    joints model and data share by name.

    - ``pck``: normalised by the data's torso diagonal; None when the shared joints lack one.
      People without both joints of a diagonal cannot be normalised and are counted, not
      scored.
    - ``pckh``: when every person has a ``head_size`` (else ``n_people_without_head_box``
      says how many lack one). Its mean leaves out pelvis and thorax, as MPII's benchmark
      does; ``per_joint`` has them all.
    - ``nme``: when every person has an ``interocular`` distance.

    Raises:
        ValueError: the model and the data share no joint.
    """
    from tqdm import tqdm

    from bnnpose.host.preprocess import Crop, person_crop, warp
    from bnnpose.host.skeleton import shared_joints
    from bnnpose.quantize.datasets import iter_batches

    size = int(model.cfg.input_size)
    from bnnpose.models.registry import model_joints as joints_of

    model_joints = joints_of(model.cfg)
    shared = shared_joints(model_joints, data.joints)
    if not shared:
        raise ValueError(f"{data.name}: the model's joints ({_layout(model_joints)}) and the "
                         f"data's ({_layout(data.joints)}) share none")
    names = [n for _, _, n in shared]
    mean_pose = train_mean_pose(cfg=model.cfg) if mean_pose is None else mean_pose
    codec = None
    preds, base, gts, vis = [], [], [], []
    for batch in tqdm(list(iter_batches(data.instances, batch_size)), desc="eval", unit="batch",
                      disable=None):
        images, batch_crops = [], []
        for inst in batch:
            if inst.box is None:
                h, w = inst.image.shape[:2]
                crop = Crop(np.array([[size / w, 0, (size / w - 1) / 2],
                                      [0, size / h, (size / h - 1) / 2]]), (size, size))
                images.append(inst.image if (h, w) == (size, size) else warp(inst.image, crop))
            else:
                crop = person_crop(inst.image.shape, inst.box, (size, size))
                images.append(warp(inst.image, crop))
            batch_crops.append(crop)
        heat = (flip_test_heatmaps if flip_test else predict_heatmaps)(model, np.stack(images))
        if codec is None:
            codec = HeatmapCodec((size, size), (heat.shape[-1], heat.shape[-2]))
        kp_crop, _ = codec.decode(heat)
        for inst, crop, kp in zip(batch, batch_crops, kp_crop, strict=True):
            preds.append(crop.to_original(kp))
            base.append(crop.to_original(mean_pose[: len(model_joints)]))
            gts.append(inst.keypoints)
            vis.append(inst.visible)
    mi = [m for m, _, _ in shared]
    di = [d for _, d, _ in shared]
    pred, pred_base = np.stack(preds)[:, mi], np.stack(base)[:, mi]
    gt = np.stack(gts)[:, di]
    visible = np.stack(vis)[:, di]
    per_joint: dict[str, dict] = {n: {"pck": None, "pck_mean_pose": None} for n in names}
    result = {"pck": None, "pck_mean_pose": None, "thr": thr}

    # The shared joints are in model order, so the torso diagonal is found by name.
    norm = _torso(gt, visible, {n: k for k, n in enumerate(names)})
    if norm is None:
        counted = visible
        result.update(n_people=len(gt), n_people_without_torso=0)
    else:
        counted = visible & (np.isfinite(norm) & (norm > 0))[:, None]
        for key, p in (("pck", pred), ("pck_mean_pose", pred_base)):
            result[key], joint_scores = pck(p, gt, visible, norm, thr)
            for n, v in zip(names, joint_scores, strict=True):
                per_joint[n][key] = float(v)
        result.update(n_people=int(np.isfinite(norm).sum()),
                      n_people_without_torso=int((~np.isfinite(norm)).sum()))
    for k, n in enumerate(names):
        per_joint[n]["n"] = int(counted[:, k].sum())

    if norm is not None:
        # Every person, hips in view or not: the person box's longer side normalises.
        box = np.array([box_side(i) for i in data.instances])
        result.update(thr_box=BOX_THR, n_people_box=int((box > 0).sum()))
        for key, p in (("pck_box", pred), ("pck_box_mean_pose", pred_base)):
            result[key], joint_scores = pck(p, gt, visible, box, BOX_THR)
            for n, v in zip(names, joint_scores, strict=True):
                per_joint[n][key] = _finite(v)
        result["by_extent"] = _by_extent(pred, pred_base, gt, visible, norm, box, names, thr)

    mirrored = mirrored_mask(pred, gt, visible, names)
    result["n_people_mirrored"] = None if mirrored is None else int(mirrored.sum())
    if mirrored is not None:
        result["mirrored_by_facing"] = mirrored_by_facing(mirrored, gt, visible, names)

    heads = [i.head_size for i in data.instances]
    if None in heads:
        result["n_people_without_head_box"] = heads.count(None)
    else:
        head = np.array(heads, np.float64)
        benchmark = visible & ~np.isin(names, ("pelvis", "thorax"))
        for key, p in (("pckh", pred), ("pckh_mean_pose", pred_base)):
            result[key] = pckh(p, gt, benchmark, head)[0]
            for n, v in zip(names, pckh(p, gt, visible, head)[1], strict=True):
                per_joint[n][key] = float(v)

    interocular = [i.interocular for i in data.instances]
    if None not in interocular:
        io = np.array(interocular, np.float64)
        result["nme"] = nme(pred, gt, visible, io)[0]
        result["nme_mean_pose"] = nme(pred_base, gt, visible, io)[0]

    return {
        **result, "n_instances": int(counted.sum()), "joints": names, "per_joint": per_joint,
        "predictions": np.stack(preds), "shared": shared,
    }


def _layout(joints: tuple[str, ...]) -> str:
    return f"{len(joints)}: {joints[0]} ... {joints[-1]}"


#: PCK threshold of the box normaliser (a fraction of the person box's longer side, as
#: mmpose's ``PCKAccuracy(norm_item="bbox")``): every person has a box, hips in view or not.
BOX_THR = 0.1
#: A person is "upper body" when none of these joints is labelled (ankles out of view).
FULL_BODY_JOINTS = ("left_ankle", "right_ankle")
#: A prediction is "mirrored" when its mean joint error against the labels with left and right
#: swapped is below this share of its error against the labels: the network took a person
#: facing the camera for one seen from behind, or the reverse.
MIRROR_RATIO = 0.7


def box_side(inst) -> float:
    """The longer side of a person's box in image pixels: the labelled box, or for an image
    that is already the host's crop, the box that crop was grown from."""
    from bnnpose.host.preprocess import DEFAULT_MARGIN

    if inst.box is not None:
        x0, y0, x1, y1 = inst.box
        return float(max(x1 - x0, y1 - y0))
    h, w = inst.image.shape[:2]
    return max(h, w) / DEFAULT_MARGIN


def _finite(v) -> float | None:
    return float(v) if np.isfinite(v) else None


def _by_extent(pred, base, gt, visible, norm, box, names, thr) -> dict:
    """PCK (torso and box) of upper-body people (no ankle labelled) and full-body people."""
    from bnnpose.host.skeleton import canonical

    ankles = [k for k, n in enumerate(names) if canonical(n) in FULL_BODY_JOINTS]
    full = visible[:, ankles].any(axis=1) if ankles else np.zeros(len(gt), bool)
    out = {}
    for group, rows in (("upper_body", ~full), ("full_body", full)):
        entry = {"n_people": int(rows.sum())}
        for key, p, n, t in (("pck", pred, norm, thr), ("pck_mean_pose", base, norm, thr),
                             ("pck_box", pred, box, BOX_THR),
                             ("pck_box_mean_pose", base, box, BOX_THR)):
            entry[key] = (None if n is None or not rows.any()
                          else _finite(pck(p[rows], gt[rows], visible[rows], n[rows], t)[0]))
        out[group] = entry
    return out


def mirrored_mask(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray,
                  names: list[str]) -> np.ndarray | None:
    """Per person: do the predictions lie nearer their labels mirrored left for right than
    the labels themselves (:data:`MIRROR_RATIO`)? None when no joint has a left-right partner
    among ``names`` (faces)."""
    from bnnpose.host.skeleton import canonical

    order = {canonical(n): k for k, n in enumerate(names)}
    partner = np.arange(len(names))
    for c, k in order.items():
        for side, other in (("left_", "right_"), ("right_", "left_")):
            if c.startswith(side) and other + c[len(side):] in order:
                partner[k] = order[other + c[len(side):]]
    if (partner == np.arange(len(names))).all():
        return None
    err = np.linalg.norm(pred - gt, axis=-1)
    err_mirrored = np.linalg.norm(pred[:, partner] - gt, axis=-1)
    n = visible.sum(axis=1)
    mean = np.where(visible, err, 0).sum(axis=1) / np.maximum(n, 1)
    mean_mirrored = np.where(visible, err_mirrored, 0).sum(axis=1) / np.maximum(n, 1)
    return (n > 0) & (mean_mirrored < MIRROR_RATIO * mean)


def mirrored_by_facing(mirrored: np.ndarray, gt: np.ndarray, visible: np.ndarray,
                       names: list[str]) -> dict:
    """Mirrored people among those whose labels face the camera, turn away from it, or say
    neither (``quantize.facing.facing_targets``): a network that cannot tell a back from a
    front mirrors the second group."""
    from bnnpose.quantize.facing import facing_targets

    front, scored = facing_targets(np.nan_to_num(gt), visible.astype(np.float32), tuple(names))
    groups = {"front": (scored > 0) & (front > 0), "back": (scored > 0) & (front == 0),
              "unclear": scored == 0}
    return {g: {"n_people": int(rows.sum()), "mirrored": int(mirrored[rows].sum())}
            for g, rows in groups.items()}


#: Torso diagonals by canonical joint name; where both exist, the last one wins, as in
#: codec.torso_size.
TORSO_DIAGONALS = (("right_shoulder", "left_hip"), ("left_shoulder", "right_hip"))
#: The outer eye corners of the iBUG face: the NME normaliser of 300W.
EYE_CORNERS = (("face68_36", "face68_45"),)


def _normaliser(gt: np.ndarray, visible: np.ndarray, joints: tuple[str, ...]) -> np.ndarray:
    """Per-person PCK normaliser of arrays in ``joints`` order: :func:`codec.torso_size`
    for MPII, the torso diagonal by name for other body layouts, else the outer eye corners'
    distance (NaN where a person has neither)."""
    if joints == tuple(MPII_JOINTS[: len(joints)]):
        return torso_size(gt, visible)
    order = {n: k for k, n in enumerate(joints)}
    for pairs in (TORSO_DIAGONALS, EYE_CORNERS):
        size = _pair_distance(gt, visible, order, pairs)
        if size is not None:
            return size
    return np.full(len(gt), np.nan)


def _torso(gt: np.ndarray, visible: np.ndarray, order: dict[str, int]) -> np.ndarray | None:
    """Torso diagonal per person (NaN without one), None when no diagonal's joints are shared."""
    return _pair_distance(gt, visible, order, TORSO_DIAGONALS)


def _pair_distance(gt: np.ndarray, visible: np.ndarray, order: dict[str, int],
                   pairs: tuple[tuple[str, str], ...]) -> np.ndarray | None:
    """Per person, the distance of the last of ``pairs`` whose two joints are visible (NaN
    without one); None when no pair is in ``order``, which maps joint names in either
    spelling (``l_hip`` or ``left_hip``) to indices."""
    from bnnpose.host.skeleton import canonical

    order = {canonical(n): k for n, k in order.items()}
    present = [p for p in pairs if set(p) <= set(order)]
    if not present:
        return None
    size = np.full(len(gt), np.nan)
    for a, b in present:
        ia, ib = order[a], order[b]
        ok = visible[:, ia] & visible[:, ib]
        size[ok] = np.linalg.norm(gt[ok, ia] - gt[ok, ib], axis=-1)
    return size


def oks_ap(data, result: dict) -> float | None:
    """COCO keypoint AP (pycocotools' COCOeval, OKS) of the scored people, over the joints
    model and data share that COCO gives a sigma (None without any).

    Each person is one ground truth and one detection of confidence 1. OKS's area is the
    person's COCO ``area`` where the data has one, else its box's area (for a crop: the box
    the crop was grown from).
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from bnnpose.host.skeleton import COCO_SIGMAS, canonical

    kept = [(m, d, n) for m, d, n in result["shared"] if canonical(n) in COCO_SIGMAS]
    if not kept:
        return None
    mi, di = [m for m, _, _ in kept], [d for _, d, _ in kept]
    gts, dets, images = [], [], {}
    for k, (inst, pred) in enumerate(zip(data.instances, result["predictions"], strict=True)):
        image_id = images.setdefault(inst.source, len(images) + 1)
        ann = data.coco.anns[inst.ann_id] if data.coco is not None else None
        if ann is not None and ann.get("area"):
            area = float(ann["area"])
        elif inst.box is not None:
            area = float((inst.box[2] - inst.box[0]) * (inst.box[3] - inst.box[1]))
        else:
            area = box_side(inst) ** 2
        vis = inst.visible[di]
        kp = np.concatenate([inst.keypoints[di], 2.0 * vis[:, None]], axis=1)
        kp[~vis] = 0
        (x0, y0), (x1, y1) = ((kp[vis, :2].min(0), kp[vis, :2].max(0)) if vis.any()
                              else ((0, 0), (1, 1)))
        gts.append({"id": k + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                    "area": area, "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "keypoints": kp.reshape(-1).tolist(), "num_keypoints": int(vis.sum())})
        det = np.concatenate([pred[mi], np.ones((len(mi), 1))], axis=1)
        dets.append({"image_id": image_id, "category_id": 1,
                     "keypoints": det.reshape(-1).tolist(), "score": 1.0})
    gt_api = COCO()
    gt_api.dataset = {"info": {}, "licenses": [], "categories": [{"id": 1, "name": "person"}],
                      "images": [{"id": i} for i in images.values()], "annotations": gts}
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api.createIndex()
        ev = COCOeval(gt_api, gt_api.loadRes(dets), "keypoints")
        ev.params.kpt_oks_sigmas = np.array([COCO_SIGMAS[canonical(n)] for _, _, n in kept])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def main(argv: list[str] | None = None) -> int:
    """``bnnpose eval``: score a checkpoint on synthetic, COCO, MPII or 300W data."""
    import argparse
    from pathlib import Path

    from bnnpose.host.common import atomic_dir, versions, write_json
    from bnnpose.host.draw import keypoints_grid
    from bnnpose.models.registry import model_joints
    from bnnpose.quantize import datasets
    from bnnpose.models.checkpoint_io import DEFAULT_MODEL, load_checkpoint, shipped_checkpoint

    p = argparse.ArgumentParser(prog="bnnpose eval", description=main.__doc__)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help=f"default: the shipped models/checkpoints/{DEFAULT_MODEL}.pt")
    p.add_argument("--data", default="synthetic:512", help=datasets.DATA_SPECS)
    p.add_argument("--images", type=Path, help="image folder of coco: and mpii: data")
    p.add_argument("--headboxes", type=Path,
                   help="MPII head boxes for PCKh of mpii:FILE.json (mmpose's mpii_gt_val.mat)")
    p.add_argument("--thr", type=float, default=0.2, help="PCK threshold (default: 0.2)")
    p.add_argument("--flip-test", action="store_true",
                   help="average each person's heatmaps with those of its mirror image")
    p.add_argument("--out", type=Path, default=Path("out/eval"))
    a = p.parse_args(argv)

    ckpt = a.checkpoint or shipped_checkpoint()
    model, meta = load_checkpoint(ckpt)
    data = datasets.from_spec(a.data, a.images, a.headboxes)
    for reason, n in data.skipped.items():
        print(f"skipped {n} people: {reason}")
    result = evaluate_dataset(model, data, a.thr, flip_test=a.flip_test)
    if result["n_people_without_torso"]:
        print(f"not scored: {result['n_people_without_torso']} people without a labelled "
              "torso diagonal (PCK's normaliser)")
    if a.data.startswith("mpii:") and "pckh" not in result:
        print(f"no PCKh: {result['n_people_without_head_box']} people without a head box"
              + ("" if a.headboxes else " (--headboxes gives them to a JSON file)"))
    metrics = {
        "data": data.name, "checkpoint": str(ckpt), "model": meta["model"],
        "flip_test": a.flip_test,
        **{k: v for k, v in result.items() if k not in ("predictions", "shared")},
        "skipped": data.skipped, "versions": versions(),
    }
    metrics["normalisers"] = {
        "pck": "torso diagonal (a shoulder and the opposite hip); people without one are "
               "counted in n_people_without_torso, not scored",
        "pck_box": f"longer side of the person box, threshold {BOX_THR}: every person",
        "coco_ap": "OKS over the shared joints with COCO sigmas; area = COCO area, else the "
                   "person box's area",
        "by_extent": "upper_body: no ankle labelled; full_body: an ankle labelled"}
    metrics["mirrored_rule"] = (f"n_people_mirrored: people whose predictions lie nearer their "
                                f"labels mirrored left for right (mean joint error below "
                                f"{MIRROR_RATIO} of that against the labels); mirrored_by_facing: "
                                f"the same among people whose labels face the camera (front), "
                                f"turn away (back) or say neither (unclear)")
    metrics["coco_ap"] = oks_ap(data, result)
    with atomic_dir(a.out) as tmp:
        write_json(tmp / "metrics.json", metrics)
        shown = data.instances[:16]
        preds = result["predictions"][: len(shown)]
        keypoints_grid([i.image for i in shown], list(preds), [np.ones(len(p)) for p in preds],
                       path=tmp / "predictions.png", cols=4, joints=model_joints(model.cfg))
    columns = [("pck", "PCK"), ("pck_mean_pose", "mean pose")]
    if "pckh" in metrics:
        columns += [("pckh", "PCKh"), ("pckh_mean_pose", "mean pose")]
    width = max(len(n) for n in result["joints"])
    print(f"{'joint':<{width}}" + "".join(f"  {h:>9}" for _, h in columns) + f"  {'n':>6}")
    for n, v in metrics["per_joint"].items():
        print(f"{n:<{width}}" + "".join(f"  {_number(v[k]):>9}" for k, _ in columns)
              + f"  {v['n']:>6}")
    scores = [f"{label} {_number(metrics[key], digits)} (mean pose "
              f"{_number(metrics[key + '_mean_pose'], digits)})"
              for key, label, digits in (("pck", f"PCK@{a.thr:g}", 3), ("pckh", "PCKh@0.5", 3),
                                         ("nme", "NME", 4))
              if metrics.get(key) is not None]
    print(f"{', '.join(scores)} on {metrics['n_instances']} joints of {metrics['n_people']} "
          f"people -> {a.out}"
          + (f"; every person: PCK@{BOX_THR:g} of the box {_number(metrics['pck_box'])} "
             f"({metrics['n_people_box']} people)" if "pck_box" in metrics else "")
          + (f"; COCO AP {metrics['coco_ap']:.3f}" if metrics["coco_ap"] is not None else "")
          + (f"; left-right mirrored: {metrics['n_people_mirrored']} of "
             f"{len(data.instances)} people ({_by_facing(metrics['mirrored_by_facing'])})"
             if metrics["n_people_mirrored"] else ""))
    return 0


def _by_facing(groups: dict) -> str:
    return ", ".join(f"{g['mirrored']} of {g['n_people']} {name}" for name, g in groups.items()
                     if g["n_people"])


def _number(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"
