"""What a build is asked to do (:class:`BuildConfig`) and what its steps share while it runs
(:class:`BuildContext`).

A ``BuildConfig`` reads and writes JSON as FINN's ``DataflowBuildConfig`` does, so a build is
reproducible from the ``config`` its report records: ``make_bitstream.py --config FILE``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path

from bnnpose.host.common import BnnposeError, one_line
from bnnpose.hw_build.boards import Board

#: The folding target of every entry point (make_bitstream, bnnpose demo, bnnpose models,
#: the Docker launcher) unless the user names one.
DEFAULT_FPS = 1000.0
#: ``--fps max``: the fastest folding that fits the board.
MAX_FPS = "max"


def parse_fps(value: float | str) -> float | str:
    """A positive frame rate, or :data:`MAX_FPS`; a one-line error otherwise."""
    if isinstance(value, str) and value.strip().lower() == MAX_FPS:
        return MAX_FPS
    try:
        fps = float(value)
    except (TypeError, ValueError):
        raise BnnposeError(f"--fps takes frames per second or 'max', got {value!r}") from None
    if not fps > 0 or fps == float("inf"):
        raise BnnposeError(f"--fps must be positive, got {value}")
    return fps


class Until(str, Enum):
    """The last stage of a build, in order."""

    ESTIMATE = "estimate"
    CODEGEN = "codegen"
    BITSTREAM = "bitstream"


LEVELS = tuple(u.value for u in Until)


@dataclass
class BuildConfig:
    model: Path  #: QONNX model exported by Brevitas
    board: str  #: key of ``BOARDS``
    out: Path  #: output folder (replaced atomically on success)
    #: target frames per second for FINN's folding, or "max": the fastest folding that fits
    fps: float | str = DEFAULT_FPS
    golden_in: Path | None = None  #: [N, C, H, W] inputs; default: next to the model, else random
    golden_out: Path | None = None  #: [N, J, h, w] expected outputs; default: QONNX execution
    until: Until = Until.CODEGEN  #: last stage; "bitstream" needs Vivado
    max_golden: int = 16  #: golden inputs checked per stage
    folding: Path | None = None  #: FINN folding JSON to apply over the automatic one
    clock_mhz: float | None = None  #: fabric clock; default: the board's usual clock
    #: fail (naming the fastest rate that fits) when the estimate exceeds the board's limits;
    #: False estimates anyway (``bnnpose models`` measures networks that do not fit)
    must_fit: bool = True
    #: fail when a stage's golden check finds a mismatch (the accelerator would compute
    #: something other than the network); False records it in the report and builds on
    must_match: bool = True
    #: continue a killed or failed build of the same inputs from its last finished step
    resume: bool = False

    def __post_init__(self) -> None:
        # One spelling per value (20000 and "20000" are 20000.0), so that equal builds
        # compare, hash and resume as equal.
        self.fps = parse_fps(self.fps)
        self.model, self.out = Path(self.model), Path(self.out)

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v.value if isinstance(v, Enum) else v)
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> BuildConfig:
        """The inverse of :meth:`to_dict`; unknown keys and bad values are one-line errors."""
        if not isinstance(d, dict):
            raise BnnposeError("a build config is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BnnposeError(f"unknown build options: {', '.join(unknown)}")
        missing = sorted(k for k in ("model", "board", "out") if d.get(k) is None)
        if missing:
            raise BnnposeError(f"build config lacks {', '.join(missing)}")
        paths = ("model", "out", "golden_in", "golden_out", "folding")
        try:
            values = {k: Path(v) if k in paths and v is not None else v for k, v in d.items()}
            if "until" in values:
                values["until"] = Until(values["until"])
            if values.get("clock_mhz") is not None:
                values["clock_mhz"] = float(values["clock_mhz"])
            if "max_golden" in values:
                values["max_golden"] = int(values["max_golden"])
        except (TypeError, ValueError) as e:
            raise BnnposeError(f"bad build config: {one_line(e)}") from None
        for flag in ("must_fit", "must_match", "resume"):
            if flag in values and not isinstance(values[flag], bool):
                raise BnnposeError(f"bad build config: {flag} is {values[flag]!r}, not a "
                                   "boolean")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> BuildConfig:
        """A config written by :meth:`to_json` or recorded as ``config`` in a report.json."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise BnnposeError(f"cannot read build config {path}: {one_line(e)}") from None
        return cls.from_dict(d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass
class BuildContext:
    cfg: BuildConfig
    board: Board
    out: Path
    golden: object
    #: the folding target in force: ``cfg.fps``, or the rate the search chose for "max"
    fps: float = DEFAULT_FPS
    finn_cfg: object = None
    report: dict = field(default_factory=dict)
    host_ops: list = field(default_factory=list)
    artifacts: dict = field(default_factory=dict)

    def clock_mhz(self) -> float:
        return self.cfg.clock_mhz or self.board.clock_mhz

    def target_cycles(self) -> int:
        return int(self.clock_mhz() * 1e6 / self.fps)

    def make_finn_config(self):
        """FINN's ``DataflowBuildConfig`` for this build's folder, board, clock and target."""
        from finn.builder.build_dataflow_config import DataflowBuildConfig

        return DataflowBuildConfig(
            output_dir=str(self.out), synth_clk_period_ns=1e3 / self.clock_mhz(),
            board=self.board.finn_board, target_fps=max(1, int(self.fps)), generate_outputs=[],
            folding_two_pass_relaxation=False,
            folding_config_file=str(self.cfg.folding) if self.cfg.folding else None,
        )
