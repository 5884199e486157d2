"""Run FINN's full flow in the pinned toolchain image, with the user's Xilinx install mounted.

    python -m bnnpose.hw_build.docker.launch build-image [--dry-run] [-- DOCKER_BUILD_ARGS...]
    python -m bnnpose.hw_build.docker.launch run [--xilinx DIR] [--vivado-version V]
        [--license L] [--workers N] [--work DIR] [--image TAG] [--dry-run] -- MAKE_BITSTREAM_ARGS...
    python -m bnnpose.hw_build.docker.launch verify [same options] [-- PYTEST_ARGS...]

``build-image`` builds ``hw_build/docker/Dockerfile``, tagged by a hash of the lock file and the
image's own files, so a changed lock asks for a new image. ``run`` runs
``hw_build/make_bitstream.py`` with MAKE_BITSTREAM_ARGS unchanged, after a default
``--until bitstream`` that an explicit ``--until`` overrides. ``verify`` runs the tests marked
``vivado`` (a small network built to a bitstream, its golden vectors checked on the way).
``--dry-run`` prints the docker command and exits without a docker engine.

The container runs as the calling user. The checkout is mounted at its own path, so paths in the
arguments mean the same inside, and over ``/workspace``, where the image's editable install
points. Input files outside the checkout are mounted read-only, the parent of ``--out``
read-write, the Xilinx install read-only at its own path. The work folder (``--work``, default
``out/docker``) holds the container's HOME, ``FINN_BUILD_DIR`` and the compiled XSim binding.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bnnpose.host.common import BnnposeError, run_main

IMAGE_NAME = "bnnpose-finn"
#: Where the image's editable install of bnnpose points (see the Dockerfile).
WORKSPACE = "/workspace"
#: Vivado runs on x86-64 only; an arm64 image could build but never synthesize.
PLATFORM = "linux/amd64"
#: Files whose content decides the image; the tag is derived from them.
IMAGE_INPUTS = ("requirements.lock", "pyproject.toml", "hw_build/docker/Dockerfile",
                "hw_build/docker/Dockerfile.dockerignore", "hw_build/docker/entrypoint.sh",
                "hw_build/docker/fetch_finn_deps.py")
VERSION_RE = re.compile(r"^20\d\d\.\d$")
#: make_bitstream options naming files it reads.
INPUT_OPTIONS = ("model", "golden_in", "golden_out", "folding")
PROG = "python -m bnnpose.hw_build.docker.launch"


def repo_root() -> Path:
    """The checkout this module lives in; the image is built from it and it is mounted."""
    root = Path(__file__).resolve().parents[2]
    if not all((root / f).is_file() for f in IMAGE_INPUTS):
        raise BnnposeError(f"{root} is not a bnnpose source checkout (no requirements.lock or "
                           "hw_build/docker/Dockerfile): the Docker flow runs from a checkout")
    return root


def image_tag(root: Path) -> str:
    h = hashlib.sha256()
    for name in IMAGE_INPUTS:
        h.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return f"{IMAGE_NAME}:{h.hexdigest()[:12]}"


@dataclass(frozen=True)
class Xilinx:
    root: Path  #: install root, e.g. /tools/Xilinx
    version: str  #: e.g. 2024.2
    vivado: Path  #: the folder holding Vivado's settings64.sh


def _vivado_dirs(root: Path, version: str) -> list[Path]:
    # Up to 2024.2 tools live in <root>/<tool>/<version>, from 2025.1 in <root>/<version>/<tool>.
    return [root / "Vivado" / version, root / version / "Vivado"]


def find_xilinx(root_arg: Path | None, version_arg: str | None) -> Xilinx | None:
    """The Vivado to mount, from the options or FINN's environment variables; None if unset."""
    root_s = root_arg or os.environ.get("XILINX_TOOLS_DIR") or os.environ.get("FINN_XILINX_PATH")
    if not root_s:
        return None
    root = Path(os.path.abspath(root_s))
    if not root.is_dir():
        raise BnnposeError(f"Xilinx install not found: {root} is not a directory")
    version = version_arg or os.environ.get("FINN_XILINX_VERSION")
    if not version:
        found = sorted({p.parent.name for p in root.glob("Vivado/*/settings64.sh")}
                       | {p.parent.parent.name for p in root.glob("*/Vivado/settings64.sh")})
        found = [v for v in found if VERSION_RE.match(v)]
        if not found:
            raise BnnposeError(f"no Vivado under {root}: expected {root}/Vivado/<version>/"
                               f"settings64.sh or {root}/<version>/Vivado/settings64.sh")
        if len(found) > 1:
            raise BnnposeError(f"several Vivado versions under {root} ({', '.join(found)}): "
                               "choose one with --vivado-version or FINN_XILINX_VERSION")
        version = found[0]
    if not VERSION_RE.match(version):
        raise BnnposeError(f"Vivado version must look like 2024.2, got {version!r}")
    candidates = _vivado_dirs(root, version)
    for vivado in candidates:
        if (vivado / "settings64.sh").is_file():
            return Xilinx(root=root, version=version, vivado=vivado)
    raise BnnposeError(f"no Vivado {version} under {root}: neither "
                       f"{' nor '.join(str(c / 'settings64.sh') for c in candidates)} exists")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


class Mounts:
    """Bind mounts at the same path inside as outside, without duplicates or redundant nesting."""

    def __init__(self) -> None:
        self.same_path: dict[str, bool] = {}  # path -> read-only

    def add(self, path: str, readonly: bool) -> None:
        if "," in path:
            # --mount's value is comma separated; -v would break on ':' instead.
            raise BnnposeError(f"cannot mount a path containing a comma: {path}")
        for folder, ro in self.same_path.items():
            if folder != path and _inside(path, folder) and (readonly or not ro):
                return
        self.same_path[path] = self.same_path.get(path, readonly) and readonly

    def argv(self) -> list[str]:
        out = []
        for path, ro in self.same_path.items():
            out += ["--mount", f"type=bind,source={path},target={path}" + (",readonly" * ro)]
        return out


def _abs(path: Path | str) -> str:
    return os.path.abspath(path)


def _license_env(value: str | None, mounts: Mounts) -> dict[str, str]:
    """FlexLM's search list: port@server entries pass through, files are mounted read-only."""
    value = value or os.environ.get("XILINXD_LICENSE_FILE") or os.environ.get("LM_LICENSE_FILE")
    if not value:
        return {}
    entries = []
    for entry in value.split(":"):
        if not entry or "@" in entry:
            entries.append(entry)
            continue
        path = _abs(entry)
        if not os.path.exists(path):
            raise BnnposeError(f"license file not found: {entry}")
        mounts.add(path, readonly=True)
        entries.append(path)
    joined = ":".join(entries)
    return {"XILINXD_LICENSE_FILE": joined, "LM_LICENSE_FILE": joined}


@dataclass
class Plan:
    """A docker command and what the host must provide before it runs."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  #: extra environment for the docker client
    image: str | None = None  #: must exist locally before ``docker run``
    #: bind sources to create as the calling user: docker refuses a missing source for --mount,
    #: and folders it would create belong to root
    folders: list[str] = field(default_factory=list)

    def shell_line(self) -> str:
        env = "".join(f"{k}={shlex.quote(v)} " for k, v in self.env.items())
        return env + shlex.join(self.argv)


def _work(args: argparse.Namespace, root: Path) -> str:
    return _abs(args.work or root / "out" / "docker")


def _docker_run(args: argparse.Namespace, root: Path, xilinx: Xilinx | None, mounts: Mounts,
                workdir: str, command: list[str], folders: list[str]) -> Plan:
    work = _work(args, root)
    mounts.add(work, readonly=False)
    env = {
        "HOME": f"{work}/home",
        "FINN_BUILD_DIR": f"{work}/finn_build",
        "NUM_DEFAULT_WORKERS": str(args.workers or os.cpu_count() or 1),
    }
    if xilinx is not None:
        mounts.add(str(xilinx.root), readonly=True)
        env.update(XILINX_TOOLS_DIR=str(xilinx.root), FINN_XILINX_VERSION=xilinx.version,
                   VIVADO_PATH=str(xilinx.vivado))
    env.update(_license_env(args.license, mounts))
    image = args.image or image_tag(root)
    argv = ["docker", "run", "--rm", "--init", "--pull", "never", "--platform", PLATFORM]
    if sys.stdin.isatty() and sys.stdout.isatty():
        argv.append("-it")
    argv += ["-u", f"{os.getuid()}:{os.getgid()}",
             "--mount", f"type=bind,source={root},target={WORKSPACE}"]
    argv += mounts.argv()
    argv += ["-w", workdir]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    return Plan(argv=[*argv, image, *command], image=image,
                folders=[env["HOME"], env["FINN_BUILD_DIR"], *folders])


def _make_bitstream_command(rest: list[str], root: Path,
                            mounts: Mounts) -> tuple[list[str], str, bool, str]:
    """The container command, its working folder, whether it needs Vivado, the output parent."""
    from bnnpose.hw_build.config import Until
    from bnnpose.hw_build.make_bitstream import parse_args

    if not rest:
        raise BnnposeError(f"run: give make_bitstream's arguments after --, e.g. {PROG} run -- "
                           "--model out/export/model.onnx --board pynq-z2 --out out/build")
    # argparse keeps the last value, so an --until among the user's arguments wins.
    full = ["--until", Until.BITSTREAM.value, *rest]
    cfg = parse_args(full)
    cwd = os.getcwd()
    in_checkout = _inside(cwd, str(root))
    for name, given in [(n, getattr(cfg, n)) for n in INPUT_OPTIONS] + [("out", cfg.out)]:
        if given is None:
            continue
        if not given.is_absolute() and not in_checkout:
            raise BnnposeError(f"relative path {given} needs the current folder inside {root}; "
                               "give an absolute path")
        if name == "out":
            continue
        if not given.is_file():
            raise BnnposeError(f"--{name.replace('_', '-')} {given}: file not found")
        mounts.add(os.path.dirname(_abs(given)), readonly=True)
    # The build replaces --out atomically through a sibling folder: the parent must be writable.
    out_parent = os.path.dirname(_abs(cfg.out))
    mounts.add(out_parent, readonly=False)
    command = ["python", f"{root}/hw_build/make_bitstream.py", *full]
    return command, cwd if in_checkout else str(root), cfg.until == Until.BITSTREAM, out_parent


def cmd_run(args: argparse.Namespace, rest: list[str]) -> Plan:
    root = repo_root()
    mounts = Mounts()
    if str(root) != WORKSPACE:
        mounts.add(str(root), readonly=False)
    folders = []
    if args.command == "run":
        command, workdir, needs_vivado, out_parent = _make_bitstream_command(rest, root, mounts)
        folders.append(out_parent)
    else:
        # pytest's own temporary folders would vanish with the container; these keep the
        # bitstream and logs of a failed run for inspection.
        command = ["python", "-m", "pytest", "-m", "vivado", "--basetemp",
                   f"{_work(args, root)}/pytest", *rest]
        workdir, needs_vivado = str(root), True
    xilinx = find_xilinx(args.xilinx, args.vivado_version)
    if xilinx is None and needs_vivado:
        what = "the bitstream" if args.command == "run" else "verify"
        raise BnnposeError(f"{what} needs Vivado: give --xilinx DIR (the install root, e.g. "
                           "/tools/Xilinx) or set XILINX_TOOLS_DIR or FINN_XILINX_PATH")
    return _docker_run(args, root, xilinx, mounts, workdir, command, folders)


def cmd_build_image(args: argparse.Namespace, rest: list[str]) -> Plan:
    root = repo_root()
    argv = ["docker", "build", "--platform", PLATFORM, "-f",
            str(root / "hw_build" / "docker" / "Dockerfile"), "-t", args.image or image_tag(root),
            *rest, str(root)]
    # The Dockerfile's own .dockerignore next to it is read by BuildKit only.
    return Plan(argv=argv, env={"DOCKER_BUILDKIT": "1"})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--image", metavar="TAG",
                        help="image tag (default: bnnpose-finn:<hash of the lock>)")
    common.add_argument("--dry-run", action="store_true", help="print the docker command only")
    b = sub.add_parser("build-image", parents=[common], help="build the toolchain image",
                       epilog="Arguments after -- go to docker build (e.g. --no-cache).")
    b.set_defaults(func=cmd_build_image)
    for name, help_text, epilog in (
        ("run", "run make_bitstream.py in the image (default: to a bitstream)",
         "Arguments after -- go to make_bitstream.py unchanged (python hw_build/make_bitstream.py "
         "--help); --until bitstream unless they give --until."),
        ("verify", "run the tests marked vivado in the image",
         "Arguments after -- go to pytest."),
    ):
        r = sub.add_parser(name, parents=[common], help=help_text, epilog=epilog)
        r.add_argument("--xilinx", type=Path, metavar="DIR",
                       help="Xilinx install root, mounted read-only (default: $XILINX_TOOLS_DIR "
                            "or $FINN_XILINX_PATH)")
        r.add_argument("--vivado-version", metavar="VERSION",
                       help="e.g. 2024.2 (default: $FINN_XILINX_VERSION, else the only one "
                            "installed)")
        r.add_argument("--license", help="port@server or license file(s) (default: "
                                         "$XILINXD_LICENSE_FILE or $LM_LICENSE_FILE)")
        r.add_argument("--workers", type=int, metavar="N",
                       help="FINN's parallel workers (default: all cores)")
        r.add_argument("--work", type=Path, metavar="DIR",
                       help="folder for the container's HOME, FINN_BUILD_DIR and XSim binding "
                            "(default: out/docker in the checkout)")
        r.set_defaults(func=cmd_run)
    return p


def execute(plan: Plan) -> int:
    docker = shutil.which("docker")
    if docker is None:
        raise BnnposeError("no docker client on PATH: install Docker, or use --dry-run to see "
                           "the command")
    if plan.image is not None:
        check = subprocess.run([docker, "image", "inspect", "--format", "{{.Id}}", plan.image],
                               capture_output=True, text=True)
        if check.returncode != 0:
            reason = (check.stderr.strip().splitlines() or ["not found"])[-1]
            raise BnnposeError(f"docker image {plan.image}: {reason}; build it with "
                               f"{PROG} build-image")
    for folder in plan.folders:
        os.makedirs(folder, exist_ok=True)
    return subprocess.run([docker, *plan.argv[1:]], env={**os.environ, **plan.env}).returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" belongs to the command run in the container.
    split = argv.index("--") if "--" in argv else len(argv)
    ours, rest = argv[:split], argv[split + 1:]
    args = build_parser().parse_args(ours)
    # One line, as the bnnpose CLI reports errors.
    return run_main(lambda _: _launch(args, rest), [], "bnnpose", errors=(BnnposeError,))


def _launch(args: argparse.Namespace, rest: list[str]) -> int:
    plan = args.func(args, rest)
    if args.dry_run:
        print(plan.shell_line())
        return 0
    return execute(plan)


if __name__ == "__main__":
    sys.exit(main())
