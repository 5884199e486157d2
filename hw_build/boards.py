"""Board facts as data (FINN part names and the limits FINN uses for timing closure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bnnpose.host.common import BnnposeError


@dataclass(frozen=True)
class Board:
    name: str  #: our CLI name
    finn_board: str  #: FINN's board key (``pynq_part_map``)
    part: str  #: Xilinx part
    lut: int
    bram18: int
    uram: int
    dsp: int
    clock_mhz: float  #: usual fabric clock of FINN builds for this board
    #: FINN shell flow; finn-plus-driver's ``platform`` on the board (recorded in the overlay)
    shell: str = "zynq-iodma"
    lut_limit: float = 0.70  #: fraction FINN keeps free for routing/timing
    bram_limit: float = 0.80

    def capacity(self) -> dict[str, int]:
        """What one design may use: LUTs and BRAM18 up to the limits, all URAM and DSPs."""
        return {"lut": int(self.lut * self.lut_limit),
                "bram18": int(self.bram18 * self.bram_limit), "uram": self.uram, "dsp": self.dsp}

    def fits(self, usage: dict[str, int]) -> bool:
        """Whether ``usage`` (keys of :meth:`capacity`, missing ones 0) is within capacity."""
        return all(usage.get(k, 0) <= cap for k, cap in self.capacity().items())

    def limits(self) -> dict:
        cap = self.capacity()
        return {**asdict(self), "lut_max": cap["lut"], "bram18_max": cap["bram18"]}


BOARDS: dict[str, Board] = {
    "pynq-z2": Board("pynq-z2", "Pynq-Z2", "xc7z020clg400-1", 53_200, 280, 0, 220, 100.0),
    "zcu104": Board("zcu104", "ZCU104", "xczu7ev-ffvc1156-2-e", 230_400, 624, 96, 1_728, 187.5),
}


def board(name: str) -> Board:
    """The board called ``name``; an unknown name is a one-line error listing the known."""
    try:
        return BOARDS[name]
    except KeyError:
        raise BnnposeError(f"unknown board {name!r}; known: {', '.join(BOARDS)}") from None
