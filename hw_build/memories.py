"""Where the weight memories live: BRAM, LUTRAM or UltraRAM, chosen so the network fits.

FINN leaves each MVAU's decoupled weight memory at ``ram_style="auto"`` (Vivado decides; FINN's
estimate counts it as BRAM). A folded binary layer's memory is often wide and shallow (a 3x3
conv at 36 SIMD x 64 PE reads 2,304 bits a cycle from 32 words): as BRAM18 it fills 64 blocks
6% full, so a large network runs out of BRAM long before it runs out of bits. When the network
does not fit the board as FINN leaves it, :func:`place_memories` pins each memory to the style
that brings the fullest resource down the most, a move at a time, while any move helps:

* ``distributed`` (LUTRAM): FINN costs it ``PE*SIMD*W*ceil(depth/64)`` LUTs, cheap for shallow
  memories;
* ``ultra`` (URAM, UltraScale+ boards only): 72 bits x 4096 words a block; FINN requires such
  weights to be written at run time (``runtime_writeable_weights=1``), the board driver loads
  them from the overlay's ``runtime_weights/``.

The moves pin every placed memory, ``block`` included. A design that fits as FINN leaves it
keeps ``auto`` everywhere (its graph is unchanged), and a memory a folding config pinned is left
as pinned.
"""

from __future__ import annotations

from dataclasses import dataclass

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from bnnpose.hw_build.boards import Board

#: Estimated like FINN's ``auto`` (BRAM); the starting point of every memory.
BLOCK = "block"
STYLES = (BLOCK, "distributed", "ultra")
RESOURCES = ("lut", "bram18", "uram")


@dataclass
class _Memory:
    node: object  #: the MVAU's custom-op instance
    #: estimated (LUT, BRAM18, URAM) of the layer with its weights in each style
    cost: dict[str, tuple[int, int, int]]
    style: str = BLOCK


def _layer_cost(inst, part: str, style: str) -> tuple[int, int, int]:
    old = inst.get_nodeattr("ram_style")
    inst.set_nodeattr("ram_style", style)
    try:
        return (int(inst.lut_estimation(part)), int(inst.bram_estimation(part)),
                int(inst.uram_estimation(part)))
    finally:
        inst.set_nodeattr("ram_style", old)


def _score(totals: list[int], cap: tuple[int, int, int]) -> tuple[float, float]:
    """(share of the fullest resource, sum of the shares): lower is better. A resource the
    board lacks counts as infinitely full once used."""
    shares = [t / c if c else (float("inf") if t else 0.0) for t, c in zip(totals, cap)]
    return max(shares), sum(s for s in shares if s != float("inf"))


def place_memories(model: ModelWrapper, board: Board, base: dict[str, int]) -> dict:
    """Pin the MVAU weight memories of ``model`` (in place) so that FINN's estimate fits
    ``board`` if memory placement can make it fit. ``base``: FINN's estimated totals with every
    memory as left (``lut``, ``bram18``, ``uram``). Returns what was done, for the report."""
    part = board.part
    cap = tuple(board.capacity()[r] for r in RESOURCES)
    totals = [int(base[r]) for r in RESOURCES]
    summary = {"placed": False, "before": dict(zip(RESOURCES, totals))}
    score = _score(totals, cap)
    if score[0] <= 1.0:
        return summary
    styles = [s for s in STYLES if s != "ultra" or board.uram > 0]
    memories = []
    for node in model.graph.node:
        if not node.op_type.startswith("MVAU"):
            continue
        inst = getCustomOp(node)
        if inst.get_nodeattr("mem_mode") != "internal_decoupled" \
                or inst.get_nodeattr("ram_style") != "auto":
            continue
        memories.append(_Memory(inst, {s: _layer_cost(inst, part, s) for s in styles}))
    # Greedy descent: the single move that lowers the fullest share most (then the sum of
    # shares) until none does. Each move is an O(1) update of the totals.
    while True:
        best = None
        for m in memories:
            now = m.cost[m.style]
            for s in styles:
                if s == m.style:
                    continue
                new = [t - a + b for t, a, b in zip(totals, now, m.cost[s])]
                cand = _score(new, cap)
                if cand < score and (best is None or cand < best[0]):
                    best = (cand, m, s, new)
        if best is None:
            break
        score, m, m.style, totals = best
    counts = {s: 0 for s in STYLES}
    for m in memories:
        counts[m.style] += 1
        # Block too is pinned: left at "auto", Vivado could put a shallow one in LUTs the
        # estimate did not count.
        m.node.set_nodeattr("ram_style", m.style)
        if m.style == "ultra":
            m.node.set_nodeattr("runtime_writeable_weights", 1)
    summary.update(placed=True, after=dict(zip(RESOURCES, totals)), memories=counts)
    return summary
