"""Checkpoints: the networks shipped in ``models/checkpoints/`` and any checkpoint a run wrote.

A checkpoint holds only tensors and primitive containers (``model``, ``config``,
``state_dict``, ...), so ``torch.load(path, weights_only=True)`` reads it and
:func:`load_checkpoint` rebuilds the network from the registry.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from bnnpose.host.common import BnnposeError, one_line
from bnnpose.models.registry import build_model

#: The network ``make demo``, ``bnnpose eval`` and ``bnnpose run`` use unless told otherwise.
DEFAULT_MODEL = "bhg-c64-z2"


def checkpoint_dir() -> Path:
    """The folder of the shipped checkpoints (``models/checkpoints`` of the package)."""
    return Path(str(resources.files("bnnpose.models") / "checkpoints"))


def shipped_checkpoint(name: str = DEFAULT_MODEL, required: bool = True) -> Path | None:
    """The shipped checkpoint of a registered network: ``models/checkpoints/<name>.pt``.

    Returns None for a network that ships none, unless ``required``: then that is an error.
    """
    path = checkpoint_dir() / f"{name}.pt"
    if path.is_file():
        return path
    if required:
        raise BnnposeError(f"shipped checkpoint missing: {path}")
    return None


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
        raise BnnposeError(f"not a valid bnnpose checkpoint: {path} ({one_line(e, 300)})") \
            from None
    return model.eval(), ckpt
