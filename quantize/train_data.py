"""The arrays a training run learns from: synthetic renders and real sets' people, cropped and
cached on disk, and the augmented batches made from them."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from bnnpose.host import preprocess
from bnnpose.host.codec import HeatmapCodec
from bnnpose.host.common import atomic_writer, sha256_file
from bnnpose.host.skeleton import FACE68_JOINTS, MPII_JOINTS, flip_permutation
from bnnpose.models.registry import model_joints
from bnnpose.quantize import crops, datasets, face_shape, packed, paint, synthetic, synthetic_face
from bnnpose.quantize.code_digest import sources_digest
from bnnpose.quantize.crops import apply_affines
from bnnpose.quantize.datasets import to_layout

from bnnpose.quantize.train_config import RENDERED, mix_sets

if TYPE_CHECKING:
    from bnnpose.quantize.train_config import TrainConfig


def renderer_digest(data: str) -> str:
    """Digest of the code that renders ``data`` samples ("synthetic" or "mesh"), the host's
    crop included: part of cache names and benches' run identities, so that a changed
    renderer never serves stale renders."""
    if data == "mesh":
        from bnnpose.quantize import mesh_render

        return mesh_render.sources_digest()
    return sources_digest(synthetic, paint, preprocess)


def cached_renders(
    n: int, seed_offset: int, size: int, cache_dir: str | os.PathLike, faces: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person crops ``render_batch(range(seed_offset, seed_offset + n), size, crop=True)``
    (or with ``faces``, ``synthetic_face.render_face_batch`` of those seeds), rendered once
    per cache.

    Returns images uint8 ``[n, size, size, 3]``, keypoints float32 ``[n, J, 2]``, visible
    bool ``[n, J]`` (J = 16 MPII joints, or 68 face landmarks).
    """
    cache_dir = Path(cache_dir)
    if faces:
        code, kind = sources_digest(synthetic_face, face_shape, paint), "faces"
    else:
        code, kind = renderer_digest("synthetic"), "crops"
    path = cache_dir / f"{kind}-{code}-s{size}-o{seed_offset}-n{n}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["images"], z["keypoints"], z["visible"]
    if faces:
        def render(seeds):
            return synthetic_face.render_face_batch(seeds, size)
        joints = len(FACE68_JOINTS)
    else:
        def render(seeds):
            return synthetic.render_batch(seeds, size, crop=True)
        joints = synthetic.NUM_JOINTS
    images = np.empty((n, size, size, 3), np.uint8)
    keypoints = np.empty((n, joints, 2), np.float32)
    visible = np.empty((n, joints), bool)
    chunk = 256
    for start in tqdm(range(0, n, chunk), desc=f"render {n} {kind} @ {seed_offset}",
                      unit="chunk"):
        stop = min(start + chunk, n)
        images[start:stop], keypoints[start:stop], visible[start:stop] = render(
            range(seed_offset + start, seed_offset + stop))
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:
        np.savez_compressed(f, images=images, keypoints=keypoints, visible=visible)
    return images, keypoints, visible


def rendered_arrays(cfg: TrainConfig, val: bool, model_cfg) -> tuple[np.ndarray, ...]:
    """Renders for a model: faces for a face layout, else stick or mesh bodies (``cfg.data``)
    with their MPII joints put where the model's layout names them (the rest unlabelled)."""
    size, n = model_cfg.input_size, cfg.n_val if val else cfg.n_train
    if model_cfg.layout == "face68":
        offset = synthetic_face.EVAL_SEED_OFFSET if val else synthetic_face.TRAIN_SEED_OFFSET
        return cached_renders(n, offset, size, cfg.cache_dir, faces=True)
    if cfg.data == "mesh":
        from bnnpose.quantize import mesh_render

        offset = mesh_render.EVAL_SEED_OFFSET if val else mesh_render.TRAIN_SEED_OFFSET
        arrays = mesh_render.cached_renders(n, offset, size, cfg.cache_dir, cfg.render_workers)
        images, kp, vis = arrays["images"], arrays["keypoints"], arrays["visible"]
    else:
        offset = synthetic.EVAL_SEED_OFFSET if val else synthetic.TRAIN_SEED_OFFSET
        images, kp, vis = cached_renders(n, offset, size, cfg.cache_dir)
    joints = model_joints(model_cfg)
    if joints == MPII_JOINTS[: len(joints)]:
        return images, kp[:, : len(joints)], vis[:, : len(joints)]
    return (images, *to_layout(kp, vis, MPII_JOINTS, joints))


def training_arrays(cfg: TrainConfig, model_cfg) -> tuple[tuple, tuple]:
    """``(train, val)`` arrays (images, keypoints, visible) of a recipe's data, cached; the
    people of the ``mix`` sets (or of a pack's) join the training samples, each
    ``mix_repeat`` times."""
    if cfg.data.startswith(packed.PREFIX):
        (train, val), mixed = packed.load(cfg.data.removeprefix(packed.PREFIX), model_cfg,
                                          cfg.n_train, cfg.n_val)
    else:
        # The mixed-in sets first: a bad one fails before minutes of rendering.
        mixed = mixed_arrays(cfg, model_cfg)
        train, val = data_arrays(cfg, model_cfg)
    if mixed is not None:
        train = tuple(np.concatenate([a, *[m] * cfg.mix_repeat])
                      for a, m in zip(train, mixed, strict=True))
    return train, val


def mixed_arrays(cfg: TrainConfig, model_cfg) -> tuple[np.ndarray, ...] | None:
    """Every person of the ``mix`` sets, once (None without any)."""
    parts = [_people(spec, images, cfg.cache_dir, model_cfg)[0]
             for spec, images in mix_sets(cfg)]
    return tuple(np.concatenate(a) for a in zip(*parts, strict=True)) if parts else None


def data_arrays(cfg: TrainConfig, model_cfg) -> tuple[tuple, tuple]:
    """``(train, val)`` of ``cfg.data`` alone: renders, or a real set split by image, so no
    photograph lends people to both sides: the people of its first images (at least
    ``n_val``) are held out, the next ``n_train`` train."""
    if cfg.data in RENDERED:
        return rendered_arrays(cfg, False, model_cfg), rendered_arrays(cfg, True, model_cfg)
    arrays, sources = _people(cfg.data, cfg.images, cfg.cache_dir, model_cfg)
    held: set[str] = set()
    n_held = 0
    for src, n in Counter(sources).items():  # images in file order
        if n_held >= cfg.n_val:
            break
        held.add(src)
        n_held += n
    is_val = np.array([s in held for s in sources])
    train_idx = np.flatnonzero(~is_val)[: cfg.n_train]
    return tuple(a[train_idx] for a in arrays), tuple(a[is_val] for a in arrays)


def mix_digest(cfg: TrainConfig) -> str | None:
    """Digest of the annotation files of ``cfg``'s mixed-in sets (None without any): part of
    run identities, since footage relabelled at the same path is new training data."""
    specs = mix_sets(cfg)
    if not specs:
        return None
    digest = hashlib.sha256()
    for spec, _ in specs:
        digest.update(_annotation_digest(spec).encode())
    return digest.hexdigest()[:16]


def _annotation_digest(spec: str) -> str:
    path = Path(spec.partition(":")[2])
    return sha256_file(path) if path.is_file() else spec


def _people(spec: str, images: str | None, cache_dir: str, model_cfg
            ) -> tuple[tuple[np.ndarray, ...], list[str]]:
    """Crops of every person of a real set (see :func:`crops.people_arrays`), cached by the
    annotation, the image files' sizes and dates, and the crop code; and their images."""
    data = datasets.from_spec(spec, images)
    for reason, n in data.skipped.items():
        tqdm.write(f"{spec}: skipped {n} people ({reason})")
    joints = model_joints(model_cfg)
    key = hashlib.sha256(sources_digest(preprocess, crops).encode())
    key.update(f"{spec}|{_annotation_digest(spec)}|{model_cfg.input_size}|"
               f"{','.join(joints)}".encode())
    sources = [i.source for i in data.instances]
    for path in sorted(set(sources)):
        st = os.stat(path)
        key.update(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode())
    path = Path(cache_dir) / f"people-{key.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as z:
            return (z["images"], z["keypoints"], z["visible"]), sources
    arrays = crops.people_arrays(data, joints, model_cfg.input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as f:
        np.savez(f, images=arrays[0], keypoints=arrays[1], visible=arrays[2])
    return arrays, sources


def make_batch(
    images: np.ndarray,
    keypoints: np.ndarray,
    visible: np.ndarray,
    flips: np.ndarray,
    codec: HeatmapCodec,
    affines: np.ndarray | None = None,
    flip_perm: list[int] | None = None,
    with_keypoints: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Network inputs and targets for samples ``[B, H, W, 3]``, ``[B, J, 2]``, ``[B, J]``.

    Samples are first warped by ``affines`` ``[B, 2, 3]`` (rotation/zoom, if given); those
    with ``flips[b]`` are then mirrored left-right, with left and right joints swapped by
    ``flip_perm`` (default: ``flip_permutation(J)``).
    Targets are encoded here rather than cached: encoding costs under 1% of a training step,
    caching would cost 64 KiB per image.

    Returns:
        inputs float32 ``[B, 3, H, W]`` in 0..255, heatmaps float32 ``[B, J, h, w]`` and
        target weights float32 ``[B, J]``; ``with_keypoints`` adds the augmented keypoints
        float32 ``[B, J, 2]`` in input pixels (0 where unknown, with weight 0).
    """
    images, kp, vis = images.copy(), keypoints.copy(), visible.copy()
    if affines is not None:
        images, kp = apply_affines(images, kp, affines)
    if flips.any():
        width = images.shape[2]
        perm = flip_permutation(kp.shape[1]) if flip_perm is None else flip_perm
        images[flips] = images[flips, :, ::-1]
        # Pixel centres are integers, so pixel x lands on pixel width - 1 - x.
        kp[flips, :, 0] = width - 1 - kp[flips, :, 0]
        kp[flips] = kp[flips][:, perm]
        vis[flips] = vis[flips][:, perm]
    encoded = [codec.encode(k, v) for k, v in zip(kp, vis, strict=True)]
    heatmaps = torch.from_numpy(np.stack([e[0] for e in encoded]))
    weights = torch.from_numpy(np.stack([e[1] for e in encoded]))
    inputs = torch.from_numpy(images).permute(0, 3, 1, 2).float().contiguous()
    if with_keypoints:
        return inputs, heatmaps, weights, torch.from_numpy(np.nan_to_num(kp).astype(np.float32))
    return inputs, heatmaps, weights
