"""bench/binary_vs_float.py on a tiny budget: one family trained by the recipe, then reused."""

from __future__ import annotations

import json

import pytest

BENCH = "binary_vs_float"




def test_face_family_is_trained_scored_by_nme_and_reused(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "REALSETS", tmp_path / "no-realsets")
    argv = ["--families", "face-bhg-z2", "--recipe", '{"n_train": 32, "n_val": 8, "epochs": 1}',
            "--n-render", "8", "--work", str(tmp_path / "work"),
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert bench.main(argv) == 0
    result = json.loads((tmp_path / "out" / "binary_vs_float.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    # Every shipped pair is scored as it is, beside the family trained here.
    shipped = {name for name, _, _ in bench.shipped_pairs()}
    assert {"bhg-tiny", "bhg-c64-z2"} <= shipped
    assert set(rows) == shipped | {"face-bhg-z2"}
    face, body = rows["face-bhg-z2"], rows["bhg-tiny"]
    assert face["metric"] == "nme" and face["family"] == "face" and face["goal_met"] is None
    # Held-out renders of the kind the shipped pair was trained on: mesh bodies.
    assert body["metric"] == "pck" and body["data"] == "mesh:8"
    assert face["gap"] == pytest.approx(face["binary"] - face["float"])
    assert body["gap"] == pytest.approx(body["float"] - body["binary"])
    # Left-right mirrored people are counted per network for bodies; faces have no sides.
    assert set(body["mirrored"]) == {"binary", "float"} and face["mirrored"] is None
    assert all(0 <= n <= body["n_people"] for n in body["mirrored"].values())
    for kind, groups in body["mirrored_by_facing"].items():
        assert sum(g["n_people"] for g in groups.values()) == body["n_people"]
        assert sum(g["mirrored"] for g in groups.values()) == body["mirrored"][kind]
    assert face["mirrored_by_facing"] is None
    assert face["checkpoint_binary"].endswith("last.pt") and "binary" in face["checkpoint_binary"]
    assert result["recipe"]["n_train"] == 32
    assert (tmp_path / "out" / "binary_vs_float.png").read_bytes()[:4] == b"\x89PNG"
    runs = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert [r.split("-")[-2] for r in runs] == ["binary", "float"]
    stamps = {r: (tmp_path / "work" / r / "last.pt").stat().st_mtime_ns for r in runs}
    capsys.readouterr()
    assert bench.main(argv) == 0  # finished runs are reused, not trained again
    assert {r: (tmp_path / "work" / r / "last.pt").stat().st_mtime_ns for r in runs} == stamps
    assert json.loads((tmp_path / "out" / "binary_vs_float.json").read_text())["rows"] == \
        result["rows"]


def test_a_shipped_pair_needs_both_checkpoints(bench, tmp_path, monkeypatch):
    for name in ("bhg-tiny.pt", "bhg-tiny-float.pt", "bidrn-z2.pt"):  # bidrn-z2: no twin
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(bench, "CHECKPOINTS", tmp_path)
    pairs = bench.shipped_pairs()
    assert pairs == [("bhg-tiny", tmp_path / "bhg-tiny.pt", tmp_path / "bhg-tiny-float.pt")]


def test_a_pairs_family_comes_from_its_checkpoint_not_its_name(bench):
    ckpt = bench.CHECKPOINTS
    # bhg-tiny, under a name of its own, stands for the hourglass family; the face pair,
    # named like a body network, stands for the face family.
    pairs = [("candidate", ckpt / "bhg-tiny.pt", ckpt / "bhg-tiny-float.pt"),
             ("bidrn-z2", ckpt / "face-bhg-z2.pt", ckpt / "face-bhg-z2-float.pt")]
    assert bench.unshipped_families(pairs) == ["bihrnet-z2", "bidrn-z2"]


def test_a_pair_under_its_own_name_is_scored_by_its_checkpoints_family(bench, tmp_path,
                                                                        monkeypatch):
    # A candidate scored beside the shipped pair keeps its registry model in the checkpoint.
    monkeypatch.setattr(bench, "REALSETS", tmp_path / "no-realsets")
    ckpt = bench.CHECKPOINTS
    argv = ["--pair", "face-candidate", str(ckpt / "face-bhg-z2.pt"),
            str(ckpt / "face-bhg-z2-float.pt"), "--families", "--n-render", "8",
            "--out", str(tmp_path / "out")]
    assert bench.main(argv) == 0
    [row] = json.loads((tmp_path / "out" / "binary_vs_float.json").read_text())["rows"]
    assert (row["model"], row["family"], row["metric"]) == ("face-candidate", "face", "nme")
    assert row["data"] == "synthetic-face:8"


def test_a_missing_checkpoint_is_one_line(bench, tmp_path, capsys):
    missing = str(tmp_path / "none.pt")
    assert bench.main(["--pair", "x", missing, missing, "--families",
                       "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.pt" in err
    assert not (tmp_path / "out").exists()


def test_limb_pck_weighs_the_limb_joints_of_either_layout_by_their_counts(bench):
    # An MPII network (r_/l_ names) scored on COCO labels, and a COCO network whose face
    # points score well: only shoulders, elbows, wrists, hips, knees and ankles count.
    mpii = {"per_joint": {"r_ankle": {"pck": 0.5, "pck_mean_pose": 0.0, "n": 10},
                          "l_wrist": {"pck": 1.0, "pck_mean_pose": 0.5, "n": 30},
                          "head_top": {"pck": None, "pck_mean_pose": None, "n": 0},
                          "thorax": {"pck": 0.0, "pck_mean_pose": 0.0, "n": 40}}}
    assert bench.limb_pck(mpii, "pck") == pytest.approx((0.5 * 10 + 1.0 * 30) / 40)
    assert bench.limb_pck(mpii, "pck_mean_pose") == pytest.approx(0.5 * 30 / 40)
    coco = {"per_joint": {"right_ankle": {"pck": 0.5, "pck_mean_pose": 0.0, "n": 10},
                          "left_wrist": {"pck": 1.0, "pck_mean_pose": 0.5, "n": 30},
                          "left_eye": {"pck": 1.0, "pck_mean_pose": 0.0, "n": 99},
                          "left_knee": {"pck": None, "pck_mean_pose": None, "n": 0}}}
    assert bench.limb_pck(coco, "pck") == bench.limb_pck(mpii, "pck")
    assert bench.limb_pck({"per_joint": {"nose": {"pck": 1.0, "n": 3}}}, "pck") is None
