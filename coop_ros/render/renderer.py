"""Off-screen rasteriser for object meshes: RGB, metric depth, mask and object coordinates.

moderngl over EGL with our own shaders. ``device="cpu"`` runs on Mesa's llvmpipe (no GPU, no
display); ``"cuda"`` / ``"cuda:i"`` picks the i-th hardware EGL device (NVIDIA driver's EGL).

Conventions
-----------
* Poses are (4, 4) float64 ``T_cam_obj`` in metres (``x_cam = R @ x_obj + t``), OpenCV camera
  axes (x right, y down, z forward). ``K`` is (3, 3) float64, pixel centres at integers.
* The projection matrix is built from ``K`` exactly: a point that ``K`` projects to ``(u, v)`` is
  rasterised at the pixel whose centre is ``(u, v)`` (row ``v``, column ``u``). The image is
  rendered with rows already in OpenCV order (row 0 = top), so nothing is flipped on read-back.
* Depth is the true camera z in metres, written to a float32 colour attachment (the non-linear
  z-buffer is only used for the depth test); 0 on background.
* ``xyz`` holds the object-frame coordinates (metres) of the visible surface point of each pixel,
  interpolated perspective-correctly (exact for planar triangles), 0 on background.
* No anti-aliasing: a pixel belongs to the object iff its centre is covered (OpenGL's rule, the
  same as BOP's renderer), so masks count pixels like BOP's ``px_count_all``.
* Colours: a texture sampled with OpenGL-convention UVs (v up; the texture array's row 0 is the
  top of the image file), else per-vertex colours, else a uniform grey; shaded with
  ``ambient + diffuse * max(0, n . -direction)`` times the light colour (two-sided: normals are
  turned towards the camera).

A :class:`Renderer` owns one OpenGL context; use it from one thread.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from coop_ros.errors import InputError, RenderError
from coop_ros.geometry.camera import check_intrinsics
from coop_ros.geometry.se3 import check_pose, check_poses

__all__ = ["RenderOutput", "GBuffer", "Light", "Renderer", "projection_from_K", "DEFAULT_GREY",
           "EGL_PACKAGES"]

#: system packages that provide EGL + Mesa (the message of RenderError names them)
EGL_PACKAGES = "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1"
#: RGB [0, 1] of meshes that have neither texture nor vertex colours
DEFAULT_GREY = (0.7, 0.7, 0.7)
#: most items one render_scene call can label (labels live in the 8-bit alpha channel)
MAX_SCENE_ITEMS = 254

_SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "lavapipe")


# --------------------------------------------------------------------------- records

@dataclass
class RenderOutput:
    """Result of a batched render (B images of H x W pixels).

    Attributes:
        rgb: (B, H, W, 3) uint8 shaded colour (background black, or the given background).
        depth: (B, H, W) float32 camera z in metres, 0 on background.
        mask: (B, H, W) bool, True where an object is visible.
        xyz: (B, H, W, 3) float32 object-frame coordinates (metres) of the visible surface point,
            0 on background. In a scene, the coordinates are in the frame of the visible object.
            None when :meth:`Renderer.render` was asked for ``xyz=False``.
        labels: (B, H, W) int16 index into ``render_scene``'s items, -1 on background; None from
            :meth:`Renderer.render`.
    """

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    xyz: np.ndarray | None
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    def __getitem__(self, i: int) -> "RenderOutput":
        """The i-th image as a batch of one (all arrays keep their leading axis)."""
        sl = slice(i, i + 1) if i != -1 else slice(-1, None)
        return RenderOutput(self.rgb[sl], self.depth[sl], self.mask[sl],
                            None if self.xyz is None else self.xyz[sl],
                            None if self.labels is None else self.labels[sl])


@dataclass
class GBuffer:
    """Unshaded per-pixel surface attributes of one scene image (deferred shading input).

    Attributes:
        albedo: (H, W, 3) float32 surface colour in [0, 1] (texture / vertex colour as stored,
            i.e. sRGB-encoded), 0 on background.
        normal: (H, W, 3) float32 unit surface normal in the camera frame, turned towards the
            camera (two-sided), 0 on background.
        depth: (H, W) float32 camera z [m], 0 on background.
        labels: (H, W) int16 index of the visible item, -1 on background.
    """

    albedo: np.ndarray
    normal: np.ndarray
    depth: np.ndarray
    labels: np.ndarray


@dataclass
class Light:
    """Ambient + Lambert lighting, all in the camera frame.

    Attributes:
        ambient: ambient factor (>= 0), multiplies the surface colour.
        diffuse: diffuse factor (>= 0).
        direction: (3,) direction the light travels, camera frame (need not be unit).
            (0, 0, 1) is a headlight (light travels from the camera into the scene).
        color: (3,) RGB multiplier of the light in [0, inf).
    """

    ambient: float = 0.35
    diffuse: float = 0.65
    direction: tuple[float, float, float] = (0.0, 0.0, 1.0)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def validated(self) -> "Light":
        """Return self after checking the fields; raises InputError naming the bad one."""
        for name in ("ambient", "diffuse"):
            v = float(getattr(self, name))
            if not np.isfinite(v) or v < 0:
                raise InputError(f"Light.{name} must be a finite number >= 0, got {v}")
        d = np.asarray(self.direction, dtype=np.float64).reshape(-1)
        if d.shape != (3,) or not np.all(np.isfinite(d)) or np.linalg.norm(d) < 1e-12:
            raise InputError(f"Light.direction must be a non-zero finite 3-vector, got "
                             f"{self.direction!r}")
        c = np.asarray(self.color, dtype=np.float64).reshape(-1)
        if c.shape != (3,) or not np.all(np.isfinite(c)) or np.any(c < 0):
            raise InputError(f"Light.color must be 3 finite numbers >= 0, got {self.color!r}")
        return self

    @classmethod
    def random(cls, rng: np.random.Generator, ambient=(0.2, 0.6), diffuse=(0.3, 0.9),
               max_angle_deg: float = 60.0, color_jitter: float = 0.1) -> "Light":
        """A jittered light (for augmentation): ambient / diffuse uniform in the given ranges,
        direction within ``max_angle_deg`` of the headlight, colour 1 +/- ``color_jitter``."""
        a = np.radians(max_angle_deg) * np.sqrt(rng.uniform())
        phi = rng.uniform(0, 2 * np.pi)
        d = (np.sin(a) * np.cos(phi), np.sin(a) * np.sin(phi), np.cos(a))
        col = tuple(float(x) for x in 1.0 + rng.uniform(-color_jitter, color_jitter, 3))
        return cls(float(rng.uniform(*ambient)), float(rng.uniform(*diffuse)),
                   tuple(float(x) for x in d), col)

    def as_dict(self) -> dict:
        """Plain-Python fields (for hashing cache keys)."""
        return {"ambient": float(self.ambient), "diffuse": float(self.diffuse),
                "direction": [float(x) for x in self.direction],
                "color": [float(x) for x in self.color]}


# --------------------------------------------------------------------------- projection

def projection_from_K(K: np.ndarray, width: int, height: int, near: float,
                      far: float) -> np.ndarray:
    """OpenGL clip matrix that reproduces the pinhole ``K`` with OpenCV pixel centres.

    Window coordinates come out as ``x_win = u + 0.5``, ``y_win = v + 0.5`` where
    ``(u, v) = K (X/Z, Y/Z, 1)``; the framebuffer's row 0 is then image row 0 (the top), so
    read-back needs no flip. Depth maps ``[near, far]`` to NDC ``[-1, 1]``.

    Args:
        K: (3, 3) float64 intrinsics, pixels (zero skew).
        width, height: image size in pixels.
        near, far: clip distances along z, metres, ``0 < near < far``.

    Returns:
        (4, 4) float64 matrix P with ``clip = P @ (X, Y, Z, 1)``, ``w_clip = Z``.
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    P = np.zeros((4, 4))
    P[0, 0] = 2.0 * fx / width
    P[0, 2] = (2.0 * cx + 1.0) / width - 1.0
    P[1, 1] = 2.0 * fy / height
    P[1, 2] = (2.0 * cy + 1.0) / height - 1.0
    P[2, 2] = (far + near) / (far - near)
    P[2, 3] = -2.0 * far * near / (far - near)
    P[3, 2] = 1.0
    return P


# --------------------------------------------------------------------------- shaders

_VERTEX_SHADER = """
#version 330
uniform mat4 u_mv;      // T_cam_obj
uniform mat4 u_proj;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
in vec2 in_uv;
out vec3 v_obj;
out vec3 v_cam;
out vec3 v_normal;
out vec3 v_color;
out vec2 v_uv;
void main() {
    vec4 pc = u_mv * vec4(in_pos, 1.0);
    v_obj = in_pos;
    v_cam = pc.xyz;
    v_normal = mat3(u_mv) * in_normal;
    v_color = in_color;
    v_uv = in_uv;
    gl_Position = u_proj * pc;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform int u_use_texture;
uniform sampler2D u_tex;
uniform vec3 u_light_dir;     // direction the light travels (camera frame), unit
uniform vec3 u_light_color;
uniform float u_ambient;
uniform float u_diffuse;
uniform float u_label;        // (item index + 1) / 255
uniform int u_gbuffer;        // 1: unshaded colour + camera-frame normal (deferred shading)
in vec3 v_obj;
in vec3 v_cam;
in vec3 v_normal;
in vec3 v_color;
in vec2 v_uv;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec4 f_xyz;
layout(location = 2) out float f_depth;
void main() {
    vec3 n = v_normal;
    if (dot(n, n) < 1e-20) n = cross(dFdx(v_cam), dFdy(v_cam));
    n = normalize(n);
    if (dot(n, v_cam) > 0.0) n = -n;            // two-sided: face the camera
    float lambert = max(dot(n, -u_light_dir), 0.0);
    vec3 base = v_color;
    if (u_use_texture == 1) base = texture(u_tex, vec2(v_uv.x, 1.0 - v_uv.y)).rgb;
    if (u_gbuffer == 1) {
        f_color = vec4(base, u_label);
        f_xyz = vec4(n, 1.0);
    } else {
        vec3 c = base * (u_ambient + u_diffuse * lambert) * u_light_color;
        f_color = vec4(clamp(c, 0.0, 1.0), u_label);
        f_xyz = vec4(v_obj, 1.0);
    }
    f_depth = v_cam.z;
}
"""


# --------------------------------------------------------------------------- context

_DEVICE_CACHE: dict[int, str] | None = None


def _import_moderngl():
    try:
        import moderngl  # noqa: WPS433
    except ImportError as e:  # pragma: no cover - the venv always has it
        raise RenderError(f"the Python package moderngl is missing ({e}); pip install moderngl "
                          "glcontext") from None
    return moderngl


def _create_context(device_index: int | None):
    moderngl = _import_moderngl()
    kwargs = {"backend": "egl", "require": 330}
    if device_index is not None:
        kwargs["device_index"] = int(device_index)
    try:
        return moderngl.create_standalone_context(**kwargs)
    except Exception as e:  # moderngl / glcontext raise plain Exception
        msg = str(e)
        if device_index is not None and "requested device index" in msg:
            raise IndexError(msg) from None
        raise RenderError(
            f"could not create a headless OpenGL 3.3 context over EGL ({type(e).__name__}: "
            f"{msg}). EGL or Mesa is probably missing: install the system packages with "
            f"'{EGL_PACKAGES}' (on NVIDIA also the driver's EGL library, libnvidia-egl)") from None


def _egl_devices() -> dict[int, str]:
    """{EGL device index: GL_RENDERER string}; probed once per process."""
    global _DEVICE_CACHE
    if _DEVICE_CACHE is None:
        found: dict[int, str] = {}
        for i in range(16):
            try:
                ctx = _create_context(i)
            except IndexError:
                break
            except RenderError:
                continue
            found[i] = str(ctx.info.get("GL_RENDERER", "?"))
            ctx.release()
        _DEVICE_CACHE = found
    return _DEVICE_CACHE


def _is_software(renderer_name: str) -> bool:
    return any(s in renderer_name.lower() for s in _SOFTWARE_RENDERERS)


def _open_context(device: str):
    """Create the moderngl context for ``device`` ("cpu", "cuda", "cuda:i")."""
    if not isinstance(device, str):
        raise InputError(f"device must be 'cpu', 'cuda' or 'cuda:<i>', got {device!r}")
    dev = device.strip().lower()
    if dev == "cpu":
        if "GLCONTEXT_DEVICE_INDEX" not in os.environ:
            ctx = _create_context(None)
            if _is_software(ctx.info.get("GL_RENDERER", "")):
                return ctx
            ctx.release()
        soft = [i for i, name in _egl_devices().items() if _is_software(name)]
        if not soft:
            raise RenderError(f"device 'cpu' needs Mesa's llvmpipe EGL device, found only "
                              f"{_egl_devices()}; install it with '{EGL_PACKAGES}'")
        return _create_context(soft[0])
    if dev == "cuda" or dev.startswith("cuda:"):
        try:
            idx = 0 if dev == "cuda" else int(dev.split(":", 1)[1])
        except ValueError:
            raise InputError(f"device must be 'cpu', 'cuda' or 'cuda:<i>', got {device!r}") \
                from None
        hw = [i for i, name in _egl_devices().items() if not _is_software(name)]
        if idx < 0 or idx >= len(hw):
            raise RenderError(f"device {device!r}: found {len(hw)} hardware EGL device(s) "
                              f"(all EGL devices: {_egl_devices()}); the NVIDIA driver's EGL "
                              "(libnvidia-egl, libegl1) must be installed, or use device='cpu'")
        return _create_context(hw[idx])
    raise InputError(f"device must be 'cpu', 'cuda' or 'cuda:<i>', got {device!r}")


# --------------------------------------------------------------------------- mesh upload

def _normals_and_orientation(V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Vertex normals and the winding of front faces for back-face culling.

    Returns:
        ``(normals, front)``: normals (V, 3) float32, area-weighted, shared by vertices at the
        same position (UV seams do not show in the shading); ``front`` is the OpenGL
        ``front_face`` ("cw" / "ccw") that makes culling exact, or None when the surface is not
        closed and consistently wound (then nothing is culled). For a closed oriented surface
        every back-facing triangle is hidden behind a front-facing one, so culling changes no
        pixel and halves the rasterisation work.
    """
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])  # length = 2 * area
    # merge vertices at the same position (to 1 nm): lexsort + run labels (np.unique(axis=0)
    # is ~10x slower)
    q = np.round(V * 1e9).astype(np.int64)
    order = np.lexsort(q.T[::-1])
    qs = q[order]
    new = np.empty(len(V), dtype=bool)
    new[0] = True
    new[1:] = np.any(qs[1:] != qs[:-1], axis=1)
    inv = np.empty(len(V), dtype=np.int64)
    inv[order] = np.cumsum(new) - 1
    n_unique = int(inv.max()) + 1
    acc = np.zeros((n_unique, 3))
    G = inv[F]  # (F, 3) faces on position-merged vertices
    for k in range(3):
        acc[:, k] = np.bincount(G.reshape(-1), weights=np.repeat(fn[:, k], 3),
                                minlength=n_unique)
    out = acc[inv]
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.divide(out, norm, out=np.zeros_like(out), where=norm > 1e-30)

    front = None
    degenerate = (G[:, 0] == G[:, 1]) | (G[:, 1] == G[:, 2]) | (G[:, 2] == G[:, 0])
    if not degenerate.any():
        a = G.reshape(-1)
        b = G[:, [1, 2, 0]].reshape(-1)
        fwd = np.sort(a * n_unique + b)
        rev = np.sort(b * n_unique + a)
        closed = bool(np.all(fwd[1:] != fwd[:-1]) and np.array_equal(fwd, rev))
        if closed:
            volume = float(np.einsum("ij,ij->i", V[F[:, 0]],
                                     np.cross(V[F[:, 1]], V[F[:, 2]])).sum()) / 6.0
            if volume != 0.0:
                # projection_from_K mirrors the image rows, so outward counter-clockwise
                # triangles appear clockwise in window coordinates
                front = "cw" if volume > 0 else "ccw"
    return out.astype(np.float32), front


@dataclass
class _Mesh:
    vbo: object
    ibo: object
    vao: object
    texture: object | None
    center: np.ndarray   # (3,) bounding-sphere centre, object frame, m
    radius: float        # bounding-sphere radius, m
    n_faces: int
    front: str | None    # front-face winding for back-face culling, None = no culling
    content: str | None = None
    extra: dict = field(default_factory=dict)

    def release(self) -> None:
        for res in (self.vao, self.vbo, self.ibo, self.texture):
            if res is not None:
                res.release()


# --------------------------------------------------------------------------- renderer

class Renderer:
    """Headless OpenGL renderer of object meshes (see the module docstring for conventions).

    Args:
        width, height: default image size in pixels (each call may override it).
        device: "cpu" (Mesa llvmpipe), "cuda" or "cuda:i" (the i-th hardware EGL device).

    Raises:
        RenderError when no EGL / OpenGL 3.3 context can be created; the message names the system
        packages to install.

    Example::

        with Renderer(224, 224) as r:
            r.add_object("can", obj)
            out = r.render("can", T_cam_obj, K)   # out.rgb (1, 224, 224, 3) uint8
    """

    def __init__(self, width: int = 224, height: int = 224, device: str = "cpu") -> None:
        self.width, self.height = self._check_size(width, height)
        self.device = device
        self.ctx = _open_context(device)
        try:
            self.gl_renderer = str(self.ctx.info.get("GL_RENDERER", "?"))
            self._max_size = int(self.ctx.info.get("GL_MAX_RENDERBUFFER_SIZE", 8192))
            self.prog = self.ctx.program(vertex_shader=_VERTEX_SHADER,
                                         fragment_shader=_FRAGMENT_SHADER)
        except Exception as e:
            self.ctx.release()
            raise RenderError(f"OpenGL set-up failed on {device!r}: {e}") from None
        self.prog["u_tex"].value = 0
        self.prog["u_gbuffer"].value = 0
        self._meshes: dict[str, _Mesh] = {}
        self._fbos: dict[tuple[int, int], tuple] = {}
        self._released = False

    # ------------------------------------------------------------------ meshes
    def has(self, key: str) -> bool:
        """True when a mesh is uploaded under ``key``."""
        return key in self._meshes

    def keys(self) -> list[str]:
        """Keys of the uploaded meshes."""
        return list(self._meshes)

    def add_object(self, key: str, obj) -> None:
        """Upload an :class:`coop_ros.objects.ObjectModel` under ``key`` (once).

        A second call with the same key and the same ``obj.content_hash()`` does nothing; a
        different object under an existing key replaces it.
        """
        content = obj.content_hash() if hasattr(obj, "content_hash") else None
        old = self._meshes.get(key)
        if old is not None and content is not None and old.content == content:
            return
        self.add_mesh(key, obj.vertices, obj.faces, vertex_colors=obj.vertex_colors,
                      uv=obj.uv, texture=obj.texture)
        self._meshes[key].content = content

    def add_mesh(self, key: str, vertices, faces, vertex_colors=None, uv=None,
                 texture=None) -> None:
        """Upload (or replace) a triangle mesh under ``key``.

        Args:
            key: name used by :meth:`render` / :meth:`render_scene`.
            vertices: (V, 3) float vertex positions in the object frame, metres.
            faces: (F, 3) int vertex indices.
            vertex_colors: optional (V, 3) RGB, float in [0, 1] or uint8 in [0, 255]
                (an alpha column (V, 4) is dropped).
            uv: optional (V, 2) float texture coordinates, OpenGL convention (v up).
            texture: optional (Ht, Wt, 3) uint8 RGB image, row 0 = top of the image file;
                used (with ``uv``) instead of vertex colours.

        Raises:
            InputError naming the bad array (shape, dtype, non-finite values, index range, a
            texture without uv).
        """
        self._check_alive()
        if not isinstance(key, str) or not key:
            raise InputError(f"key must be a non-empty string, got {key!r}")
        V = np.asarray(vertices, dtype=np.float64)
        if V.ndim != 2 or V.shape[1] != 3 or len(V) < 3:
            raise InputError(f"vertices must have shape (V, 3) with V >= 3, got {V.shape}")
        if not np.all(np.isfinite(V)):
            raise InputError("vertices contain non-finite values")
        F = np.asarray(faces)
        if F.ndim != 2 or F.shape[1] != 3 or len(F) < 1 or not np.issubdtype(F.dtype, np.integer):
            raise InputError(f"faces must be an (F, 3) integer array with F >= 1, got shape "
                             f"{F.shape} dtype {F.dtype}")
        if F.min() < 0 or F.max() >= len(V):
            raise InputError(f"faces index vertices outside [0, {len(V) - 1}] "
                             f"(min {F.min()}, max {F.max()})")
        nV = len(V)
        colors = np.empty((nV, 3), dtype=np.float32)
        colors[:] = DEFAULT_GREY
        if vertex_colors is not None:
            C = np.asarray(vertex_colors)
            if C.ndim != 2 or C.shape[0] != nV or C.shape[1] not in (3, 4):
                raise InputError(f"vertex_colors must have shape ({nV}, 3), got {C.shape}")
            C = C[:, :3]
            C = C.astype(np.float32) / 255.0 if C.dtype == np.uint8 else C.astype(np.float32)
            if not np.all(np.isfinite(C)):
                raise InputError("vertex_colors contain non-finite values")
            colors[:] = np.clip(C, 0.0, 1.0)
        uvs = np.zeros((nV, 2), dtype=np.float32)
        if uv is not None:
            U = np.asarray(uv, dtype=np.float32)
            if U.shape != (nV, 2) or not np.all(np.isfinite(U)):
                raise InputError(f"uv must be a finite ({nV}, 2) array, got shape {U.shape}")
            uvs[:] = U
        tex_img = None
        if texture is not None:
            if uv is None:
                raise InputError("a texture was given without uv coordinates")
            tex_img = np.asarray(texture)
            if tex_img.ndim == 3 and tex_img.shape[2] == 4:
                tex_img = tex_img[..., :3]
            if tex_img.ndim != 3 or tex_img.shape[2] != 3 or tex_img.dtype != np.uint8:
                raise InputError(f"texture must be an (Ht, Wt, 3) uint8 RGB image, got shape "
                                 f"{tex_img.shape} dtype {tex_img.dtype}")
        normals, front = _normals_and_orientation(V, F.astype(np.int64))
        data = np.concatenate([V.astype(np.float32), normals, colors, uvs], axis=1)
        lo, hi = V.min(axis=0), V.max(axis=0)
        center = (lo + hi) / 2.0
        radius = float(np.linalg.norm(V - center, axis=1).max())

        with self.ctx:
            if key in self._meshes:
                self._meshes.pop(key).release()
            vbo = self.ctx.buffer(np.ascontiguousarray(data, dtype=np.float32).tobytes())
            ibo = self.ctx.buffer(np.ascontiguousarray(F, dtype=np.uint32).tobytes())
            vao = self.ctx.vertex_array(
                self.prog, [(vbo, "3f 3f 3f 2f", "in_pos", "in_normal", "in_color", "in_uv")],
                index_buffer=ibo, index_element_size=4)
            tex = None
            if tex_img is not None:
                th, tw = tex_img.shape[:2]
                tex = self.ctx.texture((tw, th), 3, np.ascontiguousarray(tex_img).tobytes(),
                                       alignment=1)
                tex.repeat_x = tex.repeat_y = True
                tex.build_mipmaps()
                tex.filter = (self.ctx.LINEAR_MIPMAP_LINEAR, self.ctx.LINEAR)
        self._meshes[key] = _Mesh(vbo, ibo, vao, tex, center, radius, len(F), front)

    def remove(self, key: str) -> None:
        """Free the GPU buffers of ``key`` (no-op when absent)."""
        mesh = self._meshes.pop(key, None)
        if mesh is not None:
            with self.ctx:
                mesh.release()

    # ------------------------------------------------------------------ rendering
    def render(self, key: str, T_cam_obj, K, width: int | None = None,
               height: int | None = None, light: Light | None = None,
               xyz: bool = True) -> RenderOutput:
        """Render one mesh at B poses.

        Args:
            key: a key given to :meth:`add_object` / :meth:`add_mesh`.
            T_cam_obj: (4, 4) or (B, 4, 4) float64 poses, metres.
            K: (3, 3) or (B, 3, 3) float64 intrinsics (one shared or one per pose), pixels.
            width, height: image size in pixels (default: the renderer's).
            light: :class:`Light` (default: ``Light()``, a headlight).
            xyz: False skips reading the object coordinates back (``xyz`` is then None): the
                read-back of the 12-byte-per-pixel buffer is a third of a small rendering's time.

        Returns:
            :class:`RenderOutput` with B images (B = 1 for a single pose); ``labels`` is None.

        Raises:
            InputError for an unknown key or bad poses / K / size.
        """
        mesh = self._get(key)
        Ts = self._check_poses(T_cam_obj)
        Ks = self._check_Ks(K, len(Ts))
        W, H = self._size(width, height)
        light = (light or Light()).validated()
        B = len(Ts)
        rgb = np.empty((B, H, W, 3), dtype=np.uint8)
        xyz_out = np.empty((B, H, W, 3), dtype=np.float32) if xyz else None
        depth = np.empty((B, H, W), dtype=np.float32)
        with self.ctx:
            fbo = self._fbo(W, H)
            fbo.use()
            self._set_light(light)
            self.prog["u_label"].value = 1.0 / 255.0
            for b in range(B):
                near, far = self._near_far([(mesh, Ts[b])])
                self._clear(fbo)
                self._draw(mesh, Ts[b], projection_from_K(Ks[b], W, H, near, far))
                self._read(fbo, W, H, rgb[b], None if xyz_out is None else xyz_out[b], depth[b])
        return RenderOutput(rgb=rgb, depth=depth, mask=depth > 0, xyz=xyz_out, labels=None)

    def render_depth(self, key: str, T_cam_obj, K, width: int | None = None,
                     height: int | None = None, region=None) -> np.ndarray:
        """Depth only of one mesh at one pose (the mask is ``depth > 0``): the same pixels as
        :meth:`render`, without reading the colour and coordinate attachments back.

        Args:
            key: an uploaded mesh; T_cam_obj: (4, 4) pose [m]; K: (3, 3) [px];
            width, height: image size [px] (default: the renderer's).
            region: optional ``(x0, y0, x1, y1)`` integer pixel bounds (x1, y1 exclusive) that
                hold the whole object (e.g. its projected bounding box): only they are cleared,
                rasterised (GL scissor test) and read back, the rest of the image is 0. Inside
                the region the pixels equal a full-frame render's (same projection); on
                llvmpipe a small region is several times faster.
        Returns:
            (H, W) float32 camera z [m], 0 off the object.
        """
        mesh = self._get(key)
        T = self._check_poses(T_cam_obj)[0]
        Kc = self._check_Ks(K, 1)[0]
        W, H = self._size(width, height)
        vp = (0, 0, W, H)
        if region is not None:
            x0, y0, x1, y1 = (int(v) for v in region)
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
            if x1 <= x0 or y1 <= y0:
                return np.zeros((H, W), dtype=np.float32)
            vp = (x0, y0, x1 - x0, y1 - y0)
        out = np.zeros((H, W), dtype=np.float32)
        depth = np.empty((vp[3], vp[2]), dtype=np.float32)
        with self.ctx:
            fbo = self._fbo(W, H)
            fbo.use()
            self._set_light(Light())
            self.prog["u_label"].value = 1.0 / 255.0
            near, far = self._near_far([(mesh, T)])
            self.ctx.enable_only(self.ctx.DEPTH_TEST)
            fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0, viewport=vp)
            self.ctx.scissor = vp
            try:
                self._draw(mesh, T, projection_from_K(Kc, W, H, near, far))
            finally:
                self.ctx.scissor = None
            fbo.read_into(depth, vp, components=1, attachment=2, dtype="f4")
        out[vp[1]:vp[1] + vp[3], vp[0]:vp[0] + vp[2]] = depth
        return out

    def render_scene(self, items, K, width: int | None = None, height: int | None = None,
                     light: Light | None = None, background=None) -> RenderOutput:
        """Render several meshes in one image with a shared z-buffer.

        Args:
            items: list of ``(key, T_cam_obj)``, poses (4, 4) float64 metres; a key may repeat
                (several instances). At most 254 items.
            K: (3, 3) float64 intrinsics, pixels.
            width, height: image size in pixels (default: the renderer's).
            light: :class:`Light` (default: headlight).
            background: optional (H, W, 3) uint8 RGB image the rendering is composited over.

        Returns:
            :class:`RenderOutput` with B = 1; ``labels`` (1, H, W) int16 holds the index of the
            visible item per pixel (-1 = background); ``xyz`` is in the visible item's frame.

        Raises:
            InputError for an empty / too long item list, unknown keys, bad poses, K, size or
            background.
        """
        rgba, xyz, depth = self._scene_pass(items, K, width, height, light, background,
                                            gbuffer=False)
        mask = depth > 0
        rgb = np.ascontiguousarray(rgba[..., :3])
        if background is not None:
            rgb = np.where(mask[..., None], rgb, background)
        return RenderOutput(rgb=rgb[None], depth=depth[None], mask=mask[None], xyz=xyz[None],
                            labels=rgba[None, ..., 3].astype(np.int16) - 1)

    def render_gbuffer(self, items, K, width: int | None = None,
                       height: int | None = None) -> GBuffer:
        """Render several meshes in one image (shared z-buffer) without shading: the colour, the
        camera-frame normal, the depth and the item label of every pixel, for deferred shading
        (:mod:`coop_ros.render.lighting`).

        Args:
            items: list of ``(key, T_cam_obj)`` as for :meth:`render_scene` (at most 254).
            K: (3, 3) float64 intrinsics, pixels.
            width, height: image size in pixels (default: the renderer's).

        Returns:
            :class:`GBuffer` (H, W) arrays; the same pixels are covered as by
            :meth:`render_scene` with the same items.
        """
        rgba, nrm, depth = self._scene_pass(items, K, width, height, None, None, gbuffer=True)
        return GBuffer(albedo=rgba[..., :3].astype(np.float32) / 255.0, normal=nrm,
                       depth=depth, labels=rgba[..., 3].astype(np.int16) - 1)

    def _scene_pass(self, items, K, width, height, light, background, gbuffer: bool):
        """One z-buffered pass over ``items``: (rgba (H, W, 4) uint8 with the label in alpha,
        xyz or normal (H, W, 3) float32, depth (H, W) float32)."""
        items = list(items)
        if not items:
            raise InputError("render_scene needs at least one (key, T_cam_obj) item")
        if len(items) > MAX_SCENE_ITEMS:
            raise InputError(f"render_scene takes at most {MAX_SCENE_ITEMS} items, got "
                             f"{len(items)}")
        parsed = []
        for i, it in enumerate(items):
            try:
                key, T = it
            except (TypeError, ValueError):
                raise InputError(f"items[{i}] must be a (key, T_cam_obj) pair") from None
            parsed.append((self._get(key), check_pose(T, f"items[{i}] T_cam_obj")))
        Kc = self._check_Ks(K, 1)[0]
        W, H = self._size(width, height)
        if background is not None:
            background = np.asarray(background)
            if background.shape != (H, W, 3) or background.dtype != np.uint8:
                raise InputError(f"background must be an ({H}, {W}, 3) uint8 RGB image, got "
                                 f"shape {background.shape} dtype {background.dtype}")
        light = (light or Light()).validated()
        rgba = np.empty((H, W, 4), dtype=np.uint8)
        xyz = np.empty((H, W, 3), dtype=np.float32)
        depth = np.empty((H, W), dtype=np.float32)
        with self.ctx:
            fbo = self._fbo(W, H)
            fbo.use()
            self._set_light(light)
            self.prog["u_gbuffer"].value = int(gbuffer)
            try:
                near, far = self._near_far(parsed)
                P = projection_from_K(Kc, W, H, near, far)
                self._clear(fbo)
                for i, (mesh, T) in enumerate(parsed):
                    self.prog["u_label"].value = (i + 1) / 255.0
                    self._draw(mesh, T, P)
                self._read(fbo, W, H, rgba, xyz, depth)
            finally:
                self.prog["u_gbuffer"].value = 0
        return rgba, xyz, depth

    # ------------------------------------------------------------------ lifetime
    def release(self) -> None:
        """Free every OpenGL resource and the context (idempotent)."""
        if self._released:
            return
        self._released = True
        with self.ctx:
            for mesh in self._meshes.values():
                mesh.release()
            for fbo, *bufs in self._fbos.values():
                fbo.release()
                for b in bufs:
                    b.release()
            self.prog.release()
        self._meshes.clear()
        self._fbos.clear()
        self.ctx.release()

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # best effort; explicit release() is preferred
        try:
            self.release()
        except Exception:
            pass

    # ------------------------------------------------------------------ internals
    def _check_alive(self) -> None:
        if self._released:
            raise RenderError("this Renderer was released")

    def _get(self, key: str) -> _Mesh:
        self._check_alive()
        try:
            return self._meshes[key]
        except (KeyError, TypeError):
            raise InputError(f"no mesh uploaded under key {key!r}; known keys: "
                             f"{sorted(self._meshes)}") from None

    @staticmethod
    def _check_size(width, height) -> tuple[int, int]:
        for name, v in (("width", width), ("height", height)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name} must be a positive integer number of pixels, got {v!r}")
        return int(width), int(height)

    def _size(self, width, height) -> tuple[int, int]:
        W, H = self._check_size(self.width if width is None else width,
                                self.height if height is None else height)
        if W > self._max_size or H > self._max_size:
            raise InputError(f"image size {W}x{H} exceeds the OpenGL limit {self._max_size}")
        return W, H

    @staticmethod
    def _check_poses(T) -> np.ndarray:
        T = np.asarray(T, dtype=np.float64)
        if T.shape == (4, 4):
            T = T[None]
        if T.ndim != 3 or T.shape[1:] != (4, 4) or len(T) == 0:
            raise InputError(f"T_cam_obj must be (4, 4) or (B, 4, 4) with B >= 1, got {T.shape}")
        check_poses(T, "T_cam_obj")
        return T

    @staticmethod
    def _check_Ks(K, B: int) -> np.ndarray:
        K = np.asarray(K, dtype=np.float64)
        if K.shape == (3, 3):
            Kc = check_intrinsics(K)
            return np.broadcast_to(Kc, (B, 3, 3))
        if K.ndim != 3 or K.shape[1:] != (3, 3) or len(K) != B:
            raise InputError(f"K must be (3, 3) or ({B}, 3, 3) to match the poses, got {K.shape}")
        return np.stack([check_intrinsics(K[b], name=f"K[{b}]") for b in range(B)])

    @staticmethod
    def _near_far(items) -> tuple[float, float]:
        """Clip planes enclosing the bounding spheres of ``[(mesh, T)]`` (with slack)."""
        zmin, zmax = np.inf, -np.inf
        for mesh, T in items:
            cz = float(T[2, :3] @ mesh.center + T[2, 3])
            zmin = min(zmin, cz - mesh.radius)
            zmax = max(zmax, cz + mesh.radius)
        far = max(zmax * 1.01 + 1e-3, 1e-2)
        near = max(zmin * 0.99 - 1e-4, far * 1e-4, 1e-5)
        if near >= far:  # the whole scene lies behind the camera: nothing will be drawn
            near = far * 0.5
        return near, far

    def _fbo(self, W: int, H: int):
        entry = self._fbos.get((W, H))
        if entry is None:
            col = self.ctx.renderbuffer((W, H), 4, dtype="f1")      # rgb + item label
            xyz = self.ctx.renderbuffer((W, H), 4, dtype="f4")      # object coordinates
            zc = self.ctx.renderbuffer((W, H), 1, dtype="f4")       # metric camera z
            zbuf = self.ctx.depth_renderbuffer((W, H))
            fbo = self.ctx.framebuffer(color_attachments=[col, xyz, zc], depth_attachment=zbuf)
            entry = (fbo, col, xyz, zc, zbuf)
            self._fbos[(W, H)] = entry
        return entry[0]

    def _set_light(self, light: Light) -> None:
        d = np.asarray(light.direction, dtype=np.float64)
        self.prog["u_light_dir"].value = tuple(float(x) for x in d / np.linalg.norm(d))
        self.prog["u_light_color"].value = tuple(float(x) for x in light.color)
        self.prog["u_ambient"].value = float(light.ambient)
        self.prog["u_diffuse"].value = float(light.diffuse)

    def _clear(self, fbo) -> None:
        self.ctx.enable_only(self.ctx.DEPTH_TEST)  # no blending; culling is set per mesh
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)

    def _draw(self, mesh: _Mesh, T: np.ndarray, P: np.ndarray) -> None:
        self.prog["u_mv"].write(np.ascontiguousarray(T.T, dtype=np.float32).tobytes())
        self.prog["u_proj"].write(np.ascontiguousarray(P.T, dtype=np.float32).tobytes())
        if mesh.front is None:
            self.ctx.disable(self.ctx.CULL_FACE)
        else:
            self.ctx.enable(self.ctx.CULL_FACE)
            self.ctx.front_face = mesh.front
        if mesh.texture is not None:
            mesh.texture.use(0)
            self.prog["u_use_texture"].value = 1
        else:
            self.prog["u_use_texture"].value = 0
        mesh.vao.render()

    @staticmethod
    def _read(fbo, W: int, H: int, col: np.ndarray, xyz: np.ndarray | None,
              depth: np.ndarray) -> None:
        """Read the attachments straight into C-contiguous (H, W, C) arrays; GL row 0 is image
        row 0 (see projection_from_K), so no flip. ``col`` has 3 (rgb) or 4 (rgb + label)
        channels."""
        vp = (0, 0, W, H)
        fbo.read_into(col, vp, components=col.shape[-1], attachment=0, dtype="f1")
        if xyz is not None:
            fbo.read_into(xyz, vp, components=3, attachment=1, dtype="f4")
        fbo.read_into(depth, vp, components=1, attachment=2, dtype="f4")
