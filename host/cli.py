"""The host's commands: ``run``, ``throughput`` and ``deploy``, on a board and on a PC.

On a board this is the whole CLI (``run_pose.py`` of a deploy folder calls :func:`main`). The
``bnnpose`` console script of a full install (``hw_build/cli.py``) adds the stages that train,
export and build, as ``commands``.

User errors (bad files, bad overlays, bad arguments) end as one line
``bnnpose: error: <message>`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, NoReturn

from bnnpose.host.backends import backend_names, make_backend
from bnnpose.host.cpu_engine import ENGINES
from bnnpose.host.common import USER_ERRORS, print_error
#: The overlay `make demo` builds, beside the host package in a source checkout (a deployed
#: folder's entry script points BNNPOSE_OVERLAY at its own copy).
DEFAULT_OVERLAY = Path(os.environ.get("BNNPOSE_OVERLAY") or Path(__file__).resolve().parents[1]
                       / "overlays" / "pynq-z2" / "bhg-c64-z2")



class Command(NamedTuple):
    """A sub-command implemented outside the host: ``run(argv) -> status`` and its --help line.
    Its arguments reach it untouched, so each stage owns its own options and --help."""

    run: Callable[[list[str]], int | None]
    help: str


def build_parser(commands: Mapping[str, Command] | None = None) -> argparse.ArgumentParser:
    from bnnpose.host.sources import PERSON_MODES  # OpenCV: only for the host's own commands

    backends = backend_names()

    parser = argparse.ArgumentParser(
        prog="bnnpose", description="Binarized pose estimation on FINN/PYNQ accelerators."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="estimate poses in images, folders, videos or a camera")
    run.add_argument("--backend", choices=backends, required=True,
                     help="pynq: the bitstream on a board; sim: FINN simulation of "
                          "model_hw.onnx; cpu: the bit-packed XNOR-popcount engine")
    run.add_argument("--overlay", default=str(DEFAULT_OVERLAY), metavar="DIR",
                     help="overlay folder (default: the one `make demo` builds, %(default)s)")
    run.add_argument("--out", default="out/pose", metavar="DIR",
                     help="output folder (default: %(default)s)")
    run.add_argument("--person", choices=PERSON_MODES, default=None,
                     help="person region: full frame, fixed --roi, OpenCV HOG detector, or "
                          "track the previous frame's keypoints (default: full, or roi with "
                          "--roi)")
    run.add_argument("--roi", type=_box, metavar="X0,Y0,X1,Y1", help="fixed person box")
    run.add_argument("--hog-side", type=int, default=640, metavar="PX",
                     help="hog/track: HOG sees the frame scaled to this longest side; it finds "
                          "people about 96 px tall there and taller (default: %(default)s; "
                          "1920 for distant people in 1080p, at a cost growing with the area)")
    run.add_argument("--threshold", type=float, default=0.3,
                     help="draw joints scoring below this faded (default: %(default)s)")
    run.add_argument("--engine", choices=ENGINES, default="native",
                     help="cpu backend: the C kernels, compiled at first use (default), or the "
                          "numpy reference path, which needs no compiler and is slower")
    run.add_argument("--flip-test", action="store_true",
                     help="also run each crop's mirror image and average the heatmaps "
                          "(more accurate, half the accelerator frame rate)")
    run.add_argument("--no-annotate", action="store_true",
                     help="write keypoints.jsonl only, no annotated images or videos")
    run.add_argument("inputs", nargs="+", metavar="INPUT",
                     help="image, folder of images, video file, or camera index (e.g. 0)")

    tp = sub.add_parser("throughput", help="FPS and latency of a backend at batch 1...N")
    tp.add_argument("--backend", choices=backends, required=True)
    tp.add_argument("--overlay", default=str(DEFAULT_OVERLAY), metavar="DIR",
                    help="overlay folder (default: %(default)s)")
    tp.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8, 16], metavar="N",
                    help="batch sizes (default: 1 2 4 8 16)")
    tp.add_argument("--repeats", type=int, default=5, help="timed runs per batch size")
    tp.add_argument("--engine", choices=ENGINES, default="native",
                    help="cpu backend: C kernels (default) or the numpy reference path")
    tp.add_argument("--out", default="out/throughput", metavar="DIR",
                    help="writes throughput.json and throughput.png (default: %(default)s)")

    dep = sub.add_parser("deploy", help="write a self-contained folder to copy to a board")
    dep.add_argument("--overlay", default=str(DEFAULT_OVERLAY), metavar="DIR",
                     help="overlay folder (default: %(default)s)")
    dep.add_argument("--to", required=True, metavar="DIR", help="folder to create")
    for name, command in (commands or {}).items():
        # Listed for --help only; main() hands these off before argparse sees their options.
        sub.add_parser(name, help=command.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None,
         commands: Mapping[str, Command] | None = None) -> int:
    """Entry point of the host's commands (plus ``commands``); returns the exit status.

    A user error exits through ``SystemExit(2)`` after one line on stderr.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = commands or {}
    try:
        if argv and argv[0] in commands:
            return int(commands[argv[0]].run(argv[1:]) or 0)
        args = build_parser(commands).parse_args(argv)
        return {"run": _run, "throughput": _throughput, "deploy": _deploy}[args.command](args)
    except USER_ERRORS as e:
        _fail(e)
    except KeyboardInterrupt:
        print("bnnpose: interrupted", file=sys.stderr)
        return 130


def _fail(e: BaseException) -> NoReturn:
    print_error(e, "bnnpose")
    raise SystemExit(2)


def _box(text: str) -> tuple[float, ...]:
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1, got {text!r}")
    return box


def _throughput(args: argparse.Namespace) -> int:
    from bnnpose.host.runtime import throughput_test, write_throughput

    backend = make_backend(args.backend, args.overlay, args.engine)
    rows = throughput_test(backend, args.batch, args.repeats)
    write_throughput(rows, args.out, {"backend": args.backend, "overlay": args.overlay})
    print(f"{'batch':>5} {'ms/batch':>10} {'FPS':>9} {'in MB/s':>8} {'out MB/s':>8}")
    for r in rows:
        print(f"{r['batch_size']:>5} {r['runtime_ms']:>10.2f} {r['fps']:>9.1f} "
              f"{r['dram_in_mb_s']:>8.2f} {r['dram_out_mb_s']:>8.2f}")
    print(f"-> {args.out}/throughput.json")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from bnnpose.host.runtime import deploy

    man = deploy(args.overlay, args.to)
    print(f"{args.to}: {len(man['files'])} files for {man['model']} on {man['board']}"
          f"{'' if man['bitstream'] else ' (no bitstream: cpu backend only until built with Vivado)'}")
    return 0


def _run(args: argparse.Namespace) -> int:
    # Imported here so `bnnpose train ...` on a training box never loads OpenCV or the codec.
    from bnnpose.host.pipeline import run
    from bnnpose.host.sources import PersonFinder, open_inputs

    mode = args.person or ("roi" if args.roi is not None else "full")
    person = PersonFinder(mode, args.roi, args.threshold, args.hog_side)
    # Inputs first: programming an FPGA only to fail on a typo wastes seconds.
    sources = open_inputs(args.inputs)
    try:
        backend = make_backend(args.backend, args.overlay, args.engine)
    except BaseException:
        for src in sources:
            src.close()
        raise
    try:
        summary = run(sources, backend, args.out, person=person, threshold=args.threshold,
                      save_annotated=not args.no_annotate, flip_test=args.flip_test)
    except KeyboardInterrupt:
        print(f"bnnpose: interrupted; the records so far are in {args.out}/keypoints.jsonl",
              file=sys.stderr)
        return 130
    fps = summary.get("fps", {})
    print(
        f"{summary['frames']} frame(s) -> {args.out}: "
        f"{summary['mean_latency_ms']['end_to_end']:.1f} ms/frame end to end, "
        f"{fps['accelerator']:.1f} FPS accelerator-only, {fps['end_to_end']:.1f} FPS end to end"
        if summary["frames"] else f"no frames decoded -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
