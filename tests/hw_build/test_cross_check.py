"""The native cpu engine built for the boards' ARM cores (run under qemu-user) and for other
x86-64 instruction sets equals the numpy reference bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bnnpose.host.cpu_engine import PLAN_FILE, Plan
from bnnpose.hw_build import cross_check
from bnnpose.quantize import synthetic

ARM = ("armhf", "aarch64")
MISSING = sorted({tool for arch in ARM for tool in cross_check.missing_tools(arch)})
needs_tools = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} "
                                 "(make arm-tools installs them)")
RUNNABLE = [arch for arch in cross_check.TARGETS if not cross_check.missing_tools(arch)]


@needs_tools
def test_every_build_matches_the_reference(real_overlay, tmp_path):
    plan = Plan.load(real_overlay / PLAN_FILE)
    seeds = range(synthetic.EVAL_SEED_OFFSET, synthetic.EVAL_SEED_OFFSET + 3)
    frames = synthetic.render_batch(seeds, plan.input_shape[1], crop=True)[0]
    # Saturated frames too: the extremes of the input range reach every threshold's ends.
    frames = np.concatenate([frames, np.zeros_like(frames[:1]), np.full_like(frames[:1], 255)])
    rows = cross_check.cross_check(plan, frames, RUNNABLE)
    assert [r["arch"] for r in rows] == RUNNABLE and set(ARM) <= set(RUNNABLE)
    assert all(r["bitexact"] and r["n_values_differing"] == 0 for r in rows), rows
    assert all(r["n_frames"] == 5 for r in rows)


@needs_tools
def test_cli_writes_its_report(real_overlay, tmp_path):
    assert cross_check.main([str(real_overlay), "--frames", "2", "--arch", "aarch64",
                             "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "cross_check.json").read_text())
    assert report["rows"][0]["arch"] == "aarch64" and report["rows"][0]["bitexact"]


def test_an_overlay_without_a_plan_is_one_line(tmp_path, capsys):
    assert cross_check.run_main(cross_check.main, [str(tmp_path)], "cross_check") == 2
    assert capsys.readouterr().err.strip() == f"cross_check: error: no {PLAN_FILE} in {tmp_path}"
