"""Refinement stage: render and compare, every step judged on the real image.

Co-op's iteration: a crop that follows the current pose (``crop_around_projection``), a rendering
at the pose in that crop (RGB, depth, mask, object coordinates), the backend's probabilistic flow
rendering -> query (mu, b, certainty, sensitivity), Co-op's confidence
``W = certainty x sensitivity x (1 - exp(-R / b))``, and then

* RGB: 2D-3D correspondences (rendered pixel + mu  <->  its model point) -> weighted
  Levenberg-Marquardt PnP (:func:`coop_ros.geometry.pnp.lm_pnp`, weights ``W / (2 b^2)`` = W times
  the inverse variance of a Laplace(b) error), a final Gauss-Newton step in the last iteration.
* RGB-D: correspondences with certainty >= 0.5 lifted to 3D-3D (model point <-> observed depth at
  the flow target) -> Kabsch inside MAGSAC++ (seeded: same input, same pose); then a projective
  point-to-plane ICP on the observed depth (re-rendered every step, trimmed by a shrinking depth
  gate, normals from the lightly smoothed depth) with silhouette terms (rendered contour <->
  observed depth edges) for the slides a flat face cannot see.

Between a shaded, vertex-coloured rendering and a photo of a low-texture object the flow can be
wrong while agreeing with itself, so every proposed pose is judged by the image evidence of the
detection (:mod:`coop_ros.evidence`: region statistics, contour, appearance, depth) and taken only
when it raises it; then the evidence search (:mod:`coop_ros.pipeline.search`) refines the pose
on the evidence alone. A refined pose therefore never has less evidence than its coarse pose.

Covariances are (6, 6) in the ROS order about the camera axes [m^2, rad^2]: the final LM / ICP
system's, or, when the evidence search moved the pose, the evidence's curvature at its optimum
(:func:`evidence_covariance`), multiplied by ``inflation`` (calibrated in the estimator).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from coop_ros.backends.base import Backend, ImageCrop
from coop_ros.errors import EstimationError, InputError
from coop_ros.geometry.camera import crop_around_projection
from coop_ros.geometry.pnp import lm_pnp
from coop_ros.geometry.rigid import kabsch_magsac
from coop_ros.geometry.se3 import rotvec_to_matrix
from coop_ros.pipeline.results import Reason
from coop_ros.pipeline.search import evidence_search

__all__ = ["QueryImage", "RefineResult", "render_view", "refine_rgb", "refine_rgbd",
           "pose_crop"]


@dataclass
class QueryImage:
    """The full query image of one detection.

    rgb: (H, W, 3) uint8. K: (3, 3). depth: (H, W) float metres (0 = none) or None.
    mask: (H, W) bool detection mask or None. box: (4,) BOP (x, y, w, h) or None.
    """

    rgb: np.ndarray
    K: np.ndarray
    depth: np.ndarray | None = None
    mask: np.ndarray | None = None
    box: np.ndarray | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    def view(self, crop, use_depth: bool = True) -> ImageCrop:
        """The query resampled into ``crop`` (colour linear, depth / mask nearest)."""
        rgb = crop.warp(self.rgb, "linear")
        depth = crop.warp(self.depth.astype(np.float32), "nearest") \
            if (use_depth and self.depth is not None) else None
        mask = crop.warp(self.mask.astype(bool), "nearest") if self.mask is not None else None
        box = None
        if self.box is not None:
            x, y, w, h = np.asarray(self.box, float)
            a = crop.image_to_crop(np.array([[x - 0.5, y - 0.5], [x + w - 0.5, y + h - 0.5]]))
            box = np.array([a[0, 0], a[0, 1], a[1, 0], a[1, 1]])
        return ImageCrop(rgb=rgb, K=crop.intrinsics(self.K), depth=depth, mask=mask, box=box)


@dataclass
class RefineResult:
    """T (4, 4) refined pose; covariance (6, 6) or None; num_correspondences of the last step;
    iteration_times: seconds of each iteration (render + flow + solve; the evidence search last);
    score / terms: evidence of T (nan / None without evidence)."""

    T: np.ndarray
    covariance: np.ndarray | None
    num_correspondences: int
    iteration_times: list = field(default_factory=list)
    score: float = float("nan")
    terms: np.ndarray | None = None


def pose_crop(query: QueryImage, T: np.ndarray, obj, size: int, margin: float = 0.1):
    """Crop following the pose: the image of the object's bounding sphere (+ margin)."""
    try:
        return crop_around_projection(query.K, T, obj.diameter, size, margin=margin,
                                      image_size=query.image_size, center_obj=obj.center)
    except InputError as e:
        raise EstimationError(f"{Reason.REFINEMENT_FAILED}: the pose leaves the image ({e})") \
            from None


def render_view(renderer, key: str, T: np.ndarray, K_crop: np.ndarray, size: int) -> ImageCrop:
    """Rendering of object ``key`` at pose T with crop intrinsics, as an :class:`ImageCrop`."""
    out = renderer.render(key, T, K_crop, width=size, height=size)
    return ImageCrop(rgb=out.rgb[0], K=K_crop, depth=out.depth[0], mask=out.mask[0],
                     xyz=out.xyz[0])


def _render_at(query: QueryImage, T: np.ndarray, renderer, key: str, obj, size: int):
    """(crop following T, its intrinsics (3, 3), rendering at T in that crop)."""
    crop = pose_crop(query, T, obj, size)
    Kc = crop.intrinsics(query.K)
    return crop, Kc, render_view(renderer, key, T, Kc, size)


def _render_and_flow(query: QueryImage, T: np.ndarray, renderer, key: str, obj,
                     backend: Backend, size: int, use_depth: bool):
    """One render-and-compare step: render at T, crop the query alike, flow render -> query.
    Returns (K_crop, rendering, query crop, FlowField); EstimationError on an empty rendering."""
    crop, Kc, rend = _render_at(query, T, renderer, key, obj, size)
    if not rend.mask.any():
        raise EstimationError(f"{Reason.REFINEMENT_FAILED}: empty rendering at the pose")
    q = query.view(crop, use_depth=use_depth)
    return Kc, rend, q, backend.flow.flow(rend, q)


def _grid(S: int) -> np.ndarray:
    return np.stack(np.meshgrid(np.arange(S, dtype=np.float64), np.arange(S, dtype=np.float64)),
                    -1)


def _subsample(sel: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (rows, cols) of the True pixels, on a regular stride so at most ~max_points."""
    n = int(sel.sum())
    stride = max(1, int(np.ceil(np.sqrt(n / max_points))))
    sub = np.zeros_like(sel)
    sub[::stride, ::stride] = True
    return np.nonzero(sel & sub)


def _lm(x2d, X, w, K, T, iterations, gn_final):
    return lm_pnp(torch.from_numpy(x2d)[None], torch.from_numpy(X)[None],
                  torch.from_numpy(np.asarray(w, np.float64))[None], torch.from_numpy(K),
                  torch.from_numpy(np.asarray(T, np.float64))[None], iterations=iterations,
                  gauss_newton_final=gn_final)


def _reproj(T, X, K):
    P = X @ T[:3, :3].T + T[:3, 3]
    p = P @ K.T
    return p[:, :2] / np.maximum(p[:, 2:3], 1e-9)


class _Judge:
    """Keeps the best pose seen under the evidence of the detection; ``offer`` renders a proposal
    and takes it only when its evidence is higher (None evidence: every proposal is taken)."""

    def __init__(self, T0, evidence, renderer, key):
        self.evidence, self.renderer, self.key = evidence, renderer, key
        self.T = np.array(T0, dtype=np.float64)
        self.score, self.terms = float("nan"), None
        if evidence is not None:
            s, t = evidence.evaluate(renderer, key, self.T[None])
            self.score, self.terms = float(s[0]), t[0]

    def offer(self, T) -> bool:
        if self.evidence is None:
            self.T = np.array(T, dtype=np.float64)
            return True
        s, t = self.evidence.evaluate(self.renderer, self.key, np.asarray(T)[None])
        if s[0] > self.score:
            self.T, self.score, self.terms = np.array(T, dtype=np.float64), float(s[0]), t[0]
            return True
        return False


def _search(judge: _Judge, obj, search: dict | None, inflation: float):
    """Evidence search from the judge's pose; returns (search result or None, covariance from the
    curvature of the evidence at the optimum or None)."""
    if search is None or judge.evidence is None:
        return None, None
    res = evidence_search(judge.T, judge.evidence, judge.renderer, judge.key, obj.center,
                          start=(judge.score, judge.terms), **search)
    judge.T, judge.score, judge.terms = res.T, res.score, res.terms
    return res, evidence_covariance(res, obj.diameter, inflation)


def continue_search(T: np.ndarray, score: float, terms, evidence, renderer, key: str, obj,
                    levels: int, first_level: int, inflation: float = 1.0) -> RefineResult:
    """The evidence search continued from a pose already searched down to ``first_level``
    (``terms``: its evidence terms, an array in :data:`coop_ros.evidence.TERMS` order or a dict);
    returns the pose, its evidence and the curvature covariance."""
    if isinstance(terms, dict):
        from coop_ros.evidence import TERMS
        terms = np.array([terms[k] for k in TERMS])
    res = evidence_search(T, evidence, renderer, key, obj.center, levels=levels,
                          first_level=first_level, start=(score, terms))
    return RefineResult(T=res.T, covariance=evidence_covariance(res, obj.diameter, inflation),
                        num_correspondences=0, score=res.score, terms=res.terms)


def evidence_covariance(res, diameter: float, inflation: float) -> np.ndarray:
    """(6, 6) diagonal covariance (ROS order, camera frame) from the evidence's second differences
    at the search optimum (Laplace approximation: variance = inflation x step^2 / -curvature),
    capped at (diameter)^2 for translations and (pi / 2)^2 for rotations where the evidence is
    flat along a move."""
    h = np.maximum(res.steps, 1e-9)
    neg = np.maximum(-np.asarray(res.curvature, np.float64), 1e-9)
    var = inflation * h ** 2 / neg
    var[:3] = np.minimum(var[:3], diameter ** 2)
    var[3:] = np.minimum(var[3:], (np.pi / 2) ** 2)
    return np.diag(var)


def refine_rgb(T0: np.ndarray, query: QueryImage, renderer, key: str, obj, backend: Backend,
               size: int = 224, iterations: int = 4, lm_iterations: int = 6,
               radius_px: float = 2.0, min_correspondences: int = 8, max_points: int = 800,
               inflation: float = 1.0, evidence=None, evidence_key: str | None = None,
               search: dict | None = None) -> RefineResult:
    """RGB render-and-compare refinement: Co-op's flow + weighted LM PnP iterations, then the
    evidence search (module docstring).

    With ``evidence`` (a :class:`coop_ros.evidence.Evidence` of the detection, rendered with the
    mesh ``evidence_key``) every flow iteration's pose is taken only when it raises the evidence;
    the first one that does not ends the flow iterations. ``search`` (keyword arguments of
    :func:`coop_ros.pipeline.search.evidence_search`, or None) then refines the pose on the
    evidence alone; its covariance replaces the LM one. Without evidence every LM step is taken
    (the plain Co-op iteration).

    Raises:
        EstimationError starting with "refinement_failed" / "too_few_correspondences" (only when
        no evidence judges the steps: with evidence a failed flow step just ends the flow
        iterations).
    """
    judge = _Judge(T0, evidence, renderer, evidence_key or key)
    cov = None
    n_corr = 0
    times = []
    grid = _grid(size)
    for k in range(max(iterations, 0)):
        t0 = time.perf_counter()
        try:
            T_new, cov_new, n_corr = _flow_lm_step(judge.T, query, renderer, key, obj, backend,
                                                   size, grid, k, lm_iterations, radius_px,
                                                   min_correspondences, max_points,
                                                   last=k == iterations - 1)
        except EstimationError:
            if evidence is None:
                raise
            times.append(time.perf_counter() - t0)
            break
        taken = judge.offer(T_new)
        if taken:
            cov = cov_new * inflation
        times.append(time.perf_counter() - t0)
        if not taken:
            break
    t0 = time.perf_counter()
    res, cov_s = _search(judge, obj, search, inflation)
    if res is not None:
        cov = cov_s
        times.append(time.perf_counter() - t0)
    return RefineResult(T=judge.T, covariance=cov, num_correspondences=n_corr,
                        iteration_times=times, score=judge.score, terms=judge.terms)


def _flow_lm_step(T, query, renderer, key, obj, backend, size, grid, k, lm_iterations,
                  radius_px, min_correspondences, max_points, last):
    """One Co-op iteration: render at T, flow rendering -> query, Co-op's confidence, robust
    weighted LM PnP. Returns (T_new, raw covariance (6, 6), correspondences)."""
    Kc, rend, q, ff = _render_and_flow(query, T, renderer, key, obj, backend, size,
                                       use_depth=False)
    W = ff.confidence(radius_px)
    sel = rend.mask & (W > 0.01)
    rows, cols = _subsample(sel, max_points)
    n_corr = len(rows)
    if n_corr < min_correspondences:
        raise EstimationError(f"{Reason.TOO_FEW_CORRESPONDENCES}: {n_corr} confident flow "
                              f"pixels in refinement iteration {k}")
    x2d = grid[rows, cols] + ff.mu[rows, cols]
    X = rend.xyz[rows, cols].astype(np.float64)
    w = W[rows, cols] / (2.0 * ff.b[rows, cols] ** 2)
    try:
        # robust weighted LM: one pass, Cauchy re-weighting of the reprojection residuals
        # (scale 2 b + 1 px), a second pass; the final pass ends with a Gauss-Newton step
        res = _lm(x2d, X, w, Kc, T, lm_iterations, False)
        e = _reproj(res.T[0].numpy(), X, Kc) - x2d
        c = 2.0 * ff.b[rows, cols] + 1.0
        w2 = w / (1.0 + (np.linalg.norm(e, axis=1) / c) ** 2)
        res = _lm(x2d, X, w2, Kc, res.T[0].numpy(), lm_iterations, last)
    except (EstimationError, InputError) as e:
        raise EstimationError(f"{Reason.REFINEMENT_FAILED}: LM PnP: {e}") from None
    T_new = res.T[0].numpy().copy()
    if not np.all(np.isfinite(T_new)) or T_new[2, 3] <= 0:
        raise EstimationError(f"{Reason.REFINEMENT_FAILED}: LM gave an invalid pose")
    # guard against a wild step (a bad flow field): cap the move per iteration
    if np.linalg.norm(T_new[:3, 3] - T[:3, 3]) > 0.5 * obj.diameter + 0.3 * T[2, 3]:
        raise EstimationError(f"{Reason.REFINEMENT_FAILED}: LM step too large")
    return T_new, res.covariance[0].numpy().copy(), n_corr


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


def _backproject_map(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    S0, S1 = depth.shape
    g = _grid(S1)[:S0]
    z = depth.astype(np.float64)
    return np.stack([(g[..., 0] - K[0, 2]) / K[0, 0] * z, (g[..., 1] - K[1, 2]) / K[1, 1] * z, z],
                    -1)


def _smooth_depth_points(z: np.ndarray, K: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Point map of the depth smoothed by a normalised Gaussian (holes ignored, kept as holes):
    for normals only -- central differences of raw depth with ~1 mm noise at sub-millimetre pixel
    spacing tilt the normals at random, and tilted normals pin a flat face's slide."""
    v = (z > 0).astype(np.float32)
    num = cv2.GaussianBlur((z * v).astype(np.float32), (0, 0), sigma)
    den = cv2.GaussianBlur(v, (0, 0), sigma)
    zs = np.where((z > 0) & (den > 1e-3), num / np.maximum(den, 1e-3), 0.0)
    return _backproject_map(zs, K)


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
    rows, cols = _subsample(contour, max_points)
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


def icp_point_to_plane(T0: np.ndarray, query: QueryImage, renderer, key: str, obj, size: int,
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
    D = obj.diameter
    for k in range(iterations):
        t0 = time.perf_counter()
        crop, Kc, rend = _render_at(query, T, renderer, key, obj, size)
        zq = crop.warp(query.depth.astype(np.float32), "nearest").astype(np.float64)
        Po = _backproject_map(zq, Kc)
        Pr = _backproject_map(rend.depth, Kc)
        No = _normals(_smooth_depth_points(zq, Kc) if smooth_normals else Po)
        frac = k / max(iterations - 1, 1)
        gate = D * (0.10 * (1 - frac) + 0.015 * frac)
        m = rend.mask & (zq > 0) & (np.abs(zq - rend.depth) < gate) \
            & (np.linalg.norm(No, axis=-1) > 0.5)
        if query.mask is not None:
            m &= crop.warp(query.mask.astype(bool), "nearest")
        rows, cols = _subsample(m, 4000)
        npairs = len(rows)
        if npairs < 12:
            if k == 0:
                raise EstimationError(f"{Reason.REGISTRATION_FAILED}: only {npairs} rendered pixels "
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


def refine_rgbd(T0: np.ndarray, query: QueryImage, renderer, key: str, obj, backend: Backend,
                size: int = 224, iterations: int = 2, icp_iterations: int = 10,
                radius_px: float = 2.0, threshold_frac: float = 0.03,
                min_correspondences: int = 8, inflation: float = 1.0, seed: int = 0,
                evidence=None, evidence_key: str | None = None,
                search: dict | None = None) -> RefineResult:
    """RGB-D refinement: flow -> 3D-3D -> MAGSAC++ Kabsch iterations, point-to-plane ICP, then
    the evidence search. MAGSAC++ of iteration k is seeded with ``(seed, k)``: the same input
    gives the same pose.

    With ``evidence`` (RGB-D evidence of the detection, rendered with ``evidence_key``) each
    Kabsch pose and the ICP result are taken only when they raise the evidence; ``search`` as in
    :func:`refine_rgb`. The covariance is the ICP system's when the ICP result was taken, else
    the evidence search's.

    Raises:
        EstimationError "registration_failed" when no rendered pixel agrees with the observed
        depth at the start of the ICP and no evidence judges the steps.
    """
    judge = _Judge(T0, evidence, renderer, evidence_key or key)
    grid = _grid(size)
    times = []
    n_corr = npairs = 0
    cov = None
    for k in range(iterations):
        t0 = time.perf_counter()
        T = judge.T
        try:
            Kc, rend, q, ff = _render_and_flow(query, T, renderer, key, obj, backend, size,
                                               use_depth=True)
        except EstimationError:
            if evidence is None:
                raise
            times.append(time.perf_counter() - t0)
            break
        W = ff.confidence(radius_px)
        tgt = grid + ff.mu
        tu = np.rint(tgt[..., 0]).astype(int)
        tv = np.rint(tgt[..., 1]).astype(int)
        inside = (tu >= 0) & (tu < size) & (tv >= 0) & (tv < size)
        zq = np.where(inside, q.depth[np.clip(tv, 0, size - 1), np.clip(tu, 0, size - 1)], 0.0)
        sel = rend.mask & (ff.certainty >= 0.5) & (zq > 0)
        rows, cols = _subsample(sel, 3000)
        n_corr = len(rows)
        if n_corr >= max(min_correspondences, 12):
            src = rend.xyz[rows, cols].astype(np.float64)
            uv = tgt[rows, cols]
            z = zq[rows, cols].astype(np.float64)
            dst = np.stack([(uv[:, 0] - Kc[0, 2]) / Kc[0, 0] * z,
                            (uv[:, 1] - Kc[1, 2]) / Kc[1, 1] * z, z], 1)
            p = np.clip(W[rows, cols] / max(W[rows, cols].max(), 1e-9), 1e-3, 1.0)
            try:
                r = kabsch_magsac(src, dst, threshold_m=threshold_frac * obj.diameter,
                                  probabilities=p, min_inliers=max(min_correspondences, 12),
                                  seed=(seed, k))
                if r.num_inliers >= 0.2 * n_corr:
                    judge.offer(r.T)
            except (EstimationError, InputError):
                pass
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    try:
        T_icp, cov_icp, npairs, _ = icp_point_to_plane(judge.T, query, renderer, key, obj, size,
                                                       icp_iterations, inflation)
        if judge.offer(T_icp):
            cov = cov_icp
    except EstimationError:
        if evidence is None:
            raise
    times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    res, cov_s = _search(judge, obj, search, inflation)
    if res is not None:
        if cov is None or res.score > res.score0:   # the search moved off the ICP optimum
            cov = cov_s
        times.append(time.perf_counter() - t0)
    return RefineResult(T=judge.T, covariance=cov, num_correspondences=max(n_corr, npairs),
                        iteration_times=times, score=judge.score, terms=judge.terms)
