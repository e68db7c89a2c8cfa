"""Built-in procedural objects, textures and backgrounds (no downloads needed).

Objects are :class:`coop_ros.objects.ObjectModel` in **metres**, centred on their bounding box,
deterministic for a ``seed`` (the seed changes the printed texture / colours, never the size):

==================  ==========================================  ========================  ==========
name                shape (default size)                        appearance                symmetries
==================  ==========================================  ========================  ==========
``textured_box``    cereal box 0.14 x 0.05 x 0.20 m (x, y, z)   UV texture atlas: colour  none
                                                                blocks, stripes, text,
                                                                barcode, noise
``can``             cylinder r 0.033 m, h 0.10 m, axis z        UV texture: printed       continuous
                                                                label band, grey caps     about z
``mug``             shell r 0.041 m, h 0.095 m + handle (+x)    vertex colours: glaze,    none
                                                                white inside, a band
``industrial_part`` L-bracket 0.12 x 0.05 x 0.066 m, 6 mm       one plain grey-metal      none
                    plates, 4 holes, an edge gusset             vertex colour
==================  ==========================================  ========================  ==========

Design choices
--------------
* **Textures are UV-mapped** (``ObjectModel.uv`` + ``texture``), not baked into vertex colours:
  the print stays sharp (4 px/mm) on a mesh of a few thousand faces. Vertices are duplicated at
  every sharp edge (each box face, cap and wall is its own grid), so the renderer's vertex normals
  give flat faces with crisp edges and smooth curved walls. Faces are subdivided into cells of
  about 1 cm, so per-vertex lighting is smooth.
* The can follows the **BOP convention for YCB-V cans**: its continuous symmetry about z is
  declared for the *geometry* although the printed label breaks it in appearance.
* The textured box is declared non-symmetric (its print is not symmetric; BOP declares none for
  YCB-V's printed boxes). The mug's handle and the bracket's uneven legs / hole pattern / one-sided
  gusset break every rotational symmetry.

Textures and backgrounds are drawn with numpy / Pillow (Pillow's bundled font, so the pixels do
not depend on the fonts installed): :func:`random_texture`, :func:`random_background`. Distractor
meshes for synthetic scenes come from :func:`random_primitive`.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from coop_ros.errors import InputError
from coop_ros.objects import ObjectModel

__all__ = [
    "PROCEDURAL", "procedural_objects", "make_object",
    "textured_box", "can", "mug", "industrial_part", "random_primitive", "textured_mesh",
    "random_texture", "random_background",
    "BOX_SIZE", "CAN_RADIUS", "CAN_HEIGHT", "MUG_RADIUS", "MUG_HEIGHT", "BRACKET_SIZE",
]

#: default sizes [m]
BOX_SIZE = (0.14, 0.05, 0.20)
CAN_RADIUS, CAN_HEIGHT = 0.033, 0.10
MUG_RADIUS, MUG_HEIGHT = 0.041, 0.095
#: bracket: base length (x), width (y), height (z) [m]
BRACKET_SIZE = (0.12, 0.05, 0.066)

_PX_PER_M = 4000.0        # texture resolution: 4 px / mm
_MAX_TEX = 2048           # largest texture side [px]
_CELL = 0.01              # mesh cell size [m]
_METAL_GREY = (0.56, 0.58, 0.61)


# =============================================================================================
# small mesh builder
# =============================================================================================
class _MeshBuilder:
    """Accumulates triangle parts (each with its own vertices) with optional uv / colours."""

    def __init__(self):
        self.v: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.uv: list[np.ndarray | None] = []
        self.c: list[np.ndarray | None] = []
        self.n = 0

    def add(self, verts, faces, uv=None, color=None, outward=None):
        """Add a part. ``outward``: optional (T, 3) array, or callable (triangle centroids (T, 3))
        -> (T, 3), the direction each face normal must point to; triangles are flipped where their
        normal does not."""
        verts = np.asarray(verts, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        if outward is not None:
            tri = verts[faces]
            nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            want = outward(tri.mean(axis=1)) if callable(outward) else np.asarray(outward)
            flip = np.einsum("ij,ij->i", nrm, want) < 0
            faces = faces.copy()
            faces[flip] = faces[flip][:, ::-1]
        if color is not None:
            color = np.asarray(color, dtype=np.float32)
            if color.ndim == 1:
                color = np.broadcast_to(color, (len(verts), 3)).copy()
        self.v.append(verts)
        self.f.append(faces + self.n)
        self.uv.append(None if uv is None else np.asarray(uv, dtype=np.float32))
        self.c.append(color)
        self.n += len(verts)

    def arrays(self):
        V = np.concatenate(self.v)
        F = np.concatenate(self.f)
        uv = None if any(u is None for u in self.uv) else np.concatenate(self.uv)
        c = None if any(c is None for c in self.c) else np.concatenate(self.c)
        return V, F, uv, c


def _grid_faces(nu: int, nv: int) -> np.ndarray:
    """Triangles of a (nv+1) x (nu+1) vertex grid (row-major, u fastest)."""
    i, j = np.meshgrid(np.arange(nv), np.arange(nu), indexing="ij")
    a = (i * (nu + 1) + j).ravel()
    b, c, d = a + 1, a + nu + 1, a + nu + 2
    return np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])


def _param_grid(fn, nu: int, nv: int):
    """Vertices fn(u, v) on a grid of (nu+1) x (nv+1) parameters in [0, 1]^2 -> (verts, faces,
    params (N, 2))."""
    v, u = np.meshgrid(np.linspace(0, 1, nv + 1), np.linspace(0, 1, nu + 1), indexing="ij")
    params = np.stack([u.ravel(), v.ravel()], 1)
    return fn(params[:, 0], params[:, 1]), _grid_faces(nu, nv), params


def _disc(center, radius, z_axis, n_theta, n_r, r_in=0.0):
    """Flat disc (or annulus ``r_in``..``radius``) in the plane of unit normal ``z_axis``: rings
    of ``n_theta`` vertices (+ a centre vertex for a full disc).
    Returns (verts, faces, (r, theta))."""
    z = np.asarray(z_axis, dtype=np.float64)
    x = np.cross(z, [0, 1, 0] if abs(z[1]) < 0.9 else [1, 0, 0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    th = np.linspace(0, 2 * np.pi, n_theta, endpoint=False)
    radii = np.linspace(r_in, radius, n_r + 1)[(1 if r_in == 0 else 0):]
    rr, tt = np.meshgrid(radii, th, indexing="ij")
    rr, tt = rr.ravel(), tt.ravel()
    pts = (np.asarray(center)[None] + rr[:, None] * np.cos(tt)[:, None] * x
           + rr[:, None] * np.sin(tt)[:, None] * y)
    faces = []
    nr = len(radii)
    for k in range(nr - 1):
        for t in range(n_theta):
            a, b = k * n_theta + t, k * n_theta + (t + 1) % n_theta
            c, d = a + n_theta, b + n_theta
            faces += [(a, b, d), (a, d, c)]
    if r_in == 0:
        ci = len(pts)
        pts = np.vstack([pts, center])
        rr, tt = np.append(rr, 0.0), np.append(tt, 0.0)
        faces += [(ci, t, (t + 1) % n_theta) for t in range(n_theta)]
    return pts, np.asarray(faces, dtype=np.int64), np.stack([rr, tt], 1)


def _radial_xy(p):
    d = p.copy()
    d[:, 2] = 0
    return d


# =============================================================================================
# textures
# =============================================================================================
_SYLLABLES = ("ka", "ro", "mi", "tu", "lo", "ve", "na", "shi", "po", "ra", "zen", "qu", "bel",
              "dor", "fy", "ix", "mo", "ta", "sol", "kre", "vi", "gro", "lux", "pa")


def _font(size: int):
    """Pillow's bundled scalable font (same pixels on every machine)."""
    return ImageFont.load_default(size=max(6, int(size)))


def _word(rng: np.random.Generator, lo: int = 2, hi: int = 3) -> str:
    n = int(rng.integers(lo, hi + 1))
    return "".join(_SYLLABLES[int(i)] for i in rng.integers(0, len(_SYLLABLES), n))


def _color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(x) for x in rng.integers(lo, hi, 3))


def _contrast(c) -> tuple[int, int, int]:
    """Black or white, whichever stands out on colour ``c``."""
    return (20, 20, 20) if 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 128 else (245, 245, 245)


def _value_noise(h: int, w: int, rng: np.random.Generator, octaves: int = 4,
                 base_cells: int = 4) -> np.ndarray:
    """(h, w) float32 fractal value noise in [0, 1] (bicubic up-sampled random grids)."""
    import cv2

    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base_cells * 2 ** o
        g = rng.random((cells + 1, cells + 1)).astype(np.float32)
        out += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _draw_text_lines(draw: ImageDraw.ImageDraw, box, rng, color, size: int):
    x0, y0, x1, y1 = box
    font = _font(size)
    y = y0
    while y + size <= y1:
        line = ""
        while True:
            cand = (line + " " + _word(rng, 1, 3)).strip()
            if font.getlength(cand) > (x1 - x0):
                break
            line = cand
        draw.text((x0, y), line, fill=color, font=font)
        y += int(size * 1.35)


def _barcode(draw: ImageDraw.ImageDraw, box, rng):
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=(250, 250, 250))
    x = x0 + 2
    while x < x1 - 3:
        wbar = int(rng.integers(1, 4))
        if rng.random() < 0.55:
            draw.rectangle((x, y0 + 2, min(x + wbar - 1, x1 - 2), y1 - 2), fill=(10, 10, 10))
        x += wbar


def _stripes(h: int, w: int, rng, c1, c2) -> np.ndarray:
    period = float(rng.uniform(6, max(8.0, min(h, w) / 4)))
    ang = float(rng.uniform(0, np.pi))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    s = (np.cos(ang) * x + np.sin(ang) * y) / period
    m = (s - np.floor(s)) < float(rng.uniform(0.3, 0.7))
    return np.where(m[..., None], np.array(c1, np.uint8), np.array(c2, np.uint8))


def _checker(h: int, w: int, rng, c1, c2) -> np.ndarray:
    cell = int(rng.integers(max(4, min(h, w) // 24), max(6, min(h, w) // 5) + 1))
    y, x = np.mgrid[0:h, 0:w]
    m = ((x // cell) + (y // cell)) % 2 == 0
    return np.where(m[..., None], np.array(c1, np.uint8), np.array(c2, np.uint8))


def _noise_rgb(h: int, w: int, rng, c1, c2) -> np.ndarray:
    t = _value_noise(h, w, rng, octaves=5, base_cells=int(rng.integers(2, 8)))[..., None]
    return (np.array(c1, np.float32) * t + np.array(c2, np.float32) * (1 - t)).astype(np.uint8)


_TEXTURE_KINDS = ("stripes", "checker", "noise", "text", "blocks", "plain")


def random_texture(h: int, w: int, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """A procedural texture image.

    Args:
        h, w: size in pixels (>= 8).
        rng: numpy Generator (the only source of randomness).
        kind: one of "stripes", "checker", "noise", "text", "blocks", "plain"; None = random.
    Returns:
        (h, w, 3) uint8 RGB.
    Raises:
        InputError for a bad size or an unknown kind.
    """
    if int(h) < 8 or int(w) < 8:
        raise InputError(f"random_texture: size must be at least 8x8 px, got {h}x{w}")
    h, w = int(h), int(w)
    if kind is None:
        kind = _TEXTURE_KINDS[int(rng.integers(0, len(_TEXTURE_KINDS)))]
    if kind not in _TEXTURE_KINDS:
        raise InputError(f"random_texture: kind must be one of {_TEXTURE_KINDS}, got {kind!r}")
    c1, c2 = _color(rng), _color(rng)
    if kind == "stripes":
        return _stripes(h, w, rng, c1, c2)
    if kind == "checker":
        return _checker(h, w, rng, c1, c2)
    if kind == "noise":
        return _noise_rgb(h, w, rng, c1, c2)
    if kind == "plain":
        base = np.array(c1, np.float32)
        t = _value_noise(h, w, rng, octaves=3)[..., None] - 0.5
        return np.clip(base + 12.0 * t, 0, 255).astype(np.uint8)
    im = Image.new("RGB", (w, h), c1)
    d = ImageDraw.Draw(im)
    if kind == "text":
        _draw_text_lines(d, (2, 2, w - 2, h - 2), rng, _contrast(c1), max(8, min(h, w) // 10))
    else:  # blocks
        for _ in range(int(rng.integers(4, 12))):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = x0 + int(rng.integers(4, w // 2 + 5)), y0 + int(rng.integers(4, h // 2 + 5))
            if rng.random() < 0.5:
                d.rectangle((x0, y0, x1, y1), fill=_color(rng))
            else:
                d.ellipse((x0, y0, x1, y1), fill=_color(rng))
    return np.asarray(im, dtype=np.uint8).copy()


def random_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A cluttered procedural background image: a colour gradient, fractal noise, random
    rectangles / ellipses / polygons / lines, some with textures, and a few text snippets.

    Args:
        h, w: size in pixels (>= 8).
        rng: numpy Generator (the only source of randomness).
    Returns:
        (h, w, 3) uint8 RGB.
    """
    if int(h) < 8 or int(w) < 8:
        raise InputError(f"random_background: size must be at least 8x8 px, got {h}x{w}")
    h, w = int(h), int(w)
    c0, c1 = np.array(_color(rng), np.float32), np.array(_color(rng), np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    s = (np.cos(ang) * x / w + np.sin(ang) * y / h)
    s = (s - s.min()) / max(float(s.max() - s.min()), 1e-6)
    img = c0 * (1 - s[..., None]) + c1 * s[..., None]
    img += (_value_noise(h, w, rng, octaves=5)[..., None] - 0.5) * rng.uniform(20, 90)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    scale = min(h, w)
    for _ in range(int(rng.integers(6, 20))):
        kind = rng.random()
        x0, y0 = int(rng.integers(-scale // 8, w)), int(rng.integers(-scale // 8, h))
        sw = int(rng.integers(scale // 20, scale // 2))
        sh = int(rng.integers(scale // 20, scale // 2))
        if kind < 0.3:
            if rng.random() < 0.4 and sw >= 8 and sh >= 8:
                patch = Image.fromarray(random_texture(sh, sw, rng))
                im.paste(patch, (x0, y0))
            else:
                d.rectangle((x0, y0, x0 + sw, y0 + sh), fill=_color(rng))
        elif kind < 0.55:
            d.ellipse((x0, y0, x0 + sw, y0 + sh), fill=_color(rng))
        elif kind < 0.75:
            pts = [(int(x0 + rng.integers(0, sw + 1)), int(y0 + rng.integers(0, sh + 1)))
                   for _ in range(int(rng.integers(3, 7)))]
            d.polygon(pts, fill=_color(rng))
        elif kind < 0.9:
            d.line((x0, y0, x0 + sw, y0 + sh), fill=_color(rng), width=int(rng.integers(1, 8)))
        else:
            d.text((x0, y0), _word(rng, 2, 4), fill=_color(rng),
                   font=_font(int(rng.integers(10, max(12, scale // 8)))))
    return np.asarray(im, dtype=np.uint8).copy()


# =============================================================================================
# textured box
# =============================================================================================
def _box_net(sx: float, sy: float, sz: float, px_per_m: float):
    """Texture atlas layout of a box (a cross-shaped net) and its faces.

    Returns (Wt, Ht, faces) with faces = list of (name, origin (3,), a (3,), b (3,), (x, y, w, h)
    in texture px) where the face point origin + s*a + t*b (s, t in [0, 1]) has texture pixel
    (x + s*w, y + t*h) (row y down).
    """
    X, Y, Z = (round(d * px_per_m) for d in (sx, sy, sz))
    hx, hy, hz = sx / 2, sy / 2, sz / 2
    faces = [  # name, top-left corner, right vector, down vector, pixel rect
        ("left", (-hx, hy, hz), (0, -sy, 0), (0, 0, -sz), (0, Y, Y, Z)),
        ("front", (-hx, -hy, hz), (sx, 0, 0), (0, 0, -sz), (Y, Y, X, Z)),
        ("right", (hx, -hy, hz), (0, sy, 0), (0, 0, -sz), (Y + X, Y, Y, Z)),
        ("back", (hx, hy, hz), (-sx, 0, 0), (0, 0, -sz), (2 * Y + X, Y, X, Z)),
        ("top", (-hx, hy, hz), (sx, 0, 0), (0, -sy, 0), (Y, 0, X, Y)),
        ("bottom", (-hx, -hy, -hz), (sx, 0, 0), (0, sy, 0), (Y, Y + Z, X, Y)),
    ]
    faces = [(n, np.array(o, float), np.array(a, float), np.array(b, float), r)
             for n, o, a, b, r in faces]
    return 2 * (X + Y), Z + 2 * Y, faces


def _box_mesh(builder: _MeshBuilder, size, px_per_m: float, cell: float = _CELL):
    """Add a box (each face its own grid of ~``cell`` squares) with UVs into its net atlas.
    Returns the atlas layout (Wt, Ht, faces) of :func:`_box_net`."""
    Wt, Ht, faces = _box_net(*size, px_per_m)
    for _name, o, a, b, (x, y, w, h) in faces:
        nu = max(2, int(math.ceil(np.linalg.norm(a) / cell)))
        nv = max(2, int(math.ceil(np.linalg.norm(b) / cell)))
        verts, tris, st = _param_grid(lambda s, t, o=o, a=a, b=b: o + s[:, None] * a + t[:, None] * b,
                                        nu, nv)
        uv = np.stack([(x + st[:, 0] * w) / Wt, 1.0 - (y + st[:, 1] * h) / Ht], 1)
        normal = np.cross(a, b)
        normal = normal if normal @ (o + 0.5 * a + 0.5 * b) > 0 else -normal
        builder.add(verts, tris, uv=uv, outward=lambda p, n=normal: np.broadcast_to(n, p.shape))
    return Wt, Ht, faces


def _cereal_face(name: str, w: int, h: int, rng: np.random.Generator, base, accent) -> Image.Image:
    """Print of one face of the cereal box (a PIL image of w x h px)."""
    im = Image.new("RGB", (w, h), base)
    d = ImageDraw.Draw(im)
    ink = _contrast(base)
    if name == "front":
        band = int(h * rng.uniform(0.16, 0.24))
        d.rectangle((0, 0, w, band), fill=accent)
        brand = _word(rng, 2, 3).upper()
        size = int(band * 0.6)
        font = _font(size)
        while font.getlength(brand) > 0.9 * w and size > 10:
            size -= 2
            font = _font(size)
        d.text((int(0.05 * w), int(0.15 * band)), brand, fill=_contrast(accent), font=font)
        stripe = Image.fromarray(_stripes(int(0.08 * h), w, rng, _color(rng), accent))
        im.paste(stripe, (0, band))
        cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.55, 0.65)
        r = w * rng.uniform(0.3, 0.4)
        d.ellipse((cx - r, cy - 0.6 * r, cx + r, cy + 0.6 * r), fill=_color(rng, 150))
        d.ellipse((cx - 0.85 * r, cy - 0.45 * r, cx + 0.85 * r, cy + 0.3 * r), fill=_color(rng))
        for _ in range(40):  # "flakes"
            fx, fy = cx + rng.uniform(-0.8, 0.8) * r, cy + rng.uniform(-0.4, 0.2) * r
            fr = r * rng.uniform(0.05, 0.12)
            d.ellipse((fx - fr, fy - 0.7 * fr, fx + fr, fy + 0.7 * fr), fill=_color(rng, 120),
                      outline=(60, 40, 20))
        bx, by = int(w * rng.uniform(0.55, 0.7)), int(h * 0.28)
        d.ellipse((bx, by, bx + int(0.28 * w), by + int(0.28 * w)), fill=_color(rng))
        d.text((bx + int(0.05 * w), by + int(0.09 * w)), f"{int(rng.integers(10, 99))}%",
               fill=ink, font=_font(int(0.08 * w)))
        _draw_text_lines(d, (int(0.05 * w), int(0.86 * h), int(0.95 * w), h - 4), rng, ink,
                         max(10, int(0.035 * h)))
    elif name == "back":
        _draw_text_lines(d, (int(0.05 * w), int(0.05 * h), int(0.95 * w), int(0.45 * h)), rng, ink,
                         max(10, int(0.03 * h)))
        ch = Image.fromarray(_checker(int(0.25 * h), int(0.5 * w), rng, _color(rng), _color(rng)))
        im.paste(ch, (int(0.05 * w), int(0.5 * h)))
        for k in range(4):
            d.rectangle((int(0.6 * w), int((0.5 + 0.06 * k) * h), int(0.95 * w),
                         int((0.54 + 0.06 * k) * h)), fill=_color(rng))
        _barcode(d, (int(0.55 * w), int(0.8 * h), int(0.95 * w), int(0.93 * h)), rng)
        _draw_text_lines(d, (int(0.05 * w), int(0.8 * h), int(0.5 * w), int(0.95 * h)), rng, ink,
                         max(9, int(0.02 * h)))
    elif name in ("left", "right"):
        side = Image.new("RGB", (h, w), base)  # drawn landscape, rotated onto the face
        sd = ImageDraw.Draw(side)
        sd.rectangle((0, 0, h, int(0.25 * w)), fill=accent)
        sd.text((int(0.05 * h), int(0.3 * w)), _word(rng, 2, 3).upper(), fill=ink,
                font=_font(int(0.35 * w)))
        _draw_text_lines(sd, (int(0.5 * h), int(0.3 * w), int(0.95 * h), int(0.95 * w)), rng, ink,
                         max(8, int(0.1 * w)))
        im = side.rotate(90 if name == "left" else -90, expand=True)
    else:  # top / bottom
        d.rectangle((0, int(0.4 * h), w, int(0.6 * h)), fill=accent)
        _draw_text_lines(d, (4, 4, w - 4, int(0.38 * h)), rng, ink, max(8, int(0.2 * h)))
    return im


def textured_box(seed: int = 0, size=BOX_SIZE, name: str = "textured_box") -> ObjectModel:
    """A cereal-box-like box with a rich printed texture (UV-mapped atlas).

    Args:
        seed: changes the print (colours, words, layout jitter), not the size.
        size: (3,) extents (x, y, z) in metres, each in [0.01, 1]; default 0.14 x 0.05 x 0.20.
        name: object name.
    Returns:
        ObjectModel (metres, centred, uv + texture (Ht, Wt, 3) uint8 at ~4 px/mm), no symmetries.
    """
    size = _check_size(size, 3, "size")
    rng = np.random.default_rng([seed, 1])
    ppm = min(_PX_PER_M, _MAX_TEX / (2 * (size[0] + size[1])), _MAX_TEX / (size[2] + 2 * size[1]))
    b = _MeshBuilder()
    Wt, Ht, faces = _box_mesh(b, size, ppm)
    base, accent = _color(rng, 30, 256), _color(rng)
    atlas = Image.new("RGB", (Wt, Ht), base)
    for fname, _, _, _, (x, y, w, h) in faces:
        atlas.paste(_cereal_face(fname, w, h, rng, base, accent), (x, y))
    tex = np.asarray(atlas, dtype=np.float32)
    tex += (_value_noise(Ht, Wt, rng, octaves=5, base_cells=8)[..., None] - 0.5) * 24.0
    V, F, uv, _ = b.arrays()
    return _model(V, F, name, uv=uv, texture=np.clip(tex, 0, 255).astype(np.uint8))


# =============================================================================================
# can
# =============================================================================================
def _cylinder_mesh(builder: _MeshBuilder, radius: float, height: float, tex_h: int, cap_rows: int,
                   n_theta: int = 64, cell: float = _CELL):
    """Add a closed cylinder about z (centred): a wall grid whose uv covers the texture rows
    [0, tex_h) (row 0 = top of the wall; u goes once around, seam duplicated) and two caps whose
    uv all point into the plain strip of ``cap_rows`` rows below it."""
    Ht = tex_h + cap_rows
    nv = max(2, int(math.ceil(height / cell)))

    def wall(u, v):
        th = 2 * np.pi * u
        return np.stack([radius * np.cos(th), radius * np.sin(th), height / 2 - v * height], 1)

    verts, tris, st = _param_grid(wall, n_theta, nv)
    uv = np.stack([st[:, 0], 1.0 - st[:, 1] * tex_h / Ht], 1)
    builder.add(verts, tris, uv=uv, outward=_radial_xy)
    cap_uv = (0.5, 1.0 - (tex_h + cap_rows / 2) / Ht)
    n_r = max(1, int(math.ceil(radius / cell)))
    for sgn in (1.0, -1.0):
        pts, f, _ = _disc((0, 0, sgn * height / 2), radius, (0, 0, sgn), n_theta, n_r)
        builder.add(pts, f, uv=np.tile(cap_uv, (len(pts), 1)),
                    outward=lambda p, s=sgn: np.broadcast_to((0, 0, s), p.shape))
    return Ht


def can(seed: int = 0, radius: float = CAN_RADIUS, height: float = CAN_HEIGHT,
        name: str = "can") -> ObjectModel:
    """A food can: a cylinder about the z axis with a printed label band and plain metal caps.

    Symmetry: following the BOP convention for the YCB-V cans, ``symmetries_continuous`` declares
    the *geometric* symmetry about z through the origin (``{"axis": (0, 0, 1), "offset": 0}``),
    although the label is not symmetric in appearance.

    Args:
        seed: changes the label (colours, words, stripes), not the size.
        radius, height: metres (default 0.033 m, 0.10 m).
        name: object name.
    Returns:
        ObjectModel (metres, centred, uv + texture).
    """
    radius, height = _check_size((radius, height), 2, "radius/height")
    rng = np.random.default_rng([seed, 2])
    ppm = min(_PX_PER_M, _MAX_TEX / (2 * np.pi * radius), _MAX_TEX / height)
    W, H = int(round(2 * np.pi * radius * ppm)), int(round(height * ppm))
    cap_rows = 16
    metal = tuple(int(255 * c) for c in (0.75, 0.76, 0.78))
    base, accent = _color(rng, 40, 256), _color(rng)
    im = Image.new("RGB", (W, H + cap_rows), metal)
    d = ImageDraw.Draw(im)
    rim = int(0.06 * H)
    d.rectangle((0, rim, W, H - rim), fill=base)
    im.paste(Image.fromarray(_stripes(int(0.12 * H), W, rng, accent, _color(rng))),
             (0, int(0.7 * H)))
    d.rectangle((0, int(0.62 * H), W, int(0.66 * H)), fill=_color(rng))
    ink = _contrast(base)
    brand = _word(rng, 2, 3).upper()
    size = int(0.2 * H)
    d.text((int(0.08 * W), int(0.15 * H)), brand, fill=ink, font=_font(size))
    d.text((int(0.58 * W), int(0.2 * H)), _word(rng, 1, 2), fill=accent, font=_font(int(0.12 * H)))
    r = 0.13 * H
    cx, cy = 0.42 * W, 0.5 * H
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_color(rng))
    d.ellipse((cx - 0.5 * r, cy - 0.6 * r, cx + 0.6 * r, cy + 0.4 * r), fill=_color(rng))
    _draw_text_lines(d, (int(0.62 * W), int(0.35 * H), int(0.97 * W), int(0.6 * H)), rng, ink,
                     max(8, int(0.045 * H)))
    _barcode(d, (int(0.82 * W), int(0.84 * H), int(0.95 * W), H - rim - 2), rng)
    d.rectangle((0, H, W, H + cap_rows), fill=metal)
    tex = np.asarray(im, dtype=np.float32)
    tex[:H] += (_value_noise(H, W, rng, octaves=4, base_cells=6)[..., None] - 0.5) * 20.0
    b = _MeshBuilder()
    _cylinder_mesh(b, radius, height, H, cap_rows)
    V, F, uv, _ = b.arrays()
    return _model(V, F, name, uv=uv, texture=np.clip(tex, 0, 255).astype(np.uint8),
                  symmetries_continuous=[{"axis": [0.0, 0.0, 1.0], "offset": [0.0, 0.0, 0.0]}])


# =============================================================================================
# mug
# =============================================================================================
def mug(seed: int = 0, radius: float = MUG_RADIUS, height: float = MUG_HEIGHT,
        wall: float = 0.004, name: str = "mug") -> ObjectModel:
    """A mug: a cylindrical shell (outer wall, inner wall, rim, floor) plus a tubular handle on
    the +x side — a union of primitives (overlapping, not boolean-merged). Not symmetric.

    Appearance: per-vertex colours (a random glaze, white inside, a contrasting band around
    the outer wall).

    Args:
        seed: changes the colours, not the size.
        radius: outer radius [m] (default 0.041); height [m] (default 0.095); wall thickness [m].
        name: object name.
    Returns:
        ObjectModel (metres, centred on its bounding box, vertex_colors).
    """
    radius, height, wall = _check_size((radius, height, wall), 3, "radius/height/wall")
    if wall >= radius / 2:
        raise InputError(f"mug: wall ({wall} m) must be below half the radius ({radius} m)")
    rng = np.random.default_rng([seed, 3])
    glaze = rng.uniform(0.1, 0.95, 3).astype(np.float32)
    band = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    inside = np.array([0.93, 0.92, 0.88], np.float32)
    band_lo, band_hi = sorted(rng.uniform(-0.3, 0.35, 2) * height)
    band_hi = max(band_hi, band_lo + 0.1 * height)
    b = _MeshBuilder()
    n_theta, nv = 64, max(2, int(math.ceil(height / 0.005)))
    r_in, floor = radius - wall, -height / 2 + 1.5 * wall

    def cyl(r, z0, z1):
        return lambda u, v: np.stack([r * np.cos(2 * np.pi * u), r * np.sin(2 * np.pi * u),
                                      z0 + v * (z1 - z0)], 1)

    verts, tris, _ = _param_grid(cyl(radius, -height / 2, height / 2), n_theta, nv)
    col = np.where(((verts[:, 2] >= band_lo) & (verts[:, 2] <= band_hi))[:, None], band, glaze)
    b.add(verts, tris, color=col, outward=_radial_xy)
    verts, tris, _ = _param_grid(cyl(r_in, floor, height / 2), n_theta, nv)
    b.add(verts, tris, color=inside, outward=lambda p: -_radial_xy(p))
    pts, f, _ = _disc((0, 0, height / 2), radius, (0, 0, 1), n_theta, 1, r_in=r_in)
    b.add(pts, f, color=glaze, outward=lambda p: np.broadcast_to((0, 0, 1.0), p.shape))
    pts, f, _ = _disc((0, 0, -height / 2), radius, (0, 0, -1), n_theta, 4)
    b.add(pts, f, color=glaze, outward=lambda p: np.broadcast_to((0, 0, -1.0), p.shape))
    pts, f, _ = _disc((0, 0, floor), r_in, (0, 0, 1), n_theta, 4)
    b.add(pts, f, color=inside, outward=lambda p: np.broadcast_to((0, 0, 1.0), p.shape))

    # handle: a tube of radius rt along a half-ellipse in the xz plane, ends sunk into the wall
    rt, sink = 0.006, 0.6 * wall
    ax, az = 0.7 * radius + sink, 0.3 * height
    n_s, n_phi = 40, 20
    s = np.linspace(-np.pi / 2, np.pi / 2, n_s + 1)
    path = np.stack([radius - sink + ax * np.cos(s), np.zeros_like(s), az * np.sin(s)], 1)
    tang = np.stack([-ax * np.sin(s), np.zeros_like(s), az * np.cos(s)], 1)
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    yax = np.array([0.0, 1.0, 0.0])
    nrm = np.cross(tang, yax)
    phi = np.linspace(0, 2 * np.pi, n_phi + 1)
    ring = (path[:, None, :] + rt * (np.cos(phi)[None, :, None] * nrm[:, None, :]
                                     + np.sin(phi)[None, :, None] * yax[None, None, :]))
    verts = ring.reshape(-1, 3)
    tris = _grid_faces(n_phi, n_s)
    centers = np.repeat(path, n_phi + 1, axis=0)
    b.add(verts, tris, color=glaze, outward=lambda c: c - centers[tris[:, 0]])  # away from path
    V, F, _, C = b.arrays()
    V = V - 0.5 * (V.max(axis=0) + V.min(axis=0))
    return _model(V, F, name, vertex_colors=C)


# =============================================================================================
# industrial part (low texture)
# =============================================================================================
def _plate_triangulation(nx: int, ny: int, cell: float, holes: dict, m: int = 6):
    """2D triangulation of an nx x ny grid of square cells (side ``cell``), some with a centred
    circular hole: ``holes`` = {(i, j): radius}. Every cell edge is split into ``m`` segments so
    neighbouring cells share their vertices (no T-junctions). Returns (pts (N, 2), tris (T, 3))
    counter-clockwise, vertices merged."""
    pts, tris = [], []
    n = 0
    # boundary of a unit cell, counter-clockwise, 4m points starting at the lower-left corner
    t = np.arange(m) / m
    sq = np.concatenate([np.stack([t, 0 * t], 1), np.stack([1 + 0 * t, t], 1),
                         np.stack([1 - t, 1 + 0 * t], 1), np.stack([0 * t, 1 - t], 1)])
    for i in range(nx):
        for j in range(ny):
            o = np.array([i, j], float) * cell
            if (i, j) in holes:
                r = holes[(i, j)]
                ang = np.arctan2(sq[:, 1] - 0.5, sq[:, 0] - 0.5)
                circ = 0.5 * cell + r * np.stack([np.cos(ang), np.sin(ang)], 1)
                p = np.concatenate([o + sq * cell, o + circ])
                k = 4 * m
                for a in range(k):
                    b_ = (a + 1) % k
                    tris += [(n + a, n + b_, n + k + b_), (n + a, n + k + b_, n + k + a)]
            else:
                g = np.linspace(0, 1, m + 1)
                v, u = np.meshgrid(g, g, indexing="ij")
                p = o + np.stack([u.ravel(), v.ravel()], 1) * cell
                tris += (_grid_faces(m, m) + n).tolist()
            pts.append(p)
            n += len(p)
    pts = np.concatenate(pts)
    key = np.round(pts / cell * 1e6).astype(np.int64)
    _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    tris = inv.reshape(-1)[np.asarray(tris)]
    pts = pts[first]
    # counter-clockwise
    e1, e2 = pts[tris[:, 1]] - pts[tris[:, 0]], pts[tris[:, 2]] - pts[tris[:, 0]]
    cw = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0] < 0
    tris[cw] = tris[cw][:, ::-1]
    return pts, tris


def _extrude(builder: _MeshBuilder, pts2, tris2, thickness: float, frame, color):
    """Add the prism of a 2D triangulation: plate point (a, b, c) -> frame[0] + a*frame[1] +
    b*frame[2] + c*frame[3], c in [0, thickness]. Caps and each wall quad get their own vertices
    (sharp edges)."""
    o, ea, eb, en = (np.asarray(f, float) for f in frame)
    to3 = lambda p2, c: o + p2[:, :1] * ea + p2[:, 1:2] * eb + c * en  # noqa: E731
    for c, s in ((thickness, 1.0), (0.0, -1.0)):
        want = s * en
        builder.add(to3(pts2, c), tris2, color=color,
                    outward=lambda p, w=want: np.broadcast_to(w, p.shape))
    # boundary edges: used by exactly one triangle, directed as in their (ccw) triangle
    e = np.concatenate([tris2[:, [0, 1]], tris2[:, [1, 2]], tris2[:, [2, 0]]])
    key = np.sort(e, axis=1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    bnd = e[cnt[inv.reshape(-1)] == 1]
    p, q = pts2[bnd[:, 0]], pts2[bnd[:, 1]]
    d = q - p
    out2 = np.stack([d[:, 1], -d[:, 0]], 1)  # right of the edge = outside (ccw interior)
    out3 = out2[:, :1] * ea + out2[:, 1:2] * eb
    quads = np.stack([to3(p, 0.0), to3(q, 0.0), to3(q, thickness), to3(p, thickness)], 1)
    verts = quads.reshape(-1, 3)
    k = np.arange(len(bnd)) * 4
    tris = np.concatenate([np.stack([k, k + 1, k + 2], 1), np.stack([k, k + 2, k + 3], 1)])
    builder.add(verts, tris, color=color, outward=np.concatenate([out3, out3]))


def industrial_part(seed: int = 0, size=BRACKET_SIZE, thickness: float = 0.006,
                    hole_radius: float = 0.0032, name: str = "industrial_part") -> ObjectModel:
    """A low-texture L-bracket: a base plate (x length, y width) with three holes, an upright
    plate at x = 0 with one hole, and a triangular gusset on the +y edge. One plain grey-metal
    colour (the seed only nudges the shade by < 3 %). Not symmetric (uneven legs, uneven hole
    pattern, one-sided gusset).

    Args:
        seed: shade jitter only.
        size: (length x, width y, height z) [m], multiples of 1 cm work best (cells of 1 cm).
        thickness: plate thickness [m] (default 0.006).
        hole_radius: [m], below 4.5 mm (holes sit in 1 cm cells).
        name: object name.
    Returns:
        ObjectModel (metres, centred on its bounding box, vertex_colors of one colour).
    """
    L, Wd, Hh = _check_size(size, 3, "size")
    if not 0 < hole_radius < 0.45 * _CELL:
        raise InputError(f"industrial_part: hole_radius must be in (0, {0.45 * _CELL}) m, "
                         f"got {hole_radius}")
    rng = np.random.default_rng([seed, 4])
    grey = np.clip(np.array(_METAL_GREY) * (1 + rng.uniform(-0.03, 0.03)), 0, 1)
    nx, ny = max(3, int(round(L / _CELL))), max(3, int(round(Wd / _CELL)))
    nz = max(3, int(round((Hh - thickness) / _CELL)))
    cx, cy, cz = L / nx, Wd / ny, (Hh - thickness) / nz
    b = _MeshBuilder()
    base_holes = {(nx - 2, 1): hole_radius, (nx - 2, ny - 2): hole_radius,
                  (nx // 2, ny // 2): hole_radius}
    pts, tris = _plate_triangulation(nx, ny, 1.0, {k: v / cx for k, v in base_holes.items()})
    # base plate: a -> x, b -> y, extruded along +z from z = 0
    _extrude(b, pts, tris, thickness,
             ((0, -Wd / 2, 0), (cx, 0, 0), (0, cy, 0), (0, 0, 1)), grey)
    up_holes = {(1, nz - 2): hole_radius / cy}
    pts, tris = _plate_triangulation(ny, nz, 1.0, up_holes)
    # upright plate: a -> y, b -> z (from z = thickness), extruded along +x from x = 0
    _extrude(b, pts, tris, thickness,
             ((0, -Wd / 2, thickness), (0, cy, 0), (0, 0, cz), (1, 0, 0)), grey)
    # gusset: right triangle in the xz plane at the +y edge, 4 mm thick
    g = min(0.45 * (L - thickness), 0.45 * (Hh - thickness))
    tri2 = np.array([[0, 0], [1, 0], [0, 1]], float)
    _extrude(b, tri2, np.array([[0, 1, 2]]), 0.004,
             ((thickness, Wd / 2 - 0.004, thickness), (g, 0, 0), (0, 0, g), (0, 1, 0)), grey)
    V, F, _, C = b.arrays()
    V = V - 0.5 * (V.max(axis=0) + V.min(axis=0))
    return _model(V, F, name, vertex_colors=C)


# =============================================================================================
# distractor primitives
# =============================================================================================
_PRIMITIVES = ("box", "cylinder", "sphere", "capsule", "cone", "torus")


def random_primitive(rng: np.random.Generator, name: str = "primitive",
                     size_range=(0.03, 0.15)) -> ObjectModel:
    """A random distractor: box / cylinder (UV-mapped random texture) or sphere / capsule / cone /
    torus (per-vertex colours: plain, stripes, checker or noise as a function of position).

    Args:
        rng: numpy Generator (the only source of randomness).
        name: object name.
        size_range: (min, max) of the largest extent [m].
    Returns:
        ObjectModel in metres, centred on its bounding box.
    """
    import trimesh

    lo, hi = (float(x) for x in size_range)
    if not 0 < lo <= hi:
        raise InputError(f"random_primitive: size_range must be 0 < min <= max, got {size_range}")
    kind = _PRIMITIVES[int(rng.integers(0, len(_PRIMITIVES)))]
    s = float(rng.uniform(lo, hi))
    b = _MeshBuilder()
    if kind == "box":
        dims = s * np.concatenate([[1.0], rng.uniform(0.25, 1.0, 2)])
        rng.shuffle(dims)
        ppm = min(2000.0, 1024 / (2 * (dims[0] + dims[1])), 1024 / (dims[2] + 2 * dims[1]))
        Wt, Ht, _ = _box_mesh(b, dims, ppm, cell=0.02)
        V, F, uv, _ = b.arrays()
        return _model(V, F, name, uv=uv, texture=random_texture(max(Ht, 8), max(Wt, 8), rng))
    if kind == "cylinder":
        r, h = s * rng.uniform(0.15, 0.5), s
        if 2 * r > h:
            r, h = h / 2, 2 * r
        th = max(16, int(round(h * 2000)))
        Ht = _cylinder_mesh(b, r, h, th, 8, n_theta=48, cell=0.02)
        tex = random_texture(Ht, max(16, int(2 * np.pi * r * 2000)), rng)
        V, F, uv, _ = b.arrays()
        return _model(V, F, name, uv=uv, texture=tex)
    if kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=s / 2)
    elif kind == "capsule":
        mesh = trimesh.creation.capsule(height=s * 0.6, radius=s * 0.2, count=[24, 24])
    elif kind == "cone":
        mesh = trimesh.creation.cone(radius=s * 0.35, height=s, sections=48)
        mesh = mesh.subdivide().subdivide()
    else:
        mesh = trimesh.creation.torus(major_radius=s * 0.35, minor_radius=s * 0.12,
                                      major_sections=48, minor_sections=24)
    V = np.asarray(mesh.vertices, float)
    F = np.asarray(mesh.faces, np.int64)
    C = _vertex_pattern(V, rng)
    V = V - 0.5 * (V.max(axis=0) + V.min(axis=0))
    return _model(V, F, name, vertex_colors=C)


def _vertex_pattern(V: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) float32 vertex colours in [0, 1]: plain, stripes, checker or noise over the
    positions ``V`` (N, 3) [m]."""
    c1, c2 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    pattern = int(rng.integers(0, 4))
    if pattern == 0:
        t = np.zeros(len(V))
    elif pattern == 1:
        axis = rng.normal(size=3)
        t = (np.sin(V @ (axis / np.linalg.norm(axis)) * 2 * np.pi / rng.uniform(0.01, 0.04)) > 0)
    elif pattern == 2:
        cell = rng.uniform(0.01, 0.03)
        t = (np.floor(V / cell).sum(axis=1) % 2) == 0
    else:
        t = rng.random(len(V)) * 0.5 + 0.5 * (np.sin(V[:, 0] * 80) > 0)
    t = np.asarray(t, float)[:, None]
    return np.clip(c1[None] * (1 - t) + c2[None] * t, 0, 1).astype(np.float32)


def _triplanar_colors(V: np.ndarray, N: np.ndarray, tex: np.ndarray, px_per_m: float
                      ) -> np.ndarray:
    """(N, 3) float32 colours of a texture ``tex`` (H, W, 3) uint8 projected on the vertices
    ``V`` (N, 3) [m] along each vertex normal's dominant axis (``N`` (N, 3)), tiled."""
    H, W = tex.shape[:2]
    axis = np.argmax(np.abs(N), axis=1)
    other = np.array([[1, 2], [0, 2], [0, 1]])[axis]                 # the two in-plane axes
    uv = np.take_along_axis(V, other, axis=1) * px_per_m
    col = np.floor(uv[:, 0]).astype(np.int64) % W
    row = np.floor(uv[:, 1]).astype(np.int64) % H
    return (tex[row, col].astype(np.float32) / 255.0)


def textured_mesh(path, rng: np.random.Generator, name: str | None = None,
                  size_range=(0.06, 0.16)) -> ObjectModel:
    """A mesh file (OBJ / PLY / STL, any units) as a training object: centred on its bounding
    box, scaled to a random largest extent in ``size_range`` [m], subdivided to edges of at most
    1/48 of that extent, and coloured per vertex with a random texture (noise, stripes, checker,
    printed text; projected along the dominant normal axis) or a plain / pattern colouring.

    For shape pools such as pybullet_data's ``random_urdfs/*/*.obj`` (TRAINING-DATA.md).

    Args:
        path: mesh file; rng: numpy Generator (the only source of randomness); name: object
            name (default: ``mesh_<file stem>``); size_range: (min, max) largest extent [m].
    Raises:
        InputError when the file is missing, unreadable, or holds no triangles.
    """
    from pathlib import Path

    import trimesh
    import trimesh.remesh

    path = Path(path)
    if not path.is_file():
        raise InputError(f"mesh {path} does not exist")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=True)
    except Exception as e:   # trimesh raises many types for bad files
        raise InputError(f"mesh {path} could not be read: {type(e).__name__}: {e}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(f"mesh {path} holds no triangles")
    lo, hi = (float(x) for x in size_range)
    if not 0 < lo <= hi:
        raise InputError(f"textured_mesh: size_range must be 0 < min <= max, got {size_range}")
    V = np.asarray(mesh.vertices, float)
    V = V - 0.5 * (V.max(axis=0) + V.min(axis=0))
    size = float(rng.uniform(lo, hi))
    V *= size / float(np.ptp(V, axis=0).max())
    V, F = trimesh.remesh.subdivide_to_size(V, np.asarray(mesh.faces), max_edge=size / 48,
                                            max_iter=8)
    fine = trimesh.Trimesh(vertices=V, faces=F, process=False)
    if rng.random() < 0.7:
        tex = random_texture(256, 256, rng)
        C = _triplanar_colors(V, np.asarray(fine.vertex_normals), tex,
                              px_per_m=float(rng.uniform(1500, 4000)))
    else:
        C = _vertex_pattern(V, rng)
    return _model(V, F, name or f"mesh_{path.stem}", vertex_colors=C)


# =============================================================================================
# registry
# =============================================================================================
def _check_size(vals, n: int, what: str) -> tuple[float, ...]:
    try:
        arr = np.asarray(vals, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be {n} numbers in metres, got {vals!r}") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0) or np.any(arr > 1.0):
        raise InputError(f"{what} must be {n} finite numbers in (0, 1] metres, got {vals!r}")
    return tuple(float(x) for x in arr)


def _model(V, F, name, uv=None, texture=None, vertex_colors=None,
           symmetries_continuous=None) -> ObjectModel:
    import trimesh

    mesh = trimesh.Trimesh(vertices=V, faces=F, process=False)
    models_info = None
    if symmetries_continuous:
        models_info = {"symmetries_continuous": [
            {"axis": list(s["axis"]), "offset": [1000.0 * x for x in s["offset"]]}
            for s in symmetries_continuous]}
    return ObjectModel.from_trimesh(mesh, units="m", name=name, texture=texture, uv=uv,
                                    vertex_colors=vertex_colors, models_info=models_info)


#: name -> factory ``f(seed=0, ...) -> ObjectModel``
PROCEDURAL: dict[str, Callable[..., ObjectModel]] = {
    "textured_box": textured_box,
    "can": can,
    "mug": mug,
    "industrial_part": industrial_part,
}


def make_object(name: str, seed: int = 0) -> ObjectModel:
    """The built-in object ``name`` (a key of :data:`PROCEDURAL`) for ``seed``.

    Raises:
        InputError naming the unknown object and the known ones.
    """
    if name not in PROCEDURAL:
        raise InputError(f"unknown procedural object {name!r}; known: {sorted(PROCEDURAL)}")
    return PROCEDURAL[name](seed=seed)


def procedural_objects(seed: int = 0) -> dict[str, ObjectModel]:
    """All built-in objects for ``seed``: {name: ObjectModel} in :data:`PROCEDURAL` order."""
    return {name: fn(seed=seed) for name, fn in PROCEDURAL.items()}
