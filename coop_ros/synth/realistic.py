"""The ``realistic`` preset of ``coop-ros synth``: table-top scenes like BOP's real sets, lit and
photographed like a real RGB-D camera would, with an appearance mismatch between the scene's
objects and the meshes handed to the estimator.

A scene folder is one arrangement on a table (:func:`make_table_scene`) seen from
``images_per_scene`` viewpoints (:func:`render_view`), as BOP's real test sets are recorded;
:func:`coop_ros.synth.scenes.generate_dataset` calls both.

1. **Layout** (:func:`sample_tabletop`, magnitudes: :data:`LAYOUT`): a table (a support plane,
   world z = 0, covered with desk clutter: :func:`desk_clutter`), in half of the scenes a
   fiducial marker board under the cluster (:func:`marker_board`, as LINEMOD / LM-O and T-LESS
   were recorded), and a wall behind it; targets and distractors rest on the table in **stable poses**
   (``trimesh.poses.compute_stable_poses``, drawn with their probabilities, random yaw), packed
   around a cluster centre: each object is dropped at a random radius and slid outwards until its
   footprint (convex hull of its vertices on the table, rasterised at 4 mm) is free, so crowded
   objects touch and occlude each other. The camera looks at the cluster from 0.35-1.5 m (mean
   0.95 m, std 0.22 m: LM-O's object distances have 10 / 50 / 90 % quantiles 0.71 / 0.95 /
   1.19 m) at 10-80 deg elevation, any azimuth, roll std 5 deg. Distractors: the generator's pool
   (random primitives, built-in objects, mesh pools such as pybullet_data's when installed;
   10-18 per scene, spread over 1.2 times the targets' radius), among them three printed boxes
   of 8-35 cm sides: the first one larger than 15 cm stands in the middle of the cluster (like
   LM-O's unannotated bench vise), the others around it (its lamp and monitor).
2. **Light**: 2-3 point lights 0.8-2.5 m above the table, colour temperature 3000-6500 K, the
   key and the first fill light casting shadows (shadow maps), Blinn-Phong highlights (per
   object specular 0.05-0.4, exponent 10-80), ambient light 15-40 % of the key light darkened by
   screen-space ambient occlusion in contacts and corners (:mod:`coop_ros.render.lighting`).
3. **Camera** (:func:`coop_ros.render.sensors.apply_rgb_camera`): auto white balance to the
   lights' colour temperature with a residual error, auto-exposure error, vignetting, defocus,
   motion blur, Bayer mosaic + shot / read noise, gamma, JPEG (magnitudes:
   :data:`coop_ros.render.sensors.RGB_RANGES`).
4. **Depth**: the structured-light model (:func:`coop_ros.render.sensors.simulate_depth`,
   Kinect v1 parameters) on the clean rendered depth, with the scene's albedo (dark surfaces) and
   specular coefficients (saturation).
5. **Appearance mismatch** (:func:`scene_appearance`): per scene folder, each target is rendered
   with a changed copy of its colours (magnitudes: :data:`APPEARANCE`), as a scanned mesh differs
   from a photograph; the models written to ``models/`` (given to the estimator) are unchanged.

Ground truth: ``mask`` = the model alone at its pose (as the default preset); ``mask_visib`` and
``visib_fract`` follow BOP's ``bop19`` rule (15 mm) against the **clean rendered** scene depth
(as BOP computes its synthetic PBR sets' GT from rendered depth), so sensor holes and noise do
not make occluders transparent; ``px_count_valid`` counts the mask's pixels with a saved depth.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from coop_ros.geometry.se3 import make_pose
from coop_ros.objects import ObjectModel

__all__ = ["APPEARANCE", "scene_appearance", "stable_poses", "sample_tabletop", "TableScene",
           "make_table_scene", "render_view", "KINECT_K", "color_temperature_rgb", "LAYOUT",
           "marker_board", "desk_clutter"]

#: Kinect v1 RGB intrinsics of LINEMOD / LM-O (BOP lm camera.json), 640 x 480
KINECT_K = [[572.4114, 0.0, 325.2611], [0.0, 573.57043, 242.04899], [0.0, 0.0, 1.0]]

#: appearance mismatch between the scene and the model, per object and scene folder. Calibrated
#: on LM-O dev (``bench/eval_realistic.py --stats``: the photo inside the visible GT silhouette
#: vs the mesh's vertex colours rendered unshaded at the GT pose, instances with visib_fract >=
#: 0.7): |hue shift| 10 / 50 / 90 % at 1.7 / 7.0 / 18 deg on coloured objects, photo saturation
#: 1.09 / 1.17 / 1.27 x the mesh's, photo detail (gradient energy ratio) 1.3 / 2.2 / 4.0 x, photo
#: brightness 0.49 / 0.71 / 0.99 x (with the shading). The scene's shading, camera tone curve and
#: blur also change these ratios, so the draws below are set such that the generated set's
#: statistics land near the real ones (the same command prints both).
APPEARANCE = {
    "hue_std_deg": 11.0,           # hue shift, Gaussian std, clipped at +-20 deg
    "saturation": (1.15, 1.7),     # saturation gain, uniform (shading desaturates again)
    "brightness_log_std": 0.12,    # albedo gain exp(N(0, 0.12)): ~ x0.79-1.27 (95 %)
    "lowfreq_amp": (0.04, 0.12),   # low-frequency albedo variation, relative amplitude
    "lowfreq_wavelength_m": (0.03, 0.08),
    "coarser_prob": 0.25,          # else finer: the scene's texture is blurred / sharpened
    "coarser_smooth_iters": (2, 5),   # neighbour-averaging passes over the vertex colours
    "finer_noise": (0.05, 0.12),   # per-vertex / per-texel albedo noise, relative std
}


def color_temperature_rgb(kelvin: float) -> np.ndarray:
    """(3,) linear RGB of a black body at ``kelvin`` (1000-40000 K), normalised to green = 1.
    Tanner Helland's fit of the CIE 1964 10-degree colour-matching data (an approximation good to
    a few per cent, enough for light colours); applied in linear light."""
    t = float(kelvin) / 100.0
    r = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    g = (99.4708025861 * np.log(t) - 161.1195681661) if t <= 66 else \
        288.1221695283 * (t - 60) ** -0.0755148492
    b = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5177312231 * np.log(t - 10) - 305.0447927307)
    c = np.clip(np.array([r, g, b]) / 255.0, 1e-3, 1.0)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin / lin[1]


# =============================================================================================
# appearance mismatch
# =============================================================================================
def _vertex_smooth(C: np.ndarray, F: np.ndarray, iters: int) -> np.ndarray:
    """Average each vertex colour with its mesh neighbours ``iters`` times (scipy sparse)."""
    from scipy.sparse import coo_matrix

    n = len(C)
    i = np.concatenate([F[:, 0], F[:, 1], F[:, 2], F[:, 1], F[:, 2], F[:, 0], np.arange(n)])
    j = np.concatenate([F[:, 1], F[:, 2], F[:, 0], F[:, 0], F[:, 1], F[:, 2], np.arange(n)])
    A = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr()
    A.data[:] = 1.0
    deg = np.asarray(A.sum(axis=1)).ravel()
    out = C.astype(np.float64)
    for _ in range(iters):
        out = (A @ out) / deg[:, None]
    return out


def _hsv_adjust(rgb: np.ndarray, dh_deg: float, s_gain: float, v_gain: np.ndarray) -> np.ndarray:
    """rgb (..., 3) float in [0, 1] -> hue + dh, saturation x s_gain, value x v_gain."""
    shp = rgb.shape
    img = rgb.reshape(-1, 1, 3).astype(np.float32)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + dh_deg) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * s_gain, 0.0, 1.0)
    hsv[..., 2] = hsv[..., 2] * np.asarray(v_gain, np.float32).reshape(-1, 1)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(out, 0.0, 1.0).reshape(shp)


def _lowfreq(P: np.ndarray, rng, amp: float, wavelength: tuple) -> np.ndarray:
    """1 + amp * (sum of 3 random plane waves over the points P (N, 3) [m]) / 3."""
    out = np.zeros(len(P))
    for _ in range(3):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        lam = rng.uniform(*wavelength)
        out += np.sin(2 * np.pi * (P @ d) / lam + rng.uniform(0, 2 * np.pi))
    return 1.0 + amp * out / 3.0


def scene_appearance(obj: ObjectModel, rng: np.random.Generator) -> tuple[ObjectModel, dict]:
    """A copy of ``obj`` (same geometry) whose colours differ as a photograph differs from a
    scanned / modelled mesh (magnitudes: :data:`APPEARANCE`).

    Returns:
        (ObjectModel, the drawn parameters as a dict).
    """
    A = APPEARANCE
    dh = float(np.clip(rng.normal(0.0, A["hue_std_deg"]), -20.0, 20.0))
    sg = float(rng.uniform(*A["saturation"]))
    vg = float(np.exp(rng.normal(0.0, A["brightness_log_std"])))
    amp = float(rng.uniform(*A["lowfreq_amp"]))
    coarser = bool(rng.random() < A["coarser_prob"])
    iters = int(rng.integers(A["coarser_smooth_iters"][0], A["coarser_smooth_iters"][1] + 1))
    fine = float(rng.uniform(*A["finer_noise"]))
    params = {"hue_deg": dh, "saturation": sg, "brightness": vg, "lowfreq_amp": amp,
              "detail": "coarser" if coarser else "finer"}
    if obj.texture is not None:
        tex = obj.texture.astype(np.float32) / 255.0
        th, tw = tex.shape[:2]
        if coarser:
            f = 2 ** min(iters - 1, 3)
            small = cv2.resize(tex, (max(tw // f, 4), max(th // f, 4)),
                               interpolation=cv2.INTER_AREA)
            tex = cv2.resize(small, (tw, th), interpolation=cv2.INTER_LINEAR)
        else:
            tex = tex * (1.0 + fine * rng.standard_normal((th, tw, 1)).astype(np.float32))
        # low-frequency variation over the object surface: sampled at vertices, splatted in uv
        ys, xs = np.mgrid[0:th, 0:tw].astype(np.float32)
        lf = _lowfreq(np.stack([xs.ravel() / tw * 0.3, ys.ravel() / th * 0.3,
                                np.zeros(xs.size)], 1), rng, amp, A["lowfreq_wavelength_m"])
        tex = _hsv_adjust(np.clip(tex, 0, 1), dh, sg, vg * lf)
        new = dataclasses.replace(obj, texture=np.round(tex * 255).astype(np.uint8))
        return new, params
    C = obj.vertex_colors if obj.vertex_colors is not None else \
        np.full((len(obj.vertices), 3), 0.7, np.float32)
    if coarser:
        C = _vertex_smooth(C, obj.faces, iters)
    else:
        C = C * (1.0 + fine * rng.standard_normal((len(C), 1)))
    lf = _lowfreq(obj.vertices - obj.center, rng, amp, A["lowfreq_wavelength_m"])
    C = _hsv_adjust(np.clip(C, 0, 1), dh, sg, vg * lf)
    return dataclasses.replace(obj, vertex_colors=C.astype(np.float32)), params


# =============================================================================================
# layout
# =============================================================================================
def stable_poses(obj: ObjectModel, max_poses: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Resting poses of ``obj`` on a plane: trimesh's ``compute_stable_poses`` (quasi-static
    drop of the convex hull), each re-placed so the mesh touches z = 0 with its bounding-box
    centre above the origin.

    Returns:
        (transforms (N, 4, 4) T_table_obj [m], probabilities (N,) summing to 1).
    """
    import trimesh

    hull = trimesh.Trimesh(obj.vertices, obj.faces, process=False).convex_hull
    if len(hull.vertices) > 120:
        # the topple graph costs ~ hull faces squared: a hull of 120 of its vertices (seeded)
        pick = np.random.default_rng(0).choice(len(hull.vertices), 120, replace=False)
        hull = trimesh.convex.convex_hull(np.asarray(hull.vertices)[pick])
    Ts, p = trimesh.poses.compute_stable_poses(hull, n_samples=1)
    Ts, p = np.asarray(Ts)[:max_poses], np.asarray(p)[:max_poses]
    if len(Ts) == 0 or p.sum() <= 0:
        Ts, p = np.eye(4)[None], np.ones(1)
    out = []
    for T in Ts:
        V = obj.vertices @ T[:3, :3].T + T[:3, 3]
        lo, hi = V.min(0), V.max(0)
        T = T.copy()
        T[:3, 3] -= [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]
        out.append(T)
    return np.stack(out), p / p.sum()


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


class _Footprints:
    """Occupancy of the table top (4 mm cells over +-0.8 m) by convex footprints."""

    CELL, HALF = 0.004, 0.8

    def __init__(self):
        n = int(2 * self.HALF / self.CELL)
        self.grid = np.zeros((n, n), np.uint8)

    def _poly(self, pts_xy: np.ndarray) -> np.ndarray:
        hull = cv2.convexHull(((pts_xy + self.HALF) / self.CELL).astype(np.float32))
        return np.round(hull).astype(np.int32)

    def free(self, pts_xy: np.ndarray) -> bool:
        canvas = np.zeros_like(self.grid)
        cv2.fillConvexPoly(canvas, self._poly(pts_xy), 1)
        return not bool((canvas & self.grid).any())

    def add(self, pts_xy: np.ndarray) -> None:
        cv2.fillConvexPoly(self.grid, self._poly(pts_xy), 1)


@dataclasses.dataclass
class Placed:
    """An object on the table: renderer key, T_world_obj (4, 4) [m], obj_id (> 0 for targets)."""

    key: str
    T_world: np.ndarray
    obj_id: int = 0


def _hull_xy(obj: ObjectModel, T: np.ndarray) -> np.ndarray:
    V = obj.vertices if len(obj.vertices) <= 4000 else obj.vertices[:: len(obj.vertices) // 4000]
    return (V @ T[:3, :3].T + T[:3, 3])[:, :2]


#: table-top layout: targets are dropped within ``cluster_radius_m`` of the cluster centre,
#: small distractors within ``distractor_reach`` times it, then slid outwards until free.
#: ``board_prob``: share of scenes whose cluster stands on a fiducial marker board (LINEMOD /
#: LM-O and T-LESS were recorded on one, YCB-Video on bare tables), ``board_side_m`` its side.
#: ``table_repeat``: the table's clutter texture repeats this often over its 2.4 m (features of
#: ~3-40 cm: papers, devices, cables on a desk). Calibrated with ``bench/eval_realistic.py
#: --stats`` ("background edge density around targets": LM-O dev 0.13 / 0.18 / 0.24 at
#: 10 / 50 / 90 %; with one big texture and no board the synthetic scenes had 0.02 / 0.05 / 0.09)
LAYOUT = {"cluster_radius_m": 0.11, "distractor_reach": 1.2, "board_prob": 0.5,
          "board_side_m": (0.45, 0.7), "table_repeat": (2, 5)}


def sample_tabletop(rng: np.random.Generator, targets: list, distractors: list,
                    cluster_radius: float | None = None) -> list:
    """Place objects on the table (world z = 0) around the origin.

    Args:
        rng: the only source of randomness.
        targets, distractors: lists of ``(key, ObjectModel, (transforms, probabilities), obj_id)``
            (stable poses from :func:`stable_poses`), targets first in the cluster.
        cluster_radius: radius [m] within which objects are dropped before sliding outwards
            (None: ``LAYOUT["cluster_radius_m"]``; distractors: ``LAYOUT["distractor_reach"]``
            times it; the first object larger than 15 cm: the middle, the others: 1.6-2.8
            times it).
    Returns:
        list of :class:`Placed` (an object that finds no free spot within 0.8 m of its drop
        point is left out).
    """
    if cluster_radius is None:
        cluster_radius = LAYOUT["cluster_radius_m"]
    fp = _Footprints()
    placed = []
    big = [d for d in distractors if d[1].extents.max() > 0.15]
    order = big[:1] + list(targets) + [d for d in distractors if d is not (big[:1] or [None])[0]]
    for n_done, (key, obj, (Ts, p), obj_id) in enumerate(order):
        k = int(rng.choice(len(Ts), p=p))
        R = _rot_z(rng.uniform(0, 2 * np.pi))
        T0 = make_pose(R, np.zeros(3)) @ Ts[k]
        # the first large object (> 15 cm) stands in the middle of the cluster, as LM-O's bench
        # vise, the others around it (lamp, monitor); small distractors spread over
        # LAYOUT["distractor_reach"] times the radius, clutter around the targets
        reach = cluster_radius * (1.0 if obj_id > 0 else LAYOUT["distractor_reach"])
        if obj.extents.max() <= 0.15:
            r0 = reach * np.sqrt(rng.uniform())
        elif n_done == 0:
            r0 = 0.3 * cluster_radius * np.sqrt(rng.uniform())
        else:
            r0 = rng.uniform(1.6, 2.8) * cluster_radius
        phi = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(phi), np.sin(phi)])
        xy0 = _hull_xy(obj, T0)
        for step in range(200):
            c = d * (r0 + step * 0.004)
            if fp.free(xy0 + c):
                T = T0.copy()
                T[:2, 3] += c
                fp.add(xy0 + c)
                placed.append(Placed(key, T, obj_id))
                break
    return placed


def _camera_pose(rng, centre: np.ndarray) -> np.ndarray:
    """T_cam_world looking at ``centre`` from 0.35-1.5 m, 10-80 deg elevation, roll std 5 deg."""
    from coop_ros.render.lighting import look_at

    dist = float(np.clip(rng.normal(0.95, 0.22), 0.35, 1.5))
    el = np.radians(rng.uniform(10.0, 80.0))
    az = rng.uniform(0, 2 * np.pi)
    eye = centre + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    T = look_at(eye, centre, up=[0.0, 0.0, 1.0])
    roll = np.radians(rng.normal(0.0, 5.0))
    Rr = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    return make_pose(Rr, np.zeros(3)) @ T


# =============================================================================================
# a scene (one table arrangement) and its views
# =============================================================================================
@dataclasses.dataclass
class TableScene:
    """One arrangement on the table, fixed for every image of a scene folder (as in BOP's real
    test sets, where the camera moves around a static scene).

    Attributes:
        placed: :class:`Placed` objects (world frame, table top at z = 0).
        centre: (3,) the point cameras look at [m, world].
        lights: :class:`~coop_ros.render.lighting.PointLight` list, world frame.
        shadow_maps: one :class:`~coop_ros.render.lighting.ShadowMap` (or None) per light.
        ambient: (3,) linear ambient irradiance.
        ks, shininess: (n_items,) specular coefficient / exponent per renderer item
            (placed objects, then the table, the wall and the marker board).
        kelvin: colour temperature of the lights [K].
    """

    placed: list
    centre: np.ndarray
    lights: list
    shadow_maps: list
    ambient: np.ndarray
    ks: np.ndarray
    shininess: np.ndarray
    kelvin: float

    def items(self) -> list:
        """Renderer items ``(key, T_world_obj)``: the placed objects, the table, the wall, the
        marker board (below the table, out of sight, in a scene without one)."""
        return [(p.key, p.T_world) for p in self.placed] + [("__table__", np.eye(4)),
                                                            ("__wall__", np.eye(4)),
                                                            ("__board__", np.eye(4))]


def _desaturated_background(h: int, w: int, rng) -> np.ndarray:
    """A procedural clutter texture with office colours: saturation x 0.3-0.8 (desks, papers,
    walls are mostly less saturated than the procedural palette), for the table and the wall."""
    from coop_ros.synth.procedural import random_background

    img = random_background(h, w, rng).astype(np.float32) / 255.0
    return np.round(_hsv_adjust(img, 0.0, float(rng.uniform(0.3, 0.8)),
                                np.ones(h * w, np.float32)) * 255).astype(np.uint8)


def desk_clutter(size: int, rng: np.random.Generator, items: tuple = (100, 200)) -> np.ndarray:
    """(size, size, 3) uint8 table texture: the desaturated procedural background covered with
    ``items`` (min, max) desk things at 3-25 % of the side -- printed white sheets, books and
    pictures (striped, chequered, lettered or plain patches with a dark outline), small dark
    devices, and cables (dark poly-lines) -- the clutter real table-top scenes show around
    their objects."""
    from PIL import Image, ImageDraw

    from coop_ros.synth.procedural import random_texture

    im = Image.fromarray(_desaturated_background(size, size, rng))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(items[0], items[1] + 1))):
        k = rng.random()
        x0, y0 = int(rng.integers(-size // 10, size)), int(rng.integers(-size // 10, size))
        w_, h_ = (int(v) for v in rng.uniform(0.03, 0.25, 2) * size)
        if k < 0.3 and w_ >= 8 and h_ >= 8:         # a printed sheet: dark lines on white
            p = int(rng.integers(205, 250))
            d.rectangle((x0, y0, x0 + w_, y0 + h_), fill=(p, p, p - int(rng.integers(0, 12))))
            lh = max(int(rng.uniform(0.03, 0.08) * h_), 2)
            ink = int(rng.integers(10, 70))
            for yy in range(y0 + 2 * lh, y0 + h_ - 2 * lh, 2 * lh):
                xx = x0 + 2 * lh
                while xx < x0 + w_ - 2 * lh:
                    ln = int(rng.integers(lh, 6 * lh))
                    d.rectangle((xx, yy, min(xx + ln, x0 + w_ - 2 * lh), yy + lh - 1),
                                fill=(ink, ink, ink))
                    xx += ln + lh
        elif k < 0.55 and w_ >= 8 and h_ >= 8:      # a book, a box top, a picture
            patch = random_texture(h_, w_, rng)
            patch = _hsv_adjust(patch.astype(np.float32) / 255.0, 0.0,
                                float(rng.uniform(0.3, 0.9)), np.ones(h_ * w_, np.float32))
            im.paste(Image.fromarray(np.round(patch * 255).astype(np.uint8)), (x0, y0))
            d.rectangle((x0, y0, x0 + w_, y0 + h_), outline=tuple(int(v) for v in
                        rng.integers(10, 60, 3)), width=int(rng.integers(1, 4)))
        elif k < 0.75:                              # a small dark device
            g = int(rng.integers(5, 45))
            box = (x0, y0, x0 + w_ // 3 + 4, y0 + h_ // 3 + 4)
            (d.rectangle if rng.random() < 0.6 else d.ellipse)(
                box, fill=(g, g + int(rng.integers(0, 10)), g + int(rng.integers(0, 15))))
        else:                                       # a cable
            pts = [(x0, y0)]
            for _ in range(int(rng.integers(3, 8))):
                pts.append((pts[-1][0] + int(rng.normal(0, size / 12)),
                            pts[-1][1] + int(rng.normal(0, size / 12))))
            g = int(rng.integers(10, 80))
            d.line(pts, fill=(g, g, g), width=int(rng.integers(2, 7)), joint="curve")
    return np.asarray(im, dtype=np.uint8).copy()


def marker_board(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8 texture of a fiducial marker board like LINEMOD's: off-white paper,
    a ring of 7-9 black square markers per side with a random 4 x 4 bit pattern inside a black
    border (ArUco-style), the middle plain or (30 %) printed with a clutter picture."""
    from coop_ros.synth.procedural import random_background

    paper = float(rng.uniform(200, 240))
    img = np.full((size, size, 3), paper, np.float32) * \
        (1.0 + rng.uniform(-0.03, 0.03, 3)).astype(np.float32)
    n = int(rng.integers(7, 10))
    cell = size / n
    m = int(cell * 0.8)
    if rng.random() < 0.3:
        inner = size - 2 * int(cell) - 8
        if inner > 16:
            o = int(cell) + 4
            img[o:o + inner, o:o + inner] = random_background(inner, inner, rng)
    for i in range(n):
        for j in range(n):
            if 0 < i < n - 1 and 0 < j < n - 1:
                continue
            y0, x0 = int(i * cell + (cell - m) / 2), int(j * cell + (cell - m) / 2)
            bits = rng.random((6, 6)) < 0.5
            bits[0, :] = bits[-1, :] = bits[:, 0] = bits[:, -1] = False   # the black border
            tile = np.kron(bits, np.ones((int(np.ceil(m / 6)),) * 2, bool))[:m, :m]
            img[y0:y0 + m, x0:x0 + m] = np.where(tile[..., None], paper, 15.0)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_table_scene(renderer, rng: np.random.Generator, targets, distractors) -> TableScene:
    """Lay out one table scene, upload its table and wall meshes (``__table__``, ``__wall__``,
    world frame) and render the lights' shadow maps.

    Args:
        renderer: :class:`~coop_ros.render.renderer.Renderer` holding the meshes of the targets
            (scene appearance) and the distractors.
        rng: the only source of randomness.
        targets, distractors: as for :func:`sample_tabletop`.
    """
    from coop_ros.render import lighting as L

    placed = sample_tabletop(rng, targets, distractors)
    centre = np.array([0.0, 0.0, 0.05]) + np.r_[rng.normal(0, 0.03, 2), 0.0]
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    quad = np.array([[0, 1, 2], [0, 2, 3]])
    rep = float(rng.integers(LAYOUT["table_repeat"][0], LAYOUT["table_repeat"][1] + 1))
    renderer.add_mesh("__table__", np.array([[-1.2, -1.2, 0], [1.2, -1.2, 0], [1.2, 1.2, 0],
                                             [-1.2, 1.2, 0.0]]), quad, uv=uv * rep,
                      texture=desk_clutter(1024, rng))
    # the marker board under the cluster (0.5 mm above the table), or none
    if rng.random() < LAYOUT["board_prob"]:
        half = 0.5 * float(rng.uniform(*LAYOUT["board_side_m"]))
        yaw = rng.uniform(0, 2 * np.pi)
        c, s_ = np.cos(yaw), np.sin(yaw)
        sq = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
        xy = sq @ np.array([[c, s_], [-s_, c]]) + centre[:2] + rng.normal(0, 0.03, 2)
        renderer.add_mesh("__board__", np.c_[xy, np.full(4, 5e-4)], quad, uv=uv,
                          texture=marker_board(1024, rng))
    else:
        renderer.add_mesh("__board__", np.array([[0, 0, -1.0], [1e-3, 0, -1.0],
                                                 [0, 1e-3, -1.0]]), np.array([[0, 1, 2]]))
    a = rng.uniform(0, 2 * np.pi)                      # the wall: 1.0-1.6 m from the centre
    back, side = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)]) * 2.5
    wc = back * rng.uniform(1.0, 1.6)
    renderer.add_mesh("__wall__", np.array([[*(wc - side), 0.0], [*(wc + side), 0.0],
                                            [*(wc + side), 2.0], [*(wc - side), 2.0]]), quad,
                      uv=uv, texture=_desaturated_background(512, 1024, rng))
    n_obj = len(placed)
    ks = np.concatenate([rng.uniform(0.05, 0.4, n_obj), [rng.uniform(0.0, 0.1), 0.0, 0.05]])
    shin = np.concatenate([rng.uniform(10, 80, n_obj), [rng.uniform(5, 20), 5.0, 10.0]])
    kelvin = float(rng.uniform(3000, 6500))
    tint = color_temperature_rgb(kelvin)
    lights, maps = [], []
    casters = [(p.key, p.T_world) for p in placed] + [("__table__", np.eye(4))]
    for i in range(int(rng.integers(2, 4))):
        pos = np.r_[centre[:2] + rng.normal(0, 0.7, 2), rng.uniform(0.8, 2.5)]
        d2 = float(((pos - centre) ** 2).sum())
        e = (1.0 if i == 0 else rng.uniform(0.2, 0.6)) * d2      # irradiance at the centre
        lights.append(L.PointLight(tuple(pos), tuple(tint * e * (1 + rng.uniform(-.05, .05, 3))),
                                   shadows=i < 2))
        maps.append(L.ShadowMap(renderer, casters, pos, centre, 0.5) if i < 2 else None)
    return TableScene(placed, centre, lights, maps, tint * rng.uniform(0.15, 0.4), ks, shin,
                      kelvin)


def sequence_camera_pose(rng_scene: np.random.Generator, centre: np.ndarray, t_s: float
                         ) -> np.ndarray:
    """T_cam_world of a smooth hand-held camera path around ``centre`` at time ``t_s`` [s]
    (the path's parameters drawn from ``rng_scene``, so every frame of a scene must be given a
    generator in the same state, e.g. ``np.random.default_rng([seed, scene])``): distance 0.6-
    1.2 m and elevation 25-60 deg, each breathing by +-5 % / +-5 deg over 4-7 s; the camera
    circles the table at 10-20 deg/s (either way); a slow roll of +-3 deg and a hand tremor of
    about 1 mm (three sines). At 30 Hz the views move 0.3-0.7 deg and 5-12 mm per frame."""
    from coop_ros.render.lighting import look_at

    r = rng_scene
    d0, el0 = r.uniform(0.6, 1.2), np.radians(r.uniform(25.0, 60.0))
    az0, w = r.uniform(0, 2 * np.pi), np.radians(r.uniform(10.0, 20.0)) * r.choice([-1.0, 1.0])
    pd, pe, pr = r.uniform(4.0, 7.0, 3)
    ph = r.uniform(0, 2 * np.pi, 6)
    f_tremor = r.uniform(1.5, 4.0, 3)
    dist = d0 * (1 + 0.05 * np.sin(2 * np.pi * t_s / pd + ph[0]))
    el = el0 + np.radians(5.0) * np.sin(2 * np.pi * t_s / pe + ph[1])
    az = az0 + w * t_s
    eye = centre + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    eye = eye + 0.001 * np.sin(2 * np.pi * f_tremor * t_s + ph[3:6])
    T = look_at(eye, centre, up=[0.0, 0.0, 1.0])
    roll = np.radians(3.0) * np.sin(2 * np.pi * t_s / pr + ph[2])
    Rr = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    return make_pose(Rr, np.zeros(3)) @ T


def render_view(renderer, scene: TableScene, rng: np.random.Generator, K, W: int, H: int,
                cam_rgb=None, depth_sensor=None, T_cw: np.ndarray | None = None) -> dict:
    """Photograph and measure ``scene`` from a random viewpoint (:func:`_camera_pose`).

    Args:
        renderer: the renderer that made ``scene``; rng: the only source of randomness.
        K: (3, 3) intrinsics [px]; W, H: image size [px].
        cam_rgb: :class:`~coop_ros.render.sensors.RgbCamera` (default: drawn).
        depth_sensor: :class:`~coop_ros.render.sensors.DepthSensor` (default: Kinect v1).
        T_cw: (4, 4) camera pose T_cam_world (default: drawn, :func:`_camera_pose`).
    Returns:
        dict: ``rgb`` (H, W, 3) uint8, ``depth_m`` (H, W) float64 sensor depth (0 = invalid),
        ``depth_clean`` (H, W) float32 rendered depth, ``hole_reasons`` (H, W) uint8,
        ``labels`` (H, W) int16 item index, ``normal`` (H, W, 3), ``placed`` (list of
        (key, T_cam_obj, obj_id)), ``camera`` / ``depth`` info dicts.
    """
    from coop_ros.render import lighting as L
    from coop_ros.render import sensors as S

    if T_cw is None:
        T_cw = _camera_pose(rng, scene.centre)
    T_wc = np.linalg.inv(T_cw)
    items = [(k, T_cw @ T) for k, T in scene.items()]
    g = renderer.render_gbuffer(items, K, W, H)
    depth = g.depth.astype(np.float64)
    lab = np.where(g.labels >= 0, g.labels, 0)
    ks = np.where(g.labels >= 0, scene.ks[lab], 0.0)
    shin = np.where(g.labels >= 0, scene.shininess[lab], 1.0)
    P = L.points(depth, K)
    Pw = P @ T_wc[:3, :3].T + T_wc[:3, 3]
    Nw = g.normal @ T_wc[:3, :3].T
    lights, vis = [], []
    for light, sm in zip(scene.lights, scene.shadow_maps):
        pos_c = T_cw[:3, :3] @ np.asarray(light.position) + T_cw[:3, 3]
        lights.append(L.PointLight(tuple(pos_c), light.color, light.shadows))
        v = sm.visibility(Pw, Nw) if sm is not None else np.ones((H, W), np.float32)
        v[depth <= 0] = 1.0
        vis.append(v)
    ao = L.ambient_occlusion(depth, K)
    alb = S.srgb_to_linear(g.albedo)
    rad = L.shade(alb, g.normal, depth, K, lights, vis, scene.ambient, ao, ks, shin)
    empty = g.labels < 0
    if empty.any():   # beyond the wall and the table: far, dim clutter
        bg = S.srgb_to_linear(_desaturated_background(H, W, rng).astype(np.float32) / 255.0)
        rad[empty] = (bg * scene.ambient[None, None] * 2.0)[empty]
    # the camera's auto white balance neutralises the lights' colour temperature (its residual
    # error is RgbCamera.wb_gains)
    rad /= color_temperature_rgb(scene.kelvin).astype(np.float32)[None, None]
    cam = cam_rgb or S.sample_rgb_camera(rng)
    rgb = S.apply_rgb_camera(rad, cam, rng)
    # depth sensor: IR reflectance ~ linear albedo luminance (an approximation: many materials
    # reflect near-IR differently), specular coefficient per pixel
    lum = alb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    dz, reasons, dinfo = S.simulate_depth(depth, K, rng, depth_sensor, normals=g.normal,
                                          albedo=lum, specular=ks)
    placed_cam = [(p.key, T_cw @ p.T_world, p.obj_id) for p in scene.placed]
    return {"rgb": rgb, "depth_m": dz, "depth_clean": g.depth, "hole_reasons": reasons,
            "labels": g.labels, "normal": g.normal, "placed": placed_cam,
            "camera": cam.as_dict(), "depth": {**dinfo, "kelvin": scene.kelvin,
                                               "lights": len(scene.lights)}}
