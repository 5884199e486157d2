"""Seeded renderer of realistic people: Anny bodies (``anny_body``) posed by ``body_poses``,
dressed by painting their vertices (clothes, hair, and the face, neckline and chest print that
tell a front from a back), rasterised with OpenGL (``mesh_raster``) over real photographs,
labelled with COCO's 17 and MPII's 16 joints.

A scene is framed as photographs frame people: facing the camera more often than not
(``body_poses.photo_yaw``); the whole body, knees up, waist up, chest up, or cut by an edge of
the frame; other people stand in front of or behind the person, tables and
poles hide parts of them; two lights and ambient light them, the key light casting shadows in
some scenes and shining from behind the person in others; blur, noise, colour jitter and JPEG
artefacts come last. Labels are exact: the joints of the posed mesh, projected by the camera
that drew it. A joint is ``labelled`` when it falls inside the frame (hidden joints stay
labelled, as in MPII and COCO) and ``hidden`` when the depth test finds something in front of
it: no pixel of the person within one pixel of it lies less than ``HIDDEN_DEPTH`` in front.

Every number of a scene comes from its seed (:func:`sample_scene`), so a seed renders the
same image whichever batch it is rendered in. Training seeds are ``TRAIN_SEED_OFFSET + i``,
held-out ones ``EVAL_SEED_OFFSET + i``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from bnnpose.host.codec import inside_image
from bnnpose.host.common import BnnposeError, atomic_writer, run_main, versions, write_json
from bnnpose.host import preprocess
from bnnpose.host.preprocess import person_crop, warp
from bnnpose.host.skeleton import COCO_JOINTS, MPII_JOINTS
from bnnpose.quantize import anny_body, backgrounds, body_poses, mesh_raster, paint
from bnnpose.quantize.anny_body import PARTS, Body, load_body, pose_bodies, unit
from bnnpose.quantize.code_digest import sources_digest as code_digest
from bnnpose.quantize.mesh_raster import Camera, Lights, Mesh, rasterize
from bnnpose.quantize.paint import (
    HAIR_TONES,
    SKIN_TONES,
    degrade,
    fabric_pattern,
    photos,
    scene_background,
)

TRAIN_SEED_OFFSET = 0
EVAL_SEED_OFFSET = 10_000_000
#: Side of the frame a crop is cut from (as the stick renderer's ``CROP_CANVAS``).
CANVAS = 192
NUM_COCO = len(COCO_JOINTS)
#: A joint lies inside the body; a surface nearer than this in front of it hides it.
HIDDEN_DEPTH = 0.15
#: Framings and their shares: upper bodies (waist and chest up) are over a third of samples.
FRAMINGS = {"full": 0.3, "knees": 0.2, "waist": 0.28, "chest": 0.1, "cut": 0.12}
UPPER_BODY = ("waist", "chest")
PERSON, OTHERS, OCCLUDER = 1, 2, 100  #: ids in the rendered id image
#: Detector-like person boxes. A detector's box is looser than the person's pixels: on the
#: footage of ``make realset`` HOG's boxes are 1.45-1.55 times as tall as the labelled joints
#: reach, the multi-view ones 1.2, the box around a render's person pixels 1.1. So that the
#: network meets people at the scales the host's finder hands it, the pixel box grows by a
#: factor log-uniform in BOX_GROWTH and shifts by up to BOX_SHIFT_JITTER of its size.
BOX_GROWTH, BOX_SHIFT_JITTER = (0.9, 1.6), 0.06
SHARD = 512  #: samples per cache shard
#: Share of scenes whose background is a cut of a real photograph (the package library of
#: ``backgrounds`` and scikit-image's); the rest get a drawn scene.
PHOTO_SHARE = 0.8
#: Share of scenes whose key light casts shadows. A shadow pass costs llvmpipe about as much as
#: the picture itself, so not every scene gets one.
SHADOW_SHARE = 0.4
#: Share of scenes lit from behind the person.
BACKLIT_SHARE = 0.12
#: What tells a person's front from their back when the light is poor: a face with brows,
#: lips and sometimes a beard; a top open lower at the front than at the back (NECKLINES:
#: depth at the middle in metres below the neck's base, half width, V-shaped); a print on
#: the front of some tops (PRINT_SHARE).
NECKLINES = ((0.01, 0.07, False), (0.04, 0.08, False), (0.09, 0.07, True), (0.07, 0.11, False))
PRINT_SHARE = 0.35


@dataclass(frozen=True)
class Outfit:
    skin: np.ndarray  #: float32 [3] in 0..1
    hair: np.ndarray
    top: tuple[np.ndarray, np.ndarray]  #: two colours of the top's fabric
    bottom: tuple[np.ndarray, np.ndarray]
    shoes: np.ndarray
    sleeves: int  #: 0 sleeveless ... 4 long sleeves (see _SLEEVES)
    legs: int  #: 0 briefs ... 4 long trousers (see _LEGS)
    hair_length: float  #: metres below the crown the hair reaches at the back
    top_seed: int  #: fabric patterns
    bottom_seed: int
    beard: float  #: 0 clean-shaven ... 1 a full beard, a shade darker than the hair
    neckline: int  #: the top's front opening, an index into NECKLINES
    chest_print: tuple[np.ndarray, np.ndarray] | None  #: a print's two colours, or none
    print_seed: int  #: its pattern, place and size


@dataclass(frozen=True)
class Person:
    phenotype: np.ndarray  #: float64 [6], anny_body.PHENOTYPES
    rotations: np.ndarray  #: float64 [bones, 3, 3]
    family: str  #: body_poses family
    yaw: float  #: degrees about the vertical, 0 facing the camera (body_poses.photo_yaw)
    offset: np.ndarray  #: metres (x, y) from the main person (y away from the camera)
    outfit: Outfit


@dataclass(frozen=True)
class Box:
    """An occluder: an axis-aligned box in the main person's frame."""

    centre: np.ndarray  #: metres; z from the height of the person's hip joints
    size: np.ndarray  #: metres (x, y, z)
    colour: np.ndarray  #: float32 [3]


@dataclass(frozen=True)
class Scene:
    people: list[Person]  #: the labelled person first, then the others
    framing: str
    elevation: float  #: degrees, camera above (+) or below the person's centre
    fov: float
    roll: float
    fill: float  #: fraction of the frame the framed extent covers
    shift: np.ndarray  #: (x, z) shift of the frame, fractions of its half size ("cut")
    cut: float  #: "knees"/"waist"/"chest": where the frame's lower edge cuts, metres offset
    lights: Lights
    occluders: list[Box] = field(default_factory=list)
    seed: int = 0  #: background, box jitter and degradations draw from [seed, 1..3]

    @property
    def backlit(self) -> bool:
        """The key light is behind the person (view space z away from the camera): the
        background is overexposed."""
        return bool(self.lights.key[2] < 0)


def _outfit(rng: np.random.Generator) -> Outfit:
    def colour():
        # Fabrics: mostly muted, some saturated; linear 0..1.
        base = rng.uniform(0.05, 0.95, 3)
        grey = base.mean()
        return (grey + (base - grey) * rng.uniform(0.2, 1.0)).astype(np.float32)

    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] / 255 * rng.uniform(0.85, 1.1)
    hair = HAIR_TONES[rng.integers(len(HAIR_TONES))] / 255
    return Outfit(
        skin=skin.astype(np.float32), hair=hair.astype(np.float32),
        top=(colour(), colour()), bottom=(colour(), colour()),
        shoes=(colour() * rng.uniform(0.2, 0.8)).astype(np.float32),
        sleeves=int(rng.choice(5, p=[0.12, 0.05, 0.33, 0.1, 0.4])),
        legs=int(rng.choice(5, p=[0.03, 0.1, 0.17, 0.1, 0.6])),
        hair_length=float(rng.choice([0.0, 0.08, 0.16, 0.3], p=[0.1, 0.45, 0.25, 0.2])),
        top_seed=int(rng.integers(2**31)), bottom_seed=int(rng.integers(2**31)),
        beard=float(rng.uniform(0.3, 1.0) if rng.random() < 0.25 else 0.0),
        neckline=int(rng.integers(len(NECKLINES))),
        chest_print=(colour(), colour()) if rng.random() < PRINT_SHARE else None,
        print_seed=int(rng.integers(2**31)))


def _person(rng: np.random.Generator, body: Body, offset) -> Person:
    phenotype = rng.uniform(0, 1, len(anny_body.PHENOTYPES))
    phenotype[1] = rng.uniform(0.45, 1.0)  # age: teenagers to the old, no children
    family, rotations = body_poses.sample_pose(rng, body.hinge, body.bone)
    return Person(phenotype, rotations, family, float(body_poses.photo_yaw(rng.uniform)),
                  np.asarray(offset, np.float64), _outfit(rng))


def sample_scene(seed: int, body: Body | None = None) -> Scene:
    """Every number of the scene of ``seed``."""
    body = body or load_body()
    rng = np.random.default_rng([seed, 0])
    people = [_person(rng, body, (0.0, 0.0))]
    for _ in range(int(rng.choice(3, p=[0.5, 0.3, 0.2]))):
        side = rng.choice([-1, 1])
        near = rng.random() < 0.4
        offset = (side * rng.uniform(0.45, 1.5),
                  -rng.uniform(0.6, 1.4) if near else rng.uniform(0.5, 4.0))
        people.append(_person(rng, body, offset))
    framing = str(rng.choice(list(FRAMINGS), p=list(FRAMINGS.values())))
    shift = np.zeros(2)
    if framing == "cut":
        axis = int(rng.integers(2))
        shift[axis] = rng.choice([-1, 1]) * rng.uniform(0.35, 0.8)
    # View space, towards the lights: x right, y up, z towards the camera. A backlit person
    # (key light behind them, as against a window or the sun) shows the camera its shaded
    # side in front of a bright background.
    backlit = bool(rng.random() < BACKLIT_SHARE)
    key = unit([rng.uniform(-1, 1), rng.uniform(0.2, 1),
                rng.uniform(0.3, 1) * (-1 if backlit else 1)])
    fill = unit([-key[0], rng.uniform(-0.3, 0.5), rng.uniform(0.3, 1)])
    strengths = (rng.uniform(0.5, 0.9), rng.uniform(0.1, 0.35), rng.uniform(0.2, 0.45))
    shadows = bool(rng.random() < SHADOW_SHARE)
    occluders = []
    upper = framing in UPPER_BODY or people[0].family == "sitting"
    if rng.random() < (0.45 if upper else 0.12):  # a table (a slab) or a desk in front
        sitting = people[0].family == "sitting"
        top = rng.uniform(0.0, 0.25) if sitting else rng.uniform(-0.25, 0.0)
        height = rng.uniform(0.03, 0.06) if rng.random() < 0.5 else rng.uniform(0.5, 0.8)
        occluders.append(Box(centre=np.array([rng.uniform(-0.3, 0.3), -rng.uniform(0.35, 0.6),
                                              top - height / 2]),
                             size=np.array([rng.uniform(1.0, 2.2), rng.uniform(0.5, 0.9),
                                            height]),
                             colour=rng.uniform(0.1, 0.9, 3).astype(np.float32)))
    if rng.random() < 0.12:  # a pole or post
        occluders.append(Box(centre=np.array([rng.uniform(-0.5, 0.5), -rng.uniform(0.4, 1.2),
                                              0.0]),
                             size=np.array([rng.uniform(0.04, 0.16), rng.uniform(0.04, 0.16),
                                            4.0]),
                             colour=rng.uniform(0.1, 0.9, 3).astype(np.float32)))
    return Scene(people=people, framing=framing, elevation=float(rng.uniform(-15, 35)),
                 fov=float(rng.uniform(35, 60)), roll=float(np.clip(rng.normal(0, 8), -25, 25)),
                 fill=float(rng.uniform(0.6, 0.92)), shift=shift,
                 cut=float(rng.uniform(-0.06, 0.12)),
                 lights=Lights(key, fill, strengths, shadows), occluders=occluders, seed=seed)


# Parts each sleeve / leg length covers, cumulatively.
_SLEEVES = ("shoulder", "upperarm01", "upperarm02", "lowerarm01", "lowerarm02")
_LEGS = ("hips", "upperleg01", "upperleg02", "lowerleg01", "lowerleg02")
_P = {name: i for i, name in enumerate(PARTS)}
_HIPS = (MPII_JOINTS.index("l_hip"), MPII_JOINTS.index("r_hip"))


def paint_body(body: Body, outfit: Outfit) -> np.ndarray:
    """Vertex colours float32 ``[V, 3]`` in 0..1: skin, hair, eyes, a top, a bottom, shoes;
    fabrics patterned in rest-pose centimetres, so a pattern moves with the cloth."""
    part, rest = body.part, body.rest
    colours = np.repeat(outfit.skin[None], len(part), 0)
    sleeves = [_P[p] for p in _SLEEVES[1:outfit.sleeves + 1]]
    top = np.isin(part, [_P["chest"], _P["belly"], *sleeves])
    if outfit.sleeves:
        top |= part == _P["shoulder"]
    bottom = np.isin(part, [_P[p] for p in _LEGS[: outfit.legs + 1]])
    for mask, (first, second), seed in ((top, outfit.top, outfit.top_seed),
                                        (bottom, outfit.bottom, outfit.bottom_seed)):
        x, z = rest[mask, 0] * 100 + rest[mask, 1] * 60, rest[mask, 2] * 100
        w = fabric_pattern(np.random.default_rng(seed), x, z, plain=False)
        colours[mask] = first + (second - first) * w[:, None]
    colours[part == _P["foot"]] = outfit.shoes
    _front_details(body, outfit, top, colours)
    colours[part == _P["eyes"]] = 0.08
    if outfit.hair_length > 0:
        crown = rest[body.crown]
        head = part == _P["head"]
        # Hair: the top of the head, down to the hair length at the back.
        back = rest[:, 1] > crown[1] + 0.02
        cap = rest[:, 2] > crown[2] - 0.06
        hair = head & (cap | (back & (rest[:, 2] > crown[2] - 0.12 - outfit.hair_length)))
        hair |= (part == _P["neck"]) & back & (rest[:, 2] > crown[2] - 0.1 - outfit.hair_length)
        colours[hair] = outfit.hair
    return colours


@lru_cache(maxsize=1)
def _face_regions(body: Body) -> dict:
    """Where :func:`_front_details` paints whatever the outfit, from the rest mesh once per
    body (it would otherwise cost a third of painting each person). Places are in the rest
    mesh's metres, from its eyes: x to the body's left, y towards its back, z up."""
    part, rest = body.part, body.rest
    x, y, z = rest[:, 0], rest[:, 1], rest[:, 2]
    eyes = rest[part == _P["eyes"]]
    ez, ey = eyes[:, 2].mean(), eyes[:, 1].mean()
    face = (part == _P["head"]) & (y < ey + 0.02)
    ax = np.abs(x)
    arch = 0.005 * np.clip(1 - ((ax - 0.03) / 0.025) ** 2, 0, 1)
    mouth_z = ez - 0.073
    lips = face & (y < ey - 0.015) & (np.abs(z - mouth_z) < 0.009 * np.sqrt(
        np.clip(1 - (x / 0.025) ** 2, 0, 1)))
    return {
        "beard": face & (z < ez - 0.045),
        "brows": face & (ax > 0.008) & (ax < 0.055) & (z > ez + 0.011 + arch)
                 & (z < ez + 0.02 + arch),
        "lips": lips, "mouth": lips & (np.abs(z - mouth_z) < 0.0015),
        "front": y < rest[part == _P["chest"], 1].mean(),
        "neck_base": z[part == _P["neck"]].min(),
    }


def _front_details(body: Body, outfit: Outfit, top: np.ndarray, colours: np.ndarray) -> None:
    """Paint the face (brows, lips, beard), the top's neckline and its chest print onto
    ``colours`` (places as in :func:`_face_regions`)."""
    r = _face_regions(body)
    x, z = body.rest[:, 0], body.rest[:, 2]
    if outfit.beard:
        colours[r["beard"]] += (outfit.hair * 0.8 - colours[r["beard"]]) * outfit.beard
    colours[r["brows"]] = np.minimum(outfit.hair, outfit.skin * 0.45)
    colours[r["lips"]] = outfit.skin * np.array([0.72, 0.45, 0.45], np.float32)
    colours[r["mouth"]] = outfit.skin * 0.25

    depth, half, v_shape = NECKLINES[outfit.neckline]
    ax, neck_base = np.abs(x), r["neck_base"]
    reach = depth * (1 - ax / half) if v_shape else depth * np.sqrt(
        np.clip(1 - (x / half) ** 2, 0, 1))
    opening = top & r["front"] & (ax < half) & (z > neck_base + 0.02 - reach)
    colours[opening] = outfit.skin
    if outfit.chest_print is not None:
        rng = np.random.default_rng(outfit.print_seed)
        cx, cz = rng.uniform(-0.04, 0.04), neck_base - rng.uniform(0.1, 0.17)
        hx, hz = rng.uniform(0.04, 0.09), rng.uniform(0.03, 0.08)
        round_ = rng.random() < 0.4
        d = ((x - cx) / hx) ** 2 + ((z - cz) / hz) ** 2 if round_ else np.maximum(
            np.abs(x - cx) / hx, np.abs(z - cz) / hz)
        mark = top & r["front"] & ~opening & (d < 1)
        w = fabric_pattern(rng, x[mark] * 200, z[mark] * 200, plain=False)
        first, second = outfit.chest_print
        colours[mark] = first + (second - first) * w[:, None]


def _box_mesh(box: Box, hips: float, ident: int) -> Mesh:
    corners = np.array([[x, y, z] for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)])
    vertices = box.centre + [0.0, 0.0, hips] + corners * box.size
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return Mesh(vertices.astype(np.float32), np.repeat(box.colour[None], 8, 0), faces, ident)


def _rot_z(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _place(vertices: np.ndarray, joints: np.ndarray, person: Person
           ) -> tuple[np.ndarray, np.ndarray]:
    """Turn a posed body by its yaw about its pelvis and move it to its offset."""
    pelvis = joints[NUM_COCO + MPII_JOINTS.index("pelvis")].copy()
    pelvis[2] = 0
    m = _rot_z(person.yaw)
    shift = np.array([person.offset[0], person.offset[1], 0.0])
    return ((vertices - pelvis) @ m.T + shift).astype(np.float32), (joints - pelvis) @ m.T + shift


def _camera(scene: Scene, vertices: np.ndarray, joints: np.ndarray) -> Camera:
    """Frame the main person as the scene's framing asks."""
    # Headroom: perspective lifts a head leaning towards the camera above its height.
    top = vertices[:, 2].max() + 0.06
    lo, hi = vertices.min(0), vertices.max(0)
    j = {name: joints[NUM_COCO + i] for i, name in enumerate(MPII_JOINTS)}
    if scene.framing in ("full", "cut"):
        half = max(hi[2] - lo[2], hi[0] - lo[0]) / 2 / scene.fill
        centre = (lo + hi) / 2
        centre[0] += scene.shift[0] * half
        centre[2] += scene.shift[1] * half
    else:
        bottom = {"knees": (j["l_knee"][2] + j["r_knee"][2]) / 2,
                  "waist": (j["l_hip"][2] + j["r_hip"][2]) / 2,
                  "chest": (j["thorax"][2] + j["pelvis"][2]) / 2}[scene.framing] + scene.cut
        upper = vertices[vertices[:, 2] > bottom]
        width = upper[:, 0].max() - upper[:, 0].min() if len(upper) else 0.5
        half = max((top - bottom) / 2, width / 2 / scene.fill)
        centre = np.array([(upper[:, 0].max() + upper[:, 0].min()) / 2 if len(upper) else 0,
                           0.0, bottom + half])
    distance = half / math.tan(math.radians(scene.fov) / 2)
    e = math.radians(scene.elevation)
    eye = centre + distance * np.array([0.0, -math.cos(e), math.sin(e)])
    return Camera(eye=eye, target=centre, fov=scene.fov, roll=scene.roll,
                  near=max(0.05, distance / 20), far=distance + 20)


@dataclass
class Frame:
    """One rendered scene: the picture, its labels and what the renderer saw."""

    image: np.ndarray  #: uint8 [H, W, 3]
    coco: np.ndarray  #: float32 [17, 2] pixels
    mpii: np.ndarray  #: float32 [16, 2] pixels
    labelled: np.ndarray  #: bool [33] inside the frame (COCO then MPII)
    hidden: np.ndarray  #: bool [33] in the frame, behind something
    ident: np.ndarray  #: int16 [H, W] object ids (PERSON, OTHERS + k, OCCLUDER + k)
    depth: np.ndarray  #: float32 [H, W] metres along the view axis
    joint_depth: np.ndarray  #: float32 [33]
    background: np.ndarray  #: uint8 [H, W, 3]


def render_scenes(scenes: list[Scene], size: int = CANVAS, *, clean: bool = False,
                  body: Body | None = None) -> list[Frame]:
    """Render ``scenes`` on ``size`` x ``size`` frames; ``clean`` skips the degradations."""
    body = body or load_body()
    people = [p for s in scenes for p in s.people]
    vertices, joints = pose_bodies(body, np.stack([p.phenotype for p in people]),
                                   np.stack([p.rotations for p in people]))
    frames, k = [], 0
    for scene in scenes:
        meshes, main_joints, main_vertices = [], None, None
        for i, person in enumerate(scene.people):
            v, jt = _place(vertices[k], joints[k], person)
            k += 1
            if i == 0:
                main_joints, main_vertices = jt, v
            meshes.append(Mesh(v, paint_body(body, person.outfit), body.faces,
                               PERSON if i == 0 else OTHERS + i))
        hips = (main_joints[NUM_COCO + _HIPS[0], 2] + main_joints[NUM_COCO + _HIPS[1], 2]) / 2
        meshes += [_box_mesh(b, hips, OCCLUDER + i) for i, b in enumerate(scene.occluders)]
        camera = _camera(scene, main_vertices, main_joints)
        colour, ident, depth = rasterize(meshes, camera, scene.lights, size)
        frames.append(_frame(scene, camera, colour, ident, depth, main_joints, size, clean))
    return frames


def _frame(scene: Scene, camera: Camera, colour, ident, depth, joints, size: int,
           clean: bool) -> Frame:
    xy, jdepth = camera.project(joints, size)
    labelled = inside_image(xy, (size, size))
    hidden = _hidden(xy, jdepth, labelled, ident, depth)
    background = _background(np.random.default_rng([scene.seed, 1]), size, scene.backlit)
    drawn = ident > 0
    image = background.copy()
    image[drawn] = np.clip(colour[drawn] * 255 + 0.5, 0, 255).astype(np.uint8)
    if not clean:
        image = _degrade(image, np.random.default_rng([scene.seed, 2]))
    return Frame(image, xy[:NUM_COCO].astype(np.float32), xy[NUM_COCO:].astype(np.float32),
                 labelled, hidden, ident, depth, jdepth.astype(np.float32), background)


def _background(rng: np.random.Generator, size: int, backlit: bool = False) -> np.ndarray:
    if backlit:  # exposed for the person in front: the light behind them burns out
        return _overexpose(_background(rng, size), rng)
    if rng.random() >= PHOTO_SHARE:
        return scene_background(rng, size)
    library = backgrounds.library() + photos()
    photo = library[int(rng.integers(len(library)))]
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.25, 1.0))
    x0, y0 = int(rng.integers(w - side + 1)), int(rng.integers(h - side + 1))
    cut = photo[y0:y0 + side, x0:x0 + side]
    if rng.random() < 0.5:
        cut = cut[:, ::-1]
    img = cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.clip(img * rng.uniform(0.7, 1.25) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)


def _overexpose(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gain, lift = rng.uniform(1.3, 1.8), rng.uniform(10, 50)
    return np.clip(image.astype(np.float32) * gain + lift, 0, 255).astype(np.uint8)


def _hidden(xy, jdepth, labelled, ident, depth) -> np.ndarray:
    """The depth test: a labelled joint is hidden unless a person pixel within one pixel of it
    lies at most ``HIDDEN_DEPTH`` in front of it (a joint at the silhouette's edge, such as the
    crown, may round onto the background)."""
    hidden = np.zeros(len(xy), bool)
    for j in np.flatnonzero(labelled):
        c, r = np.round(xy[j]).astype(int)
        rs, cs = slice(max(r - 1, 0), r + 2), slice(max(c - 1, 0), c + 2)
        near = (ident[rs, cs] == PERSON) & (jdepth[j] - depth[rs, cs] <= HIDDEN_DEPTH)
        hidden[j] = not near.any()
    return hidden


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = degrade(image, rng)
    if rng.random() < 0.4:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY,
                                                int(rng.integers(25, 90))])
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return image


def person_box(frame: Frame, seed: int) -> np.ndarray:
    """A detector-like box (x0, y0, x1, y1) around the person's pixels in the frame, grown and
    shifted (see ``BOX_GROWTH``); around their labelled joints when something hides the whole
    person."""
    rows, cols = np.nonzero(frame.ident == PERSON)
    if len(rows) >= 30:
        lo = np.array([cols.min(), rows.min()], np.float64) - 0.5
        hi = np.array([cols.max(), rows.max()], np.float64) + 0.5
    else:
        pts = np.concatenate([frame.coco, frame.mpii])[frame.labelled]
        pts = pts if len(pts) else np.concatenate([frame.coco, frame.mpii])
        lo, hi = pts.min(0).astype(np.float64), pts.max(0).astype(np.float64) + 1
    u = np.random.default_rng([seed, 3]).uniform(-1, 1, 3)
    half = (hi - lo) / 2
    centre = (lo + hi) / 2 + 2 * half * BOX_SHIFT_JITTER * u[:2]
    low, high = np.log(BOX_GROWTH)
    half *= np.exp(low + (high - low) * (u[2] + 1) / 2)
    return np.concatenate([centre - half, centre + half])


def crop_samples(seeds, size: int = 128, *, clean: bool = False) -> list[dict]:
    """Network inputs: each seed's frame cut out around its person box as the host does at
    inference (``host.preprocess``).

    Returns per seed ``image`` uint8 ``[size, size, 3]``, ``keypoints`` float32 ``[16, 2]``
    (MPII, crop pixels), ``visible`` bool ``[16]`` (labelled and inside the crop), ``hidden``
    bool ``[16]``, ``coco`` float32 ``[17, 2]``, ``coco_vis`` int8 ``[17]`` (COCO's 0/1/2),
    ``framing`` and ``family``; with ``clean`` also the ``frame``.
    """
    body = load_body()
    seeds = [int(s) for s in seeds]
    scenes = [sample_scene(s, body) for s in seeds]
    out = []
    for seed, scene, frame in zip(seeds, scenes, render_scenes(scenes, CANVAS, clean=clean,
                                                                 body=body), strict=True):
        crop = person_crop(frame.image.shape, person_box(frame, seed), (size, size))
        mpii = crop.to_crop(frame.mpii).astype(np.float32)
        coco = crop.to_crop(frame.coco).astype(np.float32)
        inside = inside_image(np.concatenate([coco, mpii]), (size, size)) & frame.labelled
        vis = np.where(inside, np.where(frame.hidden, 1, 2), 0).astype(np.int8)
        sample = {"image": warp(frame.image, crop), "keypoints": mpii,
                  "visible": inside[NUM_COCO:],
                  "hidden": frame.hidden[NUM_COCO:] & inside[NUM_COCO:],
                  "coco": coco, "coco_vis": vis[:NUM_COCO], "framing": scene.framing,
                  "family": scene.people[0].family}
        if clean:
            sample["frame"] = frame
            sample["crop"] = crop
        out.append(sample)
    return out


def render_batch(seeds, size: int = 128) -> dict[str, np.ndarray]:
    """:func:`crop_samples` of ``seeds`` stacked into arrays (framing and family as indices
    into :data:`FRAMINGS` and ``body_poses.FAMILIES``)."""
    samples = crop_samples(seeds, size)
    families = [f.name for f in body_poses.FAMILIES]
    return {
        "images": np.stack([s["image"] for s in samples]),
        "keypoints": np.stack([s["keypoints"] for s in samples]),
        "visible": np.stack([s["visible"] for s in samples]),
        "hidden": np.stack([s["hidden"] for s in samples]),
        "coco": np.stack([s["coco"] for s in samples]),
        "coco_vis": np.stack([s["coco_vis"] for s in samples]),
        "framing": np.array([list(FRAMINGS).index(s["framing"]) for s in samples], np.int8),
        "family": np.array([families.index(s["family"]) for s in samples], np.int8),
    }


def _render_shard(args: tuple[int, int, int, str]) -> tuple[str, float]:
    start, stop, size, path = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t = time.perf_counter()
    arrays = render_batch(range(start, stop), size)
    with atomic_writer(path) as f:
        np.savez_compressed(f, **arrays)
    return path, time.perf_counter() - t


def sources_digest() -> str:
    """Digest of the code that decides a render and of the background library: part of the
    cache's name."""
    code = code_digest(anny_body, body_poses, mesh_raster, paint, preprocess,
                       sys.modules[__name__])
    return hashlib.sha256((code + backgrounds.library_digest()).encode()).hexdigest()[:10]


def cached_renders(n: int, seed_offset: int, size: int, cache_dir: str | os.PathLike,
                   workers: int = 1) -> dict[str, np.ndarray]:
    """:func:`render_batch` of seeds ``seed_offset .. seed_offset + n``, rendered once into
    shards of :data:`SHARD` samples under ``cache_dir`` with a ``manifest.json`` (seeds,
    versions, render time); ``workers`` processes render shards side by side."""
    code = sources_digest()  # parses the renderer's modules: once, for name and manifest
    folder = Path(cache_dir) / f"mesh-{code}-s{size}"
    end = seed_offset + n
    jobs = [(s, min(s + SHARD, end), size, str(folder / f"{s}-{min(s + SHARD, end)}.npz"))
            for s in range(seed_offset, end, SHARD)]
    todo = [j for j in jobs if not Path(j[3]).exists()]
    if todo:
        load_body()  # a missing cache or library fails here, once, not in every worker
        backgrounds.library()
        folder.mkdir(parents=True, exist_ok=True)
        seconds = 0.0
        t = time.perf_counter()
        with tqdm(total=sum(j[1] - j[0] for j in todo), desc=f"mesh renders @ {seed_offset}",
                  unit="crop") as bar:
            if workers <= 1:
                for job in todo:
                    seconds += _render_shard(job)[1]
                    bar.update(job[1] - job[0])
            else:
                import multiprocessing

                with ProcessPoolExecutor(workers, multiprocessing.get_context("spawn")) as pool:
                    for job, (_, sec) in zip(todo, pool.map(_render_shard, todo), strict=True):
                        seconds += sec
                        bar.update(job[1] - job[0])
        done = sum(j[1] - j[0] for j in todo)
        write_json(folder / f"manifest-{seed_offset}-{n}.json", {
            "seeds": [seed_offset, seed_offset + n], "size": size, "workers": workers,
            "rendered": done, "wall_s": round(time.perf_counter() - t, 1),
            "crops_per_s_per_worker": round(done / max(seconds, 1e-9), 1),
            "code": code, "anny": anny_body.ANNY_VERSION, "versions": versions()})
    parts = []
    for job in jobs:
        with np.load(job[3]) as z:
            parts.append({k: z[k] for k in z.files})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bnnpose.quantize.mesh_render",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--prepare-cache", action="store_true",
                    help="build the anny cache (BNNPOSE_ANNY_CACHE, default out/anny-cache)")
    ap.add_argument("--n", type=int, default=0, help="render this many training crops")
    ap.add_argument("--eval", action="store_true", help="held-out seeds instead")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cache-dir", default="out/cache/synthetic")
    ap.add_argument("--grid", type=Path, metavar="PNG",
                    help="draw 16 held-out frames with their labelled MPII joints")
    args = ap.parse_args(argv)
    if args.prepare_cache:
        print(anny_body.prepare_cache())
    if args.grid:
        from bnnpose.host.draw import keypoints_grid

        body = load_body()
        seeds = range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 16)
        frames = render_scenes([sample_scene(s, body) for s in seeds], body=body)
        keypoints_grid([f.image for f in frames], [f.mpii for f in frames],
                       [f.labelled[NUM_COCO:].astype(float) for f in frames], path=args.grid,
                       cols=8, cell=192)
        print(args.grid)
    if args.n:
        if args.n < 0 or args.workers < 1:
            raise BnnposeError("--n and --workers must be positive")
        offset = EVAL_SEED_OFFSET if args.eval else TRAIN_SEED_OFFSET
        arrays = cached_renders(args.n, offset, args.size, args.cache_dir, args.workers)
        print(f"{len(arrays['images'])} crops in {args.cache_dir}")


if __name__ == "__main__":
    raise SystemExit(run_main(main, None, "mesh_render"))
