"""bench/flow_scaling.py: the growth exponent, the plot, and its refusals."""

from __future__ import annotations

import pytest

from bnnpose.host.common import BnnposeError

BENCH = "flow_scaling"


def _run(stacks: int, nodes: int, seconds: float) -> dict:
    steps = {"qonnx_to_finn": seconds * 0.2, "streamline_pose": seconds * 0.3,
             "estimate_reports": seconds * 0.1}
    return {"stacks": stacks, "nodes": {"qonnx": nodes},
            "seconds": {"export": seconds * 0.2, "build": seconds * 0.8, "total": seconds,
                        "golden_checks_and_io": seconds * 0.2, "steps": steps}}


def test_growth_exponent_tells_linear_from_quadratic(bench):
    assert bench.growth([_run(1, 400, 100.0), _run(4, 1600, 400.0)], "total") == 1.0
    assert bench.growth([_run(1, 400, 100.0), _run(4, 1600, 1600.0)], "total") == 2.0
    assert bench.growth([_run(1, 400, 100.0)], "total") is None  # one size: no slope


def test_plot_is_written(bench, tmp_path):
    runs = [_run(1, 400, 100.0), _run(2, 800, 210.0), _run(4, 1600, 430.0)]
    result = {"model": "bhg-full", "board": "zcu104", "runs": runs,
              "growth_exponent": {"total": bench.growth(runs, "total")}}
    bench.plot(result, tmp_path / "flow_scaling.png")
    assert (tmp_path / "flow_scaling.png").stat().st_size > 10_000
    assert not list(tmp_path.glob("*.tmp.png"))


@pytest.mark.parametrize("args, match", [
    (["--model", "bidrn-z2"], "registered hourglass"),
    (["--stacks", "0"], "positive"),
])
def test_refuses_what_it_cannot_scale(bench, args, match):
    with pytest.raises(BnnposeError, match=match):
        bench.main(args)
