"""Labelled people for evaluation and training: held-out synthetic crops, COCO keypoint files,
MPII (its JSON conversion or the official release) and 300W face landmarks.

Every source yields :class:`Instance` records (one person: image, box, labelled joints by name)
so evaluation never cares where the labels came from. Joints are matched to a model's joints by
name (COCO ``left_shoulder`` is MPII ``l_shoulder``), so an MPII-16 model is scored on the
joints both layouts share. Every file loader makes a missing file or folder, a malformed file,
a keypoint outside its image and a file without people one-line errors, and counts the people
it skips in :attr:`Dataset.skipped`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnnpose.host.common import BnnposeError
from bnnpose.host.preprocess import check_image_file, load_image
from bnnpose.host.skeleton import (
    FACE68_JOINTS, MPII_JOINTS, WHOLEBODY_PARTS, shared_joints,
)

#: MPII's ``SC_BIAS``: PCKh's head size is this fraction of the head box diagonal.
HEAD_SIZE_FACTOR = 0.6

#: What ``bnnpose eval --data`` (and training's ``--data``) accepts, for help texts.
DATA_SPECS = ("synthetic[:N] (held-out stick renders), mesh[:N] (held-out mesh-body renders), "
              "synthetic-face[:N] (held-out 68-point face renders), coco:ANN.json, "
              "mpii:FILE.json or mpii:FILE.mat (these three with --images DIR), 300w:DIR "
              "(images beside the .pts)")


def to_layout(keypoints: np.ndarray, visible: np.ndarray, joints: tuple[str, ...],
              layout: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints ``[..., len(joints), 2]`` and visibility ``[..., len(joints)]`` re-indexed to
    ``layout`` by joint name; joints ``layout`` names and ``joints`` lacks are NaN, not visible.

    Raises:
        BnnposeError: the two layouts share no joint.
    """
    shared = shared_joints(layout, joints)
    if not shared:
        raise BnnposeError(f"layouts share no joint ({', '.join(joints[:3])}, ... and "
                           f"{', '.join(layout[:3])}, ...)")
    mi, di = [m for m, _, _ in shared], [d for _, d, _ in shared]
    kp = np.asarray(keypoints)
    out_kp = np.full((*kp.shape[:-2], len(layout), 2), np.nan, kp.dtype)
    out_vis = np.zeros((*kp.shape[:-2], len(layout)), bool)
    out_kp[..., mi, :] = kp[..., di, :]
    out_vis[..., mi] = np.asarray(visible)[..., di]
    return out_kp, out_vis


@dataclass
class Instance:
    """One labelled person."""

    #: ``[H, W, 3]`` uint8 RGB, or its file: real sets keep paths, so a set of thousands of
    #: photographs is listed without holding them all decoded (see :attr:`image`)
    pixels: np.ndarray | str
    #: (x0, y0, x1, y1) person box in image pixels; None: the image is already the crop
    box: tuple[float, float, float, float] | None
    keypoints: np.ndarray  #: ``[J, 2]`` float64 (x, y) in image pixels, data layout
    visible: np.ndarray  #: ``[J]`` bool, labelled joints
    source: str  #: image file, or ``synthetic:<seed>``
    ann_id: int | None = None  #: COCO annotation id
    head_size: float | None = None  #: PCKh normaliser, HEAD_SIZE_FACTOR x head box diagonal
    interocular: float | None = None  #: NME normaliser, distance of the outer eye corners

    @property
    def image(self) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB; a file is decoded on use, the last few are kept, as people
        of one photograph come one after another."""
        return self.pixels if isinstance(self.pixels, np.ndarray) else _decode(self.pixels)


_decode = functools.lru_cache(maxsize=16)(load_image)


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    check_image_file(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            # OpenCV applies the EXIF rotation when it decodes; so must the size.
            return (h, w) if im.getexif().get(0x0112) in (5, 6, 7, 8) else (w, h)
    except (UnidentifiedImageError, OSError):
        h, w = load_image(path).shape[:2]  # a format only OpenCV reads, or its one-line error
        return w, h


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


def mesh(n: int = 512) -> Dataset:
    """Held-out mesh-body crops (``mesh_render``, seeds from its EVAL_SEED_OFFSET), cut by the
    host's person crop; every joint inside the crop is labelled, hidden or not."""
    from bnnpose.quantize import mesh_render

    if n < 1:
        raise BnnposeError(f"mesh dataset needs n >= 1, got {n}")
    seeds = range(mesh_render.EVAL_SEED_OFFSET, mesh_render.EVAL_SEED_OFFSET + n)
    out = [Instance(s["image"], None, s["keypoints"].astype(np.float64), s["visible"].copy(),
                    f"mesh:{seed}")
           for seed, s in zip(seeds, mesh_render.crop_samples(seeds), strict=True)]
    return Dataset(f"mesh:{n}", tuple(MPII_JOINTS), out, {})


def synthetic_face(n: int = 512) -> Dataset:
    """Held-out synthetic faces (seeds from the face renderer's EVAL_SEED_OFFSET), framed
    like 300W crops, so they go to the network as they are.

    As in 300W, every landmark inside the image is labelled, hidden or not (the renderer's
    own ``visible`` also drops those behind the head or an occluder), and ``interocular`` is
    the distance of the outer eye corners (points 36 and 45), so NME is scored as on 300W.
    """
    from bnnpose.host.codec import inside_image
    from bnnpose.quantize import synthetic_face as faces

    if n < 1:
        raise BnnposeError(f"synthetic-face dataset needs n >= 1, got {n}")
    out = []
    for seed in range(faces.EVAL_SEED_OFFSET, faces.EVAL_SEED_OFFSET + n):
        s = faces.render_face(seed)
        xy = s["keypoints"].astype(np.float64)
        out.append(Instance(s["image"], None, xy, inside_image(xy, s["image"].shape[1::-1]),
                            f"synthetic-face:{seed}",
                            interocular=float(np.linalg.norm(xy[36] - xy[45]))))
    return Dataset(f"synthetic-face:{n}", FACE68_JOINTS, out, {})


def coco(ann_file: str | os.PathLike, image_dir: str | os.PathLike,
         min_keypoints: int = 1) -> Dataset:
    """People of a COCO keypoints file (``person_keypoints_*.json`` layout) via pycocotools;
    a COCO-WholeBody file adds its feet, face and hands (:data:`WHOLEBODY_PARTS`).

    People with fewer than ``min_keypoints`` labelled joints, or marked ``iscrowd``, are
    skipped and counted. A missing file or folder, an unreadable image, a keypoint outside
    its image or a file without people are one-line errors.
    """
    from pycocotools.coco import COCO

    ann_file, image_dir = _existing(ann_file, image_dir)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            api = COCO(str(ann_file))
    except Exception as e:  # a malformed file fails inside pycocotools in many ways
        raise BnnposeError(f"not a COCO annotation file: {ann_file} "
                           f"({type(e).__name__}: {e})") from None
    cats = [c for c in api.loadCats(api.getCatIds()) if c.get("keypoints")]
    if not cats:
        raise BnnposeError(f"{ann_file}: no category with keypoints (not a keypoints file)")
    body = tuple(cats[0]["keypoints"])
    anns = api.loadAnns(api.getAnnIds(catIds=[cats[0]["id"]]))
    # A COCO-WholeBody file keeps the body in ``keypoints`` and adds the other parts beside it.
    parts = [f for f in WHOLEBODY_PARTS if any(f in a for a in anns)]
    joints = body + tuple(n for f in parts for n in WHOLEBODY_PARTS[f])
    skipped: dict[str, int] = {}
    out: list[Instance] = []
    sizes: dict[int, tuple[int, int]] = {}
    for ann in anns:
        kp = np.asarray(ann.get("keypoints", []), dtype=np.float64).reshape(-1, 3)
        if len(kp) != len(body):
            raise BnnposeError(f"{ann_file}: annotation {ann['id']} has {len(kp)} keypoints, "
                               f"the category names {len(body)}")
        extra = [np.asarray(ann.get(f) or np.zeros(3 * len(WHOLEBODY_PARTS[f])), np.float64)
                 for f in parts]
        for f, e in zip(parts, extra, strict=True):
            if e.size != 3 * len(WHOLEBODY_PARTS[f]):
                raise BnnposeError(f"{ann_file}: annotation {ann['id']} has {e.size // 3} "
                                   f"{f}, COCO-WholeBody has {len(WHOLEBODY_PARTS[f])}")
        kp = np.concatenate([kp, *(e.reshape(-1, 3) for e in extra)])
        vis = kp[:, 2] > 0
        if ann.get("iscrowd", 0):
            _count(skipped, "crowd")
            continue
        if vis.sum() < min_keypoints:
            _count(skipped, "too few keypoints")
            continue
        img_id = ann["image_id"]
        path = image_dir / api.loadImgs(img_id)[0]["file_name"]
        if img_id not in sizes:
            sizes[img_id] = _image_size(path)
        xy = kp[:, :2]
        _check_inside(xy, vis, sizes[img_id], joints, f"{ann_file}: annotation {ann['id']}")
        x, y, bw, bh = ann.get("bbox") or _box_of(xy[vis])
        out.append(Instance(str(path), (x, y, x + bw, y + bh), xy, vis, str(path), ann["id"]))
    _check_people(out, skipped, ann_file)
    return Dataset(f"coco:{ann_file}", joints, out, skipped, coco=api)


def mpii_json(ann_file: str | os.PathLike, image_dir: str | os.PathLike,
              headboxes: str | os.PathLike | None = None) -> Dataset:
    """People of an MPII JSON file (``mpii_train.json``/``mpii_val.json`` of HRNet and mmpose).

    Each entry is one person: ``image`` (file name), ``joints`` [16][x, y] and ``joints_vis``
    [16] in MPII joint order, ``center`` and ``scale`` (person height / 200 px), in the
    release's 1-based MATLAB pixels (made 0-based here, as those tools do). The box follows
    MPII's convention, see :func:`_mpii_box`. Head boxes for PCKh come from ``headboxes``, the
    ``mpii_gt_val.mat`` of those tools (``headboxes_src`` [2, 2, N], one per entry), else from
    an entry's optional ``head_box`` [x1, y1, x2, y2]. People without a labelled joint are
    skipped.
    """
    ann_file, image_dir = _existing(ann_file, image_dir)
    try:
        people = [(e["image"], np.asarray(e["joints"], np.float64).reshape(16, 2) - 1,
                   np.asarray(e["joints_vis"]).reshape(16) > 0,
                   np.asarray(e["center"], np.float64).reshape(2), float(e["scale"]),
                   None if e.get("head_box") is None
                   else np.asarray(e["head_box"], np.float64).reshape(4))
                  for e in json.loads(ann_file.read_text())]
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as e:
        raise BnnposeError(f"not an MPII JSON annotation file: {ann_file} "
                           f"({type(e).__name__}: {e})") from None
    heads = None if headboxes is None else _headboxes(headboxes, len(people))
    size = functools.cache(_image_size)
    skipped: dict[str, int] = {}
    out: list[Instance] = []
    for k, (name, xy, vis, center, scale, head_box) in enumerate(people):
        if not vis.any():
            _count(skipped, "no labelled joints")
            continue
        path = image_dir / name
        _check_inside(xy, vis, size(path), MPII_JOINTS, f"{ann_file}: entry {k} ({name})")
        head = head_box if heads is None else heads[k]
        out.append(Instance(str(path), _mpii_box(center, scale), xy, vis, str(path),
                            head_size=None if head is None else _head_size(head)))
    _check_people(out, skipped, ann_file)
    return Dataset(f"mpii:{ann_file}", MPII_JOINTS, out, skipped)


def mpii_mat(mat_file: str | os.PathLike, image_dir: str | os.PathLike,
             split: str = "all") -> Dataset:
    """People of the official MPII release, ``mpii_human_pose_v1_u12_1.mat`` (``RELEASE``).

    ``split`` "train" takes the people of training images (``img_train`` 1), "all" those of
    every image; either way only people with labelled joints (``annopoints``) are evaluated,
    which the release has on training images only. Other people are skipped. Coordinates are
    1-based MATLAB pixels, made 0-based; ``objpos``/``scale`` give the box as in
    :func:`mpii_json` and the head rectangle ``x1, y1, x2, y2`` the PCKh head size.
    """
    from scipy.io import loadmat

    if split not in ("train", "all"):
        raise BnnposeError(f"unknown MPII split {split!r}: train or all")
    mat_file, image_dir = _existing(mat_file, image_dir)
    try:
        release = loadmat(mat_file, struct_as_record=False, squeeze_me=True)["RELEASE"]
        annolist = _items(release.annolist)
        in_train = np.atleast_1d(release.img_train).astype(bool)
        if len(in_train) != len(annolist):
            raise ValueError(f"{len(annolist)} images but {len(in_train)} img_train flags")
        people = [(a.image.name, j, is_train, _release_person(rect))
                  for a, is_train in zip(annolist, in_train)
                  for j, rect in enumerate(_items(_field(a, "annorect")))]
    except Exception as e:  # a foreign .mat fails in scipy or in the struct access
        raise BnnposeError(f"not an MPII release file: {mat_file} "
                           f"({type(e).__name__}: {e})") from None
    size = functools.cache(_image_size)
    skipped: dict[str, int] = {}
    out: list[Instance] = []
    for name, j, is_train, person in people:
        if split == "train" and not is_train:
            _count(skipped, "not a training image")
            continue
        if person is None:
            _count(skipped, "no labelled joints")
            continue
        xy, vis, centre, scale, head = person
        if centre is None:
            _count(skipped, "no objpos/scale")
            continue
        path = image_dir / name
        _check_inside(xy, vis, size(path), MPII_JOINTS, f"{mat_file}: {name} annorect {j + 1}")
        out.append(Instance(str(path), _mpii_box(centre, scale), xy, vis, str(path),
                            head_size=None if head is None else _head_size(head)))
    _check_people(out, skipped, mat_file)
    return Dataset(f"mpii:{mat_file}", MPII_JOINTS, out, skipped)


def w300(source: str | os.PathLike | list) -> Dataset:
    """Faces of 300W/iBUG ``.pts`` files: a folder (searched recursively) or a list of files.

    Each ``.pts`` holds 68 points in iBUG's 1-based pixels (made 0-based here); its image is
    the file of the same stem beside it (.png, .jpg or .jpeg). The box is the points' bounding
    box; ``interocular`` is the distance of the outer eye corners (points 36 and 45).
    """
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise BnnposeError(f"300W folder not found: {folder}")
        files, where = sorted(folder.rglob("*.pts")), folder
    else:
        files = [Path(f) for f in source]
        where = f"{len(files)} .pts files"
    out: list[Instance] = []
    for path in files:
        xy = _read_pts(path)
        image_path = next((p for p in map(path.with_suffix, (".png", ".jpg", ".jpeg"))
                           if p.is_file()), None)
        if image_path is None:
            raise BnnposeError(f"{path}: no image beside it ({path.stem}.png, .jpg or .jpeg)")
        vis = np.ones(len(xy), bool)
        _check_inside(xy, vis, _image_size(image_path), FACE68_JOINTS, str(path))
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
        out.append(Instance(str(image_path), (x0, y0, x1, y1), xy, vis, str(image_path),
                            interocular=float(np.linalg.norm(xy[36] - xy[45]))))
    _check_people(out, {}, where)
    return Dataset(f"300w:{where}", FACE68_JOINTS, out, {})


def from_spec(spec: str, images: str | os.PathLike | None = None,
              headboxes: str | os.PathLike | None = None) -> Dataset:
    """The dataset a ``--data`` argument names (see ``DATA_SPECS``); ``images`` is the image
    folder of coco: and mpii: data, ``headboxes`` an ``mpii_gt_val.mat`` for mpii:FILE.json."""
    kind, _, arg = spec.partition(":")
    needs_images = kind in ("coco", "mpii")
    if needs_images and images is None:
        raise BnnposeError(f"--data {spec} needs --images DIR")
    if not needs_images and images is not None:
        raise BnnposeError(f"--images is for coco: and mpii: data, not {spec}")
    if headboxes is not None and (kind != "mpii" or arg.endswith(".mat")):
        raise BnnposeError("--headboxes goes with --data mpii:FILE.json")
    if kind == "synthetic":
        return synthetic(int(arg or 512))
    if kind == "synthetic-face":
        return synthetic_face(int(arg or 512))
    if kind == "mesh":
        return mesh(int(arg or 512))
    if kind == "coco":
        return coco(arg, images)
    if kind == "mpii" and arg.endswith(".mat"):
        return mpii_mat(arg, images)
    if kind == "mpii":
        return mpii_json(arg, images, headboxes)
    if kind == "300w":
        return w300(arg)
    raise BnnposeError(f"unknown --data {spec!r}: {DATA_SPECS}")


def _existing(ann_file: str | os.PathLike, image_dir: str | os.PathLike) -> tuple[Path, Path]:
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    if not ann_file.is_file():
        raise BnnposeError(f"annotation file not found: {ann_file}")
    if not image_dir.is_dir():
        raise BnnposeError(f"image folder not found: {image_dir}")
    return ann_file, image_dir


def _check_inside(xy: np.ndarray, vis: np.ndarray, size: tuple[int, int],
                  joints: tuple[str, ...], what: str) -> None:
    w, h = size
    outside = vis & ((xy[:, 0] < -0.5) | (xy[:, 1] < -0.5) | (xy[:, 0] > w - 0.5)
                     | (xy[:, 1] > h - 0.5))
    if outside.any():
        raise BnnposeError(f"{what} puts {joints[int(np.flatnonzero(outside)[0])]} outside its "
                           f"{w}x{h} image")


def _check_people(out: list[Instance], skipped: dict[str, int], source) -> None:
    if not out:
        raise BnnposeError(f"{source}: no person to evaluate "
                           f"(skipped: {skipped or 'none found'})")


def _count(skipped: dict[str, int], reason: str) -> None:
    skipped[reason] = skipped.get(reason, 0) + 1


def _mpii_box(center: np.ndarray, scale: float) -> tuple[float, float, float, float]:
    """The person box of MPII's ``objpos`` (1-based pixels) and ``scale``.

    MPII's convention, as its reference code (HRNet, mmpose) applies it: the square of side
    ``scale * 200`` about the centre moved down by ``15 * scale`` pixels, cropped grown by
    1.25. The host's crop grows every box by its margin of 1.25 (``DEFAULT_MARGIN``), so the
    box is the square before growing and the network sees the ``scale * 200 * 1.25`` square.
    """
    cx, cy = center[0] - 1, center[1] - 1 + 15 * scale
    half = scale * 100
    return cx - half, cy - half, cx + half, cy + half


def _head_size(box) -> float:
    x1, y1, x2, y2 = (float(v) for v in box)
    return HEAD_SIZE_FACTOR * float(np.hypot(x2 - x1, y2 - y1))


def _headboxes(path: str | os.PathLike, n: int) -> np.ndarray:
    """Head boxes ``[n, 4]`` (x1, y1, x2, y2) of an ``mpii_gt_val.mat``."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise BnnposeError(f"head box file not found: {path}")
    try:
        boxes = np.asarray(loadmat(path)["headboxes_src"], np.float64)
    except Exception as e:  # a foreign file fails in scipy in many ways
        raise BnnposeError(f"not an MPII head box file (headboxes_src): {path} "
                           f"({type(e).__name__}: {e})") from None
    if boxes.shape != (2, 2, n):
        raise BnnposeError(f"{path}: headboxes_src has shape {boxes.shape}, expected "
                           f"(2, 2, {n}) for the {n} annotations")
    return boxes.transpose(2, 0, 1).reshape(n, 4)


def _items(value) -> list:
    """A loadmat(squeeze_me=True) struct array as a list: squeezing makes one element a bare
    struct and none an empty array."""
    if value is None:
        return []
    return list(value.ravel()) if isinstance(value, np.ndarray) else [value]


def _field(struct, name: str):
    """A struct field, None when absent or MATLAB's empty ``[]``."""
    value = getattr(struct, name, None)
    return None if isinstance(value, np.ndarray) and value.size == 0 else value


def _release_person(rect) -> tuple | None:
    """``(keypoints, visible, centre, scale, head box)`` of an MPII ``annorect``, None when it
    has no labelled joints; centre and scale are None when missing."""
    annopoints = _field(rect, "annopoints")
    points = [] if annopoints is None else _items(_field(annopoints, "point"))
    if not points:
        return None
    xy, vis = np.zeros((len(MPII_JOINTS), 2)), np.zeros(len(MPII_JOINTS), bool)
    for p in points:
        # Point ids are MPII joint ids, the order of MPII_JOINTS. Every point is labelled:
        # ``is_visible`` flags occlusion, and occluded joints stay labelled (as in HRNet's JSON).
        xy[int(p.id)] = float(p.x) - 1, float(p.y) - 1
        vis[int(p.id)] = True
    objpos, scale = _field(rect, "objpos"), _field(rect, "scale")
    centre = None if objpos is None or scale is None else np.array([objpos.x, objpos.y], float)
    corners = [_field(rect, k) for k in ("x1", "y1", "x2", "y2")]
    head = None if any(c is None for c in corners) else corners
    return xy, vis, centre, None if scale is None else float(scale), head


def _read_pts(path: Path) -> np.ndarray:
    """The points ``[n, 2]`` of an iBUG ``.pts`` file, made 0-based."""
    if not path.is_file():
        raise BnnposeError(f".pts file not found: {path}")
    try:
        head, rest = path.read_text().split("{", 1)
        body, _ = rest.split("}", 1)
        n = int(re.search(r"n_points:\s*(\d+)", head).group(1))
        xy = np.array(body.split(), dtype=np.float64).reshape(n, 2)
    except (ValueError, AttributeError, UnicodeDecodeError) as e:
        raise BnnposeError(f"not a .pts landmark file: {path} ({type(e).__name__}: {e})") from None
    if n != len(FACE68_JOINTS):
        raise BnnposeError(f"{path}: {n} points, 300W has {len(FACE68_JOINTS)}")
    return xy - 1


def _box_of(xy: np.ndarray) -> tuple[float, float, float, float]:
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    return float(x0), float(y0), float(max(x1 - x0, 1.0)), float(max(y1 - y0, 1.0))


def iter_batches(instances: list[Instance], size: int) -> Iterator[list[Instance]]:
    for start in range(0, len(instances), size):
        yield instances[start:start + size]
