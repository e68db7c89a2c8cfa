"""3D-3D rigid registration: batched differentiable weighted Kabsch (roma), MAGSAC++ robust
Kabsch (seeded NumPy implementation) and the covariance of a 3D-3D fit -- the RGB-D path of Co-op.

Conventions: metres; a pose ``T`` (4, 4) float64 maps source (object-frame) points to destination
(camera-frame) points, ``dst ~ R @ src + t``. Covariances use the same perturbation model as
:mod:`coop_ros.geometry.pnp`: ``t <- t + dt``, ``R <- exp([dw]x) R`` with
``xi = (dt_x, dt_y, dt_z, dw_x, dw_y, dw_z)`` in the camera (destination) frame, i.e. the ROS
``PoseWithCovariance`` order [m^2, rad^2].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import roma
import torch

from coop_ros.errors import EstimationError, InputError
from coop_ros.geometry.se3 import make_pose

__all__ = ["RigidResult", "weighted_kabsch", "kabsch_magsac", "rigid_covariance"]


def _degenerate_rcond(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


def weighted_kabsch(X: torch.Tensor, Y: torch.Tensor, w: torch.Tensor | None = None,
                    rcond: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched weighted least-squares rigid fit ``Y ~ R X + t`` (Kabsch / Umeyama without scale).

    Minimises ``sum_n w_n ||R X_n + t - Y_n||^2`` with ``roma.rigid_points_registration``
    (weighted centroids + special Procrustes; proper rotations only, det R = +1).
    Differentiable w.r.t. X, Y and w (roma's Procrustes backward).

    Args:
        X: (B, N, 3) float32/float64 source points [m].
        Y: (B, N, 3) destination points [m] (cast to X's dtype).
        w: (B, N) non-negative weights or None (uniform). Only ratios matter.
        rcond: degeneracy threshold on sigma_2 / sigma_1 of the weighted cross-covariance
            (default 1e-10 float64, 1e-5 float32).

    Returns:
        R (B, 3, 3), t (B, 3) [m], in X's dtype.

    Raises:
        InputError: shapes, non-finite values, negative weights.
        EstimationError: fewer than 3 points with non-zero weight, or collinear / coincident
            points (rotation not determined); the message names the batch index.
    """
    if not isinstance(X, torch.Tensor) or not isinstance(Y, torch.Tensor):
        raise InputError("weighted_kabsch takes torch tensors X and Y")
    if X.dtype not in (torch.float32, torch.float64):
        raise InputError(f"X must be float32 or float64, got {X.dtype}")
    if X.ndim != 3 or X.shape[-1] != 3:
        raise InputError(f"X must have shape (B, N, 3), got {tuple(X.shape)}")
    B, N = X.shape[:2]
    Y = Y.to(X.dtype)
    if Y.shape != X.shape:
        raise InputError(f"Y must have the shape of X {tuple(X.shape)}, got {tuple(Y.shape)}")
    if w is None:
        w = torch.ones(B, N, dtype=X.dtype, device=X.device)
    else:
        w = torch.as_tensor(w).to(dtype=X.dtype, device=X.device)
        if w.shape != (B, N):
            raise InputError(f"w must have shape (B, N) = {(B, N)}, got {tuple(w.shape)}")
    for name, v in (("X", X), ("Y", Y), ("w", w)):
        if not torch.isfinite(v).all():
            bad = torch.nonzero(~torch.isfinite(v).reshape(B, -1).all(-1)).flatten().tolist()
            raise InputError(f"{name} contains non-finite values (NaN or inf) at batch index {bad}")
    if (w < 0).any():
        raise InputError("w must be non-negative")
    n_nz = (w.detach() > 0).sum(-1)
    bad = torch.nonzero(n_nz < 3).flatten()
    if bad.numel():
        b = int(bad[0])
        raise EstimationError(f"batch {b}: Kabsch needs at least 3 points with non-zero "
                              f"weight, got {int(n_nz[b])}")
    rcond = _degenerate_rcond(X.dtype) if rcond is None else float(rcond)
    with torch.no_grad():
        wn = w / w.sum(-1, keepdim=True)
        Xc = X - torch.einsum("bn,bni->bi", wn, X)[:, None]
        Yc = Y - torch.einsum("bn,bni->bi", wn, Y)[:, None]
        M = torch.einsum("bn,bni,bnj->bij", wn, Yc, Xc)
        s = torch.linalg.svdvals(M)
        ratio = s[:, 1] / s[:, 0].clamp_min(torch.finfo(X.dtype).tiny)
    bad = torch.nonzero(~(ratio > rcond)).flatten()
    if bad.numel():
        b = int(bad[0])
        raise EstimationError(f"batch {b}: degenerate Kabsch problem, the weighted points are "
                              f"collinear or coincident (sigma2/sigma1 = {float(ratio[b]):.3g})")
    R, t = roma.rigid_points_registration(X, Y, weights=w)
    return R, t


@dataclass
class RigidResult:
    """Result of :func:`kabsch_magsac`.

    T: (4, 4) float64, ``dst ~ T src`` (``T_cam_obj`` when src is object-frame) [m].
    inliers: (N,) bool, ``||dst - T src|| < threshold_m`` at the returned T.
    num_inliers: int.
    rmse_m: float, RMS of the inlier residual norms [m].
    """

    T: np.ndarray
    inliers: np.ndarray
    num_inliers: int
    rmse_m: float


def _kabsch_np(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> np.ndarray:
    R, t = weighted_kabsch(torch.from_numpy(src)[None], torch.from_numpy(dst)[None],
                           torch.from_numpy(w)[None])
    return make_pose(R[0].numpy(), t[0].numpy())


def _check_pairs(src, dst, min_n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3:
        raise InputError(f"src must have shape (N, 3), got {src.shape}")
    if dst.shape != src.shape:
        raise InputError(f"dst must have the shape of src {src.shape}, got {dst.shape}")
    if src.shape[0] < min_n:
        raise InputError(f"{what} needs at least {min_n} correspondences, got {src.shape[0]}")
    if not np.all(np.isfinite(src)):
        raise InputError("src contains non-finite values (NaN or inf)")
    if not np.all(np.isfinite(dst)):
        raise InputError("dst contains non-finite values (NaN or inf)")
    return src, dst


#: MAGSAC++ constants for a 3-D residual (the norm of an isotropic Gaussian 3-vector is chi with 3
#: degrees of freedom): k = sqrt(chi2_3.ppf(0.99)) turns the maximum threshold into sigma_max
_MAGSAC_K = 3.3682141752187276
_MAGSAC_EXP_K = float(np.exp(-_MAGSAC_K ** 2 / 2.0))


def _magsac_weights_losses(r: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """MAGSAC++ IRLS weights and losses of residual norms ``r`` [m] for a maximum threshold.

    With ``sigma_max = threshold / k`` and ``u = r^2 / (2 sigma_max^2)`` (3 degrees of freedom, so
    the incomplete gamma functions of MAGSAC++ have closed forms): weight
    ``exp(-u) - exp(-k^2/2)``, loss ``sigma_max^2 (1 - exp(-u) - u exp(-k^2/2))`` for
    ``r < threshold``; weight 0 and the constant outlier loss (the loss at ``r = threshold``)
    beyond. The loss is the integral of ``r * weight``, as in Barath et al., CVPR 2020."""
    s2 = (threshold / _MAGSAC_K) ** 2
    u = np.minimum(r * r / (2.0 * s2), _MAGSAC_K ** 2 / 2.0)
    e = np.exp(-u)
    w = np.where(r < threshold, e - _MAGSAC_EXP_K, 0.0)
    loss = s2 * (1.0 - e - u * _MAGSAC_EXP_K)
    return w, loss


def _kabsch_batch(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched weighted Kabsch in NumPy float64 (proper rotations): src/dst (B, M, 3) or shared
    (M, 3), w (B, M) or None (uniform; then src/dst must be batched) -> (R (B, 3, 3), t (B, 3),
    sigma2 / sigma1 of the weighted cross-covariance (B,): ~0 = collinear / degenerate)."""
    if w is None:
        w = np.ones(src.shape[:2])
    ws = w.sum(1)
    wn = w / np.where(ws > 0, ws, 1.0)[:, None]
    wn3 = wn[..., None]
    if src.ndim == 2:            # shared points, per-model weights: BLAS products
        cs, cd = wn @ src, wn @ dst
        H = np.swapaxes(wn3 * dst[None], 1, 2) @ src
    else:
        cs, cd = (wn3 * src).sum(1), (wn3 * dst).sum(1)
        H = np.swapaxes(wn3 * dst, 1, 2) @ src
    H = H - cd[:, :, None] * cs[:, None, :]
    U, S, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(U @ Vt))
    d[d == 0] = 1.0
    U[:, :, 2] *= d[:, None]
    R = U @ Vt
    t = cd - np.einsum("bij,bj->bi", R, cs)
    ratio = S[:, 1] / np.maximum(S[:, 0], np.finfo(np.float64).tiny)
    return R, t, np.where(ws > 0, ratio, 0.0)


def _residuals(src: np.ndarray, dst: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(B, N) residual norms ``|dst - (R src + t)|`` of B models (shared src / dst (N, 3))."""
    d = (R @ src.T) + (t[:, :, None] - dst.T[None])
    return np.sqrt(np.einsum("bin,bin->bn", d, d))


def _magsac_pp(src: np.ndarray, dst: np.ndarray, threshold: float, confidence: float,
               min_iterations: int, iterations: int, seed, batch: int = 32
               ) -> tuple[np.ndarray | None, np.ndarray]:
    """MAGSAC++ for a rigid transform (uniform sampling of 3-point samples from a seeded
    ``numpy.random.Generator``; every minimal model polished by one sigma-consensus++ IRLS step,
    i.e. Kabsch weighted by the MAGSAC++ weights; the model of least total MAGSAC++ loss wins;
    RANSAC termination on the inlier ratio ``|r| < threshold`` at ``confidence``). Samples are
    drawn and evaluated ``batch`` at a time, so the iteration count is a multiple of ``batch``
    (deterministic for a seed). Returns (T (4, 4) or None, inlier mask (N,))."""
    n = src.shape[0]
    rng = np.random.default_rng(seed)
    best_T, best_loss, best_r = None, np.inf, None
    needed = max(int(iterations), int(min_iterations))
    done = 0
    log1mc = np.log(1.0 - confidence)
    while done < max(int(min_iterations), min(needed, int(iterations))):
        # B distinct-index triples: i < n, j in the other n - 1, k in the other n - 2
        i = rng.integers(0, n, batch)
        j = rng.integers(0, n - 1, batch)
        j = j + (j >= i)
        k = rng.integers(0, n - 2, batch)
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        k = k + (k >= lo)
        k = k + (k >= hi)
        idx = np.stack([i, j, k], 1)
        done += batch
        R, t, ratio = _kabsch_batch(src[idx], dst[idx])
        ok = ratio > 1e-6
        if not ok.any():
            continue
        R, t = R[ok], t[ok]
        # sigma-consensus++: one IRLS step on all points with the MAGSAC++ weights
        w, _ = _magsac_weights_losses(_residuals(src, dst, R, t), threshold)
        ok = (w > 0).sum(1) >= 3
        if not ok.any():
            continue
        wk = w[ok]
        R, t, ratio = _kabsch_batch(src, dst, wk)
        ok = ratio > 1e-10
        if not ok.any():
            continue
        R, t = R[ok], t[ok]
        r = _residuals(src, dst, R, t)
        loss = _magsac_weights_losses(r, threshold)[1].sum(1)
        b = int(np.argmin(loss))
        if loss[b] < best_loss:
            best_loss, best_r = float(loss[b]), r[b]
            best_T = make_pose(R[b], t[b])
            frac = float((best_r < threshold).mean())
            if frac >= 1.0:
                needed = 0
            elif frac > 0:
                needed = min(needed, int(np.ceil(log1mc / np.log(1.0 - frac ** 3))))
    if best_T is None:
        return None, np.zeros(n, bool)
    return best_T, best_r < threshold


def kabsch_magsac(src, dst, threshold_m: float = 0.005, probabilities=None,
                  iterations: int = 1000, confidence: float = 0.999, min_iterations: int = 50,
                  min_inliers: int = 3, seed: int = 0) -> RigidResult:
    """Robust rigid fit ``dst ~ T src`` with MAGSAC++, then weighted Kabsch on inliers.

    MAGSAC++ (Barath et al., CVPR 2020) with a uniform sampler and ``threshold_m`` as its maximum
    threshold (``sigma_max = threshold_m / 3.37``, the chi-3 0.99 quantile), implemented in NumPy
    with a ``numpy.random.Generator`` seeded by ``seed``: the same input and seed give the same
    result in every process (pymagsac's C++ sampler seeds itself from ``std::random_device`` and
    cannot be seeded, so it gave a different pose on every run). The pose is then re-estimated
    by :func:`weighted_kabsch` on MAGSAC's inliers (weights = ``probabilities`` when given, else
    1), the inlier set is recomputed as ``||dst - T src|| < threshold_m`` and, if it changed, the
    Kabsch fit is repeated once on it.

    Args:
        src: (N, 3) float object-frame points [m].
        dst: (N, 3) float camera-frame points [m] (e.g. back-projected depth).
        threshold_m: inlier threshold / MAGSAC++ maximum threshold [m] (> 0).
        probabilities: (N,) in [0, 1] correspondence confidences (final Kabsch weights), or None.
        iterations: maximum MAGSAC++ iterations; min_iterations: minimum (both rounded up to
            the batch of 32 samples).
        confidence: RANSAC confidence in (0, 1).
        min_inliers: fewer final inliers raise :class:`EstimationError` (at least 3).
        seed: seed of the sampler (int, or anything ``numpy.random.default_rng`` takes).

    Returns:
        :class:`RigidResult`.

    Raises:
        InputError: shapes, fewer than 3 correspondences, non-finite values, bad parameters.
        EstimationError: MAGSAC++ found no model, too few inliers, degenerate inlier set.
    """
    src, dst = _check_pairs(src, dst, 3, "rigid registration")
    n = src.shape[0]
    if not (np.isfinite(threshold_m) and threshold_m > 0):
        raise InputError(f"threshold_m must be a positive distance in metres, got {threshold_m}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie in (0, 1), got {confidence}")
    if iterations < 1 or min_iterations < 0:
        raise InputError(f"iterations must be >= 1 and min_iterations >= 0, got "
                         f"{iterations}, {min_iterations}")
    if probabilities is None:
        prob = np.ones(n)
    else:
        prob = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        if prob.shape != (n,):
            raise InputError(f"probabilities must have shape ({n},), got {prob.shape}")
        if not np.all(np.isfinite(prob)) or prob.min() < 0 or prob.max() > 1:
            raise InputError("probabilities must be finite and lie in [0, 1]")
    min_inliers = max(int(min_inliers), 3)

    T, mask = _magsac_pp(src, dst, float(threshold_m), float(confidence), int(min_iterations),
                         int(iterations), seed)
    if T is None or mask.sum() < 3:
        _kabsch_np(src, dst, prob)   # raises "collinear" when the whole set is degenerate
        raise EstimationError(f"MAGSAC++ rigid registration found no model "
                              f"({int(mask.sum())} inliers of {n})")
    inl = mask
    if inl.sum() < min_inliers:
        raise EstimationError(f"too few rigid inliers: {int(inl.sum())} < min_inliers={min_inliers}")
    for _ in range(2):
        wk = prob[inl]
        if (wk > 0).sum() < 3:
            raise EstimationError("fewer than 3 rigid inliers with non-zero probability")
        T = _kabsch_np(src[inl], dst[inl], wk)
        res = np.linalg.norm(dst - (src @ T[:3, :3].T + T[:3, 3]), axis=1)
        new_inl = res < threshold_m
        if np.array_equal(new_inl, inl) or new_inl.sum() < min_inliers:
            break
        inl = new_inl
    res = np.linalg.norm(dst - (src @ T[:3, :3].T + T[:3, 3]), axis=1)
    inl = res < threshold_m
    if inl.sum() < min_inliers:
        raise EstimationError(f"too few rigid inliers: {int(inl.sum())} < min_inliers={min_inliers}")
    return RigidResult(T=T, inliers=inl, num_inliers=int(inl.sum()),
                       rmse_m=float(np.sqrt(np.mean(res[inl] ** 2))))


def rigid_covariance(src, dst, T, weights=None) -> np.ndarray:
    """Covariance (6, 6) float64 of the rigid fit ``dst ~ R src + t`` at ``T`` [m^2, rad^2].

    Residual ``r_n = dst_n - (R src_n + t)`` (3-vector, metres), Jacobian of ``R src + t`` w.r.t.
    ``xi = (dt, dw)`` (``t <- t + dt``, ``R <- exp([dw]x) R``, ROS order) is ``[I, -[R src]x]``;
    ``cov = (J^T W J)^-1 * sigma2`` with ``sigma2 = sum w ||r||^2 / (3 m - 6)`` and ``m`` the number
    of points with non-zero weight (isotropic per-point noise model; ``sigma2`` in m^2 when
    ``w = 1``).

    Args:
        src: (N, 3) object-frame points [m]; dst: (N, 3) camera-frame points [m];
        T: (4, 4) pose (usually the fit of these points); weights: (N,) non-negative or None.

    Raises:
        InputError: shapes, non-finite values, negative weights, fewer than 3 points.
        EstimationError: fewer than 3 weighted points, or a singular J^T W J (collinear points).
    """
    src, dst = _check_pairs(src, dst, 3, "rigid covariance")
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise InputError(f"T must be a finite 4x4 matrix, got shape {T.shape}")
    n = src.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n,):
        raise InputError(f"weights must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)) or w.min() < 0:
        raise InputError("weights must be finite and non-negative")
    m = int((w > 0).sum())
    if m < 3:
        raise EstimationError(f"rigid covariance needs at least 3 points with non-zero weight, "
                              f"got {m}")
    RX = src @ T[:3, :3].T
    r = dst - (RX + T[:3, 3])
    J = np.zeros((n, 3, 6))
    J[:, :, :3] = np.eye(3)
    J[:, 0, 4], J[:, 0, 5] = RX[:, 2], -RX[:, 1]    # -[RX]x rows
    J[:, 1, 3], J[:, 1, 5] = -RX[:, 2], RX[:, 0]
    J[:, 2, 3], J[:, 2, 4] = RX[:, 1], -RX[:, 0]
    H = np.einsum("nki,n,nkj->ij", J, w, J)
    d = np.sqrt(np.diag(H))
    ev = np.linalg.eigvalsh(H / np.outer(d, d))
    if not ev[0] > 1e-10 * ev[-1]:
        raise EstimationError(f"singular J^T W J in the rigid covariance (reciprocal condition "
                              f"{ev[0] / ev[-1]:.3g}): collinear or coincident points")
    sigma2 = float(np.sum(w * np.sum(r * r, axis=1)) / (3 * m - 6))
    cov = np.linalg.inv(H) * sigma2
    return 0.5 * (cov + cov.T)
