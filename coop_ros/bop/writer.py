"""BOP-format files as the BOP toolkit writes and reads them: the ground-truth helpers
(``calc_gt_info`` / ``calc_gt_masks`` semantics) and the writers of models, JSON and images.

Used by the scene generator (:mod:`coop_ros.synth.scenes`) and the benchmarks that write BOP
folders. Units: what BOP uses on disk (millimetres, pixels); the objects handed in are
:class:`coop_ros.objects.ObjectModel` in metres.

Ground truth follows the BOP toolkit (``scripts/calc_gt_masks.py``, ``calc_gt_info.py``) exactly:

* ``mask``: the object rendered alone at its GT pose, image size (truncated at the border).
* ``mask_visib`` / ``px_count_visib``: ``visib_mode='bop19'`` with ``delta = 15 mm`` on *distance*
  images: visible where ``dist_gt > 0`` and (``dist_gt - dist_scene <= delta`` or the saved depth
  is 0), with ``dist_scene`` from the depth PNG as written (noise and quantisation included), so
  running the BOP toolkit on these files reproduces the numbers.
* ``px_count_all``: pixels of the full silhouette **including the part outside the image** (BOP
  renders on a 3W x 3H canvas with the principal point shifted by (W, H)).
* ``px_count_valid``: pixels of the image-size silhouette with a non-zero saved depth.
* ``visib_fract = px_count_visib / px_count_all`` (0 when px_count_all is 0).
* ``bbox_obj`` = BOP ``calc_2d_bbox`` of the full (3x canvas) silhouette: ``[x_min, y_min,
  x_max - x_min, y_max - y_min]`` — note **w = x_max - x_min** (one less than the pixel count),
  and **not clipped** to the image: an object that leaves the image has a box reaching outside it
  (negative x / y, or x + w >= W). ``bbox_visib`` is the same of the visible mask (inside the image
  by construction). Both are ``[-1, -1, -1, -1]`` when ``px_count_visib`` is 0 (as BOP does).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from coop_ros.errors import InputError
from coop_ros.objects import ObjectModel, models_info_entry

__all__ = ["calc_2d_bbox", "depth_to_dist", "gt_info_bop", "gt_info_from_dist", "write_ply",
           "write_models", "dumps_bop_json", "write_bop_json", "write_png", "GENERATOR"]

#: the generator named in the files written (PLY header comment, ``dataset.json``): the name
#: the scene generator had when these files were first written (before it moved to
#: :mod:`coop_ros.synth`), kept so that a seed's files stay byte-identical
GENERATOR = "coop_ros.bop.synth"
_MM = 1000.0


# ==============================================================================================
# BOP ground-truth helpers (bop_toolkit semantics)
# ==============================================================================================
def calc_2d_bbox(xs: np.ndarray, ys: np.ndarray) -> list[int]:
    """BOP toolkit ``misc.calc_2d_bbox`` (no clipping): ``[x_min, y_min, x_max - x_min,
    y_max - y_min]`` of pixel coordinates (note: width = x_max - x_min, not the pixel count)."""
    xs, ys = np.asarray(xs), np.asarray(ys)
    if xs.size == 0:
        return [-1, -1, -1, -1]
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0, int(ys.max()) - y0]


def depth_to_dist(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """BOP ``depth_im_to_dist_im``: (H, W) depth (any unit) -> distance from the camera centre
    (same unit), float64; 0 stays 0."""
    depth = np.asarray(depth, dtype=np.float64)
    H, W = depth.shape
    xs = (np.arange(W) - K[0, 2]) / K[0, 0]
    ys = (np.arange(H) - K[1, 2]) / K[1, 1]
    return depth * np.sqrt(xs[None, :] ** 2 + ys[:, None] ** 2 + 1.0)


def gt_info_bop(depth_gt_mm: np.ndarray, depth_scene_mm: np.ndarray, K: np.ndarray,
                delta_mm: float = 15.0, px_count_all: int | None = None,
                bbox_obj: list[int] | None = None) -> tuple[dict, np.ndarray]:
    """BOP ``calc_gt_info`` / ``calc_gt_masks`` for one GT instance.

    Args:
        depth_gt_mm: (H, W) depth of the object rendered alone at its GT pose [mm], 0 off it.
        depth_scene_mm: (H, W) the dataset's depth image [mm] (as saved), 0 = no measurement.
        K: (3, 3) intrinsics [px].
        delta_mm: visibility tolerance [mm] (BOP: 15).
        px_count_all: silhouette pixels including the part outside the image (3x canvas);
            None -> the image-size silhouette's count (object fully inside).
        bbox_obj: BOP box of the full silhouette (3x canvas); None -> from the image-size one.
    Returns:
        (info, mask_visib): the scene_gt_info entry (dict with ints / float) and (H, W) bool.
    """
    return gt_info_from_dist(depth_to_dist(depth_gt_mm, K), depth_to_dist(depth_scene_mm, K), delta_mm,
                    px_count_all, bbox_obj)


def gt_info_from_dist(dist_gt: np.ndarray, dist_im: np.ndarray, delta_mm: float,
                      px_count_all: int | None, bbox_obj,
                      offset=(0, 0)) -> tuple[dict, np.ndarray]:
    """:func:`gt_info_bop` on distance images (``dist_gt`` / ``dist_im``, same (h, w) shape [mm])
    that may be a window of the image holding the whole silhouette: ``offset`` (x0, y0) [px] is
    the window's corner, added to the boxes; the (h, w) bool mask returned is the window's."""
    d_diff = dist_gt.astype(np.float32) - dist_im.astype(np.float32)
    visib = ((d_diff <= delta_mm) | (dist_im == 0)) & (dist_gt > 0)
    mask = dist_gt > 0
    if px_count_all is None:
        px_count_all = int(mask.sum())
    px_valid = int((dist_im[mask] > 0).sum())
    px_visib = int(visib.sum())
    fract = px_visib / float(px_count_all) if px_count_all > 0 else 0.0
    bbox, bbox_visib = [-1] * 4, [-1] * 4
    if px_visib > 0:
        if bbox_obj is None:
            ys, xs = mask.nonzero()
            bbox_obj = calc_2d_bbox(xs + offset[0], ys + offset[1])
        bbox = [int(x) for x in bbox_obj]
        ys, xs = visib.nonzero()
        bbox_visib = calc_2d_bbox(xs + offset[0], ys + offset[1])
    return ({"bbox_obj": bbox, "bbox_visib": bbox_visib, "px_count_all": int(px_count_all),
             "px_count_valid": px_valid, "px_count_visib": px_visib,
             "visib_fract": float(fract)}, visib)


# ==============================================================================================
# model files
# ==============================================================================================
def write_ply(path, obj: ObjectModel, texture_name: str | None = None) -> Path:
    """Write ``obj`` as a binary little-endian BOP PLY in **millimetres**.

    Vertex properties: x y z (float), nx ny nz (float, area-weighted vertex normals), red green
    blue (uchar: the vertex colours, or the texture sampled at each vertex's uv, or grey), and for
    textured objects texture_u texture_v (float, OpenGL v up) with the header line
    ``comment TextureFile <texture_name>``; the caller writes that PNG next to the PLY.
    Faces: ``list uchar int vertex_indices``.

    Args:
        path: output .ply path.
        obj: the object (metres).
        texture_name: file name of the texture PNG; required when ``obj`` has a texture.
    Returns:
        The path.
    """
    import trimesh

    path = Path(path)
    V = obj.vertices * _MM
    F = obj.faces
    normals = np.asarray(trimesh.Trimesh(vertices=obj.vertices, faces=F, process=False)
                         .vertex_normals, dtype=np.float32)
    if obj.vertex_colors is not None:
        rgb = np.round(obj.vertex_colors * 255.0)
    elif obj.texture is not None:
        Ht, Wt = obj.texture.shape[:2]
        cols = np.clip((obj.uv[:, 0] % 1.0) * Wt, 0, Wt - 1).astype(np.int64)
        rows = np.clip((1.0 - obj.uv[:, 1] % 1.0) * Ht, 0, Ht - 1).astype(np.int64)
        rgb = obj.texture[rows, cols].astype(np.float64)
    else:
        rgb = np.full((len(V), 3), 178.0)
    textured = obj.texture is not None
    if textured and not texture_name:
        raise InputError(f"write_ply({path}): object {obj.name!r} has a texture; give texture_name")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"),
              ("nz", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if textured:
        fields += [("texture_u", "<f4"), ("texture_v", "<f4")]
    vert = np.zeros(len(V), dtype=np.dtype(fields))
    for i, c in enumerate("xyz"):
        vert[c] = V[:, i]
        vert["n" + c] = normals[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        vert[c] = np.clip(rgb[:, i], 0, 255).astype(np.uint8)
    if textured:
        vert["texture_u"], vert["texture_v"] = obj.uv[:, 0], obj.uv[:, 1]
    face = np.zeros(len(F), dtype=np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
    face["n"] = 3
    face["i"] = F
    lines = ["ply", "format binary_little_endian 1.0", "comment units: millimetres",
             f"comment generated by {GENERATOR}"]
    if textured:
        lines.append(f"comment TextureFile {texture_name}")
    lines.append(f"element vertex {len(V)}")
    for name, dt in fields:
        lines.append(f"property {'uchar' if dt == 'u1' else 'float'} {name}")
    lines += [f"element face {len(F)}", "property list uchar int vertex_indices", "end_header"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(("\n".join(lines) + "\n").encode("ascii"))
        fh.write(vert.tobytes())
        fh.write(face.tobytes())
    return path


def dumps_bop_json(data) -> str:
    """JSON in the BOP toolkit's layout (``inout.save_json``): one line per top-level key or list
    element, each value compact."""
    compact = lambda v: json.dumps(v, separators=(", ", ": "))  # noqa: E731
    if isinstance(data, dict):
        lines = []
        for k, v in data.items():
            if isinstance(v, list) and v:
                inner = ",\n".join("    " + compact(x) for x in v)
                lines.append(f"  {json.dumps(str(k))}: [\n{inner}]")
            else:
                lines.append(f"  {json.dumps(str(k))}: {compact(v)}")
        return "{\n" + ",\n".join(lines) + "\n}"
    if isinstance(data, list):
        return "[\n" + ",\n".join("  " + compact(x) for x in data) + "\n]"
    return compact(data)


def write_bop_json(path: Path, data) -> None:
    """Write ``data`` to ``path`` (folders created) in the layout of :func:`dumps_bop_json`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_bop_json(data) + "\n")


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) RGB uint8 image, or an (H, W) uint8 / uint16 one (masks, depth), as a
    PNG (folders created). Raises InputError when it cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise InputError(f"cannot write image {path}")


def write_models(models_dir: Path, objects: dict[int, ObjectModel]) -> dict[int, ObjectModel]:
    """Write ``models_dir/obj_<id:06d>.ply`` (mm, :func:`write_ply`; + the texture PNG of a
    textured object) and ``models_info.json`` for ``{obj_id: ObjectModel}``; returns the models
    re-loaded from the files written (``{obj_id: ObjectModel}``, metres, named ``obj_<id>``)."""
    from PIL import Image

    info, loaded = {}, {}
    for obj_id, obj in objects.items():
        stem = f"obj_{obj_id:06d}"
        tex_name = None
        if obj.texture is not None:
            tex_name = f"{stem}.png"
            models_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(obj.texture).save(models_dir / tex_name, optimize=False)
        write_ply(models_dir / f"{stem}.ply", obj, tex_name)
        entry0 = models_info_entry(obj)
        sym_only = {k: v for k, v in entry0.items() if k.startswith("symmetries")}
        loaded[obj_id] = ObjectModel.load(models_dir / f"{stem}.ply", units="mm", name=stem,
                                          models_info=sym_only or None)
        info[str(obj_id)] = models_info_entry(loaded[obj_id])
    write_bop_json(models_dir / "models_info.json", info)
    return loaded
