"""bench/full_size.py's projection from builds of fewer stacks."""

from __future__ import annotations


import pytest

BENCH = "full_size"




def _row(fps, lut, bram):
    return {"fps": fps, "lut": lut, "bram18": bram, "uram": 0, "dsp": 0}


def test_two_builds_project_by_their_difference(bench):
    rows = {1: _row(1000.0, 30_000, 100), 2: _row(990.0, 50_000, 180)}
    p = bench.project(rows, 4, "zcu104")
    assert (p["lut"], p["bram18"], p["fps"]) == (90_000, 340, 990.0)
    assert p["fits"] is True and "R(2) - R(1)" in p["method"]


def test_one_build_projects_by_multiples_and_checks_the_limits(bench):
    p = bench.project({1: _row(1090.0, 116_698, 358)}, 4, "zcu104")
    assert (p["lut"], p["bram18"]) == (466_792, 1432)
    assert p["fits"] is False and p["lut_share"] == pytest.approx(466_792 / 230_400)
    # Just inside FINN's 70% LUT / 80% BRAM limits of the board, and just outside.
    assert bench.project({1: _row(1.0, 40_320, 124)}, 4, "zcu104")["fits"] is True
    assert bench.project({1: _row(1.0, 40_321, 124)}, 4, "zcu104")["fits"] is False


def test_only_registered_hourglasses(bench):
    from bnnpose.host.common import BnnposeError

    with pytest.raises(BnnposeError, match="registered hourglass"):
        bench.main(["--model", "bidrn-z2"])
