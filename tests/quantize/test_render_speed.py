"""Renderer throughput per core, each renderer pinned to one CPU."""

from __future__ import annotations

import os

from bnnpose.quantize import render_speed


def test_both_renderers_are_timed_on_one_cpu():
    before = os.sched_getaffinity(0)
    speed = render_speed.crops_per_second(n=8, size=32)
    rates = speed["crops_per_s_one_core"]
    assert set(rates) == set(render_speed.RENDERERS)
    assert all(r > 0 for r in rates.values())
    # Stick figures are drawn with OpenCV, bodies are posed and rasterised: far slower.
    assert rates["stick"] > rates["mesh"]
    assert os.sched_getaffinity(0) == before  # only the timing processes are pinned


def test_bad_counts_are_one_line(capsys):
    assert render_speed.run_main(render_speed.main, ["--n", "0"], "render_speed") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["render_speed: error: --n must be positive and --size at least 16"]
