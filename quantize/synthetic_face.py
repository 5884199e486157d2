"""Seeded procedural renderer of faces labelled with the 68 iBUG/300W landmarks.

A 3-D mean face in iBUG order gets a random face shape (smooth deformations of width, jaw,
chin, nose, eyes, mouth and brows) and expression (mouth opening, smile, brow raise, closing
eyes), is turned by a head pose (yaw up to 45 degrees, pitch 25, roll 30), projected with a
mild perspective and framed like a 300W crop: the landmarks' bounding box fills 55-75% of the
image. The face is painted from the same geometry -- shaded skin, hair, ears, neck, eyes with
sclera and iris, brows, nose and lips -- so that each landmark sits on the feature it names,
over the body renderer's cluttered background. Hands and objects sometimes cover part of the
face; blur, colour jitter, noise and JPEG compression come last.

Keypoints use the pixel-centre convention of ``bnnpose.host.codec`` (integer coordinates are
pixel centres). A landmark is ``visible`` iff it lies inside the frame, does not face away
from the camera (jaw points on the far side of a turned head) and is not under an occluder;
hidden landmarks keep their exact projected position.

Split convention as in ``bnnpose.quantize.synthetic``: training samples use seeds
``TRAIN_SEED_OFFSET + i``, held-out evaluation samples ``EVAL_SEED_OFFSET + i``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

from bnnpose.host.codec import inside_image
from bnnpose.quantize.face_shape import NUM_LANDMARKS, random_face
from bnnpose.quantize.paint import (
    HAIR_TONES, SHIFT, SKIN_TONES, degrade, fabric_pattern, fixed_points, fixed_pt, pixel_grid,
    random_colour, scene_background, stack_renders, uniforms,
)

TRAIN_SEED_OFFSET = 0
EVAL_SEED_OFFSET = 10_000_000


#: Range of the landmarks' bounding box's longer side, as a fraction of the image side.
FACE_FILL = (0.55, 0.75)
#: Largest head rotations in degrees: yaw turns the face toward the image's right for
#: positive angles, pitch > 0 raises the chin, roll > 0 turns the image clockwise.
MAX_YAW, MAX_PITCH, MAX_ROLL = 45.0, 25.0, 30.0
#: Share of samples shifted so that part of the face leaves the frame.
OUT_OF_FRAME_RATE = 0.03
#: A jaw point is hidden when the horizontal part of its outward normal, turned with the
#: head, points away from the camera by more than this (sine of the angle): on a convex
#: cheek the far jaw line disappears a little after it passes the silhouette.
JAW_HIDDEN_BELOW = -0.3

_OUTER_LIP = np.arange(48, 60)
_INNER_LIP = np.arange(60, 68)


# The skull as an ellipsoid (centre, radii) in the mean face's frame: its front meets the
# forehead, its sides the ears, and its top and back carry the hair.
_SKULL_CENTRE = np.array([0.0, -0.25, -1.3])
_SKULL_RADII = np.array([1.12, 1.6, 1.45])


def _skull_shell() -> np.ndarray:
    """Points over the skull from its top down to below the ears, relative to its centre,
    ``[72, 3]``."""
    polar = np.radians([0, 30, 55, 80, 105, 125])[:, None]
    around = np.linspace(0, 2 * math.pi, 12, endpoint=False)[None, :]
    unit = np.stack(np.broadcast_arrays(np.sin(polar) * np.cos(around), -np.cos(polar),
                                        np.sin(polar) * np.sin(around)), axis=-1)
    return unit.reshape(-1, 3) * _SKULL_RADII


_SHELL = _skull_shell()
_ACROSS = np.linspace(-1.0, 1.0, 7)
# Temples, cheekbones and lower cheeks, right then left. The cheekbones lie about as far
# behind the nose tip as they are wide, so the far cheek's outline reaches the nose tip at
# the largest yaw.
_SIDES = np.array([[s * x, y, z] for s in (-1.0, 1.0)
                   for x, y, z in ((0.95, -0.4, -0.75), (0.85, 0.25, -0.45), (0.75, 0.85, -0.35))])
_EARS = np.array([[-1.05, 0.3, -1.15], [1.05, 0.3, -1.15]])
_NECK = np.array([[s, y, z] for s in (-1.0, 1.0) for y in (0.9, 3.2) for z in (-0.5, -1.4)])
# Head rotations pivot near the top of the neck.
_PIVOT = np.array([0.0, 0.4, -1.0])

#: Cells per side of the grid the shading is computed on.
_SHADE_GRID = 32

_SCLERA = np.array([238, 232, 224], np.float32)
_IRIS_TONES = np.array(
    [[70, 42, 22], [110, 70, 35], [40, 26, 18], [80, 110, 60], [70, 110, 160], [110, 120, 125]],
    np.float32,
)
_LIP_TINT = np.array([196, 82, 96], np.float32)
_MOUTH_INSIDE = (48.0, 18.0, 24.0)
_TEETH = (236.0, 230.0, 212.0)
_PUPIL = (12.0, 10.0, 10.0)


def _skull_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points ``[K, 3]`` on the skull's front surface at frontal ``x, y``."""
    (x0, y0, z0), (rx, ry, rz) = _SKULL_CENTRE, _SKULL_RADII
    depth = rz * np.sqrt(np.clip(1 - ((x - x0) / rx) ** 2 - ((y - y0) / ry) ** 2, 0, 1))
    return np.stack([x, y, z0 + depth], axis=1)


def _head_parts(u, width: float, height: float) -> tuple[dict[str, np.ndarray], bool]:
    """3-D outlines ``[K, 3]`` of the head around the landmarks, and whether it is bald:
    ``skin`` (forehead, temples and cheeks, which with the landmarks make the face region),
    ``hair`` (its volume over the skull), ``long`` (long hair behind the neck, maybe empty),
    ``fringe`` (a polygon over the forehead, maybe empty), ``neck``, ``body`` (shoulders) and
    ``ears`` (their centres, right then left)."""
    hairline = u(-1.2, -0.85)
    forehead = _skull_front(0.9 * _ACROSS, hairline + 0.25 * _ACROSS * _ACROSS)

    # Hair covers the skull above the hairline and, behind the ears, down to its back line.
    shell = _SKULL_CENTRE + _SHELL * u(1.03, 1.14)
    back_line = u(-0.2, 0.6)
    bald = u() < 0.08
    if bald:
        hair = shell[shell[:, 1] < hairline - 0.2]
    else:
        hair = shell[(shell[:, 1] < hairline + 0.05)
                     | ((shell[:, 2] < _SKULL_CENTRE[2] + 0.2) & (shell[:, 1] < back_line))]
    long = fringe = np.zeros((0, 3))
    if not bald and u() < 0.35:  # falls behind the neck onto the shoulders
        length, spread = u(1.6, 3.2), u(1.05, 1.5)
        long = np.concatenate([
            [[s * spread * k, length * k, -1.4] for s in (-1.0, 1.0) for k in (0.6, 1.0)],
            hair[hair[:, 1] > -0.5]])
    if not bald and u() < 0.2:
        # Its lower edge stays above y = -0.8, higher than any brow gets.
        low = hairline + u(0.3, 0.8) * (-0.8 - hairline)
        wave = np.array([u(-0.02, 0.02) for _ in _ACROSS])
        fringe = np.concatenate([
            _skull_front(0.95 * _ACROSS, hairline - 0.15 + 0.25 * _ACROSS * _ACROSS),
            _skull_front(0.9 * _ACROSS, low + 0.12 * _ACROSS * _ACROSS + wave)[::-1]])
    shoulders = u(2.2, 2.9)
    body = np.array([[-0.7, 2.5, -1.0], [0.7, 2.5, -1.0],
                     [-shoulders, 3.3, -1.0], [shoulders, 3.3, -1.0],
                     [-1.05 * shoulders, 6.0, -1.0], [1.05 * shoulders, 6.0, -1.0]])
    parts = {"skin": np.concatenate([forehead, _SIDES]), "hair": hair, "long": long,
             "fringe": fringe, "neck": _NECK * (u(0.5, 0.65), 1.0, 1.0), "body": body,
             "ears": _EARS}
    return {k: v * (width, height, 1.0) for k, v in parts.items()}, bald


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    """Head rotation ``[3, 3]`` in the frame of ``face_shape`` (see MAX_YAW for the signs)."""
    a, b = math.radians(yaw), math.radians(pitch)
    turn = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    nod = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    return nod @ turn


def _pose(u, pose: tuple[float, float, float] | None) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees: each angle near zero in half the faces, as 300W is
    mostly frontal, and over its full range in the others."""
    drawn = []
    for limit in (MAX_YAW, MAX_PITCH, MAX_ROLL):
        wide = u() < 0.5
        drawn.append(u(-limit, limit) * (1.0 if wide else 0.45))
    return tuple(drawn) if pose is None else tuple(float(a) for a in pose)


def _frame(u, points: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Place projected, rolled points ``[K, 2]`` (the 68 landmarks first) in the image: the
    landmark box scaled to FACE_FILL of the image and shifted at random. Returns pixels
    ``[K, 2]`` and the scale (pixels per face unit)."""
    lm = points[:NUM_LANDMARKS]
    (x0, y0), (x1, y1) = lm.min(axis=0).tolist(), lm.max(axis=0).tolist()
    scale = u(*FACE_FILL) * size / max(x1 - x0, y1 - y0, 1e-6)
    box_w, box_h = (x1 - x0) * scale, (y1 - y0) * scale
    free_x, free_y = max(size - box_w, 0) / 2, max(size - box_h, 0) / 2
    shift_x, shift_y = u(-0.7, 0.7) * free_x, u(-0.7, 0.7) * free_y
    if u() < OUT_OF_FRAME_RATE:
        angle, out = u(0, 2 * math.pi), u(0.03, 0.15)
        shift_x = (free_x + out * box_w) * math.cos(angle)
        shift_y = (free_y + out * box_h) * math.sin(angle)
    centre = ((size - 1) / 2 + shift_x, (size - 1) / 2 + shift_y)
    return (points - ((x0 + x1) / 2, (y0 + y1) / 2)) * scale + centre, scale


def _tone(u, tones: np.ndarray) -> np.ndarray:
    """A colour interpolated between neighbours of a palette ``[K, 3]``."""
    t = u(0, len(tones) - 1)
    lo = min(int(t), len(tones) - 2)
    return tones[lo] + (t - lo) * (tones[lo + 1] - tones[lo])


def _c(colour) -> tuple[float, float, float]:
    """An OpenCV colour: plain floats, since numpy scalars cost microseconds each."""
    r, g, b = (float(v) for v in colour)
    return min(max(r, 0.0), 255.0), min(max(g, 0.0), 255.0), min(max(b, 0.0), 255.0)


class _Canvas:
    """The image and a mask of the pixels the head covers (the shading's domain)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.mask = np.zeros(image.shape[:2], np.uint8)

    def hull(self, points: np.ndarray, colour) -> None:
        poly = fixed_points(cv2.convexHull(points.astype(np.float32))[:, 0])
        cv2.fillConvexPoly(self.image, poly, _c(colour), cv2.LINE_AA, SHIFT)
        cv2.fillConvexPoly(self.mask, poly, 255, cv2.LINE_8, SHIFT)

    def poly(self, points: np.ndarray, colour) -> None:
        cv2.fillPoly(self.image, [fixed_points(points)], _c(colour), cv2.LINE_AA, SHIFT)

    def line(self, points: np.ndarray, colour, thickness: float) -> None:
        cv2.polylines(self.image, [fixed_points(points)], False, _c(colour),
                      max(1, round(thickness)), cv2.LINE_AA, SHIFT)

    def ellipse(self, centre, axes, angle: float, colour, mask: bool = False) -> None:
        centre, axes = fixed_pt(*centre), fixed_pt(max(axes[0], 0.3), max(axes[1], 0.3))
        cv2.ellipse(self.image, centre, axes, angle, 0, 360, _c(colour), -1, cv2.LINE_AA, SHIFT)
        if mask:
            cv2.ellipse(self.mask, centre, axes, angle, 0, 360, 255, -1, cv2.LINE_8, SHIFT)

    def inset(self, outline: np.ndarray, draw) -> None:
        """Paint inside the polygon ``outline [K, 2]`` only: ``draw(patch, offset)`` paints
        a patch of the image that is copied back where the polygon covers it (an iris, the
        teeth); the lines drawn along the polygon afterwards hide its jagged border."""
        size = self.image.shape[0]
        (x0, y0), (x1, y1) = outline.min(axis=0).tolist(), outline.max(axis=0).tolist()
        x0, y0 = max(int(x0) - 1, 0), max(int(y0) - 1, 0)
        x1, y1 = min(int(x1) + 3, size), min(int(y1) + 3, size)
        if x1 <= x0 or y1 <= y0:
            return
        roi = self.image[y0:y1, x0:x1]
        patch = roi.copy()
        draw(patch, (x0, y0))
        inside = np.zeros(roi.shape[:2], np.uint8)
        cv2.fillPoly(inside, [fixed_points(outline - (x0, y0))], 1, cv2.LINE_8, SHIFT)
        np.copyto(roi, patch, where=inside[:, :, None].astype(bool))


def _draw_eye(canvas: _Canvas, eye: np.ndarray, gaze: tuple[float, float], iris_colour,
              sclera, lash, lid, ppu: float) -> None:
    """Sclera over the eye's outline ``[6, 2]`` (outer corner, upper lid, inner corner, lower
    lid), an iris and pupil clipped to it, and the lid lines."""
    (ox, oy), (ax, ay), (bx, by), (ix, iy), (cx, cy), (dx, dy) = eye.tolist()
    along_x, along_y = ix - ox, iy - oy
    eye_width = math.hypot(along_x, along_y)
    angle = math.degrees(math.atan2(along_y, along_x))
    opening = (math.hypot(ax - dx, ay - dy) + math.hypot(bx - cx, by - cy)) / 2
    if opening > 0.6:
        canvas.poly(eye, sclera)
        centre = ((ox + ax + bx + ix + cx + dx) / 6 + gaze[0] * along_x,
                  (oy + ay + by + iy + cy + dy) / 6 + gaze[0] * along_y + gaze[1] * opening)
        # The iris is about 11 mm wide, foreshortened across a turned eye.
        across = 0.085 * ppu
        along = min(across, 0.24 * eye_width)

        def iris(patch: np.ndarray, offset: tuple[int, int]) -> None:
            c = fixed_pt(centre[0] - offset[0], centre[1] - offset[1])
            cv2.ellipse(patch, c, fixed_pt(along, across), angle, 0, 360, iris_colour, -1,
                        cv2.LINE_AA, SHIFT)
            cv2.ellipse(patch, c, fixed_pt(0.42 * along, 0.42 * across), angle, 0, 360, _PUPIL, -1,
                        cv2.LINE_AA, SHIFT)
        canvas.inset(eye, iris)
    canvas.line(eye[:4], lash, max(1.0, 0.025 * ppu))
    canvas.line(eye[[3, 4, 5, 0]], lid, max(1.0, 0.012 * ppu))


def _draw_brow(canvas: _Canvas, brow: np.ndarray, eye_centre: np.ndarray, colour,
               thickness: float) -> None:
    """A tapering brow whose upper edge follows the landmarks ``[5, 2]`` (outer end first)."""
    (x0, y0), (x1, y1) = brow[0].tolist(), brow[4].tolist()
    length = max(math.hypot(x1 - x0, y1 - y0), 1e-6)
    nx, ny = (y0 - y1) / length, (x1 - x0) / length
    ex, ey = eye_centre.tolist()
    if nx * (ex - x0) + ny * (ey - y0) < 0:  # point the normal at the eye
        nx, ny = -nx, -ny
    down = np.array([[0.45], [0.75], [0.9], [1.0], [1.0]]) * (thickness * nx, thickness * ny)
    canvas.poly(np.concatenate([brow - 0.15 * down, (brow + 0.85 * down)[::-1]]), colour)


def _draw_features(canvas: _Canvas, u, lm: np.ndarray, ppu: float, yaw: float,
                   skin: np.ndarray, hair: np.ndarray) -> None:
    """Eyes, brows, nose and lips from the landmarks ``lm [68, 2]`` in pixels."""
    iris = _c(_IRIS_TONES[int(u(0, len(_IRIS_TONES)))] * u(0.6, 1.1))
    sclera = _SCLERA * u(0.78, 1.0)
    lash = np.array([25.0, 18.0, 15.0]) * u(0.8, 1.6)
    gaze = (u(-0.09, 0.09), u(-0.1, 0.1))
    right, left = lm[36:42], lm[[45, 44, 43, 42, 47, 46]]
    for eye in (right, left):
        _draw_eye(canvas, eye, gaze, iris, sclera, lash, skin * 0.7, ppu)

    brow = hair * u(0.45, 0.8) if u() < 0.8 else hair * 0.3 + skin * 0.3
    thickness = u(0.05, 0.1) * ppu
    _draw_brow(canvas, lm[17:22], right.mean(axis=0), brow, thickness)
    _draw_brow(canvas, lm[26:21:-1], left.mean(axis=0), brow, thickness)

    # Nose: the bridge shaded toward the far wing, the base and the nostrils.
    far = 35 if yaw > 0 else 31
    canvas.line(lm[[28, 29, 30]] * 0.8 + lm[far] * 0.2, skin * 0.8, 0.03 * ppu)
    canvas.line(lm[[29, 30, far]], skin * 0.78, 0.025 * ppu)
    canvas.line(lm[31:36], skin * 0.72, max(1.0, 0.018 * ppu))
    (wx, wy), (vx, vy) = lm[31].tolist(), lm[35].tolist()
    base = max(math.hypot(vx - wx, vy - wy), 1e-6)
    up_x, up_y = (vy - wy) / base * 0.025 * ppu, (wx - vx) / base * 0.025 * ppu
    angle = math.degrees(math.atan2(vy - wy, vx - wx))
    for wing, middle in ((31, 32), (35, 34)):
        (ax, ay), (bx, by) = lm[wing].tolist(), lm[middle].tolist()
        centre = ((ax + 2 * bx) / 3 + up_x, (ay + 2 * by) / 3 + up_y)
        canvas.ellipse(centre, (0.35 * math.hypot(bx - ax, by - ay) + 0.3, 0.025 * ppu), angle,
                       skin * 0.3)

    lip = skin + (_LIP_TINT * u(0.7, 1.0) - skin) * u(0.3, 0.65)
    if u() < 0.12:  # lipstick
        lip = np.array([u(120, 230), u(10, 70), u(30, 100)])
    canvas.poly(lm[_OUTER_LIP], lip)
    canvas.line(lm[48:55], lip * 0.85, max(1.0, 0.012 * ppu))
    inner = lm[_INNER_LIP]
    gap = float(np.abs(lm[61:64, 1] - lm[67:64:-1, 1]).mean())
    if gap > 0.8:
        canvas.poly(inner, _MOUTH_INSIDE)
        if u() < 0.7:
            upper = lm[60:65]
            band = np.concatenate([upper, upper[::-1] + (0.0, u(0.25, 0.5) * gap)])

            def teeth(patch: np.ndarray, offset: tuple[int, int]) -> None:
                cv2.fillPoly(patch, [fixed_points(band - offset)], _TEETH, cv2.LINE_AA, SHIFT)
            canvas.inset(inner, teeth)
    canvas.line(lm[60:65], lip * 0.45, max(1.0, 0.015 * ppu))


def _shade(canvas: _Canvas, u, centre: np.ndarray, radii: tuple[float, float],
           roll: float) -> None:
    """Light the head's pixels from a random direction, as if it were the ellipsoid of
    ``radii`` (pixels) about ``centre`` seen along its axis.

    The light varies slowly, so it is computed on a coarse grid and interpolated.
    """
    size = canvas.image.shape[0]
    step = max(1, -(-size // _SHADE_GRID))
    cells = -(-size // step)
    x, y = pixel_grid(cells)
    c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    (px, py) = centre.tolist()
    dx, dy = (x + 0.5) * step - 0.5 - px, (y + 0.5) * step - 0.5 - py
    a = (dx * c + dy * s) * (1 / radii[0])
    b = (dy * c - dx * s) * (1 / radii[1])
    r2 = a * a + b * b
    nz = np.sqrt(np.clip(1 - r2, 0, 1))
    light = np.array([u(-1, 1), u(-1, 0.4), u(0.6, 1.5)])
    lx, ly, lz = (light / np.linalg.norm(light)).tolist()
    ambient = u(0.45, 0.75)
    lit = (a * lx + b * ly) / np.maximum(np.sqrt(r2), 1.0) + nz * lz
    # Gains in units of 1/128 so that OpenCV scales the uint8 image in one pass.
    gain = 128 * (ambient + (1.15 - ambient) * np.clip(lit, 0, 1))
    gain = np.repeat(gain.astype(np.uint8).reshape(cells, cells, 1), 3, axis=2)
    gain = cv2.resize(gain, (cells * step, cells * step), interpolation=cv2.INTER_LINEAR)
    lit_image = cv2.multiply(canvas.image, gain[:size, :size], scale=1 / 128)
    cv2.copyTo(lit_image, canvas.mask, canvas.image)


def _occlude(image: np.ndarray, rng: np.random.Generator, lm: np.ndarray,
             ppu: float) -> np.ndarray:
    """Paint a hand or an object over part of the face; returns the covered pixels, bool
    ``[size, size]``."""
    size = image.shape[0]
    u = uniforms(rng, 24)
    mask = np.zeros((size, size), np.uint8)
    ax, ay = lm[int(u(0, NUM_LANDMARKS))].tolist()
    ax, ay = ax + u(-0.3, 0.3) * ppu, ay + u(-0.3, 0.3) * ppu
    reach = u(0.35, 0.9) * ppu
    angle = u(0, 2 * math.pi)
    fx, fy = math.cos(angle), math.sin(angle)
    x, y = pixel_grid(size)
    if u() < 0.5:  # a hand: palm and fingers reaching toward the anchor
        px, py = ax - 0.9 * reach * fx, ay - 0.9 * reach * fy
        cv2.ellipse(mask, fixed_pt(px, py), fixed_pt(0.55 * reach, 0.45 * reach),
                    math.degrees(angle), 0, 360, 1, -1, cv2.LINE_8, SHIFT)
        width = max(1, round(0.17 * reach))
        for k in range(4):
            off = (k - 1.5) * 0.24 * reach
            bx, by = px - fy * off + 0.3 * reach * fx, py + fx * off + 0.3 * reach * fy
            length = u(0.6, 0.95) * reach
            cv2.line(mask, fixed_pt(bx, by), fixed_pt(bx + length * fx, by + length * fy), 1, width,
                     cv2.LINE_8, SHIFT)
        index = np.flatnonzero(mask)
        tone = _tone(u, SKIN_TONES) * u(0.75, 1.05)
        # Lit from the fingertips' side, so the hand stands out from a face of its tone.
        weight = 1 + 0.25 * ((x[index] - px) * fx + (y[index] - py) * fy) / reach
        colours = tone[:, None] * weight
    else:  # an object: a box, a disc or a bar
        kind = int(3 * u())
        if kind == 0:
            box = cv2.boxPoints(((ax, ay), (reach, u(0.4, 1.0) * reach), math.degrees(angle)))
            cv2.fillConvexPoly(mask, fixed_points(box), 1, cv2.LINE_8, SHIFT)
        elif kind == 1:
            cv2.ellipse(mask, fixed_pt(ax, ay), fixed_pt(0.5 * reach, u(0.3, 0.6) * reach),
                        math.degrees(angle), 0, 360, 1, -1, cv2.LINE_8, SHIFT)
        else:
            end = fixed_pt(ax - 2 * size * fx, ay - 2 * size * fy)
            cv2.line(mask, fixed_pt(ax, ay), end, 1, max(1, round(u(0.12, 0.3) * reach)),
                     cv2.LINE_8, SHIFT)
        index = np.flatnonzero(mask)
        weight = fabric_pattern(rng, x[index], y[index], plain=u() < 0.5)
        first, second = random_colour(u)[:, None], random_colour(u)[:, None]
        colours = first + (second - first) * weight
    image.reshape(-1, 3)[index] = np.clip(colours, 0, 255).T.astype(np.uint8)
    return mask.astype(bool)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    _, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def render_face(
    seed: int, size: int = 128, *, pose: tuple[float, float, float] | None = None
) -> dict[str, np.ndarray]:
    """Render one labelled face; identical output for identical ``(seed, size, pose)``.

    Args:
        seed: non-negative; see the module docstring for the train/eval split.
        size: image width and height in pixels.
        pose: ``(yaw, pitch, roll)`` in degrees instead of the seed's (see MAX_YAW for the
            signs); everything else still comes from the seed.

    Returns:
        ``image`` uint8 ``[size, size, 3]`` RGB, ``keypoints`` float32 ``[68, 2]`` (x, y) in
        pixels in iBUG order, ``visible`` bool ``[68]``.
    """
    rng = np.random.default_rng(seed)
    face, jaw_normal_x, width, height = random_face(rng)
    u = uniforms(rng, 96)
    parts, bald = _head_parts(u, width, height)
    yaw, pitch, roll = _pose(u, pose)
    distance = u(6.0, 20.0)

    rotation = _rotation(yaw, pitch)
    turned = (np.concatenate([face, *parts.values()]) - _PIVOT) @ rotation.T
    flat = turned[:, :2] * (distance / (distance - turned[:, 2]))[:, None]
    c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    xy, ppu = _frame(u, flat @ np.array([[c, s], [-s, c]]), size)
    lm = xy[:NUM_LANDMARKS]
    ends = np.cumsum([NUM_LANDMARKS] + [len(v) for v in parts.values()]).tolist()
    px = dict(zip(parts, np.split(xy, ends)[1:-1], strict=True))

    visible = inside_image(lm, (size, size))
    # The far jaw line turns away from the camera with the yaw.
    visible[:17] &= rotation[2, 0] * jaw_normal_x >= JAW_HIDDEN_BELOW

    skin = _tone(u, SKIN_TONES) * u(0.9, 1.05)
    hair = HAIR_TONES[int(u(0, len(HAIR_TONES)))] * u(0.8, 1.2)
    if u() < 0.1:  # dyed
        hair = random_colour(u) * u(0.4, 0.9)
    clothes = random_colour(u)
    canvas = _Canvas(scene_background(rng, size))
    if len(px["long"]):
        canvas.hull(px["long"], hair * 0.85)
    canvas.hull(px["body"], clothes)
    canvas.hull(px["neck"], skin * 0.82)
    # An ear shows while its side of the head faces the camera.
    for k, side in enumerate((-1.0, 1.0)):
        if rotation[2, 0] * side > -0.5:
            along = (0.12 + 0.2 * abs(math.sin(math.radians(yaw)))) * ppu
            canvas.ellipse(px["ears"][k].tolist(), (along, 0.3 * ppu * height), roll,
                           skin * 0.92, mask=True)
    canvas.hull(px["hair"], skin * 0.95 if bald else hair)
    canvas.hull(np.concatenate([lm, px["skin"]]), skin)
    _draw_features(canvas, u, lm, ppu, yaw, skin, hair)
    if len(px["fringe"]):
        canvas.poly(px["fringe"], hair)
    _shade(canvas, u, lm[28], (1.25 * ppu * width, 1.9 * ppu * height), roll)

    image = canvas.image
    # Occluders and degradations draw from the stream after the face's own numbers.
    if rng.random() < 0.3:
        covered = _occlude(image, rng, lm, ppu)
        cells = np.clip(np.rint(lm).astype(int), 0, size - 1)
        visible &= ~covered[cells[:, 1], cells[:, 0]]
    image = degrade(image, rng)
    if rng.random() < 0.35:
        image = _jpeg(image, int(rng.integers(25, 90)))
    return {"image": image, "keypoints": lm.astype(np.float32), "visible": visible}


def render_face_batch(
    seeds: Iterable[int], size: int = 128
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render several seeds: images uint8 ``[N, size, size, 3]``, keypoints float32
    ``[N, 68, 2]``, visible bool ``[N, 68]``."""
    return stack_renders(render_face, seeds, size, NUM_LANDMARKS)
