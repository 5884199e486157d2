"""What every stage shares: the error type the CLI prints as one line, atomic outputs,
checksums and version manifests.

The bottom of the house (host <- models <- quantize <- hw_build): numpy-free and torch-free, so
it runs on a board and in the teacher's separate venv alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import IO, Any

#: Distributions whose versions go into every manifest (absent ones are recorded as null).
TRACKED_DISTRIBUTIONS = (
    "bnnpose", "torch", "brevitas", "qonnx", "finn-plus", "onnx", "onnxruntime", "numpy",
    "opencv-python-headless", "pynq", "finn-plus-driver", "anny", "moderngl",
)


class BnnposeError(Exception):
    """An error the CLI reports as one line (the message) with a non-zero exit code.

    Every failure a user can cause or fix is one: bad input, a missing tool
    (``hw_build.finn_env.ToolchainError``), a graph FINN cannot map
    (``hw_build.steps.UnmappedNodesError``).
    """


#: What an entry point reports as one line: ours, and what the standard library raises for a
#: missing file or a malformed value before our checks could name it.
USER_ERRORS = (BnnposeError, FileNotFoundError, ValueError)


def one_line(e: BaseException, limit: int | None = None) -> str:
    """The message of ``e`` on one line (libraries' messages can span several), at most
    ``limit`` characters; the type's name when there is no message."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if limit is None else text[:limit]


def print_error(e: BaseException | str, prog: str | None = None) -> None:
    """``PROG: error: MESSAGE`` (or ``error: MESSAGE``) as one line on stderr."""
    message = e if isinstance(e, str) else one_line(e)
    print(f"{prog}: error: {message}" if prog else f"error: {message}", file=sys.stderr)


def run_main(main: Callable[[list[str]], int | None], argv: Sequence[str] | None, prog: str,
             errors: tuple[type[BaseException], ...] = USER_ERRORS, status: int = 2) -> int:
    """Run an entry point: its status, or ``status`` after one error line for ``errors``, or
    130 after Ctrl-C; never a traceback for a user's mistake."""
    try:
        return int(main(list(sys.argv[1:] if argv is None else argv)) or 0)
    except errors as e:
        print_error(e, prog)
        return status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def versions() -> dict[str, str | None]:
    """Installed versions of the toolchain, for manifests."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in TRACKED_DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    Readers never see a half-written file, and a failure leaves the previous file in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    # mkstemp's 0600 would hide results from other users of a shared board or notebook server.
    os.fchmod(fd, 0o644)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def shown_path(path: str | os.PathLike, root: Path) -> str:
    """``path`` as records name files: resolved, relative to ``root`` when it lies under it."""
    path = Path(path).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> Path:
    """Write JSON through a temporary file and rename, so readers never see half a file."""
    with atomic_writer(path, "w") as f:
        json.dump(obj, f, indent=indent, sort_keys=False, default=_json_default)
        f.write("\n")
    return Path(path)


def _json_default(o):
    # numpy scalars/arrays and Paths show up in reports; convert without importing numpy here.
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = True,
               keep_failed: str | os.PathLike | None = None):
    """Yield a temporary sibling folder; rename it to ``final`` only if the block succeeds.

    On any exception ``final`` is left as it was, so a failed stage never leaves a
    half-written output folder behind; the temporary folder is removed, or with
    ``keep_failed`` moved there (replacing an earlier one) for inspection.
    """
    final = Path(final).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; outputs are meant to be shared
    try:
        yield tmp
    except BaseException:
        if keep_failed is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            keep = Path(keep_failed)
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(keep, ignore_errors=True)
            shutil.move(tmp, keep)
        raise
    if final.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BnnposeError(f"output folder exists: {final}")
        backup = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, backup)
        os.replace(tmp, final)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(tmp, final)


def manifest(files_dir: str | os.PathLike, **fields) -> dict:
    """A manifest dict: the given fields, toolchain versions and sha256 of every file in a folder."""
    files_dir = Path(files_dir)
    files = {
        str(p.relative_to(files_dir)): sha256_file(p)
        for p in sorted(files_dir.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    return {**fields, "versions": versions(), "files": files}
