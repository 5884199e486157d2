"""The explicit model registry: name -> config, builder and family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import nn

from bnnpose.models.bidrn import BiDRN, BiDRNConfig
from bnnpose.models.blocks import NetConfig
from bnnpose.models.hourglass import BinaryHourglassNet, HourglassConfig
from bnnpose.models.hrnet import BiHRNet, BiHRNetConfig

#: name -> default config; every entry builds with ``build_model(name)``. The ``-z2`` and
#: ``tiny`` sizes fit a PYNQ-Z2; the ``-full`` sizes are the seeds' 256x256 input.
MODEL_CONFIGS: dict[str, NetConfig] = {
    # 3-bit streams and 8-bit stem/head weights each gained about 3 PCK points over 2-bit
    # streams and binary ends at the ablation's budget (README: "What the hardware-mappable
    # form costs").
    "bhg-tiny": HourglassConfig(input_size=128, stem_channels=16, channels=32, depth=2, bits=3,
                                end_bits=8),
    "bhg-s2-z2": HourglassConfig(input_size=128, stem_channels=16, channels=32, depth=2,
                                 stacks=2),
    "bhg-full": HourglassConfig(input_size=256, stem_channels=32, channels=128, depth=4,
                                stacks=4),
    "bihrnet-z2": BiHRNetConfig(input_size=128, stem_channels=16, widths=(24, 48, 96)),
    "bihrnet-full": BiHRNetConfig(input_size=256, stem_channels=16, widths=(32, 64, 128),
                                  blocks=2),
    "bidrn-z2": BiDRNConfig(input_size=128, stem_channels=16, widths=(32, 64, 128)),
    # stem 32: each shortcut at most doubles the channels (one requantized copy); torch's ONNX
    # exporter leaves a dangling input for a second identical copy of the same tensor.
    "bidrn-full": BiDRNConfig(input_size=256, stem_channels=32, widths=(64, 128, 256)),
    "face-bhg-z2": HourglassConfig(input_size=128, stem_channels=16, channels=32, depth=2,
                                   num_joints=68, layout="face68"),
}

MODEL_BUILDERS: dict[str, Callable[[NetConfig], nn.Module]] = {
    "bhg-tiny": BinaryHourglassNet, "bhg-s2-z2": BinaryHourglassNet,
    "bhg-full": BinaryHourglassNet, "face-bhg-z2": BinaryHourglassNet,
    "bihrnet-z2": BiHRNet, "bihrnet-full": BiHRNet,
    "bidrn-z2": BiDRN, "bidrn-full": BiDRN,
}

#: name -> family: ``hourglass`` (Bulat & Tzimiropoulos), ``bihrnet``, ``bidrn`` or ``face``
MODEL_FAMILIES: dict[str, str] = {
    "bhg-tiny": "hourglass", "bhg-s2-z2": "hourglass", "bhg-full": "hourglass",
    "bihrnet-z2": "bihrnet", "bihrnet-full": "bihrnet",
    "bidrn-z2": "bidrn", "bidrn-full": "bidrn",
    "face-bhg-z2": "face",
}

#: name -> the boards it is sized for: the small models fit a PYNQ-Z2, the full ones a ZCU104
MODEL_BOARDS: dict[str, tuple[str, ...]] = {
    name: ("zcu104",) if name.endswith("-full") else ("pynq-z2", "zcu104")
    for name in MODEL_CONFIGS
}


def model_joints(cfg: NetConfig) -> tuple[str, ...]:
    """Names of a model's heatmap channels, by its ``layout``."""
    from bnnpose.models.skeleton import FACE68_JOINTS, MPII_JOINTS

    if cfg.layout == "mpii":
        joints = MPII_JOINTS[: cfg.num_joints]
    elif cfg.layout == "face68":
        joints = FACE68_JOINTS
    elif cfg.layout == "wholebody-boxes":
        from bnnpose.models.bidrn import BOX_JOINTS
        from bnnpose.quantize.datasets import COCO_JOINTS, WHOLEBODY_PARTS

        joints = COCO_JOINTS + sum(WHOLEBODY_PARTS.values(), ()) + BOX_JOINTS
    else:
        raise ValueError(f"unknown joint layout {cfg.layout!r}")
    if len(joints) != cfg.num_joints:
        raise ValueError(f"layout {cfg.layout} names {len(joints)} joints, the model has "
                         f"{cfg.num_joints}")
    return tuple(joints)


def build_model(name: str, *, binary: bool = True, **overrides) -> nn.Module:
    """Build a registered model; ``binary=False`` gives its float twin."""
    if name not in MODEL_BUILDERS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_BUILDERS))}")
    cfg = replace(MODEL_CONFIGS[name], binary=binary, **overrides)
    return MODEL_BUILDERS[name](cfg)
