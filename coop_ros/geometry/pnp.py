"""2D-3D pose solvers: robust EPnP / MAGSAC++ PnP (OpenCV) and a batched, differentiable,
weighted Levenberg-Marquardt PnP in PyTorch with a pose covariance.

Conventions (whole package): metres, OpenCV camera axes (x right, y down, z forward), poses are
(4, 4) ``T_cam_obj`` with ``x_cam = R @ x_obj + t``, pixel coordinates (u, v) with the origin at the
centre of the top-left pixel as in OpenCV, intrinsics ``K`` (3, 3).

Pose perturbation model (used by the LM update AND by every covariance returned here)::

    t <- t + dt,    R <- exp([dw]x) R,    xi = (dt_x, dt_y, dt_z, dw_x, dw_y, dw_z)

i.e. a translation of the object in the camera frame and a rotation of the object about its own
origin around the CAMERA frame's fixed axes. This is exactly the (x, y, z, rot X, rot Y, rot Z)
order and meaning of ``geometry_msgs/PoseWithCovariance.covariance`` expressed in the parent
(camera) frame, so a (6, 6) covariance from here goes into a ROS message unchanged (metres^2,
rad^2). For an estimate (R_est, t_est) and truth (R_gt, t_gt) the error in that tangent space is
``e = (t_est - t_gt, rotvec(R_est @ R_gt.T))``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import roma
import torch

from coop_ros.errors import EstimationError, InputError
from coop_ros.geometry.camera import check_intrinsics, project_camera_points
from coop_ros.geometry.se3 import make_pose, transform_points

__all__ = ["PnPResult", "LMResult", "solve_pnp_ransac", "lm_pnp", "refine_pose_lm"]


# --------------------------------------------------------------------------------------------
# Robust PnP (OpenCV)
# --------------------------------------------------------------------------------------------

@dataclass
class PnPResult:
    """Result of :func:`solve_pnp_ransac`.

    T: (4, 4) float64 ``T_cam_obj`` [m].
    inliers: (N,) bool, correspondences whose reprojection error at ``T`` is below the threshold.
    num_inliers: int, ``inliers.sum()``.
    reproj_rmse_px: float, RMS reprojection error of the inliers at ``T`` [px].
    """

    T: np.ndarray
    inliers: np.ndarray
    num_inliers: int
    reproj_rmse_px: float


_PNP_METHODS = {"epnp": cv2.SOLVEPNP_EPNP, "magsac": cv2.USAC_MAGSAC}


def _reprojection_errors_np(T: np.ndarray, pts3d: np.ndarray, pts2d: np.ndarray,
                            K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) reprojection error [px] (inf for points behind the camera) and (N,) depth z [m]."""
    Pc = transform_points(T, pts3d)
    z = Pc[:, 2]
    err = np.full(len(z), np.inf)
    front = z > 0
    if front.any():
        uv, _ = project_camera_points(K, Pc[front])
        err[front] = np.linalg.norm(uv - pts2d[front], axis=1)
    return err, z


def solve_pnp_ransac(pts2d, pts3d, K, method: str = "epnp", reproj_px: float = 2.0,
                     iterations: int = 1000, confidence: float = 0.999, refine: bool = True,
                     min_inliers: int = 6) -> PnPResult:
    """Robust pose from 2D-3D correspondences with OpenCV ``solvePnPRansac``.

    Args:
        pts2d: (N, 2) float, pixel coordinates (u, v) in the image of ``K`` [px].
        pts3d: (N, 3) float, the matching points in the object frame [m].
        K: (3, 3) float intrinsics (no distortion).
        method: ``"epnp"`` -- classic RANSAC with EPnP minimal / final solver
            (``SOLVEPNP_EPNP``); ``"magsac"`` -- OpenCV's USAC with MAGSAC++ scoring
            (``USAC_MAGSAC``).
        reproj_px: inlier threshold on the reprojection error [px] (> 0).
        iterations: maximum number of RANSAC iterations.
        confidence: RANSAC confidence in (0, 1).
        refine: if True, refine the pose on the RANSAC inliers with ``cv2.solvePnPRefineLM``
            (reprojection error least squares), then recompute the inlier set at the refined pose
            and refine once more if that set changed.
        min_inliers: fewer final inliers than this raises :class:`EstimationError`.

    Returns:
        :class:`PnPResult`; ``inliers`` / ``reproj_rmse_px`` are measured at the returned pose.

    Raises:
        InputError: wrong shapes, fewer than 4 correspondences, non-finite values, bad K,
            unknown method, non-positive threshold.
        EstimationError: RANSAC failed, too few inliers, or inliers behind the camera.
    """
    pts2d = np.asarray(pts2d, dtype=np.float64)
    pts3d = np.asarray(pts3d, dtype=np.float64)
    if pts2d.ndim != 2 or pts2d.shape[1] != 2:
        raise InputError(f"pts2d must have shape (N, 2), got {pts2d.shape}")
    if pts3d.ndim != 2 or pts3d.shape[1] != 3:
        raise InputError(f"pts3d must have shape (N, 3), got {pts3d.shape}")
    if pts2d.shape[0] != pts3d.shape[0]:
        raise InputError(f"pts2d and pts3d differ in length: {pts2d.shape[0]} vs {pts3d.shape[0]}")
    n = pts2d.shape[0]
    if n < 4:
        raise InputError(f"PnP needs at least 4 correspondences, got {n}")
    if not np.all(np.isfinite(pts2d)):
        raise InputError("pts2d contains non-finite values (NaN or inf)")
    if not np.all(np.isfinite(pts3d)):
        raise InputError("pts3d contains non-finite values (NaN or inf)")
    K = check_intrinsics(K)
    if method not in _PNP_METHODS:
        raise InputError(f"method must be one of {sorted(_PNP_METHODS)}, got {method!r}")
    if not (np.isfinite(reproj_px) and reproj_px > 0):
        raise InputError(f"reproj_px must be a positive number of pixels, got {reproj_px}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie in (0, 1), got {confidence}")
    if iterations < 1:
        raise InputError(f"iterations must be >= 1, got {iterations}")
    min_inliers = max(int(min_inliers), 4)
    if n < min_inliers:
        raise EstimationError(f"too few correspondences for PnP: {n} < min_inliers={min_inliers}")

    try:
        ok, rvec, tvec, idx = cv2.solvePnPRansac(
            pts3d, pts2d, K, None, iterationsCount=int(iterations),
            reprojectionError=float(reproj_px), confidence=float(confidence),
            flags=_PNP_METHODS[method])
    except cv2.error as exc:  # OpenCV raises on degenerate samples with some flags
        raise EstimationError(f"PnP RANSAC ({method}) failed inside OpenCV: {exc}") from exc
    if not ok or idx is None or rvec is None or not np.all(np.isfinite(rvec)) \
            or not np.all(np.isfinite(tvec)):
        raise EstimationError(f"PnP RANSAC ({method}) found no pose consistent with the "
                              f"correspondences (threshold {reproj_px} px)")
    inl = np.zeros(n, dtype=bool)
    inl[np.asarray(idx).reshape(-1)] = True
    if inl.sum() < min_inliers:
        raise EstimationError(f"too few PnP inliers: {int(inl.sum())} < min_inliers={min_inliers}")

    rvec = np.asarray(rvec, dtype=np.float64).reshape(3, 1)
    tvec = np.asarray(tvec, dtype=np.float64).reshape(3, 1)
    if refine:
        for _ in range(2):
            rvec, tvec = cv2.solvePnPRefineLM(pts3d[inl], pts2d[inl], K, None, rvec.copy(),
                                              tvec.copy())
            T = make_pose(cv2.Rodrigues(rvec)[0], tvec.ravel())
            err, _ = _reprojection_errors_np(T, pts3d, pts2d, K)
            new_inl = err < reproj_px
            if np.array_equal(new_inl, inl) or new_inl.sum() < min_inliers:
                break
            inl = new_inl
    T = make_pose(cv2.Rodrigues(rvec)[0], tvec.ravel())
    err, z = _reprojection_errors_np(T, pts3d, pts2d, K)
    inl = (err < reproj_px) & (z > 0)
    if np.any(z[np.asarray(idx).reshape(-1)] <= 0) or (z <= 0).mean() > 0.5:
        raise EstimationError(f"PnP solution puts {int((z <= 0).sum())} of {n} points behind the "
                              "camera (z <= 0): inconsistent correspondences")
    if inl.sum() < min_inliers:
        raise EstimationError(f"too few PnP inliers: {int(inl.sum())} < min_inliers={min_inliers}")
    rmse = float(np.sqrt(np.mean(err[inl] ** 2)))
    return PnPResult(T=T, inliers=inl, num_inliers=int(inl.sum()), reproj_rmse_px=rmse)


# --------------------------------------------------------------------------------------------
# Weighted, batched, differentiable Levenberg-Marquardt PnP (PyTorch)
# --------------------------------------------------------------------------------------------

@dataclass
class LMResult:
    """Result of :func:`lm_pnp` (all tensors in the input dtype, on the input device).

    T: (B, 4, 4) ``T_cam_obj`` [m]; differentiable w.r.t. ``pts2d`` and ``weights``.
    covariance: (B, 6, 6) pose covariance ``information^-1 * sigma2`` in the
        (dt_x, dt_y, dt_z, dw_x, dw_y, dw_z) camera-frame perturbation model [m^2, rad^2]
        (module docstring) -- the ROS PoseWithCovariance layout.
    information: (B, 6, 6) unscaled information ``J^T W J`` at ``T`` [px^2 / m^2, px^2 / rad^2].
        ``information^-1`` is the covariance when the weights are exact inverse pixel variances.
    sigma2: (B,) estimated variance factor ``sum w r^2 / (m - 6)``, with ``m`` the number of
        residual components (2 per point, one per (B, N, 2) weight) with non-zero weight
        (``m - 6 = 2N - 6`` for per-point weights) [dimensionless when w = 1/px^2].
    rms_px: (B,) weighted RMS reprojection residual ``sqrt(sum w r^2 / sum w)`` at ``T`` [px].
    converged: (B,) bool, the last update step was below ``tol`` (rotation [rad] and
        translation [m], max-norm).
    """

    T: torch.Tensor
    covariance: torch.Tensor
    information: torch.Tensor
    sigma2: torch.Tensor
    rms_px: torch.Tensor
    converged: torch.Tensor


def _project(R: torch.Tensor, t: torch.Tensor, X: torch.Tensor, K: torch.Tensor):
    """Camera points, depths and pixels. R (B,3,3), t (B,3), X (B,N,3), K (B,3,3) ->
    P (B,N,3) [m], p = K P (B,N,3), uv (B,N,2) [px]."""
    P = X @ R.transpose(-1, -2) + t[:, None, :]
    p = P @ K.transpose(-1, -2)
    uv = p[..., :2] / p[..., 2:3]
    return P, p, uv


def _residuals_and_jacobian(R, t, X, x2d, K):
    """Residual e = pi(K (R X + t)) - x (B,N,2) [px] and its analytic Jacobian (B,N,2,6) w.r.t.
    xi = (dt, dw) of the update t <- t + dt, R <- exp([dw]x) R.

    d(RX + t)/d dt = I,  d(exp([dw]x) R X)/d dw |_0 = -[R X]x,
    d(p_i / p_2)/dP = (K_i - (p_i / p_2) K_2) / p_2   (rows K_i of K).
    """
    P, p, uv = _project(R, t, X, K)
    e = uv - x2d
    # (B,N,2,3): derivative of the pixel w.r.t. the camera point
    dpix = (K[:, None, :2, :] - uv[..., :, None] * K[:, None, 2:3, :]) / p[..., 2:3, None]
    RX = (P - t[:, None, :])[..., None, :].expand(dpix.shape)
    # row d of dpix times -[RX]x is (RX x d)^T
    J = torch.cat([dpix, torch.linalg.cross(RX, dpix, dim=-1)], dim=-1)  # (B,N,2,6)
    return e, J, P[..., 2]


def _weighted_cost(R, t, X, x2d, K, w):
    """(B,) sum w e^2 [px^2 * w]; +inf where any weighted point has z <= 0 (no autograd)."""
    with torch.no_grad():
        P, _, uv = _project(R, t, X, K)
        bad = ((P[..., 2] <= 0) & (w.sum(-1) > 0)).any(-1)
        e = torch.where(torch.isfinite(uv), uv - x2d, torch.zeros_like(uv))
        c = (w * e * e).sum((-1, -2))
        return torch.where(bad, torch.full_like(c, float("inf")), c)


def _normal_equations(J, w, e):
    B = J.shape[0]
    Jf = J.reshape(B, -1, 6)
    JtW = (Jf * w.reshape(B, -1, 1)).transpose(-1, -2)  # (B, 6, 2N)
    return JtW @ Jf, (JtW @ e.reshape(B, -1, 1))[..., 0]


def _rcond(H: torch.Tensor) -> torch.Tensor:
    """(B,) reciprocal condition number of the Jacobi-scaled H (scale-invariant: independent of
    the units of rotation vs translation). 0 for a zero diagonal."""
    with torch.no_grad():
        d = torch.diagonal(H, dim1=-2, dim2=-1)
        ok = (d > 0).all(-1)
        s = torch.where(d > 0, d, torch.ones_like(d)).rsqrt()
        Hn = H * s[:, :, None] * s[:, None, :]
        ev = torch.linalg.eigvalsh(Hn)
        rc = ev[:, 0] / ev[:, -1].clamp_min(torch.finfo(H.dtype).tiny)
        return torch.where(ok, rc, torch.zeros_like(rc))


def _first_true(mask: torch.Tensor) -> int | None:
    """Index of the first True of a (B,) bool tensor, or None."""
    idx = torch.nonzero(mask).flatten()
    return int(idx[0]) if idx.numel() else None


def _default_rcond(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-6


def _as_tensor(x, name: str, dtype=None, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        tt = x
    else:
        try:
            tt = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise InputError(f"{name} is not an array: {exc}") from exc
    if dtype is not None:
        if tt.is_complex():
            raise InputError(f"{name} must be real, got {tt.dtype}")
        tt = tt.to(dtype=dtype, device=device)
    return tt


def lm_pnp(pts2d: torch.Tensor, pts3d: torch.Tensor, weights: torch.Tensor, K: torch.Tensor,
           T_init: torch.Tensor, iterations: int = 10, damping: float = 1e-3,
           gauss_newton_final: bool = True, tol: float = 1e-5,
           rcond: float | None = None) -> LMResult:
    """Batched weighted Levenberg-Marquardt PnP, differentiable w.r.t. ``pts2d`` and ``weights``.

    Minimises ``sum_n w_n ||pi(K (R X_n + t)) - x_n||^2`` (residual ``r = w^(1/2) (pi(.) - x)``)
    from ``T_init`` with ``iterations`` unrolled LM steps (Marquardt damping
    ``(H + lambda diag(H)) xi = -g``; lambda starts at ``damping``, x0.1 after a step that lowers the
    cost, x10 and the step is discarded otherwise), then, if ``gauss_newton_final``, one
    undamped Gauss-Newton step. Update: ``t <- t + dt``, ``R <- exp([dw]x) R`` (camera-frame axes,
    module docstring). The Jacobian is analytic (closed form of the pinhole derivative, cheaper and
    simpler to batch than ``torch.func.jacrev``); gradients flow through every unrolled step
    (accept / reject decisions and lambda are piecewise-constant and not differentiated). No
    in-place tensor updates.

    Args:
        pts2d: (B, N, 2) observed pixels [px]; float32 or float64 -- its dtype is the working
            dtype and the dtype of every output.
        pts3d: (B, N, 3) object-frame points [m].
        weights: (B, N) per-point or (B, N, 2) per-coordinate non-negative weights
            (ideally inverse pixel variances [1/px^2]). Zero weight = ignored point.
        K: (3, 3) or (B, 3, 3) intrinsics.
        T_init: (B, 4, 4) initial ``T_cam_obj``; every weighted point must have z > 0 there.
        iterations: number of LM steps (>= 0).
        damping: initial LM lambda (>= 0), relative to diag(H).
        gauss_newton_final: finish with one undamped Gauss-Newton step.
        tol: ``converged`` threshold on the last step, max(|dt| [m], |dw| [rad]).
        rcond: minimal reciprocal condition number of the Jacobi-scaled ``J^T W J`` (default
            1e-10 in float64, 1e-6 in float32); below it the system is called singular.

    Returns:
        :class:`LMResult`.

    Raises:
        InputError: shapes, non-finite values, negative weights, bad K / T_init.
        EstimationError: fewer than 4 points with non-zero weight, fewer than 6 weighted residuals,
            a weighted point with z <= 0 at ``T_init``, or a singular / ill-conditioned
            ``J^T W J`` (all weights zero, collinear points ...); the message names the batch index.
    """
    x2d = _as_tensor(pts2d, "pts2d")
    if not x2d.is_floating_point() or x2d.dtype not in (torch.float32, torch.float64):
        raise InputError(f"pts2d must be float32 or float64, got {x2d.dtype}")
    dtype, device = x2d.dtype, x2d.device
    X = _as_tensor(pts3d, "pts3d", dtype, device)
    w = _as_tensor(weights, "weights", dtype, device)
    Kt = _as_tensor(K, "K", dtype, device)
    T0 = _as_tensor(T_init, "T_init", dtype, device)

    if x2d.ndim != 3 or x2d.shape[-1] != 2:
        raise InputError(f"pts2d must have shape (B, N, 2), got {tuple(x2d.shape)}")
    B, N = x2d.shape[:2]
    if X.shape != (B, N, 3):
        raise InputError(f"pts3d must have shape (B, N, 3) = {(B, N, 3)}, got {tuple(X.shape)}")
    if w.shape == (B, N):
        w2 = w[..., None].expand(B, N, 2)
    elif w.shape == (B, N, 2):
        w2 = w
    else:
        raise InputError(f"weights must have shape (B, N) or (B, N, 2) with B={B}, N={N}, "
                         f"got {tuple(w.shape)}")
    K_batched = Kt.ndim == 3
    if Kt.shape == (3, 3):
        Kt = Kt.expand(B, 3, 3)
    elif Kt.shape != (B, 3, 3):
        raise InputError(f"K must have shape (3, 3) or (B, 3, 3), got {tuple(Kt.shape)}")
    if T0.shape != (B, 4, 4):
        raise InputError(f"T_init must have shape (B, 4, 4) = {(B, 4, 4)}, got {tuple(T0.shape)}")
    for name, v in (("pts2d", x2d), ("pts3d", X), ("weights", w), ("K", Kt), ("T_init", T0)):
        if not torch.isfinite(v).all():
            bidx = torch.nonzero(~torch.isfinite(v).reshape(v.shape[0], -1).all(-1)).flatten()
            raise InputError(f"{name} contains non-finite values (NaN or inf) "
                             f"at batch index {bidx.tolist()}")
    if (w < 0).any():
        raise InputError("weights must be non-negative")
    for b in range(Kt.shape[0] if K_batched else 1):
        check_intrinsics(Kt[b].detach().cpu().double().numpy(),
                         name=f"K[{b}]" if K_batched else "K")
    if iterations < 0:
        raise InputError(f"iterations must be >= 0, got {iterations}")
    if damping < 0:
        raise InputError(f"damping must be >= 0, got {damping}")
    R0 = T0[:, :3, :3].detach()
    orth = (R0 @ R0.transpose(-1, -2) - torch.eye(3, dtype=dtype, device=device)).abs()
    if (orth.amax((-1, -2)) > 1e-4).any() or (torch.linalg.det(R0) <= 0).any():
        raise InputError("T_init rotation is not orthonormal with det +1")
    rcond = _default_rcond(dtype) if rcond is None else float(rcond)

    # --- per-batch counts -------------------------------------------------------------------
    w_pt = w2.detach().sum(-1)
    n_pts = (w_pt > 0).sum(-1)
    n_res = (w2.detach() > 0).sum((-1, -2))
    b = _first_true(n_pts < 4)
    if b is not None:
        raise EstimationError(f"batch {b}: fewer than 4 points with non-zero weight "
                              f"({int(n_pts[b])})" + ("; all weights zero" if n_pts[b] == 0 else ""))
    b = _first_true(n_res <= 6)
    if b is not None:
        raise EstimationError(f"batch {b}: only {int(n_res[b])} residuals with non-zero "
                              "weight, need more than 6")

    R = T0[:, :3, :3]
    t = T0[:, :3, 3]
    with torch.no_grad():
        P0, _, _ = _project(R, t, X, Kt)
        behind = ((P0[..., 2] <= 0) & (w_pt > 0)).sum(-1)
    b = _first_true(behind > 0)
    if b is not None:
        raise EstimationError(f"batch {b}: {int(behind[b])} weighted points have z <= 0 "
                              "(behind the camera) at T_init")

    def check_conditioning(H, when):
        rc = _rcond(H)
        b = _first_true(~(rc > rcond))
        if b is not None:
            raise EstimationError(
                f"batch {b}: singular / ill-conditioned J^T W J {when} (reciprocal condition "
                f"{float(rc[b]):.3g} <= {rcond:.3g}): degenerate geometry such as collinear "
                "points, or too few weighted points")

    lam = torch.full((B,), float(damping), dtype=dtype, device=device)
    eye6 = torch.eye(6, dtype=dtype, device=device)
    step = torch.full((B,), float("inf"), dtype=dtype, device=device)
    e, J, _ = _residuals_and_jacobian(R, t, X, x2d, Kt)
    H, g = _normal_equations(J, w2, e)
    check_conditioning(H, "at T_init")
    cost = (w2 * e * e).detach().sum((-1, -2))

    def apply(R, t, xi):
        return roma.rotvec_to_rotmat(xi[:, 3:]) @ R, t + xi[:, :3]

    for it in range(iterations):
        if it > 0:
            e, J, _ = _residuals_and_jacobian(R, t, X, x2d, Kt)
            H, g = _normal_equations(J, w2, e)
        A = H + lam[:, None, None] * torch.diag_embed(torch.diagonal(H, dim1=-2, dim2=-1)) \
            + 1e-12 * eye6 * torch.diagonal(H, dim1=-2, dim2=-1).amax(-1)[:, None, None]
        xi = torch.linalg.solve(A, -g)
        Rc, tc = apply(R, t, xi)
        cost_c = _weighted_cost(Rc, tc, X, x2d, Kt, w2)
        acc = cost_c < cost  # (B,) piecewise constant, not differentiated
        R = torch.where(acc[:, None, None], Rc, R)
        t = torch.where(acc[:, None], tc, t)
        cost = torch.where(acc, cost_c, cost)
        step = torch.where(acc, xi.detach().abs().amax(-1), torch.zeros_like(step))
        lam = torch.where(acc, (lam * 0.1).clamp_min(1e-12), lam * 10.0)
    if gauss_newton_final:
        e, J, _ = _residuals_and_jacobian(R, t, X, x2d, Kt)
        H, g = _normal_equations(J, w2, e)
        xi = torch.linalg.solve(H, -g)
        R, t = apply(R, t, xi)
        step = xi.detach().abs().amax(-1)

    e, J, z = _residuals_and_jacobian(R, t, X, x2d, Kt)
    with torch.no_grad():
        behind = ((z <= 0) & (w_pt > 0)).sum(-1)
    b = _first_true(behind > 0)
    if b is not None:
        raise EstimationError(f"batch {b}: LM solution puts {int(behind[b])} weighted points "
                              "behind the camera (z <= 0)")
    H, _ = _normal_equations(J, w2, e)
    check_conditioning(H, "at the solution")
    wr2 = (w2 * e * e).sum((-1, -2))
    sigma2 = wr2 / (n_res - 6).to(dtype)
    Hinv = torch.linalg.inv(H)
    cov = 0.5 * (Hinv + Hinv.transpose(-1, -2)) * sigma2[:, None, None]
    rms = torch.sqrt(wr2 / w2.sum((-1, -2)))
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype, device=device).expand(B, 1, 4)
    T = torch.cat([torch.cat([R, t[:, :, None]], -1), bottom], -2)
    if not torch.isfinite(T).all():
        bad = torch.nonzero(~torch.isfinite(T).reshape(B, -1).all(-1)).flatten().tolist()
        raise EstimationError(f"batch {bad}: LM produced a non-finite pose")
    return LMResult(T=T, covariance=cov, information=H, sigma2=sigma2, rms_px=rms,
                    converged=step < tol)


def refine_pose_lm(pts2d, pts3d, K, T_init, weights=None, iterations: int = 10,
                   damping: float = 1e-3, gauss_newton_final: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """NumPy convenience wrapper of :func:`lm_pnp` for one problem, computed in float64.

    Args:
        pts2d: (N, 2) pixels [px]; pts3d: (N, 3) object points [m]; K: (3, 3);
        T_init: (4, 4) initial ``T_cam_obj``; weights: (N,) or (N, 2) or None (all ones).

    Returns:
        (T (4, 4) float64 [m], covariance (6, 6) float64 [m^2, rad^2], ROS order, see module doc).

    Raises:
        InputError / EstimationError as :func:`lm_pnp`.
    """
    pts2d = np.asarray(pts2d, dtype=np.float64)
    pts3d = np.asarray(pts3d, dtype=np.float64)
    if pts2d.ndim != 2 or pts2d.shape[1] != 2:
        raise InputError(f"pts2d must have shape (N, 2), got {pts2d.shape}")
    if weights is None:
        weights = np.ones(pts2d.shape[0])
    res = lm_pnp(torch.from_numpy(pts2d)[None], torch.from_numpy(pts3d)[None],
                 torch.as_tensor(np.asarray(weights, dtype=np.float64))[None],
                 torch.as_tensor(np.asarray(K, dtype=np.float64)),
                 torch.as_tensor(np.asarray(T_init, dtype=np.float64))[None],
                 iterations=iterations, damping=damping, gauss_newton_final=gauss_newton_final)
    return res.T[0].detach().numpy().copy(), res.covariance[0].detach().numpy().copy()
