"""The 3-D face of the synthetic face renderer: a mean face in iBUG/300W order and a random
face from a linear model of shape and expression on it (with closed or winking eyes).

Units and frame: x toward the image's right (the subject's right is -x), y down, z toward the
camera, in units of half the face width at the ears, eye corners at y = 0.
"""

from __future__ import annotations

import numpy as np

from bnnpose.host.skeleton import FACE68_FLIP_PAIRS, FACE68_JOINTS

NUM_LANDMARKS = len(FACE68_JOINTS)

# The subject's right half and midline of the mean face, frontal: x toward the image's right
# (so the subject's right is -x), y down, z toward the camera, in units of half the face width
# at the ears (jaw points 0 and 16), with the eye corners at y = 0. About 6.5 cm per unit.
_HALF_FACE = {
    # Jaw: the face outline from the right ear to the chin.
    0: (-1.00, 0.05, -0.90), 1: (-0.99, 0.31, -0.84), 2: (-0.96, 0.57, -0.74),
    3: (-0.90, 0.82, -0.60), 4: (-0.81, 1.06, -0.42), 5: (-0.67, 1.28, -0.24),
    6: (-0.50, 1.46, -0.08), 7: (-0.27, 1.60, 0.06), 8: (0.00, 1.65, 0.12),
    # Right brow along its upper edge, outer end first.
    17: (-0.86, -0.27, -0.30), 18: (-0.71, -0.39, -0.12), 19: (-0.53, -0.44, 0.00),
    20: (-0.35, -0.43, 0.07), 21: (-0.17, -0.37, 0.10),
    # Nose bridge from its root to the tip, then the base from the right wing.
    27: (0.00, -0.12, 0.10), 28: (0.00, 0.12, 0.18), 29: (0.00, 0.36, 0.30),
    30: (0.00, 0.60, 0.42), 31: (-0.21, 0.70, 0.14), 32: (-0.11, 0.74, 0.22),
    33: (0.00, 0.76, 0.27),
    # Right eye: outer corner, upper lid, inner corner, lower lid.
    36: (-0.69, 0.00, -0.16), 37: (-0.57, -0.08, -0.06), 38: (-0.40, -0.085, -0.03),
    39: (-0.26, 0.00, -0.04), 40: (-0.40, 0.045, -0.04), 41: (-0.57, 0.045, -0.07),
    # Outer lip from the right corner over the upper lip; the lower lip comes back from the
    # left corner, so 55 and 56 lie on the left. Inner lip likewise (65 on the left).
    48: (-0.39, 1.06, 0.02), 49: (-0.25, 0.98, 0.16), 50: (-0.10, 0.94, 0.24),
    51: (0.00, 0.96, 0.26), 55: (0.26, 1.16, 0.14), 56: (0.12, 1.21, 0.20),
    57: (0.00, 1.22, 0.21), 60: (-0.33, 1.06, 0.06), 61: (-0.12, 1.045, 0.17),
    62: (0.00, 1.05, 0.19), 65: (0.12, 1.065, 0.16), 66: (0.00, 1.07, 0.18),
}


def _symmetric(half: dict[int, tuple[float, float, float]]) -> np.ndarray:
    """The 68 points ``[68, 3]`` from one half and the midline, mirrored through the flip
    pairs, so that the mean face is exactly symmetric."""
    points = np.full((NUM_LANDMARKS, 3), np.nan)
    for i, xyz in half.items():
        points[i] = xyz
    for a, b in FACE68_FLIP_PAIRS:
        points[b] = points[a] * (-1.0, 1.0, 1.0)
    return points


#: The mean face ``[68, 3]`` in iBUG order, in the frame and units described at _HALF_FACE.
MEAN_FACE_3D = _symmetric(_HALF_FACE)


_UPPER_LIDS = np.array([37, 38, 43, 44])
_LOWER_LIDS = np.array([41, 40, 47, 46])  # below 37, 38, 43, 44 in turn
def _ramp(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0)


def _shape_model() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A linear model of face shape and expression on the mean face.

    Returns displacement fields ``[K, 68 * 3]`` (a face is the mean plus their sum weighted by
    coefficients), the coefficients' lower bounds and ranges ``[K]``, and how often each
    field is used at all ``[K]`` (a face smiles or opens its mouth only sometimes).
    """
    x, y, z = MEAN_FACE_3D.T
    n = NUM_LANDMARKS

    def group(*ranges: tuple[int, int]) -> np.ndarray:
        m = np.zeros(n)
        for a, b in ranges:
            m[a:b] = 1.0
        return m

    def field(dx=0.0, dy=0.0, dz=0.0) -> np.ndarray:
        return np.stack(np.broadcast_arrays(dx, dy, dz, np.zeros(n))[:3], axis=1)

    jaw, brows, nose, nose_base = group((0, 17)), group((17, 27)), group((27, 36)), group((31, 36))
    eyes, mouth = group((36, 48)), group((48, 68))
    corners = group((48, 49), (54, 55), (60, 61), (64, 65))
    beside_corners = group((49, 50), (53, 54), (55, 56), (59, 60))
    upper_outer, lower_outer = group((49, 54)), group((55, 60))
    upper, lower = group((49, 54), (61, 64)), group((55, 60), (65, 68))
    outer_corners = group((36, 37), (45, 46))
    arch = group((19, 21), (23, 25))
    eye_x, eye_y = np.zeros(n), np.zeros(n)
    for a in (36, 42):
        eye_x[a:a + 6], eye_y[a:a + 6] = x[a:a + 6].mean(), y[a:a + 6].mean()
    inner_upper, inner_lower = y[61:64].mean(), y[65:68].mean()

    fields = [
        # Face shape.
        (-0.12, 0.10, field(dx=x * _ramp(y, 0.5, 1.5) * jaw)),  # jaw width
        (-0.10, 0.15, field(dy=_ramp(y, 0.9, 1.65) * jaw)),  # chin length
        # Nose length; the mouth follows half way, so the lips never reach the nostrils.
        (-0.10, 0.10, field(dy=(y - y[27]) * nose + 0.44 * mouth)),
        (-0.15, 0.25, field(dx=x * nose_base)),  # nose width
        (-0.20, 0.20, field(dz=z * nose)),  # nose depth
        (-0.12, 0.12, field(dx=(x - eye_x) * eyes, dy=(y - eye_y) * eyes)),  # eye size
        (-0.20, 0.25, field(dy=(y - eye_y) * eyes)),  # eye height
        (-0.05, 0.05, field(dx=np.sign(x) * eyes)),  # eye spacing
        (-0.04, 0.03, field(dy=outer_corners)),  # eye tilt
        (-0.05, 0.05, field(dy=brows)),  # brow height
        (-0.04, 0.00, field(dy=arch)),  # brow arch
        (-0.15, 0.15, field(dx=x * mouth)),  # mouth width
        (-0.03, 0.06, field(dy=mouth)),  # mouth height
        (-0.30, 0.30, field(dy=(y - inner_upper) * upper_outer)),  # upper lip thickness
        (-0.30, 0.30, field(dy=(y - inner_lower) * lower_outer)),  # lower lip thickness
        # Expression.
        (-0.08, 0.03, field(dy=brows)),  # raised brows or a frown
        # Smile: the corners rise and spread.
        (0.0, 1.0, field(dx=0.12 * x * corners, dy=-0.1 * corners - 0.04 * beside_corners),
         0.4),
        # Open mouth: the lower lip and the chin drop with the jaw, the lips narrow.
        (0.0, 0.4, field(dx=-0.3 * x * mouth, dy=lower + 0.4 * corners - 0.05 * upper
                         + _ramp(y, 0.7, 1.65) * jaw), 0.35),
    ]
    # A smooth, asymmetric field over the whole face (low-order polynomials).
    yc = y - 0.8
    for basis in (x, yc, x * yc, x * x, yc * yc):
        fields += [(-0.03, 0.03, field(dx=basis)), (-0.03, 0.03, field(dy=basis))]
    lo = np.array([f[0] for f in fields])
    span = np.array([f[1] for f in fields]) - lo
    shapes = np.stack([f[2].ravel() for f in fields])
    rates = np.array([f[3] if len(f) > 3 else 1.0 for f in fields])
    return shapes, lo, span, rates


_SHAPES, _SHAPE_LO, _SHAPE_SPAN, _SHAPE_RATES = _shape_model()

def random_face(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, float]:
    """A random face ``[68, 3]`` in the mean face's frame, the x component of each jaw
    point's outward normal ``[17]``, and the face's width and height factors."""
    k = len(_SHAPE_LO)
    r = rng.random(2 * k + 6)
    coef = (_SHAPE_LO + _SHAPE_SPAN * r[:k]) * (r[k:2 * k] < _SHAPE_RATES)
    p = MEAN_FACE_3D + (coef @ _SHAPES).reshape(NUM_LANDMARKS, 3)
    closed, wink, which, amount, width, height = r[2 * k:].tolist()
    if closed < 0.15 or wink < 0.04:
        # Lids close on the deformed eye, so that they meet whatever its height.
        both = 0.3 + 0.7 * amount
        lids = np.repeat([both, both] if closed < 0.15 else [which < 0.5, which >= 0.5], 2)
        upper, lower = p[_UPPER_LIDS, 1], p[_LOWER_LIDS, 1]
        p[_UPPER_LIDS, 1] = upper + lids * (lower - upper - 0.005)
        p[_LOWER_LIDS, 1] = lower - 0.01 * lids
    p[:, :2] += 0.008 * (rng.random((NUM_LANDMARKS, 2)) - 0.5)
    width, height = 0.88 + 0.24 * width, 0.9 + 0.2 * height
    p *= (width, height, 1.0)

    # At a frontal view every jaw point is on the silhouette, so its normal lies in the image
    # plane, perpendicular to the outline; the outline runs from the right ear under the chin
    # to the left ear, so the outward normal of a tangent (tx, ty) is (-ty, tx).
    outline = p[:17, :2]
    tangent = np.concatenate([outline[1:2] - outline[:1], outline[2:] - outline[:-2],
                              outline[-1:] - outline[-2:-1]])
    normal_x = -tangent[:, 1] / np.hypot(tangent[:, 0], tangent[:, 1])
    return p, normal_x, width, height
