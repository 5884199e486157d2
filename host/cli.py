"""The ``bnnpose`` command: run pose estimation here, forward every other stage to its module.

User errors (bad files, bad overlays, bad arguments) end as one line
``bnnpose: error: <message>`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from bnnpose.host.artifacts import BnnposeError

#: Sub-commands implemented elsewhere: name -> ("module:function", help). Their arguments are
#: passed through untouched so each stage owns its own options and --help.
FORWARDED = {
    "train": ("bnnpose.quantize.train:main", "train a binarized pose network (needs torch)"),
    "export": ("bnnpose.quantize.export:main", "export a trained network to QONNX"),
    "build": ("bnnpose.hw_build.make_bitstream:main", "compile an overlay with FINN"),
    "demo": ("bnnpose.host.demo:main", "checkpoint to simulated accelerator on the shipped model"),
}

#: Distributions behind the optional extras, for a useful hint when a stage lacks them.
EXTRA_OF_MODULE = {
    "torch": "train", "brevitas": "train", "matplotlib": "train",
    "finn": "build", "qonnx": "build", "onnx": "build", "onnxruntime": "build",
    "pynq": "board", "finn_plus_driver": "board",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bnnpose", description="Binarized pose estimation on FINN/PYNQ accelerators."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="estimate poses in image files on an overlay")
    run.add_argument("--backend", choices=("sim", "pynq"), required=True,
                     help="sim: FINN simulation of model_hw.onnx; pynq: the bitstream on a board")
    run.add_argument("--overlay", required=True, metavar="DIR",
                     help="overlay folder (overlays/<board>/<model>)")
    run.add_argument("--out", default="out/pose", metavar="DIR",
                     help="output folder (default: %(default)s)")
    run.add_argument("--threshold", type=float, default=0.3,
                     help="draw joints scoring below this faded (default: %(default)s)")
    run.add_argument("images", nargs="+", metavar="IMAGE")
    for name, (_, help_text) in FORWARDED.items():
        # Listed for --help only; main() hands these off before argparse sees their options.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bnnpose`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in FORWARDED:
            return _forward(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        return _run(args)
    except (BnnposeError, FileNotFoundError, ValueError) as e:
        _fail(e)
    except KeyboardInterrupt:
        print("bnnpose: interrupted", file=sys.stderr)
        return 130


def _fail(e: BaseException) -> NoReturn:
    # Exceptions from libraries can carry newlines; the contract is one line.
    message = " ".join(str(e).split()) or type(e).__name__
    print(f"bnnpose: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _forward(command: str, rest: list[str]) -> int:
    target, _ = FORWARDED[command]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = (e.name or "").split(".")[0]
        if top in EXTRA_OF_MODULE:
            raise BnnposeError(
                f"'bnnpose {command}' needs {top}: pip install 'bnnpose[{EXTRA_OF_MODULE[top]}]'"
            ) from None
        raise BnnposeError(f"'bnnpose {command}' is not available: no module {e.name}") from None
    status = getattr(module, func_name)(rest)
    return int(status or 0)


def _run(args: argparse.Namespace) -> int:
    # Imported here so `bnnpose train ...` on a training box never loads OpenCV or the codec.
    from bnnpose.host.backends import PynqBackend, SimBackend
    from bnnpose.host.pipeline import run_images
    from bnnpose.host.preprocess import check_image_file

    for image in args.images:
        # Before the backend: programming an FPGA only to fail on a typo wastes seconds.
        check_image_file(image)
    backend = (SimBackend if args.backend == "sim" else PynqBackend)(args.overlay)
    summary = run_images(args.images, backend, args.out, threshold=args.threshold)
    fps = summary["fps"]
    print(
        f"{summary['images']} image(s) -> {args.out}: "
        f"{summary['mean_latency_ms']['end_to_end']:.1f} ms/image end to end, "
        f"{fps['accelerator']:.1f} FPS accelerator-only, {fps['end_to_end']:.1f} FPS end to end"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
