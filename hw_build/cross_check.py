"""The cpu engine's native program built for other CPUs than this one, its outputs compared bit
for bit with the numpy reference.

The boards compile ``host/xnor_kernels.c`` themselves at first use (``bnnpose deploy`` ships the
source); this checks beforehand, on a PC, that the same source gives the same integers on
those CPUs: it cross-compiles ``host/xnor_main.c`` with the kernels for armhf (the PYNQ-Z2's
Cortex-A9, NEON) and aarch64 (the ZCU104's Cortex-A53) with Debian's cross compilers, runs the
plan image (``Plan.native_image``) under ``qemu-*-static`` and compares. Emulated run times mean
nothing about the boards and are not reported.

The kernels take a different path per instruction set (AVX-512 with VNNI, AVX2, NEON, plain
C), and a PC runs only its own through the Python engine; so on an x86-64 host the same check
also builds for the baseline x86-64 (plain C) and x86-64-v3 (AVX2) and runs those directly.

    python -m bnnpose.hw_build.cross_check OVERLAY_DIR [--frames 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bnnpose.host import cpu_engine
from bnnpose.host.common import BnnposeError, run_main, versions, write_json


class Target(NamedTuple):
    compiler: str
    flags: tuple[str, ...]
    emulator: str  #: "" for a build this machine runs itself
    board: str
    packages: str  #: the Debian packages that bring compiler and emulator
    cpu_flag: str = ""  #: for a build run here: the /proc/cpuinfo flag it needs


TARGETS = {
    "armhf": Target("arm-linux-gnueabihf-gcc", ("-O3", "-mfpu=neon", "-mfloat-abi=hard"),
                    "qemu-arm-static", "PYNQ-Z2 (Cortex-A9)",
                    "gcc-arm-linux-gnueabihf qemu-user-static"),
    "aarch64": Target("aarch64-linux-gnu-gcc", ("-O3",), "qemu-aarch64-static",
                      "ZCU104 (Cortex-A53)", "gcc-aarch64-linux-gnu qemu-user-static"),
    "x86-64": Target("gcc", ("-O3", "-march=x86-64"), "", "x86-64 baseline (plain C)", "gcc",
                     "sse2"),
    "x86-64-v3": Target("gcc", ("-O3", "-march=x86-64-v3"), "", "x86-64-v3 (AVX2)", "gcc",
                        "avx2"),
}
_HOST = Path(cpu_engine.__file__).parent
SOURCES = (_HOST / "xnor_main.c", _HOST / "xnor_kernels.c")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split()}


def missing_tools(arch: str) -> list[str]:
    t = TARGETS[arch]
    missing = [tool for tool in (t.compiler, t.emulator) if tool and shutil.which(tool) is None]
    if t.cpu_flag and (platform.machine() != "x86_64" or t.cpu_flag not in _cpu_flags()):
        missing.append(f"an x86-64 CPU with {t.cpu_flag}")
    return missing


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " ".join((result.stderr or result.stdout).split())[:300]
        raise BnnposeError(f"{what} failed: {tail}")


def cross_check(plan: cpu_engine.Plan, frames: np.ndarray, arches=tuple(TARGETS),
                work: str | Path | None = None) -> list[dict]:
    """Run ``plan`` on ``frames [N, H, W, C]`` as each ``arch``'s build does under qemu and
    compare with the numpy reference; one row per architecture."""
    reference = plan.run(frames, native=False).astype(np.int32)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tmp = Path(tmp)
        (tmp / "plan.img").write_bytes(plan.native_image())
        (tmp / "in.bin").write_bytes(np.asarray(frames, "<i4").tobytes())
        rows = []
        for arch in arches:
            t = TARGETS[arch]
            missing = missing_tools(arch)
            if missing:
                raise BnnposeError(f"{arch}: needs {', '.join(missing)} (Debian's "
                                   f"{t.packages}; `make arm-tools` installs the ARM tools)")
            exe, out = tmp / f"xnor_main-{arch}", tmp / f"out-{arch}.bin"
            # Static: qemu-user then needs no target sysroot.
            _run([t.compiler, *t.flags, "-static", "-o", str(exe), *map(str, SOURCES)],
                 f"{arch}: {t.compiler}")
            command = [str(exe), str(tmp / "plan.img"), str(tmp / "in.bin"), str(out)]
            _run([t.emulator, *command] if t.emulator else command,
                 f"{arch}: the program" + (f" under {t.emulator}" if t.emulator else ""))
            got = np.frombuffer(out.read_bytes(), "<i4")
            if got.size != reference.size:
                raise BnnposeError(f"{arch}: {got.size} output values, expected "
                                   f"{reference.size}")
            got = got.reshape(reference.shape)
            version = subprocess.run([t.compiler, "--version"], capture_output=True,
                                     text=True).stdout.splitlines()[0]
            rows.append({"arch": arch, "board": t.board, "compiler": version,
                         "flags": list(t.flags), "emulator": t.emulator or None,
                         "n_frames": len(frames), "bitexact": bool(np.array_equal(got,
                                                                                  reference)),
                         "n_values_differing": int((got != reference).sum())})
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bnnpose.hw_build.cross_check",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("overlay", type=Path, help="an overlay folder with its cpu_plan.npz")
    ap.add_argument("--frames", type=int, default=8, help="held-out renders to compare on")
    runnable = [k for k, t in TARGETS.items() if not (t.cpu_flag and missing_tools(k))]
    ap.add_argument("--arch", nargs="*", choices=tuple(TARGETS), default=runnable,
                    help="default: the ARM builds, and the x86-64 ones this CPU runs")
    ap.add_argument("--out", type=Path, help="write cross_check.json here")
    a = ap.parse_args(argv)
    plan_file = a.overlay / cpu_engine.PLAN_FILE
    if not plan_file.is_file():
        raise BnnposeError(f"no {cpu_engine.PLAN_FILE} in {a.overlay}")
    plan = cpu_engine.Plan.load(plan_file)
    from bnnpose.quantize import synthetic

    size = plan.input_shape[1]
    seeds = range(synthetic.EVAL_SEED_OFFSET, synthetic.EVAL_SEED_OFFSET + a.frames)
    frames = synthetic.render_batch(seeds, size, crop=True)[0]
    rows = cross_check(plan, frames, a.arch)
    for r in rows:
        print(f"{r['arch']:8} {r['board']:22} {r['n_frames']} frames, bit-exact: "
              f"{r['bitexact']}  ({r['compiler']})")
    if a.out is not None:
        write_json(a.out / "cross_check.json", {"overlay": str(a.overlay), "rows": rows,
                                                "versions": versions()})
    return 0 if all(r["bitexact"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(run_main(main, None, "cross_check"))
