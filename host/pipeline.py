"""Image in, keypoints out: crop, pack, run the accelerator, unpack, decode, map back."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bnnpose.host.artifacts import BnnposeError, versions, write_json
from bnnpose.host.backends import Backend, HostConfig
from bnnpose.host.draw import atomic_writer, draw_pose, save_png
from bnnpose.host.packing import input_spec, output_spec, to_normal, to_packed
from bnnpose.host.preprocess import (
    DEFAULT_MARGIN, PAD_GREY, check_image_file, load_image, preprocess,
)
from bnnpose.models.codec import HeatmapCodec

#: Timed stages of :meth:`PosePipeline.predict`, in execution order.
STAGES = ("preprocess", "pack", "accelerator", "unpack", "decode")


class PosePipeline:
    """Single-person pose estimation around one accelerator backend."""

    def __init__(
        self,
        backend: Backend,
        host_cfg: HostConfig | Mapping[str, Any],
        margin: float = DEFAULT_MARGIN,
        pad_value: Sequence[int] = PAD_GREY,
    ) -> None:
        """Check that the backend's tensors match ``host_cfg`` (host.json) and set up decoding."""
        self.backend = backend
        self.cfg = host_cfg if isinstance(host_cfg, HostConfig) else HostConfig.from_dict(host_cfg)
        self.margin = margin
        self.pad_value = tuple(pad_value)
        self._ispec = input_spec(backend.io_shape)
        self._ospec = output_spec(backend.io_shape)
        self.cfg.check_io(self._ispec, self._ospec, source="backend")
        self.codec = HeatmapCodec(input_size=self.cfg.input_size,
                                  heatmap_size=self.cfg.heatmap_size)

    def predict(self, image_rgb: np.ndarray, box: Sequence[float] | None = None) -> dict[str, Any]:
        """Estimate the pose of the person in ``box`` (default: the whole image).

        Args:
            image_rgb: ``[H, W, 3]`` uint8 RGB.
            box: (x0, y0, x1, y1) person box in image pixels.

        Returns:
            ``keypoints``: ``[J, 2]`` float64 (x, y) in original image pixels;
            ``scores``: ``[J]`` float64;
            ``latency_ms``: {stage: milliseconds} for every stage in :data:`STAGES`.
        """
        t = [time.perf_counter()]
        crop_img, crop = preprocess(image_rgb, box, self.cfg.input_size, self.margin,
                                    self.pad_value)
        t.append(time.perf_counter())
        ibuf = to_packed(crop_img[None], self._ispec)
        t.append(time.perf_counter())
        obuf = self.backend.execute_packed(ibuf)
        t.append(time.perf_counter())
        # [1, H, W, J] integers -> [J, H, W] float heatmaps; scale/bias broadcast over channels.
        heat = to_normal(obuf, self._ospec)[0] * self.cfg.output_scale + self.cfg.output_bias
        heat = np.ascontiguousarray(heat.transpose(2, 0, 1))
        t.append(time.perf_counter())
        kp_crop, scores = self.codec.decode(heat)
        keypoints = crop.to_original(kp_crop)
        t.append(time.perf_counter())
        return {
            "keypoints": keypoints,
            "scores": np.asarray(scores, dtype=np.float64),
            "latency_ms": {s: (t[i + 1] - t[i]) * 1e3 for i, s in enumerate(STAGES)},
        }


def run_images(
    paths: Iterable[str | os.PathLike],
    backend: Backend,
    out_dir: str | os.PathLike,
    host_cfg: HostConfig | Mapping[str, Any] | None = None,
    threshold: float = 0.3,
) -> dict[str, Any]:
    """Estimate poses for image files and write the results to ``out_dir``.

    Writes, each file atomically: ``keypoints.jsonl`` (one object per image: ``file``,
    ``keypoints`` [J][2], ``scores`` [J], ``latency_ms`` {stage: ms}), ``<stem>_pose.png``
    per image, and ``summary.json`` with mean stage latencies and FPS.

    Args:
        host_cfg: host.json contents; defaults to the backend's own ``host_cfg``
            (SimBackend and PynqBackend carry their overlay's).
        threshold: score under which joints are drawn faded.

    Returns:
        The summary dict written to ``summary.json``.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise BnnposeError("no images given")
    for p in paths:
        # All up front: a typo in the last path should not cost a run over all the others.
        check_image_file(p)
    # PNGs are named by stem, so two inputs with one stem would silently overwrite each other.
    stems = [p.stem for p in paths]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise BnnposeError(f"several images share the name stem {dupes[0]!r}; outputs would clash")
    if host_cfg is None:
        host_cfg = getattr(backend, "host_cfg", None)
        if host_cfg is None:
            raise BnnposeError(f"{type(backend).__name__} has no host_cfg; pass host.json's")
    pipe = PosePipeline(backend, host_cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    latencies: list[dict[str, float]] = []
    # Streamed into a temporary file that replaces keypoints.jsonl only once every image is
    # done: a failed run leaves the previous results intact rather than a truncated file.
    with atomic_writer(out_dir / "keypoints.jsonl", "w") as jsonl:
        for p in tqdm(paths, desc="pose", unit="img", disable=None):
            image = load_image(p)
            res = pipe.predict(image)
            latencies.append(res["latency_ms"])
            jsonl.write(json.dumps({
                "file": str(p),
                "keypoints": np.round(res["keypoints"], 2).tolist(),
                "scores": np.round(res["scores"], 4).tolist(),
                "latency_ms": {k: round(v, 3) for k, v in res["latency_ms"].items()},
            }) + "\n")
            save_png(out_dir / f"{p.stem}_pose.png",
                     draw_pose(image, res["keypoints"], res["scores"], threshold,
                               joints=pipe.cfg.joints))

    mean = {s: float(np.mean([lat[s] for lat in latencies])) for s in STAGES}
    total = float(np.mean([sum(lat.values()) for lat in latencies]))
    summary = {
        "images": len(paths),
        "backend": type(backend).__name__,
        "joints": list(pipe.cfg.joints),
        "mean_latency_ms": {**mean, "end_to_end": total},
        # End to end = preprocess through decode of one image; file I/O and drawing excluded.
        # max() keeps a (fake) instant backend from dividing by zero.
        "fps": {"accelerator": 1e3 / max(mean["accelerator"], 1e-6),
                "end_to_end": 1e3 / max(total, 1e-6)},
        "versions": versions(),
    }
    write_json(out_dir / "summary.json", summary)
    return summary
