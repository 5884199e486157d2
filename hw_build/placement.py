"""Where weights and multipliers live: chosen so the network fits the board.

Two per-layer choices FINN leaves open are made here, when the network does not fit the board
as FINN leaves it:

* **Weight memories.** FINN leaves each MVAU's decoupled weight memory at ``ram_style="auto"``
  (Vivado decides; FINN's estimate counts it as BRAM). A folded binary layer's memory is often
  wide and shallow (a 3x3 conv at 36 SIMD x 64 PE reads 2,304 bits a cycle from 32 words): as
  BRAM18 it fills 64 blocks 6% full, so a large network runs out of BRAM long before it runs
  out of bits. A memory may move to ``distributed`` (LUTRAM: FINN costs it
  ``PE*SIMD*W*ceil(depth/64)`` LUTs, cheap for shallow memories) or to ``ultra`` (URAM,
  UltraScale+ boards only: 72 bits x 4096 words a block; FINN requires such weights to be
  written at run time, ``runtime_writeable_weights=1``, and the board driver loads them from
  the overlay's ``runtime_weights/``).
* **Multipliers.** An HLS MVAU whose weights or inputs have several bits (the 8-bit stems and
  heads) multiplies in LUTs by default (``resType="lut"``): FINN costs each multiplier
  ``(2*ceil((W+A)/6) - 1)*(W+A)`` LUTs, 132 for 8-bit weights on a 3-bit stream. With
  ``resType="dsp"`` Vivado HLS binds each to a DSP slice, which a binary network otherwise
  leaves idle. XNOR-popcount layers have no multipliers and are never moved.

:func:`place_resources` makes one move at a time, each the move that brings the fullest
resource (LUT, BRAM18, URAM, DSP, as shares of what the board allows) down the most, then the
sum of the shares, while any move helps. Every placed memory is pinned, ``block`` included.
A design that fits as FINN leaves it keeps FINN's choices everywhere (its graph is unchanged),
and a memory a folding config pinned, or a multiplier it put on DSPs, is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from bnnpose.hw_build.boards import Board

#: Estimated like FINN's ``auto`` (BRAM); the starting point of every memory.
BLOCK = "block"
MEMORY_STYLES = (BLOCK, "distributed", "ultra")
#: HLS MVAU multiplier styles; ``lut`` is the HLS layer's default, the starting point.
MULTIPLIER_STYLES = ("lut", "dsp")
RESOURCES = ("lut", "bram18", "uram", "dsp")

Cost = tuple[int, int, int, int]


@dataclass
class _Choice:
    """One layer's open choice: the attribute, and FINN's estimate of the layer per value.

    A layer may have two choices (its memory and its multipliers). Its LUT estimate is a sum
    with one term for each, so the difference between two values of one choice does not
    depend on the other's value, and running totals stay FINN's own estimate."""

    inst: object  #: the MVAU's custom-op instance
    attr: str  #: ``ram_style`` or ``resType``
    cost: dict[str, Cost]
    value: str


def _layer_cost(inst, part: str, attr: str, value: str) -> Cost:
    old = inst.get_nodeattr(attr)
    inst.set_nodeattr(attr, value)
    try:
        return (int(inst.lut_estimation(part)), int(inst.bram_estimation(part)),
                int(inst.uram_estimation(part)), int(inst.dsp_estimation(part)))
    finally:
        inst.set_nodeattr(attr, old)


def _score(totals: list[int], cap: tuple[int, ...]) -> tuple[float, float]:
    """(share of the fullest resource, sum of the shares): lower is better. A resource the
    board lacks counts as infinitely full once used."""
    shares = [t / c if c else (float("inf") if t else 0.0) for t, c in zip(totals, cap)]
    return max(shares), sum(s for s in shares if s != float("inf"))


def _choices(model: ModelWrapper, board: Board) -> list[_Choice]:
    part = board.part
    memory_styles = [s for s in MEMORY_STYLES if s != "ultra" or board.uram > 0]
    out = []
    for node in model.graph.node:
        if not node.op_type.startswith("MVAU"):
            continue
        inst = getCustomOp(node)
        if inst.get_nodeattr("mem_mode") == "internal_decoupled" \
                and inst.get_nodeattr("ram_style") == "auto":
            out.append(_Choice(inst, "ram_style",
                               {s: _layer_cost(inst, part, "ram_style", s)
                                for s in memory_styles}, BLOCK))
        if node.op_type == "MVAU_hls" and not inst.get_nodeattr("binaryXnorMode") \
                and inst.get_nodeattr("resType") == "lut" and board.dsp > 0:
            out.append(_Choice(inst, "resType",
                               {s: _layer_cost(inst, part, "resType", s)
                                for s in MULTIPLIER_STYLES}, "lut"))
    return out


def place_resources(model: ModelWrapper, board: Board, base: dict[str, int]) -> dict:
    """Pin the MVAU weight memories and multipliers of ``model`` (in place) so that FINN's
    estimate fits ``board`` if placement can make it fit. ``base``: FINN's estimated totals
    with every layer as left (the keys of ``RESOURCES``). Returns what was done, for the
    report."""
    cap = tuple(board.capacity()[r] for r in RESOURCES)
    totals = [int(base.get(r, 0)) for r in RESOURCES]
    summary = {"placed": False, "before": dict(zip(RESOURCES, totals))}
    score = _score(totals, cap)
    if score[0] <= 1.0:
        return summary
    choices = _choices(model, board)
    # Greedy descent: the single move that lowers the fullest share most (then the sum of
    # shares) until none does. Each move is an O(1) update of the totals.
    while True:
        best = None
        for c in choices:
            now = c.cost[c.value]
            for value, cost in c.cost.items():
                if value == c.value:
                    continue
                new = [t - a + b for t, a, b in zip(totals, now, cost)]
                cand = _score(new, cap)
                if cand < score and (best is None or cand < best[0]):
                    best = (cand, c, value, new)
        if best is None:
            break
        score, c, c.value, totals = best
    memories = {s: 0 for s in MEMORY_STYLES}
    multipliers = {s: 0 for s in MULTIPLIER_STYLES}
    for c in choices:
        # Block too is pinned: left at "auto", Vivado could put a shallow one in LUTs the
        # estimate did not count.
        c.inst.set_nodeattr(c.attr, c.value)
        if c.attr == "ram_style":
            memories[c.value] += 1
            if c.value == "ultra":
                c.inst.set_nodeattr("runtime_writeable_weights", 1)
        else:
            multipliers[c.value] += 1
    summary.update(placed=True, after=dict(zip(RESOURCES, totals)), memories=memories,
                   multipliers=multipliers)
    return summary
