"""Rasterising coloured triangle meshes with OpenGL (moderngl on a headless EGL context, Mesa's
llvmpipe on a machine without a GPU): colour, object id and depth of every pixel.

Faces are shaded flat from screen-space derivatives of their view-space position, so no vertex
normals are needed; a key and a fill light plus ambient light them, and where a scene asks
for it the key light casts shadows (a shadow map: the scene's depth as the light sees it, drawn
first). Meshes are closed and wound counter-clockwise seen from outside (Anny's body and the
boxes), so back faces are culled: they never reach the rasteriser. The shadow pass culls front
faces instead and keeps the far side of each body, so a lit surface never shadows itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bnnpose.host.common import BnnposeError, one_line

_VERTEX = """
#version 330
uniform mat4 view;
uniform mat4 proj;
in vec3 in_pos;
in vec3 in_col;
out vec3 v_pos;
out vec3 v_col;
#if SHADOWS
uniform mat4 light_vp;
out vec3 v_light;
#endif
void main() {
    vec4 p = view * vec4(in_pos, 1.0);
    v_pos = p.xyz;
    v_col = in_col;
#if SHADOWS
    // Where the key light's shadow map holds this point: texture coordinates and depth.
    v_light = (light_vp * vec4(in_pos, 1.0)).xyz * 0.5 + 0.5;
#endif
    gl_Position = proj * p;
}
"""
_FRAGMENT = """
uniform vec3 key_dir;
uniform vec3 fill_dir;
uniform vec3 light;   // key, fill, ambient strengths
uniform float object_id;
in vec3 v_pos;
in vec3 v_col;
out vec4 colour;
#if SHADOWS
uniform sampler2DShadow shadow_map;
in vec3 v_light;
#endif
void main() {
    vec3 n = normalize(cross(dFdx(v_pos), dFdy(v_pos)));
    n *= sign(n.z + 1e-6);  // towards the camera, whichever way the triangle winds
#if SHADOWS
    // 1 where nothing nearer the key light covers the point; linear filtering softens the
    // shadow's edge over a texel.
    float lit = texture(shadow_map, vec3(v_light.xy, v_light.z - SHADOW_BIAS));
#else
    float lit = 1.0;
#endif
    float shade = light.z + lit * light.x * max(dot(n, key_dir), 0.0)
                + light.y * max(dot(n, fill_dir), 0.0);
    // The object's id rides in alpha: one read brings back both images.
    colour = vec4(v_col * shade, object_id / 255.0);
}
"""
_SHADOW_VERTEX = """
#version 330
uniform mat4 light_vp;
in vec3 in_pos;
void main() {
    gl_Position = light_vp * vec4(in_pos, 1.0);
}
"""
_SHADOW_FRAGMENT = """
#version 330
void main() {}
"""
#: Shadow map side in texels: about 2 cm each over a scene a few metres across.
SHADOW_SIZE = 256
#: Depth (fraction of the scene's extent along the light) a point may lie behind the surface
#: the light sees before it counts as shadowed: keeps lit faces from shadowing themselves.
SHADOW_BIAS = 0.002


@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking from ``eye`` at ``target`` (world metres, z up)."""

    eye: np.ndarray
    target: np.ndarray
    fov: float  #: vertical field of view, degrees
    roll: float = 0.0  #: in-plane rotation, degrees
    near: float = 0.1
    far: float = 40.0

    def view(self) -> np.ndarray:
        forward = self.target - self.eye
        forward = forward / np.linalg.norm(forward)
        side = np.cross(forward, [0.0, 0.0, 1.0])
        side /= np.linalg.norm(side)
        up = np.cross(side, forward)
        c, s = np.cos(np.radians(self.roll)), np.sin(np.radians(self.roll))
        side, up = c * side + s * up, -s * side + c * up
        m = np.eye(4)
        m[0, :3], m[1, :3], m[2, :3] = side, up, -forward
        m[:3, 3] = -m[:3, :3] @ self.eye
        return m

    def projection(self) -> np.ndarray:
        f = 1 / np.tan(np.radians(self.fov) / 2)
        n, fa = self.near, self.far
        return np.array([[f, 0, 0, 0], [0, f, 0, 0],
                         [0, 0, (fa + n) / (n - fa), 2 * fa * n / (n - fa)], [0, 0, -1, 0]])

    def project(self, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """World points ``[..., 3]`` -> pixel (x, y) ``[..., 2]`` (pixel-centre convention)
        and their distance along the view axis ``[...]``."""
        view = self.view()
        p = points @ view[:3, :3].T + view[:3, 3]
        depth = -p[..., 2]
        f = 1 / np.tan(np.radians(self.fov) / 2)
        ndc = f * p[..., :2] / depth[..., None]
        xy = np.stack([(ndc[..., 0] + 1) * size / 2 - 0.5, (1 - ndc[..., 1]) * size / 2 - 0.5], -1)
        return xy, depth


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  #: float32 [V, 3] world
    colours: np.ndarray  #: float32 [V, 3] in 0..1
    faces: np.ndarray  #: int32 [F, 3]
    ident: int  #: 1..255, written to the id image where this mesh is nearest


@dataclass(frozen=True)
class Lights:
    key: np.ndarray  #: unit direction towards the key light, view space
    fill: np.ndarray  #: unit direction towards the fill light, view space
    strengths: tuple[float, float, float]  #: key, fill, ambient
    shadows: bool = False  #: the key light casts shadows (a depth pass from it first)


@dataclass
class _GL:
    ctx: object
    programs: dict  #: shadows (bool) -> the shaded pass's program
    shadow_program: object  #: depth only, as the key light sees the scene
    shadow_fbo: object
    shadow_map: object
    fbos: dict  #: frame size -> framebuffer


@lru_cache(maxsize=1)
def _gl() -> _GL:
    # llvmpipe starts one raster thread per core unless told otherwise; a render worker owns
    # one core, where more threads only take turns.
    os.environ.setdefault("LP_NUM_THREADS", "1")
    try:
        import moderngl

        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as e:  # moderngl raises plain Exceptions for a missing EGL or driver
        raise BnnposeError(f"no headless OpenGL context (needs Debian's libegl1 and "
                           f"libegl-mesa0): {one_line(e, 200)}") from None
    programs = {}
    for shadows in (False, True):
        defines = f"#version 330\n#define SHADOWS {int(shadows)}\n"
        programs[shadows] = ctx.program(
            vertex_shader=_VERTEX.replace("#version 330\n", defines),
            fragment_shader=defines + _FRAGMENT.replace("SHADOW_BIAS", repr(SHADOW_BIAS)))
    programs[True]["shadow_map"].value = 0
    shadow_map = ctx.depth_texture((SHADOW_SIZE, SHADOW_SIZE))
    shadow_map.compare_func = "<="
    shadow_map.repeat_x = shadow_map.repeat_y = False
    shadow_program = ctx.program(vertex_shader=_SHADOW_VERTEX,
                                 fragment_shader=_SHADOW_FRAGMENT)
    return _GL(ctx, programs, shadow_program, ctx.framebuffer(depth_attachment=shadow_map),
               shadow_map, {})


def _framebuffer(gl: _GL, size: int):
    if size not in gl.fbos:
        gl.fbos[size] = gl.ctx.framebuffer(
            color_attachments=[gl.ctx.renderbuffer((size, size), 4)],
            depth_attachment=gl.ctx.depth_renderbuffer((size, size)))
    return gl.fbos[size]


def light_matrix(vertices: np.ndarray, key_world: np.ndarray) -> np.ndarray:
    """World -> clip space of a directional light shining along ``-key_world`` onto
    ``vertices [N, 3]``: an orthographic box around them, depth -1 nearest the light."""
    back = key_world / np.linalg.norm(key_world)
    helper = np.array([0.0, 0.0, 1.0]) if abs(back[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    side = np.cross(helper, back)
    side /= np.linalg.norm(side)
    up = np.cross(back, side)
    basis = np.stack([side, up, back])
    p = vertices @ basis.T.astype(vertices.dtype)
    lo, hi = p.min(0).astype(np.float64), p.max(0).astype(np.float64)
    pad = 0.01 * (hi - lo).max() + 1e-3  # keeps the outermost points off the map's edge
    lo, hi = lo - pad, hi + pad
    m = np.eye(4)
    m[:2, :3] = basis[:2] * (2 / (hi[:2] - lo[:2]))[:, None]
    m[:2, 3] = -(hi[:2] + lo[:2]) / (hi[:2] - lo[:2])
    m[2, :3] = -2 * back / (hi[2] - lo[2])
    m[2, 3] = (hi[2] + lo[2]) / (hi[2] - lo[2])
    return m


def rasterize(meshes: list[Mesh], camera: Camera, lights: Lights, size: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``meshes`` as ``camera`` sees them on a ``size`` x ``size`` image.

    Returns colour float32 ``[size, size, 3]`` in 0..1 (0 where nothing is drawn), id int16
    ``[size, size]`` (the nearest mesh's ``ident``, 0 for none) and depth float32
    ``[size, size]`` along the view axis in metres (inf for none), rows top to bottom.
    """
    gl = _gl()
    ctx = gl.ctx
    program = gl.programs[lights.shadows]
    view = camera.view()
    buffers = []
    try:
        for mesh in meshes:
            vbo = ctx.buffer(np.hstack([mesh.vertices, mesh.colours]).astype("f4").tobytes())
            ibo = ctx.buffer(mesh.faces.astype("i4").tobytes())
            buffers.append((mesh.ident, vbo, ibo))
        ctx.enable(ctx.DEPTH_TEST | ctx.CULL_FACE)
        if lights.shadows:
            light_vp = light_matrix(np.concatenate([m.vertices for m in meshes]),
                                    view[:3, :3].T @ lights.key).T.astype("f4").tobytes()
            gl.shadow_fbo.use()
            ctx.viewport = (0, 0, SHADOW_SIZE, SHADOW_SIZE)
            gl.shadow_fbo.clear(depth=1.0)
            ctx.cull_face = "front"
            gl.shadow_program["light_vp"].write(light_vp)
            for _, vbo, ibo in buffers:
                _draw(ctx, gl.shadow_program, [(vbo, "3f 12x", "in_pos")], ibo)
            program["light_vp"].write(light_vp)
            gl.shadow_map.use(location=0)
        ctx.cull_face = "back"
        fbo = _framebuffer(gl, size)
        fbo.use()
        ctx.viewport = (0, 0, size, size)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        program["view"].write(view.T.astype("f4").tobytes())
        program["proj"].write(camera.projection().T.astype("f4").tobytes())
        program["key_dir"].value = tuple(float(v) for v in lights.key)
        program["fill_dir"].value = tuple(float(v) for v in lights.fill)
        program["light"].value = tuple(float(v) for v in lights.strengths)
        for ident, vbo, ibo in buffers:
            program["object_id"].value = float(ident)
            _draw(ctx, program, [(vbo, "3f 3f", "in_pos", "in_col")], ibo)
        rgba = np.frombuffer(fbo.read(components=4, attachment=0, dtype="f1"), np.uint8)
        zbuf = np.frombuffer(fbo.read(components=1, attachment=-1, dtype="f4"), np.float32)
    finally:
        for _, vbo, ibo in buffers:
            vbo.release()
            ibo.release()
    # OpenGL's rows run bottom to top.
    rgba = rgba.reshape(size, size, 4)[::-1]
    colour = rgba[:, :, :3].astype(np.float32) / 255
    ident = rgba[:, :, 3].astype(np.int16)
    zbuf = zbuf.reshape(size, size)[::-1].astype(np.float64)
    n, f = camera.near, camera.far
    with np.errstate(divide="ignore"):
        depth = np.where(zbuf < 1.0, 2 * n * f / (f + n - (2 * zbuf - 1) * (f - n)), np.inf)
    return colour, ident, depth.astype(np.float32)


def _draw(ctx, program, content, ibo) -> None:
    vao = ctx.vertex_array(program, content, ibo)
    vao.render()
    vao.release()
