"""The recipe of a training run (:class:`TrainConfig`, ``config.json`` of a run folder) and its
checks."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from bnnpose.host.common import BnnposeError, one_line, write_json
from bnnpose.models.blocks import SIGN_GRADIENTS
from bnnpose.models.registry import arch_overrides, arch_text, model_entry
from bnnpose.quantize import synthetic
from bnnpose.quantize.losses import LOSSES

#: TrainConfig fields that steer one session only; the others are the recipe, which a resumed
#: run must share with the run it continues.
SESSION_FIELDS = ("out_dir", "cache_dir", "num_threads", "render_workers", "device",
                  "time_budget_s", "stop_after", "resume")
DEVICES = ("cpu", "cuda", "auto")
#: recipe fields added after runs were recorded, with their neutral values
LATER_FIELDS = {"rsign": None, "feature_distill_weight": 0.0, "sign_grad": "ste",
                "float_weight_epochs": 0, "facing_weight": 0.0}


#: ``data`` values that render their samples rather than read a labelled set.
RENDERED = ("synthetic", "mesh")
#: ``data`` prefix of a pack (``quantize/packed.py``): crops made elsewhere, mixed-in people
#: included.
PACKED = "packed:"


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
    rsign: bool | None = None  #: overrides the model's RSign thresholds before sign()
    #: further overrides of the model's config by field name (depth, stacks, widths,
    #: input_size, ...): the architectures ``bnnpose dse`` sweeps
    arch: dict | None = None
    #: "synthetic" (stick figures), "mesh" (mesh bodies, ``mesh_render``) or a labelled set
    #: as ``bnnpose eval --data`` names it
    data: str = "synthetic"
    images: str | None = None  #: image folder of a real ``data`` set
    #: a real set whose people all join the training samples (e.g. teacher-labelled footage
    #: next to synthetic renders); keep its images apart from any set you evaluate on
    mix: str | list[str] | None = None
    mix_images: str | list[str] | None = None  #: image folder of ``mix`` (one per set)
    mix_repeat: int = 1  #: times each ``mix`` person is seen per epoch
    #: training samples: synthetic renders (seeds TRAIN_SEED_OFFSET + i) or, for real data,
    #: at most this many people, taken in file order after the held-out ones
    n_train: int = 24_000
    #: held-out samples: renders with seeds EVAL_SEED_OFFSET + i, or a real set's first people
    n_val: int = 512
    epochs: int = 4
    batch_size: int = 32
    lr: float = 2e-3  #: Adam peak learning rate
    #: Adam weight decay of every parameter except the latent weights of 1-bit convs, whose
    #: sign alone counts: decay would only pull them toward flipping
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
    #: weight of real-to-binary attention transfer (Martinez et al., ICLR 2020): at every
    #: block's output, the L2 distance between the student's and the ``distill_from``
    #: teacher's normalised spatial attention maps (mean over channels of x**2); 0: off
    feature_distill_weight: float = 0.0
    #: weight of the facing loss (``quantize/facing.py``): a linear probe on the last head's
    #: input learns from the labels whether each person shows the camera their front or
    #: their back; training only; 0: off
    facing_weight: float = 0.0
    #: backward pass of sign(): "ste" (clipped straight-through) or "approx" (Bi-Real Net's
    #: ApproxSign); the forward pass and the exported network are the same
    sign_grad: str = "ste"
    #: two-stage training (ReActNet): the first this many epochs train with binary activations
    #: and real-valued weights, the rest binarize the weights too; each stage has its own
    #: warmup and cosine decay, and only second-stage epochs become ``best.pt``
    float_weight_epochs: int = 0
    #: folder or .npz of the user's SMPL-X body model: also trains a BiDRN's SMPL-X head
    #: (``models/smplx_head.py``) by the 2-D reprojection of its joints; None: no head
    smplx_model: str | None = None
    smplx_weight: float = 1.0  #: weight of the SMPL-X reprojection loss
    out_dir: str = "out/train/bhg-tiny"
    cache_dir: str = "out/cache/synthetic"  #: rendered and cropped training arrays
    # One thread by default: with the other core busy, a second OpenMP thread spin-waits on it
    # and made a training step ten times slower in measurements.
    num_threads: int = 1
    render_workers: int = 1  #: processes rendering mesh bodies side by side
    device: str = "cpu"  #: "cpu", "cuda" or "auto" (cuda when torch sees a GPU)
    #: end this session before an epoch that would end past this many seconds (resumable)
    time_budget_s: float | None = None
    stop_after: int | None = None  #: end this session after that many epochs
    resume: bool = False  #: continue from out_dir/last.pt

    @property
    def teacher_loss(self) -> str:
        """The loss against the teacher: ``distill_loss``, or ``loss`` when that is unset."""
        return self.distill_loss or self.loss

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
            raise BnnposeError(f"cannot read training config {path}: {one_line(e, 300)}") from None

    def recipe(self) -> dict:
        """The fields a resumed run must share; those of :data:`LATER_FIELDS` only when set,
        so the recipes (and digests) of runs without them are what they were."""
        return {k: v for k, v in self.to_dict().items() if k not in SESSION_FIELDS
                and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


def recipe_digest(recipe: dict) -> str:
    """sha256 of a recipe dict (``TrainConfig.recipe()``, possibly with fields replaced): the
    identity under which benches reuse a finished run."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _listed(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def mix_sets(cfg: TrainConfig) -> list[tuple[str, str | None]]:
    """``(spec, image folder)`` of every ``mix`` set (a checked config has a folder for each
    set, or none at all)."""
    specs, folders = _listed(cfg.mix), _listed(cfg.mix_images)
    if not specs:
        return []
    return list(zip(specs, folders or [None] * len(specs), strict=True))


#: Fields a ``bnnpose train`` command line does not carry: how one session ended or went on.
_NOT_IN_COMMAND = ("resume", "time_budget_s", "stop_after")
#: Flags that take no value: given when the field is True (``binary`` appears as ``--float``).
_SWITCHES = ("rsign", "head_affine")
#: Fields that hold paths (``mix``: a spec ``FORMAT:PATH``), shown relative to ``root``.
_PATHS = ("images", "mix", "mix_images", "init_from", "distill_from", "smplx_model", "out_dir",
          "cache_dir")


def train_command(cfg: TrainConfig, root: Path | None = None) -> str:
    """The ``bnnpose train`` command line that trains ``cfg`` again: every field that differs
    from the default, plus the run folder and the thread count. Paths under ``root`` are
    written relative to it, where the command is meant to run."""
    def shown(value: str) -> str:
        form, sep, path = value.rpartition(":") if ":" in value else ("", "", value)
        path = Path(path)
        if root is not None and path.is_absolute() and path.is_relative_to(root):
            path = path.relative_to(root)
        return f"{form}{sep}{path}"

    defaults = TrainConfig()
    args = ["bnnpose", "train"] + ([] if cfg.binary else ["--float"])
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if (f.name in (*_NOT_IN_COMMAND, "binary") or value is None
                or (value == getattr(defaults, f.name)
                    and f.name not in ("out_dir", "num_threads"))):
            continue
        flag = "--out" if f.name == "out_dir" else "--" + f.name.replace("_", "-")
        if f.name in _SWITCHES:
            args += [flag] if value else []
            continue
        if f.name == "arch":
            args += [w for k, v in value.items() for w in (flag, f"{k}={arch_text(v)}")]
            continue
        for item in _listed(value) if f.name in ("mix", "mix_images") else [value]:
            args += [flag, shown(item) if f.name in _PATHS else str(item)]
    return shlex.join(args)


def resolve_device(name: str):
    """The torch device a ``device`` setting names; "cuda" without a GPU is a one-line error."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BnnposeError(f"--device cuda: torch {torch.__version__} sees no CUDA GPU "
                           "(use --device cpu or auto)")
    return torch.device(name)


def check_config(cfg: TrainConfig) -> None:
    """Fail with one line on a recipe that cannot train, before any data is rendered."""
    family = model_entry(cfg.model).family
    if cfg.n_train < cfg.batch_size or cfg.batch_size < 2:
        raise BnnposeError(f"need n_train >= batch_size >= 2, got {cfg.n_train}, {cfg.batch_size}")
    if cfg.n_train > synthetic.EVAL_SEED_OFFSET - synthetic.TRAIN_SEED_OFFSET:
        raise BnnposeError(f"n_train={cfg.n_train} would reach the held-out evaluation seeds")
    if cfg.n_val < 1 or cfg.epochs < 1:
        raise BnnposeError(f"need n_val >= 1 and epochs >= 1, got {cfg.n_val}, {cfg.epochs}")
    if cfg.arch:
        arch_overrides(cfg.model, cfg.arch)
    if cfg.channels is not None and (cfg.channels < 4 or cfg.channels % 4):
        raise BnnposeError("channels must be a positive multiple of 4 (HPM halves twice), "
                           f"got {cfg.channels}")
    if not 0 <= cfg.rotate <= 180 or not 0 <= cfg.scale < 1:
        raise BnnposeError(f"need 0 <= rotate <= 180 and 0 <= scale < 1, got {cfg.rotate}, "
                           f"{cfg.scale}")
    specs, folders = _listed(cfg.mix), _listed(cfg.mix_images)
    if specs and folders and len(specs) != len(folders):
        raise BnnposeError(f"--mix-images: {len(folders)} folders for {len(specs)} --mix sets")
    if cfg.mix_repeat < 1:
        raise BnnposeError(f"mix_repeat must be >= 1, got {cfg.mix_repeat}")
    if cfg.data.startswith(PACKED) and (specs or cfg.images is not None):
        raise BnnposeError("a pack holds its own crops and mixed-in people: drop --mix and "
                           "--images")
    if cfg.data in RENDERED and cfg.images is not None:
        raise BnnposeError(f"--images names the image folder of a real --data set, not "
                           f"{cfg.data}")
    if cfg.device not in DEVICES:
        raise BnnposeError(f"unknown device {cfg.device!r}; known: {', '.join(DEVICES)}")
    resolve_device(cfg.device)
    if cfg.time_budget_s is not None and cfg.time_budget_s <= 0:
        raise BnnposeError(f"time budget must be positive, got {cfg.time_budget_s}")
    if cfg.render_workers < 1:
        raise BnnposeError(f"render_workers must be >= 1, got {cfg.render_workers}")
    if cfg.sign_grad not in SIGN_GRADIENTS:
        raise BnnposeError(f"unknown sign gradient {cfg.sign_grad!r}; known: "
                           f"{', '.join(SIGN_GRADIENTS)}")
    if not 0 <= cfg.float_weight_epochs < cfg.epochs or (cfg.float_weight_epochs
                                                           and not cfg.binary):
        raise BnnposeError(f"float_weight_epochs must be in 0..epochs-1 (= {cfg.epochs - 1}) "
                           f"and train a binary network, got {cfg.float_weight_epochs}")
    if cfg.feature_distill_weight < 0 or (cfg.feature_distill_weight
                                          and cfg.distill_from is None):
        raise BnnposeError("feature distillation needs a teacher (--distill-from) and a "
                           f"weight >= 0, got {cfg.feature_distill_weight}")
    if cfg.facing_weight < 0:
        raise BnnposeError(f"facing weight must be >= 0, got {cfg.facing_weight}")
    for name in (cfg.loss, cfg.teacher_loss):
        if name not in LOSSES:
            raise BnnposeError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    if cfg.smplx_model is not None and family != "bidrn":
        raise BnnposeError(f"--smplx-model trains BiDRN's SMPL-X head; {cfg.model} is a "
                           f"{family} model")
    if cfg.distill_from is not None and not Path(cfg.distill_from).is_file():
        raise BnnposeError(f"distillation teacher not found: {cfg.distill_from}")
