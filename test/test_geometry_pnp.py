"""Tests of coop_ros.geometry.pnp: robust PnP (OpenCV), batched weighted LM PnP (torch) with its
covariance and gradients. Run with -s to see the measured numbers."""
import cv2
import numpy as np
import pytest
import roma
import torch
from scipy.stats import chi2

from coop_ros.errors import EstimationError, InputError
from coop_ros.geometry import se3
from coop_ros.geometry.pnp import LMResult, PnPResult, lm_pnp, refine_pose_lm, solve_pnp_ransac

K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])
W, H = 640, 480


def _scene(rng, n, size=0.2, depth=1.0):
    """A random pose ~`depth` m in front of the camera, (n, 3) object points in a `size` m box
    and their exact projections (n, 2)."""
    T = se3.make_pose(se3.random_rotation(rng),
                      [rng.uniform(-0.1, 0.1), rng.uniform(-0.08, 0.08), depth])
    X = rng.uniform(-size / 2, size / 2, (n, 3))
    P = se3.transform_points(T, X)
    uv = P @ K.T
    return T, X, uv[:, :2] / uv[:, 2:]


def _rot_trans_err(T_est, T_gt):
    """(|rotvec(R_est R_gt^T)| [deg], |t_est - t_gt| [m]); precise near zero, unlike arccos."""
    return (float(np.degrees(np.linalg.norm(se3.matrix_to_rotvec(T_est[:3, :3] @ T_gt[:3, :3].T)))),
            float(np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3])))


def _batch(rng, B, n, angle=10.0, trans=0.05, noise_px=0.0):
    Ts, T0s, Xs, xs = [], [], [], []
    for _ in range(B):
        T, X, uv = _scene(rng, n)
        Ts.append(T)
        T0s.append(se3.perturb_pose(T, angle, trans, rng))
        Xs.append(X)
        xs.append(uv + rng.normal(0.0, noise_px, uv.shape) if noise_px else uv)
    f = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    return np.asarray(Ts), f(T0s), f(Xs), f(xs)


# ------------------------------------------------------------------------ robust PnP (OpenCV)

@pytest.mark.parametrize("method", ["epnp", "magsac"])
def test_pnp_ransac_30pct_outliers(method):
    rng = np.random.default_rng(7)
    n = 1000
    T, X, uv = _scene(rng, n)
    uv = uv + rng.normal(0.0, 1.0, uv.shape)
    out = rng.random(n) < 0.3
    uv[out] = rng.uniform([0, 0], [W, H], (out.sum(), 2))
    res = solve_pnp_ransac(uv, X, K, method=method)
    assert isinstance(res, PnPResult)
    assert res.T.shape == (4, 4) and res.T.dtype == np.float64
    rot, tr = se3.pose_errors(res.T, T)
    recall = (res.inliers & ~out).sum() / (~out).sum()
    false_inl = (res.inliers & out).sum()
    print(f"\n[{method}] 1000 corr, {out.mean():.0%} outliers, 1 px noise: rot {rot:.4f} deg, "
          f"trans {tr * 1e3:.3f} mm, inliers {res.num_inliers}, recall {recall:.3f}, "
          f"false inliers {false_inl}, rmse {res.reproj_rmse_px:.3f} px")
    assert rot < 0.5 and tr < 2e-3
    assert res.num_inliers == res.inliers.sum()
    # 2-D Gaussian error norm is Rayleigh: P(|e| < 2 px) = 1 - exp(-2) = 0.865 for sigma = 1 px
    assert abs(recall - (1 - np.exp(-2.0))) < 0.04 and false_inl <= 3
    # 1 px isotropic noise: RMS of the 2-D error of inliers ~ sqrt(2) px, truncated at 2 px
    assert 0.8 < res.reproj_rmse_px < 1.5


def test_pnp_ransac_refine_beats_no_refine():
    rng = np.random.default_rng(3)
    T, X, uv = _scene(rng, 500)
    uv = uv + rng.normal(0.0, 1.0, uv.shape)
    uv[:150] = rng.uniform([0, 0], [W, H], (150, 2))
    r0 = solve_pnp_ransac(uv, X, K, method="magsac", refine=False)
    r1 = solve_pnp_ransac(uv, X, K, method="magsac", refine=True)
    e0, e1 = se3.pose_errors(r0.T, T), se3.pose_errors(r1.T, T)
    print(f"\n[magsac] no refine: {e0[0]:.4f} deg {e0[1] * 1e3:.3f} mm; "
          f"refined: {e1[0]:.4f} deg {e1[1] * 1e3:.3f} mm")
    assert r1.reproj_rmse_px <= r0.reproj_rmse_px + 1e-9
    assert e1[1] < 2e-3


def test_pnp_ransac_bad_input():
    rng = np.random.default_rng(0)
    T, X, uv = _scene(rng, 20)
    with pytest.raises(InputError, match="at least 4 correspondences"):
        solve_pnp_ransac(uv[:3], X[:3], K)
    bad = uv.copy()
    bad[5, 1] = np.nan
    with pytest.raises(InputError, match="pts2d contains non-finite"):
        solve_pnp_ransac(bad, X, K)
    badX = X.copy()
    badX[2, 0] = np.inf
    with pytest.raises(InputError, match="pts3d contains non-finite"):
        solve_pnp_ransac(uv, badX, K)
    with pytest.raises(InputError, match="differ in length"):
        solve_pnp_ransac(uv, X[:10], K)
    with pytest.raises(InputError, match="method"):
        solve_pnp_ransac(uv, X, K, method="p3p")
    with pytest.raises(InputError, match="fx"):
        solve_pnp_ransac(uv, X, np.diag([-1.0, 600.0, 1.0]))
    with pytest.raises(EstimationError, match="min_inliers"):
        solve_pnp_ransac(uv[:5], X[:5], K, min_inliers=6)
    # pure noise: no pose is consistent with enough correspondences
    noise = rng.uniform([0, 0], [W, H], (30, 2))
    with pytest.raises(EstimationError, match="inliers|no pose"):
        solve_pnp_ransac(noise, X[rng.integers(0, 20, 30)] + rng.normal(0, 0.05, (30, 3)), K,
                         reproj_px=0.5, min_inliers=12)


# ------------------------------------------------------------------------ LM PnP (torch)

def test_lm_jacobian_matches_autograd():
    """The analytic Jacobian is the derivative of the residual for t <- t + dt,
    R <- exp([dw]x) R (ROS order (x, y, z, rotX, rotY, rotZ), camera axes)."""
    from coop_ros.geometry.pnp import _residuals_and_jacobian
    rng = np.random.default_rng(1)
    _, T0, X, x = _batch(rng, 2, 7, noise_px=2.0)
    Kt = torch.from_numpy(K).expand(2, 3, 3)
    R, t = T0[:, :3, :3], T0[:, :3, 3]
    _, J, _ = _residuals_and_jacobian(R, t, X, x, Kt)

    def res(xi):
        Rn = roma.rotvec_to_rotmat(xi[:, 3:]) @ R
        return _residuals_and_jacobian(Rn, t + xi[:, :3], X, x, Kt)[0]

    Ja = torch.autograd.functional.jacobian(res, torch.zeros(2, 6, dtype=torch.float64))
    Ja = torch.stack([Ja[b, :, :, b] for b in range(2)])  # (B, N, 2, 6)
    err = (Ja - J).abs().max().item()
    print(f"\nanalytic vs autograd Jacobian: max abs diff {err:.2e} px/unit")
    assert err < 1e-8


def test_lm_converges_from_10deg_5cm_batched():
    rng = np.random.default_rng(2)
    Tgt, T0, X, x = _batch(rng, 8, 60)
    res = lm_pnp(x, X, torch.ones(8, 60, dtype=torch.float64), torch.from_numpy(K), T0)
    assert isinstance(res, LMResult)
    assert res.T.shape == (8, 4, 4) and res.T.dtype == torch.float64
    assert res.covariance.shape == (8, 6, 6) and res.information.shape == (8, 6, 6)
    errs = np.array([se3.pose_errors(res.T[b].numpy(), Tgt[b]) for b in range(8)])
    init = np.array([se3.pose_errors(T0[b].numpy(), Tgt[b]) for b in range(8)])
    print(f"\nLM from {init[:, 0].mean():.1f} deg / {init[:, 1].mean() * 100:.1f} cm (B=8, exact): "
          f"max rot {errs[:, 0].max():.2e} deg, max trans {errs[:, 1].max() * 1e3:.2e} mm, "
          f"rms {res.rms_px.max().item():.1e} px")
    assert np.allclose(init[:, 0], 10.0) and np.allclose(init[:, 1], 0.05)
    assert errs[:, 0].max() < 0.01 and errs[:, 1].max() < 1e-4
    assert bool(res.converged.all())
    assert res.rms_px.max().item() < 1e-6


def test_lm_float32_keeps_dtype_and_converges():
    rng = np.random.default_rng(4)
    Tgt, T0, X, x = _batch(rng, 4, 60)
    res = lm_pnp(x.float(), X.float(), torch.ones(4, 60), torch.from_numpy(K).float(), T0.float())
    assert res.T.dtype == torch.float32 and res.covariance.dtype == torch.float32
    rv = [np.linalg.norm(se3.matrix_to_rotvec(
        np.linalg.svd(res.T[b, :3, :3].double().numpy())[0]
        @ np.linalg.svd(res.T[b, :3, :3].double().numpy())[2] @ Tgt[b, :3, :3].T))
        for b in range(4)]
    tr = (res.T[:, :3, 3].double().numpy() - Tgt[:, :3, 3])
    print(f"\nLM float32: max rot {np.degrees(max(rv)):.2e} deg, "
          f"max trans {np.abs(tr).max() * 1e3:.2e} mm")
    assert np.degrees(max(rv)) < 0.01 and np.linalg.norm(tr, axis=1).max() < 1e-4


def test_lm_matches_opencv_refine_lm_and_numpy_wrapper():
    """Same cost as cv2.solvePnPRefineLM (unit weights): both optima agree."""
    rng = np.random.default_rng(5)
    T, X, uv = _scene(rng, 200)
    uv = uv + rng.normal(0.0, 1.0, uv.shape)
    T0 = se3.perturb_pose(T, 5.0, 0.02, rng)
    T_lm, cov = refine_pose_lm(uv, X, K, T0)
    assert T_lm.shape == (4, 4) and cov.shape == (6, 6) and T_lm.dtype == np.float64
    rvec, tvec = cv2.Rodrigues(T0[:3, :3])[0], T0[:3, 3].reshape(3, 1).copy()
    rvec, tvec = cv2.solvePnPRefineLM(X, uv, K, None, rvec, tvec,
                                      (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 100, 1e-12))
    T_cv = se3.make_pose(cv2.Rodrigues(rvec)[0], tvec.ravel())
    d = se3.pose_errors(T_lm, T_cv)
    print(f"\nours vs cv2.solvePnPRefineLM: {d[0]:.2e} deg, {d[1] * 1e3:.2e} mm; "
          f"sigma_xyz {np.sqrt(np.diag(cov)[:3]) * 1e3} mm")
    assert d[0] < 1e-5 and d[1] < 1e-7  # 0.1 um, vs sigma_z ~ 1.5 mm
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    # depth is the worst-determined translation for an object seen from the front
    assert cov[2, 2] > cov[0, 0] and cov[2, 2] > cov[1, 1]


def test_lm_per_coordinate_weights_ignore_a_bad_coordinate():
    rng = np.random.default_rng(6)
    Tgt, T0, X, x = _batch(rng, 2, 30)
    x = x.clone()
    x[:, :5, 0] += 40.0  # the u coordinate of 5 points is wrong
    w = torch.ones(2, 30, 2, dtype=torch.float64)
    w[:, :5, 0] = 0.0
    res = lm_pnp(x, X, w, torch.from_numpy(K), T0)
    errs = [_rot_trans_err(res.T[b].numpy(), Tgt[b]) for b in range(2)]
    res_bad = lm_pnp(x, X, torch.ones(2, 30, dtype=torch.float64), torch.from_numpy(K), T0)
    errs_bad = [se3.pose_errors(res_bad.T[b].numpy(), Tgt[b]) for b in range(2)]
    print(f"\nper-coordinate weights: {max(e[0] for e in errs):.2e} deg vs "
          f"{max(e[0] for e in errs_bad):.2f} deg with the bad coordinates weighted")
    assert max(e[0] for e in errs) < 1e-9 and max(e[1] for e in errs) < 1e-10
    assert max(e[0] for e in errs_bad) > 0.1
    # residual dof: 2N - 5 weighted components - 6
    assert res.sigma2.max().item() < 1e-20


def test_lm_covariance_nees_calibrated():
    """Monte-Carlo: mean NEES e^T Sigma^-1 e over M trials lies in the 95 % band of a mean of M
    chi2(6); e = (t_est - t_gt, rotvec(R_est R_gt^T)) in the ROS order."""
    rng = np.random.default_rng(11)
    M, n, sigma = 300, 100, 1.5
    Tgt, T0, X, x = _batch(rng, M, n, angle=2.0, trans=0.01, noise_px=sigma)
    res = lm_pnp(x, X, torch.ones(M, n, dtype=torch.float64), torch.from_numpy(K), T0)
    T = res.T.numpy()
    e = np.concatenate([T[:, :3, 3] - Tgt[:, :3, 3],
                        se3.matrix_to_rotvec(T[:, :3, :3] @ np.swapaxes(Tgt[:, :3, :3], 1, 2))], 1)
    nees = np.einsum("bi,bij,bj->b", e, np.linalg.inv(res.covariance.numpy()), e)
    # with weights = 1/sigma^2 the unscaled information is the exact inverse covariance
    nees_info = np.einsum("bi,bij,bj->b", e, res.information.numpy() / sigma ** 2, e)
    e_wrong = e[:, [3, 4, 5, 0, 1, 2]]  # rotation first: the wrong order must fail
    nees_wrong = np.einsum("bi,bij,bj->b", e_wrong, np.linalg.inv(res.covariance.numpy()), e_wrong)
    lo, hi = chi2.ppf(0.025, 6 * M) / M, chi2.ppf(0.975, 6 * M) / M
    print(f"\nNEES over M={M} trials (N={n}, sigma {sigma} px): mean {nees.mean():.3f} "
          f"(info/sigma^2: {nees_info.mean():.3f}), 95% band [{lo:.3f}, {hi:.3f}], "
          f"sigma2_hat mean {res.sigma2.mean().item() / sigma ** 2:.3f} sigma^2; "
          f"swapped order {nees_wrong.mean():.1f}")
    assert lo < nees.mean() < hi
    assert lo < nees_info.mean() < hi
    assert abs(res.sigma2.mean().item() / sigma ** 2 - 1.0) < 0.02
    assert not lo < nees_wrong.mean() < hi


def _gradcheck_problem(seed=12, n=8):
    rng = np.random.default_rng(seed)
    _, T0, X, x = _batch(rng, 2, n, angle=3.0, trans=0.01, noise_px=3.0)
    w = torch.from_numpy(rng.uniform(0.5, 1.5, (2, n)))
    return T0, X, x, w


def _pose_vec(res: LMResult) -> torch.Tensor:
    return torch.cat([res.T[:, :3, 3], roma.rotmat_to_rotvec(res.T[:, :3, :3])], -1)


def test_lm_gradcheck_weights_and_pts2d():
    T0, X, x, w = _gradcheck_problem()
    Kt = torch.from_numpy(K)
    fw = lambda ww: _pose_vec(lm_pnp(x, X, ww, Kt, T0, iterations=4))  # noqa: E731
    fx = lambda xx: _pose_vec(lm_pnp(xx, X, w, Kt, T0, iterations=4))  # noqa: E731
    ok_w = torch.autograd.gradcheck(fw, (w.clone().requires_grad_(),), eps=1e-6, atol=1e-7,
                                    rtol=1e-4)
    ok_x = torch.autograd.gradcheck(fx, (x.clone().requires_grad_(),), eps=1e-6, atol=1e-7,
                                    rtol=1e-4)
    # the gradients must not be trivially zero (noisy data: the weights matter)
    ww = w.clone().requires_grad_()
    gw, = torch.autograd.grad(fw(ww).square().sum(), ww)
    xx = x.clone().requires_grad_()
    gx, = torch.autograd.grad(fx(xx)[:, :3].sum(), xx)
    print(f"\ngradcheck wrt weights: {ok_w}, wrt pts2d: {ok_x}; |dL/dw| {gw.norm():.2e}, "
          f"|dt/dx| {gx.norm():.2e} m/px")
    assert ok_w and ok_x
    assert gw.norm() > 1e-8 and gx.norm() > 1e-5


def test_lm_gradient_of_covariance_and_cov_also_differentiable():
    T0, X, x, w = _gradcheck_problem(seed=13)
    ww = w.clone().requires_grad_()
    res = lm_pnp(x, X, ww, torch.from_numpy(K), T0, iterations=4)
    g, = torch.autograd.grad(torch.diagonal(res.covariance, dim1=-2, dim2=-1).sum(), ww)
    assert torch.isfinite(g).all() and g.abs().max() > 0


def test_lm_bad_input_messages():
    rng = np.random.default_rng(8)
    _, T0, X, x = _batch(rng, 4, 12)
    Kt = torch.from_numpy(K)
    w = torch.ones(4, 12, dtype=torch.float64)

    w3 = w.clone()
    w3[2, 3:] = 0.0
    with pytest.raises(EstimationError, match=r"batch 2: fewer than 4 points with non-zero weight"):
        lm_pnp(x, X, w3, Kt, T0)
    with pytest.raises(EstimationError, match=r"batch 0: .*all weights zero"):
        lm_pnp(x, X, torch.zeros_like(w), Kt, T0)
    xn = x.clone()
    xn[1, 4, 0] = float("nan")
    with pytest.raises(InputError, match=r"pts2d contains non-finite.*\[1\]"):
        lm_pnp(xn, X, w, Kt, T0)
    with pytest.raises(InputError, match="weights must be non-negative"):
        lm_pnp(x, X, -w, Kt, T0)
    # collinear object points: rotation about the line is unobservable -> singular J^T W J
    Xc = X.clone()
    d = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    Xc[3] = torch.linspace(-0.1, 0.1, 12, dtype=torch.float64)[:, None] * d
    with pytest.raises(EstimationError, match=r"batch 3: singular / ill-conditioned J\^T W J"):
        lm_pnp(x, Xc, w, Kt, T0)
    # points behind the camera at T_init
    Tb = T0.clone()
    Tb[1, 2, 3] = -1.0
    with pytest.raises(EstimationError, match=r"batch 1: 12 weighted points have z <= 0"):
        lm_pnp(x, X, w, Kt, Tb)
    with pytest.raises(InputError, match=r"weights must have shape"):
        lm_pnp(x, X, w[:, :5], Kt, T0)
    with pytest.raises(InputError, match=r"T_init rotation is not orthonormal"):
        lm_pnp(x, X, w, Kt, T0 * 2.0)
    with pytest.raises(InputError, match=r"fx"):
        lm_pnp(x, X, w, torch.diag(torch.tensor([0.0, 600.0, 1.0], dtype=torch.float64)), T0)
    with pytest.raises(InputError, match="float32 or float64"):
        lm_pnp(x.long(), X, w, Kt, T0)
    # a zero-weight point behind the camera is ignored, not an error
    Xz = X.clone()
    Xz[0, 0] = torch.tensor([0.0, 0.0, -5.0], dtype=torch.float64)
    wz = w.clone()
    wz[0, 0] = 0.0
    assert torch.isfinite(lm_pnp(x, Xz, wz, Kt, T0).T).all()
