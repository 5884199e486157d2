"""Renderer throughput per core: crops per second of the stick-figure and the mesh-body
renderers, each timed in a fresh process pinned to one CPU with every library held to one
thread (llvmpipe, torch, OpenCV), so that neither borrows a second core.

    .venv/bin/python -m bnnpose.quantize.render_speed [--n 192] [--size 128]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

from bnnpose.host.common import BnnposeError, run_main

RENDERERS = ("stick", "mesh")
#: Seeds timed: away from the ones a warm-up renders.
FIRST_SEED = 50_000


def _pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    os.environ["LP_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"


def _rate(kind: str, n: int, size: int) -> float:
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if kind == "stick":
        from bnnpose.quantize import synthetic

        def render(seeds):
            return synthetic.render_batch(seeds, size, crop=True)
    else:
        from bnnpose.quantize import mesh_render

        def render(seeds):
            return mesh_render.render_batch(seeds, size)
    render(range(16))  # loads anny, the GL context and the backgrounds outside the clock
    t = time.perf_counter()
    render(range(FIRST_SEED, FIRST_SEED + n))
    return n / (time.perf_counter() - t)


def crops_per_second(n: int = 192, size: int = 128) -> dict:
    """``{"crops_per_s_one_core": {renderer: crops/s}, ...}``, one renderer after the other on
    the lowest CPU this process may use."""
    if n < 1 or size < 16:
        raise BnnposeError("--n must be positive and --size at least 16")
    cpu = min(os.sched_getaffinity(0))
    rates = {}
    for kind in RENDERERS:
        with ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), initializer=_pin,
                                 initargs=(cpu,)) as pool:
            rates[kind] = round(pool.submit(_rate, kind, n, size).result(), 1)
    return {"crops_per_s_one_core": rates, "crops": n, "size": size,
            "how": "each renderer in a fresh process pinned to one CPU, one thread each for "
                   "llvmpipe, torch and OpenCV"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bnnpose.quantize.render_speed",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=192, help="crops timed per renderer")
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args(argv)
    speed = crops_per_second(args.n, args.size)
    for kind, rate in speed["crops_per_s_one_core"].items():
        print(f"{kind}: {rate} crops/s on one core")


if __name__ == "__main__":
    raise SystemExit(run_main(main, None, "render_speed"))
