"""Where frames come from (image files, folders, videos, cameras) and where the person is.

All inputs are opened and checked before the first frame is processed, so a typo in the last
argument fails in one line at once instead of after minutes of video.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bnnpose.host.common import BnnposeError
from bnnpose.host.preprocess import check_image_file, load_image, quiet_opencv

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass
class Source:
    """One input: a still image, a video file or a camera."""

    name: str  #: as the user gave it (a camera's index as text)
    kind: str  #: "image", "video" or "camera"
    stem: str  #: base name of its annotated output
    fps: float = 0.0  #: frame rate of a video or camera (0 for images)
    frame_count: int = 0  #: frames a video says it has (0: unknown or not a video)
    _capture: cv2.VideoCapture | None = None

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame index, RGB uint8 image)`` until the input ends.

        A video that stops decoding before its announced frame count ends there; the caller
        compares :attr:`frames_read` with :attr:`frame_count` and reports the difference.
        """
        self.frames_read = 0
        if self.kind == "image":
            self.frames_read = 1
            yield 0, load_image(self.name)
            return
        cap = self._capture
        try:
            while True:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    return
                yield self.frames_read, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                self.frames_read += 1
        finally:
            self.close()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def open_inputs(inputs: Sequence[str | os.PathLike]) -> list[Source]:
    """Expand folders, open every video and camera, check every image file.

    ``INPUT`` may be an image file, a folder (its images in name order), a video file, or a
    camera index such as ``0``.
    """
    if not inputs:
        raise BnnposeError("no inputs given")
    sources: list[Source] = []
    try:
        for item in inputs:
            text = str(item)
            path = Path(text)
            if text.isdigit() and not path.exists():
                sources.append(_open_camera(int(text)))
            elif path.is_dir():
                images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if not images:
                    raise BnnposeError(f"folder has no images ({', '.join(IMAGE_SUFFIXES)}): "
                                       f"{path}")
                sources += [Source(str(p), "image", p.stem) for p in images]
            elif path.suffix.lower() in VIDEO_SUFFIXES:
                sources.append(_open_video(path))
            else:
                check_image_file(path)
                sources.append(Source(text, "image", path.stem))
    except BaseException:
        for s in sources:
            s.close()
        raise
    stems = [s.stem for s in sources]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        for s in sources:
            s.close()
        raise BnnposeError(f"several inputs share the name {dupes[0]!r}; their annotated "
                           "outputs would overwrite each other")
    return sources


def _quiet_capture(target: str | int) -> cv2.VideoCapture:
    # OpenCV and its FFmpeg log their own lines for unopenable inputs; ours is one line.
    # (FFmpeg's level is read from the environment when a capture opens; -8 is "quiet".)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    with quiet_opencv():
        return cv2.VideoCapture(target)


def _open_video(path: Path) -> Source:
    if not path.is_file():
        raise BnnposeError(f"video not found: {path}")
    cap = _quiet_capture(str(path))
    if not cap.isOpened():
        cap.release()
        raise BnnposeError(f"cannot open video {path} (not a video OpenCV can decode)")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return Source(str(path), "video", path.stem, fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
                  frame_count=max(count, 0), _capture=cap)


def _open_camera(index: int) -> Source:
    cap = _quiet_capture(index)
    if not cap.isOpened():
        cap.release()
        raise BnnposeError(f"camera {index} cannot be opened (no such device, or it is busy)")
    return Source(str(index), "camera", f"camera{index}",
                  fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0), _capture=cap)


# --------------------------------------------------------------------------- person region

PERSON_MODES = ("full", "roi", "hog", "track")


class PersonFinder:
    """The box to crop in each frame.

    ``full``: the whole frame; ``roi``: one fixed box; ``hog``: OpenCV's HOG people detector
    (its most confident detection, else the whole frame); ``track``: the box of the previous
    frame's confident keypoints, falling back to HOG when too few joints were confident.
    """

    #: HOG runs on the frame scaled to this longest side (``--hog-side``): its cost grows with
    #: the area, and the person in its smallest window (64x128) is about 96 px tall at that
    #: scale, so a 1080p street scene needs 1920 for its far pedestrians
    #: (bench/results/person_finder.json).
    HOG_SIDE = 640
    HOG_STRIDE, HOG_PADDING, HOG_SCALE = (8, 8), (8, 8), 1.05
    #: Tracking needs this many confident joints to trust the previous frame's box.
    TRACK_MIN_JOINTS = 4
    #: The tracked box is the confident joints' box grown by this share of its longer side
    #: on every side (as training crops are), and shrinks by at most TRACK_MAX_SHRINK per
    #: frame: predicted joints sit inside the body, so their tight box would close in on
    #: itself frame after frame.
    TRACK_PAD = 0.1
    TRACK_MAX_SHRINK = 0.9

    def __init__(self, mode: str = "full", roi: Sequence[float] | None = None,
                 threshold: float = 0.3, hog_side: int = HOG_SIDE) -> None:
        if mode not in PERSON_MODES:
            raise BnnposeError(f"unknown person mode {mode!r}; known: {', '.join(PERSON_MODES)}")
        if not 128 <= hog_side <= 8192:
            raise BnnposeError(f"--hog-side must be 128-8192 px, got {hog_side}")
        if (mode == "roi") != (roi is not None):
            raise BnnposeError("--roi X0,Y0,X1,Y1 goes with person mode 'roi' (and only it)")
        if roi is not None:
            x0, y0, x1, y1 = (float(v) for v in roi)
            if not (x1 > x0 and y1 > y0):
                raise BnnposeError(f"invalid --roi {tuple(roi)}: need x0 < x1 and y0 < y1")
        self.mode, self.roi, self.threshold, self.hog_side = mode, roi, threshold, hog_side
        self._last: tuple[float, float, float, float] | None = None
        self._hog: cv2.HOGDescriptor | None = None
        self.depends_on_previous = mode == "track"

    def box(self, image: np.ndarray) -> tuple[float, float, float, float] | None:
        """(x0, y0, x1, y1) in image pixels, or ``None`` for the whole frame."""
        if self.mode == "roi":
            return tuple(float(v) for v in self.roi)  # type: ignore[return-value]
        if self.mode == "track" and self._last is not None:
            return self._last
        if self.mode in ("hog", "track"):
            return self._detect(image)
        return None

    def reset(self) -> None:
        """Forget the tracked box (a new input starts)."""
        self._last = None

    def update(self, keypoints: np.ndarray, scores: np.ndarray) -> None:
        """Feed one frame's result (used by ``track``)."""
        if self.mode != "track":
            return
        good = keypoints[scores >= self.threshold]
        if len(good) < self.TRACK_MIN_JOINTS:
            self._last = None  # lost: detect again on the next frame
            return
        (x0, y0), (x1, y1) = good.min(axis=0), good.max(axis=0)
        pad = self.TRACK_PAD * max(x1 - x0, y1 - y0, 1.0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        hw, hh = (x1 - x0) / 2 + pad, (y1 - y0) / 2 + pad
        if self._last is not None:
            lx0, ly0, lx1, ly1 = self._last
            hw = max(hw, self.TRACK_MAX_SHRINK * (lx1 - lx0) / 2)
            hh = max(hh, self.TRACK_MAX_SHRINK * (ly1 - ly0) / 2)
        self._last = (float(cx - hw), float(cy - hh), float(cx + hw), float(cy + hh))

    def detections(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every box HOG finds in ``image``: ``[N, 4]`` (x0, y0, x1, y1) in image pixels and
        their ``[N]`` scores."""
        if self._hog is None:
            self._hog = cv2.HOGDescriptor()
            self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        f = self.hog_scale(image.shape)
        h, w = image.shape[:2]
        small = image if f == 1 else cv2.resize(
            image, (round(w * f), round(h * f)),
            interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        rects, weights = self._hog.detectMultiScale(small, winStride=self.HOG_STRIDE,
                                                    padding=self.HOG_PADDING, scale=self.HOG_SCALE)
        if len(rects) == 0:
            return np.zeros((0, 4)), np.zeros(0)
        r = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / f
        boxes = np.column_stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]])
        return boxes, np.asarray(weights, dtype=np.float64).reshape(-1)

    def hog_scale(self, shape: Sequence[int]) -> float:
        """The factor HOG's input is scaled by for a frame of ``shape`` (h, w, ...)."""
        return self.hog_side / max(shape[0], shape[1])

    def _detect(self, image: np.ndarray) -> tuple[float, float, float, float] | None:
        boxes, scores = self.detections(image)
        if len(boxes) == 0:
            return None
        x0, y0, x1, y1 = (float(v) for v in boxes[int(np.argmax(scores))])
        return (x0, y0, x1, y1)
