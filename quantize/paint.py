"""Procedural painting shared by the synthetic renderers: seeded uniform blocks, fabrics,
backgrounds (photo cuts and drawn scenes), clutter, fixed-point drawing and camera degradation.

Everything draws from a caller's ``numpy`` Generator, so a render stays a pure function of its
seed. Scalar ``Generator`` calls cost microseconds each, so random numbers are drawn in blocks
(:func:`uniforms`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import lru_cache

import cv2
import numpy as np

SHIFT = 4  # fractional bits for sub-pixel OpenCV drawing
ONE = 1 << SHIFT
SKIN_TONES = np.array(
    [[255, 224, 196], [234, 192, 160], [198, 146, 110], [150, 100, 70], [92, 58, 40]], np.float32
)
HAIR_TONES = np.array(
    [[20, 16, 14], [60, 40, 26], [110, 75, 40], [200, 170, 110], [150, 150, 150]], np.float32
)

Uniform = Callable[..., float]


def uniforms(rng: np.random.Generator, n: int) -> Uniform:
    """``u(lo=0, hi=1)`` returning successive values of one block of ``n`` uniform draws."""
    block = iter(rng.random(n).tolist())
    return lambda lo=0.0, hi=1.0: lo + (hi - lo) * next(block)


@lru_cache(maxsize=4)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``x, y`` of a row-major ``size x size`` image, float32
    ``[size * size]`` each."""
    y, x = np.divmod(np.arange(size * size, dtype=np.float32), size)
    return x, y


def random_colour(u: Uniform) -> np.ndarray:
    return np.array([u(0, 255), u(0, 255), u(0, 255)], np.float32)


def smooth_noise(
    rng: np.random.Generator, size: int, cells: int, low: float, high: float
) -> np.ndarray:
    """Low-frequency colour noise in ``[low, high]``, float32 ``[size, size, 3]``."""
    small = low + (high - low) * rng.random((cells, cells, 3), dtype=np.float32)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)


def fabric_pattern(rng: np.random.Generator, x: np.ndarray, y: np.ndarray,
                   plain: bool) -> np.ndarray:
    """A fabric's weight of its second colour at pixels ``x, y [M]``: float32 ``[M]`` in
    [0, 1], all 0 for a solid fabric, else stripes, checks or blotches."""
    u = uniforms(rng, 8)
    kind = 0 if plain or u() < 0.3 else 1 + int(3 * u())
    if kind == 0:
        return np.zeros(x.size, np.float32)
    angle, period = u(0, math.pi), u(3, 12)
    c, s = math.cos(angle) / period, math.sin(angle) / period
    along, across = x * c + y * s, y * c - x * s
    if kind == 1:  # stripes
        return ((along + u()) % 1.0 < u(0.2, 0.6)).astype(np.float32)
    if kind == 2:  # checks
        return ((np.floor(along) + np.floor(across)) % 2).astype(np.float32)
    # Blotches: two slow waves.
    return 0.5 + 0.25 * (np.sin(along * u(0.2, 0.6) + u(0, 6.3)) + np.sin(across * u(0.2, 0.6)))


def mix(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Blend colours ``[3, M]`` (or ``[3, 1]``) by ``weight [M]``: float32 ``[3, M]``.

    Colours run along the first axis because numpy is several times slower when broadcasting
    over a trailing axis of length 3.
    """
    return first + (second - first) * weight


def to_pixels(colours: np.ndarray) -> np.ndarray:
    """Channel-first float colours ``[3, M]`` as uint8 pixels ``[M, 3]``."""
    return np.clip(colours, 0, 255).T.astype(np.uint8)


#: Photographs bundled in scikit-image's wheel (a pinned dependency, so every machine renders
#: the same scenes): places and things without people, which would be unlabelled figures.
PHOTOS = ("brick.png", "chelsea.png", "coffee.png", "grass.png", "gravel.png", "rocket.jpg",
          "motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg", "coins.png",
          "moon.png", "page.png")
PHOTO_SHARE = 0.4  #: share of backgrounds cut from a photograph


@lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """The :data:`PHOTOS` as RGB uint8 arrays (grey ones repeated to three channels)."""
    from importlib import resources

    from PIL import Image  # not cv2: libpng warns on stderr about one photo's colour profile

    folder = resources.files("skimage") / "data"
    return tuple(np.asarray(Image.open(folder / name).convert("RGB")) for name in PHOTOS)


def photo_cut(u: Uniform, size: int) -> np.ndarray:
    """A random square cut of a random photo, mirrored at random and with its contrast and
    brightness jittered, float32 ``[size, size, 3]``."""
    photo = photos()[min(int(u() * len(PHOTOS)), len(PHOTOS) - 1)]
    h, w = photo.shape[:2]
    side = int(min(h, w) * u(0.2, 1.0))
    x0, y0 = int(u() * (w - side)), int(u() * (h - side))
    cut = photo[y0:y0 + side, x0:x0 + side]
    if u() < 0.5:
        cut = cut[:, ::-1]
    img = cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return img * u(0.6, 1.3) + u(-40, 40)


def scene_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered scene, uint8 ``[size, size, 3]``: a photo or a drawn one."""
    u = uniforms(rng, 24)
    x, y = pixel_grid(size)
    kind = u()
    first, second = random_colour(u)[:, None], random_colour(u)[:, None]
    if kind < PHOTO_SHARE:
        img = photo_cut(u, size)
    elif kind < 0.85:
        if kind < 0.65:  # linear gradient
            angle = u(0, 2 * math.pi)
            weight = (x * math.cos(angle) + y * math.sin(angle)) / (2 * size) + 0.5
        else:
            weight = fabric_pattern(rng, x, y, plain=False)
        img = cv2.merge(list(mix(first, second, weight).reshape(3, size, size)))
    else:
        img = smooth_noise(rng, size, 2 + int(8 * u()), 0, 255)
    amplitude = u(0, 30)
    img += smooth_noise(rng, size, 4 + int(12 * u()), -amplitude, amplitude)
    img = np.clip(img, 0, 255, out=img).astype(np.uint8)
    # A photo is cluttered already; drawn scenes get more shapes.
    for _ in range(int(6 * u()) if kind < PHOTO_SHARE else 2 + int(13 * u())):
        clutter(img, uniforms(rng, 14), size)
    return img


def fixed_pt(x: float, y: float) -> tuple[int, int]:
    return round(x * ONE), round(y * ONE)


def fixed_points(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates ``[K, 2]`` as OpenCV fixed-point int32."""
    return np.rint(points * ONE).astype(np.int32)


def clutter(img: np.ndarray, u: Uniform, size: int) -> None:
    """Draw one random rectangle, ellipse, line, limb-like stroke or triangle onto ``img``."""
    colour = (u(0, 255), u(0, 255), u(0, 255))
    cx, cy = u(-0.1, 1.1) * size, u(-0.1, 1.1) * size
    w, h = u(0.04, 0.5) * size, u(0.04, 0.5) * size
    angle = u(0, 360)
    thickness = -1 if u() < 0.6 else 1 + int(3 * u())
    kind = int(5 * u())
    if kind == 0:
        box = fixed_points(cv2.boxPoints(((cx, cy), (w, h), angle)))
        if thickness < 0:
            cv2.fillConvexPoly(img, box, colour, cv2.LINE_AA, SHIFT)
        else:
            cv2.polylines(img, [box], True, colour, thickness, cv2.LINE_AA, SHIFT)
    elif kind == 1:
        cv2.ellipse(img, fixed_pt(cx, cy), fixed_pt(w / 2, h / 2), angle, 0, 360, colour, thickness,
                    cv2.LINE_AA, SHIFT)
    elif kind in (2, 3):
        rad = math.radians(angle)
        end = fixed_pt(cx + w * math.cos(rad), cy + w * math.sin(rad))
        # Limb-thick strokes too, so that the network cannot take every capsule for a limb.
        width = 1 + int(3 * u()) if kind == 2 else int(u(0.03, 0.1) * size)
        cv2.line(img, fixed_pt(cx, cy), end, colour, width, cv2.LINE_AA, SHIFT)
    else:
        tri = np.array([[cx, cy], [cx + w, cy + u(-h, h)], [cx + u(-w, w), cy + h]])
        cv2.fillConvexPoly(img, fixed_points(tri), colour, cv2.LINE_AA, SHIFT)


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, colour jitter and sensor noise, each applied at random."""
    u = uniforms(rng, 12)
    if u() < 0.35:
        img = cv2.GaussianBlur(img, (0, 0), u(0.4, 1.3))
    if u() < 0.5:
        gain, offset = u(0.7, 1.3), u(-25, 25)
        jitter = np.diag([gain * u(0.9, 1.1), gain * u(0.9, 1.1), gain * u(0.9, 1.1)])
        img = cv2.transform(img, np.hstack([jitter, np.full((3, 1), offset)]))
    if u() < 0.5:
        # Uniform noise of standard deviation 2-10 from raw random bytes: Gaussian draws would
        # cost a third of the whole render.
        width = u(2, 10) * math.sqrt(12)
        noise = np.frombuffer(rng.bytes(img.size), np.uint8).reshape(img.shape)
        img = cv2.addWeighted(img, 1.0, noise, width / 255, -width / 2)
    return img


def stack_renders(render: Callable[[int, int], dict], seeds: Iterable[int], size: int,
                  n_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``render(seed, size)`` of every seed, stacked: images uint8 ``[N, size, size, 3]``,
    keypoints float32 ``[N, n_points, 2]``, visible bool ``[N, n_points]``."""
    seeds = [int(s) for s in seeds]
    images = np.empty((len(seeds), size, size, 3), np.uint8)
    keypoints = np.empty((len(seeds), n_points, 2), np.float32)
    visible = np.empty((len(seeds), n_points), bool)
    for i, seed in enumerate(seeds):
        sample = render(seed, size)
        images[i], keypoints[i] = sample["image"], sample["keypoints"]
        visible[i] = sample["visible"]
    return images, keypoints, visible
