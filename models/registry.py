"""The explicit model registry: name -> builder of (binary network, config)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import nn

from bnnpose.models.hourglass import BinaryHourglassNet, HourglassConfig

#: name -> default config; every entry builds with ``build_model(name)``.
MODEL_CONFIGS: dict[str, HourglassConfig] = {
    "bhg-tiny": HourglassConfig(input_size=128, stem_channels=16, channels=32, depth=2, bits=2),
}

MODEL_BUILDERS: dict[str, Callable[[HourglassConfig], nn.Module]] = {
    "bhg-tiny": BinaryHourglassNet,
}

#: name -> family: ``hourglass`` (Bulat & Tzimiropoulos), ``bihrnet``, ``bidrn`` or ``face``
MODEL_FAMILIES: dict[str, str] = {
    "bhg-tiny": "hourglass",
}


def build_model(name: str, *, binary: bool = True, **overrides) -> nn.Module:
    """Build a registered model; ``binary=False`` gives its float twin."""
    if name not in MODEL_BUILDERS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_BUILDERS))}")
    cfg = replace(MODEL_CONFIGS[name], binary=binary, **overrides)
    return MODEL_BUILDERS[name](cfg)
