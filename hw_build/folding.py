"""Folding to the board: the fastest FINN folding whose estimate fits the board's limits.

The steps before folding do not depend on the frame-rate target, so the search runs them once
and then probes only the folding steps (``Step.folds``) on copies of the unfolded graph, each
for one target, without golden checks: a probe costs seconds where a build costs minutes.
FINN folds to divisors of each layer's channels, so the achieved rate is a step function of
the target; fitting is monotone in it, and a bisection in log space finds the last target that
fits to within ``rel_tol``.

A folding reached for target T at rate F >= T is also the folding of every target in [T, F]:
FINN's ``SetFolding`` walks each layer's (SIMD, PE) choices in one order and stops at the first
fast enough, the choices it passed for T are too slow for any higher target, and the one it
stopped at is fast enough for F. So a fitting probe moves the search's lower end to F, not T.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper
from tqdm import tqdm

from bnnpose.host.common import BnnposeError
from bnnpose.hw_build.config import BuildContext
from bnnpose.hw_build.steps import Step, run_step

#: Bounds of the search, frames per second: the slowest folding (one PE and SIMD everywhere)
#: is reached far below 1 FPS for our networks' sizes; the fastest (every layer fully
#: parallel) far above 10 million at any clock FINN targets.
LOWEST_TARGET = 1.0
HIGHEST_TARGET = 1e7


@dataclass(frozen=True)
class Probe:
    target: float  #: the folding target, FPS
    fps: float  #: FINN's estimate of the folded graph
    lut_share: float
    bram_share: float
    fits: bool

    def to_dict(self) -> dict:
        return {"target": round(self.target, 3), "fps": self.fps, "lut_share": self.lut_share,
                "bram_share": self.bram_share, "fits": self.fits}


def probe(model: ModelWrapper, ctx: BuildContext, steps: Sequence[Step], target: float,
          work: Path) -> tuple[Probe, dict]:
    """FINN's estimate of the unfolded ``model`` folded for ``target`` FPS; the build folder,
    report and golden vectors of ``ctx`` stay untouched (FINN's files go to ``work``)."""
    work.mkdir(parents=True, exist_ok=True)
    trial = replace(ctx, out=work, fps=target, report={}, host_ops=[], artifacts={})
    trial.finn_cfg = trial.make_finn_config()
    folded = ModelWrapper(model.model.__deepcopy__())
    for step in steps:
        folded = run_step(step, folded, trial)
    e = trial.report["estimate"]
    return Probe(target, e["fps"], e["lut_share"], e["bram_share"], e["fits"]), e


def _reach(p: Probe) -> float:
    """The highest target known to give ``p``'s folding."""
    return max(p.target, p.fps)


def fastest_fit(model: ModelWrapper, ctx: BuildContext, steps: Sequence[Step], work: Path,
                known: Sequence[Probe] = (), rel_tol: float = 0.02
                ) -> tuple[Probe | None, list[Probe]]:
    """The probe of the highest target that fits (None if even the slowest folding does not)
    and every probe made, in order. ``known`` probes (e.g. the build's own) bound the search."""
    probes = list(known)
    bar = tqdm(desc="fps search", unit="probe", file=sys.stderr, disable=None)

    def run(target: float) -> Probe:
        p = probe(model, ctx, steps, target, work / f"probe_{len(probes):02d}")[0]
        probes.append(p)
        bar.update()
        bar.set_postfix(target=f"{target:.4g}", fps=f"{p.fps:.4g}", fits=p.fits)
        return p

    try:
        fitting = [p for p in probes if p.fits]
        failing = [p for p in probes if not p.fits]
        lo = max(fitting, key=lambda p: p.target) if fitting else run(LOWEST_TARGET)
        if not lo.fits:
            return None, probes
        hi = min(failing, key=lambda p: p.target) if failing else run(HIGHEST_TARGET)
        if hi.fits:
            return hi, probes
        while hi.target / _reach(lo) > 1 + rel_tol and lo.fps < hi.fps:
            mid = run(math.sqrt(_reach(lo) * hi.target))
            if mid.fits:
                lo = mid
            else:
                hi = mid
        return lo, probes
    finally:
        bar.close()


def misfit_error(board: str, best: Probe | None, probes: Sequence[Probe],
                 asked: dict | None = None) -> BnnposeError:
    """The one line for a network that does not fit ``board``: at the folding it asked for
    (``asked``: that estimate), or at any folding."""
    if best is None:
        slowest = min(probes, key=lambda p: p.target)
        return BnnposeError(f"the network does not fit {board} at any folding: even the slowest "
                            f"needs {slowest.lut_share:.0%} of its LUTs and "
                            f"{slowest.bram_share:.0%} of its BRAM18; make it smaller")
    e = asked or {}
    return BnnposeError(
        f"--fps {e.get('target', 0):g} does not fit {board} (LUT {e.get('lut')} of "
        f"{e.get('board', {}).get('lut_max')} usable, BRAM18 {e.get('bram18')} of "
        f"{e.get('board', {}).get('bram18_max')}); the fastest folding that fits reaches "
        f"{best.fps:.0f} FPS (--fps {best.target:.4g}, or --fps max)")
