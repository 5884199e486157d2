"""`bnnpose run` end to end on the built overlay: the sim and cpu backends agree exactly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bnnpose.host import cli
from bnnpose.quantize import synthetic


#: OpenCV's sample data (Debian's opencv-doc, which `make test` installs with the backgrounds):
#: real people, used here for evaluation only, never for training.
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


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
    records = run_both(real_overlay, tmp_path, [tmp_path / "person0.png",
                                                tmp_path / "person1.png", tmp_path / "walk.avi"])
    assert len(records["cpu"]) == 5
    cap = cv2.VideoCapture(str(tmp_path / "cpu" / "walk_pose.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3
    assert np.array(records["cpu"][0]["keypoints"]).shape == (16, 3)


def run_both(overlay, tmp_path, inputs: list[Path]) -> dict[str, list[dict]]:
    """``bnnpose run`` on the sim and cpu backends; each one's keypoint records, checked equal."""
    records = {}
    for backend in ("sim", "cpu"):
        out = tmp_path / backend
        assert cli.main(["run", "--backend", backend, "--overlay", str(overlay),
                         "--out", str(out), "--person", "track", *map(str, inputs)]) == 0
        records[backend] = [json.loads(line)
                            for line in (out / "keypoints.jsonl").read_text().splitlines()]
    for a, b in zip(records["sim"], records["cpu"], strict=True):
        assert (a["source"], a["frame"], a["box"]) == (b["source"], b["frame"], b["box"])
        assert a["keypoints"] == b["keypoints"]
    return records


@pytest.mark.skipif(not (OPENCV_DATA / "vtest.avi").is_file(), reason="needs Debian's opencv-doc")
@pytest.mark.parametrize("overlay", ["real_overlay", "default_overlay"])
def test_sim_and_cpu_agree_on_real_photos_and_footage(overlay, request, tmp_path):
    from skimage import data

    real_overlay = request.getfixturevalue(overlay)

    photos = [tmp_path / "astronaut.png", OPENCV_DATA / "messi5.jpg",
              OPENCV_DATA / "basketball1.png"]
    cv2.imwrite(str(photos[0]), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    # Six frames of people walking (vtest.avi), a second apart.
    cap = cv2.VideoCapture(str(OPENCV_DATA / "vtest.avi"))
    clip = tmp_path / "street.avi"
    writer = None
    for i in range(6 * 10):
        ok, frame = cap.read()
        assert ok
        if i % 10:
            continue
        if writer is None:
            writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 1,
                                     frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    records = run_both(real_overlay, tmp_path, [*photos, clip])
    assert len(records["cpu"]) == 3 + 6
