"""The explicit model registry: one table, name -> config, family and boards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from torch import nn

from bnnpose.host.common import BnnposeError
from bnnpose.host.skeleton import COCO_JOINTS, FACE68_JOINTS, MPII_JOINTS, WHOLEBODY_PARTS
from bnnpose.models.bidrn import BOX_JOINTS, BiDRN, BiDRNConfig
from bnnpose.models.blocks import NetConfig, enable_rsign
from bnnpose.models.hourglass import BinaryHourglassNet, HourglassConfig
from bnnpose.models.hrnet import BiHRNet, BiHRNetConfig

FAMILY_BUILDERS: dict[str, Callable[[NetConfig], nn.Module]] = {
    "hourglass": BinaryHourglassNet, "face": BinaryHourglassNet, "bihrnet": BiHRNet,
    "bidrn": BiDRN,
}

Z2_AND_ZCU104 = ("pynq-z2", "zcu104")
ZCU104 = ("zcu104",)


@dataclass(frozen=True)
class ModelEntry:
    """One registered network: its default config, family and the boards it is sized for."""

    config: NetConfig
    #: ``hourglass`` (Bulat & Tzimiropoulos), ``bihrnet``, ``bidrn`` or ``face``
    family: str
    #: the ``-z2`` and ``tiny`` sizes fit a PYNQ-Z2; the ``-full`` sizes (the seeds' 256x256
    #: input) a ZCU104 only
    boards: tuple[str, ...] = Z2_AND_ZCU104

    @property
    def builder(self) -> Callable[[NetConfig], nn.Module]:
        return FAMILY_BUILDERS[self.family]


#: name -> entry; every name builds with ``build_model(name)``.
MODELS: dict[str, ModelEntry] = {
    # 3-bit streams and 8-bit stem/head weights each gained about 3 PCK points over 2-bit
    # streams and binary ends at the ablation's budget (README: "What the hardware-mappable
    # form costs").
    "bhg-tiny": ModelEntry(HourglassConfig(input_size=128, stem_channels=16, channels=32,
                                           depth=2, bits=3, end_bits=8), "hourglass"),
    # Four times bhg-tiny's parameters: the DSE (bench/results/dse) puts it on the Z2 at 1,017
    # FPS estimated with 57% of the LUTs, or at 336 FPS with 42%.
    "bhg-c64-z2": ModelEntry(HourglassConfig(input_size=128, stem_channels=16, channels=64,
                                             depth=2, bits=3, end_bits=8), "hourglass"),
    "bhg-s2-z2": ModelEntry(HourglassConfig(input_size=128, stem_channels=16, channels=32,
                                            depth=2, stacks=2), "hourglass"),
    "bhg-full": ModelEntry(HourglassConfig(input_size=256, stem_channels=32, channels=128,
                                           depth=4, stacks=4), "hourglass", ZCU104),
    # 3-bit streams and 8-bit ends: the binarization gap on held-out renders fell from 19.6 to
    # 8.1 points against 2-bit streams and binary ends (bench/results/bihrnet-k3-ends8).
    "bihrnet-z2": ModelEntry(BiHRNetConfig(input_size=128, stem_channels=16,
                                           widths=(24, 48, 96), bits=3, end_bits=8),
                             "bihrnet"),
    "bihrnet-full": ModelEntry(BiHRNetConfig(input_size=256, stem_channels=16,
                                             widths=(32, 64, 128), blocks=2), "bihrnet", ZCU104),
    # 3-bit streams and 8-bit ends: the binarization gap on held-out renders fell from 11.5 to
    # 4.7 points against 2-bit streams and binary ends (bench/results/bidrn-k3-ends8).
    "bidrn-z2": ModelEntry(BiDRNConfig(input_size=128, stem_channels=16, widths=(32, 64, 128),
                                       bits=3, end_bits=8), "bidrn"),
    # stem 32: each shortcut at most doubles the channels (one requantized copy); torch's ONNX
    # exporter leaves a dangling input for a second identical copy of the same tensor.
    "bidrn-full": ModelEntry(BiDRNConfig(input_size=256, stem_channels=32,
                                         widths=(64, 128, 256)), "bidrn", ZCU104),
    # 3-bit streams and 8-bit ends, as bhg-tiny and bhg-c64-z2. 48 channels, not 32: the same
    # recipe's binary-float NME gap on synthetic faces fell from 0.020 to 0.014 (README).
    "face-bhg-z2": ModelEntry(HourglassConfig(input_size=128, stem_channels=16, channels=48,
                                              depth=2, bits=3, end_bits=8, num_joints=68,
                                              layout="face68"), "face"),
}


def model_entry(name: str) -> ModelEntry:
    """The registry's entry of ``name``; an unknown name is a one-line error listing the known."""
    try:
        return MODELS[name]
    except KeyError:
        raise BnnposeError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def model_joints(cfg: NetConfig) -> tuple[str, ...]:
    """Names of a model's heatmap channels, by its ``layout``."""
    if cfg.layout == "mpii":
        joints = MPII_JOINTS[: cfg.num_joints]
    elif cfg.layout == "face68":
        joints = FACE68_JOINTS
    elif cfg.layout == "wholebody-boxes":
        joints = COCO_JOINTS + sum(WHOLEBODY_PARTS.values(), ()) + BOX_JOINTS
    else:
        raise ValueError(f"unknown joint layout {cfg.layout!r}")
    if len(joints) != cfg.num_joints:
        raise ValueError(f"layout {cfg.layout} names {len(joints)} joints, the model has "
                         f"{cfg.num_joints}")
    return tuple(joints)


#: Config fields that name what a network computes rather than its architecture: not knobs.
NOT_ARCH = ("num_joints", "layout", "binary")


def arch_overrides(name: str, arch: dict) -> dict:
    """``arch`` (field -> value, lists as JSON gives them) as overrides of the registered
    model ``name``'s config, checked: an unknown field or a value of the wrong kind is a
    one-line error naming the fields there are."""
    base = model_entry(name).config
    known = [f.name for f in fields(base) if f.name not in NOT_ARCH]
    out = {}
    for key, value in arch.items():
        if key not in known:
            raise BnnposeError(f"{name} has no architecture knob {key!r}; knobs: "
                               f"{', '.join(known)}")
        default = getattr(base, key)
        if isinstance(default, tuple):
            if not isinstance(value, list | tuple) or not all(isinstance(v, int) for v in value):
                raise BnnposeError(f"{key}: expected integers like {list(default)}, got {value!r}")
            value = tuple(value)
        elif not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(
                default, bool):
            raise BnnposeError(f"{key}: expected {type(default).__name__} values like "
                               f"{default!r}, got {value!r}")
        out[key] = value
    return out


def arch_value(text: str) -> int | float | bool | list[int]:
    """One knob value as command lines write it: ``3``, ``0.5``, ``true``, ``24x48x96``.

    Raises:
        ValueError: ``text`` is none of these.
    """
    if "x" in text:
        return [int(p) for p in text.split("x")]
    if text.lower() in ("true", "false"):  # switches such as rsign
        return text.lower() == "true"
    value = float(text)
    return int(value) if value == int(value) and "." not in text else value


def arch_text(value) -> str:
    """The command-line form of a knob value (:func:`arch_value` reads it back)."""
    if isinstance(value, list | tuple):
        return "x".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_arch(name: str, specs: list[str]) -> dict:
    """``["depth=3", "down_reads_stream=true"]`` -> checked overrides of model ``name``, as
    :func:`arch_overrides` returns them; a malformed spec is a one-line error."""
    arch = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        try:
            if not sep or not text:
                raise ValueError
            arch[key] = arch_value(text)
        except ValueError:
            raise BnnposeError(f"--arch {spec!r}: expected NAME=VALUE (a number, true/false, "
                               "or a tuple as 24x48x96)") from None
    arch_overrides(name, arch)
    return arch


def build_model(name: str, *, binary: bool = True, **overrides) -> nn.Module:
    """Build a registered model; ``binary=False`` gives its float twin."""
    entry = model_entry(name)
    model = entry.builder(replace(entry.config, binary=binary, **overrides))
    return enable_rsign(model) if model.cfg.rsign else model
