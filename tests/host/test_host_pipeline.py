"""PosePipeline and run() against a fake accelerator, through the real packed bytes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from bnnpose.host.common import BnnposeError
from bnnpose.host.packing import input_spec, output_spec, to_normal, to_packed
from bnnpose.host.pipeline import STAGES, PosePipeline, run
from bnnpose.host.sources import PersonFinder
from bnnpose.host.preprocess import preprocess
from bnnpose.host.codec import HeatmapCodec, peak_confidence


def gaussian_heatmaps(peaks: np.ndarray) -> np.ndarray:
    """INT5 heatmaps [1, 32, 32, J] with one blob per joint at ``peaks`` [J, 2] (x, y)."""
    ys, xs = np.mgrid[0:32, 0:32]
    d2 = (xs[None] - peaks[:, :1, None]) ** 2 + (ys[None] - peaks[:, 1:, None]) ** 2
    heat = np.round(31 * np.exp(-d2 / 2.0)) - 16
    return heat.transpose(1, 2, 0)[None].astype(np.float32)


class FakeAccelerator:
    """Returns fixed heatmaps through the output DMA layout; remembers what it was sent."""

    def __init__(self, io_shape: dict, heat: np.ndarray) -> None:
        self.io_shape = io_shape
        self.host_cfg = None
        self.heat = heat
        self.seen: list[np.ndarray] = []

    def execute_packed(self, ibuf_packed: np.ndarray) -> np.ndarray:
        self.seen.append(ibuf_packed.copy())
        return to_packed(self.heat, output_spec(self.io_shape))


@pytest.fixture
def peaks() -> np.ndarray:
    return np.random.default_rng(6).uniform(4, 28, size=(16, 2)).round()


def test_predict_maps_heatmap_peaks_back_to_the_image(io_shape, host_dict, peaks):
    heat = gaussian_heatmaps(peaks)
    backend = FakeAccelerator(io_shape, heat)
    pipe = PosePipeline(backend, host_dict)
    image = np.random.default_rng(7).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    res = pipe.predict(image, box=(100, 20, 200, 220))

    assert res["keypoints"].shape == (16, 2) and res["scores"].shape == (16,)
    assert set(res["latency_ms"]) == set(STAGES)
    crop_img, crop = preprocess(image, (100, 20, 200, 220))
    np.testing.assert_array_equal(to_normal(backend.seen[0], input_spec(io_shape))[0], crop_img)
    # Exact plumbing: scale, bias and the NHWC -> [J, H, W] transpose, then the inverse crop.
    float_heat = (heat[0] * np.float32(0.0625)).transpose(2, 0, 1)
    kp_crop, _ = HeatmapCodec(input_size=(128, 128), heatmap_size=(32, 32)).decode(float_heat)
    np.testing.assert_allclose(res["keypoints"], crop.to_original(kp_crop), atol=1e-6)
    np.testing.assert_allclose(res["scores"], peak_confidence(float_heat), atol=1e-6)
    # And the geometry: heatmap cell centre x maps to crop pixel 4x + 1.5 (codec convention).
    np.testing.assert_allclose(crop.to_crop(res["keypoints"]), peaks * 4 + 1.5, atol=1.0)


class BatchAccelerator(FakeAccelerator):
    """Answers a batch of N with the first N of ``heats`` ([K, 32, 32, J] each)."""

    def execute_packed(self, ibuf_packed: np.ndarray) -> np.ndarray:
        self.seen.append(ibuf_packed.copy())
        return to_packed(self.heat[: ibuf_packed.shape[0]], output_spec(self.io_shape))


@pytest.mark.parametrize("mirror_answer", ["equivariant", "unflipped"])
def test_flip_test_sends_the_mirror_and_averages_it_back(io_shape, host_dict, peaks,
                                                          mirror_answer):
    from bnnpose.host.skeleton import flip_permutation_of

    heat = gaussian_heatmaps(peaks)[0]
    perm = flip_permutation_of(tuple(host_dict["joints"]))
    # "equivariant": the network answers the mirror with the mirrored pose, joints swapped.
    mirror = heat[:, ::-1][..., perm] if mirror_answer == "equivariant" else heat
    backend = BatchAccelerator(io_shape, np.stack([heat, mirror]))
    image = np.random.default_rng(8).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    res = PosePipeline(backend, host_dict, flip_test=True).predict(image, (100, 20, 200, 220))

    sent = to_normal(backend.seen[0], input_spec(io_shape))
    assert sent.shape[0] == 2  # one transfer for both
    np.testing.assert_array_equal(sent[1], sent[0][:, ::-1])
    scale = np.float32(0.0625)
    averaged = (heat * scale + (mirror * scale)[:, ::-1][..., perm]) / 2
    if mirror_answer == "equivariant":
        np.testing.assert_allclose(averaged, heat * scale, atol=1e-6)
    kp_crop, _ = HeatmapCodec(input_size=(128, 128), heatmap_size=(32, 32)).decode(
        np.ascontiguousarray(averaged.transpose(2, 0, 1)))
    _, crop = preprocess(image, (100, 20, 200, 220))
    np.testing.assert_allclose(res["keypoints"], crop.to_original(kp_crop), atol=1e-5)


def write_video(path, frames: int, size=(160, 120)) -> None:
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    rng = np.random.default_rng(3)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    writer.release()


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_results_for_images_folders_and_videos(io_shape, host_dict, peaks, tmp_path):
    backend = FakeAccelerator(io_shape, gaussian_heatmaps(peaks))
    backend.host_cfg = host_dict
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (h, w) in enumerate([(120, 160), (200, 100)]):
        cv2.imwrite(str(folder / f"img{i}.png"), np.full((h, w, 3), 60 * i, np.uint8))
    (folder / "notes.txt").write_text("not an image, skipped by the folder scan")
    write_video(tmp_path / "clip.mp4", 5)
    out = tmp_path / "out"
    summary = run([folder, tmp_path / "clip.mp4"], backend, out)

    records = read_jsonl(out / "keypoints.jsonl")
    assert [(r["source"], r["frame"]) for r in records] == [
        (str(folder / "img0.png"), 0), (str(folder / "img1.png"), 0),
        *[(str(tmp_path / "clip.mp4"), i) for i in range(5)]]
    kps = np.array(records[0]["keypoints"])
    assert kps.shape == (16, 3)  # x, y, score in the model's joint order
    assert set(records[0]["stages_ms"]) == set(STAGES)
    assert records[0]["latency_ms"] == pytest.approx(sum(records[0]["stages_ms"].values()),
                                                     abs=0.01)
    assert cv2.imread(str(out / "img1_pose.png")).shape == (200, 100, 3)
    cap = cv2.VideoCapture(str(out / "clip_pose.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 5
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["frames"] == 7 and not summary["interrupted"]
    assert summary["fps"]["accelerator"] > 0


def test_fixed_roi_is_what_the_accelerator_sees(io_shape, host_dict, peaks, tmp_path):
    backend = FakeAccelerator(io_shape, gaussian_heatmaps(peaks))
    image = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image[..., ::-1])
    run([tmp_path / "a.png"], backend, tmp_path / "out", host_cfg=host_dict,
        person=PersonFinder("roi", (40, 10, 100, 110)))
    crop_img, _ = preprocess(image, (40, 10, 100, 110))
    np.testing.assert_array_equal(to_normal(backend.seen[0], input_spec(io_shape))[0], crop_img)
    assert read_jsonl(tmp_path / "out" / "keypoints.jsonl")[0]["box"] == [40, 10, 100, 110]


def test_tracking_follows_the_previous_keypoints_and_restarts_per_input(
        io_shape, host_dict, peaks, tmp_path):
    backend = FakeAccelerator(io_shape, gaussian_heatmaps(peaks))
    write_video(tmp_path / "a.mp4", 3)
    write_video(tmp_path / "b.mp4", 2)
    run([tmp_path / "a.mp4", tmp_path / "b.mp4"], backend, tmp_path / "out",
        host_cfg=host_dict, person=PersonFinder("track", threshold=0.0))
    records = read_jsonl(tmp_path / "out" / "keypoints.jsonl")
    # Random noise holds no person for HOG: each input starts on the whole frame, then each
    # frame's box is the padded box of the previous frame's keypoints, shrinking at most 10%.
    assert records[0]["box"] is None and records[3]["box"] is None
    for prev, cur in [(records[0], records[1]), (records[1], records[2]), (records[3], records[4])]:
        kps = np.array(prev["keypoints"])[:, :2]
        lo, hi = kps.min(0), kps.max(0)
        box = np.array(cur["box"])
        np.testing.assert_allclose((box[:2] + box[2:]) / 2, (lo + hi) / 2, atol=0.01)
        size = box[2:] - box[:2]
        assert np.all(size >= hi - lo + 0.2 * (hi - lo).max() - 0.02)
        if prev["box"] is not None:
            assert np.all(size >= 0.9 * (np.array(prev["box"][2:]) - prev["box"][:2]) - 0.02)


class InterruptingAccelerator(FakeAccelerator):
    def execute_packed(self, ibuf_packed):
        if len(self.seen) == 3:
            raise KeyboardInterrupt
        return super().execute_packed(ibuf_packed)


def test_interrupt_keeps_complete_records_and_a_playable_video(io_shape, host_dict, peaks,
                                                               tmp_path):
    backend = InterruptingAccelerator(io_shape, gaussian_heatmaps(peaks))
    write_video(tmp_path / "clip.mp4", 8)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run([tmp_path / "clip.mp4"], backend, out, host_cfg=host_dict)
    records = read_jsonl(out / "keypoints.jsonl")  # every line parses: none half-written
    assert [r["frame"] for r in records] == [0, 1, 2]
    cap = cv2.VideoCapture(str(out / "clip_pose.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 3
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.mp4", "video not found"),
    (lambda d: (d / "bad.mp4").write_bytes(b"not a video") and d / "bad.mp4", "cannot open video"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "folder has no images"),
    (lambda d: (d / "bad.png").write_bytes(b"\x89PNG broken") and d / "bad.png",
     "cannot decode image"),
])
def test_bad_inputs_fail_before_any_frame(io_shape, host_dict, peaks, tmp_path, make, message):
    backend = FakeAccelerator(io_shape, gaussian_heatmaps(peaks))
    with pytest.raises(BnnposeError, match=message):
        run([make(tmp_path)], backend, tmp_path / "out", host_cfg=host_dict)
    assert backend.seen == []


def test_missing_camera_is_one_line(io_shape, host_dict, peaks, tmp_path):
    with pytest.raises(BnnposeError, match="camera 57 cannot be opened"):
        run(["57"], FakeAccelerator(io_shape, gaussian_heatmaps(peaks)), tmp_path / "out",
            host_cfg=host_dict)


def test_truncated_video_is_counted_not_silently_dropped(io_shape, host_dict, peaks, tmp_path,
                                                         capsys):
    write_video(tmp_path / "clip.avi", 30, size=(320, 240))
    data = (tmp_path / "clip.avi").read_bytes()
    # Cut the file in the middle of its frames: the container still announces 30.
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    backend = FakeAccelerator(io_shape, gaussian_heatmaps(peaks))
    summary = run([tmp_path / "cut.avi"], backend, tmp_path / "out", host_cfg=host_dict,
                  save_annotated=False)
    decoded = summary["frames"]
    assert 0 < decoded < 30
    assert summary["frames_not_decoded"] == {str(tmp_path / "cut.avi"): 30 - decoded}
    assert "could not be decoded" in capsys.readouterr().err
