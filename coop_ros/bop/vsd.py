"""Visible Surface Discrepancy (VSD), as the BOP toolkit computes it for BOP19+ (cost 'step').

Follows ``bop_toolkit_lib.pose_error.vsd`` + ``visibility.estimate_visib_mask_{gt,est}``
(``visib_mode="bop19"``) + ``misc.depth_im_to_dist_im_fast``, in metres instead of millimetres:

1. Render the model's depth at the estimated and at the ground-truth pose.
2. Turn the three depth images (test, estimate, GT) into *distance* images: the distance from the
   camera centre to the 3D point of each pixel, ``|depth * K^-1 (u, v, 1)|`` (pixel centres at
   integers, as the BOP toolkit's ``xs = arange(W)``), 0 where there is no depth.
3. Visibility masks with tolerance ``delta`` (15 mm for all BOP core datasets but ITODD's 5 mm):
   ``visib_gt  = dist_gt > 0 & (dist_gt - dist_test <= delta | dist_test == 0)``;
   ``visib_est = (dist_est > 0 & (dist_est - dist_test <= delta | dist_test == 0))
   | (visib_gt & dist_est > 0)`` -- the estimate is visible where it is in front of (or within
   delta behind) the scene surface, or where the GT object is visible (pixels with no test depth
   count as visible: BOP19 mode).
4. Per pixel of ``visib_gt & visib_est``: ``c = |dist_gt - dist_est| / diameter >= tau``
   ('step' cost, distances normalised by the object diameter: ``taus`` are **fractions of the
   diameter**, BOP19: 0.05, 0.10, ..., 0.50); pixels of the symmetric difference of the two masks
   cost 1. ``e = (sum c + |union - inter|) / |union|``; e = 1 when the union is empty.

Symmetries: VSD is *not* minimised over the symmetry transforms in the BOP toolkit (only MSSD /
MSPD take ``syms``); it compares only the visible surfaces' distance images, which are identical
for poses related by a symmetry of the (shape of the) model, so it is symmetry-invariant by
construction. This module therefore takes no symmetry argument. Checked in the tests: rotating a
cylinder about its axis leaves VSD at 0.

``vsd`` renders with :class:`coop_ros.render.renderer.Renderer` (depth = camera z in metres,
0 = background). All depths / distances here are metres.
"""
from __future__ import annotations

import numpy as np

from coop_ros.errors import InputError
from coop_ros.geometry.camera import backproject_depth, check_intrinsics
from coop_ros.geometry.se3 import check_pose

__all__ = [
    "VSD_TAUS", "VSD_THETAS", "VSD_DELTA", "depth_im_to_dist_im", "estimate_visib_mask_gt",
    "estimate_visib_mask_est", "vsd_from_depths", "vsd", "sphere_projections_overlap",
]

#: misalignment tolerances tau, fractions of the object diameter: 0.05, 0.10, ..., 0.50 (BOP19)
VSD_TAUS = np.arange(1, 11) * 0.05
#: correctness thresholds theta on the VSD error: 0.05, 0.10, ..., 0.50 (BOP19)
VSD_THETAS = np.arange(1, 11) * 0.05
#: visibility tolerance delta [m] (BOP: 15 mm; ITODD 5 mm)
VSD_DELTA = 0.015


def depth_im_to_dist_im(depth, K) -> np.ndarray:
    """Depth image -> distance image (BOP ``depth_im_to_dist_im_fast``).

    Args:
        depth: (H, W) float depth in metres (camera z); 0 / NaN / inf = no measurement.
        K: (3, 3) intrinsics, pixels.
    Returns:
        (H, W) float64 distance from the camera centre to each pixel's 3D point, metres; 0 where
        the depth is missing.
    """
    points, valid = backproject_depth(depth, K)
    dist = np.linalg.norm(points, axis=2)
    dist[~valid] = 0.0
    return dist


def _check_same(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise InputError(f"{na} shape {a.shape} differs from {nb} shape {b.shape}")


def estimate_visib_mask_gt(dist_test, dist_gt, delta: float = VSD_DELTA) -> np.ndarray:
    """Visible part of the GT render (BOP19 mode): (H, W) bool
    ``dist_gt > 0 & (dist_gt - dist_test <= delta | dist_test == 0)``. Distances in metres."""
    dist_test, dist_gt = np.asarray(dist_test), np.asarray(dist_gt)
    _check_same(dist_test, dist_gt, "dist_test", "dist_gt")
    diff = dist_gt.astype(np.float64) - dist_test.astype(np.float64)
    return ((diff <= delta) | (dist_test == 0)) & (dist_gt > 0)


def estimate_visib_mask_est(dist_test, dist_est, visib_gt, delta: float = VSD_DELTA) -> np.ndarray:
    """Visible part of the estimate's render (BOP19 mode): the same test as for the GT, OR-ed
    with ``visib_gt & dist_est > 0`` (Hodan et al. ECCVW'16, eq. 14). (H, W) bool."""
    dist_est = np.asarray(dist_est)
    visib_gt = np.asarray(visib_gt, dtype=bool)
    _check_same(dist_est, visib_gt, "dist_est", "visib_gt")
    visib = estimate_visib_mask_gt(dist_test, dist_est, delta)
    return visib | (visib_gt & (dist_est > 0))


def _check_taus(taus) -> np.ndarray:
    taus = np.asarray(taus, dtype=np.float64).reshape(-1)
    if taus.size == 0 or not np.all(np.isfinite(taus)) or np.any(taus <= 0):
        raise InputError(f"taus must be positive fractions of the diameter, got {taus}")
    return taus


def vsd_from_depths(depth_test, depth_est, depth_gt, K, diameter: float, taus=VSD_TAUS,
                    delta: float = VSD_DELTA, cost_type: str = "step") -> np.ndarray:
    """VSD errors from already rendered depths (the part of :func:`vsd` after rendering).

    Args:
        depth_test: (H, W) float scene depth, metres (0 = missing).
        depth_est, depth_gt: (H, W) float rendered model depth at the estimated / GT pose, metres
            (0 = background).
        K: (3, 3) intrinsics, pixels.
        diameter: object diameter, metres (> 0).
        taus: (T,) misalignment tolerances, fractions of the diameter.
        delta: visibility tolerance, metres.
        cost_type: "step" (BOP since 2017) or "tlinear" (ECCVW'16).
    Returns:
        (T,) float64 errors in [0, 1].
    """
    taus = _check_taus(taus)
    if not (np.isfinite(diameter) and diameter > 0):
        raise InputError(f"diameter must be > 0 metres, got {diameter}")
    if not (np.isfinite(delta) and delta >= 0):
        raise InputError(f"delta must be >= 0 metres, got {delta}")
    K = check_intrinsics(K)
    depth_test = np.asarray(depth_test, dtype=np.float64)
    depth_est = np.asarray(depth_est, dtype=np.float64)
    depth_gt = np.asarray(depth_gt, dtype=np.float64)
    _check_same(depth_test, depth_est, "depth_test", "depth_est")
    _check_same(depth_test, depth_gt, "depth_test", "depth_gt")
    dist_test = depth_im_to_dist_im(depth_test, K)
    dist_gt = depth_im_to_dist_im(depth_gt, K)
    dist_est = depth_im_to_dist_im(depth_est, K)
    visib_gt = estimate_visib_mask_gt(dist_test, dist_gt, delta)
    visib_est = estimate_visib_mask_est(dist_test, dist_est, visib_gt, delta)
    inter = visib_gt & visib_est
    union_count = int((visib_gt | visib_est).sum())
    if union_count == 0:
        return np.ones(len(taus))
    comp_count = union_count - int(inter.sum())
    dists = np.abs(dist_gt[inter] - dist_est[inter]) / diameter
    if cost_type == "step":
        costs = (dists[None, :] >= taus[:, None]).sum(axis=1).astype(np.float64)
    elif cost_type == "tlinear":
        costs = np.minimum(dists[None, :] / taus[:, None], 1.0).sum(axis=1)
    else:
        raise InputError(f"cost_type must be 'step' or 'tlinear', got {cost_type!r}")
    return (costs + comp_count) / float(union_count)


def sphere_projections_overlap(radius: float, t_a, t_b) -> bool:
    """BOP ``misc.overlapping_sphere_projections``: whether the image projections of two spheres
    of ``radius`` [m] centred at the object origins ``t_a``, ``t_b`` (camera frame, metres)
    overlap (approximately). False when a centre is not in front of the camera."""
    t_a = np.asarray(t_a, dtype=np.float64).reshape(3)
    t_b = np.asarray(t_b, dtype=np.float64).reshape(3)
    if t_a[2] <= 0 or t_b[2] <= 0:
        return False
    dist = np.linalg.norm(t_a[:2] / t_a[2] - t_b[:2] / t_b[2])
    return bool(dist < radius * (1.0 / t_a[2] + 1.0 / t_b[2]))


def vsd(depth_test, K, T_est, T_gt, renderer, obj_key: str, diameter: float, taus=VSD_TAUS,
        delta: float = VSD_DELTA, cost_type: str = "step", depth_gt=None,
        skip_if_no_overlap: bool = True) -> np.ndarray:
    """Visible Surface Discrepancy of an estimated pose, BOP19 definition (see module doc).

    Args:
        depth_test: (H, W) float scene depth in metres (0 = missing), the image's depth.
        K: (3, 3) intrinsics of that image, pixels.
        T_est, T_gt: (4, 4) float64 ``T_cam_obj`` poses, metres.
        renderer: a :class:`coop_ros.render.renderer.Renderer` holding the object under ``obj_key``
            (any default size: renders are made at the depth image's size).
        obj_key: renderer key of the object.
        diameter: object diameter in metres (BOP: models_info's).
        taus: (T,) tolerances, fractions of the diameter (default BOP19: 0.05..0.50).
        delta: visibility tolerance in metres (default 0.015).
        cost_type: "step" (BOP) or "tlinear".
        depth_gt: optional (H, W) precomputed GT render depth (reused across estimates).
        skip_if_no_overlap: as BOP's eval_calc_errors, return all-ones without rendering when the
            projections of the spheres of radius diameter / 2 at the two origins do not overlap.
    Returns:
        (T,) float64 VSD errors in [0, 1] (0 = perfect).
    """
    depth_test = np.asarray(depth_test)
    if depth_test.ndim != 2:
        raise InputError(f"depth_test must be (H, W) metres, got shape {depth_test.shape}")
    T_est = check_pose(T_est, "T_est")
    T_gt = check_pose(T_gt, "T_gt")
    taus = _check_taus(taus)
    if skip_if_no_overlap and not sphere_projections_overlap(0.5 * diameter, T_est[:3, 3],
                                                             T_gt[:3, 3]):
        return np.ones(len(taus))
    H, W = depth_test.shape
    if depth_gt is None:
        depth_est, depth_gt = renderer.render(obj_key, np.stack([T_est, T_gt]), K,
                                              width=W, height=H).depth
    else:
        depth_est = renderer.render(obj_key, T_est, K, width=W, height=H).depth[0]
    return vsd_from_depths(depth_test, depth_est, depth_gt, K, diameter, taus, delta, cost_type)
