"""The ``bnnpose`` command of a full install: the host's commands plus every stage of the flow.

``run``, ``throughput`` and ``deploy`` are the host's (``host/cli.py``, the whole CLI on a
board); the others are forwarded with their arguments untouched to the module that owns them,
imported only when called, so ``bnnpose run`` never loads torch or FINN.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from bnnpose.host import cli as host_cli
from bnnpose.host.common import BnnposeError

#: Sub-commands implemented by the flow's stages: name -> ("module:function", help).
FORWARDED = {
    "train": ("bnnpose.quantize.train_cli:main", "train a binarized pose network (needs torch)"),
    "pack": ("bnnpose.quantize.pack:main",
             "pack a recipe's training crops to train on another machine (--data packed:DIR)"),
    "export": ("bnnpose.quantize.export:main", "export a trained network to QONNX"),
    "eval": ("bnnpose.quantize.evaluate:main",
             "score a checkpoint against the mean pose: synthetic, COCO, MPII or 300W data"),
    "build": ("bnnpose.hw_build.make_bitstream:main", "compile an overlay with FINN"),
    "models": ("bnnpose.hw_build.models_table:main",
               "every registered model on every board: params, MACs, FINN estimate, fit"),
    "dse": ("bnnpose.hw_build.dse:main",
            "design-space exploration: accuracy (proxy) vs FINN FPS and resources per board"),
    "demo": ("bnnpose.hw_build.demo:main",
             "checkpoint to simulated accelerator on the shipped model"),
    "docker": ("bnnpose.hw_build.docker.launch:main",
               "run the FINN flow to a bitstream in the pinned Docker image, with your Vivado"),
}

#: Distributions behind the optional extras, for a useful hint when a stage lacks them.
EXTRA_OF_MODULE = {
    "torch": "train", "brevitas": "train", "matplotlib": "train",
    "finn": "build", "qonnx": "build", "onnx": "build", "onnxruntime": "build",
    "pynq": "board", "finn_plus_driver": "board",
}


def forward(command: str, argv: list[str]) -> int:
    """Run ``bnnpose COMMAND ARGV...`` in the module that implements it."""
    module_name, func_name = FORWARDED[command][0].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top in EXTRA_OF_MODULE:
            raise BnnposeError(
                f"'bnnpose {command}' needs {top}: pip install 'bnnpose[{EXTRA_OF_MODULE[top]}]'"
            ) from None
        raise BnnposeError(f"'bnnpose {command}' is not available: no module {e.name}") from None
    return int(getattr(module, func_name)(argv) or 0)


COMMANDS = {name: host_cli.Command(lambda argv, name=name: forward(name, argv), help_text)
            for name, (_, help_text) in FORWARDED.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bnnpose`` console script; returns the exit status."""
    return host_cli.main(argv, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
