"""`bnnpose run` end to end on the built overlay: the sim and cpu backends agree exactly."""

from __future__ import annotations

import json

import cv2
import numpy as np

from bnnpose.host import cli
from bnnpose.quantize import synthetic


def test_sim_and_cpu_write_identical_keypoints(real_overlay, tmp_path):
    # Rendered people, so the keypoints are not decided by noise: two images and a video.
    frames = [synthetic.render_sample(seed, 160)["image"] for seed in range(10_000_000, 10_000_005)]
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"person{i}.png"), cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR))
    h, w = frames[2].shape[:2]
    writer = cv2.VideoWriter(str(tmp_path / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5,
                             (w, h))
    for f in frames[2:]:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()

    records = {}
    for backend in ("sim", "cpu"):
        out = tmp_path / backend
        assert cli.main(["run", "--backend", backend, "--overlay", str(real_overlay),
                         "--out", str(out), "--person", "track",
                         str(tmp_path / "person0.png"), str(tmp_path / "person1.png"),
                         str(tmp_path / "walk.avi")]) == 0
        records[backend] = [json.loads(line)
                            for line in (out / "keypoints.jsonl").read_text().splitlines()]
    assert len(records["cpu"]) == 5
    for a, b in zip(records["sim"], records["cpu"], strict=True):
        assert (a["source"], a["frame"], a["box"]) == (b["source"], b["frame"], b["box"])
        assert a["keypoints"] == b["keypoints"]
    cap = cv2.VideoCapture(str(tmp_path / "cpu" / "walk_pose.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3
    assert np.array(records["cpu"][0]["keypoints"]).shape == (16, 3)
