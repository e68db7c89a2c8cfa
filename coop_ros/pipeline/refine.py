"""Refinement stage: render and compare, every step judged on the real image.

Co-op's iteration: a crop that follows the current pose (:mod:`coop_ros.pipeline.views`), a
rendering at the pose in that crop (RGB, depth, mask, object coordinates), the backend's probabilistic flow
rendering -> query (mu, b, certainty, sensitivity), Co-op's confidence
``W = certainty x sensitivity x (1 - exp(-R / b))``, and then

* RGB: 2D-3D correspondences (rendered pixel + mu  <->  its model point) -> weighted
  Levenberg-Marquardt PnP (:func:`coop_ros.geometry.pnp.lm_pnp`, weights ``W / (2 b^2)`` = W times
  the inverse variance of a Laplace(b) error), a final Gauss-Newton step in the last iteration.
* RGB-D: correspondences with certainty >= 0.5 lifted to 3D-3D (model point <-> observed depth at
  the flow target) -> Kabsch inside MAGSAC++ (seeded: same input, same pose); then a projective
  point-to-plane ICP (:mod:`coop_ros.pipeline.icp`) on the observed depth (re-rendered every step, trimmed by a shrinking depth
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

import numpy as np
import torch

from coop_ros.backends.base import Backend
from coop_ros.errors import EstimationError, InputError
from coop_ros.geometry.camera import backproject_pixels, project_unchecked
from coop_ros.geometry.pnp import lm_pnp
from coop_ros.geometry.rigid import kabsch_magsac
from coop_ros.pipeline.icp import icp_point_to_plane
from coop_ros.errors import Reason
from coop_ros.pipeline.search import evidence_search
from coop_ros.pipeline.views import (QueryImage, RenderTarget, pixel_grid, render_and_flow,
                                     subsample_pixels)

__all__ = ["RefineResult", "RefineSettings", "Refiner", "continue_search",
           "evidence_covariance"]


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


def _lm(x2d, X, w, K, T, iterations, gn_final):
    return lm_pnp(torch.from_numpy(x2d)[None], torch.from_numpy(X)[None],
                  torch.from_numpy(np.asarray(w, np.float64))[None], torch.from_numpy(K),
                  torch.from_numpy(np.asarray(T, np.float64))[None], iterations=iterations,
                  gauss_newton_final=gn_final)


def _reproj(T, X, K):
    return project_unchecked(K, X @ T[:3, :3].T + T[:3, 3], min_z=1e-9)


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


#: rotation variance [rad^2] that says "not determined": the evidence is flat along a turn, or a
#: rival pose explains the image as well (PoseResult.ambiguous)
ROTATION_VARIANCE_UNDETERMINED = (np.pi / 2) ** 2


def evidence_covariance(res, diameter: float, inflation: float) -> np.ndarray:
    """(6, 6) diagonal covariance (ROS order, camera frame) from the evidence's second differences
    at the search optimum (Laplace approximation: variance = inflation x step^2 / -curvature),
    capped at (diameter)^2 for translations and (pi / 2)^2 for rotations where the evidence is
    flat along a move."""
    h = np.maximum(res.steps, 1e-9)
    neg = np.maximum(-np.asarray(res.curvature, np.float64), 1e-9)
    var = inflation * h ** 2 / neg
    var[:3] = np.minimum(var[:3], diameter ** 2)
    var[3:] = np.minimum(var[3:], ROTATION_VARIANCE_UNDETERMINED)
    return np.diag(var)


@dataclass(frozen=True)
class RefineSettings:
    """The knobs of one refinement (the estimator fills them from its
    :class:`~coop_ros.pipeline.results.PoseConfig` per mode).

    iterations: flow + LM PnP iterations (RGB) or flow + Kabsch iterations (RGB-D);
    lm_iterations: LM steps per PnP pass (RGB); radius_px: R of Co-op's confidence
    ``1 - exp(-R / b)``; min_correspondences: fewest confident flow pixels a step needs;
    max_points: 2D-3D correspondences kept per RGB step; icp_iterations: point-to-plane ICP steps
    (RGB-D); threshold_frac: MAGSAC++ inlier threshold as a fraction of the diameter (RGB-D);
    seed: MAGSAC++ seed (iteration k uses (seed, k)); inflation: covariance scale.
    """

    iterations: int = 4
    lm_iterations: int = 6
    radius_px: float = 2.0
    min_correspondences: int = 8
    max_points: int = 800
    icp_iterations: int = 10
    threshold_frac: float = 0.03
    seed: int = 0
    inflation: float = 1.0


class Refiner:
    """Render-and-compare refinement of one object, built once per object and settings.

    Args:
        target: :class:`~coop_ros.pipeline.views.RenderTarget` (renderer, mesh key, object model,
            crop side) the flow / ICP steps render.
        backend: the :class:`~coop_ros.backends.base.Backend` whose flow estimator is used.
        settings: :class:`RefineSettings`.
        evidence_key: mesh key the evidence renders (the evidence proxy; default target.key).
    """

    def __init__(self, target: RenderTarget, backend: Backend,
                 settings: RefineSettings = RefineSettings(), evidence_key: str | None = None):
        self.target, self.backend, self.settings = target, backend, settings
        self.evidence_key = evidence_key or target.key

    def rgb(self, T0: np.ndarray, query: QueryImage, evidence=None,
            search: dict | None = None) -> RefineResult:
        """RGB render-and-compare refinement from T0 (4, 4) [m]: Co-op's flow + weighted LM PnP
        iterations, then the evidence search (module docstring).

        With ``evidence`` (a :class:`coop_ros.evidence.Evidence` of the detection) every flow
        iteration's pose is taken only when it raises the evidence; the first one that does not
        ends the flow iterations. ``search`` (keyword arguments of
        :func:`coop_ros.pipeline.search.evidence_search`, or None) then refines the pose on the
        evidence alone; its covariance replaces the LM one. Without evidence every LM step is
        taken (the plain Co-op iteration).

        Raises:
            EstimationError starting with "refinement_failed" / "too_few_correspondences" (only
            when no evidence judges the steps: with evidence a failed flow step just ends the
            flow iterations).
        """
        st, obj = self.settings, self.target.obj
        judge = _Judge(T0, evidence, self.target.renderer, self.evidence_key)
        cov = None
        n_corr = 0
        times = []
        grid = pixel_grid(self.target.size)
        iterations = st.iterations
        for k in range(max(iterations, 0)):
            t0 = time.perf_counter()
            try:
                T_new, cov_new, n_corr = self._flow_lm_step(judge.T, query, grid, k,
                                                            last=k == iterations - 1)
            except EstimationError:
                if evidence is None:
                    raise
                times.append(time.perf_counter() - t0)
                break
            taken = judge.offer(T_new)
            if taken:
                cov = cov_new * st.inflation
            times.append(time.perf_counter() - t0)
            if not taken:
                break
        t0 = time.perf_counter()
        res, cov_s = _search(judge, obj, search, st.inflation)
        if res is not None:
            cov = cov_s
            times.append(time.perf_counter() - t0)
        return RefineResult(T=judge.T, covariance=cov, num_correspondences=n_corr,
                            iteration_times=times, score=judge.score, terms=judge.terms)

    def _flow_lm_step(self, T, query, grid, k, last):
        """One Co-op iteration: render at T, flow rendering -> query, Co-op's confidence, robust
        weighted LM PnP. Returns (T_new, raw covariance (6, 6), correspondences)."""
        st, obj = self.settings, self.target.obj
        Kc, rend, q, ff = render_and_flow(query, T, self.target, self.backend, use_depth=False)
        W = ff.confidence(st.radius_px)
        sel = rend.mask & (W > 0.01)
        rows, cols = subsample_pixels(sel, st.max_points)
        n_corr = len(rows)
        if n_corr < st.min_correspondences:
            raise EstimationError(Reason.TOO_FEW_CORRESPONDENCES, f"{n_corr} confident flow "
                                  f"pixels in refinement iteration {k}")
        x2d = grid[rows, cols] + ff.mu[rows, cols]
        X = rend.xyz[rows, cols].astype(np.float64)
        w = W[rows, cols] / (2.0 * ff.b[rows, cols] ** 2)
        try:
            # robust weighted LM: one pass, Cauchy re-weighting of the reprojection residuals
            # (scale 2 b + 1 px), a second pass; the final pass ends with a Gauss-Newton step
            res = _lm(x2d, X, w, Kc, T, st.lm_iterations, False)
            e = _reproj(res.T[0].numpy(), X, Kc) - x2d
            c = 2.0 * ff.b[rows, cols] + 1.0
            w2 = w / (1.0 + (np.linalg.norm(e, axis=1) / c) ** 2)
            res = _lm(x2d, X, w2, Kc, res.T[0].numpy(), st.lm_iterations, last)
        except (EstimationError, InputError) as e:
            raise EstimationError(Reason.REFINEMENT_FAILED, f"LM PnP: {e}") from None
        T_new = res.T[0].numpy().copy()
        if not np.all(np.isfinite(T_new)) or T_new[2, 3] <= 0:
            raise EstimationError(Reason.REFINEMENT_FAILED, "LM gave an invalid pose")
        # guard against a wild step (a bad flow field): cap the move per iteration
        if np.linalg.norm(T_new[:3, 3] - T[:3, 3]) > 0.5 * obj.diameter + 0.3 * T[2, 3]:
            raise EstimationError(Reason.REFINEMENT_FAILED, "LM step too large")
        return T_new, res.covariance[0].numpy().copy(), n_corr

    def rgbd(self, T0: np.ndarray, query: QueryImage, evidence=None,
             search: dict | None = None) -> RefineResult:
        """RGB-D refinement from T0 (4, 4) [m]: flow -> 3D-3D -> MAGSAC++ Kabsch iterations,
        point-to-plane ICP (:func:`coop_ros.pipeline.icp.icp_point_to_plane`), then the
        evidence search. MAGSAC++ of iteration k is seeded with ``(seed, k)``: the same input
        gives the same pose.

        With ``evidence`` (RGB-D evidence of the detection) each Kabsch pose and the ICP result
        are taken only when they raise the evidence, and when a Kabsch pose was taken ICP also
        runs from T0 (the higher evidence wins); ``search`` as in :meth:`rgb`. The
        covariance is the ICP system's when the ICP result was taken, else the evidence
        search's.

        Raises:
            EstimationError "registration_failed" when no rendered pixel agrees with the
            observed depth at the start of the ICP and no evidence judges the steps.
        """
        st, obj, size = self.settings, self.target.obj, self.target.size
        judge = _Judge(T0, evidence, self.target.renderer, self.evidence_key)
        grid = pixel_grid(size)
        times = []
        n_corr = npairs = 0
        cov = None
        for k in range(st.iterations):
            t0 = time.perf_counter()
            T = judge.T
            try:
                Kc, rend, q, ff = render_and_flow(query, T, self.target, self.backend,
                                                  use_depth=True)
            except EstimationError:
                if evidence is None:
                    raise
                times.append(time.perf_counter() - t0)
                break
            W = ff.confidence(st.radius_px)
            tgt = grid + ff.mu
            tu = np.rint(tgt[..., 0]).astype(int)
            tv = np.rint(tgt[..., 1]).astype(int)
            inside = (tu >= 0) & (tu < size) & (tv >= 0) & (tv < size)
            zq = np.where(inside, q.depth[np.clip(tv, 0, size - 1), np.clip(tu, 0, size - 1)],
                          0.0)
            sel = rend.mask & (ff.certainty >= 0.5) & (zq > 0)
            rows, cols = subsample_pixels(sel, 3000)
            n_corr = len(rows)
            if n_corr >= max(st.min_correspondences, 12):
                src = rend.xyz[rows, cols].astype(np.float64)
                uv = tgt[rows, cols]
                z = zq[rows, cols].astype(np.float64)
                dst = backproject_pixels(Kc, uv, z)
                p = np.clip(W[rows, cols] / max(W[rows, cols].max(), 1e-9), 1e-3, 1.0)
                try:
                    r = kabsch_magsac(src, dst, threshold_m=st.threshold_frac * obj.diameter,
                                      probabilities=p,
                                      min_inliers=max(st.min_correspondences, 12),
                                      seed=(st.seed, k))
                    if r.num_inliers >= 0.2 * n_corr:
                        judge.offer(r.T)
                except (EstimationError, InputError):
                    pass
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        # ICP from the flow / Kabsch result, and also from T0 when those steps moved the pose: a
        # Kabsch step can raise the evidence on the way into a worse basin (real YCB-V gelatin
        # box, GT + 5 deg / 10 mm: ended 8.9 mm off, where ICP from the start reaches 0.4 mm)
        starts = [judge.T] if evidence is None or np.array_equal(judge.T, T0) else [judge.T, T0]
        for Ts in starts:
            try:
                T_icp, cov_icp, n_icp, _ = icp_point_to_plane(Ts, query, self.target,
                                                              st.icp_iterations, st.inflation)
                npairs = max(npairs, n_icp)
                if judge.offer(T_icp):
                    cov = cov_icp
            except EstimationError:
                if evidence is None:
                    raise
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res, cov_s = _search(judge, obj, search, st.inflation)
        if res is not None:
            if cov is None or res.score > res.score0:   # the search moved off the ICP optimum
                cov = cov_s
            times.append(time.perf_counter() - t0)
        return RefineResult(T=judge.T, covariance=cov, num_correspondences=max(n_corr, npairs),
                            iteration_times=times, score=judge.score, terms=judge.terms)
