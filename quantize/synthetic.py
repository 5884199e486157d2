"""Seeded procedural renderer of articulated human figures labelled with the 16 MPII joints.

Each sample is a 3-D stick-body (random proportions, joint angles within human ranges) seen by
an orthographic camera at a random yaw and elevation and rolled in-plane by up to 30 degrees,
painted far-to-near as textured capsules, a torso box and a head with a face, over a cluttered
background (a cut of a real photograph, see ``paint.PHOTOS``, or a drawn scene). Occluders, blur,
colour jitter and noise come last.

Keypoints use the pixel-centre convention of ``bnnpose.host.codec`` (integer coordinates are
pixel centres). A joint is ``visible`` iff it lies inside the frame: as in MPII, joints hidden
behind other body parts or occluders stay labelled.

Training and evaluation use :func:`render_crop_sample`: the figure rendered on a larger canvas,
then cut out the way the host does at inference (``bnnpose.host.preprocess``), from a box of
its joints jittered like a person detector's.

Split convention: training samples use seeds ``TRAIN_SEED_OFFSET + i`` and held-out evaluation
samples ``EVAL_SEED_OFFSET + i``; training sets must stay below ``EVAL_SEED_OFFSET``.

Scalar ``Generator`` calls cost microseconds each, so random numbers are drawn in blocks (see
``uniforms``) and small geometry is done in batches or plain Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import cv2
import numpy as np

from bnnpose.host.preprocess import person_crop, warp
from bnnpose.host.codec import inside_image
from bnnpose.host.skeleton import MPII_JOINTS
from bnnpose.quantize.body_poses import photo_yaw
from bnnpose.quantize.paint import (
    HAIR_TONES, ONE, SHIFT, SKIN_TONES, Uniform, degrade, fabric_pattern, fixed_points,
    fixed_pt, mix, pixel_grid, random_colour, scene_background, stack_renders, to_pixels,
    uniforms,
)

TRAIN_SEED_OFFSET = 0
EVAL_SEED_OFFSET = 10_000_000

NUM_JOINTS = len(MPII_JOINTS)

#: Side of the canvas :func:`render_crop_sample` renders on: the figure's 50-90% of it maps to
#: crop scales of about 0.6-1.1, so the crop rarely has to magnify the render.
CROP_CANVAS = 192
#: Joint boxes grow by this fraction of their long side on every side before jittering: the
#: box of a person detector also covers the head, hands and feet around the end joints.
BOX_PAD = 0.06
#: Detector-like jitter of the person box: relative size change and centre shift as a
#: fraction of the box's width and height.
BOX_SCALE_JITTER = 0.15
BOX_SHIFT_JITTER = 0.08
_J = {name: i for i, name in enumerate(MPII_JOINTS)}

# Extra 3-D points after the 16 joints: limb tips, head and face centres, a box around the torso.
_R_TOE, _L_TOE, _R_HAND, _L_HAND, _HEAD, _FACE = range(NUM_JOINTS, NUM_JOINTS + 6)
_TORSO_BOX = slice(NUM_JOINTS + 6, NUM_JOINTS + 14)
_NUM_POINTS = NUM_JOINTS + 14

# Garments: which fabric a body part gets.
_TOP, _BOTTOM, _SKIN, _HAIR, _SHOES = range(5)

#: Capsule radii (at parent, at child) of the drawn MPII_SKELETON limbs, as fractions of body
#: height. The other skeleton limbs (hips, shoulders, spine) lie inside the torso box.
LIMB_RADII = {
    (0, 1): (0.026, 0.031), (1, 2): (0.031, 0.044),  # right shin, thigh
    (5, 4): (0.026, 0.031), (4, 3): (0.031, 0.044),  # left shin, thigh
    (7, 8): (0.024, 0.022),  # neck
    (10, 11): (0.019, 0.023), (11, 12): (0.023, 0.029),  # right forearm, upper arm
    (15, 14): (0.019, 0.023), (14, 13): (0.023, 0.029),  # left forearm, upper arm
}

class _Part(NamedTuple):
    """A body part to paint; ``geometry`` is in pixels and depends on ``kind``:
    "capsule" ``(ax, ay, bx, by, ra, rb)``, "poly" ``(points [K, 2],)`` or
    "ellipse" ``(cx, cy, along, across, angle_deg)``."""

    depth: float
    kind: str
    garment: int
    geometry: tuple


def _rot(axis: int, degrees: Iterable[float]) -> np.ndarray:
    """Right-handed rotations about x (0), y (1) or z (2): ``[n, 3, 3]`` for ``n`` angles."""
    rad = np.radians(np.asarray(degrees, dtype=np.float64))
    c, s = np.cos(rad), np.sin(rad)
    i, j = (axis + 1) % 3, (axis + 2) % 3
    r = np.zeros((rad.size, 3, 3))
    r[:, axis, axis] = 1.0
    r[:, i, i], r[:, j, j], r[:, i, j], r[:, j, i] = c, c, -s, s
    return r


def _leg_angles(u: Uniform) -> list[tuple[float, float, float, float]]:
    """(abduction, hip flexion, hip rotation, knee flexion) in degrees, right leg first."""
    mode = u()
    if mode < 0.4:  # standing
        return [(u(-5, 25), u(-10, 20), u(-10, 30), u(0, 20)) for _ in range(2)]
    if mode < 0.65:  # walking or running: one leg swings forward, the other trails
        legs = [(u(-5, 12), u(10, 70), u(-10, 20), u(0, 60)),
                (u(-5, 12), u(-35, 0), u(-10, 20), u(0, 110))]
        return legs if u() < 0.5 else legs[::-1]
    if mode < 0.8:  # squatting or sitting
        return [(u(0, 35), u(60, 110), u(0, 40), u(70, 140)) for _ in range(2)]
    return [(u(-10, 50), u(-30, 110), u(-20, 40), u(0, 130)) for _ in range(2)]


def _arm_angles(u: Uniform) -> tuple[float, float, float, float]:
    """(abduction, shoulder flexion, humeral twist, elbow flexion) in degrees for one arm."""
    if u() < 0.4:  # relaxed at the side
        return u(0, 30), u(-25, 40), u(-30, 40), u(0, 60)
    abduction = u(-10, 170)
    # Flexing forward on top of a raised arm would swing it behind the head.
    flexion = u(-30, 60) if abduction > 100 else u(-40, 100)
    return abduction, flexion, u(-60, 80), u(0, 145)


def _pose_3d(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random body in camera space, stature about 1, y up and z toward the camera.

    Returns points float64 ``[30, 3]`` (16 joints, then the landmarks ``_R_TOE`` ...
    ``_TORSO_BOX``) and the head's rotation ``[3, 3]`` (its third column is the face normal).
    In the body's own frame the person faces +z with their right side at -x; legs and arms are
    two-segment chains mirrored through ``side`` (-1 right, +1 left).
    """
    u = uniforms(rng, 64)
    leg, arm, width = u(0.9, 1.1), u(0.9, 1.1), u(0.85, 1.2)
    thigh, shin = 0.245 * leg * u(0.95, 1.05), 0.245 * leg * u(0.95, 1.05)
    upper_arm, forearm = 0.18 * arm * u(0.95, 1.05), 0.155 * arm * u(0.95, 1.05)
    spine, neck, head = 0.29 * u(0.9, 1.1), 0.06 * u(0.8, 1.25), 0.12 * u(0.9, 1.1)
    hip_half, shoulder_half, torso_depth = 0.085 * width, 0.115 * width, 0.065 * width

    yaw = photo_yaw(u)
    torso_bend = u(-10, 25) if u() < 0.85 else u(25, 70)
    # yaw, torso twist, head turn | pelvis tilt, torso and neck side bends | torso bend, neck
    # and head nods, camera elevation.
    ry = _rot(1, [yaw, u(-25, 25), u(-50, 50)])
    rz = _rot(2, [u(-8, 8), u(-15, 15), u(-15, 15)])
    rx = _rot(0, [torso_bend, u(-15, 25), u(-20, 25), u(-15, 20)])
    pelvis_rot = ry[0] @ rz[0]
    torso_rot = pelvis_rot @ ry[1] @ rx[0] @ rz[1]
    neck_rot = torso_rot @ rx[1] @ rz[2]
    head_rot = neck_rot @ ry[2] @ rx[2]

    p = np.zeros((_NUM_POINTS, 3))
    p[_J["thorax"]] = spine * torso_rot[:, 1]
    p[_J["upper_neck"]] = p[_J["thorax"]] + neck * neck_rot[:, 1]
    p[_J["head_top"]] = p[_J["upper_neck"]] + head * head_rot[:, 1]
    p[_HEAD] = p[_J["upper_neck"]] + 0.5 * head * head_rot[:, 1]
    p[_FACE] = p[_HEAD] + head * head_rot @ (0.0, -0.06, 0.12)

    # Limb chains in the order right leg, left leg, right arm, left arm.
    side = np.array([-1.0, 1.0, -1.0, 1.0])
    legs = _leg_angles(u)
    arms = [_arm_angles(u), _arm_angles(u)]
    abduction, flexion, rotation, bend = np.array(legs + arms).T
    # Knees flex backward (+x rotation), elbows forward.
    bend *= np.array([1.0, 1.0, -1.0, -1.0])
    base = np.stack([pelvis_rot, pelvis_rot, torso_rot, torso_rot])
    upper = base @ _rot(2, side * abduction) @ _rot(0, -flexion) @ _rot(1, side * rotation)
    lower = upper @ _rot(0, bend)
    tip = lower @ _rot(0, [u(-20, 15), u(-20, 15), u(-30, 30), u(-30, 30)])
    hips = side[:2, None] * hip_half * pelvis_rot[:, 0]
    shoulders = p[_J["thorax"]] + side[2:, None] * shoulder_half * torso_rot[:, 0]
    roots = np.concatenate([hips, shoulders - 0.015 * torso_rot[:, 1]])
    mids = roots - np.array([thigh, thigh, upper_arm, upper_arm])[:, None] * upper[:, :, 1]
    ends = mids - np.array([shin, shin, forearm, forearm])[:, None] * lower[:, :, 1]
    # Feet point forward from the ankle, hands continue the forearm.
    tip_vectors = np.array([[0.0, -0.02, 0.075]] * 2 + [[0.0, -0.06, 0.0]] * 2)
    tips = ends + np.einsum("nij,nj->ni", tip, tip_vectors)
    chains = [("r_hip", "r_knee", "r_ankle", _R_TOE), ("l_hip", "l_knee", "l_ankle", _L_TOE),
              ("r_shoulder", "r_elbow", "r_wrist", _R_HAND),
              ("l_shoulder", "l_elbow", "l_wrist", _L_HAND)]
    for k, (root, mid, end, tip_index) in enumerate(chains):
        p[[_J[root], _J[mid], _J[end], tip_index]] = roots[k], mids[k], ends[k], tips[k]

    # A box around the shoulders and hips gives the torso depth in side views.
    corners = [_J["r_shoulder"], _J["l_shoulder"], _J["r_hip"], _J["l_hip"]]
    front = torso_depth * torso_rot[:, 2]
    p[_TORSO_BOX] = np.concatenate([p[corners] + front, p[corners] - front])

    camera = rx[3]
    return p @ camera.T, camera @ head_rot


def _place(points: np.ndarray, rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """Project camera-space points ``[K, 3]`` to image pixels ``[K, 2]``; also the scale.

    A standing figure gets 50-90% of the frame height; crouched poses, whose joint and toe
    bounding box is shorter than 80% of the body's stature, come out correspondingly smaller,
    as do poses too wide for the frame. The box is shifted so that none of it leaves the frame
    at the top and at most 5% of it on the other sides, or 30% in a fifth of samples to mimic
    the people of MPII truncated below or at the sides.
    """
    u = uniforms(rng, 6)
    roll = math.radians(u(-30, 30))
    c, s = math.cos(roll), math.sin(roll)
    xy = points[:, :2] @ np.array([[c, s], [s, -c]])  # flips y to point down, then rolls
    extent = xy[: _L_TOE + 1]
    lo = extent.min(axis=0)
    span = np.maximum(extent.max(axis=0) - lo, 1e-6)
    leg = points[[_J["r_ankle"], _J["r_knee"], _J["r_hip"]]]
    spine = points[[_J["pelvis"], _J["thorax"], _J["upper_neck"], _J["head_top"]]]
    stature = sum(np.linalg.norm(np.diff(chain, axis=0), axis=1).sum() for chain in (leg, spine))
    scale = float(min(u(0.5, 0.9) * size / max(span[1], 0.8 * stature), 0.95 * size / span[0]))
    span *= scale
    spill = 0.3 if u() < 0.2 else 0.05
    before = np.array([spill, 0.0]) * span  # allowed overflow left and at the top
    first = np.array([u(), u()]) * (size - span + before + spill * span) - before
    return (xy - lo) * scale + first - 0.5, scale


def _body_parts(
    p3: np.ndarray, xy: np.ndarray, head_rot: np.ndarray, scale: float, u: Uniform
) -> list[_Part]:
    """The body as parts sorted far to near, from camera-space points ``p3 [K, 3]``, their
    image positions ``xy [K, 2]``, the head rotation and the pixels per unit of stature."""
    bulk = u(0.8, 1.3) * scale
    long_sleeves, long_pants = u() < 0.5, u() < 0.7
    z = p3[:, 2].tolist()
    pts = xy.tolist()
    # Keyed by the first joint of each LIMB_RADII limb: its distal end, or the neck's thorax.
    garment_of = {
        "ankle": _BOTTOM if long_pants else _SKIN, "knee": _BOTTOM,
        "wrist": _TOP if long_sleeves else _SKIN, "elbow": _TOP, "thorax": _SKIN,
    }
    parts = []
    for (a, b), (ra, rb) in LIMB_RADII.items():
        garment = garment_of[MPII_JOINTS[a].split("_")[-1]]
        geometry = (*pts[a], *pts[b], ra * bulk, rb * bulk)
        parts.append(_Part((z[a] + z[b]) / 2, "capsule", garment, geometry))
    hand, foot = 0.021 * bulk, 0.02 * bulk
    for lr, hand_tip, toe in (("r", _R_HAND, _R_TOE), ("l", _L_HAND, _L_TOE)):
        wrist, ankle = pts[_J[f"{lr}_wrist"]], pts[_J[f"{lr}_ankle"]]
        parts.append(_Part(z[hand_tip], "capsule", _SKIN, (*wrist, *pts[hand_tip], hand, hand)))
        parts.append(_Part(z[toe], "capsule", _SHOES, (*ankle, *pts[toe], foot, foot)))

    # Torso box corners come as shoulders then hips (front face, then back face).
    box = xy[_TORSO_BOX]
    shoulders, hips = box[[0, 1, 4, 5]], box[[2, 3, 6, 7]]
    torso_z = sum(z[_J[n]] for n in ("r_shoulder", "l_shoulder", "r_hip", "l_hip")) / 4
    # The seat reaches a little below the hip joints, so the pelvis is never on its edge.
    seat = np.concatenate([1.1 * hips - 0.1 * shoulders, 0.7 * hips + 0.3 * shoulders])
    shirt = np.concatenate([shoulders, 0.15 * shoulders + 0.85 * hips])
    for garment, poly in ((_BOTTOM, seat), (_TOP, shirt)):
        hull = cv2.convexHull(poly.astype(np.float32))[:, 0]
        parts.append(_Part(torso_z, "poly", garment, (hull,)))

    # The head is hair (or a hat) with a face ellipse turned toward where the head faces, so
    # front and back views, and hence left and right, can be told apart.
    neck, top = _J["upper_neck"], _J["head_top"]
    head_px = float(np.linalg.norm(p3[top] - p3[neck])) * scale
    ax, ay = pts[top][0] - pts[neck][0], pts[top][1] - pts[neck][1]
    angle = math.degrees(math.atan2(ay, ax))
    across = 0.42 * head_px
    along = max(across, 0.56 * math.hypot(ax, ay))
    parts.append(_Part(z[_HEAD], "ellipse", _HAIR, (*pts[_HEAD], along, across, angle)))
    if head_rot[2, 2] > -0.1:
        face = (*pts[_FACE], 0.75 * along, 0.3 * head_px, angle)
        parts.append(_Part(z[_HEAD] + 1e-3, "ellipse", _SKIN, face))
    return sorted(parts, key=lambda part: part.depth)


def _paint(canvas: np.ndarray, part: _Part, value: int) -> None:
    """Fill ``part`` with ``value`` in the label image ``canvas``."""
    if part.kind == "capsule":
        ax, ay, bx, by, ra, rb = part.geometry
        length = math.hypot(bx - ax, by - ay)
        if length > 1e-6:
            nx, ny = (ay - by) / length, (bx - ax) / length
            quad = [fixed_pt(ax + nx * ra, ay + ny * ra), fixed_pt(bx + nx * rb, by + ny * rb),
                    fixed_pt(bx - nx * rb, by - ny * rb), fixed_pt(ax - nx * ra, ay - ny * ra)]
            cv2.fillConvexPoly(canvas, np.array(quad, np.int32), value, cv2.LINE_8, SHIFT)
        cv2.circle(canvas, fixed_pt(ax, ay), round(ra * ONE), value, -1, cv2.LINE_8, SHIFT)
        cv2.circle(canvas, fixed_pt(bx, by), round(rb * ONE), value, -1, cv2.LINE_8, SHIFT)
    elif part.kind == "poly":
        cv2.fillConvexPoly(canvas, fixed_points(part.geometry[0]), value, cv2.LINE_8, SHIFT)
    else:
        cx, cy, along, across, angle = part.geometry
        cv2.ellipse(canvas, fixed_pt(cx, cy), fixed_pt(along, across), angle, 0, 360, value, -1,
                    cv2.LINE_8, SHIFT)


def _edges(labels: np.ndarray) -> np.ndarray:
    """Pixels of a part next to the background or to a nearer part (higher label), bool
    ``[H, W]``: an outline around the figure and around each part drawn over another."""
    pad = np.pad(labels, 1, mode="edge")
    edge = np.zeros(labels.shape, bool)
    for nb in (pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]):
        edge |= (nb == 0) | (nb > labels)
    return edge & (labels > 0)


def _outfit(u: Uniform) -> tuple[np.ndarray, np.ndarray, list[bool], np.ndarray]:
    """Per garment (top, bottom, skin, hair, shoes): first and second colours float32
    ``[5, 3]``, whether it is plain, and its grain amplitude ``[5]``."""
    tone = u(0, len(SKIN_TONES) - 1)
    lo = int(tone)
    skin = SKIN_TONES[lo] + (tone - lo) * (SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)]
                                            - SKIN_TONES[lo])
    hair = HAIR_TONES[int(u(0, len(HAIR_TONES)))] * u(0.8, 1.2)
    if u() < 0.2:  # a hat
        hair = random_colour(u)
    shoes = random_colour(u) * (u(0.2, 0.5) if u() < 0.6 else 1.0)
    first = np.stack([random_colour(u), random_colour(u), skin, hair, shoes])
    second = np.stack([random_colour(u) for _ in range(5)])
    plain = [False, False, True, u() < 0.7, True]
    grain = np.array([u(0, 14) for _ in range(5)], np.float32)
    return first, second, plain, grain


def _figure(
    rng: np.random.Generator, p3: np.ndarray, xy: np.ndarray, head_rot: np.ndarray,
    scale: float, size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint the body: flat indices ``[M]`` of the covered pixels and their colours uint8
    ``[M, 3]``."""
    u = uniforms(rng, 48)
    parts = _body_parts(p3, xy, head_rot, scale, u)
    first, second, plain, grain = _outfit(u)
    outline = u(0.45, 0.85) if u() < 0.7 else None
    labels = np.zeros((size, size), np.uint8)
    for k, part in enumerate(parts):
        _paint(labels, part, k + 1)
    flat = labels.ravel()
    index = np.flatnonzero(flat)
    label = flat[index]
    # Per-label tables (label 0 unused): each part gets its own shade so that limbs stay
    # distinct from a torso of the same garment behind them.
    garment = np.array([0] + [part.garment for part in parts])
    shade = np.concatenate([[1.0], rng.uniform(0.78, 1.12, len(parts))]).astype(np.float32)
    worn = garment[label]
    x, y = pixel_grid(size)
    weight = np.empty(index.size, np.float32)
    for g, is_plain in enumerate(plain):
        on = worn == g
        weight[on] = fabric_pattern(rng, x[index[on]], y[index[on]], is_plain)
    tint = shade[label]
    if outline is not None:
        tint[_edges(labels).ravel()[index]] *= outline
    colours = mix(first.T[:, worn], second.T[:, worn], weight) * tint
    colours += grain[worn] * (rng.random(index.size, dtype=np.float32) - 0.5)
    return index, to_pixels(colours)


def _occlude(img: np.ndarray, rng: np.random.Generator, xy: np.ndarray) -> None:
    """Paint one or two shapes over the figure's joint bounding box, in place."""
    size = img.shape[0]
    lo, hi = xy[:NUM_JOINTS].min(axis=0).tolist(), xy[:NUM_JOINTS].max(axis=0).tolist()
    x, y = pixel_grid(size)
    for _ in range(1 + int(2 * rng.random())):
        u = uniforms(rng, 16)
        cx, cy = u(lo[0], hi[0]), u(lo[1], hi[1])
        w, h = u(0.12, 0.35) * (hi[1] - lo[1]), u(0.12, 0.35) * (hi[1] - lo[1])
        mask = np.zeros((size, size), np.uint8)
        if u() < 0.5:
            box = cv2.boxPoints(((cx, cy), (w, h), u(0, 90)))
            cv2.fillConvexPoly(mask, fixed_points(box), 1, cv2.LINE_8, SHIFT)
        else:
            cv2.ellipse(mask, fixed_pt(cx, cy), fixed_pt(w / 2, h / 2), u(0, 180), 0, 360, 1, -1,
                        cv2.LINE_8, SHIFT)
        index = np.flatnonzero(mask)
        weight = fabric_pattern(rng, x[index], y[index], plain=u() < 0.5)
        colours = mix(random_colour(u)[:, None], random_colour(u)[:, None], weight)
        img.reshape(-1, 3)[index] = to_pixels(colours)


def render_sample(seed: int, size: int = 128, *, clean: bool = False) -> dict[str, np.ndarray]:
    """Render one labelled figure; identical output for identical ``(seed, size)``.

    Args:
        seed: non-negative; see the module docstring for the train/eval split.
        size: image width and height in pixels.
        clean: skip occluders, blur, colour jitter and noise, and also return the figure's
            coverage and the scene behind it (for checking labels against pixels).

    Returns:
        ``image`` uint8 ``[size, size, 3]`` RGB, ``keypoints`` float32 ``[16, 2]`` (x, y) in
        pixels in MPII joint order, ``visible`` bool ``[16]`` (inside the frame); with
        ``clean`` also ``mask`` bool ``[size, size]`` (pixels painted by the figure) and
        ``background`` uint8 ``[size, size, 3]``.
    """
    rng = np.random.default_rng(seed)
    p3, head_rot = _pose_3d(rng)
    xy, scale = _place(p3, rng, size)
    background = scene_background(rng, size)
    index, colours = _figure(rng, p3, xy, head_rot, scale, size)
    image = background.copy()
    image.reshape(-1, 3)[index] = colours
    keypoints = xy[:NUM_JOINTS].astype(np.float32)
    sample = {"image": image, "keypoints": keypoints,
              "visible": inside_image(keypoints, (size, size))}
    # Occluders and degradations draw last from the stream, so a clean render shows exactly
    # the scene of the full one.
    if clean:
        mask = np.zeros(size * size, bool)
        mask[index] = True
        sample.update(mask=mask.reshape(size, size), background=background)
    else:
        if rng.random() < 0.45:
            _occlude(image, rng, xy)
        sample["image"] = degrade(image, rng)
    return sample


def person_box(seed: int, keypoints: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """A detector-like person box around the ``visible`` joints of ``keypoints [16, 2]``.

    The padded joint box is rescaled by up to ``BOX_SCALE_JITTER`` and shifted by up to
    ``BOX_SHIFT_JITTER`` of its size, drawn from a stream of its own so that the jitter never
    changes the render of ``seed``. Returns float64 ``[4]`` (x0, y0, x1, y1).
    """
    u = uniforms(np.random.default_rng([seed, 1]), 3)
    pts = keypoints[visible] if visible.any() else keypoints
    lo, hi = pts.min(axis=0).astype(np.float64), pts.max(axis=0).astype(np.float64)
    half = (hi - lo) / 2 + BOX_PAD * float((hi - lo).max())
    centre = (lo + hi) / 2 + 2 * half * np.array(
        [u(-BOX_SHIFT_JITTER, BOX_SHIFT_JITTER), u(-BOX_SHIFT_JITTER, BOX_SHIFT_JITTER)])
    half *= u(1 - BOX_SCALE_JITTER, 1 + BOX_SCALE_JITTER)
    return np.concatenate([centre - half, centre + half])


def render_crop_sample(
    seed: int, size: int = 128, *, clean: bool = False
) -> dict[str, np.ndarray]:
    """The network input for one figure: a top-down person crop, as the host makes it.

    ``render_sample(seed, CROP_CANVAS)`` is cut out with the host's ``person_crop`` (box from
    :func:`person_box`, grown by the default margin) and ``warp`` (``PAD_GREY`` border), so
    training sees exactly the inference preprocessing. Deterministic per ``(seed, size)``.

    Returns:
        ``image`` uint8 ``[size, size, 3]``, ``keypoints`` float32 ``[16, 2]`` in crop pixels,
        ``visible`` bool ``[16]`` (inside the canvas and the crop), ``box`` float64 ``[4]`` on
        the canvas; with ``clean`` also ``mask`` bool ``[size, size]`` (crop pixels mostly
        painted by the figure).
    """
    sample = render_sample(seed, CROP_CANVAS, clean=clean)
    box = person_box(seed, sample["keypoints"], sample["visible"])
    crop = person_crop(sample["image"].shape, box, (size, size))
    keypoints = crop.to_crop(sample["keypoints"]).astype(np.float32)
    out = {"image": warp(sample["image"], crop), "keypoints": keypoints,
           "visible": sample["visible"] & inside_image(keypoints, (size, size)), "box": box}
    if clean:
        coverage = warp(sample["mask"].astype(np.uint8)[:, :, None] * 255, crop, (0,))
        out["mask"] = coverage >= 128
    return out


def render_batch(
    seeds: Iterable[int], size: int = 128, *, crop: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render several seeds, full frames or with ``crop`` person crops: images uint8
    ``[N, size, size, 3]``, keypoints float32 ``[N, 16, 2]``, visible bool ``[N, 16]``."""
    return stack_renders(render_crop_sample if crop else render_sample, seeds, size, NUM_JOINTS)
