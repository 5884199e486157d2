"""The OpenGL rasteriser on its own: flat shading by two lights and ambient, the key light's
shadows, back faces culled, ids and depth."""

from __future__ import annotations

import numpy as np
import pytest

from bnnpose.quantize.mesh_raster import Camera, Lights, Mesh, light_matrix, rasterize

GREY = 0.5
AMBIENT, KEY, FILL = 0.3, 0.6, 0.2
SIZE = 96


def _box(centre, size, ident) -> Mesh:
    """A closed box wound counter-clockwise seen from outside (as the renderer's boxes)."""
    corners = np.array([[x, y, z] for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)])
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    vertices = (np.asarray(centre) + corners * np.asarray(size)).astype(np.float32)
    return Mesh(vertices, np.full((8, 3), GREY, np.float32), faces.astype(np.int32), ident)


@pytest.fixture(scope="module")
def scene():
    """A floor slab (top at z = 0) and a cube floating 1 m above its centre, seen from 60
    degrees above; the key light shines straight down, the fill light from the camera."""
    floor = _box([0, 0, -0.05], [4, 4, 0.1], 1)
    cube = _box([0, 0, 1.0], [0.3, 0.3, 0.3], 2)
    e = np.radians(60)
    camera = Camera(eye=np.array([0, -4 * np.cos(e), 4 * np.sin(e)]), target=np.zeros(3),
                    fov=50, near=0.5, far=20)
    rot = camera.view()[:3, :3]
    key, fill = rot @ [0, 0, 1.0], np.array([0, 0, 1.0])  # view space
    return [floor, cube], camera, key, fill


def _floor_shade(scene) -> tuple[float, float]:
    """Expected floor brightness lit and in the key light's shadow."""
    _, camera, key, fill = scene
    up = camera.view()[:3, :3] @ [0, 0, 1.0]
    lit_fill = AMBIENT + FILL * max(float(up @ fill), 0.0)
    return GREY * (lit_fill + KEY * max(float(up @ key), 0.0)), GREY * lit_fill


def _pixel(camera, point) -> tuple[int, int]:
    xy, _ = camera.project(np.asarray(point, float), SIZE)
    c, r = np.round(xy).astype(int)
    return r, c


def test_the_key_light_casts_a_shadow_where_asked(scene):
    meshes, camera, key, fill = scene
    lit, shadowed = _floor_shade(scene)
    under, aside = _pixel(camera, [0, 0, 0]), _pixel(camera, [1.2, 0.3, 0])
    with_shadows, ident, _ = rasterize(meshes, camera, Lights(key, fill, (KEY, FILL, AMBIENT),
                                                              shadows=True), SIZE)
    without, _, _ = rasterize(meshes, camera, Lights(key, fill, (KEY, FILL, AMBIENT)), SIZE)
    assert ident[under] == 1 and ident[aside] == 1  # the floor, not the cube, at both
    tol = 2 / 255
    np.testing.assert_allclose(with_shadows[under], shadowed, atol=tol)
    np.testing.assert_allclose(with_shadows[aside], lit, atol=tol)
    np.testing.assert_allclose(without[under], lit, atol=tol)
    # The lit floor and the cube's top do not shadow themselves.
    top = _pixel(camera, [0, 0, 1.15])
    np.testing.assert_allclose(with_shadows[top], without[top], atol=tol)
    # Shadows darken, nothing else: only floor pixels under the cube change.
    changed = np.abs(with_shadows - without).max(-1) > tol
    assert changed.sum() > 20
    assert (ident[changed] == 1).all()


def test_ids_and_depth_with_back_faces_culled(scene):
    meshes, camera, key, fill = scene
    _, ident, depth = rasterize(meshes, camera, Lights(key, fill, (KEY, FILL, AMBIENT)), SIZE)
    top = _pixel(camera, [0, 0, 1.15])
    assert ident[top] == 2
    # Near the view axis, depth along it is about the distance from the eye.
    np.testing.assert_allclose(depth[top], np.linalg.norm(camera.eye - [0, 0, 1.15]), rtol=0.05)
    assert ident[0, 0] == 0 and np.isinf(depth[0, 0])  # sky above the floor's far edge


def test_light_matrix_maps_the_scene_into_the_unit_cube():
    rng = np.random.default_rng(0)
    points = rng.uniform(-2, 3, (200, 3))
    key = np.array([0.3, -0.4, 0.8])
    m = light_matrix(points, key)
    clip = points @ m[:3, :3].T + m[:3, 3]
    assert (np.abs(clip) < 1).all()
    # Nearer the light is smaller depth.
    along = points @ (key / np.linalg.norm(key))
    assert np.corrcoef(along, clip[:, 2])[0, 1] < -0.999
