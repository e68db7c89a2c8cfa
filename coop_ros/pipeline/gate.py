"""The plausibility gate: every pose the pipeline returns is checked against the measurements
before it leaves the package. ``PoseEstimator._estimate_one`` calls :func:`apply_gate` on its
result, so the node, ``coop-ros bag``, ``coop-ros estimate`` and ``coop-ros eval`` all get it.
A pose that fails becomes a failed result, reason ``implausible_pose``, whose detail names the
check and its numbers; it is never reported ``ok``.

Checks, in this order (the first that fails names the result):

1. ``front`` -- the object lies in front of the camera: its nearest point (the convex hull's
   vertices at the pose) at z >= :data:`GateLimits.min_near_m`, its centre no farther than
   :data:`GateLimits.max_range_m` (a mesh in millimetres declared as metres puts the object
   1000x too far, one in metres declared as millimetres 1000x too near).
2. ``box`` (RGB and RGB-D) -- the pose's projected box (hull vertices, clipped to the image)
   against the detection box (clipped alike). The detection box is the *visible* part, so
   occlusion can make the projection larger than the box, never much smaller:
   ``small`` = the larger of the width and height ratios projection / box (< ``box_small``: the
   object is too far or too small for the box -- the message gives the distance at which an
   object of this diameter spans the box), ``large`` = the smaller of the two (> ``box_large``:
   too near), ``cover`` = the share of the detection box inside the projected box grown by
   ``box_grow`` of its size on every side (< ``box_cover``: the pose is beside the detected
   object; the growth keeps a small visible piece at the edge of a silhouette covered when the
   RGB distance is a little off).
3. ``depth`` (RGB-D) -- the pose rendered (the evidence's proxy mesh) in the evidence crop and
   compared with the observed depth in its silhouette (eroded by 1 px, pixels with a
   measurement): a pixel *agrees* within ``max(depth_tol_m, depth_tol_rel x z)``, is *nearer*
   (an occluder, allowed) or *farther* (the camera sees through where the object should be).
   Fails when more than ``depth_farther`` of the unoccluded pixels are farther (the pose floats
   in front of the surface) or when fewer than ``depth_agree`` of them agree (the object is
   nowhere where the depth puts the surface: all hidden behind "occluders" means too far). Fewer than ``depth_min_pixels``
   measured pixels: not judged.

RGB depth along the view ray is genuinely uncertain (5-8 % at 1 m on LM-O, README), so the box
limits are loose: a correct-but-imprecise RGB pose passes, a pose 100x too far or a few mm from
the camera does not. Every limit was set on the real frames of ``../shared/real`` (ground-truth
poses and the pipeline's estimates: ``bench/gate_calibration.py``; margins in the README).

No ROS import. Poses (4, 4) ``T_cam_obj`` [m], K (3, 3) [px], boxes (x, y, w, h) [px].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from coop_ros.errors import Reason

__all__ = ["GateLimits", "GateReport", "DEFAULT_LIMITS", "hull_points", "check_pose",
           "apply_gate"]


@dataclass(frozen=True)
class GateLimits:
    """The gate's limits (module docstring). Calibrated on real frames (README, "Plausibility
    gate"): on every ground-truth pose and every estimate of the real sets the numbers stay
    well inside them."""

    #: nearest point of the object at the pose [m] (in front of the camera)
    min_near_m: float = 0.01
    #: farthest centre [m]: beyond, not a table-top object seen by a robot's camera
    max_range_m: float = 20.0
    #: max(width ratio, height ratio) projection / detection box below this: too far / too small
    box_small: float = 0.4
    #: min(width ratio, height ratio) above this: too near / too large
    box_large: float = 4.5
    #: share of the detection box inside the projected box grown by ``box_grow`` x its size on
    #: every side below this: the pose is beside the detected object
    box_cover: float = 0.5
    box_grow: float = 0.5
    #: depth agreement tolerance: max(depth_tol_m, depth_tol_rel x rendered median z)
    depth_tol_m: float = 0.03
    depth_tol_rel: float = 0.05
    #: share of the silhouette's measured pixels that agree, at least
    depth_agree: float = 0.05
    #: share of the unoccluded measured pixels (agree + farther) that are farther, at most
    depth_farther: float = 0.6
    #: fewer measured silhouette pixels than this: the depth is not judged
    depth_min_pixels: int = 20


DEFAULT_LIMITS = GateLimits()


@dataclass
class GateReport:
    """Outcome of :func:`check_pose`: ``passed``; ``check`` the failed check ("front", "box",
    "depth") or ""; ``detail`` the message with its numbers; ``numbers`` every figure computed
    (``near_m``, ``z_m``, ``small``, ``large``, ``cover``, ``depth_n``, ``agree``, ``nearer``,
    ``farther_of_unoccluded``), for calibration."""

    passed: bool
    check: str = ""
    detail: str = ""
    numbers: dict = field(default_factory=dict)


def hull_points(obj, max_points: int = 4000) -> np.ndarray:
    """(N, 3) float64 points [m] whose projections bound the object's silhouette: the convex
    hull's vertices of ``obj`` (:attr:`~coop_ros.objects.ObjectModel.hull_points`), at most
    ``max_points`` of them (evenly subsampled above)."""
    pts = np.asarray(obj.hull_points, np.float64)   # cached on the model
    if len(pts) > max_points:
        pts = pts[np.linspace(0, len(pts) - 1, max_points).astype(int)]
    return pts


def _clip_box(x0, y0, x1, y1, W, H):
    return (min(max(x0, -0.5), W - 0.5), min(max(y0, -0.5), H - 0.5),
            min(max(x1, -0.5), W - 0.5), min(max(y1, -0.5), H - 0.5))


def check_pose(T, points, K, image_size, box_xywh, diameter: float,
               limits: GateLimits = DEFAULT_LIMITS, depth_view=None) -> GateReport:
    """Check one pose (module docstring).

    Args:
        T: (4, 4) pose ``T_cam_obj`` [m].
        points: (N, 3) object points bounding its silhouette [m] (:func:`hull_points`).
        K: (3, 3) intrinsics of the image [px]; image_size: (W, H) [px].
        box_xywh: (4,) detection box [px] (pixel centres at integers, BOP convention).
        diameter: object diameter [m] (for the message's distance bound).
        depth_view: None (RGB: no depth check) or (rendered mask (S, S) bool, rendered depth
            (S, S) [m], observed depth (S, S) [m], 0 = none) in one crop.
    Returns:
        :class:`GateReport`.
    """
    lim = limits
    T = np.asarray(T, np.float64)
    K = np.asarray(K, np.float64)
    W, H = int(image_size[0]), int(image_size[1])
    num: dict = {}
    if not np.all(np.isfinite(T)):
        return GateReport(False, "front", "pose has non-finite entries", num)
    P = np.asarray(points, np.float64) @ T[:3, :3].T + T[:3, 3]
    near = float(P[:, 2].min())
    zc = float(np.median(P[:, 2]))
    num.update(near_m=near, z_m=zc)
    if zc > lim.max_range_m:
        return GateReport(False, "front", (
            f"the object is {zc:.4g} m from the camera (at most {lim.max_range_m:g} m): mesh in "
            f"millimetres declared as metres (diameter {diameter:.4g} m)?"), num)
    if near < lim.min_near_m:
        why = ("depth scale x0.1, a mesh in metres declared as millimetres, or a box far larger "
               "than the object?")
        return GateReport(False, "front", (
            f"the object is not in front of the camera: its points at z {zc * 1000:.3g} mm "
            f"(median), the nearest at {near * 1000:.3g} mm (at least {lim.min_near_m * 1000:.0f}"
            f" mm in front; diameter {diameter * 1000:.3g} mm): {why}"), num)

    # ---- projected box vs detection box
    uv = P[:, :2] / P[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]
    x, y, w, h = (float(v) for v in np.asarray(box_xywh, np.float64).reshape(-1)[:4])
    d = _clip_box(x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5, W, H)
    p = _clip_box(uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max(), W, H)
    dw, dh = max(d[2] - d[0], 1.0), max(d[3] - d[1], 1.0)
    pw, ph = p[2] - p[0], p[3] - p[1]
    rw, rh = pw / dw, ph / dh
    # cover: against the projection as it is (not clipped: an object cut by the image border
    # keeps covering its visible sliver when its distance is a little off), grown
    q = (uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max())
    gx, gy = lim.box_grow * (q[2] - q[0]), lim.box_grow * (q[3] - q[1])
    iw = max(0.0, min(q[2] + gx, d[2]) - max(q[0] - gx, d[0]))
    ih = max(0.0, min(q[3] + gy, d[3]) - max(q[1] - gy, d[1]))
    cover = iw * ih / (dw * dh)
    small, large = max(rw, rh), min(rw, rh)
    num.update(small=small, large=large, cover=cover)
    f = 0.5 * (K[0, 0] + K[1, 1])
    z_box = f * diameter / max(dw, dh)   # nearest distance at which the object spans the box
    boxes = (f"projected box {pw:.0f}x{ph:.0f} px vs detection box {dw:.0f}x{dh:.0f} px")
    if small < lim.box_small:
        return GateReport(False, "box", (
            f"{boxes} (x{small:.3g} < {lim.box_small:g}): at z {zc:.4g} m the object is too far "
            f"or too small; a {diameter * 1000:.0f} mm object spans the box only within "
            f"{z_box:.3g} m (fx {K[0, 0]:.4g} px)"), num)
    if large > lim.box_large:
        return GateReport(False, "box", (
            f"{boxes} (x{large:.3g} > {lim.box_large:g}): at z {zc:.4g} m the object is too near "
            f"or too large (a {diameter * 1000:.0f} mm object spans the box from about "
            f"{z_box:.3g} m; depth scale x0.1? focal length x0.1?)"), num)
    if cover < lim.box_cover:
        return GateReport(False, "box", (
            f"{boxes}: only {cover:.0%} of the detection box lies inside the projection "
            f"(grown by {lim.box_grow:.0%}; at least {lim.box_cover:.0%}): the pose is beside "
            "the detected object"), num)

    # ---- rendered vs observed depth
    if depth_view is not None:
        m, zr, zo = depth_view
        m = np.asarray(m, bool)
        inner = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        if inner.sum() >= lim.depth_min_pixels:
            m = inner
        zo = np.asarray(zo, np.float64)
        sel = m & (zo > 0) & np.isfinite(zo)
        n = int(sel.sum())
        num["depth_n"] = n
        if n >= lim.depth_min_pixels:
            zrs = np.asarray(zr, np.float64)[sel]
            dz = zo[sel] - zrs
            tol = max(lim.depth_tol_m, lim.depth_tol_rel * float(np.median(zrs)))
            agree = float(np.mean(np.abs(dz) <= tol))
            nearer = float(np.mean(dz < -tol))
            farther = float(np.mean(dz > tol))
            unocc = agree + farther
            far_share = farther / unocc if unocc > 0 else 0.0
            num.update(agree=agree, nearer=nearer, farther_of_unoccluded=far_share,
                       depth_tol_m=tol, depth_median_diff_m=float(np.median(dz)))
            counts = (f"{n} measured pixels of the silhouette: {agree:.0%} agree within "
                      f"{tol * 1000:.0f} mm, {nearer:.0%} nearer (occluders), {farther:.0%} "
                      f"farther; median observed - rendered {np.median(dz) * 1000:+.0f} mm")
            if far_share > lim.depth_farther:
                return GateReport(False, "depth", (
                    f"the camera sees through the object at z {zc:.4g} m: {counts} "
                    f"({far_share:.0%} of the unoccluded pixels farther, at most "
                    f"{lim.depth_farther:.0%})"), num)
            if agree < lim.depth_agree:
                return GateReport(False, "depth", (
                    f"rendered depth at z {zc:.4g} m disagrees with the observed depth: {counts} "
                    f"(at least {lim.depth_agree:.0%} must agree; mesh units? depth scale?)"), num)
    return GateReport(True, "", "", num)


def render_depth_view(T, evidence, renderer, key: str):
    """(mask, rendered depth, observed depth) of pose ``T`` in the evidence crop of
    :class:`~coop_ros.evidence.Evidence` ``evidence`` (which must hold a depth), rendering mesh
    ``key`` of ``renderer``."""
    out = renderer.render(key, np.asarray(T, np.float64)[None], evidence.K,
                          width=evidence.size, height=evidence.size, xyz=False)
    return out.mask[0], out.depth[0], evidence.depth


def apply_gate(result, points, K, image_size, diameter: float, evidence=None, renderer=None,
               key: str | None = None, limits: GateLimits = DEFAULT_LIMITS):
    """The gate on an ok :class:`~coop_ros.pipeline.results.PoseResult`: returns it unchanged
    when its pose passes, else a failed result (``Reason.IMPLAUSIBLE_POSE``, the check's numbers
    in the detail; hypotheses, score, timings kept). The other ok hypotheses get the geometric
    checks (front, box) and are marked failed when they fail, so no implausible alternative is
    published either. ``evidence`` (with a depth), ``renderer`` and ``key``: the depth check
    (RGB-D); without them only the geometric checks run. A result that is not ok is returned
    as it is."""
    import time

    from coop_ros.pipeline.results import STATUS_FAILED, PoseResult
    if not result.ok:
        return result
    t0 = time.perf_counter()
    box = result.box_xywh
    view = None
    if evidence is not None and getattr(evidence, "depth", None) is not None and \
            renderer is not None and key is not None:
        rep = check_pose(result.T_cam_obj, points, K, image_size, box, diameter, limits)
        if rep.passed:
            view = render_depth_view(result.T_cam_obj, evidence, renderer, key)
    rep = check_pose(result.T_cam_obj, points, K, image_size, box, diameter, limits, view)
    for h in result.hypotheses[1:]:
        if h.status != "ok":
            continue
        r = check_pose(h.T, points, K, image_size, box, diameter, limits)
        if not r.passed:
            h.status = STATUS_FAILED
            h.set_reason(Reason.IMPLAUSIBLE_POSE, f"{r.check}: {r.detail}")
    timings = dict(result.timings)
    timings["gate"] = time.perf_counter() - t0
    if "total" in timings:
        timings["total"] += timings["gate"]
    if rep.passed:
        result.timings = timings
        return result
    return PoseResult.failed(result.obj_id, Reason.IMPLAUSIBLE_POSE, f"{rep.check}: {rep.detail}",
                             score=result.score, hypotheses=result.hypotheses, timings=timings,
                             mode=result.mode, box_xywh=box)

