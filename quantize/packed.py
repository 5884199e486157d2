"""Training data packed to travel: ``bnnpose pack`` writes it, ``--data packed:DIR`` trains on it.

A machine with a GPU may have neither the renderer's libraries (anny, moderngl, EGL) nor the
footage's frames, and what can be sent to it is limited in size. ``pack`` runs a recipe's data
stage here (renders and crops of the mixed-in sets' people, from the same caches a run uses)
and writes the resulting crops, JPEG-compressed, with their labels:

* ``DIR/data.npz``: for each part (``train``, ``val`` and ``mixed``, the mixed-in people, once)
  the JPEG bytes of every crop end to end (``<part>_jpeg``, uint8) with their end offsets
  (``<part>_ends``), keypoints in the model's layout and visibility. No pickles: it loads with
  ``allow_pickle=False``.
* ``DIR/manifest.json``: the recipe it was packed from, the model's input size and joints, the
  renderer's code digest, the mixed-in sets' label digest, the JPEG quality, counts, sizes,
  sha256 of ``data.npz`` and tool versions.

A run on ``packed:DIR`` takes its first ``n_train`` training and ``n_val`` held-out crops and
repeats the mixed-in people ``mix_repeat`` times (its own setting, as with ``--mix``); its
``config.json`` names the pack, whose manifest says where the crops came from. JPEG changes
pixels by a few levels, so a packed run trains on nearly, not exactly, the crops a run here
would: at the default quality 90, 2.6 levels on average on mesh crops. ``bhg-c64-z2``'s recipe
(8,000 mesh renders, 256 held out, 754 footage people) packs into 43.2 MiB at quality 90 and
31.8 MiB at 80.

    bnnpose pack --model bhg-c64-z2 --data mesh --n-train 8000 --n-val 256 \\
        --mix coco:out/realset/vtest-train/annotations.json \\
        --mix-images out/realset/vtest-train/images --out pack/c64
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from bnnpose.host.common import (BnnposeError, atomic_writer, one_line, run_main, sha256_file,
                                 versions, write_json)
from bnnpose.models.registry import model_joints
from bnnpose.quantize.train_config import PACKED, RENDERED, TrainConfig, check_config

PREFIX = PACKED
FORMAT = 1
DATA, MANIFEST = "data.npz", "manifest.json"
PARTS = ("train", "val", "mixed")
DEFAULT_QUALITY = 90


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


def pack(cfg: TrainConfig, out: Path, quality: int = DEFAULT_QUALITY) -> dict:
    """Write ``cfg``'s data (renders or a real set, and its ``mix`` people) to ``out``;
    returns the manifest."""
    from bnnpose.quantize.train_data import (data_arrays, mix_digest, mixed_arrays,
                                             renderer_digest)
    from bnnpose.quantize.train_model import create_model

    if not 1 <= quality <= 100:
        raise BnnposeError(f"JPEG quality must be in 1..100, got {quality}")
    if cfg.data.startswith(PREFIX):
        raise BnnposeError(f"{cfg.data} is packed already")
    check_config(cfg)
    model_cfg = create_model(replace(cfg, init_from=None))[0].cfg
    mixed = mixed_arrays(cfg, model_cfg)
    train, val = data_arrays(cfg, model_cfg)
    arrays, counts = {}, {}
    for part, data in (("train", train), ("val", val), ("mixed", mixed)):
        if data is None:
            data = (np.zeros((0, model_cfg.input_size, model_cfg.input_size, 3), np.uint8),
                    np.zeros((0, len(model_joints(model_cfg)), 2), np.float32),
                    np.zeros((0, len(model_joints(model_cfg))), bool))
        images, kp, vis = data
        arrays[f"{part}_jpeg"], arrays[f"{part}_ends"] = _encode(images, quality, part)
        arrays[f"{part}_keypoints"], arrays[f"{part}_visible"] = kp.astype(np.float32), vis
        counts[part] = len(images)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_writer(out / DATA, "wb") as f:
        np.savez(f, **arrays)
    manifest = {
        "format": FORMAT,
        "recipe": {k: getattr(cfg, k) for k in ("model", "data", "images", "mix", "mix_images",
                                                 "n_train", "n_val", "arch")},
        "input_size": model_cfg.input_size,
        "joints": list(model_joints(model_cfg)),
        "renderer_digest": renderer_digest(cfg.data) if cfg.data in RENDERED else None,
        "mix_digest": mix_digest(cfg),
        "jpeg_quality": quality,
        "counts": counts,
        "bytes": (out / DATA).stat().st_size,
        "sha256": sha256_file(out / DATA),
        "versions": versions(),
    }
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


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv, "bnnpose pack")


def _main(argv: list[str]) -> int:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="bnnpose pack", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=d.model, help="registry name (default: %(default)s)")
    p.add_argument("--data", default=d.data, help="synthetic, mesh, or a labelled set as "
                   "`bnnpose train --data` takes it (default: %(default)s)")
    p.add_argument("--images", help="image folder of a real --data set")
    p.add_argument("--mix", metavar="SPEC", action="append",
                   help="a real set whose people join the training samples (repeatable)")
    p.add_argument("--mix-images", metavar="DIR", action="append",
                   help="image folder of --mix (one per --mix, in order)")
    p.add_argument("--n-train", type=int, default=d.n_train)
    p.add_argument("--n-val", type=int, default=d.n_val)
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY,
                   help="JPEG quality, 1-100 (default: %(default)s)")
    p.add_argument("--cache-dir", default=d.cache_dir)
    p.add_argument("--render-workers", type=int, default=d.render_workers)
    p.add_argument("--out", type=Path, required=True, help="folder to write the pack to")
    a = p.parse_args(argv)
    cfg = replace(d, model=a.model, data=a.data, images=a.images, mix=a.mix,
                  mix_images=a.mix_images, n_train=a.n_train, n_val=a.n_val,
                  cache_dir=a.cache_dir, render_workers=a.render_workers)
    manifest = pack(cfg, a.out, a.quality)
    c = manifest["counts"]
    print(f"{a.out}: {c['train']} training, {c['val']} held-out and {c['mixed']} mixed-in "
          f"crops, {manifest['bytes'] / 2**20:.1f} MiB (JPEG quality {a.quality})")
    return 0
