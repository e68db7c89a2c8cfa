"""Object models: mesh geometry (metres), colour / texture, units, diameter, BOP symmetries.

``ObjectModel`` is the one in-memory form of an object mesh in the core. Everything it stores is in
metres in the object (mesh) frame; millimetres appear only where a mesh file or a BOP
``models_info.json`` is read (``ObjectModel.load``, ``load_models_info``) or written
(``models_info_entry``).

Notes on trimesh (5.2) that this module works around, worth knowing when touching meshes elsewhere:

* BOP PLYs store per-vertex ``texture_u`` / ``texture_v`` and name the texture in a header line
  ``comment TextureFile obj_000001.png``. trimesh turns them into ``TextureVisuals`` (UV in OpenGL
  convention, v up) and keeps the vertex order for per-vertex UVs. When the PNG is missing it only
  *logs* a FileNotFoundError traceback and carries on.
* A ``TextureVisuals`` without an image still reports ``visual.material.image`` as a 2x2
  placeholder picture, so "has an image" is not a test for "has a texture". This module resolves
  texture files itself (PLY header comment / OBJ ``mtllib`` -> ``map_Kd``) and loads them with PIL.
* OBJ files are loaded with ``maintain_order=True``; vertices are still split where a vertex has
  several UVs / normals (an OBJ indexes those separately), so the vertex count can grow.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from coop_ros.errors import InputError
from coop_ros.geometry.se3 import rotvec_to_matrix

__all__ = [
    "ObjectModel",
    "UnitsWarning",
    "UNIT_SCALE",
    "load_models_info",
    "models_info_entry",
    "parse_bop_symmetries",
]

#: Scale from a declared mesh unit to metres.
UNIT_SCALE = {"mm": 1e-3, "m": 1.0}

#: A mesh declared in mm whose diameter is below this (in mm) probably is in metres.
_MM_SUSPECT_BELOW = 5.0
#: A mesh declared in m whose diameter is above this (in m) probably is in millimetres.
_M_SUSPECT_ABOVE = 5.0

_MESH_SUFFIXES = (".ply", ".obj")


class UnitsWarning(UserWarning):
    """The mesh size is implausible for its declared unit (e.g. declared mm, diameter 0.2).

    Attributes: ``mesh`` (name), ``diameter`` (float, in the declared unit), ``declared_units`` and
    ``likely_units`` ("mm" or "m"), ``units_suspect`` (always True for an emitted warning).
    """

    def __init__(self, message: str, mesh: str = "", diameter: float = float("nan"),
                 declared_units: str = "", likely_units: str = ""):
        super().__init__(message)
        self.mesh = mesh
        self.diameter = diameter
        self.declared_units = declared_units
        self.likely_units = likely_units
        self.units_suspect = True


def _check_units(units: str) -> str:
    if units not in UNIT_SCALE:
        raise InputError(f"units must be 'mm' or 'm', got {units!r}")
    return units


#: hull vertex count up to which the diameter is computed from all pairs
DIAMETER_EXACT_MAX = 4000
#: directions (on a half sphere) whose extreme hull vertices are the candidates above that
DIAMETER_DIRECTIONS = 1000


def _fibonacci_half_sphere(n: int) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the half sphere z >= 0."""
    k = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - k / n
    r = np.sqrt(np.maximum(1.0 - z * z, 0.0))
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _max_pairwise_distance(points: np.ndarray) -> float:
    """Largest distance between two of the (N, 3) points, same unit.

    O(N log N): the convex hull (qhull) first; up to DIAMETER_EXACT_MAX hull vertices all pairs
    are compared (exact). Above (scanned meshes), the candidates are the two extreme hull
    vertices along each of DIAMETER_DIRECTIONS directions, and all pairs of candidates are
    compared: the result is a lower bound within 0.1 % of the exact diameter (the pair's
    direction is within ~2.6 deg of a sampled one, cos 2.6 deg = 0.999) and in practice exact.
    """
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import cdist

    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 2:
        return 0.0
    try:
        pts = pts[ConvexHull(pts).vertices]
    except Exception:  # flat or degenerate point set: qhull needs a full-dimensional hull
        pts = np.unique(pts, axis=0)
    if len(pts) > DIAMETER_EXACT_MAX:
        cand = set()
        dirs = _fibonacci_half_sphere(DIAMETER_DIRECTIONS)
        for i in range(0, len(dirs), 100):
            proj = pts @ dirs[i:i + 100].T                 # (h, 100)
            cand.update(proj.argmax(axis=0).tolist())
            cand.update(proj.argmin(axis=0).tolist())
        pts = pts[sorted(cand)]
    best = 0.0
    block = 2048
    for i in range(0, len(pts), block):
        best = max(best, float(cdist(pts[i:i + block], pts[i:]).max()))
    return best


# ------------------------------------------------------------------------------------------------
# BOP models_info
# ------------------------------------------------------------------------------------------------
def parse_bop_symmetries(info: dict) -> tuple[list, list]:
    """Symmetries of a BOP ``models_info`` entry (millimetres) converted to metres.

    Args:
        info: one entry of ``models_info.json``: optional ``"symmetries_discrete"`` (list of 16
            numbers each, a row-major 4x4 with the translation in mm) and
            ``"symmetries_continuous"`` (list of ``{"axis": [3], "offset": [3] mm}``).
    Returns:
        (discrete, continuous): a list of (4, 4) float64 transforms (translation in m) and a list
        of dicts ``{"axis": (3,) float64 unit vector, "offset": (3,) float64 m}``.
    Raises:
        InputError naming the bad entry (wrong length, not a rotation, zero axis, ...).
    """
    if not isinstance(info, dict):
        raise InputError(f"models_info entry must be a dict, got {type(info).__name__}")
    discrete = []
    for i, sym in enumerate(info.get("symmetries_discrete", []) or []):
        arr = np.asarray(sym, dtype=np.float64)
        if arr.size != 16 or not np.all(np.isfinite(arr)):
            raise InputError(f"symmetries_discrete[{i}] must be 16 finite numbers (row-major 4x4), "
                             f"got {arr.size} values")
        T = arr.reshape(4, 4).copy()
        R = T[:3, :3]
        if np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) < 0:
            raise InputError(f"symmetries_discrete[{i}] rotation part is not a rotation")
        if np.abs(T[3] - [0, 0, 0, 1]).max() > 1e-6:
            raise InputError(f"symmetries_discrete[{i}] last row must be [0, 0, 0, 1], got {T[3]}")
        T[:3, 3] *= UNIT_SCALE["mm"]
        T[3] = [0, 0, 0, 1]
        discrete.append(T)
    continuous = []
    for i, sym in enumerate(info.get("symmetries_continuous", []) or []):
        if not isinstance(sym, dict) or "axis" not in sym:
            raise InputError(f"symmetries_continuous[{i}] must be a dict with 'axis' and 'offset'")
        axis = np.asarray(sym["axis"], dtype=np.float64).reshape(-1)
        offset = np.asarray(sym.get("offset", [0.0, 0.0, 0.0]), dtype=np.float64).reshape(-1)
        if axis.shape != (3,) or offset.shape != (3,):
            raise InputError(f"symmetries_continuous[{i}] axis and offset must have 3 values each")
        norm = np.linalg.norm(axis)
        if not np.isfinite(norm) or norm < 1e-12 or not np.all(np.isfinite(offset)):
            raise InputError(f"symmetries_continuous[{i}] axis must be a finite non-zero vector")
        continuous.append({"axis": axis / norm, "offset": offset * UNIT_SCALE["mm"]})
    return discrete, continuous


def load_models_info(path) -> dict[int, dict]:
    """Read a BOP ``models_info.json``.

    Args:
        path: file path.
    Returns:
        {obj_id (int): entry (dict, values unchanged, i.e. millimetres)}.
    Raises:
        InputError naming the path when the file is missing, not JSON, or has non-integer keys.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"models_info file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read models_info {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"models_info {path} must hold a JSON object keyed by object id")
    out = {}
    for key, value in data.items():
        try:
            obj_id = int(key)
        except (TypeError, ValueError):
            raise InputError(f"models_info {path}: key {key!r} is not an integer object id") \
                from None
        if not isinstance(value, dict):
            raise InputError(f"models_info {path}: entry {key!r} is not an object")
        out[obj_id] = value
    return out


_INFO_KEYS = {"diameter", "min_x", "min_y", "min_z", "size_x", "size_y", "size_z",
              "symmetries_discrete", "symmetries_continuous"}


def _select_info_entry(models_info: dict | None, name: str) -> dict | None:
    """An entry as given, or the entry of obj_<id> when a whole models_info dict was passed."""
    if models_info is None:
        return None
    if not isinstance(models_info, dict):
        raise InputError(f"models_info must be a dict, got {type(models_info).__name__}")
    if not models_info or set(models_info) & _INFO_KEYS:
        return models_info
    # A whole models_info.json ({id: entry}) was passed: pick the entry from the file name.
    m = re.search(r"(\d+)$", name)
    if m is not None:
        obj_id = int(m.group(1))
        for key, value in models_info.items():
            try:
                if int(key) == obj_id and isinstance(value, dict):
                    return value
            except (TypeError, ValueError):
                break
    keys = sorted(map(str, models_info))[:5]
    raise InputError(f"models_info for {name!r} must be one models_info.json entry (with "
                     f"'diameter' / 'symmetries_*' keys); got keys {keys}")


# ------------------------------------------------------------------------------------------------
# ObjectModel
# ------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class ObjectModel:
    """A rigid object model. Treat the arrays as read-only (``diameter`` etc. are cached).

    Fields:
        name: object name (file stem for loaded meshes).
        vertices: (V, 3) float64, metres, object frame.
        faces: (F, 3) int64 indices into ``vertices``.
        vertex_colors: (V, 3) float32 RGB in [0, 1], or None.
        uv: (V, 2) float32 texture coordinates, OpenGL convention (v = 0 at the bottom row of the
            texture image), or None. Set only together with ``texture``.
        texture: (Ht, Wt, 3) uint8 RGB image, row 0 = top row of the image file, or None. The texel
            of (u, v) is at column u * Wt, row (1 - v) * Ht.
        units: declared unit of the source data, "mm" or "m" (the arrays are always metres).
        symmetries_discrete: list of (4, 4) float64 transforms (translation in metres), BOP style:
            T_obj_obj that map the model onto itself.
        symmetries_continuous: list of {"axis": (3,) float64 unit, "offset": (3,) float64 m}.
        source_path: path of the mesh file, or None.
        units_suspect: True when the size looked implausible for ``units`` (a UnitsWarning was
            emitted by the factory).
    """

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    units: str = "m"
    symmetries_discrete: list = field(default_factory=list)
    symmetries_continuous: list = field(default_factory=list)
    source_path: str | None = None
    units_suspect: bool = False

    def __post_init__(self):
        _check_units(self.units)
        v = np.asarray(self.vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) < 3:
            raise InputError(f"object {self.name!r}: vertices must be (V>=3, 3), got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise InputError(f"object {self.name!r}: vertices contain non-finite values")
        f = np.asarray(self.faces)
        if f.ndim != 2 or f.shape[1] != 3 or len(f) < 1:
            raise InputError(f"object {self.name!r}: faces must be (F>=1, 3), got {f.shape}")
        if not np.issubdtype(f.dtype, np.integer):
            raise InputError(f"object {self.name!r}: faces must be integer indices, got {f.dtype}")
        f = f.astype(np.int64)
        if f.min() < 0 or f.max() >= len(v):
            raise InputError(f"object {self.name!r}: faces index vertices outside [0, {len(v)})")
        self.vertices = np.ascontiguousarray(v)
        self.faces = np.ascontiguousarray(f)
        if self.vertex_colors is not None:
            c = np.asarray(self.vertex_colors, dtype=np.float32)
            if c.shape != (len(v), 3) or not np.all(np.isfinite(c)) or c.min() < 0 or c.max() > 1:
                raise InputError(f"object {self.name!r}: vertex_colors must be (V, 3) in [0, 1], "
                                 f"got shape {c.shape}")
            self.vertex_colors = np.ascontiguousarray(c)
        if (self.uv is None) != (self.texture is None):
            raise InputError(f"object {self.name!r}: uv and texture must be given together")
        if self.uv is not None:
            uv = np.asarray(self.uv, dtype=np.float32)
            if uv.shape != (len(v), 2) or not np.all(np.isfinite(uv)):
                raise InputError(f"object {self.name!r}: uv must be (V, 2) finite, got {uv.shape}")
            tex = np.asarray(self.texture)
            if tex.ndim != 3 or tex.shape[2] != 3 or tex.dtype != np.uint8 or tex.size == 0:
                raise InputError(f"object {self.name!r}: texture must be (Ht, Wt, 3) uint8, got "
                                 f"{tex.shape} {tex.dtype}")
            self.uv = np.ascontiguousarray(uv)
            self.texture = np.ascontiguousarray(tex)
        disc = []
        for i, T in enumerate(self.symmetries_discrete):
            T = np.asarray(T, dtype=np.float64)
            if T.shape != (4, 4) or not np.all(np.isfinite(T)):
                raise InputError(f"object {self.name!r}: symmetries_discrete[{i}] must be (4, 4)")
            disc.append(T)
        self.symmetries_discrete = disc
        cont = []
        for i, s in enumerate(self.symmetries_continuous):
            try:
                axis = np.asarray(s["axis"], dtype=np.float64).reshape(3)
                offset = np.asarray(s.get("offset", np.zeros(3)), dtype=np.float64).reshape(3)
            except (KeyError, TypeError, ValueError, AttributeError):
                raise InputError(f"object {self.name!r}: symmetries_continuous[{i}] must be "
                                 "{'axis': (3,), 'offset': (3,) m}") from None
            n = np.linalg.norm(axis)
            if not np.isfinite(n) or n < 1e-12:
                raise InputError(f"object {self.name!r}: symmetries_continuous[{i}] axis is zero")
            cont.append({"axis": axis / n, "offset": offset})
        self.symmetries_continuous = cont

    # -------------------------------------------------------------------------------- geometry
    @cached_property
    def diameter(self) -> float:
        """Largest distance between two vertices [m] (computed on the convex hull)."""
        return _max_pairwise_distance(self.vertices)

    @property
    def extents(self) -> np.ndarray:
        """(3,) float64 size of the axis-aligned bounding box [m]."""
        return self.vertices.max(axis=0) - self.vertices.min(axis=0)

    @cached_property
    def hull_points(self) -> np.ndarray:
        """(H, 3) float64 vertices of the convex hull [m]: the points whose projection bounds the
        object's silhouette in any view (all distinct vertices when qhull cannot build a hull)."""
        from scipy.spatial import ConvexHull

        pts = np.asarray(self.vertices, dtype=np.float64)
        try:
            return pts[ConvexHull(pts).vertices]
        except Exception:  # flat or degenerate point set
            return np.unique(pts, axis=0)

    @property
    def center(self) -> np.ndarray:
        """(3,) float64 centre of the axis-aligned bounding box [m], object frame."""
        return 0.5 * (self.vertices.max(axis=0) + self.vertices.min(axis=0))

    @cached_property
    def _trimesh(self):
        import trimesh

        return trimesh.Trimesh(vertices=self.vertices, faces=self.faces, process=False)

    def as_trimesh(self):
        """The geometry as a ``trimesh.Trimesh`` (metres, no visuals, vertex order kept; cached,
        do not modify)."""
        return self._trimesh

    def sample_surface(self, n: int, seed: int = 0) -> np.ndarray:
        """(n, 3) float64 points [m] drawn uniformly by area on the surface (trimesh.sample),
        reproducible for a given ``seed``."""
        import trimesh

        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"sample_surface: n must be a positive integer, got {n!r}")
        pts, _ = trimesh.sample.sample_surface(self._trimesh, int(n), seed=int(seed))
        return np.asarray(pts, dtype=np.float64)

    # -------------------------------------------------------------------------------- symmetries
    def symmetry_transforms(self, max_sym_disc_step: float = 0.01) -> np.ndarray:
        """All symmetry transforms, as BOP toolkit's ``misc.get_symmetry_transformations``.

        Every continuous symmetry is discretised into ``n = ceil(pi / max_sym_disc_step)`` rotations
        by ``i * 2 pi / n`` (i = 0 .. n-1) about its axis through its offset, so a point at distance
        <= diameter / 2 from the axis moves at most ``max_sym_disc_step * diameter`` per step. Each
        discrete symmetry (the identity included) is combined with each discretised continuous
        one: ``T = T_cont @ T_disc``.

        Args:
            max_sym_disc_step: fraction of the diameter (> 0).
        Returns:
            (S, 4, 4) float64 (translation in metres), identity first;
            S = (1 + n_discrete) * (n * n_continuous, or 1 without continuous symmetries).
        """
        step = float(max_sym_disc_step)
        if not np.isfinite(step) or step <= 0:
            raise InputError(f"max_sym_disc_step must be > 0, got {max_sym_disc_step!r}")
        disc = [np.eye(4)] + [np.asarray(T, dtype=np.float64) for T in self.symmetries_discrete]
        cont = []
        for sym in self.symmetries_continuous:
            n = int(math.ceil(math.pi / step))
            angles = np.arange(n) * (2.0 * math.pi / n)
            Rs = rotvec_to_matrix(angles[:, None] * sym["axis"][None, :])
            off = np.asarray(sym["offset"], dtype=np.float64)
            Ts = np.tile(np.eye(4), (n, 1, 1))
            Ts[:, :3, :3] = Rs
            Ts[:, :3, 3] = off - Rs @ off
            cont.append(Ts)
        if not cont:
            return np.stack(disc)
        cont_all = np.concatenate(cont)
        return np.concatenate([cont_all @ Td for Td in disc])

    # -------------------------------------------------------------------------------- identity
    def content_hash(self) -> str:
        """sha256 hex digest of units, vertices, faces, vertex colours, uv and texture.

        Equal for models that render identically; meant as a cache key (templates, ...)."""
        h = hashlib.sha256()
        h.update(f"units={self.units};".encode())
        for key in ("vertices", "faces", "vertex_colors", "uv", "texture"):
            arr = getattr(self, key)
            if arr is None:
                h.update(f"{key}=None;".encode())
                continue
            arr = np.ascontiguousarray(arr)
            h.update(f"{key}={arr.dtype.str}{arr.shape};".encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    # -------------------------------------------------------------------------------- factories
    @classmethod
    def from_trimesh(cls, mesh, units: str = "m", name: str = "object", texture=None, uv=None,
                     vertex_colors=None, models_info: dict | None = None) -> "ObjectModel":
        """Build from a ``trimesh.Trimesh`` (or ``Scene``, concatenated) whose coordinates are in
        ``units``; they are scaled to metres.

        Args:
            mesh: trimesh.Trimesh / trimesh.Scene.
            units: "mm" or "m", the unit of ``mesh.vertices``.
            name: object name.
            texture: (Ht, Wt, 3|4) uint8 array or PIL image, row 0 = top; None -> taken from a
                ``TextureVisuals`` material image when ``uv`` is available (trimesh's uniform
                2x2 placeholder for "no image" is ignored: the model is then untextured).
            uv: (V, 2) texture coordinates (v up); None -> ``mesh.visual.uv`` if present.
            vertex_colors: (V, 3|4) uint8 or float in [0, 1]; None -> ``mesh.visual.vertex_colors``
                when the visual kind is 'vertex'.
            models_info: one BOP models_info entry (always millimetres) for the symmetries.
        Returns:
            ObjectModel. Emits UnitsWarning (and sets ``units_suspect``) for implausible sizes.
        """
        import trimesh

        _check_units(units)
        if isinstance(mesh, trimesh.Scene):
            mesh = mesh.to_mesh()
        if not isinstance(mesh, trimesh.Trimesh):
            raise InputError(f"object {name!r}: expected a trimesh.Trimesh, "
                             f"got {type(mesh).__name__}")
        visual = getattr(mesh, "visual", None)
        kind = getattr(visual, "kind", None)
        if uv is None and kind == "texture" and getattr(visual, "uv", None) is not None:
            uv = visual.uv
            if texture is None:
                material = getattr(visual, "material", None)
                texture = getattr(material, "image", None)
                if texture is None:
                    texture = getattr(material, "baseColorTexture", None)
                if _is_trimesh_placeholder(texture):
                    uv, texture = None, None
        if vertex_colors is None and kind == "vertex":
            vertex_colors = visual.vertex_colors
        return cls._build(name=name, vertices=np.asarray(mesh.vertices),
                          faces=np.asarray(mesh.faces),
                          units=units, vertex_colors=vertex_colors, uv=uv, texture=texture,
                          models_info=models_info, source_path=None)

    @classmethod
    def load(cls, path, units: str = "mm", name: str | None = None,
             models_info: dict | None = None) -> "ObjectModel":
        """Load a PLY or OBJ mesh file.

        Vertex order is kept (``process=False``; OBJ with ``maintain_order``). Reads PLY vertex
        colours (red/green/blue), per-vertex PLY UVs (texture_u/texture_v, u/v, s/t) with the image
        named by ``comment TextureFile <name>`` (BOP), and OBJ+MTL textures (``map_Kd``). A texture
        file that is missing gives a ``UserWarning`` naming it and an untextured model.

        Args:
            path: .ply or .obj file.
            units: "mm" (BOP default) or "m": unit of the file's coordinates.
            name: object name; default the file stem (e.g. "obj_000001").
            models_info: BOP models_info entry of this object (mm) for its symmetries. A whole
                models_info dict {id: entry} is accepted when the file stem ends in the id.
        Returns:
            ObjectModel in metres. Emits UnitsWarning for a size implausible for ``units``.
        Raises:
            InputError naming the path: missing / unreadable / empty mesh, unsupported suffix,
            bad units.
        """
        _check_units(units)
        path = Path(path)
        name = path.stem if name is None else name
        if not path.is_file():
            raise InputError(f"mesh file not found: {path}")
        suffix = path.suffix.lower()
        if suffix not in _MESH_SUFFIXES:
            raise InputError(f"mesh file {path}: unsupported format {suffix!r} (use .ply or .obj)")
        if suffix == ".ply":
            arrays = _read_ply(path)
        else:
            arrays = _read_obj(path)
        return cls._build(name=name, units=units, models_info=_select_info_entry(models_info, name),
                          source_path=str(path), **arrays)

    @classmethod
    def _build(cls, *, name, vertices, faces, units, vertex_colors, uv, texture, models_info,
               source_path) -> "ObjectModel":
        """Scale to metres, normalise colours / texture, parse symmetries, check the size."""
        _check_units(units)
        where = f"{source_path}" if source_path else f"object {name!r}"
        vertices = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces)
        if vertices.ndim != 2 or len(vertices) == 0 or faces.ndim != 2 or len(faces) == 0:
            raise InputError(f"{where}: empty mesh ({vertices.shape[0] if vertices.ndim else 0} "
                             f"vertices, {faces.shape[0] if faces.ndim else 0} faces)")
        if vertex_colors is not None:
            vertex_colors = _colors_to_unit(vertex_colors, len(vertices), where)
        if texture is not None:
            texture = _image_to_rgb_uint8(texture, where)
        if (uv is None) or (texture is None):
            uv, texture = None, None
        disc, cont = parse_bop_symmetries(models_info) if models_info else ([], [])
        obj = cls(name=name, vertices=vertices * UNIT_SCALE[units], faces=faces,
                  vertex_colors=vertex_colors, uv=uv, texture=texture, units=units,
                  symmetries_discrete=disc, symmetries_continuous=cont, source_path=source_path)
        d_declared = obj.diameter / UNIT_SCALE[units]
        likely = None
        if units == "mm" and d_declared < _MM_SUSPECT_BELOW:
            likely = "m"
            msg = (f"mesh {name!r} ({where}) is declared in mm but its diameter is "
                   f"{d_declared:.4g} mm;"
                   f" that looks like metres (pass units='m')")
        elif units == "m" and d_declared > _M_SUSPECT_ABOVE:
            likely = "mm"
            msg = (f"mesh {name!r} ({where}) is declared in m but its diameter is "
                   f"{d_declared:.4g} m;"
                   f" that looks like millimetres (pass units='mm')")
        if likely is not None:
            obj.units_suspect = True
            warnings.warn(UnitsWarning(msg, mesh=name, diameter=d_declared, declared_units=units,
                                       likely_units=likely), stacklevel=3)
        return obj


# ------------------------------------------------------------------------------------------------
# file readers
# ------------------------------------------------------------------------------------------------
def _colors_to_unit(colors, n: int, where: str) -> np.ndarray:
    c = np.asarray(colors)
    if c.ndim != 2 or c.shape[0] != n or c.shape[1] not in (3, 4):
        raise InputError(f"{where}: vertex colours must be (V, 3|4), got {c.shape}")
    c = c[:, :3]
    if np.issubdtype(c.dtype, np.integer):
        return (c.astype(np.float32) / 255.0).astype(np.float32)
    c = c.astype(np.float32)
    if np.nanmax(c) > 1.0:  # float colours written on a 0..255 scale
        c = c / 255.0
    return c


def _is_trimesh_placeholder(image) -> bool:
    """trimesh reports a uniform 2x2 picture as the image of a material that has none."""
    if image is None:
        return False
    arr = np.asarray(image)
    return arr.shape[:2] == (2, 2) and bool(np.all(arr == arr[0, 0]))


def _image_to_rgb_uint8(image, where: str) -> np.ndarray:
    import PIL.Image

    if isinstance(image, PIL.Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise InputError(f"{where}: texture must be (Ht, Wt, 3|4) uint8 or a PIL image, got "
                         f"{arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3])


def _load_texture_file(path: Path, where: str) -> np.ndarray | None:
    """RGB uint8 image, or None with a UserWarning naming the file when missing / unreadable."""
    import PIL.Image

    if not path.is_file():
        warnings.warn(f"{where}: texture file {path.name!r} not found at {path}; "
                      "loading the mesh untextured", UserWarning, stacklevel=4)
        return None
    try:
        with PIL.Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Exception as exc:
        warnings.warn(f"{where}: texture file {path.name!r} cannot be read ({exc}); "
                      "loading the mesh untextured", UserWarning, stacklevel=4)
        return None


def _trimesh_load(path: Path, **kwargs):
    import trimesh

    try:
        mesh = trimesh.load(str(path), force="mesh", process=False, **kwargs)
    except Exception as exc:
        raise InputError(f"cannot read mesh {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.vertices) == 0 or len(mesh.faces) == 0:
        raise InputError(f"mesh {path} is empty (no triangles)")
    return mesh


def _ply_texture_name(path: Path) -> str | None:
    """File named by ``comment TextureFile <name>`` in the PLY header, or None."""
    with open(path, "rb") as fh:
        for _ in range(200):
            line = fh.readline()
            if not line:
                break
            text = line.decode("latin-1").strip()
            if text.startswith("end_header"):
                break
            parts = text.split(None, 2)
            if len(parts) == 3 and parts[0] == "comment" and parts[1].lower() == "texturefile":
                return parts[2].strip()
    return None


def _read_ply(path: Path) -> dict:
    """Arrays of a PLY file, in file units."""
    # skip_materials: the texture file is resolved here (trimesh only logs when it is missing).
    mesh = _trimesh_load(path, skip_materials=True)
    raw = mesh.metadata.get("_ply_raw", {}).get("vertex", {}).get("data", None)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces)
    names = set(raw.keys()) if isinstance(raw, dict) else set(getattr(getattr(raw, "dtype", None),
                                                                      "names", None) or ())
    same_vertices = False
    if names >= {"x", "y", "z"}:
        raw_xyz = np.column_stack([np.asarray(raw[c], dtype=np.float64).reshape(-1) for c in "xyz"])
        same_vertices = raw_xyz.shape == vertices.shape and np.array_equal(raw_xyz, vertices)

    vertex_colors = None
    if same_vertices and names >= {"red", "green", "blue"}:
        vertex_colors = np.column_stack([np.asarray(raw[c]).reshape(-1)
                                         for c in ("red", "green", "blue")])
    elif getattr(mesh.visual, "kind", None) == "vertex":
        vertex_colors = mesh.visual.vertex_colors

    uv = None
    for un, vn in (("texture_u", "texture_v"), ("u", "v"), ("s", "t")):
        if same_vertices and names >= {un, vn}:
            uv = np.column_stack([np.asarray(raw[un], dtype=np.float64).reshape(-1),
                                  np.asarray(raw[vn], dtype=np.float64).reshape(-1)])
            break
    if uv is None and getattr(mesh.visual, "kind", None) == "texture" \
            and getattr(mesh.visual, "uv", None) is not None:
        uv = np.asarray(mesh.visual.uv)  # per-face texcoords: trimesh split the vertices

    texture = None
    tex_name = _ply_texture_name(path)
    if tex_name is not None:
        texture = _load_texture_file(path.parent / tex_name, str(path))
    return dict(vertices=vertices, faces=faces, vertex_colors=vertex_colors,
                uv=uv if texture is not None else None, texture=texture)


def _obj_texture_names(path: Path) -> list[Path]:
    """Texture image paths named by ``map_Kd`` in the MTL files an OBJ references."""
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0] == "mtllib":
            mtl = path.parent / parts[1].strip()
            if not mtl.is_file():
                warnings.warn(f"{path}: material file {mtl.name!r} not found at {mtl}; "
                              "loading the mesh untextured", UserWarning, stacklevel=4)
                continue
            for mline in mtl.read_text(errors="replace").splitlines():
                mparts = mline.strip().split()
                if len(mparts) >= 2 and mparts[0] == "map_Kd":
                    out.append(mtl.parent / mparts[-1])  # options may precede the file name
    return out


def _read_obj(path: Path) -> dict:
    """Arrays of an OBJ file (+ MTL texture), in file units."""
    tex_paths = _obj_texture_names(path)
    missing = [p for p in tex_paths if not p.is_file()]
    for p in missing:
        _load_texture_file(p, str(path))  # warns naming the file
    mesh = _trimesh_load(path, maintain_order=True, skip_materials=bool(missing))
    visual = mesh.visual
    kind = getattr(visual, "kind", None)
    vertex_colors = visual.vertex_colors if kind == "vertex" else None
    uv, texture = None, None
    if tex_paths and not missing and kind == "texture" and getattr(visual, "uv", None) is not None:
        material = getattr(visual, "material", None)
        image = getattr(material, "image", None)
        if image is None:
            image = getattr(material, "baseColorTexture", None)
        if image is not None:
            uv, texture = np.asarray(visual.uv), image
    return dict(vertices=np.asarray(mesh.vertices, dtype=np.float64), faces=np.asarray(mesh.faces),
                vertex_colors=vertex_colors, uv=uv, texture=texture)


def models_info_entry(obj: ObjectModel) -> dict:
    """A BOP ``models_info.json`` entry for ``obj``, in millimetres (JSON-serialisable floats).

    Returns:
        {"diameter", "min_x", "min_y", "min_z", "size_x", "size_y", "size_z"} plus
        "symmetries_discrete" (list of 16 numbers, row-major 4x4, translation mm) and
        "symmetries_continuous" ([{"axis": [3], "offset": [3] mm}]) when the object has them.
    """
    k = 1.0 / UNIT_SCALE["mm"]
    lo = obj.vertices.min(axis=0) * k
    size = obj.extents * k
    entry = {"diameter": float(obj.diameter * k),
             "min_x": float(lo[0]), "min_y": float(lo[1]), "min_z": float(lo[2]),
             "size_x": float(size[0]), "size_y": float(size[1]), "size_z": float(size[2])}
    if obj.symmetries_discrete:
        syms = []
        for T in obj.symmetries_discrete:
            T = np.array(T, dtype=np.float64)
            T[:3, 3] *= k
            syms.append([float(x) for x in T.reshape(-1)])
        entry["symmetries_discrete"] = syms
    if obj.symmetries_continuous:
        entry["symmetries_continuous"] = [
            {"axis": [float(x) for x in s["axis"]], "offset": [float(x) * k for x in s["offset"]]}
            for s in obj.symmetries_continuous]
    return entry


def simplified(obj: ObjectModel, max_faces: int = 2000) -> ObjectModel:
    """A copy of ``obj`` with at most ``max_faces`` faces (trimesh's quadric decimation, backed
    by ``fast_simplification``), vertex colours carried over from the nearest original vertex;
    ``obj`` itself when it is small enough. For renderings whose cost grows with the face count
    and whose result does not need every face: the evidence silhouettes of 30-200 px objects
    (a 46k-face LM-O mesh renders ~5x faster at 2k faces). Texture coordinates are dropped (the
    copy keeps vertex colours sampled from the texture when the mesh had one)."""
    if isinstance(max_faces, bool) or not isinstance(max_faces, (int, np.integer)) \
            or max_faces < 100:
        raise InputError(f"simplified: max_faces must be an integer >= 100, got {max_faces!r}")
    if len(obj.faces) <= max_faces:
        return obj
    from scipy.spatial import cKDTree

    dec = obj.as_trimesh().simplify_quadric_decimation(face_count=int(max_faces))
    v = np.asarray(dec.vertices, dtype=np.float64)
    colors = None
    src_colors = obj.vertex_colors
    if src_colors is None and obj.texture is not None:
        Ht, Wt = obj.texture.shape[:2]
        u = np.clip((obj.uv[:, 0] % 1.0) * Wt, 0, Wt - 1).astype(int)
        vv = np.clip((1.0 - obj.uv[:, 1] % 1.0) * Ht, 0, Ht - 1).astype(int)
        src_colors = obj.texture[vv, u].astype(np.float32) / 255.0
    if src_colors is not None:
        _, idx = cKDTree(obj.vertices).query(v)
        colors = src_colors[idx]
    return ObjectModel(name=f"{obj.name}_simplified", vertices=v,
                       faces=np.asarray(dec.faces, dtype=np.int64), vertex_colors=colors,
                       units=obj.units, symmetries_discrete=list(obj.symmetries_discrete),
                       symmetries_continuous=list(obj.symmetries_continuous),
                       source_path=obj.source_path)


def near_symmetries(obj: ObjectModel, max_chamfer: float = 0.03, n_points: int = 2000,
                    seed: int = 0) -> np.ndarray:
    """Rotations under which the object's *shape* nearly maps onto itself although they are not
    declared symmetries -- a box whose print tells its ends apart, a mesh without that print:
    the image evidence, not the shape, must decide between such poses.

    Candidates: the 180-degree turns about the three principal axes of the surface (PCA of
    ``n_points`` surface samples) through the bounding-box centre. Kept when the mean distance of
    the turned samples to the nearest sample is below ``max_chamfer`` x diameter and the turn is
    not (close to) a declared symmetry.

    Returns:
        (M, 4, 4) float64 object-frame transforms (translation in metres), M in 0..3.
    """
    from scipy.spatial import cKDTree

    pts = obj.sample_surface(int(n_points), seed=seed)
    c = obj.center
    _, V = np.linalg.eigh(np.cov((pts - c).T))
    tree = cKDTree(pts)
    d = obj.diameter
    declared = obj.symmetry_transforms(0.05)
    out = []
    for k in range(3):
        R = rotvec_to_matrix(V[:, k] * math.pi)
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = c - R @ c
        moved = pts @ R.T + T[:3, 3]
        if tree.query(moved)[0].mean() > max_chamfer * d:
            continue
        # already a declared symmetry: every vertex lands where a declared symmetry puts it
        if any(np.abs(moved - (pts @ S[:3, :3].T + S[:3, 3])).max() < 0.02 * d for S in declared):
            continue
        out.append(T)
    return np.stack(out) if out else np.zeros((0, 4, 4))
