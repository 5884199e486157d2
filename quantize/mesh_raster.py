"""Rasterising coloured triangle meshes with OpenGL (moderngl on a headless EGL context, Mesa's
llvmpipe on a machine without a GPU): colour, object id and depth of every pixel.

Faces are shaded flat from screen-space derivatives of their view-space position, so no vertex
normals are needed; a key and a fill light plus ambient light them.
"""

from __future__ import annotations

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
void main() {
    vec4 p = view * vec4(in_pos, 1.0);
    v_pos = p.xyz;
    v_col = in_col;
    gl_Position = proj * p;
}
"""
_FRAGMENT = """
#version 330
uniform vec3 key_dir;
uniform vec3 fill_dir;
uniform vec3 light;   // key, fill, ambient strengths
uniform float object_id;
in vec3 v_pos;
in vec3 v_col;
out vec4 colour;
void main() {
    vec3 n = normalize(cross(dFdx(v_pos), dFdy(v_pos)));
    n *= sign(n.z + 1e-6);  // towards the camera, whichever way the triangle winds
    float shade = light.z + light.x * max(dot(n, key_dir), 0.0)
                + light.y * max(dot(n, fill_dir), 0.0);
    // The object's id rides in alpha: one read brings back both images.
    colour = vec4(v_col * shade, object_id / 255.0);
}
"""


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
        p = points @ self.view()[:3, :3].T + self.view()[:3, 3]
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


@lru_cache(maxsize=1)
def _context():
    try:
        import moderngl

        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as e:  # moderngl raises plain Exceptions for a missing EGL or driver
        raise BnnposeError(f"no headless OpenGL context (needs Debian's libegl1 and "
                           f"libegl-mesa0): {one_line(e, 200)}") from None
    program = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
    return ctx, program, {}


def _framebuffer(size: int):
    ctx, _, fbos = _context()
    if size not in fbos:
        fbos[size] = ctx.framebuffer(
            color_attachments=[ctx.renderbuffer((size, size), 4)],
            depth_attachment=ctx.depth_renderbuffer((size, size)))
    return fbos[size]


def rasterize(meshes: list[Mesh], camera: Camera, lights: Lights, size: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``meshes`` as ``camera`` sees them on a ``size`` x ``size`` image.

    Returns colour float32 ``[size, size, 3]`` in 0..1 (0 where nothing is drawn), id int16
    ``[size, size]`` (the nearest mesh's ``ident``, 0 for none) and depth float32
    ``[size, size]`` along the view axis in metres (inf for none), rows top to bottom.
    """
    ctx, program, _ = _context()
    fbo = _framebuffer(size)
    fbo.use()
    ctx.viewport = (0, 0, size, size)
    ctx.enable(ctx.DEPTH_TEST)
    fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
    program["view"].write(camera.view().T.astype("f4").tobytes())
    program["proj"].write(camera.projection().T.astype("f4").tobytes())
    program["key_dir"].value = tuple(float(v) for v in lights.key)
    program["fill_dir"].value = tuple(float(v) for v in lights.fill)
    program["light"].value = tuple(float(v) for v in lights.strengths)
    for mesh in meshes:
        data = np.hstack([mesh.vertices, mesh.colours]).astype("f4")
        vbo = ctx.buffer(data.tobytes())
        ibo = ctx.buffer(mesh.faces.astype("i4").tobytes())
        vao = ctx.vertex_array(program, [(vbo, "3f 3f", "in_pos", "in_col")], ibo)
        program["object_id"].value = float(mesh.ident)
        vao.render()
        vao.release()
        vbo.release()
        ibo.release()
    rgba = np.frombuffer(fbo.read(components=4, attachment=0, dtype="f1"), np.uint8)
    zbuf = np.frombuffer(fbo.read(components=1, attachment=-1, dtype="f4"), np.float32)
    # OpenGL's rows run bottom to top.
    rgba = rgba.reshape(size, size, 4)[::-1]
    colour = rgba[:, :, :3].astype(np.float32) / 255
    ident = rgba[:, :, 3].astype(np.int16)
    zbuf = zbuf.reshape(size, size)[::-1].astype(np.float64)
    n, f = camera.near, camera.far
    with np.errstate(divide="ignore"):
        depth = np.where(zbuf < 1.0, 2 * n * f / (f + n - (2 * zbuf - 1) * (f - n)), np.inf)
    return colour, ident, depth.astype(np.float32)
