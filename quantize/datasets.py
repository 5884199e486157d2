"""Labelled people for evaluation: held-out synthetic crops, or COCO-format keypoint files.

Every source yields :class:`Instance` records (one person: image, box, labelled joints by name)
so evaluation never cares where the labels came from. Joints are matched to a model's joints by
name (COCO ``left_shoulder`` is MPII ``l_shoulder``), so an MPII-16 model is scored on the
joints both layouts share.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnnpose.host.artifacts import BnnposeError
from bnnpose.host.preprocess import load_image
from bnnpose.models.skeleton import MPII_JOINTS

#: COCO's 17 keypoint names, in COCO order.
COCO_JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)

#: COCO's per-joint OKS falloff constants (COCOeval's ``kpt_oks_sigmas``), by joint name.
COCO_SIGMAS = dict(zip(COCO_JOINTS, (
    .26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89)))


def canonical(name: str) -> str:
    """One spelling for a joint across layouts: ``l_knee`` and ``left_knee`` -> ``left_knee``."""
    name = name.strip().lower().replace(" ", "_").replace("-", "_")
    for short, long in (("l_", "left_"), ("r_", "right_")):
        if name.startswith(short):
            return long + name[len(short):]
    return name


def shared_joints(model_joints: tuple[str, ...], data_joints: tuple[str, ...]
                  ) -> list[tuple[int, int, str]]:
    """``(model index, data index, model's name)`` for every joint both layouts name."""
    data = {canonical(n): i for i, n in enumerate(data_joints)}
    return [(i, data[canonical(n)], n) for i, n in enumerate(model_joints)
            if canonical(n) in data]


@dataclass
class Instance:
    """One labelled person."""

    image: np.ndarray  #: ``[H, W, 3]`` uint8 RGB
    #: (x0, y0, x1, y1) person box in image pixels; None: the image is already the crop
    box: tuple[float, float, float, float] | None
    keypoints: np.ndarray  #: ``[J, 2]`` float64 (x, y) in image pixels, data layout
    visible: np.ndarray  #: ``[J]`` bool, labelled joints
    source: str  #: image file, or ``synthetic:<seed>``
    ann_id: int | None = None  #: COCO annotation id


@dataclass
class Dataset:
    name: str
    joints: tuple[str, ...]
    instances: list[Instance]
    skipped: dict[str, int]  #: reason -> people not evaluated (each also logged)
    coco: object | None = None  #: the pycocotools COCO object of a COCO source


def synthetic(n: int = 512) -> Dataset:
    """The held-out synthetic crops training reports PCK on (seeds from EVAL_SEED_OFFSET),
    already cut by the host's person crop, so they go to the network as they are."""
    from bnnpose.quantize import synthetic as synth

    if n < 1:
        raise BnnposeError(f"synthetic dataset needs n >= 1, got {n}")
    out = []
    for seed in range(synth.EVAL_SEED_OFFSET, synth.EVAL_SEED_OFFSET + n):
        s = synth.render_crop_sample(seed)
        out.append(Instance(s["image"], None, s["keypoints"].astype(np.float64),
                            s["visible"].astype(bool), f"synthetic:{seed}"))
    return Dataset(f"synthetic:{n}", tuple(MPII_JOINTS), out, {})


def coco(ann_file: str | os.PathLike, image_dir: str | os.PathLike,
         min_keypoints: int = 1) -> Dataset:
    """People of a COCO keypoints file (``person_keypoints_*.json`` layout) via pycocotools.

    People with fewer than ``min_keypoints`` labelled joints, or marked ``iscrowd``, are
    skipped and counted. A missing file or folder, an unreadable image, a keypoint outside
    its image or a file without people are one-line errors.
    """
    from pycocotools.coco import COCO

    ann_file, image_dir = Path(ann_file), Path(image_dir)
    if not ann_file.is_file():
        raise BnnposeError(f"annotation file not found: {ann_file}")
    if not image_dir.is_dir():
        raise BnnposeError(f"image folder not found: {image_dir}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            api = COCO(str(ann_file))
    except Exception as e:  # a malformed file fails inside pycocotools in many ways
        raise BnnposeError(f"not a COCO annotation file: {ann_file} "
                           f"({type(e).__name__}: {e})") from None
    cats = [c for c in api.loadCats(api.getCatIds()) if c.get("keypoints")]
    if not cats:
        raise BnnposeError(f"{ann_file}: no category with keypoints (not a keypoints file)")
    joints = tuple(cats[0]["keypoints"])
    skipped: dict[str, int] = {}
    out: list[Instance] = []
    images: dict[int, np.ndarray] = {}
    for ann in api.loadAnns(api.getAnnIds(catIds=[cats[0]["id"]])):
        kp = np.asarray(ann.get("keypoints", []), dtype=np.float64).reshape(-1, 3)
        if len(kp) != len(joints):
            raise BnnposeError(f"{ann_file}: annotation {ann['id']} has {len(kp)} keypoints, "
                               f"the category names {len(joints)}")
        vis = kp[:, 2] > 0
        if ann.get("iscrowd", 0):
            skipped["crowd"] = skipped.get("crowd", 0) + 1
            continue
        if vis.sum() < min_keypoints:
            skipped["too few keypoints"] = skipped.get("too few keypoints", 0) + 1
            continue
        img_id = ann["image_id"]
        if img_id not in images:
            info = api.loadImgs(img_id)[0]
            images[img_id] = load_image(image_dir / info["file_name"])
        image = images[img_id]
        h, w = image.shape[:2]
        xy = kp[:, :2]
        outside = vis & ((xy[:, 0] < -0.5) | (xy[:, 1] < -0.5) | (xy[:, 0] > w - 0.5)
                         | (xy[:, 1] > h - 0.5))
        if outside.any():
            raise BnnposeError(f"{ann_file}: annotation {ann['id']} puts "
                               f"{joints[int(np.flatnonzero(outside)[0])]} outside its "
                               f"{w}x{h} image")
        x, y, bw, bh = ann.get("bbox") or _box_of(xy[vis])
        out.append(Instance(image, (x, y, x + bw, y + bh), xy, vis,
                            str(image_dir / api.loadImgs(img_id)[0]["file_name"]), ann["id"]))
    if not out:
        raise BnnposeError(f"{ann_file}: no person to evaluate "
                           f"(skipped: {skipped or 'none found'})")
    return Dataset(f"coco:{ann_file}", joints, out, skipped, coco=api)


def _box_of(xy: np.ndarray) -> tuple[float, float, float, float]:
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    return float(x0), float(y0), float(max(x1 - x0, 1.0)), float(max(y1 - y0, 1.0))


def iter_batches(instances: list[Instance], size: int) -> Iterator[list[Instance]]:
    for start in range(0, len(instances), size):
        yield instances[start:start + size]
