"""Body poses for the mesh renderer: families of everyday and sports poses as joint-angle
ranges, sampled within human joint limits.

Angles are degrees in Anny's rest frame (x to the body's left, y to its back, z up; the rest
pose is an A-pose, arms about 45 degrees down). Each family gives, per joint, a (low, high)
range per named angle; a body's right side draws its own angles from the same ranges and is
mirrored, unless the family ties the sides (walking swings them in opposite phase).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

#: The angles a joint takes, the bone they turn and their axis. ``hinge`` axes are the
#: body's own (see ``anny_body.Body.hinge``); the others are rest-frame x, y, z.
#: Signs are for the left side: shoulder "raise" lifts the arm sideways, "flex" forwards.
ANGLES = {
    "shoulder": ("upperarm01", {"flex": (0, -1.0), "raise": (1, -1.0), "twist": (2, 1.0)}),
    "elbow": ("lowerarm01", {"bend": ("elbow", 1.0)}),
    "wrist": ("wrist", {"flex": (0, 1.0), "side": (2, 1.0)}),
    "hip": ("upperleg01", {"flex": (0, -1.0), "spread": (1, -1.0), "twist": (2, 1.0)}),
    "knee": ("lowerleg01", {"bend": ("knee", 1.0)}),
    "ankle": ("foot", {"flex": (0, 1.0)}),
    "spine": ("spine03", {"bend": (0, -1.0), "side": (1, 1.0), "twist": (2, 1.0)}),
    "chest": ("spine01", {"bend": (0, -1.0), "side": (1, 1.0), "twist": (2, 1.0)}),
    "neck": ("neck01", {"nod": (0, -1.0), "turn": (2, 1.0), "tilt": (1, 1.0)}),
    "head": ("head", {"nod": (0, -1.0), "turn": (2, 1.0), "tilt": (1, 1.0)}),
}
SIDED = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")

#: Photographs show people's fronts more often than their backs, so renders do too:
#: FRONT_SHARE of bodies turn at most FRONT_YAW degrees from the camera, the rest any way
#: (about 78% then show the camera more front than back).
FRONT_SHARE, FRONT_YAW = 0.55, 60.0


def photo_yaw(uniform) -> float:
    """A body's turn about the vertical in degrees, 0 facing the camera, drawn with
    ``uniform(lo=0, hi=1)``."""
    return uniform(-FRONT_YAW, FRONT_YAW) if uniform() < FRONT_SHARE else uniform(-180, 180)


#: Human limits every sampled angle is clipped to.
LIMITS = {
    "shoulder": {"flex": (-60, 180), "raise": (-50, 170), "twist": (-60, 60)},
    "elbow": {"bend": (0, 150)},
    "wrist": {"flex": (-60, 60), "side": (-25, 25)},
    "hip": {"flex": (-30, 130), "spread": (-25, 50), "twist": (-40, 40)},
    "knee": {"bend": (0, 150)},
    "ankle": {"flex": (-30, 40)},
    "spine": {"bend": (-20, 50), "side": (-25, 25), "twist": (-30, 30)},
    "chest": {"bend": (-15, 30), "side": (-15, 15), "twist": (-25, 25)},
    "neck": {"nod": (-30, 35), "turn": (-45, 45), "tilt": (-20, 20)},
    "head": {"nod": (-20, 25), "turn": (-30, 30), "tilt": (-15, 15)},
}

# Arms hang at the sides at raise -40 (the rest pose holds them 45 degrees out).
_CALM = {
    "shoulder": {"flex": (-15, 20), "raise": (-45, -25), "twist": (-15, 15)},
    "elbow": {"bend": (0, 35)},
    "wrist": {"flex": (-15, 15), "side": (-10, 10)},
    "hip": {"flex": (-8, 10), "spread": (-5, 8), "twist": (-10, 10)},
    "knee": {"bend": (0, 10)},
    "ankle": {"flex": (-5, 5)},
    "spine": {"bend": (-5, 10), "side": (-5, 5), "twist": (-10, 10)},
    "chest": {"bend": (-5, 5), "side": (-4, 4), "twist": (-8, 8)},
    "neck": {"nod": (-10, 15), "turn": (-30, 30), "tilt": (-8, 8)},
    "head": {"nod": (-10, 10), "turn": (-15, 15), "tilt": (-5, 5)},
}


class Family(NamedTuple):
    name: str
    weight: float  #: share of samples
    ranges: dict  #: joint -> angle -> (low, high), over :data:`_CALM`
    #: ranges of the right side where they differ from the left (one-armed poses)
    right: dict | None = None
    walk: bool = False  #: legs and arms swing in opposite phase


def _over(base: dict, **changes: dict) -> dict:
    return {joint: {**angles, **changes.get(joint, {})} for joint, angles in base.items()}


FAMILIES = (
    Family("standing", 0.17, _CALM),
    Family("walking", 0.18, _over(_CALM, elbow={"bend": (5, 45)}, knee={"bend": (0, 45)}),
           walk=True),
    Family("sitting", 0.16, _over(
        _CALM, hip={"flex": (75, 100), "spread": (-5, 20), "twist": (-15, 15)},
        knee={"bend": (60, 110)}, spine={"bend": (-5, 25), "side": (-5, 5), "twist": (-15, 15)},
        shoulder={"flex": (0, 60), "raise": (-45, -20), "twist": (-20, 30)},
        elbow={"bend": (20, 120)})),
    Family("reaching", 0.1, _over(
        _CALM, shoulder={"flex": (50, 175), "raise": (-30, 40), "twist": (-20, 20)},
        elbow={"bend": (0, 50)}, spine={"bend": (-10, 20), "side": (-15, 15), "twist": (-25, 25)}),
        right=_CALM),
    Family("arms crossed", 0.07, _over(
        _CALM, shoulder={"flex": (15, 45), "raise": (-65, -40), "twist": (20, 50)},
        elbow={"bend": (95, 135)})),
    Family("squatting", 0.08, _over(
        _CALM, hip={"flex": (90, 125), "spread": (5, 35), "twist": (-15, 15)},
        knee={"bend": (90, 145)}, ankle={"flex": (10, 35)},
        spine={"bend": (10, 40), "side": (-5, 5), "twist": (-10, 10)},
        shoulder={"flex": (0, 90), "raise": (-40, 0), "twist": (-20, 20)},
        elbow={"bend": (0, 100)})),
    Family("arms raised", 0.06, _over(
        _CALM, shoulder={"flex": (-10, 60), "raise": (40, 165), "twist": (-30, 30)},
        elbow={"bend": (0, 120)})),
    Family("sports", 0.18, {joint: dict(angles) for joint, angles in LIMITS.items()}),
)


def _axis_rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """Rodrigues: the rotation matrix of ``degrees`` about the unit ``axis``."""
    x, y, z = axis
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + s * k + (1 - c) * (k @ k)


_AXES = np.eye(3)


def _mirror(axis: np.ndarray) -> np.ndarray:
    # Reflecting x -> -x maps a rotation axis (a, b, c) to (a, -b, -c) at the same angle.
    return axis * np.array([1.0, -1.0, -1.0])


def sample_pose(rng: np.random.Generator, hinges: dict, bones: dict
                ) -> tuple[str, np.ndarray]:
    """One pose: its family's name and local rotations float64 ``[len(bones), 3, 3]``."""
    weights = np.array([f.weight for f in FAMILIES])
    family = FAMILIES[int(rng.choice(len(FAMILIES), p=weights / weights.sum()))]
    rot = np.broadcast_to(np.eye(3), (len(bones), 3, 3)).copy()
    phase = rng.uniform(-1, 1)
    for joint, (bone, angles) in ANGLES.items():
        sides = (("L", 1), ("R", -1)) if joint in SIDED else (("", 1),)
        for side, sign in sides:
            ranges = family.ranges[joint]
            if side == "R" and family.right is not None:
                ranges = family.right[joint]
            matrix = np.eye(3)
            for name, (axis, direction) in angles.items():
                lo, hi = ranges[name]
                value = rng.uniform(lo, hi)
                if family.walk and joint in ("hip", "shoulder") and name == "flex":
                    # Legs swing up to 25 degrees, each arm against its leg.
                    swing = 25 * phase * sign * (1 if joint == "hip" else -0.8)
                    value = float(np.clip(value + swing, *LIMITS[joint][name]))
                value = float(np.clip(value, *LIMITS[joint][name]))
                vec = hinges[axis] if isinstance(axis, str) else _AXES[axis]
                vec = vec * direction
                if sign < 0:
                    vec = _mirror(vec)
                matrix = matrix @ _axis_rotation(vec, value)
            rot[bones[f"{bone}.{side}" if side else bone]] = matrix
    return family.name, rot
