"""Template bank of an object: the renderings Co-op's coarse stage matches the query crop against.

Views: one camera per icosphere vertex (42 = "level 0" in GigaPose / CNOS naming, or 162 / 642),
looking at the object's bounding-box centre, which lies on every optical axis; only out-of-plane
rotations are sampled (see :mod:`coop_ros.geometry.viewpoints`).

Camera of every template (S = ``size``, D = ``obj.diameter`` in metres)::

    f = focal_factor * S                      (pixels; default focal_factor = 2 -> f = 448 for 224)
    K = [[f, 0, (S - 1) / 2], [0, f, (S - 1) / 2], [0, 0, 1]]
    d = f * D / (fill * S) = focal_factor * D / fill      (default fill = 0.8 -> d = 2.5 D)

so ``D * f / d = fill * S``: the projected diameter is 0.8 S (a sphere of diameter D spans
0.816 S; real objects, whose extent in a view is below D, fill roughly 0.5-0.82 S).

Banks are cached on disk, one compressed ``.npz`` per (mesh content, parameters, format
version): ``<cache_dir>/<name>_<key[:16]>.npz`` with
``key = sha256(obj.content_hash() + json(params) + FORMAT_VERSION)``. The default cache directory
is ``$COOP_ROS_CACHE/templates`` or ``~/.cache/coop_ros/templates``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from coop_ros.errors import InputError, RenderError
from coop_ros.geometry.viewpoints import ALLOWED_VIEW_COUNTS, template_poses
from coop_ros.render.renderer import Light, Renderer

__all__ = ["FORMAT_VERSION", "TemplateBank", "TemplateCacheWarning", "build_template_bank",
           "template_camera", "cache_key", "cache_path", "default_cache_dir",
           "configure_parser", "run"]

#: bump when the rendering or the file layout changes; older cache files are rebuilt
FORMAT_VERSION = 1
DEFAULT_FILL = 0.8
DEFAULT_FOCAL_FACTOR = 2.0
_ARRAYS = ("poses", "K", "rgb", "depth", "mask", "xyz")
_CHUNK = 8  # views per render call (progress-bar granularity)


class TemplateCacheWarning(UserWarning):
    """A template cache file was unreadable, of another version or unwritable (it is rebuilt)."""


@dataclass
class TemplateBank:
    """Rendered templates of one object (N views, S x S pixels each).

    Attributes:
        obj_name: name of the object.
        poses: (N, 4, 4) float64 ``T_cam_obj`` of the template cameras, metres.
        K: (3, 3) float64 intrinsics shared by all templates, pixels.
        rgb: (N, S, S, 3) uint8 shaded colour, black background.
        depth: (N, S, S) float32 camera z in metres, 0 on background.
        mask: (N, S, S) bool object silhouette.
        xyz: (N, S, S, 3) float32 object-frame coordinates (metres) of each pixel's surface point,
            0 on background (Co-op's 2D-3D correspondences come from here).
        size: S, pixels.
        n_views: N.
        level: icosphere level in GigaPose / CNOS naming (42 -> 0, 162 -> 1, 642 -> 2; None for 12).
        params: the parameters that define the bank (hashed into the cache key): n_views, size,
            fill, focal_factor, distance_m, light, up.
        cache_path: the .npz file it was loaded from / saved to, or None.
        from_cache: True when it was loaded from ``cache_path`` without rendering.
    """

    obj_name: str
    poses: np.ndarray
    K: np.ndarray
    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    xyz: np.ndarray
    size: int
    n_views: int
    level: int | None
    params: dict = field(default_factory=dict)
    cache_path: str | None = None
    from_cache: bool = False

    def __len__(self) -> int:
        return int(self.poses.shape[0])

    @property
    def distance(self) -> float:
        """Camera-to-centre distance of the templates, metres."""
        return float(self.params["distance_m"])

    def points(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels and 3D model points of template ``i``.

        Returns:
            ``(uv, X)``: uv (M, 2) int64 pixel coordinates (u = column, v = row) of the mask
            pixels in row-major order, X (M, 3) float64 object-frame points in metres.
        """
        rows, cols = np.nonzero(self.mask[i])
        return (np.stack([cols, rows], axis=1).astype(np.int64),
                self.xyz[i][rows, cols].astype(np.float64))

    # ------------------------------------------------------------------ file I/O
    def save(self, path, key: str = "") -> Path:
        """Write the bank to ``path`` (.npz, compressed) atomically; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, "key": key, "obj_name": self.obj_name,
                "size": int(self.size), "n_views": int(self.n_views), "level": self.level,
                "params": self.params}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, meta=np.array(json.dumps(meta)),
                                    **{k: getattr(self, k) for k in _ARRAYS})
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    @classmethod
    def load(cls, path, key: str | None = None) -> "TemplateBank":
        """Read a bank written by :meth:`save`.

        Args:
            path: .npz file.
            key: when given, the cache key stored in the file must equal it.

        Raises:
            InputError naming the file when it is missing, unreadable, of another format
            version, of another key, or has inconsistent arrays.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("format_version") != FORMAT_VERSION:
                    raise InputError(f"template file {path} has format version "
                                     f"{meta.get('format_version')}, expected {FORMAT_VERSION}")
                if key is not None and meta.get("key") != key:
                    raise InputError(f"template file {path} holds another bank (key "
                                     f"{str(meta.get('key'))[:16]}..., expected {key[:16]}...)")
                arrays = {k: z[k] for k in _ARRAYS}
        except InputError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile,
                json.JSONDecodeError) as e:
            raise InputError(f"template file {path} is unreadable ({type(e).__name__}: {e})") \
                from None
        n, s = int(meta["n_views"]), int(meta["size"])
        expected = {"poses": ((n, 4, 4), np.float64), "K": ((3, 3), np.float64),
                    "rgb": ((n, s, s, 3), np.uint8), "depth": ((n, s, s), np.float32),
                    "mask": ((n, s, s), np.bool_), "xyz": ((n, s, s, 3), np.float32)}
        for k, (shape, dtype) in expected.items():
            a = arrays[k]
            if a.shape != shape or a.dtype != dtype:
                raise InputError(f"template file {path}: array {k!r} is {a.shape} {a.dtype}, "
                                 f"expected {shape} {np.dtype(dtype)}")
        return cls(obj_name=str(meta["obj_name"]), size=s, n_views=n, level=meta.get("level"),
                   params=meta.get("params", {}), cache_path=str(path), **arrays)


# --------------------------------------------------------------------------- camera and cache

def template_camera(diameter: float, size: int = 224, fill: float = DEFAULT_FILL,
                    focal_factor: float = DEFAULT_FOCAL_FACTOR) -> tuple[np.ndarray, float]:
    """Intrinsics and camera distance of the templates (formula in the module docstring).

    Args:
        diameter: object diameter, metres (> 0).
        size: template side S, pixels.
        fill: projected diameter as a fraction of S, ``D * f / d = fill * S`` (0 < fill <= 1).
        focal_factor: focal length in units of S (> 0); larger = less perspective.

    Returns:
        ``(K, distance)``: (3, 3) float64 intrinsics (principal point at the image centre,
        ``(S - 1) / 2``) and the camera-to-centre distance in metres.
    """
    diameter = float(diameter)
    if not np.isfinite(diameter) or diameter <= 0:
        raise InputError(f"object diameter must be a finite positive length in metres, got "
                         f"{diameter}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise InputError(f"size must be an integer number of pixels >= 16, got {size!r}")
    fill, focal_factor = float(fill), float(focal_factor)
    if not (0.0 < fill <= 1.0):
        raise InputError(f"fill must lie in (0, 1], got {fill}")
    if not (np.isfinite(focal_factor) and focal_factor > 0):
        raise InputError(f"focal_factor must be a positive number, got {focal_factor}")
    f = focal_factor * size
    c = (size - 1) / 2.0
    K = np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])
    return K, f * diameter / (fill * size)


def default_cache_dir() -> Path:
    """``$COOP_ROS_CACHE/templates`` when the variable is set, else
    ``~/.cache/coop_ros/templates``."""
    root = os.environ.get("COOP_ROS_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "coop_ros"
    return base / "templates"


def cache_key(content_hash: str, params: dict) -> str:
    """sha256 hex of the mesh content hash, the bank parameters and FORMAT_VERSION."""
    text = content_hash + json.dumps(params, sort_keys=True) + f"v{FORMAT_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(cache_dir, obj_name: str, key: str) -> Path:
    """``cache_dir/<name>_<key[:16]>.npz`` (the name reduced to safe file-name characters)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", obj_name).strip("._") or "object"
    return Path(cache_dir).expanduser() / f"{safe}_{key[:16]}.npz"


def _bank_params(obj, n_views: int, size: int, fill: float, focal_factor: float,
                 light: Light) -> tuple[dict, np.ndarray]:
    if isinstance(n_views, bool) or not isinstance(n_views, (int, np.integer)) \
            or int(n_views) not in ALLOWED_VIEW_COUNTS:
        raise InputError(f"n_views must be one of {sorted(ALLOWED_VIEW_COUNTS)}, got {n_views!r}")
    K, distance = template_camera(obj.diameter, size, fill, focal_factor)
    params = {"n_views": int(n_views), "size": int(size), "fill": float(fill),
              "focal_factor": float(focal_factor), "distance_m": float(distance),
              "light": light.as_dict(), "up": [0.0, 0.0, 1.0]}
    return params, K


# --------------------------------------------------------------------------- building

def build_template_bank(obj, renderer: Renderer | None = None, n_views: int = 42,
                        size: int = 224, cache_dir=None, progress: bool = False, *,
                        fill: float = DEFAULT_FILL, focal_factor: float = DEFAULT_FOCAL_FACTOR,
                        light: Light | None = None, use_cache: bool = True,
                        device: str = "cpu") -> TemplateBank:
    """Render (or load from the disk cache) the template bank of an object.

    Args:
        obj: :class:`coop_ros.objects.ObjectModel` (metres).
        renderer: a :class:`Renderer` to use (any default size; not released here). None ->
            one is created on ``device`` for this call and released afterwards (only on a miss).
        n_views: 42 (Co-op), 162 or 642 (or 12).
        size: template side S in pixels (224 for CroCo).
        cache_dir: directory of the cache files; None -> :func:`default_cache_dir`.
        progress: show a tqdm progress bar while rendering.
        fill, focal_factor: template camera (see :func:`template_camera`).
        light: lighting of the templates (default headlight ``Light()``).
        use_cache: False renders without reading or writing any cache file.
        device: device of the renderer created when ``renderer`` is None.

    Returns:
        :class:`TemplateBank`; ``from_cache`` tells whether it was loaded.

    Raises:
        InputError for bad parameters; RenderError when the renderer fails or a template comes
        out empty. A corrupt, foreign or other-version cache file only warns
        (TemplateCacheWarning) and is rebuilt; an unwritable cache directory only warns.
    """
    light = (light or Light()).validated()
    params, K = _bank_params(obj, n_views, size, fill, focal_factor, light)
    n_views, size = params["n_views"], params["size"]
    key = cache_key(obj.content_hash(), params)
    path = cache_path(default_cache_dir() if cache_dir is None else cache_dir, obj.name, key)

    if use_cache and path.is_file():
        try:
            bank = TemplateBank.load(path, key=key)
            bank.from_cache = True
            return bank
        except InputError as e:
            warnings.warn(TemplateCacheWarning(f"{e}; rebuilding it"), stacklevel=2)

    poses = template_poses(n_views, distance=params["distance_m"], center=obj.center,
                           up=params["up"])
    own = renderer is None
    if own:
        renderer = Renderer(size, size, device=device)
    rkey = f"templates:{obj.name}:{obj.content_hash()[:16]}"
    rgb = np.empty((n_views, size, size, 3), np.uint8)
    depth = np.empty((n_views, size, size), np.float32)
    mask = np.empty((n_views, size, size), bool)
    xyz = np.empty((n_views, size, size, 3), np.float32)
    bar = None
    uploaded = not renderer.has(rkey)
    try:
        renderer.add_object(rkey, obj)
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=n_views, desc=f"templates {obj.name}", unit="view")
        for s in range(0, n_views, _CHUNK):
            sl = slice(s, min(s + _CHUNK, n_views))
            out = renderer.render(rkey, poses[sl], K, width=size, height=size, light=light)
            rgb[sl], depth[sl], mask[sl], xyz[sl] = out.rgb, out.depth, out.mask, out.xyz
            if bar is not None:
                bar.update(sl.stop - sl.start)
    finally:
        if bar is not None:
            bar.close()
        if own:
            renderer.release()
        elif uploaded:
            renderer.remove(rkey)   # leave the caller's renderer as it was
    empty = np.flatnonzero(~mask.any(axis=(1, 2)))
    if empty.size:
        raise RenderError(f"templates {empty.tolist()} of {obj.name!r} are empty (nothing was "
                          f"drawn at distance {params['distance_m']:.4g} m)")
    level = ALLOWED_VIEW_COUNTS[n_views] - 1
    bank = TemplateBank(obj_name=obj.name, poses=poses, K=K, rgb=rgb, depth=depth, mask=mask,
                        xyz=xyz, size=size, n_views=n_views, level=level if level >= 0 else None,
                        params=params)
    if use_cache:
        try:
            bank.save(path, key=key)
            bank.cache_path = str(path)
        except OSError as e:
            warnings.warn(TemplateCacheWarning(f"could not write the template cache {path} "
                                               f"({e}); continuing without it"), stacklevel=2)
    return bank


# --------------------------------------------------------------------------- CLI

def configure_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``coop-ros templates``."""
    p.add_argument("--mesh", required=True, help="mesh file (.ply / .obj)")
    p.add_argument("--units", default="mm", choices=("mm", "m"),
                   help="unit of the mesh coordinates (BOP meshes: mm)")
    p.add_argument("--name", default=None, help="object name (default: the file stem)")
    p.add_argument("--out", default=None,
                   help=f"cache directory (default: {default_cache_dir()})")
    p.add_argument("--views", type=int, default=42, choices=sorted(ALLOWED_VIEW_COUNTS),
                   help="number of template views (icosphere vertices)")
    p.add_argument("--size", type=int, default=224, help="template side in pixels")
    p.add_argument("--device", default="cpu", help="'cpu' (Mesa llvmpipe), 'cuda' or 'cuda:i'")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """``coop-ros templates``: render and cache the template bank of a mesh; prints the file."""
    from coop_ros.objects import ObjectModel

    t0 = time.perf_counter()
    obj = ObjectModel.load(args.mesh, units=args.units, name=args.name)
    bank = build_template_bank(obj, None, n_views=args.views, size=args.size,
                               cache_dir=args.out, progress=not args.no_progress,
                               device=args.device)
    dt = time.perf_counter() - t0
    what = "loaded cached" if bank.from_cache else "rendered"
    where = bank.cache_path or "(not cached)"
    print(f"{what} {len(bank)} templates of {obj.name!r} ({bank.size}x{bank.size} px, "
          f"diameter {obj.diameter * 1e3:.1f} mm, camera distance {bank.distance:.4f} m) "
          f"-> {where} in {dt:.2f} s")
    return 0
