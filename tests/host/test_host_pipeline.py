"""PosePipeline and run_images against a fake accelerator, through the real packed bytes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from bnnpose.host.packing import input_spec, output_spec, to_normal, to_packed
from bnnpose.host.pipeline import STAGES, PosePipeline, run_images
from bnnpose.host.preprocess import preprocess
from bnnpose.models.codec import HeatmapCodec


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
    kp_crop, scores = HeatmapCodec(input_size=(128, 128), heatmap_size=(32, 32)).decode(float_heat)
    np.testing.assert_allclose(res["keypoints"], crop.to_original(kp_crop), atol=1e-6)
    np.testing.assert_allclose(res["scores"], scores, atol=1e-6)
    # And the geometry: heatmap cell centre x maps to crop pixel 4x + 1.5 (codec convention).
    np.testing.assert_allclose(crop.to_crop(res["keypoints"]), peaks * 4 + 1.5, atol=1.0)


def test_run_images_writes_results(io_shape, host_dict, peaks, tmp_path):
    backend = FakeAccelerator(io_shape, gaussian_heatmaps(peaks))
    backend.host_cfg = host_dict
    paths = []
    for i, (h, w) in enumerate([(120, 160), (200, 100)]):
        paths.append(tmp_path / f"img{i}.png")
        cv2.imwrite(str(paths[-1]), np.full((h, w, 3), 60 * i, np.uint8))
    out = tmp_path / "out"
    summary = run_images(paths, backend, out)

    records = [json.loads(line) for line in (out / "keypoints.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == [str(p) for p in paths]
    assert np.array(records[0]["keypoints"]).shape == (16, 2) and len(records[0]["scores"]) == 16
    assert set(records[0]["latency_ms"]) == set(STAGES)
    assert cv2.imread(str(out / "img1_pose.png")).shape == (200, 100, 3)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["images"] == 2 and summary["fps"]["accelerator"] > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temp files left behind"
