"""Train a registered pose network on cached synthetic renders.

A run folder holds ``config.json`` (the :class:`TrainConfig`), ``metrics.jsonl`` (one line per
epoch), ``best.pt`` (highest validation PCK), ``last.pt`` (also optimizer, scheduler and RNG
state, for ``--resume``) and ``curves.png``. Checkpoints hold only tensors and primitive
containers, so ``torch.load(path, weights_only=True)`` reads them; :func:`load_checkpoint`
rebuilds the network.

Usage: ``bnnpose train --epochs 4 --out out/train/run1`` or
``python -m bnnpose.quantize.train --resume out/train/run1``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from bnnpose.host import preprocess
from bnnpose.host.artifacts import BnnposeError, write_json
from bnnpose.models.codec import HeatmapCodec, mean_pose_baseline
from bnnpose.models.registry import MODEL_CONFIGS, MODEL_FAMILIES, build_model, model_joints
from bnnpose.models.skeleton import (
    FACE68_JOINTS, MPII_JOINTS, flip_permutation, flip_permutation_of,
)
from bnnpose.quantize import synthetic
from bnnpose.quantize.crops import apply_affines, random_affines
from bnnpose.quantize.evaluate import evaluate

#: Keys of a model checkpoint (``best.pt`` and the shipped ones); ``last.pt`` adds RESUME_KEYS.
CHECKPOINT_KEYS = ("model", "config", "state_dict", "train_config", "metrics")
RESUME_KEYS = ("optimizer", "scheduler", "epoch", "torch_rng_state", "history")

#: TrainConfig fields that steer one session only; the others are the recipe, which a resumed
#: run must share with the run it continues.
SESSION_FIELDS = ("out_dir", "cache_dir", "num_threads", "stop_after", "resume")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; ``config.json`` of a run folder."""

    model: str = "bhg-tiny"  #: registry name
    binary: bool = True  #: False trains the float twin
    bits: int | None = None  #: overrides the model's stream width k
    channels: int | None = None  #: overrides the model's block width
    stem_channels: int | None = None  #: overrides the width of the model's 8-bit stem
    pad_value: float | None = None  #: overrides the binary convs' border value (-1 or 0)
    end_bits: int | None = None  #: overrides the weight bits of the stem and head convs
    #: "synthetic" (the renderer) or a labelled set as ``bnnpose eval --data`` names it
    data: str = "synthetic"
    images: str | None = None  #: image folder of a real ``data`` set
    #: a real set whose people all join the training samples (e.g. teacher-labelled footage
    #: next to synthetic renders); keep its images apart from any set you evaluate on
    mix: str | None = None
    mix_images: str | None = None  #: image folder of ``mix``
    mix_repeat: int = 1  #: times each ``mix`` person is seen per epoch
    #: training samples: synthetic renders (seeds TRAIN_SEED_OFFSET + i) or, for real data,
    #: at most this many people, taken in file order after the held-out ones
    n_train: int = 24_000
    #: held-out samples: renders with seeds EVAL_SEED_OFFSET + i, or a real set's first people
    n_val: int = 512
    epochs: int = 4
    batch_size: int = 32
    lr: float = 2e-3  #: Adam peak learning rate
    weight_decay: float = 0.0
    warmup_steps: int = 100  #: linear warmup before the cosine decay
    flip: float = 0.5  #: probability of a horizontal flip per sample
    rotate: float = 0.0  #: max rotation of a training crop, degrees (uniform in +-rotate)
    scale: float = 0.0  #: max zoom change of a training crop (uniform in 1 +- scale)
    sigma: float = 1.0  #: target Gaussian width, heatmap pixels
    #: initial max |weight| of each head channel (see ``_init_head``); None keeps the default
    head_init: float | None = 2**-5.5
    seed: int = 0  #: initialisation, shuffling and flips
    #: checkpoint (e.g. of the float twin) whose matching tensors initialise the network
    init_from: str | None = None
    #: train a per-joint ``gain_j * heatmap + bias_j`` (gain > 0) on top of the network; it
    #: only shapes the loss, so the network (and its state_dict) stays the exported one
    head_affine: bool = False
    #: checkpoint (e.g. the float twin) whose heatmaps the network also regresses to
    distill_from: str | None = None
    distill_weight: float = 0.5  #: weight of the distillation loss (with ``distill_from``)
    #: loss against the teacher's heatmaps, one of LOSSES; None uses ``loss``. "softmax" is
    #: the KL divergence of the spatial softmaxes (BiHRNet's recipe: awing + softmax)
    distill_loss: str | None = None
    #: "mse" (heatmap regression), "awing" (Adaptive Wing, BiHRNet's heatmap loss) or
    #: "softmax": cross-entropy of the spatial softmax of each (affine-scaled) heatmap
    #: against the normalised target, blind to the heatmaps' scale
    loss: str = "mse"
    #: folder or .npz of the user's SMPL-X body model: also trains a BiDRN's SMPL-X head
    #: (``models/smplx_head.py``) by the 2-D reprojection of its joints; None: no head
    smplx_model: str | None = None
    smplx_weight: float = 1.0  #: weight of the SMPL-X reprojection loss
    out_dir: str = "out/train/bhg-tiny"
    cache_dir: str = "out/cache/synthetic"  #: rendered and cropped training arrays
    # One thread by default: with the other core busy, a second OpenMP thread spin-waits on it
    # and made a training step ten times slower in measurements.
    num_threads: int = 1
    stop_after: int | None = None  #: end this session after that many epochs
    resume: bool = False  #: continue from out_dir/last.pt

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise BnnposeError(f"unknown training options: {', '.join(sorted(unknown))}")
        return cls(**d)

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise BnnposeError(f"cannot read training config {path}: {_one_line(e)}") from None

    def recipe(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in SESSION_FIELDS}


def recipe_digest(recipe: dict) -> str:
    """sha256 of a recipe dict (``TrainConfig.recipe()``, possibly with fields replaced): the
    identity under which benches reuse a finished run."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


# ----------------------------------------------------------------------------- data


def _sources_digest(*modules) -> str:
    # Part of the cache keys, so that a change to the code that made the cached images (the
    # renderer, the host's crop) never serves stale ones.
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:10]


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
        from bnnpose.quantize import synthetic_face

        code, kind = _sources_digest(synthetic, synthetic_face, preprocess), "faces"
    else:
        code, kind = _sources_digest(synthetic, preprocess), "crops"
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
    with _atomic_file(path) as f:
        np.savez_compressed(f, images=images, keypoints=keypoints, visible=visible)
    return images, keypoints, visible


def _synthetic_arrays(n: int, val: bool, cache_dir: str, model_cfg) -> tuple[np.ndarray, ...]:
    """Renders for a model: faces for a face layout, else bodies with their MPII joints put
    where the model's layout names them (the rest unlabelled)."""
    from bnnpose.quantize import synthetic_face
    from bnnpose.quantize.datasets import to_layout

    size = model_cfg.input_size
    if model_cfg.layout == "face68":
        offset = synthetic_face.EVAL_SEED_OFFSET if val else synthetic_face.TRAIN_SEED_OFFSET
        return cached_renders(n, offset, size, cache_dir, faces=True)
    offset = synthetic.EVAL_SEED_OFFSET if val else synthetic.TRAIN_SEED_OFFSET
    images, kp, vis = cached_renders(n, offset, size, cache_dir)
    joints = model_joints(model_cfg)
    if joints == MPII_JOINTS[: len(joints)]:
        return images, kp[:, : len(joints)], vis[:, : len(joints)]
    return (images, *to_layout(kp, vis, MPII_JOINTS, joints))


def training_arrays(cfg: TrainConfig, model_cfg) -> tuple[tuple, tuple]:
    """``(train, val)`` arrays (images, keypoints, visible) of a recipe's data, cached.

    A real set is split by image, so no photograph lends people to both sides: the people
    of its first images (at least ``n_val``) are held out, the next ``n_train`` train. All
    people of a ``mix`` set join the training samples, each ``mix_repeat`` times.
    """
    # The mixed-in set first: a bad one fails before minutes of rendering.
    mixed = None if cfg.mix is None else _people(cfg.mix, cfg.mix_images, cfg.cache_dir,
                                                 model_cfg)[0]
    if cfg.data == "synthetic":
        train = _synthetic_arrays(cfg.n_train, False, cfg.cache_dir, model_cfg)
        val = _synthetic_arrays(cfg.n_val, True, cfg.cache_dir, model_cfg)
    else:
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
        train, val = tuple(a[train_idx] for a in arrays), tuple(a[is_val] for a in arrays)
    if mixed is not None:
        train = tuple(np.concatenate([a, *[m] * cfg.mix_repeat])
                      for a, m in zip(train, mixed, strict=True))
    return train, val


def _people(spec: str, images: str | None, cache_dir: str, model_cfg
            ) -> tuple[tuple[np.ndarray, ...], list[str]]:
    """Crops of every person of a real set (see :func:`crops.people_arrays`), cached by the
    annotation, the image files' sizes and dates, and the crop code; and their images."""
    from bnnpose.quantize import crops, datasets

    data = datasets.from_spec(spec, images)
    for reason, n in data.skipped.items():
        tqdm.write(f"{spec}: skipped {n} people ({reason})")
    joints = model_joints(model_cfg)
    key = hashlib.sha256(_sources_digest(preprocess, crops).encode())
    key.update(f"{spec}|{model_cfg.input_size}|{','.join(joints)}".encode())
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
    with _atomic_file(path) as f:
        np.savez(f, images=arrays[0], keypoints=arrays[1], visible=arrays[2])
    return arrays, sources


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator:
    """A binary file object that becomes ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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


def keypoint_mse_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """mmpose ``KeypointMSELoss`` with target weights: mean of ``(w * (pred - target))**2``.

    Shapes: pred, target ``[B, J, h, w]``; weight ``[B, J]``.
    """
    return ((pred - target) * weight[:, :, None, None]).pow(2).mean()


def spatial_softmax_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Weighted mean over joints of the cross-entropy between ``softmax(pred)`` over each
    heatmap's pixels and the target heatmap normalised to sum 1. Joints with an empty target
    are skipped. Shapes as :func:`keypoint_mse_loss`."""
    logp = torch.log_softmax(pred.flatten(2), dim=-1)
    t = target.flatten(2)
    mass = t.sum(-1)
    w = weight * (mass > 0)
    ce = -(t / mass.clamp_min(1e-12)[..., None] * logp).sum(-1)
    return (ce * w).sum() / w.sum().clamp_min(1.0)


def adaptive_wing_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, omega: float = 14.0,
    theta: float = 0.5, epsilon: float = 1.0, alpha: float = 2.1,
) -> torch.Tensor:
    """Adaptive Wing loss (Wang et al., ICCV 2019) with target weights, mean over pixels.

    Near a target's foreground (target -> 1) the exponent ``alpha - target`` makes it
    steeper than MSE for small errors, so the peak is not blurred; on the background it
    tends to a plain L1. ``theta`` joins the log and the linear branch with a continuous
    gradient. Shapes as :func:`keypoint_mse_loss`.
    """
    diff = (pred - target).abs()
    power = alpha - target
    ratio = theta / epsilon
    a = omega / (1 + ratio**power) * power * ratio ** (power - 1) / epsilon
    c = theta * a - omega * torch.log1p(ratio**power)
    loss = torch.where(diff < theta, omega * torch.log1p((diff / epsilon) ** power),
                       a * diff - c)
    return (loss * weight[:, :, None, None]).mean()


#: heatmap loss functions by ``TrainConfig.loss``
LOSSES = {"mse": keypoint_mse_loss, "awing": adaptive_wing_loss, "softmax": spatial_softmax_loss}


def teacher_heatmaps(teacher: nn.Module, teacher_gain: torch.Tensor | None,
                     inputs: torch.Tensor, loss: str) -> torch.Tensor:
    """The targets a student regresses to under ``loss``: the teacher's heatmaps at the
    temperature the teacher was trained at (its head gain), or with the softmax loss their
    spatial softmax, so that the cross-entropy is the KL divergence up to the teacher's
    constant entropy."""
    with torch.no_grad():
        soft = teacher(inputs)
        if teacher_gain is not None:
            soft = soft * teacher_gain[:, None, None]
    if loss == "softmax":
        soft = torch.softmax(soft.flatten(2), dim=-1).view_as(soft)
    return soft


# ------------------------------------------------------------------------ checkpoints


def _atomic_save(obj: dict, path: Path) -> None:
    with _atomic_file(path) as f:
        torch.save(obj, f)


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Rebuild the network stored in a checkpoint: ``(model in eval mode, checkpoint dict)``.

    Raises:
        BnnposeError: the file is missing or not a loadable bnnpose checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise BnnposeError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        config = dict(ckpt["config"])
        model = build_model(ckpt["model"], binary=config.pop("binary"), **config)
        model.load_state_dict(ckpt["state_dict"])
    # Whatever a damaged or foreign file makes torch raise, the user needs the same answer.
    except Exception as e:
        raise BnnposeError(f"not a valid bnnpose checkpoint: {path} ({_one_line(e)})") from None
    return model.eval(), ckpt


# --------------------------------------------------------------------------- training


class HeadAffine(nn.Module):
    """Per-joint ``gain_j * x + bias_j`` with ``gain_j = softplus(p_j) > 0``, for training only.

    A binary head's power-of-two scale cannot follow the targets' peak of 1 (Adam drives it to
    1/256 and below); a positive gain absorbs that mismatch in the loss. The gain is positive
    and per channel, so the arg-max of every heatmap, and so the hardware's decoding, is the
    same with or without it; the network itself is what gets exported and evaluated.
    """

    def __init__(self, num_joints: int):
        super().__init__()
        # softplus(log(e - 1)) = 1: the identity at the start.
        self.gain_param = nn.Parameter(torch.full((num_joints,), math.log(math.e - 1.0)))
        self.bias = nn.Parameter(torch.zeros(num_joints))

    @property
    def gain(self) -> torch.Tensor:
        return nn.functional.softplus(self.gain_param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain[:, None, None] + self.bias[:, None, None]

    def to_lists(self) -> dict:
        """``{"gain": [...], "bias": [...]}`` as plain floats (checkpoint key ``head_affine``)."""
        with torch.no_grad():
            return {"gain": [float(v) for v in self.gain], "bias": [float(v) for v in self.bias]}

    def load_lists(self, d: dict) -> None:
        with torch.no_grad():
            gain = torch.tensor(d["gain"], dtype=torch.float32)
            # Inverse softplus, stable for large gains.
            self.gain_param.copy_(gain + torch.log(-torch.expm1(-gain)))
            self.bias.copy_(torch.tensor(d["bias"], dtype=torch.float32))


class _WithAffine(nn.Module):
    """``affine(model(x))``, to score the affine-corrected heatmaps next to the raw ones."""

    def __init__(self, model: nn.Module, affine: HeadAffine):
        super().__init__()
        self.model, self.affine = model, affine

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        out = self.model(x)
        return [self.affine(o) for o in out] if isinstance(out, list) else self.affine(out)


def _lr_schedule(warmup: int, total: int):
    """Multiplier of the peak learning rate at optimizer step ``s``: linear warmup, cosine."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _init_head(model: nn.Module, max_abs: float) -> None:
    """Rescale each output channel of every head in ``model.heads`` to ``max |w| = max_abs``.

    A binary head outputs ``scale * sum(+-stream)`` with ``scale = 2**ceil(log2(max |w|))``,
    and the default init (scale 1/4) makes its outputs about 50x larger than Gaussian targets
    of peak 1. Only the largest latent weight of a channel sees a gradient toward a smaller
    scale, so shrinking it in training takes thousands of steps; 2**-5.5 starts the scale at
    1/32, where 32 agreeing stream values of 1 make a peak of exactly 1.
    """
    with torch.no_grad():
        for head in model.heads:
            head.weight.mul_(max_abs / head.weight.abs().amax(dim=(1, 2, 3), keepdim=True))


def _init_from(model: nn.Module, path: str) -> dict:
    """Copy the tensors of checkpoint ``path`` whose names and shapes ``model`` shares;
    returns the checkpoint.

    The float twin names its convs and BNs like the binary network, so this starts a binary
    run from a trained float one; the quantizers' own state stays at its initial value.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = ckpt["state_dict"]
    except Exception as e:  # the user needs one answer for a missing or foreign file
        raise BnnposeError(f"cannot initialise from {path}: {_one_line(e)}") from None
    own = model.state_dict()
    mismatched = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if mismatched:
        raise BnnposeError(f"{path} has other shapes for: {', '.join(mismatched)}")
    result = model.load_state_dict(state, strict=False)
    tqdm.write(f"init from {path}: {len(state) - len(result.unexpected_keys)} tensors loaded; "
               f"missing {sorted(result.missing_keys)}; "
               f"unexpected {sorted(result.unexpected_keys)}")
    return ckpt


def create_model(cfg: TrainConfig) -> tuple[nn.Module, dict | None]:
    """The untrained network of a recipe, seeded by ``cfg.seed`` or loaded from
    ``cfg.init_from``, and the checkpoint it was loaded from.

    A float head's weights are far larger than a binary head's scale should start, so the
    head is rescaled unless the source is of the same kind: then the run is a warm start.
    """
    overrides = {k: getattr(cfg, k) for k in ("bits", "channels", "stem_channels", "pad_value",
                                              "end_bits") if getattr(cfg, k) is not None}
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, binary=cfg.binary, **overrides)
    source = None if cfg.init_from is None else _init_from(model, cfg.init_from)
    warm = source is not None and source.get("config", {}).get("binary") == cfg.binary
    if cfg.head_init is not None and not warm:
        _init_head(model, cfg.head_init)
    return model, source


def _check(cfg: TrainConfig) -> None:
    if cfg.model not in MODEL_CONFIGS:
        raise BnnposeError(f"unknown model {cfg.model!r}; known: {', '.join(MODEL_CONFIGS)}")
    if cfg.n_train < cfg.batch_size or cfg.batch_size < 2:
        raise BnnposeError(f"need n_train >= batch_size >= 2, got {cfg.n_train}, {cfg.batch_size}")
    if cfg.n_train > synthetic.EVAL_SEED_OFFSET - synthetic.TRAIN_SEED_OFFSET:
        raise BnnposeError(f"n_train={cfg.n_train} would reach the held-out evaluation seeds")
    if cfg.n_val < 1 or cfg.epochs < 1:
        raise BnnposeError(f"need n_val >= 1 and epochs >= 1, got {cfg.n_val}, {cfg.epochs}")
    if cfg.channels is not None and (cfg.channels < 4 or cfg.channels % 4):
        raise BnnposeError("channels must be a positive multiple of 4 (HPM halves twice), "
                           f"got {cfg.channels}")
    if not 0 <= cfg.rotate <= 180 or not 0 <= cfg.scale < 1:
        raise BnnposeError(f"need 0 <= rotate <= 180 and 0 <= scale < 1, got {cfg.rotate}, "
                           f"{cfg.scale}")
    if cfg.mix_repeat < 1:
        raise BnnposeError(f"mix_repeat must be >= 1, got {cfg.mix_repeat}")
    if cfg.data == "synthetic" and cfg.images is not None:
        raise BnnposeError("--images names the image folder of a real --data set, not synthetic")
    for name in (cfg.loss, cfg.distill_loss or cfg.loss):
        if name not in LOSSES:
            raise BnnposeError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    if cfg.smplx_model is not None and MODEL_FAMILIES[cfg.model] != "bidrn":
        raise BnnposeError(f"--smplx-model trains BiDRN's SMPL-X head; {cfg.model} is a "
                           f"{MODEL_FAMILIES[cfg.model]} model")
    if cfg.distill_from is not None and not Path(cfg.distill_from).is_file():
        raise BnnposeError(f"distillation teacher not found: {cfg.distill_from}")


def _plot_curves(history: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax_loss, ax_pck = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss (weighted MSE)", yscale="log")
    ax_pck.plot(epochs, [h["val_pck"] for h in history], marker="o", label="model")
    ax_pck.plot(epochs, [h["val_pck_mean_pose"] for h in history], ls="--", label="mean pose")
    ax_pck.set(xlabel="epoch", ylabel="val PCK@0.2", ylim=(0, 1))
    ax_pck.legend()
    with _atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100)


def _distributed() -> tuple[int, int]:
    """``(rank, world size)``: from torchrun's variables, with the process group created here
    (gloo on CPUs, NCCL on GPUs); ``(0, 1)`` for a plain run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def train(cfg: TrainConfig) -> Path:
    """Train (or with ``cfg.resume`` continue) a run in ``cfg.out_dir``; returns that folder.

    Under ``torchrun --nproc_per_node N`` every process takes 1/N of each batch and gradients
    are averaged (DistributedDataParallel), so the recipe and its batch size mean the same as
    in one process; rank 0 alone renders the data cache, evaluates and writes the run folder.
    """
    _check(cfg)
    rank, world = _distributed()
    if cfg.batch_size % world:
        raise BnnposeError(f"batch size {cfg.batch_size} does not split over {world} processes")
    lead = rank == 0
    torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path, metrics_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"

    state = None
    if cfg.resume:
        if not last_path.is_file():
            raise BnnposeError(f"nothing to resume: {last_path} does not exist")
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        stored = TrainConfig.from_dict(state["train_config"]).recipe()
        if stored != cfg.recipe():
            changed = sorted(k for k in stored if stored[k] != cfg.recipe()[k])
            raise BnnposeError(f"cannot resume {out} with a different recipe: {', '.join(changed)}")
    elif lead:
        for stale in (last_path, best_path, metrics_path, out / "curves.png"):
            stale.unlink(missing_ok=True)
    if lead:
        cfg.save(out / "config.json")

    model, source = create_model(cfg)
    size = model.cfg.input_size
    codec = HeatmapCodec((size, size), (model.cfg.heatmap_size,) * 2, cfg.sigma)
    if not lead:  # the cache is written once, by rank 0, then read by all
        _barrier(world)
    train_data, val_data = training_arrays(cfg, model.cfg)
    if lead:
        _barrier(world)
    n_train = len(train_data[0])
    if n_train < cfg.batch_size:
        raise BnnposeError(f"{cfg.data}: {n_train} training samples, fewer than one batch "
                           f"of {cfg.batch_size}")
    # Over every known position (renders know joints outside the crop; real sets do not).
    mean_pose = mean_pose_baseline(train_data[1], np.isfinite(train_data[1]).all(axis=-1))

    steps_per_epoch = n_train // cfg.batch_size  # full batches only: BN needs the samples
    joints = model_joints(model.cfg)
    flip_perm = flip_permutation_of(joints)
    affine = HeadAffine(model.cfg.num_joints) if cfg.head_affine else None
    if affine is not None and source is not None and "head_affine" in source:
        affine.load_lists(source["head_affine"])
    teacher, teacher_gain = None, None
    distill_loss = cfg.distill_loss or cfg.loss
    if cfg.distill_from is not None:
        teacher, teacher_ckpt = load_checkpoint(cfg.distill_from)
        if "head_affine" in teacher_ckpt:  # the temperature the teacher was trained at
            teacher_gain = torch.tensor(teacher_ckpt["head_affine"]["gain"])
    smplx_head = body_model = None
    if cfg.smplx_model is not None:
        from bnnpose.models import smplx_head as sx

        if world > 1:
            raise BnnposeError("the SMPL-X head trains in one process")
        body_model, body_joints = sx.load_body_model(cfg.smplx_model), sx.body_joint_names()
        smplx_head = sx.SMPLXHead(model)
        smplx_head.attach(model)
        if source is not None and "smplx_head" in source:
            smplx_head.load_state_dict(source["smplx_head"])
    params = list(model.parameters()) + ([] if affine is None else list(affine.parameters()))
    params += [] if smplx_head is None else list(smplx_head.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_schedule(cfg.warmup_steps, steps_per_epoch * cfg.epochs))
    history: list[dict] = []
    first_epoch = 1
    if state is not None:
        model.load_state_dict(state["state_dict"])
        if affine is not None:
            affine.load_lists(state["head_affine"])
        if smplx_head is not None:
            smplx_head.load_state_dict(state["smplx_head"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng_state"])
        history = list(state["history"])
        first_epoch = state["epoch"] + 1
    # Rewritten from the checkpoint, so epochs logged after it by an interrupted session go.
    if lead:
        metrics_path.write_text("".join(json.dumps(h) + "\n" for h in history))
    net = model if affine is None else _WithAffine(model, affine)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net)
    best_pck = max((h["val_pck"] for h in history), default=-math.inf)

    def checkpoint(metrics: dict) -> dict:
        ckpt = {"model": cfg.model, "config": model.cfg.to_dict(),
                # A plain dict drops the per-module _metadata, which Brevitas's deep module
                # trees make larger than the weights themselves.
                "state_dict": dict(model.state_dict()), "train_config": cfg.to_dict(),
                "metrics": metrics}
        if affine is not None:
            ckpt["head_affine"] = affine.to_lists()
        if smplx_head is not None:
            ckpt["smplx_head"] = dict(smplx_head.state_dict())
        return ckpt

    last_epoch = cfg.epochs if cfg.stop_after is None else min(
        cfg.epochs, first_epoch - 1 + cfg.stop_after)
    for epoch in range(first_epoch, last_epoch + 1):
        started = time.perf_counter()
        # Shuffling and flips depend on (seed, epoch) alone, so a resumed run sees the same.
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(n_train)[: steps_per_epoch * cfg.batch_size]
        order = order.reshape(steps_per_epoch, cfg.batch_size)
        flips = rng.random(order.shape) < cfg.flip
        affines = random_affines(rng, order.size, size, cfg.rotate, cfg.scale)
        if affines is not None:
            affines = affines.reshape(*order.shape, 2, 3)
        model.train()
        total_loss = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                   disable=not lead)
        for step in bar:
            # Sorted gathers are faster; BN ignores sample order. Rank r takes every world-th.
            idx = np.sort(order[step])[rank::world]
            inputs, target, weight, *kp = make_batch(
                *(a[idx] for a in train_data), flips[step][rank::world], codec,
                None if affines is None else affines[step][rank::world], flip_perm,
                with_keypoints=smplx_head is not None)
            pred = net(inputs)
            # A stacked network returns every stack's heatmaps: each is supervised.
            preds = pred if isinstance(pred, list) else [pred]
            loss = sum(LOSSES[cfg.loss](p, target, weight) for p in preds)
            if teacher is not None:
                soft = teacher_heatmaps(teacher, teacher_gain, inputs, distill_loss)
                loss = loss + cfg.distill_weight * sum(
                    LOSSES[distill_loss](p, soft, weight) for p in preds)
            if smplx_head is not None:
                loss = loss + cfg.smplx_weight * sx.reprojection_loss(
                    body_model, smplx_head(), kp[0], weight, size, joints, body_joints)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / (step + 1):.5f}")
        bar.close()
        if world > 1:
            summed = torch.tensor(total_loss)
            torch.distributed.all_reduce(summed)
            total_loss = summed.item() / world
        if not lead:
            _barrier(world)  # rank 0 evaluates and writes the run folder
            continue
        # PCK of the raw network output: the hardware runs the network without the affine.
        result = evaluate(model, *val_data, mean_pose, joints=joints)
        extra = {}
        if affine is not None:
            with_affine = evaluate(_WithAffine(model, affine), *val_data, mean_pose,
                                   joints=joints)
            extra = {"val_pck_affine": with_affine["pck"], "head_affine": affine.to_lists()}
        metrics = {
            "epoch": epoch,
            "step": epoch * steps_per_epoch,
            "lr": scheduler.get_last_lr()[0],
            "train_loss": total_loss / steps_per_epoch,
            "val_pck": result["pck"],
            "val_pck_mean_pose": result["pck_mean_pose"],
            "val_per_joint": result["per_joint"],
            "val_instances": result["n_instances"],
            "world_size": world,
            **extra,
            "epoch_time_s": time.perf_counter() - started,
        }
        history.append(metrics)
        with metrics_path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        tqdm.write(f"epoch {epoch}: loss {metrics['train_loss']:.5f}  val PCK@0.2 "
                   f"{metrics['val_pck']:.4f} (mean pose {metrics['val_pck_mean_pose']:.4f}"
                   + (f", with affine {extra['val_pck_affine']:.4f}" if extra else "")
                   + f")  {metrics['epoch_time_s']:.0f} s")
        if metrics["val_pck"] > best_pck:
            best_pck = metrics["val_pck"]
            _atomic_save(checkpoint(metrics), best_path)
        _atomic_save({**checkpoint(metrics), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "epoch": epoch,
                      "torch_rng_state": torch.get_rng_state(), "history": history}, last_path)
        _plot_curves(history, out / "curves.png")
        _barrier(world)
    if world > 1:
        identical = _replicas_identical(net)
        if lead:
            write_json(out / "distributed.json", {"world_size": world,
                                                  "backend": torch.distributed.get_backend(),
                                                  "replicas_identical": identical})
        if not identical:
            raise BnnposeError("the processes ended with different weights")
    return out


def _replicas_identical(net: nn.Module) -> bool:
    """Whether every process holds rank 0's parameters, bit for bit.

    Buffers are left out: each process's last step updated its BatchNorm running statistics
    from its own share of the batch, and DDP replaces them with rank 0's at the next forward;
    rank 0's are the ones evaluated and saved.
    """
    dist = torch.distributed
    differs = torch.zeros(1)
    for t in net.parameters():
        ref = t.detach().clone()
        dist.broadcast(ref, 0)
        differs += float(not torch.equal(ref, t.detach()))
    dist.all_reduce(differs)
    return differs.item() == 0


# -------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="bnnpose train", description=__doc__.splitlines()[0])
    recipe = p.add_argument_group("recipe (fixed for a run; not allowed with --resume)")
    recipe.add_argument("--model", help=f"registry name (default: {d.model})")
    recipe.add_argument("--float", dest="binary", action="store_const", const=False,
                        help="train the float twin instead of the binary network")
    recipe.add_argument("--bits", type=int, help="stream width k, 0 for real-valued streams "
                        "that do not map to FINN (default: the model's)")
    recipe.add_argument("--channels", type=int, help="block width (default: the model's)")
    recipe.add_argument("--stem-channels", type=int,
                        help="width of the 8-bit stem (default: the model's)")
    recipe.add_argument("--pad-value", type=float, choices=(-1.0, 0.0),
                        help="border value of the binary convs' inputs (default: the model's)")
    recipe.add_argument("--end-bits", type=int, choices=(1, 2, 4, 8),
                        help="weight bits of the stem and head convs (default: the model's)")
    recipe.add_argument("--data", help="synthetic, or a labelled set as `bnnpose eval --data` "
                        "takes it (coco:ANN.json, mpii:FILE; with --images)")
    recipe.add_argument("--images", help="image folder of a real --data set")
    recipe.add_argument("--mix", metavar="SPEC",
                        help="a real set whose people all join the training samples")
    recipe.add_argument("--mix-images", metavar="DIR", help="image folder of --mix")
    recipe.add_argument("--mix-repeat", type=int, metavar="K",
                        help=f"times each --mix person is seen per epoch (default: {d.mix_repeat})")
    recipe.add_argument("--n-train", type=int,
                        help=f"training samples, at most (default: {d.n_train})")
    recipe.add_argument("--n-val", type=int,
                        help=f"held-out samples, at least (default: {d.n_val})")
    recipe.add_argument("--epochs", type=int, help=f"default: {d.epochs}")
    recipe.add_argument("--batch-size", type=int, help=f"default: {d.batch_size}")
    recipe.add_argument("--lr", type=float, help=f"peak Adam learning rate (default: {d.lr})")
    recipe.add_argument("--weight-decay", type=float, help=f"default: {d.weight_decay}")
    recipe.add_argument("--warmup-steps", type=int, help=f"default: {d.warmup_steps}")
    recipe.add_argument("--flip", type=float, help=f"flip probability (default: {d.flip})")
    recipe.add_argument("--rotate", type=float, metavar="DEG",
                        help=f"max random rotation of a crop (default: {d.rotate})")
    recipe.add_argument("--scale", type=float, metavar="S",
                        help=f"max random zoom change, 1 +- S (default: {d.scale})")
    recipe.add_argument("--sigma", type=float, help=f"target Gaussian sigma (default: {d.sigma})")
    recipe.add_argument("--head-init", type=float,
                        help=f"initial max |w| per head channel (default: {d.head_init:.4g})")
    recipe.add_argument("--seed", type=int, help=f"default: {d.seed}")
    recipe.add_argument("--init-from", metavar="CKPT",
                        help="initialise matching tensors from this checkpoint, e.g. the "
                             "float twin's best.pt")
    recipe.add_argument("--head-affine", action="store_const", const=True,
                        help="train a per-joint positive gain and bias on the heatmaps "
                             "(training only; stored as head_affine in the checkpoint)")
    recipe.add_argument("--distill-from", metavar="CKPT",
                        help="also regress the heatmaps of this checkpoint (e.g. the float twin)")
    recipe.add_argument("--loss", choices=tuple(LOSSES),
                        help=f"heatmap loss (default: {d.loss})")
    recipe.add_argument("--distill-weight", type=float,
                        help=f"weight of the distillation loss (default: {d.distill_weight})")
    recipe.add_argument("--distill-loss", choices=tuple(LOSSES),
                        help="loss against the teacher (default: --loss); softmax is the KL "
                        "divergence of the spatial softmaxes")
    recipe.add_argument("--smplx-model", metavar="PATH",
                        help="your SMPL-X model (folder or .npz; not shipped): also train a "
                        "BiDRN's SMPL-X head by 2-D reprojection (needs bnnpose[smplx])")
    recipe.add_argument("--smplx-weight", type=float,
                        help=f"weight of the SMPL-X loss (default {d.smplx_weight})")
    session = p.add_argument_group("session")
    session.add_argument("--out", dest="out_dir", metavar="DIR",
                         help=f"run folder (default: {d.out_dir})")
    session.add_argument("--resume", metavar="RUN_DIR",
                         help="continue the run in RUN_DIR from its last.pt")
    session.add_argument("--cache-dir", metavar="DIR", help=f"default: {d.cache_dir}")
    session.add_argument("--num-threads", type=int,
                         help=f"torch threads (default: {d.num_threads})")
    session.add_argument("--stop-after", type=int, metavar="N",
                         help="stop this session after N epochs (continue with --resume)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``bnnpose train`` entry point; returns the exit status."""
    args = vars(build_parser().parse_args(argv))
    resume_dir = args.pop("resume")
    given = {k: v for k, v in args.items() if v is not None}
    if resume_dir is not None:
        recipe_opts = sorted(set(given) - set(SESSION_FIELDS))
        if recipe_opts:
            raise BnnposeError(
                f"--resume continues the stored recipe; drop: {', '.join(recipe_opts)}")
        if "out_dir" in given:
            raise BnnposeError("--resume trains in RUN_DIR; drop --out")
        stored = TrainConfig.load(Path(resume_dir) / "config.json")
        # A stored session limit ended the earlier session; it does not carry over.
        cfg = TrainConfig.from_dict({**stored.to_dict(), "stop_after": None, **given,
                                     "out_dir": resume_dir, "resume": True})
    else:
        cfg = replace(TrainConfig(), **given)
    out = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        torch.distributed.destroy_process_group()
        return 0
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(history, key=lambda h: h["val_pck"])
    print(f"{out}: best val PCK@0.2 {best['val_pck']:.3f} (epoch {best['epoch']}), "
          f"mean pose {best['val_pck_mean_pose']:.3f}")
    return 0


if __name__ == "__main__":
    from bnnpose.host.cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
