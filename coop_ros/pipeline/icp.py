"""Projective point-to-plane ICP of a rendering onto the observed depth, with silhouette terms
(rendered contour <-> observed depth edges): the last geometric step of RGB-D refinement
(:meth:`coop_ros.pipeline.refine.Refiner.rgbd`). Poses (4, 4) T_cam_obj [m]; depth [m] (0 = no
measurement); covariances (6, 6) in the ROS order about the camera axes [m^2, rad^2].

Written here rather than taken from open3d: each step re-renders the model at the current pose
(projective association in the crop that follows the pose), trims pairs by a shrinking depth gate
and adds the image-space silhouette residuals, none of which open3d's registration offers.
"""
from __future__ import annotations

import time

import cv2
import numpy as np

from coop_ros.errors import EstimationError
from coop_ros.geometry.camera import backproject_depth
from coop_ros.geometry.se3 import rotvec_to_matrix
from coop_ros.errors import Reason
from coop_ros.pipeline.views import QueryImage, RenderTarget, render_at, subsample_pixels

__all__ = ["icp_point_to_plane"]


def _normals(P: np.ndarray) -> np.ndarray:
    """Per-pixel normals (S, S, 3) of an organised point map (S, S, 3) (zeros where undefined),
    oriented towards the camera."""
    dx = np.zeros_like(P)
    dy = np.zeros_like(P)
    dx[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dy[1:-1] = P[2:] - P[:-2]
    n = np.cross(dx, dy)
    nn = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(nn > 0, n / np.maximum(nn, 1e-12), 0.0)
    flip = (n * P).sum(-1) > 0
    n[flip] *= -1
    return n


def _smooth_depth_points(z: np.ndarray, K: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Point map of the depth smoothed by a normalised Gaussian (holes ignored, kept as holes):
    for normals only -- central differences of raw depth with ~1 mm noise at sub-millimetre pixel
    spacing tilt the normals at random, and tilted normals pin a flat face's slide."""
    v = (z > 0).astype(np.float32)
    num = cv2.GaussianBlur((z * v).astype(np.float32), (0, 0), sigma)
    den = cv2.GaussianBlur(v, (0, 0), sigma)
    zs = np.where((z > 0) & (den > 1e-3), num / np.maximum(den, 1e-3), 0.0)
    return backproject_depth(zs, K)[0]


def _depth_edges(z: np.ndarray, jump: float) -> np.ndarray:
    """(S, S) bool: valid pixels on the near side of a depth discontinuity (a 4-neighbour with a
    valid depth more than ``jump`` metres farther) -- the observed occluding contours."""
    e = np.zeros(z.shape, bool)
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        za, zb = z[a], z[b]
        ok = (za > 0) & (zb > 0)
        e[a] |= ok & (zb - za > jump)
        e[b] |= ok & (za - zb > jump)
    return e


def _contour_terms(rend, zq: np.ndarray, Kc: np.ndarray, T: np.ndarray, gate: float,
                   jump: float, max_px: float = 6.0, max_points: int = 400
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Silhouette terms of the RGB-D ICP: every rendered contour pixel p (outward normal n) is
    paired with the nearest observed depth edge q (:func:`_depth_edges`) when it lies within
    ``max_px``, runs the same way (|cos| > 0.8) and is at the rendered depth (within ``gate``);
    residual ``(p - q) . n`` and its Jacobian w.r.t. (dt, dw), both scaled by z / f to metres.
    Point-to-plane pairs cannot see a slide of a flat face along itself (the top of a can seen
    from above); the silhouette can. Returns (r (M,), J (M, 6)); empty when nothing pairs."""
    from scipy.ndimage import distance_transform_edt
    m = rend.mask.astype(np.uint8)
    edges = _depth_edges(zq, jump)
    if not edges.any() or not m.any():
        return np.zeros(0), np.zeros((0, 6))
    contour = (m > 0) & (cv2.erode(m, np.ones((3, 3), np.uint8)) == 0)
    contour[[0, -1], :] = False
    contour[:, [0, -1]] = False
    rows, cols = subsample_pixels(contour, max_points)
    if len(rows) < 12:
        return np.zeros(0), np.zeros((0, 6))
    mf = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 1.5)
    g = np.stack([cv2.Sobel(mf, cv2.CV_32F, 1, 0), cv2.Sobel(mf, cv2.CV_32F, 0, 1)], -1)
    n = -g[rows, cols].astype(np.float64)
    nn = np.linalg.norm(n, axis=1)
    zf = cv2.GaussianBlur(np.where(zq > 0, zq, 0).astype(np.float32), (0, 0), 1.5)
    ge = np.stack([cv2.Sobel(zf, cv2.CV_32F, 1, 0), cv2.Sobel(zf, cv2.CV_32F, 0, 1)], -1)
    dist, (qr, qc) = distance_transform_edt(~edges, return_indices=True)
    qr, qc = qr[rows, cols], qc[rows, cols]
    ne = ge[qr, qc].astype(np.float64)
    ne_n = np.linalg.norm(ne, axis=1)
    zr = rend.depth[rows, cols].astype(np.float64)
    ok = (nn > 1e-6) & (ne_n > 1e-9) & (dist[rows, cols] <= max_px) & (zr > 0) \
        & (np.abs(zq[qr, qc] - zr) < gate)
    n = n / np.maximum(nn, 1e-12)[:, None]
    ok &= np.abs((n * ne).sum(1)) > 0.8 * ne_n
    if ok.sum() < 12:
        return np.zeros(0), np.zeros((0, 6))
    rows, cols, qr, qc, n, zr = rows[ok], cols[ok], qr[ok], qc[ok], n[ok], zr[ok]
    r_px = (cols - qc) * n[:, 0] + (rows - qr) * n[:, 1]
    X = np.stack([(cols - Kc[0, 2]) / Kc[0, 0] * zr, (rows - Kc[1, 2]) / Kc[1, 1] * zr, zr], 1)
    # d(u, v) / dX_cam, projected on n: a = n^T P (3,), then J = [a, (X - t) x a]
    a = np.stack([n[:, 0] * Kc[0, 0] / zr, n[:, 1] * Kc[1, 1] / zr,
                  -(n[:, 0] * Kc[0, 0] * X[:, 0] + n[:, 1] * Kc[1, 1] * X[:, 1]) / zr ** 2], 1)
    J = np.concatenate([a, np.cross(X - T[:3, 3], a)], 1)
    to_m = zr / (0.5 * (Kc[0, 0] + Kc[1, 1]))
    return r_px * to_m, J * to_m[:, None]


def icp_point_to_plane(T0: np.ndarray, query: QueryImage, target: RenderTarget,
                       iterations: int = 10, inflation: float = 1.0, contour: bool = True,
                       smooth_normals: bool = True
                       ) -> tuple[np.ndarray, np.ndarray | None, int, list]:
    """Projective point-to-plane ICP of the rendered surface onto the observed depth.

    Each step renders at T in the crop following T, pairs every rendered pixel with the observed
    depth at the same pixel, keeps pairs with ``|z_obs - z_render| < gate`` (gate shrinks from
    10 % to 1.5 % of the diameter), and solves the linearised point-to-plane problem (observed
    normals, Huber weights) for (dt, dw) in the camera frame. Returns (T, covariance (6, 6) of the
    final system or None, number of pairs, step times).

    ``smooth_normals``: observed normals from the depth smoothed with a normalised Gaussian
    (sigma 1.5 px) -- raw central differences of ~1 mm depth noise at sub-millimetre pixel
    spacing tilt them at random, and those tilts hold a flat face where it is.
    ``contour``: adds the silhouette terms of :func:`_contour_terms` (rendered contour pixel <->
    nearest observed depth edge, point-to-line in the image, Huber-weighted on their own scale):
    point-to-plane pairs alone leave a flat face free to slide along itself (a can seen from
    above kept 2-3 mm of in-plane error, enough for the selection to prefer a flipped can).
    """
    T = np.array(T0, dtype=np.float64)
    cov = None
    npairs = 0
    times = []
    D = target.obj.diameter
    for k in range(iterations):
        t0 = time.perf_counter()
        crop, Kc, rend = render_at(query, T, target)
        zq = crop.warp(query.depth.astype(np.float32), "nearest").astype(np.float64)
        Po = backproject_depth(zq, Kc)[0]
        Pr = backproject_depth(rend.depth, Kc)[0]
        No = _normals(_smooth_depth_points(zq, Kc) if smooth_normals else Po)
        frac = k / max(iterations - 1, 1)
        gate = D * (0.10 * (1 - frac) + 0.015 * frac)
        m = rend.mask & (zq > 0) & (np.abs(zq - rend.depth) < gate) \
            & (np.linalg.norm(No, axis=-1) > 0.5)
        if query.mask is not None:
            m &= crop.warp(query.mask.astype(bool), "nearest")
        rows, cols = subsample_pixels(m, 4000)
        npairs = len(rows)
        if npairs < 12:
            if k == 0:
                raise EstimationError(Reason.REGISTRATION_FAILED, f"only {npairs} rendered pixels "
                                      "agree with the observed depth")
            break
        p, o, n = Pr[rows, cols], Po[rows, cols], No[rows, cols]
        qv = p - T[:3, 3]
        r = ((p - o) * n).sum(-1)
        J = np.concatenate([n, np.cross(qv, n)], axis=1)
        s = 1.4826 * np.median(np.abs(r)) + 1e-4
        wgt = np.minimum(1.0, 1.5 * s / np.maximum(np.abs(r), 1e-12))
        if contour:
            rc, Jc = _contour_terms(rend, zq, Kc, T, gate, jump=max(0.01, 0.05 * D))
            if len(rc):
                sc = 1.4826 * np.median(np.abs(rc)) + 1e-4
                r = np.concatenate([r, rc])
                J = np.concatenate([J, Jc])
                wgt = np.concatenate([wgt, np.minimum(1.0, 1.5 * sc / np.maximum(np.abs(rc),
                                                                                  1e-12))])
        H = (J * wgt[:, None]).T @ J
        g = (J * wgt[:, None]).T @ r
        Hd = H + 1e-9 * np.trace(H) * np.eye(6)
        xi = -np.linalg.solve(Hd, g)
        T = T.copy()
        T[:3, :3] = rotvec_to_matrix(xi[3:]) @ T[:3, :3]
        T[:3, 3] = T[:3, 3] + xi[:3]
        sigma2 = float((wgt * r * r).sum() / max(wgt.sum() - 6, 1))
        Hi = np.linalg.inv(Hd)
        cov = 0.5 * (Hi + Hi.T) * sigma2 * inflation
        times.append(time.perf_counter() - t0)
        if np.abs(xi).max() < 1e-5:
            break
    return T, cov, npairs, times
