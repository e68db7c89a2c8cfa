"""Tests of coop_ros.geometry.rigid: weighted Kabsch (torch), MAGSAC++ Kabsch (seeded NumPy) and
the 3D-3D covariance. Run with -s to see the measured numbers."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from scipy.stats import chi2

from coop_ros.errors import EstimationError, InputError
from coop_ros.geometry import se3
from coop_ros.geometry.rigid import (RigidResult, _magsac_weights_losses, kabsch_magsac,
                                     rigid_covariance, weighted_kabsch)


def _rigid_scene(rng, n, size=0.2, depth=1.0):
    T = se3.make_pose(se3.random_rotation(rng),
                      [rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), depth])
    X = rng.uniform(-size / 2, size / 2, (n, 3))
    return T, X, se3.transform_points(T, X)


def _rot_trans_err(R_est, t_est, R_gt, t_gt):
    return (float(np.degrees(np.linalg.norm(se3.matrix_to_rotvec(R_est @ R_gt.T)))),
            float(np.linalg.norm(t_est - t_gt)))


# ------------------------------------------------------------------------ weighted Kabsch

def test_weighted_kabsch_exact_recovery_batched():
    rng = np.random.default_rng(0)
    B, n = 5, 50
    scenes = [_rigid_scene(rng, n) for _ in range(B)]
    X = torch.from_numpy(np.stack([s[1] for s in scenes]))
    Y = torch.from_numpy(np.stack([s[2] for s in scenes]))
    R, t = weighted_kabsch(X, Y)
    assert R.shape == (B, 3, 3) and t.shape == (B, 3) and R.dtype == torch.float64
    errs = [_rot_trans_err(R[b].numpy(), t[b].numpy(), scenes[b][0][:3, :3], scenes[b][0][:3, 3])
            for b in range(B)]
    dR = max(np.abs(R[b].numpy() - scenes[b][0][:3, :3]).max() for b in range(B))
    dt = max(np.abs(t[b].numpy() - scenes[b][0][:3, 3]).max() for b in range(B))
    print(f"\nweighted_kabsch exact float64: max |dR| {dR:.1e}, max |dt| {dt:.1e} m, "
          f"max rot {max(e[0] for e in errs):.1e} deg")
    assert dR < 1e-9 and dt < 1e-9
    R32, t32 = weighted_kabsch(X.float(), Y.float())
    assert R32.dtype == torch.float32
    assert np.abs(R32.double().numpy() - R.numpy()).max() < 1e-5
    assert np.abs(t32.double().numpy() - t.numpy()).max() < 1e-5


def test_weighted_kabsch_weights():
    rng = np.random.default_rng(1)
    T, X, Y = _rigid_scene(rng, 40)
    Y_noisy = Y + rng.normal(0, 0.002, Y.shape)
    Y_out = Y_noisy.copy()
    Y_out[:8] += rng.uniform(-0.3, 0.3, (8, 3))  # 8 gross outliers
    w = torch.from_numpy(rng.uniform(0.2, 2.0, 40))
    f = lambda a: torch.from_numpy(a)[None]  # noqa: E731
    # 1) zero-weighted outliers do not move the result: same as fitting the inliers alone
    w0 = w.clone()
    w0[:8] = 0.0
    R0, t0 = weighted_kabsch(f(X), f(Y_out), w0[None])
    Ri, ti = weighted_kabsch(f(X[8:]), f(Y_noisy[8:]), w[None, 8:])
    d_zero = max((R0 - Ri).abs().max().item(), (t0 - ti).abs().max().item())
    # 2) down-weighted (1e-9) outliers move it by a negligible amount; weight 1 moves it a lot
    w_small = w.clone()
    w_small[:8] = 1e-9
    Rs, ts = weighted_kabsch(f(X), f(Y_out), w_small[None])
    Ru, tu = weighted_kabsch(f(X), f(Y_out), None)
    e_small = _rot_trans_err(Rs[0].numpy(), ts[0].numpy(), Ri[0].numpy(), ti[0].numpy())
    e_unif = _rot_trans_err(Ru[0].numpy(), tu[0].numpy(), Ri[0].numpy(), ti[0].numpy())
    # 3) non-uniform weights agree with an independent weighted solver (scipy align_vectors)
    wn = w.numpy() / w.numpy().sum()
    xm, ym = wn @ X, wn @ Y_noisy
    rot, _ = Rotation.align_vectors(Y_noisy - ym, X - xm, weights=w.numpy())
    Rw, tw = weighted_kabsch(f(X), f(Y_noisy), w[None])
    d_scipy = max(np.abs(Rw[0].numpy() - rot.as_matrix()).max(),
                  np.abs(tw[0].numpy() - (ym - rot.as_matrix() @ xm)).max())
    print(f"\nzero weights vs subset fit: {d_zero:.1e}; 1e-9-weighted outliers move it "
          f"{e_small[0]:.1e} deg / {e_small[1]:.1e} m; unweighted outliers: {e_unif[0]:.2f} deg / "
          f"{e_unif[1] * 1e3:.1f} mm; vs scipy weighted: {d_scipy:.1e}")
    assert d_zero < 1e-12
    assert e_small[0] < 1e-6 and e_small[1] < 1e-9
    assert e_unif[0] > 0.5
    assert d_scipy < 1e-10


def test_weighted_kabsch_gradcheck():
    rng = np.random.default_rng(2)
    T, X, Y = _rigid_scene(rng, 8)
    Y = Y + rng.normal(0, 0.01, Y.shape)
    Xt, Yt = torch.from_numpy(X)[None], torch.from_numpy(Y)[None]
    w = torch.from_numpy(rng.uniform(0.5, 1.5, (1, 8))).requires_grad_()

    def f(ww):
        R, t = weighted_kabsch(Xt, Yt, ww)
        return torch.cat([R.reshape(1, 9), t], -1)

    ok = torch.autograd.gradcheck(f, (w,), eps=1e-6, atol=1e-7, rtol=1e-4)
    print(f"\nweighted_kabsch gradcheck wrt w: {ok}")
    assert ok


def test_weighted_kabsch_degenerate():
    rng = np.random.default_rng(3)
    X = torch.from_numpy(rng.uniform(-0.1, 0.1, (2, 10, 3)))
    Y = X + 0.5
    w = torch.ones(2, 10, dtype=torch.float64)
    w[1, 2:] = 0.0
    with pytest.raises(EstimationError, match=r"batch 1: Kabsch needs at least 3 points"):
        weighted_kabsch(X, Y, w)
    Xl = X.clone()
    Xl[0] = torch.linspace(0, 1, 10, dtype=torch.float64)[:, None] * torch.tensor(
        [1.0, 2.0, -0.5], dtype=torch.float64)
    with pytest.raises(EstimationError, match=r"batch 0: degenerate Kabsch.*collinear"):
        weighted_kabsch(Xl, Xl + 0.5)
    Xn = X.clone()
    Xn[1, 3, 2] = float("nan")
    with pytest.raises(InputError, match=r"X contains non-finite values.*\[1\]"):
        weighted_kabsch(Xn, Y)
    with pytest.raises(InputError, match="w must be non-negative"):
        weighted_kabsch(X, Y, -w)
    with pytest.raises(InputError, match="Y must have the shape"):
        weighted_kabsch(X, Y[:, :5])


# ------------------------------------------------------------------------ MAGSAC++ Kabsch

def test_kabsch_magsac_exact_data():
    rng = np.random.default_rng(4)
    T, X, Y = _rigid_scene(rng, 100)
    res = kabsch_magsac(X, Y)
    print(f"\nexact data: max |T_est - T| = {np.abs(res.T - T).max():.1e}")
    assert np.abs(res.T - T).max() < 1e-9 and res.inliers.all() and res.rmse_m < 1e-10


def test_kabsch_magsac_seeded():
    """Same seed -> bit-identical result (the old pymagsac sampler could not be seeded); other
    seeds -> other samples, equally good."""
    rng = np.random.default_rng(8)
    T, X, Y = _rigid_scene(rng, 400)
    Y = Y + rng.normal(0, 0.001, Y.shape)
    out = rng.random(400) < 0.5
    Y[out] = T[:3, 3] + rng.uniform(-0.15, 0.15, (out.sum(), 3))
    a, b = kabsch_magsac(X, Y, 0.005, seed=3), kabsch_magsac(X, Y, 0.005, seed=3)
    assert np.array_equal(a.T, b.T) and np.array_equal(a.inliers, b.inliers)
    assert np.array_equal(kabsch_magsac(X, Y, 0.005, seed=(3, 1)).T,
                          kabsch_magsac(X, Y, 0.005, seed=(3, 1)).T)
    for s in range(5):
        rot, tr = se3.pose_errors(kabsch_magsac(X, Y, 0.005, seed=s).T, T)
        assert rot < 0.5 and tr < 2e-3


def test_magsac_loss_is_integral_of_weight():
    """MAGSAC++ loss rho(r) with rho'(r) = r w(r) (IRLS weight), increasing up to the threshold,
    constant (the outlier loss) beyond it, weight 0 beyond it."""
    thr = 0.01
    r = np.linspace(0, 0.02, 20001)
    w, loss = _magsac_weights_losses(r, thr)
    assert loss[0] == 0 and np.all(np.diff(loss) >= -1e-18)
    assert np.all(w[r >= thr] == 0) and np.all(w[r < thr] > 0) and w[0] == w.max()
    assert np.allclose(loss[r >= thr], loss[-1])
    dr = r[1] - r[0]
    integral = np.concatenate([[0], np.cumsum(0.5 * (r[1:] * w[1:] + r[:-1] * w[:-1]) * dr)])
    assert np.abs(integral - loss).max() < 1e-4 * loss[-1]


def test_kabsch_magsac_30pct_outliers():
    rng = np.random.default_rng(5)
    n = 1000
    T, X, Y = _rigid_scene(rng, n)
    Y = Y + rng.normal(0, 0.001, Y.shape)
    out = rng.random(n) < 0.3
    Y[out] = T[:3, 3] + rng.uniform(-0.15, 0.15, (out.sum(), 3))
    res = kabsch_magsac(X, Y, threshold_m=0.005)
    assert isinstance(res, RigidResult) and res.T.shape == (4, 4)
    rot, tr = se3.pose_errors(res.T, T)
    recall = (res.inliers & ~out).sum() / (~out).sum()
    false_inl = (res.inliers & out).sum()
    print(f"\nMAGSAC++ Kabsch 1000 corr, {out.mean():.0%} outliers, 1 mm noise: rot {rot:.4f} deg,"
          f" trans {tr * 1e3:.3f} mm, inliers {res.num_inliers}, recall {recall:.3f}, "
          f"false inliers {false_inl}, rmse {res.rmse_m * 1e3:.3f} mm")
    assert rot < 0.5 and tr < 2e-3
    assert recall > 0.99 and false_inl < 10
    # 3-D isotropic 1 mm noise: RMS of the residual norm ~ sqrt(3) mm
    assert 1.4e-3 < res.rmse_m < 2.0e-3


def test_kabsch_magsac_bad_input():
    rng = np.random.default_rng(6)
    T, X, Y = _rigid_scene(rng, 10)
    with pytest.raises(InputError, match="at least 3 correspondences"):
        kabsch_magsac(X[:2], Y[:2])
    Yn = Y.copy()
    Yn[4, 1] = np.nan
    with pytest.raises(InputError, match="dst contains non-finite"):
        kabsch_magsac(X, Yn)
    with pytest.raises(InputError, match="threshold_m"):
        kabsch_magsac(X, Y, threshold_m=0.0)
    with pytest.raises(InputError, match="probabilities"):
        kabsch_magsac(X, Y, probabilities=np.full(10, 2.0))
    with pytest.raises(InputError, match="dst must have the shape"):
        kabsch_magsac(X, Y[:, :2])
    Xl = np.linspace(0, 0.1, 50)[:, None] * np.array([1.0, 2.0, 3.0])
    with pytest.raises(EstimationError, match="collinear"):
        kabsch_magsac(Xl, Xl + 1.0)
    with pytest.raises(EstimationError, match="found no model|too few rigid inliers"):
        kabsch_magsac(rng.uniform(size=(30, 3)), rng.uniform(size=(30, 3)), threshold_m=0.001)


# ------------------------------------------------------------------------ covariance

def test_rigid_covariance_nees_calibrated():
    rng = np.random.default_rng(7)
    M, n, sigma = 300, 60, 0.002
    scenes = [_rigid_scene(rng, n) for _ in range(M)]
    X = np.stack([s[1] for s in scenes])
    Y = np.stack([s[2] for s in scenes]) + rng.normal(0, sigma, (M, n, 3))
    R, t = weighted_kabsch(torch.from_numpy(X), torch.from_numpy(Y))
    R, t = R.numpy(), t.numpy()
    nees = np.empty(M)
    for m in range(M):
        Tm = se3.make_pose(R[m], t[m])
        cov = rigid_covariance(X[m], Y[m], Tm)
        e = np.concatenate([t[m] - scenes[m][0][:3, 3],
                            se3.matrix_to_rotvec(R[m] @ scenes[m][0][:3, :3].T)])
        nees[m] = e @ np.linalg.solve(cov, e)
    lo, hi = chi2.ppf(0.025, 6 * M) / M, chi2.ppf(0.975, 6 * M) / M
    print(f"\nrigid NEES over M={M} (N={n}, sigma {sigma * 1e3} mm): mean {nees.mean():.3f}, "
          f"95% band [{lo:.3f}, {hi:.3f}]")
    assert lo < nees.mean() < hi


def test_rigid_covariance_degenerate():
    rng = np.random.default_rng(8)
    T, X, Y = _rigid_scene(rng, 10)
    Xl = np.linspace(0, 0.1, 10)[:, None] * np.array([1.0, -1.0, 0.3])
    with pytest.raises(EstimationError, match="singular J\\^T W J.*collinear"):
        rigid_covariance(Xl, se3.transform_points(T, Xl) + 1e-4, T)
    w = np.zeros(10)
    w[:2] = 1.0
    with pytest.raises(EstimationError, match="at least 3 points with non-zero weight"):
        rigid_covariance(X, Y, T, weights=w)
    with pytest.raises(InputError, match="weights must be finite and non-negative"):
        rigid_covariance(X, Y, T, weights=-np.ones(10))
