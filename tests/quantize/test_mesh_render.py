"""The mesh-body renderer: determinism, labels on the body, the depth test, framings, errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from bnnpose.host.skeleton import MPII_JOINTS
from bnnpose.quantize import anny_body, mesh_render
from bnnpose.quantize.body_poses import sample_pose
from bnnpose.quantize.mesh_render import NUM_COCO, PERSON


@pytest.fixture(scope="module")
def body():
    # Builds the anny cache on a fresh machine (about a minute, once); later runs load it.
    anny_body.prepare_cache()
    return anny_body.load_body()


def _frontal(scene, body, yaw=0.0, **changes):
    """The scene's main person alone, unoccluded, seen from the front at eye level."""
    person = dataclasses.replace(scene.people[0], yaw=yaw)
    return dataclasses.replace(scene, people=[person], occluders=[], framing="full",
                               shift=np.zeros(2), roll=0.0, elevation=5.0, **changes)


def _standing(body, seed):
    """The first standing pose of a stream."""
    rng = np.random.default_rng(seed)
    while True:
        family, rotations = sample_pose(rng, body.hinge, body.bone)
        if family == "standing":
            return rotations


def test_seed_renders_identically_alone_and_in_a_batch(body):
    alone = mesh_render.render_batch([7], 64)
    again = mesh_render.render_batch([7], 64)
    batch = mesh_render.render_batch([3, 7, 11], 64)
    for key in alone:
        np.testing.assert_array_equal(alone[key][0], again[key][0], err_msg=key)
        np.testing.assert_array_equal(alone[key][0], batch[key][1], err_msg=key)
    other = mesh_render.render_batch([8], 64)
    assert not np.array_equal(alone["images"], other["images"])


def test_labels_land_on_the_body(body):
    """Every joint the depth test calls visible projects onto the person's rendered pixels
    (within one pixel: the crown sits on the silhouette's edge)."""
    frames = mesh_render.render_scenes([mesh_render.sample_scene(s, body) for s in range(24)],
                                       clean=True, body=body)
    checked = 0
    for frame in frames:
        xy = np.concatenate([frame.coco, frame.mpii])
        for j in np.flatnonzero(frame.labelled & ~frame.hidden):
            c, r = np.round(xy[j]).astype(int)
            window = frame.ident[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
            assert (window == PERSON).any(), (j, xy[j])
            checked += 1
    assert checked > 24 * 20  # most of 33 joints of 24 people are seen


def test_frontal_person_shows_every_joint_and_profile_hides_the_far_side(body):
    scene = mesh_render.sample_scene(5, body)
    person = dataclasses.replace(scene.people[0], rotations=_standing(body, 0))
    scene = dataclasses.replace(scene, people=[person])
    front, side = mesh_render.render_scenes(
        [_frontal(scene, body, 0.0), _frontal(scene, body, 90.0)], clean=True, body=body)
    assert front.labelled.all()
    mpii_hidden = {MPII_JOINTS[j] for j in np.flatnonzero(front.hidden[NUM_COCO:])}
    assert not mpii_hidden & {"l_shoulder", "r_shoulder", "l_knee", "r_knee", "head_top",
                              "thorax", "l_ankle", "r_ankle"}
    # Turned 90 degrees to its left, the body shows the camera its right side.
    hidden = dict(zip(MPII_JOINTS, side.hidden[NUM_COCO:], strict=True))
    assert hidden["l_shoulder"] and not hidden["r_shoulder"]
    assert hidden["l_hip"] and not hidden["r_hip"]


def test_table_in_front_hides_the_legs(body):
    scene = mesh_render.sample_scene(5, body)
    person = dataclasses.replace(scene.people[0], rotations=_standing(body, 0))
    desk = mesh_render.Box(centre=np.array([0.0, -0.5, -0.4]), size=np.array([2.0, 0.6, 0.8]),
                           colour=np.full(3, 0.5, np.float32))
    frame, = mesh_render.render_scenes(
        [dataclasses.replace(_frontal(dataclasses.replace(scene, people=[person]), body),
                             occluders=[desk])], clean=True, body=body)
    hidden = dict(zip(MPII_JOINTS, frame.hidden[NUM_COCO:], strict=True))
    assert all(hidden[j] for j in ("l_knee", "r_knee", "l_ankle", "r_ankle"))
    assert not any(hidden[j] for j in ("l_shoulder", "r_shoulder", "head_top"))


def test_framings_cut_where_photos_do(body):
    scene = _frontal(mesh_render.sample_scene(9, body), body)
    person = dataclasses.replace(scene.people[0], rotations=_standing(body, 1))
    scene = dataclasses.replace(scene, people=[person], cut=0.05)
    full, waist = mesh_render.render_scenes(
        [scene, dataclasses.replace(scene, framing="waist")], clean=True, body=body)
    labelled = dict(zip(MPII_JOINTS, waist.labelled[NUM_COCO:], strict=True))
    assert full.labelled.all()
    assert labelled["head_top"] and labelled["l_shoulder"] and labelled["l_elbow"]
    assert not (labelled["l_knee"] or labelled["r_knee"] or labelled["l_ankle"])


def test_crops_follow_the_host_preprocessing_and_report_framing(body):
    samples = mesh_render.crop_samples(range(40), 64, clean=True)
    upper = np.mean([s["framing"] in mesh_render.UPPER_BODY for s in samples])
    assert upper > 0.15
    for s in samples[:8]:
        frame, crop = s["frame"], s["crop"]
        np.testing.assert_allclose(s["keypoints"], crop.to_crop(frame.mpii), atol=1e-4)
        assert s["image"].shape == (64, 64, 3)
        inside = (s["keypoints"] >= -0.5).all(1) & (s["keypoints"] <= 63.5).all(1)
        np.testing.assert_array_equal(s["visible"], inside & frame.labelled[NUM_COCO:])
        np.testing.assert_array_equal(s["coco_vis"] == 1,
                                      s["coco_vis"].astype(bool) & frame.hidden[:NUM_COCO])


def test_framing_shares_over_many_scenes(body):
    framings = [mesh_render.sample_scene(s, body).framing for s in range(2000)]
    upper = np.mean([f in mesh_render.UPPER_BODY for f in framings])
    assert 0.3 <= upper <= 0.45


def test_people_face_the_camera_as_in_photographs(body):
    scenes = [mesh_render.sample_scene(s, body) for s in range(2000)]
    yaw = np.array([p.yaw for sc in scenes for p in sc.people])
    assert ((yaw >= -180) & (yaw <= 180)).all()
    # 0.55 within 60 degrees, plus half of the 0.45 turned any way, show more front than back.
    assert 0.74 <= np.mean(np.abs(yaw) < 90) <= 0.81
    assert 0.66 <= np.mean(np.abs(yaw) < 60) <= 0.74  # 0.55 + 0.45 / 3


def test_missing_anny_cache_is_one_line(tmp_path):
    code = ("import bnnpose.quantize.mesh_render as m, sys; "
            "sys.argv = ['x', '--n', '4']; raise SystemExit(m.run_main(m.main, None, 'x'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"BNNPOSE_ANNY_CACHE": str(tmp_path / "none"),
                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no anny cache" in lines[0], result.stderr


def test_a_half_written_cache_is_not_ready(tmp_path):
    (tmp_path / "bnnpose-anny.json").write_text('{"files": ["v14/missing.safetensors"]}')
    assert not anny_body.cache_ready(tmp_path)
    (tmp_path / "bnnpose-anny.json").write_text("{not json")
    assert not anny_body.cache_ready(tmp_path)


def test_cached_renders_write_shards_and_a_manifest(body, tmp_path):
    arrays = mesh_render.cached_renders(6, 100, 48, tmp_path)
    again = mesh_render.cached_renders(6, 100, 48, tmp_path)
    assert arrays["images"].shape == (6, 48, 48, 3)
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], again[key])
    direct = mesh_render.render_batch(range(100, 106), 48)
    np.testing.assert_array_equal(arrays["images"], direct["images"])
    manifests = list(tmp_path.rglob("manifest-*.json"))
    assert len(manifests) == 1 and '"anny"' in manifests[0].read_text()


def test_bad_render_counts_are_one_line(capsys):
    for argv in (["--n", "-3"], ["--n", "4", "--workers", "0"]):
        assert mesh_render.run_main(mesh_render.main, argv, "mesh_render") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["mesh_render: error: --n and --workers must be positive"]


def test_shadow_and_backlight_shares_over_many_scenes(body):
    scenes = [mesh_render.sample_scene(s, body) for s in range(2000)]
    shadows = np.mean([s.lights.shadows for s in scenes])
    backlit = np.array([s.backlit for s in scenes])
    assert abs(shadows - mesh_render.SHADOW_SHARE) < 0.04
    assert abs(backlit.mean() - mesh_render.BACKLIT_SHARE) < 0.03
    # A backlit scene's key light is behind the person (away from the camera), else in front.
    key_z = np.array([s.lights.key[2] for s in scenes])
    assert (key_z[backlit] < 0).all() and (key_z[~backlit] > 0).all()


def test_person_boxes_are_as_loose_as_a_detectors(body):
    """Around the person's pixels, grown by a factor in BOX_GROWTH: as tight as the pixels and
    as loose as HOG's boxes on the footage both occur."""
    seeds = range(200, 240)
    frames = mesh_render.render_scenes([mesh_render.sample_scene(s, body) for s in seeds],
                                       clean=True, body=body)
    growth = []
    for seed, frame in zip(seeds, frames, strict=True):
        rows, cols = np.nonzero(frame.ident == PERSON)
        if len(rows) < 30:
            continue
        box = mesh_render.person_box(frame, seed)
        pixels = np.array([cols.max() - cols.min() + 1, rows.max() - rows.min() + 1])
        ratio = (box[2:] - box[:2]) / pixels
        assert abs(ratio[0] - ratio[1]) < 1e-6  # one factor for both sides
        growth.append(ratio[0])
    low, high = mesh_render.BOX_GROWTH
    assert min(growth) >= low - 1e-6 and max(growth) <= high + 1e-6
    assert min(growth) < 1.0 and max(growth) > 1.45


def test_face_neckline_and_print_are_painted_on_the_front_only(body):
    """What tells a front from a back: brows, lips, a beard, the neckline's skin and the chest
    print all land on the body's front (-y in the rest mesh), and its back stays plain."""
    red, blue = np.float32([0.8, 0.1, 0.1]), np.float32([0.1, 0.1, 0.9])
    outfit = dataclasses.replace(
        mesh_render._outfit(np.random.default_rng(0)), top=(red, red), sleeves=4,
        hair_length=0.3, beard=1.0, neckline=2, chest_print=(blue, blue))
    colours = mesh_render.paint_body(body, outfit)
    part, rest = body.part, body.rest
    is_part = {name: part == anny_body.PARTS.index(name) for name in ("head", "eyes", "chest")}
    chest_front = rest[:, 1] < rest[is_part["chest"], 1].mean()
    face_front = rest[:, 1] < rest[is_part["eyes"], 1].mean() + 0.02

    def coloured(c):
        return np.isclose(colours, c, atol=1e-6).all(axis=1)

    for mark in (is_part["chest"] & coloured(outfit.skin), coloured(blue)):  # neckline, print
        assert mark.sum() > 20 and chest_front[mark].all()
    assert coloured(red)[is_part["chest"] & ~chest_front].all()
    eyes_z = rest[is_part["eyes"], 2].mean()
    details = (is_part["head"] & ~coloured(outfit.skin) & ~coloured(outfit.hair)
               & ~coloured(np.float32([0.08] * 3)))
    assert face_front[details].all()
    assert (rest[details, 2] > eyes_z).any() and (rest[details, 2] < eyes_z - 0.06).any()
    # Clean-shaven, the face below the eyes keeps the skin's colour but for the lips.
    plain = mesh_render.paint_body(body, dataclasses.replace(outfit, beard=0.0))
    chin = is_part["head"] & face_front & (rest[:, 2] < eyes_z - 0.09)
    assert np.isclose(plain[chin], outfit.skin, atol=1e-6).all(axis=1).mean() > 0.9
    assert not np.isclose(colours[chin], outfit.skin, atol=1e-6).all(axis=1).any()
