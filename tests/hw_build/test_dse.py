"""``bnnpose dse``: a small real sweep on a local two-process Dask cluster, its resume, the
frontier, and one-line errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bnnpose.host.common import BnnposeError
from bnnpose.hw_build import dse

#: 32x32 inputs and narrow layers: every point builds and trains in well under a minute.
SMALL_KNOBS = ["input_size=32", "stem_channels=8", "channels=16", "depth=1,2"]
SMALL_PROXY = dse.Proxy(data="synthetic", n_train=64, epochs=1, n_val=16, batch_size=16)


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c


def test_a_sweep_on_a_two_process_cluster_writes_points_frontier_and_plot(
        cluster, tmp_path, monkeypatch):
    out = tmp_path / "dse"
    lines = []
    result = dse.sweep("pynq-z2", "hourglass", SMALL_KNOBS, [200.0], SMALL_PROXY, out,
                       scheduler=cluster.scheduler_address, golden=2, with_shipped=False,
                       runs=tmp_path / "runs", final=replace(SMALL_PROXY, epochs=2),
                       report=lines.append)
    rows = result["points"]
    # depth=2 is the base's own: that point's knobs leave it out.
    assert [r["knobs"].get("depth", 2) for r in rows] == [1, 2], rows
    assert not any("error" in r for r in rows), rows
    for r in rows:
        assert r["unmapped_nodes"] == [] and r["bitexact"]
        assert r["fps"] > 0 and 0 < r["lut_share"] < 1 and r["fits"]
        assert 0 <= r["proxy"]["pck"] <= 1 and r["proxy"]["label"].startswith("proxy:")
        assert r["knobs"]["input_size"] == 32 and r["config"]["input_size"] == 32
    # Deeper is slower or no faster; the frontier is drawn from what fits.
    assert set(result["frontier"]) <= {r["point"] for r in rows} and result["frontier"]
    # The frontier's architectures trained again by the longer recipe.
    for r in rows:
        on_front = r["point"] in result["frontier"]
        assert ("final" in r) == on_front
        if on_front:
            assert r["final"]["run"] != r["proxy"]["run"] and "2 epochs" in r["final"]["label"]
    assert json.loads((out / "dse.json").read_text())["frontier"] == result["frontier"]
    assert (out / "dse_pynq-z2.png").stat().st_size > 10_000
    assert any("frontier" in line for line in lines)

    # Interrupted or finished, a sweep resumes from the points it wrote: nothing is evaluated,
    # and finished trainings are reused.
    def never(*args):
        raise AssertionError(f"evaluated again: {args}")

    monkeypatch.setattr(dse, "estimate", never)
    monkeypatch.setattr(dse, "proxy_score", never)
    again = dse.sweep("pynq-z2", "hourglass", SMALL_KNOBS, [200.0], SMALL_PROXY, out,
                      golden=2, with_shipped=False, runs=tmp_path / "runs",
                      final=replace(SMALL_PROXY, epochs=2), report=lines.append)
    assert again["points"] == rows


def fake_rows(pairs):
    return [{"point": f"p{i}", "knobs": {"k": i}, "target_fps": 1.0, "fps": fps, "fits": fits,
             "lut_share": 0.5, "bram_share": 0.5, "dsp": 0, "params": 1,
             "proxy": {"pck": pck, "label": "proxy: made up"}}
            for i, (fps, pck, fits) in enumerate(pairs)]


def test_the_frontier_keeps_what_fits_and_nothing_beats_on_both():
    rows = fake_rows([(100, 0.5, True), (300, 0.4, True), (300, 0.3, True), (900, 0.45, False),
                      (1000, 0.2, True), (200, 0.45, True)])
    assert [r["point"] for r in dse.frontier(rows)] == ["p0", "p5", "p1", "p4"]
    assert [r["point"] for r in dse.frontier(rows, min_fps=250)] == ["p1", "p4"]


def test_grid_drops_knobs_equal_to_the_base_and_adds_the_shipped_point():
    knobs = dse.parse_knobs("bhg-tiny", ["channels=32,64", "stacks=1"])
    points = dse.grid("bhg-tiny", "pynq-z2", knobs, [300.0, 1000.0], dse.Proxy(), 4)
    assert [p.name() for p in points] == ["bhg-tiny @300", "bhg-tiny @1000", "channels=64 @300",
                                          "channels=64 @1000"]
    # The shipped default network (bhg-c64-z2) is bhg-tiny at 64 channels: a point of its own
    # at the shipped folding target when the sweep does not reach it, and the one starred.
    assert dse.shipped_knobs("bhg-tiny") == (("channels", 64),)
    narrow = dse.grid("bhg-tiny", "zcu104", {"channels": [32]}, [2000.0], dse.Proxy(), 4)
    assert [p.name() for p in narrow] == ["bhg-tiny @2000", "channels=64 @1000"]
    rows = [{"target_fps": p.fps, "knobs": p.arch()} for p in narrow]
    assert [dse.is_shipped(r, "bhg-tiny") for r in rows] == [False, True]
    # Other families and the face model (other joints) have no shipped network to mark.
    assert dse.shipped_knobs("bihrnet-z2") is None
    assert dse.shipped_knobs("face-bhg-z2") is None
    assert dse.parse_knobs("bihrnet-z2", ["widths=16x32x64"]) == {"widths": [(16, 32, 64)]}
    assert dse.parse_knobs("bhg-tiny", ["rsign=false,True"]) == {"rsign": [False, True]}


@pytest.mark.parametrize("argv, needle", [
    (["--board", "pynq-z2", "--family", "resnet"], "unknown family 'resnet'; known: hourglass"),
    (["--board", "pynq-z2", "--knob", "colour=3"], "no architecture knob 'colour'; knobs:"),
    (["--board", "pynq-z2", "--knob", "channels=wide"], "values must be numbers"),
    (["--board", "pynq-z2", "--knob", "rsign=1"], "rsign: expected bool values like False"),
    (["--board", "pynq-z2", "--knob", "channels=1.5"], "channels: expected int values like 32"),
    (["--board", "nexys"], "nexys"),
    (["--board", "pynq-z2", "--fps", "fast"], "--fps 'fast'"),
    (["--board", "pynq-z2", "--scheduler", "tcp://127.0.0.1:9"], "does not answer"),
])
def test_bad_input_is_one_line(argv, needle, tmp_path, capsys):
    assert dse.run_main(dse.main, [*argv, "--out", str(tmp_path)], "bnnpose dse") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "dse.json").exists()


def test_a_min_fps_no_point_reaches_names_the_best_that_fits(tmp_path, monkeypatch):
    rows = iter(fake_rows([(420.0, 0.3, True), (2000.0, 0.4, False)]))

    def estimate(point, work):
        row = {**next(rows), "point": point.name(), "knobs": point.arch()}
        return {k: v for k, v in row.items() if k != "proxy"}

    monkeypatch.setattr(dse, "estimate", estimate)
    monkeypatch.setattr(dse, "proxy_score", lambda *args: {"pck": 0.2, "mean_pose": 0.1,
                                                           "label": "proxy: made up"})
    with pytest.raises(BnnposeError, match=r"no point reaches --min-fps 1000; the best that "
                                           r"fits: 420"):
        dse.sweep("pynq-z2", "hourglass", ["channels=32,64"], [1000.0], dse.Proxy(), tmp_path,
                  min_fps=1000.0, with_shipped=False, runs=tmp_path / "runs",
                  report=lambda line: None)
    # What was measured is written all the same.
    assert len(json.loads((tmp_path / "dse.json").read_text())["points"]) == 2
