"""Synthetic BOP-format datasets with exact ground truth (``coop-ros synth``).

:func:`generate_dataset` renders random scenes of target objects (built-in procedural objects or
user meshes) with distractors, occluders, a textured background plane, jittered light and depth
noise, and writes them in the exact BOP layout
(https://github.com/thodan/bop_toolkit/blob/master/docs/bop_datasets_format.md)::

    OUT/dataset.json                   generator parameters + seed (no paths, no time stamps)
    OUT/test_targets_bop19.json        [{scene_id, im_id, obj_id, inst_count}], visib_fract >= 0.1
    OUT/models/models_info.json        {obj_id: diameter, min_*, size_*, symmetries_*} (mm)
    OUT/models/obj_000001.ply (+ obj_000001.png for textured objects, ``comment TextureFile``)
    OUT/test/000000/scene_camera.json  {im_id: {cam_K, depth_scale}}
                    scene_gt.json      {im_id: [{cam_R_m2c, cam_t_m2c (mm), obj_id}]}
                    scene_gt_info.json {im_id: [{bbox_obj, bbox_visib, px_count_all,
                                                 px_count_valid, px_count_visib, visib_fract}]}
                    rgb/000000.png     (H, W, 3) uint8
                    depth/000000.png   uint16, depth [mm] = value * depth_scale (0.1 by default)
                    mask/000000_000000.png        full silhouette of GT instance 0 (0 / 255)
                    mask_visib/000000_000000.png  its visible part (0 / 255)

Ground truth follows the BOP toolkit exactly (``calc_gt_masks`` / ``calc_gt_info``; the rules:
:mod:`coop_ros.bop.writer`): ``px_count_all`` and ``bbox_obj`` from BOP's 3W x 3H canvas only
for instances whose projected bounding box leaves the image (otherwise they equal the mask's),
``mask_visib`` with ``bop19`` and 15 mm against the depth PNG as written.

Scenes: a scene folder is a group of independent images (each image has its own object poses,
background, light); the camera frame is the world frame. Each image holds 1-3 target instances
(random rotation, depth 0.4-1.2 m, projected inside the image), free distractors (random
primitives and the built-in objects that are not targets), occluders put between the camera and
a target (``occlusion``), and a tilted plane textured with a procedural background behind
everything (so the depth image is valid everywhere) or a 2D background image (depth 0 there).
Bounding spheres of all items are disjoint (no interpenetration). Images are re-sampled until
every target has ``visib_fract >=`` the occlusion level's minimum (the best of
``max_attempts`` otherwise).

The images are rendered from the model files **as written** (re-loaded), so the files alone
reproduce every mask. Same seed -> byte-identical files.

``preset="realistic"`` (``coop-ros synth --preset realistic``, :mod:`coop_ros.synth.realistic`)
replaces the scenes above: a scene folder is one table arrangement (targets and distractors in
stable poses) seen from ``images_per_scene`` viewpoints, lit by point lights with shadows and
highlights, photographed through an RGB camera model and measured by a structured-light depth
model; the scene's object colours differ from the written models. Its GT visibility is computed
against the clean rendered scene depth (the saved depth has sensor holes); instances outside an
image are left out of that image's GT; ``scene_realism.json`` per scene records the draws.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from coop_ros.bop.writer import (GENERATOR, calc_2d_bbox, gt_info_from_dist, write_bop_json,
                                 write_models, write_png)
from coop_ros.errors import InputError
from coop_ros.geometry.camera import check_intrinsics, project_camera_points
from coop_ros.geometry.se3 import make_pose, random_rotation, transform_points
from coop_ros.objects import ObjectModel

__all__ = [
    "SynthConfig", "SynthSummary", "generate_dataset", "default_intrinsics", "OCCLUSION_LEVELS",
    "PRESETS", "configure_parser", "run",
]

#: scene presets of ``coop-ros synth --preset``
PRESETS = ("default", "realistic")
#: (min, max) distractors per image when not given, per preset
DEFAULT_DISTRACTORS = {"default": (0, 2), "realistic": (10, 18)}

#: occlusion level -> (probability that a target gets an occluder, minimum visib_fract of targets,
#: (min, max) image distance between target and occluder centres as a fraction of the sum of their
#: projected bounding radii: 1 = the discs just touch, 0 = concentric)
OCCLUSION_LEVELS = {"none": (0.0, 0.9, (1.0, 1.0)), "mild": (0.3, 0.5, (0.5, 1.0)),
                    "heavy": (0.8, 0.2, (0.15, 0.8))}
_MM = 1000.0
_GAP = 0.005          # free space between bounding spheres [m]
_NEAREST = 0.2        # nearest distance of any item's centre [m]
_FORMAT_VERSION = 1


# ==============================================================================================
# configuration and result records
# ==============================================================================================
@dataclass
class SynthConfig:
    """Parameters of :func:`generate_dataset` (validated once by :meth:`validated`).

    Attributes:
        n_scenes: number of scene folders (>= 1).
        images_per_scene: images per scene (>= 1).
        seed: master seed; the same seed gives byte-identical files.
        width, height: image size [px].
        K: (3, 3) intrinsics [px] as nested lists; None -> :func:`default_intrinsics`.
        objects_per_image: (min, max) target instances per image, inclusive.
        distractors: (min, max) free distractors per image, inclusive.
        occlusion: "none" | "mild" | "heavy" (:data:`OCCLUSION_LEVELS`).
        depth_noise_m: std of the Gaussian depth noise [m].
        distance_m: (min, max) depth of the targets' bounding-sphere centres [m].
        keep_inside: fraction of the projected bounding-sphere radius kept inside the image
            around a target's centre (1 = sphere fully inside, 0 = centre inside).
        background: "plane" (textured 3D plane, valid depth) | "image" (2D image, depth 0).
        light_jitter: random ambient / diffuse / direction / colour per image (else a headlight).
        rgb_noise: std of the Gaussian pixel noise added to the RGB image [0..255 levels].
        depth_scale: BOP depth_scale: depth [mm] = png value * depth_scale.
        visib_delta_mm: BOP visibility tolerance [mm].
        visib_threshold: minimum visib_fract of an instance listed in test_targets_bop19.json.
        multi_instance: allow several instances of one object in an image (always when
            objects_per_image asks for more instances than there are objects).
        n_distractor_primitives: size of the random-primitive distractor pool.
        max_attempts: re-samples of an image whose targets are too occluded.
        object_seed: seed of the built-in objects' textures (separate from ``seed``, so datasets
            with different seeds show the same objects).
        split: split folder name.
        preset: ``"default"`` (the scenes described above) or ``"realistic"``
            (:mod:`coop_ros.synth.realistic`: table-top layout in stable poses, shadows and
            highlights, RGB camera and structured-light depth models, appearance mismatch;
            ``occlusion``, ``depth_noise_m``, ``distance_m``, ``keep_inside``, ``background``,
            ``light_jitter``, ``rgb_noise`` and ``max_attempts`` do not apply to it).
        distractor_meshes: optional glob of mesh files (any units; scaled to 6-16 cm, random
            colours) added to the distractor pool; the realistic preset uses pybullet_data's
            ``random_urdfs/*/*.obj`` when pybullet is installed and this is None.
        n_distractor_meshes: how many files of that pool are drawn (seeded).
        sequence_fps: realistic preset: 0 (default) draws every image's viewpoint on its own;
            > 0 makes each scene one camera sequence at this frame rate [Hz], im_id = frame
            index, the camera moving smoothly around the table
            (:func:`coop_ros.synth.realistic.sequence_camera_pose`) with one RGB camera setting
            (white balance, exposure, gamma, blur, JPEG quality) per scene; sensor noise and
            depth artefacts are drawn per frame. For tracking (``coop-ros eval --estimator
            coop-track``).
    """

    n_scenes: int = 1
    images_per_scene: int = 10
    seed: int = 0
    width: int = 640
    height: int = 480
    K: list | None = None
    objects_per_image: tuple[int, int] = (1, 3)
    distractors: tuple[int, int] = (0, 2)
    occlusion: str = "mild"
    depth_noise_m: float = 0.001
    distance_m: tuple[float, float] = (0.4, 1.2)
    keep_inside: float = 0.8
    background: str = "plane"
    light_jitter: bool = True
    rgb_noise: float = 2.0
    depth_scale: float = 0.1
    visib_delta_mm: float = 15.0
    visib_threshold: float = 0.1
    multi_instance: bool = False
    n_distractor_primitives: int = 8
    max_attempts: int = 10
    object_seed: int = 0
    split: str = "test"
    preset: str = "default"
    distractor_meshes: str | None = None
    n_distractor_meshes: int = 8
    sequence_fps: float = 0.0

    def validated(self) -> "SynthConfig":
        """Check every field; returns a normalised copy. Raises InputError naming the field."""
        c = SynthConfig(**asdict(self))
        for name in ("n_scenes", "images_per_scene", "width", "height", "max_attempts"):
            v = getattr(c, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name} must be an integer >= 1, got {v!r}")
            setattr(c, name, int(v))
        if c.preset not in PRESETS:
            raise InputError(f"preset must be one of {list(PRESETS)}, got {c.preset!r}")
        for name in ("seed", "object_seed", "n_distractor_primitives", "n_distractor_meshes"):
            v = getattr(c, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise InputError(f"{name} must be an integer >= 0, got {v!r}")
            setattr(c, name, int(v))
        for name in ("objects_per_image", "distractors"):
            v = getattr(c, name)
            try:
                lo, hi = (int(x) for x in v)
            except (TypeError, ValueError):
                raise InputError(f"{name} must be a (min, max) pair of integers, "
                                 f"got {v!r}") from None
            if lo < (1 if name == "objects_per_image" else 0) or hi < lo:
                raise InputError(f"{name} must be (min, max) with 0 <= min <= max "
                                 f"(min >= 1 for targets), got {v!r}")
            setattr(c, name, (lo, hi))
        if c.occlusion not in OCCLUSION_LEVELS:
            raise InputError(f"occlusion must be one of {sorted(OCCLUSION_LEVELS)}, got "
                             f"{c.occlusion!r}")
        if c.background not in ("plane", "image"):
            raise InputError(f"background must be 'plane' or 'image', got {c.background!r}")
        try:
            dmin, dmax = (float(x) for x in c.distance_m)
        except (TypeError, ValueError):
            raise InputError(f"distance_m must be a (min, max) pair in metres, got "
                             f"{c.distance_m!r}") from None
        if not (0.25 <= dmin <= dmax <= 20.0):
            raise InputError(f"distance_m must satisfy 0.25 <= min <= max <= 20 m, got "
                             f"{c.distance_m!r}")
        c.distance_m = (dmin, dmax)
        for name, lo, hi in (("depth_noise_m", 0.0, 0.1), ("keep_inside", 0.0, 1.0),
                             ("rgb_noise", 0.0, 50.0), ("visib_threshold", 0.0, 1.0),
                             ("visib_delta_mm", 0.0, 1000.0)):
            v = float(getattr(c, name))
            if not (np.isfinite(v) and lo <= v <= hi):
                raise InputError(f"{name} must be in [{lo}, {hi}], got {getattr(c, name)!r}")
            setattr(c, name, v)
        fps = c.sequence_fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.floating)) or \
                not (np.isfinite(fps) and 0.0 <= fps <= 1000.0):
            raise InputError(f"sequence_fps must be a number in [0, 1000] Hz, got {fps!r}")
        c.sequence_fps = float(fps)
        if c.sequence_fps > 0 and c.preset != "realistic":
            raise InputError("sequence_fps needs preset 'realistic' (the camera moves around its "
                             f"table scenes), got preset {c.preset!r}")
        ds = float(c.depth_scale)
        if not (np.isfinite(ds) and 0.0 < ds <= 10.0):
            raise InputError(f"depth_scale must be in (0, 10] (mm per png unit), "
                             f"got {c.depth_scale!r}")
        c.depth_scale = ds
        if not isinstance(c.split, str) or not c.split or "/" in c.split:
            raise InputError(f"split must be a folder name, got {c.split!r}")
        if c.K is None and c.preset == "realistic":
            from coop_ros.synth.realistic import KINECT_K
            Kk = np.array(KINECT_K) * [[c.width / 640.0], [c.height / 480.0], [1.0]]
            c.K = Kk.tolist()
        elif c.K is None:
            c.K = default_intrinsics(c.width, c.height).tolist()
        else:
            c.K = check_intrinsics(c.K, image_size=(c.width, c.height)).tolist()
        c.light_jitter, c.multi_instance = bool(c.light_jitter), bool(c.multi_instance)
        return c


@dataclass
class SynthSummary:
    """What :func:`generate_dataset` wrote.

    Attributes:
        out_dir: dataset root.
        obj_ids: {obj_id: object name}.
        n_images: images written.
        n_instances: GT instances written (all scene_gt entries).
        n_targets: instances listed in test_targets_bop19.json (visib_fract >= threshold).
        visib_fract: (n_instances,) float64 visib_fract of every instance, in file order.
        image_seconds: (n_images,) wall time of each image [s]: layout, rendering, sensor
            models, ground truth and writing its files (not the per-dataset set-up: model
            files, distractor pool, stable poses; nor the per-scene one in the realistic preset).
        image_cpu_seconds: (n_images,) CPU time of the same work [s] (all threads of this
            process, the renderer's included): independent of other processes' load.
    """

    out_dir: Path
    obj_ids: dict[int, str]
    n_images: int
    n_instances: int
    n_targets: int
    visib_fract: np.ndarray = field(repr=False)
    image_seconds: np.ndarray = field(default=None, repr=False)
    image_cpu_seconds: np.ndarray = field(default=None, repr=False)


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """A typical RGB-D camera for a ``width`` x ``height`` image: fx = fy = 0.9375 * width
    (600 px at 640 x 480, ~56 deg horizontal field of view), principal point at the centre.

    Returns:
        (3, 3) float64 K [px].
    """
    f = 0.9375 * float(width)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


# ==============================================================================================
# objects
# ==============================================================================================
def _resolve_objects(objects, object_seed: int) -> tuple[dict[int, ObjectModel], dict[int, str]]:
    """{obj_id: ObjectModel} and {obj_id: source description} from the accepted forms."""
    from coop_ros.synth.procedural import PROCEDURAL, make_object

    if objects is None:
        objects = list(PROCEDURAL)
    if isinstance(objects, str):
        objects = [s.strip() for s in objects.split(",") if s.strip()]
    if isinstance(objects, Mapping):
        items = list(objects.items())
    elif isinstance(objects, Sequence):
        items = list(enumerate(objects, start=1))
    else:
        raise InputError(f"objects must be a dict {{obj_id: ObjectModel | name}} or a list of "
                         f"names / ObjectModels, got {type(objects).__name__}")
    if not items:
        raise InputError("objects is empty: give at least one target object")
    out, src = {}, {}
    for obj_id, o in items:
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)) or \
                not 1 <= int(obj_id) <= 999999:
            raise InputError(f"object ids must be integers in [1, 999999], got {obj_id!r}")
        obj_id = int(obj_id)
        if isinstance(o, str):
            out[obj_id] = make_object(o, seed=object_seed)
            src[obj_id] = f"procedural:{o}"
        elif isinstance(o, ObjectModel):
            out[obj_id] = o
            src[obj_id] = f"mesh:{Path(o.source_path).name}" if o.source_path else f"model:{o.name}"
        else:
            raise InputError(f"objects[{obj_id}] must be an ObjectModel or a built-in name, got "
                             f"{type(o).__name__}")
    return dict(sorted(out.items())), dict(sorted(src.items()))


# ==============================================================================================
# scene sampling
# ==============================================================================================
@dataclass
class _Item:
    key: str
    T: np.ndarray          # (4, 4) T_cam_obj [m]
    center: np.ndarray     # (3,) bounding-sphere centre in the camera frame [m]
    radius: float          # bounding-sphere radius [m]
    obj_id: int = 0        # > 0 for targets


def _sphere(obj: ObjectModel) -> tuple[np.ndarray, float]:
    c = obj.center
    return c, float(np.linalg.norm(obj.vertices - c, axis=1).max())


def _free(center: np.ndarray, radius: float, placed: list[_Item]) -> bool:
    return all(np.linalg.norm(center - it.center) >= radius + it.radius + _GAP for it in placed)


def _place_in_view(rng, K, W, H, c_obj, r, z_range, keep_inside) -> np.ndarray:
    """Random pose whose bounding-sphere centre has depth in ``z_range`` and projects at least
    ``keep_inside`` projected radii inside the image. Returns (4, 4)."""
    R = random_rotation(rng)
    z = float(rng.uniform(*z_range))
    f = min(K[0, 0], K[1, 1])
    m = keep_inside * f * r / z
    u = float(rng.uniform(m, W - 1 - m)) if W - 1 > 2 * m else (W - 1) / 2.0
    v = float(rng.uniform(m, H - 1 - m)) if H - 1 > 2 * m else (H - 1) / 2.0
    c_cam = z * np.linalg.solve(K, [u, v, 1.0])
    return make_pose(R, c_cam - R @ c_obj)


def _item(key, T, c_obj, r, obj_id=0) -> _Item:
    return _Item(key, T, transform_points(T, c_obj[None])[0], r, obj_id)


def _sample_layout(rng, cfg: SynthConfig, K, targets: dict, pool: dict) -> list[_Item]:
    """Targets, occluders and free distractors of one image (bounding spheres disjoint)."""
    W, H = cfg.width, cfg.height
    ids = sorted(targets)
    n = int(rng.integers(cfg.objects_per_image[0], cfg.objects_per_image[1] + 1))
    replace = cfg.multi_instance or n > len(ids)
    chosen = [ids[int(i)] for i in rng.choice(len(ids), size=n, replace=replace)]
    items: list[_Item] = []
    for obj_id in chosen:
        c_obj, r = targets[obj_id]
        for _ in range(30):
            T = _place_in_view(rng, K, W, H, c_obj, r, cfg.distance_m, cfg.keep_inside)
            it = _item(f"obj_{obj_id:06d}", T, c_obj, r, obj_id)
            if _free(it.center, r, items):
                items.append(it)
                break
    pool_keys = sorted(pool)
    if not pool_keys:
        return items
    p_occ, _, (off_lo, off_hi) = OCCLUSION_LEVELS[cfg.occlusion]
    f = min(K[0, 0], K[1, 1])
    for tgt in [it for it in items if it.obj_id > 0]:
        if rng.random() >= p_occ:
            continue
        key = pool_keys[int(rng.integers(0, len(pool_keys)))]
        c_obj, r = pool[key]
        z_hi = tgt.center[2] - tgt.radius - r - _GAP
        if z_hi <= _NEAREST:
            continue
        for _ in range(10):
            z = float(rng.uniform(max(_NEAREST, 0.5 * z_hi), z_hi))
            uv_t = K @ tgt.center
            uv_t = uv_t[:2] / uv_t[2]
            rho_t, rho_o = f * tgt.radius / tgt.center[2], f * r / z
            ang = rng.uniform(0, 2 * np.pi)
            d = rng.uniform(off_lo, off_hi) * (rho_t + rho_o)
            uv = uv_t + d * np.array([np.cos(ang), np.sin(ang)])
            c_cam = z * np.linalg.solve(K, [uv[0], uv[1], 1.0])
            R = random_rotation(rng)
            if _free(c_cam, r, items):
                items.append(_item(key, make_pose(R, c_cam - R @ c_obj), c_obj, r))
                break
    n_d = int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))
    for _ in range(n_d):
        key = pool_keys[int(rng.integers(0, len(pool_keys)))]
        c_obj, r = pool[key]
        zr = (cfg.distance_m[0], cfg.distance_m[1] + 0.3)
        for _ in range(20):
            T = _place_in_view(rng, K, W, H, c_obj, r, zr, 0.0)
            it = _item(key, T, c_obj, r)
            if _free(it.center, r, items):
                items.append(it)
                break
    return items


def _background_plane(rng, K, W, H, items: list[_Item], tex_px: int):
    """A tilted textured quad behind every item that covers the whole view.

    Returns (vertices (4, 3) m in camera frame, faces (2, 3), uv (4, 2), texture (h, w, 3))."""
    from coop_ros.synth.procedural import random_background

    tilt = np.radians(rng.uniform(0, 30))
    phi = rng.uniform(0, 2 * np.pi)
    n = np.array([np.sin(tilt) * np.cos(phi), np.sin(tilt) * np.sin(phi), np.cos(tilt)])
    need = [(n @ it.center + it.radius + 0.02) / n[2] for it in items]
    zp = max(need + [0.5]) + float(rng.uniform(0.05, 0.5))
    p0 = np.array([0.0, 0.0, zp])
    corners = np.array([[-0.5, -0.5], [W - 0.5, -0.5], [W - 0.5, H - 0.5], [-0.5, H - 0.5]])
    rays = np.linalg.solve(K, np.concatenate([corners, np.ones((4, 1))], 1).T).T
    hits = rays * ((n @ p0) / (rays @ n))[:, None]
    a = np.cross([0.0, 1.0, 0.0], n)   # texture right ~ image right (+x)
    a /= np.linalg.norm(a)
    b = np.cross(a, n)                  # texture up ~ image up (-y): text reads unmirrored
    pa, pb = (hits - p0) @ a, (hits - p0) @ b
    lo_a, hi_a, lo_b, hi_b = pa.min(), pa.max(), pb.min(), pb.max()
    pad_a, pad_b = 0.05 * (hi_a - lo_a), 0.05 * (hi_b - lo_b)
    lo_a, hi_a, lo_b, hi_b = lo_a - pad_a, hi_a + pad_a, lo_b - pad_b, hi_b + pad_b
    V = np.array([p0 + a * x + b * y for x, y in ((lo_a, lo_b), (hi_a, lo_b), (hi_a, hi_b),
                                                    (lo_a, hi_b))])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    aspect = (hi_b - lo_b) / (hi_a - lo_a)
    tw = tex_px
    th = int(np.clip(round(tex_px * aspect), 64, 2048))
    tex = random_background(th, tw, rng)
    return V, np.array([[0, 1, 2], [0, 2, 3]]), uv, tex


# ==============================================================================================
# one image
# ==============================================================================================
def _projected_box(obj: ObjectModel, T: np.ndarray, K: np.ndarray):
    """(u_min, v_min, u_max, v_max) [px] of the projected corners of ``obj``'s bounding box at
    pose ``T`` (it holds the whole silhouette: a perspective view of a convex set in front of
    the camera lies in the hull of its projected corners); None when a corner is not in front
    of the camera."""
    lo, hi = obj.vertices.min(axis=0), obj.vertices.max(axis=0)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    Xc = transform_points(T, corners)
    if np.any(Xc[:, 2] <= 1e-6):
        return None
    uv, _ = project_camera_points(K, Xc)
    return uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()


def _silhouette_inside(box, W: int, H: int) -> bool:
    """True when the projected box (:func:`_projected_box`) lies inside the image (so the
    image-size render holds the whole silhouette)."""
    return box is not None and bool(box[0] >= 0 and box[2] <= W - 1 and box[1] >= 0
                                    and box[3] <= H - 1)


def _render_image(renderer, rng, cfg: SynthConfig, K, items: list[_Item], models: dict,
                  light):
    """Render one layout and compute its BOP ground truth.

    Returns dict with rgb, depth_png (uint16), masks, masks_visib, infos, targets (list of _Item).
    """
    W, H = cfg.width, cfg.height
    scene_items = [(it.key, it.T) for it in items]
    background = None
    if cfg.background == "plane":
        V, F, uv, tex = _background_plane(rng, K, W, H, items, tex_px=min(2048, 2 * max(W, H)))
        renderer.add_mesh("__plane__", V, F, uv=uv, texture=tex)
        scene_items.append(("__plane__", np.eye(4)))
    else:
        from coop_ros.synth.procedural import random_background
        background = random_background(H, W, rng)
    out = renderer.render_scene(scene_items, K, W, H, light=light, background=background)
    rgb = out.rgb[0].astype(np.float32)
    if cfg.rgb_noise > 0:
        rgb += rng.normal(0.0, cfg.rgb_noise, rgb.shape).astype(np.float32)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    depth = out.depth[0].astype(np.float64)
    valid = depth > 0
    if cfg.depth_noise_m > 0:
        depth = depth + valid * rng.normal(0.0, cfg.depth_noise_m, depth.shape)
    raw = np.round(depth * _MM / cfg.depth_scale)
    raw[~valid | (raw <= 0) | (raw > 65535)] = 0  # out of the uint16 range: no measurement
    depth_png = raw.astype(np.uint16)
    depth_saved_mm = depth_png.astype(np.float64) * cfg.depth_scale

    targets = [it for it in items if it.obj_id > 0]
    masks, visibs, infos = _targets_gt(renderer, cfg, K, [(it.key, it.T, it.obj_id)
                                                           for it in targets], models,
                                       depth_saved_mm, depth_saved_mm)
    return {"rgb": rgb, "depth_png": depth_png, "masks": masks, "masks_visib": visibs,
            "infos": infos, "targets": targets}


def _targets_gt(renderer, cfg: SynthConfig, K, targets, models: dict, depth_vis_mm: np.ndarray,
                depth_saved_mm: np.ndarray):
    """BOP GT of the targets ``[(model key, T_cam_obj, obj_id)]`` of one image.

    ``depth_vis_mm`` (H, W) is the scene depth the visibility test uses (the saved depth in the
    default preset, the clean rendered depth in the realistic one); ``px_count_valid`` always
    counts the mask's pixels with a non-zero ``depth_saved_mm``.
    Returns (masks, masks_visib, infos) lists.
    """
    W, H = cfg.width, cfg.height
    masks, visibs, infos = [], [], []
    # distances from the camera centre (BOP's dist images): the ray factor and the scene's once
    # per image; each target's GT is computed in a window holding its projected bounding box
    # (the same numbers as on the full image, several times faster)
    rx = (np.arange(W) - K[0, 2]) / K[0, 0]
    ry = (np.arange(H) - K[1, 2]) / K[1, 1]
    ray = np.sqrt(rx[None, :] ** 2 + ry[:, None] ** 2 + 1.0)
    dist_vis = np.asarray(depth_vis_mm, dtype=np.float64) * ray
    for key, T, obj_id in targets:
        box = _projected_box(models[obj_id], T, K)
        if box is None:
            x0, y0, x1, y1 = 0, 0, W, H
        else:
            x0, y0 = max(int(np.floor(box[0])) - 2, 0), max(int(np.floor(box[1])) - 2, 0)
            x1, y1 = min(int(np.ceil(box[2])) + 3, W), min(int(np.ceil(box[3])) + 3, H)
        alone = renderer.render_depth(key, T, K, W, H, region=(x0, y0, x1, y1))
        mask = alone > 0
        px_all, bbox = None, None
        if not _silhouette_inside(box, W, H):
            K3 = K.copy()
            K3[0, 2] += W
            K3[1, 2] += H
            big = renderer.render_depth(key, T, K3, 3 * W, 3 * H) > 0
            px_all = int(big.sum())
            ys, xs = big.nonzero()
            bbox = calc_2d_bbox(xs - W, ys - H)
        win = (slice(y0, max(y1, y0)), slice(x0, max(x1, x0)))
        dist_gt = alone[win].astype(np.float64) * _MM * ray[win]
        info, visib_win = gt_info_from_dist(dist_gt, dist_vis[win], cfg.visib_delta_mm, px_all,
                                            bbox, offset=(win[1].start, win[0].start))
        visib = np.zeros((H, W), bool)
        visib[win] = visib_win
        info["px_count_valid"] = int((depth_saved_mm[win][mask[win]] > 0).sum())
        masks.append(mask)
        visibs.append(visib)
        infos.append(info)
    return masks, visibs, infos


def _mesh_pool(cfg: SynthConfig) -> dict:
    """Distractors from a mesh pool: ``cfg.distractor_meshes`` (a glob), else for the realistic
    preset pybullet_data's random shapes when pybullet is installed; {} when there is none."""
    import glob
    import importlib.util

    pattern = cfg.distractor_meshes
    if pattern is None and cfg.preset == "realistic":
        spec = importlib.util.find_spec("pybullet_data")
        if spec is None or not spec.submodule_search_locations:
            return {}
        pattern = str(Path(list(spec.submodule_search_locations)[0]) / "random_urdfs/*/*.obj")
    if not pattern:
        return {}
    from coop_ros.synth.procedural import textured_mesh

    files = sorted(glob.glob(pattern))
    if not files:
        return {}
    rng = np.random.default_rng([cfg.seed, 3])
    pick = sorted(rng.choice(len(files), size=min(cfg.n_distractor_meshes, len(files)),
                             replace=False))
    return {f"__mesh_{k:03d}__": textured_mesh(files[i], rng, size_range=(0.06, 0.16))
            for k, i in enumerate(pick)}


def _realism_meta() -> dict:
    from coop_ros.synth.realistic import APPEARANCE
    from coop_ros.render.sensors import RGB_RANGES, DepthSensor

    return {"rgb_camera_ranges": {k: list(v) if isinstance(v, tuple) else v
                                  for k, v in RGB_RANGES.items()},
            "depth_sensor": DepthSensor().as_dict(),
            "appearance": {k: list(v) if isinstance(v, tuple) else v
                           for k, v in APPEARANCE.items()},
            "gt_visibility": "bop19, delta 15 mm, against the clean rendered scene depth"}


class _RealisticScenes:
    """State of the realistic preset over a dataset: stable poses (once per object); per scene
    folder the targets' scene-appearance copies and one table arrangement; one view per image.
    ``objects_per_image`` and ``distractors`` are drawn per scene (the camera moves, the
    scene does not); an instance outside an image's view is not in that image's GT."""

    def __init__(self, renderer, cfg: SynthConfig, K, models: dict, pool: dict):
        from coop_ros.synth.realistic import stable_poses

        self.renderer, self.cfg, self.K, self.models = renderer, cfg, K, models
        self.stable = {i: stable_poses(o) for i, o in models.items()}
        self.pool = pool
        self.pool_stable = {k: stable_poses(o) for k, o in pool.items()}
        self.scene_id = None
        self.scene = None
        self.records: dict = {}

    def prepare(self, scene_id: int) -> None:
        """Set up scene ``scene_id`` (appearance copies, layout, shadow maps) once."""
        self._scene(scene_id)

    def _scene(self, scene_id: int) -> None:
        from coop_ros.synth.realistic import make_table_scene, scene_appearance

        if self.scene_id == scene_id:
            return
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, 4, scene_id])
        looks = {}
        for obj_id, obj in self.models.items():
            look, params = scene_appearance(obj, rng)
            self.renderer.add_object(f"scene_{obj_id:06d}", look)
            looks[str(obj_id)] = params
        ids = sorted(self.models)
        n = int(rng.integers(cfg.objects_per_image[0], cfg.objects_per_image[1] + 1))
        chosen = [ids[int(i)] for i in rng.choice(len(ids), size=n,
                                                  replace=cfg.multi_instance or n > len(ids))]
        tg = [(f"scene_{i:06d}", self.models[i], self.stable[i], i) for i in chosen]
        keys = sorted(self.pool)
        nd = int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))
        dis = []
        if keys and nd:
            for k in rng.choice(len(keys), size=nd, replace=nd > len(keys)):
                key = keys[int(k)]
                dis.append((key, self.pool[key], self.pool_stable[key], 0))
        self.scene = make_table_scene(self.renderer, rng, tg, dis)
        self.scene_id = scene_id
        if cfg.sequence_fps > 0:      # one RGB camera setting for the whole sequence
            from coop_ros.render.sensors import sample_rgb_camera
            self.cam_rgb = sample_rgb_camera(np.random.default_rng([cfg.seed, 5, scene_id]))
        self.records[scene_id] = {"appearance": looks, "kelvin": self.scene.kelvin,
                                  "lights": [list(lt.position) for lt in self.scene.lights]}

    def image(self, rng, scene_id: int, im_id: int) -> dict:
        from coop_ros.synth.realistic import render_view

        self._scene(scene_id)
        cfg = self.cfg
        if cfg.sequence_fps > 0:
            from coop_ros.synth.realistic import sequence_camera_pose
            T_cw = sequence_camera_pose(np.random.default_rng([cfg.seed, 6, scene_id]),
                                        self.scene.centre, im_id / cfg.sequence_fps)
            out = render_view(self.renderer, self.scene, rng, self.K, cfg.width, cfg.height,
                              cam_rgb=self.cam_rgb, T_cw=T_cw)
        else:
            out = render_view(self.renderer, self.scene, rng, self.K, cfg.width, cfg.height)
        raw = np.round(out["depth_m"] * _MM / cfg.depth_scale)
        raw[(raw <= 0) | (raw > 65535)] = 0
        depth_png = raw.astype(np.uint16)
        saved_mm = depth_png.astype(np.float64) * cfg.depth_scale
        clean_mm = out["depth_clean"].astype(np.float64) * _MM
        targets = [_item(f"obj_{obj_id:06d}", T, *_sphere(self.models[obj_id]), obj_id)
                   for _, T, obj_id in out["placed"] if obj_id > 0]
        masks, visibs, infos = _targets_gt(self.renderer, cfg, self.K,
                                           [(it.key, it.T, it.obj_id) for it in targets],
                                           self.models, clean_mm, saved_mm)
        keep = [g for g, m in enumerate(masks) if m.any()]
        self.records[scene_id][str(im_id)] = {"camera": out["camera"], "depth": out["depth"]}
        return {"rgb": out["rgb"], "depth_png": depth_png,
                "masks": [masks[g] for g in keep], "masks_visib": [visibs[g] for g in keep],
                "infos": [infos[g] for g in keep], "targets": [targets[g] for g in keep],
                "hole_reasons": out["hole_reasons"], "depth_clean": out["depth_clean"],
                "labels": out["labels"], "normal": out["normal"],
                "target_items": [[g for g, p in enumerate(out["placed"]) if p[2] > 0][k]
                                 for k in keep]}


# ==============================================================================================
# the generator
# ==============================================================================================
def generate_dataset(out_dir, objects=None, n_scenes: int = 1, images_per_scene: int = 10,
                     seed: int = 0, width: int = 640, height: int = 480, K=None,
                     objects_per_image=(1, 3), distractors=None, occlusion: str = "mild",
                     depth_noise_m: float = 0.001, device: str = "cpu", progress: bool = True,
                     **options) -> SynthSummary:
    """Render a synthetic BOP-format dataset with exact ground truth (layout: module docstring).

    Args:
        out_dir: dataset root (created; existing files of the same names are overwritten).
        objects: targets: a dict {obj_id: ObjectModel | built-in name}, a list of names /
            ObjectModels (ids 1, 2, ...), a comma-separated string of names, or None (all
            built-in objects: textured_box=1, can=2, mug=3, industrial_part=4).
        n_scenes, images_per_scene: dataset size.
        seed: master seed; the same seed (and arguments) gives byte-identical files.
        width, height: image size [px]; K: (3, 3) intrinsics [px] (default
            :func:`default_intrinsics`; realistic preset: the Kinect v1 K of LM-O, scaled).
        objects_per_image: (min, max) target instances per image.
        distractors: (min, max) free distractors per image (None: (0, 2); realistic: (10, 18)).
        occlusion: "none" | "mild" (default: ~30 % of targets get an occluder, every target keeps
            visib_fract >= 0.5) | "heavy".
        depth_noise_m: std of the Gaussian depth noise [m].
        device: renderer device ("cpu" = llvmpipe, "cuda[:i]").
        progress: show a tqdm progress bar.
        **options: any other :class:`SynthConfig` field (distance_m, background, depth_scale,
            visib_threshold, object_seed, preset, ...).
    Returns:
        :class:`SynthSummary`.
    Raises:
        InputError naming a bad argument.
    """
    from tqdm import tqdm

    from coop_ros.synth.procedural import PROCEDURAL, make_object, random_primitive
    from coop_ros.render.renderer import Light, Renderer

    unknown = set(options) - set(SynthConfig.__dataclass_fields__)
    if unknown:
        raise InputError(f"generate_dataset: unknown option(s) {sorted(unknown)}; known: "
                         f"{sorted(SynthConfig.__dataclass_fields__)}")
    if distractors is None:
        distractors = DEFAULT_DISTRACTORS.get(options.get("preset", "default"), (0, 2))
    cfg = SynthConfig(n_scenes=n_scenes, images_per_scene=images_per_scene, seed=seed,
                      width=width, height=height,
                      K=None if K is None else np.asarray(K, dtype=np.float64).tolist(),
                      objects_per_image=objects_per_image, distractors=distractors,
                      occlusion=occlusion, depth_noise_m=depth_noise_m, **options).validated()
    K = np.asarray(cfg.K, dtype=np.float64)
    W, H = cfg.width, cfg.height
    objs, sources = _resolve_objects(objects, cfg.object_seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = write_models(out_dir / "models", objs)

    # distractor pool: random primitives + the built-in objects that are not targets
    pool_rng = np.random.default_rng([cfg.seed, 1])
    pool_objs = {f"__dis_{k:03d}__": random_primitive(pool_rng, name=f"primitive_{k}")
                 for k in range(cfg.n_distractor_primitives)}
    target_names = {s.split(":", 1)[1] for s in sources.values() if s.startswith("procedural:")}
    for name in PROCEDURAL:
        if name not in target_names:
            pool_objs[f"__dis_{name}__"] = make_object(name, seed=cfg.object_seed + 1000)
    pool_objs.update(_mesh_pool(cfg))
    if cfg.preset == "realistic":
        from coop_ros.synth.procedural import textured_box
        for k in range(3):   # large boxes (8-35 cm sides), like LM-O's vise, lamp, monitor
            dims = tuple(float(x) for x in pool_rng.uniform(0.08, 0.35, 3))
            pool_objs[f"__big_{k}__"] = textured_box(seed=cfg.object_seed + 2000 + k, size=dims,
                                                     name=f"big_box_{k}")

    min_visib = OCCLUSION_LEVELS[cfg.occlusion][1]
    targets_rows: dict[tuple[int, int, int], int] = {}
    all_fract: list[float] = []
    times: list[float] = []
    cpu_times: list[float] = []
    n_images = 0
    bar = tqdm(total=cfg.n_scenes * cfg.images_per_scene, desc="synth", unit="img",
               disable=not progress)
    renderer = Renderer(W, H, device=device)
    try:
        for obj_id, obj in models.items():
            renderer.add_object(f"obj_{obj_id:06d}", obj)
        for key, obj in pool_objs.items():
            renderer.add_object(key, obj)
        realistic = _RealisticScenes(renderer, cfg, K, models, pool_objs) \
            if cfg.preset == "realistic" else None
        target_spheres = {i: _sphere(o) for i, o in models.items()}
        pool_spheres = {k: _sphere(o) for k, o in pool_objs.items()}
        split_dir = out_dir / cfg.split
        for scene_id in range(cfg.n_scenes):
            sdir = split_dir / f"{scene_id:06d}"
            cams, gts, infos = {}, {}, {}
            for im_id in range(cfg.images_per_scene):
                rng = np.random.default_rng([cfg.seed, 2, scene_id, im_id])
                best, best_score = None, -1.0
                if realistic is not None:
                    realistic.prepare(scene_id)          # per-scene set-up, not timed
                t_img, c_img = time.perf_counter(), time.process_time()
                if realistic is not None:
                    best = realistic.image(rng, scene_id, im_id)
                for _ in range(cfg.max_attempts if realistic is None else 0):
                    items = _sample_layout(rng, cfg, K, target_spheres, pool_spheres)
                    light = (Light.random(rng, ambient=(0.25, 0.6), diffuse=(0.3, 0.8),
                                          max_angle_deg=50.0, color_jitter=0.1)
                             if cfg.light_jitter else Light())
                    res = _render_image(renderer, rng, cfg, K, items, models, light)
                    score = min(i["visib_fract"] for i in res["infos"])
                    if score > best_score:
                        best, best_score = res, score
                    if score >= min_visib:
                        break
                write_png(sdir / "rgb" / f"{im_id:06d}.png", best["rgb"])
                write_png(sdir / "depth" / f"{im_id:06d}.png", best["depth_png"])
                for g, (m, mv) in enumerate(zip(best["masks"], best["masks_visib"])):
                    write_png(sdir / "mask" / f"{im_id:06d}_{g:06d}.png", m.astype(np.uint8) * 255)
                    write_png(sdir / "mask_visib" / f"{im_id:06d}_{g:06d}.png",
                               mv.astype(np.uint8) * 255)
                cams[str(im_id)] = {"cam_K": [float(x) for x in K.reshape(-1)],
                                    "depth_scale": cfg.depth_scale}
                gts[str(im_id)] = [{"cam_R_m2c": [float(x) for x in it.T[:3, :3].reshape(-1)],
                                    "cam_t_m2c": [float(x) * _MM for x in it.T[:3, 3]],
                                    "obj_id": int(it.obj_id)} for it in best["targets"]]
                infos[str(im_id)] = best["infos"]
                for it, info in zip(best["targets"], best["infos"]):
                    all_fract.append(info["visib_fract"])
                    if info["visib_fract"] >= cfg.visib_threshold:
                        k = (scene_id, im_id, it.obj_id)
                        targets_rows[k] = targets_rows.get(k, 0) + 1
                n_images += 1
                times.append(time.perf_counter() - t_img)
                cpu_times.append(time.process_time() - c_img)
                bar.update(1)
            if realistic is not None:
                write_bop_json(sdir / "scene_realism.json", realistic.records.pop(scene_id, {}))
            write_bop_json(sdir / "scene_camera.json", cams)
            write_bop_json(sdir / "scene_gt.json", gts)
            write_bop_json(sdir / "scene_gt_info.json", infos)
    finally:
        bar.close()
        renderer.release()

    rows = [{"scene_id": s, "im_id": i, "obj_id": o, "inst_count": n}
            for (s, i, o), n in sorted(targets_rows.items())]
    write_bop_json(out_dir / "test_targets_bop19.json", rows)
    meta = {"generator": GENERATOR, "format_version": _FORMAT_VERSION,
            "config": asdict(cfg), "objects": {str(k): v for k, v in sources.items()},
            "distractor_pool": sorted(o.name for o in pool_objs.values()),
            "min_visib_fract_targets": None if cfg.preset == "realistic" else min_visib,
            **({"realism": _realism_meta()} if cfg.preset == "realistic" else {}),
            "bop_gt": {"visib_mode": "bop19", "delta_mm": cfg.visib_delta_mm,
                       "bbox": "calc_2d_bbox, w = x_max - x_min, bbox_obj not clipped"}}
    write_bop_json(out_dir / "dataset.json", meta)
    return SynthSummary(out_dir=out_dir, obj_ids={k: models[k].name for k in models},
                        n_images=n_images, n_instances=len(all_fract),
                        n_targets=sum(r["inst_count"] for r in rows),
                        visib_fract=np.asarray(all_fract, dtype=np.float64),
                        image_seconds=np.asarray(times, dtype=np.float64),
                        image_cpu_seconds=np.asarray(cpu_times, dtype=np.float64))


# ==============================================================================================
# CLI
# ==============================================================================================
def configure_parser(p: argparse.ArgumentParser) -> None:
    """Arguments of ``coop-ros synth``."""
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--objects", default=None,
                   help="comma-separated built-in objects (textured_box,can,mug,industrial_part);"
                        " default: all of them unless --mesh is given")
    p.add_argument("--mesh", action="append", default=[],
                   help="a target mesh file (.ply/.obj); repeat for several; ids follow the "
                        "built-in objects")
    p.add_argument("--units", default="mm", choices=("mm", "m"), help="units of --mesh files")
    p.add_argument("--models-info", default=None,
                   help="BOP models_info.json giving the symmetries of --mesh files "
                        "(matched by the number at the end of the file name)")
    p.add_argument("--scenes", type=int, default=1, help="number of scene folders")
    p.add_argument("--images", type=int, default=10, help="images per scene")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--object-seed", type=int, default=0, help="seed of built-in objects' textures")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--objects-per-image", type=int, nargs=2, default=(1, 3), metavar=("MIN", "MAX"))
    p.add_argument("--distractors", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="distractors per image (default: 0 2; realistic preset: 6 14 per scene)")
    p.add_argument("--occlusion", default="mild", choices=sorted(OCCLUSION_LEVELS))
    p.add_argument("--depth-noise", type=float, default=0.001, help="depth noise std [m]")
    p.add_argument("--background", default="plane", choices=("plane", "image"))
    p.add_argument("--device", default="cpu", help="renderer device: cpu | cuda | cuda:<i>")
    p.add_argument("--preset", default="default", choices=PRESETS,
                   help="default: the scenes above; realistic: table-top scenes in stable poses, "
                        "shadows, highlights, RGB camera and structured-light depth models, "
                        "appearance mismatch (coop_ros.synth.realistic)")
    p.add_argument("--sequence-fps", type=float, default=0.0,
                   help="realistic preset: each scene one smooth camera sequence at this frame "
                        "rate [Hz] (im_id = frame; for coop-ros eval --estimator coop-track); "
                        "0: independent views")
    p.add_argument("--distractor-meshes", default=None,
                   help="glob of mesh files added to the distractor pool")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``coop-ros synth``."""
    from coop_ros.objects import load_models_info

    objects: list = []
    if args.objects:
        objects += [s.strip() for s in args.objects.split(",") if s.strip()]
    info = load_models_info(args.models_info) if args.models_info else None
    for m in args.mesh:
        objects.append(ObjectModel.load(m, units=args.units, models_info=_info_for(info, m)))
    if not objects:
        objects = None
    s = generate_dataset(args.out, objects, n_scenes=args.scenes, images_per_scene=args.images,
                         seed=args.seed, width=args.width, height=args.height,
                         objects_per_image=tuple(args.objects_per_image),
                         distractors=None if args.distractors is None else
                         tuple(args.distractors), occlusion=args.occlusion,
                         preset=args.preset, distractor_meshes=args.distractor_meshes,
                         depth_noise_m=args.depth_noise, device=args.device,
                         progress=not args.quiet, background=args.background,
                         object_seed=args.object_seed, sequence_fps=args.sequence_fps)
    vf = s.visib_fract
    print(f"wrote {s.out_dir}: {s.n_images} images, {s.n_instances} instances "
          f"(visib_fract mean {vf.mean():.3f}, min {vf.min():.3f}), {s.n_targets} targets; "
          f"objects {s.obj_ids}")
    return 0


def _info_for(info: dict | None, mesh_path: str) -> dict | None:
    if not info:
        return None
    import re

    m = re.search(r"(\d+)$", Path(mesh_path).stem)
    return info.get(int(m.group(1))) if m else None
