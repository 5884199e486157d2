"""One person filmed by synchronised, calibrated cameras, labelled by the teacher in every view
and kept only where the views agree in 3-D, written as COCO keypoints.

Every view is labelled as ``teacher_labels.py`` labels a video (same teacher, same keep rules;
``--detector whole-frame`` by default, since HOG misses most of a gymnast's poses); then, frame
by frame, the views' joints are triangulated with the calibration and each view's label is
measured against where the other views put the joint (``triangulate.py``):

* a joint whose label lands more than ``--joint-limit`` pixels from the consensus point is
  unlabelled (``v=0``): the teacher was wrong about it in this view;
* a view whose median error over its checked joints exceeds ``--max-median-error`` is rejected
  whole: the teacher found another person, or got the pose wrong;
* so is a view whose person, after that, no longer passes the keep rules (enough confident
  joints, both shoulders and hips), and a person seen in fewer than two views (nothing to check
  it against).

Every rejection is counted by reason in the info, the geometry's under ``rejected`` with the
others and, separately, under ``geometry``.

What it writes: ``<out>/images/<view>_frame_NNNN.png`` (the view's file stem and the frame
index) and ``<out>/annotations.json``, as ``teacher_labels.py`` does; each image also records its
``view`` and ``frame_index``, each annotation its ``reprojection_median_px``. Rebuild with
``make realset``, or by hand::

    .venv-teacher/bin/python quantize/multiview_labels.py out/footage/pose2sim/cam0?.mp4 \\
        --calibration out/footage/pose2sim/Calib.qca.txt \\
        --frames 0:40:2 --split-name eval --out out/realset/pose2sim-eval

Like ``teacher_labels.py`` it runs in the teacher's venv and imports numpy, OpenCV, bnnpose's
numpy-only modules and MediaPipe.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from bnnpose.host.common import atomic_dir, run_main, sha256_file, write_json
from bnnpose.quantize import teacher_labels as tl
from bnnpose.quantize.footage import (
    LabelError, describe_frames, frames_arg, rejection_summary, sample_frames, video_frames,
)
from bnnpose.quantize.triangulate import Camera, check_views, read_qca

#: A view is rejected when its median reprojection error over the checked joints exceeds this
#: many pixels. Measured on the Pose2Sim demo take (labelled joints spanning 600-800 px in
#: every view): where all views show the right pose the medians are 5-25 px (the teacher's
#: jitter, and hips and shoulders it places at slightly different depths from different
#: sides), while a view with a mirrored body or a wrong limb set lands 100-600 px off and
#: partly wrong poses fall in between. 30 px, about 4% of the body, keeps the first group with
#: a margin and rejects the rest; the calibration's own residual is under 1 px.
MAX_MEDIAN_ERROR = 30.0
#: One joint further than this from the consensus is unlabelled in that view (about 8% of the
#: body: a wrist on the wrong side, a left/right swap of one limb).
JOINT_LIMIT = 60.0
#: With the whole frame as the detector's box, a person's box is the joints' box grown by this
#: share on each side: COCO's joints stop at the nose and ankles, the head and feet go beyond.
BOX_PAD = 0.1
GEOMETRY_NOTE = ("Each label was also checked by geometry: triangulated from all views that "
                 "labelled the joint and measured against the others' consensus; see "
                 "'geometry'.")


def match_cameras(videos: list[Path], cams: list[Camera]) -> list[Camera]:
    """The calibration's camera for each video, by the video's file stem."""
    by_name = {c.name: c for c in cams}
    out = []
    for v in videos:
        if v.stem not in by_name:
            raise LabelError(f"no camera named {v.stem!r} in the calibration (it has "
                             f"{', '.join(sorted(by_name))}); name each video after its camera")
        out.append(by_name[v.stem])
    if len(set(v.stem for v in videos)) != len(videos):
        raise LabelError("two videos of the same camera")
    if len(videos) < 2:
        raise LabelError(f"need at least two views to check geometry, got {len(videos)}")
    return out


def judge_views(cams: list[Camera], people: list[tuple[tl.Box, np.ndarray] | None],
                max_median: float = MAX_MEDIAN_ERROR, joint_limit: float = JOINT_LIMIT,
                ) -> tuple[list[tuple[tl.Box, np.ndarray, float] | None], Counter]:
    """The geometry check of one frame: ``people`` has, per view, the teacher's kept person
    (box, COCO ``[17, 3]``) or None. Returns per view ``(box, keypoints with the inconsistent
    joints unlabelled, median error)`` or None, and the rejections by reason (plus
    ``"joints unlabelled by geometry"``, counted in joints)."""
    why: Counter = Counter()
    seen = [v for v, p in enumerate(people) if p is not None]
    out: list = [None] * len(people)
    if len(seen) < 2:
        why["geometry: seen in fewer than 2 views"] += len(seen)
        return out, why
    kps = np.zeros((len(people), 17, 3))
    for v in seen:
        kps[v] = people[v][1]
    check = check_views(cams, kps, joint_limit)
    for v in seen:
        box, kp = people[v]
        med = check.median_error(v)
        if not np.isfinite(med) or med > max_median:
            why[f"geometry: median reprojection error over {max_median:g} px"] += 1
            continue
        kp = kp.copy()
        # NaN (a joint no other view labelled) is unchecked, not wrong: it compares False.
        bad = check.errors[v] > joint_limit
        if bad.any():
            why["joints unlabelled by geometry"] += int(bad.sum())
            kp[bad] = 0
        vis = kp[:, 2] > 0
        if vis.sum() < tl.MIN_VISIBLE or not all(vis[tl.COCO_JOINTS.index(j)] for j in tl.TORSO):
            why["geometry: too few consistent joints left"] += 1
            continue
        out[v] = (box, kp, med)
    return out, why


def label_views(videos: list[Path], cams: list[Camera], out: Path, frames: slice, split: str,
                pose: tl.PoseFn, detect: tl.DetectFn, max_median: float, joint_limit: float,
                ) -> tuple[dict, Counter, Counter, list[int], np.ndarray]:
    """Label every view of ``frames`` into ``out``; returns the COCO dict without ``info``,
    the rejections by reason (teacher's and geometry's), the geometry's alone, the frame
    indices and the median errors of the views kept."""
    indices = video_frames(videos[0], frames)
    for v in videos[1:]:
        if video_frames(v, frames) != indices:
            raise LabelError(f"{v} and {videos[0]} differ in length; the views must be "
                             "synchronised clips of one take")
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns, rejected, geometry, medians = [], [], Counter(), Counter(), []
    frame_indices: list[int] = []
    t0 = time.monotonic()
    for views in zip(*(sample_frames(v, indices) for v in videos)):
        index = views[0][0]
        frame_indices.append(index)
        people: list = []
        for _, frame in views:
            kept = tl.label_frame(frame, detect, pose, rejected)
            if len(kept) > 1:
                # One person is filmed; with several kept the view is ambiguous.
                rejected["view with more than one person kept"] += 1
                kept = []
            people.append(kept[0] if kept else None)
        checked, why = judge_views(cams, people, max_median, joint_limit)
        rejected.update(why)
        geometry.update(why)
        for video, (_, frame), person in zip(videos, views, checked):
            if person is None:
                continue
            box, kp, med = person
            h, w = frame.shape[:2]
            if isinstance(detect, tl.WholeFrame):
                box = tl.joint_box(kp, w, h, BOX_PAD)
            name = f"{video.stem}_frame_{index:04d}.png"
            if not cv2.imwrite(str(out / "images" / name), frame):
                raise LabelError(f"cannot write {out / 'images' / name}")
            images.append({"id": len(images) + 1, "file_name": name, "width": w, "height": h,
                           "frame_index": index, "view": video.stem})
            ann = tl.coco_annotation(len(anns) + 1, len(images), box, kp)
            ann["reprojection_median_px"] = round(med, 2)
            anns.append(ann)
            medians.append(med)
        elapsed = time.monotonic() - t0
        left = elapsed / len(frame_indices) * (len(indices) - len(frame_indices))
        print(f"{split}: frame {index} ({len(frame_indices)}/{len(indices)}), {len(anns)} views "
              f"kept, {elapsed:.0f} s, ~{left:.0f} s left", file=sys.stderr, flush=True)
    coco = {"images": images, "annotations": anns, "categories": tl.coco_categories()}
    return coco, rejected, geometry, frame_indices, np.asarray(medians)


def label_multiview(videos: list[str | Path], calibration: str | Path, out: str | Path,
                    frames: slice, split: str, pose: tl.PoseFn | None = None,
                    detect: tl.DetectFn | None = None, teacher_info: dict | None = None,
                    source: dict | None = None, max_median: float = MAX_MEDIAN_ERROR,
                    joint_limit: float = JOINT_LIMIT) -> dict:
    """Label ``videos[frames]`` as the split ``split`` into ``out`` (atomically); returns a
    summary. ``pose`` and ``detect`` default to MediaPipe and the whole frame."""
    if not (0 < max_median <= joint_limit):
        raise LabelError(f"need 0 < --max-median-error <= --joint-limit, got {max_median:g} "
                         f"and {joint_limit:g}")
    videos = [Path(v) for v in videos]
    for v in videos:
        if not v.is_file():
            raise LabelError(f"video not found: {v}")
    cams = match_cameras(videos, read_qca(calibration))
    indices = video_frames(videos[0], frames)
    teacher = None
    if pose is None:
        teacher = pose = tl.MediaPipePose()
        teacher_info = teacher.describe()
    detect = detect or tl.WholeFrame()
    final = Path(out).resolve()
    try:
        with atomic_dir(final) as tmp:
            coco, rejected, geometry, frame_indices, medians = label_views(
                videos, cams, tmp, frames, split, pose, detect, max_median, joint_limit)
            if not coco["annotations"]:
                raise LabelError(f"no view kept in {len(frame_indices)} frames of "
                                 f"{len(videos)} views (rejected: "
                                 f"{rejection_summary(rejected) or 'nothing found'})")
            coco["info"] = {
                "description": (f"One person in {len(videos)} synchronised calibrated views, "
                                f"{describe_frames(indices)}, labelled by a pose teacher and "
                                f"checked by triangulation: the {split} split"),
                "split": split,
                "note": f"{tl.NOTE} {GEOMETRY_NOTE}",
                "teacher": teacher_info or {"name": "unspecified"},
                "detector": tl.detector_info(detect),
                "keep_rule": tl.keep_rule(),
                "teacher_crop": tl.crop_info(),
                "geometry": {
                    "calibration": str(calibration),
                    "calibration_sha256": sha256_file(calibration),
                    "cameras": [c.name for c in cams],
                    "method": "linear DLT triangulation from every view labelling a joint; "
                              "the worst view set aside while over joint_limit_px and more "
                              "than two remain; each view measured against the rest",
                    "max_median_error_px": max_median, "joint_limit_px": joint_limit,
                    "rejected": dict(sorted(geometry.items())),
                    "kept_median_error_px": _quantiles(medians),
                },
                "source_videos": [str(v) for v in videos],
                "source_videos_sha256": [sha256_file(v) for v in videos],
                **(source or {}),
                "frames": f"{indices.start}:{indices.stop}:{indices.step}",
                "first_frame": indices[0], "last_frame": indices[-1],
                "every_nth_frame": indices.step, "frame_indices": frame_indices,
                "rejected": dict(sorted(rejected.items())),
                "bbox": (f"the labelled joints' box grown by {BOX_PAD:g} of its size on each "
                         "side, clipped to the frame (area: that box's area)"
                         if isinstance(detect, tl.WholeFrame) else
                         "the detector's box clipped to the frame (area: that box's area)"),
                "rebuild": "make realset",
            }
            write_json(tmp / "annotations.json", coco, indent=1)
    finally:
        if teacher is not None:
            teacher.close()
    return {"split": split, "frames": len(frame_indices), "images": len(coco["images"]),
            "views": len(videos), "rejected": dict(rejected), "geometry": dict(geometry),
            "median_error_px": _quantiles(medians), "out": str(final)}


def _quantiles(values: np.ndarray) -> dict:
    if not len(values):
        return {}
    q = np.percentile(values, [50, 90, 100])
    return {"median": round(float(q[0]), 2), "p90": round(float(q[1]), 2),
            "max": round(float(q[2]), 2)}


def main(argv: list[str] | None = None) -> int:
    """The command line: exit code 0, or 2 after one error line for bad input."""
    return run_main(_main, argv, "multiview_labels.py")


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="+", help="one video per view, named after its camera")
    ap.add_argument("--calibration", required=True, help="Qualisys .qca.txt calibration")
    ap.add_argument("--out", required=True, help="output folder (images/ + annotations.json)")
    ap.add_argument("--frames", type=frames_arg, required=True, metavar="START:STOP:STEP",
                    help="frame indices to label in every view, as a Python slice")
    ap.add_argument("--split-name", required=True, help="which split this is (eval, train)")
    ap.add_argument("--detector", choices=tl.DETECTORS, default="whole-frame",
                    help="how the person is found in each view (default: the whole frame)")
    ap.add_argument("--hog-upscale", type=float, default=tl.HOG_UPSCALE)
    ap.add_argument("--max-median-error", type=float, default=MAX_MEDIAN_ERROR, metavar="PX",
                    help=f"reject a view whose median reprojection error exceeds this "
                         f"(default {MAX_MEDIAN_ERROR:g})")
    ap.add_argument("--joint-limit", type=float, default=JOINT_LIMIT, metavar="PX",
                    help=f"unlabel a joint further than this from the other views' consensus "
                         f"(default {JOINT_LIMIT:g})")
    tl.add_source_args(ap)
    args = ap.parse_args(argv)
    detect = tl.make_detector(args.detector, args.hog_upscale)
    source = tl.provenance(args.licence, args.source_note, args.archive, args.archive_member)
    s = label_multiview(args.videos, args.calibration, args.out, args.frames, args.split_name,
                        detect=detect, source=source, max_median=args.max_median_error,
                        joint_limit=args.joint_limit)
    print(f"{s['split']}: {s['images']} views kept of {s['frames']} frames x {s['views']} "
          f"cameras -> {s['out']}")
    print(f"rejected: {rejection_summary(Counter(s['rejected'])) or 'none'}")
    print(f"kept views' median reprojection error (px): {s['median_error_px']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
