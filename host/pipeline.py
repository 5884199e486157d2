"""Frames in, keypoints out: crop, pack, run the accelerator, unpack, decode, map back."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from bnnpose.host.common import BnnposeError, versions, write_json
from bnnpose.host.backends import Backend, HostConfig
from bnnpose.host.draw import draw_pose, save_png
from bnnpose.host.packing import input_spec, output_spec, to_normal, to_packed
from bnnpose.host.preprocess import DEFAULT_MARGIN, PAD_GREY, Crop, preprocess
from bnnpose.host.sources import PersonFinder, Source, open_inputs
from bnnpose.host.codec import HeatmapCodec, peak_confidence
from bnnpose.host.skeleton import flip_permutation_of

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
        flip_test: bool = False,
    ) -> None:
        """Check that the backend's tensors match ``host_cfg`` (host.json) and set up decoding.

        With ``flip_test`` every crop goes to the accelerator together with its mirror image (a
        batch of two, one DMA transfer) and the two heatmaps are averaged, the mirror's flipped
        back with left and right joints swapped: the seeds' papers' flip-test, at half the
        accelerator frame rate.
        """
        self.backend = backend
        self.cfg = host_cfg if isinstance(host_cfg, HostConfig) else HostConfig.from_dict(host_cfg)
        self.margin = margin
        self.pad_value = tuple(pad_value)
        self.flip_test = flip_test
        self._flip_perm = flip_permutation_of(tuple(self.cfg.joints))
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
            ``scores``: ``[J]`` float64, :func:`~bnnpose.host.codec.peak_confidence`;
            ``latency_ms``: {stage: milliseconds} for every stage in :data:`STAGES`.
        """
        return self.finish(*self.prepare(image_rgb, box))

    def prepare(self, image_rgb: np.ndarray, box: Sequence[float] | None = None
                ) -> tuple[np.ndarray, Crop, dict[str, float]]:
        """Crop and pack one image: ``(packed input, crop, {stage: ms})``.

        Separate from :meth:`finish` so the next frame can be prepared while the accelerator
        runs the current one.
        """
        t0 = time.perf_counter()
        crop_img, crop = preprocess(image_rgb, box, self.cfg.input_size, self.margin,
                                    self.pad_value)
        t1 = time.perf_counter()
        batch = np.stack([crop_img, crop_img[:, ::-1]]) if self.flip_test else crop_img[None]
        ibuf = to_packed(batch, self._ispec)
        t2 = time.perf_counter()
        return ibuf, crop, {"preprocess": (t1 - t0) * 1e3, "pack": (t2 - t1) * 1e3}

    def finish(self, ibuf: np.ndarray, crop: Crop, prepared_ms: dict[str, float]
               ) -> dict[str, Any]:
        """Run the accelerator on a prepared input and decode: the result of :meth:`predict`."""
        t = [time.perf_counter()]
        obuf = self.backend.execute_packed(ibuf)
        t.append(time.perf_counter())
        # [N, H, W, J] integers -> [J, H, W] float heatmaps; scale/bias broadcast over channels.
        heat = to_normal(obuf, self._ospec) * self.cfg.output_scale + self.cfg.output_bias
        if self.flip_test:
            # A crop column x is the mirror's W-1-x and a heatmap column c its w-1-c, so
            # reversing the heatmap's columns is exact.
            heat = (heat[0] + heat[1][:, ::-1, self._flip_perm]) / 2
        else:
            heat = heat[0]
        heat = np.ascontiguousarray(heat.transpose(2, 0, 1))
        t.append(time.perf_counter())
        kp_crop, _ = self.codec.decode(heat)
        scores = peak_confidence(heat)
        keypoints = crop.to_original(kp_crop)
        t.append(time.perf_counter())
        later = ("accelerator", "unpack", "decode")
        return {
            "keypoints": keypoints,
            "scores": np.asarray(scores, dtype=np.float64),
            "latency_ms": {**prepared_ms,
                           **{s: (t[i + 1] - t[i]) * 1e3 for i, s in enumerate(later)}},
        }


class _Prepared(NamedTuple):
    source: Source
    frame: int
    image: np.ndarray
    box: tuple[float, float, float, float] | None
    job: tuple[np.ndarray, Crop, dict[str, float]] | None  # prepare(); None: not yet


def run(
    inputs: Sequence[str | os.PathLike] | Sequence[Source],
    backend: Backend,
    out_dir: str | os.PathLike,
    host_cfg: HostConfig | Mapping[str, Any] | None = None,
    person: PersonFinder | None = None,
    threshold: float = 0.3,
    save_annotated: bool = True,
    flip_test: bool = False,
) -> dict[str, Any]:
    """Estimate poses in images, folders, videos and cameras; write the results to ``out_dir``.

    Frames are decoded (and, unless the person box depends on the previous frame, cropped and
    packed) in a background thread while the backend works on the frame before.

    Writes ``keypoints.jsonl``: one line per image or frame, flushed as it is written, with
    ``source``, ``frame``, ``keypoints`` ([x, y, score] in source pixels, the model's joint
    order), ``box``, ``latency_ms`` (preprocess to decoded keypoints) and ``stages_ms``;
    ``<stem>_pose.png`` per image and ``<stem>_pose.mp4`` per video or camera; and
    ``summary.json``. Interrupted (Ctrl-C), every line written so far stays and each video is
    closed so it plays; the summary then says ``"interrupted": true`` and KeyboardInterrupt
    propagates.

    Args:
        inputs: paths and camera indices, or the sources :func:`open_inputs` already opened.
        host_cfg: host.json contents; defaults to the backend's own ``host_cfg``.
        person: how to find the person in each frame (default: the whole frame).
        threshold: joints scoring below this are drawn faded (and do not steer tracking).
        flip_test: average each crop's heatmaps with its mirror's (see :class:`PosePipeline`).

    Returns:
        The summary dict written to ``summary.json``.
    """
    opened = bool(inputs) and all(isinstance(i, Source) for i in inputs)
    sources = list(inputs) if opened else open_inputs(inputs)
    if host_cfg is None:
        host_cfg = getattr(backend, "host_cfg", None)
        if host_cfg is None:
            for src in sources:
                src.close()
            raise BnnposeError(f"{type(backend).__name__} has no host_cfg; pass host.json's")
    pipe = PosePipeline(backend, host_cfg, flip_test=flip_test)
    person = person or PersonFinder("full", threshold=threshold)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    latencies: list[dict[str, float]] = []
    writers: dict[str, cv2.VideoWriter] = {}
    unread: dict[str, int] = {}
    interrupted = False
    frames = _prefetch(sources, pipe, person)
    bar = tqdm(desc="pose", unit="frame", disable=None)
    try:
        with open(out_dir / "keypoints.jsonl", "w") as jsonl:
            for item in frames:
                res = pipe.finish(*(item.job or pipe.prepare(item.image, item.box)))
                person.update(res["keypoints"], res["scores"])
                latencies.append(res["latency_ms"])
                kps = np.column_stack([res["keypoints"], res["scores"]])
                jsonl.write(json.dumps({
                    "source": item.source.name, "frame": item.frame,
                    "keypoints": np.round(kps, 3).tolist(),
                    "box": None if item.box is None else [round(v, 2) for v in item.box],
                    "latency_ms": round(sum(res["latency_ms"].values()), 3),
                    "stages_ms": {k: round(v, 3) for k, v in res["latency_ms"].items()},
                }) + "\n")
                jsonl.flush()
                if save_annotated:
                    _save_annotated(item, res, pipe, threshold, out_dir, writers)
                bar.update()
                bar.set_postfix(accel_fps=f"{1e3 / max(res['latency_ms']['accelerator'], 1e-6):.0f}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        frames.close()
        for w in writers.values():
            w.release()
        for src in sources:
            if src.kind == "video" and src.frame_count and src.frames_read < src.frame_count \
                    and not interrupted:
                unread[src.name] = src.frame_count - src.frames_read
            src.close()
    for name, n in unread.items():
        tqdm.write(f"warning: {name}: {n} of its announced frames could not be decoded; "
                   "stopped there", file=sys.stderr)

    summary = _summary(latencies, backend, pipe, sources, interrupted, unread)
    write_json(out_dir / "summary.json", summary)
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _prefetch(sources: list[Source], pipe: PosePipeline, person: PersonFinder
              ) -> Iterator[_Prepared]:
    """Frames of all sources, decoded (and cropped/packed when possible) one ahead."""
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for src in sources:
                for index, image in src.frames():
                    if stop.is_set():
                        return
                    if person.depends_on_previous:
                        item = _Prepared(src, index, image, None, None)
                    else:
                        box = person.box(image)
                        item = _Prepared(src, index, image, box, pipe.prepare(image, box))
                    q.put(item)
        except BaseException as e:  # handed to the consumer, which re-raises it in order
            q.put(e)
        finally:
            q.put(done)

    thread = threading.Thread(target=produce, name="bnnpose-decode", daemon=True)
    thread.start()
    current: Source | None = None
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            if person.depends_on_previous:
                if item.source is not current:  # a person tracked in one video is not in the next
                    person.reset()
                    current = item.source
                item = item._replace(box=person.box(item.image))
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                q.get_nowait()
            thread.join(timeout=0.05)


def _save_annotated(item: _Prepared, res: dict[str, Any], pipe: PosePipeline,
                    threshold: float, out_dir: Path, writers: dict[str, cv2.VideoWriter]) -> None:
    drawn = draw_pose(item.image, res["keypoints"], res["scores"], threshold,
                      joints=pipe.cfg.joints)
    if item.source.kind == "image":
        save_png(out_dir / f"{item.source.stem}_pose.png", drawn)
        return
    writer = writers.get(item.source.name)
    if writer is None:
        h, w = drawn.shape[:2]
        path = out_dir / f"{item.source.stem}_pose.mp4"
        fps = item.source.fps if 1 <= item.source.fps <= 240 else 30.0
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise BnnposeError(f"cannot write video {path} (OpenCV has no mp4v encoder here)")
        writers[item.source.name] = writer
    writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))


def _summary(latencies: list[dict[str, float]], backend: Backend, pipe: PosePipeline,
             sources: list[Source], interrupted: bool, unread: dict[str, int]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "frames": len(latencies),
        "sources": [{"name": s.name, "kind": s.kind, "frames": getattr(s, "frames_read", 0)}
                    for s in sources],
        "backend": type(backend).__name__,
        "joints": list(pipe.cfg.joints),
        "flip_test": pipe.flip_test,
        "interrupted": interrupted,
        "frames_not_decoded": unread,
        "versions": versions(),
    }
    if latencies:
        mean = {s: float(np.mean([lat[s] for lat in latencies])) for s in STAGES}
        total = float(np.mean([sum(lat.values()) for lat in latencies]))
        summary["mean_latency_ms"] = {**mean, "end_to_end": total}
        # End to end = preprocess through decode of one frame; file I/O and drawing excluded.
        # max() keeps a (fake) instant backend from dividing by zero.
        summary["fps"] = {"accelerator": 1e3 / max(mean["accelerator"], 1e-6),
                          "end_to_end": 1e3 / max(total, 1e-6)}
    return summary
