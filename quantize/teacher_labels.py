"""Real-photo people labelled by a bundled teacher, written as COCO keypoints.

What it produces: ``<out>/images/frame_NNNN.png`` (the frames of a video picked by
``--frames``, named by their index in the video, so no two splits share a file name) and
``<out>/annotations.json`` in COCO keypoints format: one annotation per person kept, with the
17 COCO joints (``v=2`` labelled, ``v=0`` with ``x=y=0`` not), ``bbox`` = the person detector's
box clipped to the frame, ``area`` = that box's area, ``num_keypoints`` and ``iscrowd=0``. The
file's ``info`` names the split, the teacher and its version, the source video and its sha256,
the frame range, step and frames labelled, what was rejected and why, and that **these labels
measure agreement with the teacher, not accuracy**.

One video serves both evaluation and training (distilling the teacher into the real domain), so
it is cut into splits by frame range, one run per split: consecutive frames are near-copies, so
the ranges must lie far apart in time for the evaluation split to measure anything the training
split did not show.

How people are found and labelled: OpenCV's HOG people detector on the frame upscaled 2x
(people in the stock ``vtest.avi`` are often 60-120 px tall), overlapping boxes merged by
non-maximum suppression; each box is cut out with a margin, everything beyond the box greyed
out (so the teacher cannot pick a neighbour), upscaled so the person is about 256 px tall and
given to MediaPipe Pose (BlazePose *full*, the model bundled in the
``mediapipe==0.10.21`` wheel; nothing is downloaded). Its 33 landmarks go back to frame pixels
and become COCO's 17. A person is kept only if the teacher is confident on enough joints,
including both shoulders and both hips, and its joints lie in the detector's box; every
rejection is counted by reason and printed.

Rebuild with ``make realset`` (installs Debian's ``opencv-doc`` for ``vtest.avi`` if absent,
creates ``.venv-teacher`` from ``requirements-teacher.lock`` and writes
``out/realset/vtest-eval/`` from frames 0-389 and ``out/realset/vtest-train/`` from frames
420-794), or by hand::

    .venv-teacher/bin/python quantize/teacher_labels.py \\
        /usr/share/doc/opencv-doc/examples/data/vtest.avi \\
        --frames 0:390:10 --split-name eval --out out/realset/vtest-eval

Other footage: ``--detector hog --hog-upscale F`` for people of another size (below 1 for
people several hundred pixels tall), ``--detector whole-frame`` for one prominent person,
``--detector teacher`` for people in poses HOG misses (the teacher searches the frame itself,
greying out each person it finds before it looks again), and ``--licence``, ``--source-note``,
``--archive``/``--archive-member`` to record where the clip came from in the info (the
Makefile's sports2d splits use all of them).

Score a checkpoint on a split with ``bnnpose eval --data
coco:out/realset/vtest-eval/annotations.json --images out/realset/vtest-eval/images``.

This file runs in the teacher's own environment (MediaPipe needs numpy<2 and protobuf<5, the
project needs numpy 2), so it imports only numpy, OpenCV, bnnpose's ``host.common`` and
``quantize.footage`` (bnnpose is installed there without dependencies; neither module needs more
than numpy and OpenCV) and, when labelling for real, MediaPipe - never torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np

from bnnpose.host.common import atomic_dir, run_main, sha256_file, write_json
from bnnpose.quantize.footage import (
    LabelError, describe_frames, frames_arg, rejection_summary, sample_frames, video_frames,
)

#: COCO's 17 keypoint names, in COCO order.
COCO_JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
#: BlazePose landmark index of each COCO joint, in COCO order.
BLAZEPOSE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
#: COCO's person skeleton (1-based keypoint indices), as in person_keypoints_*.json.
COCO_SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
    [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]
TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")

NOTE = ("These labels measure agreement with the teacher, not accuracy: they are the "
        "teacher's own guesses, kept where it was confident, so a model scoring high here "
        "agrees with the teacher, which itself errs.")

MEDIAPIPE_VERSION = "0.10.21"
TEACHER_MODEL = "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"

MIN_VISIBILITY = 0.5  # BlazePose's own threshold for drawing a landmark
MIN_VISIBLE = 8  # of 17 COCO joints
#: A pose agrees with its box when this share of its labelled joints lies in the box grown by
#: AGREE_PAD of its size on each side: BlazePose finds the most prominent person in the crop,
#: which is sometimes a neighbour rather than the one the box was cut for.
AGREE_MIN = 0.8
AGREE_PAD = 0.1
#: Two poses are one person when their shared joints' median distance is under this share of
#: the box height (two boxes on one person both survive NMS when their sizes differ a lot).
SAME_PERSON = 0.15

HOG_UPSCALE = 2.0
HOG_WIN_STRIDE = (8, 8)
HOG_PADDING = (16, 16)
HOG_SCALE = 1.05
#: Boxes overlapping by more than this share of the smaller one are one detection. Measured on
#: the smaller box because HOG often fires on a person at two sizes, one box inside the other,
#: whose plain IoU stays low.
NMS_OVERLAP = 0.65

#: The HOG window is 64x128 with the person about 96 px tall, so a person fills about this
#: share of the box height.
PERSON_IN_BOX = 0.75
TEACHER_PERSON_PX = 256
#: The square crop given to the teacher: the box height times this, centred on the box.
CROP_SIDE = 1.5
#: The teacher sees only the box grown by this share of its size on each side, the rest grey:
#: BlazePose labels the most prominent person in view, often a neighbour in a crowd.
MASK_PAD = 0.1
GREY = (128, 128, 128)
#: ``--detector teacher``: at most this many searches a frame, and a found person's box is its
#: labelled joints' box grown by this share on each side (about 1.4 times the joints' height:
#: HOG's boxes are 1.45-1.55 on vtest and sports2d, pose2sim's joint boxes 1.2).
SEARCH_MAX_PEOPLE = 3
SEARCH_BOX_PAD = 0.2

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
#: A teacher: RGB crop -> ``[33, 3]`` (x, y in crop pixels, visibility), or None for no pose.
PoseFn = Callable[[np.ndarray], "np.ndarray | None"]
#: A detector: BGR frame -> (boxes ``[N, 4]`` x0 y0 x1 y1, scores ``[N]``).
DetectFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


def to_coco(landmarks: np.ndarray, width: int, height: int,
            min_visibility: float = MIN_VISIBILITY) -> np.ndarray:
    """BlazePose's 33 landmarks (x, y in frame pixels, visibility) -> COCO's ``[17, 3]``.

    A joint is labelled (``v=2``) when the teacher's visibility reaches ``min_visibility`` and
    it lies inside the frame; otherwise it is ``0, 0, 0``, COCO's "not labelled".
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (33, 3):
        raise ValueError(f"expected 33 BlazePose landmarks as [33, 3], got {lm.shape}")
    sel = lm[list(BLAZEPOSE_TO_COCO)]
    x, y, vis = sel[:, 0], sel[:, 1], sel[:, 2]
    ok = (vis >= min_visibility) & (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)
    out = np.zeros((17, 3))
    out[ok, 0], out[ok, 1], out[ok, 2] = x[ok], y[ok], 2
    return out


def box_overlap(a: Box, b: Box) -> float:
    """Intersection of two boxes over the smaller one's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / smaller) if smaller > 0 else 0.0


def nms(boxes: np.ndarray, scores: np.ndarray, overlap: float = NMS_OVERLAP) -> list[int]:
    """Indices of the boxes kept, best score first; a box is dropped when it overlaps a kept,
    better-scored box by more than ``overlap`` (see :func:`box_overlap`)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64).reshape(-1), kind="stable")
    kept: list[int] = []
    for i in order:
        if all(box_overlap(boxes[i], boxes[k]) <= overlap for k in kept):
            kept.append(int(i))
    return kept


def grow(box: Box, frac: float) -> Box:
    """``box`` grown by ``frac`` of its width and height on each side."""
    x0, y0, x1, y1 = box
    dx, dy = frac * (x1 - x0), frac * (y1 - y0)
    return (x0 - dx, y0 - dy, x1 + dx, y1 + dy)


def agrees(kp: np.ndarray, box: Box, pad: float = AGREE_PAD,
           min_inside: float = AGREE_MIN) -> bool:
    """Whether the labelled joints of a COCO ``[17, 3]`` pose mostly lie in the grown box."""
    vis = kp[:, 2] > 0
    if not vis.any():
        return False
    x0, y0, x1, y1 = grow(box, pad)
    x, y = kp[vis, 0], kp[vis, 1]
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    return float(inside.mean()) >= min_inside


def judge(kp: np.ndarray | None, box: Box) -> str | None:
    """Why a teacher's pose for ``box`` is not kept, or None to keep it."""
    if kp is None:
        return "teacher found no pose"
    vis = kp[:, 2] > 0
    if vis.sum() < MIN_VISIBLE:
        return f"fewer than {MIN_VISIBLE} confident joints"
    if not all(vis[COCO_JOINTS.index(j)] for j in TORSO):
        return "shoulders or hips not confident"
    if not agrees(kp, box):
        return "pose outside its box"
    return None


def same_person(a: np.ndarray, b: np.ndarray, scale: float,
                tol: float = SAME_PERSON) -> bool:
    """Whether two COCO poses are the same person: their shared labelled joints lie within
    ``tol * scale`` of each other (median)."""
    both = (a[:, 2] > 0) & (b[:, 2] > 0)
    if not both.any():
        return False
    d = np.hypot(a[both, 0] - b[both, 0], a[both, 1] - b[both, 1])
    return float(np.median(d)) < tol * scale


def clip_box(box: Box, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return (min(max(x0, 0.0), width), min(max(y0, 0.0), height),
            min(max(x1, 0.0), width), min(max(y1, 0.0), height))


class HogPeople:
    """OpenCV's default HOG people detector on the upscaled frame; boxes in frame pixels."""

    def __init__(self, upscale: float = HOG_UPSCALE):
        self.upscale = upscale
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img = frame
        if self.upscale != 1:
            img = cv2.resize(frame, None, fx=self.upscale, fy=self.upscale,
                             interpolation=cv2.INTER_LINEAR)
        rects, weights = self.hog.detectMultiScale(img, winStride=HOG_WIN_STRIDE,
                                                   padding=HOG_PADDING, scale=HOG_SCALE)
        if len(rects) == 0:
            return np.zeros((0, 4)), np.zeros(0)
        r = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / self.upscale
        boxes = np.stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]], axis=1)
        return boxes, np.asarray(weights, dtype=np.float64).reshape(-1)


class WholeFrame:
    """The whole frame as the one person box, for footage of one prominent person in poses an
    upright-person detector misses (HOG finds a dancer's bent body in few frames); the teacher's
    own detector then picks the most prominent person in view."""

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        return np.array([[0.0, 0.0, float(w), float(h)]]), np.ones(1)


class TeacherSearch:
    """The teacher finds the people itself: it looks at the whole frame, then again with each
    person it found greyed out, until it finds nobody or has looked ``max_people`` times. For
    footage whose people an upright-person detector misses (sports2d's gymnast in the air,
    upside down, crouching, against the sun, where HOG fires on a building's louvres instead).
    Each box is then labelled like a detector's, from its own crop, by the same teacher."""

    def __init__(self, pose: PoseFn | None = None, max_people: int = SEARCH_MAX_PEOPLE):
        self.pose = pose
        self.max_people = max_people

    def with_teacher(self, pose: PoseFn) -> TeacherSearch:
        return TeacherSearch(pose, self.max_people)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.pose is None:
            raise LabelError("--detector teacher needs the teacher (TeacherSearch.with_teacher)")
        h, w = frame.shape[:2]
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        boxes = []
        for _ in range(self.max_people):
            lm = self.pose(rgb)
            if lm is None:
                break
            kp = to_coco(np.asarray(lm, dtype=np.float64), w, h)
            if (kp[:, 2] > 0).sum() < 2:
                break
            box = joint_box(kp, w, h, SEARCH_BOX_PAD)
            boxes.append(box)
            x0, y0, x1, y1 = (int(round(v)) for v in clip_box(grow(box, MASK_PAD), w, h))
            rgb[y0:y1, x0:x1] = GREY
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.ones(len(boxes))


def joint_box(kp: np.ndarray, width: int, height: int, pad: float) -> Box:
    """The labelled joints' box grown by ``pad`` of its size on each side, clipped to the
    frame."""
    xy = kp[kp[:, 2] > 0, :2]
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    return clip_box(grow((float(x0), float(y0), float(x1), float(y1)), pad), width, height)


def detector_info(detect: DetectFn | None) -> dict:
    """What found the people, for a set's info."""
    if isinstance(detect, WholeFrame):
        return {"name": "the whole frame as one person box (the teacher picks the person)"}
    if isinstance(detect, TeacherSearch):
        return {"name": ("the teacher, searching the whole frame again with each person it "
                         "found greyed out"),
                "max_people": detect.max_people,
                "box": (f"the teacher's labelled joints' box grown by {SEARCH_BOX_PAD:g} of "
                        "its size on each side")}
    upscale = detect.upscale if isinstance(detect, HogPeople) else HOG_UPSCALE
    return {"name": "OpenCV HOG default people detector", "opencv": cv2.__version__,
            "upscale": upscale, "win_stride": list(HOG_WIN_STRIDE), "padding": list(HOG_PADDING),
            "scale": HOG_SCALE, "nms_overlap_of_smaller": NMS_OVERLAP}


def make_detector(name: str, hog_upscale: float = HOG_UPSCALE) -> DetectFn:
    if name == "whole-frame":
        return WholeFrame()
    if name == "teacher":
        return TeacherSearch()
    if name == "hog":
        if not hog_upscale > 0:
            raise LabelError(f"--hog-upscale must be > 0, got {hog_upscale}")
        return HogPeople(hog_upscale)
    raise LabelError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")


DETECTORS = ("hog", "whole-frame", "teacher")


def provenance(licence: str | None = None, source_note: str | None = None,
               archive: str | os.PathLike | None = None,
               archive_member: str | None = None) -> dict:
    """Where footage came from, for a set's info: its licence, a note on its origin and the
    archive it was unpacked from (name, sha256, the member's path in it)."""
    out: dict = {}
    if licence:
        out["licence"] = licence
    if source_note:
        out["source_note"] = source_note
    if archive is not None:
        archive = Path(archive)
        if not archive.is_file():
            raise LabelError(f"archive not found: {archive}")
        out["source_archive"] = archive.name
        out["source_archive_sha256"] = sha256_file(archive)
        if archive_member:
            out["source_archive_member"] = archive_member
    elif archive_member:
        raise LabelError("--archive-member goes with --archive")
    return out


def teacher_crop(frame_rgb: np.ndarray, box: Box, mask_pad: float | None = MASK_PAD
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The square crop the teacher sees for ``box`` and the affine ``[2, 3]`` matrix taking its
    pixels back to frame pixels. Out-of-frame parts are grey, and so is everything beyond the
    box grown by ``mask_pad`` (None: nothing is masked)."""
    x0, y0, x1, y1 = box
    bh = max(y1 - y0, 1.0)
    scale = TEACHER_PERSON_PX / (PERSON_IN_BOX * bh)
    side_frame = CROP_SIDE * bh
    side = int(round(side_frame * scale))
    ox, oy = (x0 + x1) / 2 - side_frame / 2, (y0 + y1) / 2 - side_frame / 2
    to_crop = np.array([[scale, 0, -ox * scale], [0, scale, -oy * scale]])
    crop = cv2.warpAffine(frame_rgb, to_crop, (side, side), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=GREY)
    if mask_pad is not None:
        g = grow(box, mask_pad)
        gx0, gy0 = (int(round(v)) for v in to_crop @ (g[0], g[1], 1.0))
        gx1, gy1 = (int(round(v)) for v in to_crop @ (g[2], g[3], 1.0))
        keep = np.zeros(crop.shape[:2], bool)
        keep[max(gy0, 0):max(gy1, 0), max(gx0, 0):max(gx1, 0)] = True
        crop[~keep] = GREY
    to_frame = np.array([[1 / scale, 0, ox], [0, 1 / scale, oy]])
    return crop, to_frame


class MediaPipePose:
    """MediaPipe's legacy Pose solution on single images, with only its bundled full model."""

    def __init__(self):
        # MediaPipe's C++ side logs every graph start to stderr otherwise.
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import mediapipe as mp
            from mediapipe.python.solutions import download_utils
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as e:
            raise LabelError(f"mediapipe is not importable here ({e}); run under "
                             ".venv-teacher/bin/python (make realset creates it)") from None
        self.version = mp.__version__
        self.model = Path(mp.__file__).resolve().parent.parent / TEACHER_MODEL
        if not self.model.is_file():
            raise LabelError(f"mediapipe {self.version} has no bundled {self.model.name}; "
                             f"install mediapipe=={MEDIAPIPE_VERSION} (requirements-teacher.lock)")

        def no_download(path):
            raise LabelError(f"mediapipe asked to download {path}; only the bundled "
                             f"{self.model.name} may be used")

        # Complexities 0 and 2 fetch their models from the network when absent; make sure that
        # can never happen, whatever a later edit passes.
        download_utils.download_oss_model = no_download
        self._pose = mp_pose.Pose(static_image_mode=True, model_complexity=1,
                                  enable_segmentation=False, min_detection_confidence=0.5)

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        res = self._pose.process(np.ascontiguousarray(rgb))
        if res.pose_landmarks is None:
            return None
        h, w = rgb.shape[:2]
        return np.array([(p.x * w, p.y * h, p.visibility) for p in res.pose_landmarks.landmark])

    def describe(self) -> dict:
        return {"name": "MediaPipe Pose (BlazePose full, 33 landmarks)",
                "package": f"mediapipe=={self.version}",
                "model": TEACHER_MODEL, "model_sha256": sha256_file(self.model),
                "settings": {"static_image_mode": True, "model_complexity": 1,
                             "min_detection_confidence": 0.5,
                             "min_landmark_visibility": MIN_VISIBILITY}}

    def close(self):
        self._pose.close()


def label_frame(frame_bgr: np.ndarray, detect: DetectFn, pose: PoseFn,
                rejected: Counter) -> list[tuple[Box, np.ndarray]]:
    """People kept in one frame: ``(box clipped to the frame, COCO [17, 3] keypoints)``."""
    h, w = frame_bgr.shape[:2]
    boxes, scores = detect(frame_bgr)
    keep = nms(boxes, scores)
    if len(keep) < len(boxes):
        rejected["duplicate detection (NMS)"] += len(boxes) - len(keep)
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    people: list[tuple[Box, np.ndarray]] = []
    for i in keep:
        box = tuple(float(v) for v in boxes[i])
        crop, to_frame = teacher_crop(rgb, box)
        lm = pose(crop)
        kp = None
        if lm is not None:
            lm = np.asarray(lm, dtype=np.float64)
            xy = lm[:, :2] @ to_frame[:, :2].T + to_frame[:, 2]
            kp = to_coco(np.column_stack([xy, lm[:, 2]]), w, h)
        why = judge(kp, box)
        if why is None and any(same_person(kp, k, box[3] - box[1]) for _, k in people):
            why = "same person as a kept box"
        if why is not None:
            rejected[why] += 1
            continue
        people.append((clip_box(box, w, h), kp))
    return people


def build_dataset(frames: Iterable[tuple[int, np.ndarray]], detect: DetectFn, pose: PoseFn,
                  out: Path, total: int, split: str) -> tuple[dict, Counter, list[int]]:
    """Label ``frames`` into ``out`` (``images/`` written here); returns the COCO dict without
    ``info``, the rejections by reason and the frame indices labelled. Frames with nobody
    kept are not written. Progress goes to stderr, one line a frame."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns, rejected = [], [], Counter()
    frame_indices = []
    t0 = time.monotonic()
    for index, frame in frames:
        frame_indices.append(index)
        people = label_frame(frame, detect, pose, rejected)
        _progress(split, index, len(frame_indices), total, len(anns) + len(people),
                  time.monotonic() - t0)
        if not people:
            continue
        h, w = frame.shape[:2]
        name = f"frame_{index:04d}.png"
        if not cv2.imwrite(str(out / "images" / name), frame):
            raise LabelError(f"cannot write {out / 'images' / name}")
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": name, "width": w, "height": h,
                       "frame_index": index})
        for box, kp in people:
            anns.append(coco_annotation(len(anns) + 1, image_id, box, kp))
    coco = {"images": images, "annotations": anns, "categories": coco_categories()}
    return coco, rejected, frame_indices


def coco_annotation(ann_id: int, image_id: int, box: Box, kp: np.ndarray) -> dict:
    """One person as a COCO keypoints annotation (``bbox`` and ``area`` from ``box``)."""
    x0, y0, x1, y1 = box
    kp = np.round(kp, 2)
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
        "area": round((x1 - x0) * (y1 - y0), 2),
        "keypoints": [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(kp.reshape(-1))],
        "num_keypoints": int((kp[:, 2] > 0).sum()),
    }


def coco_categories() -> list[dict]:
    return [{"id": 1, "name": "person", "supercategory": "person",
             "keypoints": list(COCO_JOINTS), "skeleton": COCO_SKELETON}]


def keep_rule() -> dict:
    return {"min_visible_joints": MIN_VISIBLE, "torso_visible": list(TORSO),
            "share_in_box": AGREE_MIN, "box_pad": AGREE_PAD, "same_person_within": SAME_PERSON}


def crop_info() -> dict:
    return {"person_px": TEACHER_PERSON_PX, "side_per_box_height": CROP_SIDE,
            "grey_beyond_box_pad": MASK_PAD}


def _progress(split: str, index: int, k: int, total: int, people: int,
              elapsed: float) -> None:
    # Not tqdm: the teacher's venv has none, and make's log wants whole lines.
    left = elapsed / k * max(total - k, 0)
    print(f"{split}: frame {index} ({k}/{total}), {people} people kept, "
          f"{elapsed:.0f} s, ~{left:.0f} s left", file=sys.stderr, flush=True)


def label_video(video: str | os.PathLike, out: str | os.PathLike, frames: slice, split: str,
                pose: PoseFn | None = None, detect: DetectFn | None = None,
                teacher_info: dict | None = None, source: dict | None = None,
                rebuild: str = "make realset") -> dict:
    """Label the people in ``video[frames]`` (frame indices, Python slice semantics) as the
    split named ``split`` and write ``out`` atomically; returns a summary.

    ``pose`` and ``detect`` default to MediaPipe and HOG; tests pass stand-ins (then
    ``teacher_info`` says what labelled the set). ``source`` (see :func:`provenance`) goes into
    the info as it is: licence, origin, archive.
    """
    video = Path(video)
    indices = video_frames(video, frames)
    teacher = None
    if pose is None:
        teacher = pose = MediaPipePose()
        teacher_info = teacher.describe()
    detect = detect or HogPeople()
    if isinstance(detect, TeacherSearch) and detect.pose is None:
        detect = detect.with_teacher(pose)
    final = Path(out).resolve()
    try:
        with atomic_dir(final) as tmp:
            coco, rejected, frame_indices = build_dataset(
                sample_frames(video, indices), detect, pose, tmp, len(indices), split)
            if not coco["annotations"]:
                why = rejection_summary(rejected) or "no detection at all"
                raise LabelError(f"no person kept in {len(frame_indices)} frames of {video} "
                                 f"(rejected: {why})")
            coco["info"] = {
                "description": (f"People in {video.name}, {describe_frames(indices)}, labelled "
                                f"by a pose teacher: the {split} split"),
                "split": split,
                "note": NOTE,
                "teacher": teacher_info or {"name": "unspecified"},
                "detector": detector_info(detect),
                "keep_rule": keep_rule(),
                "teacher_crop": crop_info(),
                "source_video": str(video), "source_video_sha256": sha256_file(video),
                **(source or {}),
                "frames": f"{indices.start}:{indices.stop}:{indices.step}",
                "first_frame": indices[0], "last_frame": indices[-1],
                "every_nth_frame": indices.step, "frame_indices": frame_indices,
                "rejected": dict(sorted(rejected.items())),
                "bbox": "the detector's box clipped to the frame (area: that box's area)",
                "rebuild": rebuild,
            }
            write_json(tmp / "annotations.json", coco, indent=1)
    finally:
        if teacher is not None:
            teacher.close()
    return {"split": split, "frames": len(frame_indices), "images": len(coco["images"]),
            "people": len(coco["annotations"]), "rejected": dict(rejected), "out": str(final)}


def add_source_args(ap: argparse.ArgumentParser) -> None:
    """The options that record where footage came from (see :func:`provenance`)."""
    ap.add_argument("--licence", help="the footage's licence, recorded in the set's info")
    ap.add_argument("--source-note", help="where the footage comes from and what it may be used "
                                          "for, recorded in the set's info")
    ap.add_argument("--archive", help="the downloaded archive the footage was unpacked from "
                                      "(its name and sha256 go into the info)")
    ap.add_argument("--archive-member", help="the footage's path inside --archive")


def main(argv: list[str] | None = None) -> int:
    """The command line: exit code 0, or 2 after one error line for bad input."""
    return run_main(_main, argv, "teacher_labels.py")


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", help="video file, e.g. vtest.avi from Debian's opencv-doc")
    ap.add_argument("--out", required=True, help="output folder (images/ + annotations.json)")
    ap.add_argument("--frames", type=frames_arg, required=True, metavar="START:STOP:STEP",
                    help="frame indices to label, as a Python slice (e.g. 0:390:10); keep "
                         "splits of one video far apart, neighbouring frames are near-copies")
    ap.add_argument("--split-name", required=True,
                    help="which split this is (e.g. eval, train), recorded in the set's info")
    ap.add_argument("--detector", choices=DETECTORS, default="hog",
                    help="how people are found: HOG (default), the whole frame as one box, or "
                         "the teacher searching the frame itself")
    ap.add_argument("--hog-upscale", type=float, default=HOG_UPSCALE,
                    help=f"HOG runs on the frame scaled by this (default {HOG_UPSCALE}, for "
                         "people 60-120 px tall; below 1 for large people)")
    add_source_args(ap)
    args = ap.parse_args(argv)
    detect = make_detector(args.detector, args.hog_upscale)
    source = provenance(args.licence, args.source_note, args.archive, args.archive_member)
    s = label_video(args.video, args.out, args.frames, args.split_name, detect=detect,
                    source=source)
    print(f"{s['split']}: {s['people']} people kept in {s['images']} of {s['frames']} frames "
          f"-> {s['out']}")
    print(f"rejected: {rejection_summary(Counter(s['rejected'])) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
