"""The Anny parametric body (CC0 assets, Apache-2.0 code): its on-disk cache, its posed meshes,
their 17 COCO and 16 MPII joints, and the body part of every vertex.

Anny builds its model data on first use (about 50 s, 1.7 GB peak, about 790 MB written). Only
the compact file that ``anny.Anny()`` loads (about 50 MB, 3 s to load) is kept:
:func:`prepare_cache` builds it once into the cache folder, :func:`load_body` refuses to start
without it rather than silently rebuilding inside a render worker.

Coordinates are Anny's: metres, x to the body's left, y to its back (the face looks to -y), z up.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from bnnpose.host.common import BnnposeError, atomic_dir, one_line, write_json
from bnnpose.host.skeleton import COCO_JOINTS, MPII_JOINTS

#: The release the joint and part tables below were made for.
ANNY_VERSION = "0.6.2"
#: Where the cache lives unless ``BNNPOSE_ANNY_CACHE`` names another folder.
DEFAULT_CACHE = Path("out/anny-cache")
_MARKER = "bnnpose-anny.json"
#: Anny's phenotype inputs, each in [0, 1].
PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")
#: Bodies posed per forward pass: padded to this size, so a body's vertices never depend on
#: which other bodies share its batch (the same kernels see the same shapes).
POSE_BATCH = 16

#: Body parts painted by the renderer, by the bone that moves each vertex most. Arms and legs
#: keep their two bone halves apart, so sleeves and trouser legs can stop at either.
PARTS = ("head", "eyes", "neck", "chest", "belly", "hips", "shoulder", "upperarm01",
         "upperarm02", "lowerarm01", "lowerarm02", "hand", "upperleg01", "upperleg02",
         "lowerleg01", "lowerleg02", "foot")
_PART_OF_BONE = {
    "head": "head", "eye": "eyes", "neck01": "neck", "neck02": "neck", "neck03": "neck",
    "spine01": "chest", "spine02": "chest", "spine03": "chest", "spine04": "belly",
    "spine05": "belly", "root": "hips", "pelvis": "hips", "clavicle": "shoulder",
    "shoulder01": "shoulder", "upperarm01": "upperarm01", "upperarm02": "upperarm02",
    "lowerarm01": "lowerarm01", "lowerarm02": "lowerarm02", "wrist": "hand", "finger": "hand",
    "metacarpal": "hand", "upperleg01": "upperleg01", "upperleg02": "upperleg02",
    "lowerleg01": "lowerleg01", "lowerleg02": "lowerleg02", "foot": "foot", "toe": "foot",
}


def cache_dir() -> Path:
    return Path(os.environ.get("BNNPOSE_ANNY_CACHE", DEFAULT_CACHE))


def cache_ready(path: str | os.PathLike | None = None) -> bool:
    path = cache_dir() if path is None else Path(path)
    try:
        marker = json.loads((path / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return all((path / f).is_file() for f in marker.get("files", ()))


def prepare_cache(path: str | os.PathLike | None = None) -> Path:
    """Build Anny's model data into ``path`` (default :func:`cache_dir`) and keep only the
    compact file ``anny.Anny()`` loads; a ready cache is left alone."""
    path = cache_dir() if path is None else Path(path)
    if cache_ready(path):
        return path
    import anny
    import anny.paths

    with atomic_dir(path) as tmp:
        anny.paths.set_anny_cache_path(tmp)
        try:
            anny.Anny()
        finally:
            anny.paths.set_anny_cache_path(path)
        keep = sorted(p for p in tmp.rglob("build_compact_model_data_*"))
        if not keep:
            raise BnnposeError(f"anny {anny.__version__} wrote no compact model data into {tmp}")
        for p in tmp.rglob("*"):
            if p.is_file() and p not in keep:
                p.unlink()
        write_json(tmp / _MARKER, {"anny": anny.__version__,
                                   "files": [str(p.relative_to(tmp)) for p in keep]})
    return path


@contextmanager
def _one_thread():
    # Posing on one thread keeps every sum in the same order, so a seed renders the same
    # vertices whatever the machine's core count.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True, eq=False)
class Body:
    """The loaded Anny model and the tables derived from its rest mesh. Compared and hashed by
    identity (one per process, :func:`load_body`), so caches of further tables can key on it."""

    model: object  #: ``anny.Anny``
    regressor: object  #: ``anny.KeypointsRegressor`` (COCO's 17 + 6 foot points)
    faces: np.ndarray  #: int32 ``[F, 3]`` triangles
    part: np.ndarray  #: int8 ``[V]`` index into :data:`PARTS`
    rest: np.ndarray  #: float32 ``[V, 3]`` rest vertices of the mean body (for fabric patterns)
    crown: int  #: the vertex at the top of the head (MPII's head top)
    bone: dict  #: bone name -> index
    hinge: dict  #: "elbow"/"knee" -> float64 [3] rest-frame hinge axis of the left limb


def _check_version() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("anny")
    except PackageNotFoundError:
        raise BnnposeError("the mesh renderer needs anny (pip install anny==0.6.2)") from None
    if found != ANNY_VERSION:
        raise BnnposeError(f"the mesh renderer was made for anny {ANNY_VERSION}, found {found}")


@lru_cache(maxsize=1)
def load_body() -> Body:
    """The Anny model from a prepared cache (see :func:`prepare_cache`), once per process."""
    _check_version()
    path = cache_dir()
    if not cache_ready(path):
        raise BnnposeError(f"no anny cache in {path}: build it once with "
                           "`python -m bnnpose.quantize.mesh_render --prepare-cache` "
                           "(about 1 min, 1.7 GB of memory)")
    import warnings

    import anny
    import anny.paths

    anny.paths.set_anny_cache_path(path)
    with warnings.catch_warnings():
        # Without NVIDIA Warp anny skins with torch, at the same speed on a CPU.
        warnings.filterwarnings("ignore", message="Fallback to lbs skinning")
        try:
            with torch.no_grad():
                model = anny.Anny()
                regressor = anny.KeypointsRegressor.coco(model)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            raise BnnposeError(f"cannot load anny from {path}: {one_line(e, 200)}") from None
    # float32 halves the posing time; the joints move by well under a micrometre.
    model.to(torch.float32).eval()
    regressor.to(torch.float32)
    bone = {name: i for i, name in enumerate(model.bone_labels)}
    with torch.no_grad(), _one_thread():
        out = model(pose_parameters=None, phenotype_kwargs=None)
        rest = out["vertices"][0].float().numpy()
        kp = regressor(out)[0].numpy()
    part = _vertex_parts(model, bone)
    head = np.flatnonzero(part == PARTS.index("head"))
    crown = int(head[np.argmax(rest[head, 2])])
    coco = {name: kp[i] for i, name in enumerate(COCO_JOINTS)}
    forward = np.array([0.0, -1.0, 0.0])
    upper = coco["left_elbow"] - coco["left_shoulder"]
    shin = coco["left_ankle"] - coco["left_knee"]
    # A hinge turns the child limb towards the body's front (elbow) or back (knee): its axis
    # is the limb direction crossed with that way.
    hinge = {"elbow": unit(np.cross(upper, forward)), "knee": unit(np.cross(shin, -forward))}
    faces = model.get_triangular_faces().numpy().astype(np.int32)
    return Body(model, regressor, faces, part, rest, crown, bone, hinge)


def unit(v) -> np.ndarray:
    """``v`` scaled to length 1, as a float64 array."""
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def _vertex_parts(model, bone: dict) -> np.ndarray:
    names = list(bone)
    part_of_bone = np.empty(len(names), np.int8)
    for i, name in enumerate(names):
        base = name.split(".")[0]  # "toe1-2.L" -> "toe", "upperarm01.L" -> "upperarm01"
        key = base if base in _PART_OF_BONE else base.split("-")[0].rstrip("0123456789")
        if key not in _PART_OF_BONE:
            raise BnnposeError(f"anny bone {name!r} has no body part: the part table is for "
                               f"anny {ANNY_VERSION}")
        part_of_bone[i] = PARTS.index(_PART_OF_BONE[key])
    idx = model.vertex_bone_indices.numpy()
    w = model.vertex_bone_weights.numpy()
    return part_of_bone[idx[np.arange(len(idx)), np.argmax(w, axis=1)]]


def pose_bodies(body: Body, phenotypes: np.ndarray, rotations: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Posed meshes and joints of ``N`` bodies.

    Args:
        phenotypes: ``[N, 6]`` in [0, 1], columns :data:`PHENOTYPES`.
        rotations: ``[N, bones, 3, 3]`` local rotations (Anny's ``local-ref``: axes of the
            rest frame, each bone turning about its head).

    Returns:
        vertices float32 ``[N, V, 3]``; joints float32 ``[N, 17 + 16, 3]``: COCO's 17, then
        MPII's 16 (pelvis and thorax midway between the hips and shoulders, upper neck at the
        head bone's root, head top at the crown vertex).
    """
    n = len(phenotypes)
    verts, joints = [], []
    with torch.no_grad(), _one_thread():
        for start in range(0, n, POSE_BATCH):
            ph = phenotypes[start:start + POSE_BATCH]
            rot = rotations[start:start + POSE_BATCH]
            pad = POSE_BATCH - len(ph)
            ph = np.concatenate([ph, np.repeat(ph[:1], pad, 0)])
            rot = np.concatenate([rot, np.repeat(rot[:1], pad, 0)])
            pose = torch.zeros((POSE_BATCH, rot.shape[1], 4, 4), dtype=body.model.dtype)
            pose[:, :, :3, :3] = torch.from_numpy(rot)
            pose[:, :, 3, 3] = 1
            kwargs = {k: torch.from_numpy(ph[:, i]).to(body.model.dtype)
                      for i, k in enumerate(PHENOTYPES)}
            out = body.model(pose_parameters=pose, phenotype_kwargs=kwargs)
            v = out["vertices"]
            coco = body.regressor(out)[:, : len(COCO_JOINTS)]
            keep = POSE_BATCH - pad
            verts.append(v[:keep].float().numpy())
            joints.append(_with_mpii(coco, v, out["bone_poses"], body)[:keep])
    return np.concatenate(verts), np.concatenate(joints)


def _with_mpii(coco: torch.Tensor, verts: torch.Tensor, bone_poses: torch.Tensor,
               body: Body) -> np.ndarray:
    c = {name: coco[:, i] for i, name in enumerate(COCO_JOINTS)}
    mpii = {
        "pelvis": (c["left_hip"] + c["right_hip"]) / 2,
        "thorax": (c["left_shoulder"] + c["right_shoulder"]) / 2,
        "upper_neck": bone_poses[:, body.bone["head"], :3, 3],
        "head_top": verts[:, body.crown],
    }
    for side, prefix in (("l", "left"), ("r", "right")):
        for part in ("ankle", "knee", "hip", "wrist", "elbow", "shoulder"):
            mpii[f"{side}_{part}"] = c[f"{prefix}_{part}"]
    stacked = torch.stack([coco[:, i] for i in range(len(COCO_JOINTS))]
                          + [mpii[name] for name in MPII_JOINTS], dim=1)
    return stacked.float().numpy()
