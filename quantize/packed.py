"""The pack format: training crops that travel, read by ``--data packed:DIR``.

``bnnpose pack`` (``quantize/pack.py``) writes a folder of two files:

* ``data.npz``: for each part (``train``, ``val`` and ``mixed``, the mixed-in people, once)
  the JPEG bytes of every crop end to end (``<part>_jpeg``, uint8) with their end offsets
  (``<part>_ends``), keypoints in the model's layout and visibility. No pickles: it loads with
  ``allow_pickle=False``.
* ``manifest.json``: the format, the model's input size and joints, the JPEG quality, counts,
  sizes and sha256 of ``data.npz``, tool versions, and what the writer adds (the recipe the
  crops came from).

A run on ``packed:DIR`` takes its first ``n_train`` training and ``n_val`` held-out crops and
repeats the mixed-in people ``mix_repeat`` times (its own setting, as with ``--mix``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from bnnpose.host.common import (BnnposeError, atomic_writer, one_line, sha256_file, versions,
                                 write_json)
from bnnpose.models.registry import model_joints
from bnnpose.quantize.train_config import PACKED

PREFIX = PACKED
FORMAT = 1
DATA, MANIFEST = "data.npz", "manifest.json"
PARTS = ("train", "val", "mixed")


def _encode(images: np.ndarray, quality: int, desc: str) -> tuple[np.ndarray, np.ndarray]:
    blobs = []
    for img in tqdm(images, desc=desc, unit="crop", disable=None, leave=False):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise BnnposeError("OpenCV could not JPEG-encode a crop")
        blobs.append(buf.ravel())
    ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
    return (np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)), ends


def _decode(blob: np.ndarray, ends: np.ndarray, size: int) -> np.ndarray:
    images = np.empty((len(ends), size, size, 3), np.uint8)
    start = 0
    for i, end in enumerate(ends):
        img = cv2.imdecode(blob[start:end], cv2.IMREAD_COLOR)
        if img is None or img.shape != (size, size, 3):
            raise BnnposeError(f"packed crop {i} does not decode to {size}x{size}x3")
        images[i] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        start = end
    return images


def check_quality(quality: int) -> None:
    if not 1 <= quality <= 100:
        raise BnnposeError(f"JPEG quality must be in 1..100, got {quality}")


def write(out: Path, parts: dict[str, tuple | None], model_cfg, quality: int,
          about: dict) -> dict:
    """Write ``parts`` (PARTS -> ``(images, keypoints, visible)`` or None) to ``out`` as a
    pack for ``model_cfg``'s layout; ``about`` joins the manifest. Returns the manifest."""
    check_quality(quality)
    size, joints = model_cfg.input_size, list(model_joints(model_cfg))
    arrays, counts = {}, {}
    for part in PARTS:
        images, kp, vis = parts.get(part) or (np.zeros((0, size, size, 3), np.uint8),
                                              np.zeros((0, len(joints), 2), np.float32),
                                              np.zeros((0, len(joints)), bool))
        arrays[f"{part}_jpeg"], arrays[f"{part}_ends"] = _encode(images, quality, part)
        arrays[f"{part}_keypoints"], arrays[f"{part}_visible"] = kp.astype(np.float32), vis
        counts[part] = len(images)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_writer(out / DATA, "wb") as f:
        np.savez(f, **arrays)
    manifest = {"format": FORMAT, **about, "input_size": size, "joints": joints,
                "jpeg_quality": quality, "counts": counts, "bytes": (out / DATA).stat().st_size,
                "sha256": sha256_file(out / DATA), "versions": versions()}
    write_json(out / MANIFEST, manifest)
    return manifest


def load(folder: str | Path, model_cfg, n_train: int, n_val: int
         ) -> tuple[tuple[tuple, tuple], tuple | None]:
    """``((train, val), mixed)`` of a pack, each ``(images, keypoints, visible)`` (``mixed``:
    None when the pack has no mixed-in people), checked against ``model_cfg``."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        with np.load(folder / DATA, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise BnnposeError(f"not a readable pack: {folder} ({one_line(e, 200)})") from None
    if manifest.get("format") != FORMAT:
        raise BnnposeError(f"{folder}: pack format {manifest.get('format')}, this reads {FORMAT}")
    joints, size = list(model_joints(model_cfg)), model_cfg.input_size
    if manifest["joints"] != joints or manifest["input_size"] != size:
        raise BnnposeError(f"{folder} was packed for {manifest['recipe']['model']} "
                           f"({manifest['input_size']}x{manifest['input_size']}, "
                           f"{len(manifest['joints'])} joints), not this network "
                           f"({size}x{size}, {len(joints)} joints)")
    parts = {}
    for part, limit in (("train", n_train), ("val", n_val), ("mixed", None)):
        ends = arrays[f"{part}_ends"][:limit]
        parts[part] = (_decode(arrays[f"{part}_jpeg"], ends, size),
                       arrays[f"{part}_keypoints"][:limit], arrays[f"{part}_visible"][:limit])
    mixed = parts["mixed"] if len(parts["mixed"][0]) else None
    return (parts["train"], parts["val"]), mixed
