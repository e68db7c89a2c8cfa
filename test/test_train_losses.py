"""Losses: Laplace NLL, disentangled pose loss, pose from flow through the differentiable LM PnP,
coarse CE + L1, selection BCE."""
import numpy as np
import pytest
import torch

from coop_ros.geometry.se3 import rotvec_to_matrix
from coop_ros.nets.heads import CoarseOutput, RefinerOutput
from coop_ros.train.losses import (coarse_loss, disentangled_pose_loss, laplace_nll,
                                   pose_from_flow, refiner_loss, selection_loss)

torch.set_num_threads(1)


def _pose(rv, t):
    T = np.eye(4)
    T[:3, :3] = rotvec_to_matrix(np.asarray(rv, float))
    T[:3, 3] = t
    return torch.from_numpy(T)[None]


def test_laplace_nll_minimum_and_scale():
    y = torch.tensor([[1.0, -2.0]])
    b = torch.tensor([0.5])
    assert laplace_nll(y, b, y) < laplace_nll(y + 0.3, b, y)
    # optimal b for an L1 error e is b = e
    e = 2.0
    bs = torch.linspace(0.5, 4, 71)
    nll = laplace_nll(torch.zeros(71, 2), bs, torch.tensor([[e, 0.0]]).expand(71, 2))
    assert float(bs[nll.argmin()]) == pytest.approx(e, abs=0.06)


def test_disentangled_pose_loss_terms():
    K = torch.tensor([[500.0, 0, 112], [0, 500.0, 112], [0, 0, 1]], dtype=torch.float64)[None]
    pts = torch.randn(1, 100, 3, dtype=torch.float64) * 0.05
    Tg = _pose([0.1, 0.2, 0.3], [0.02, -0.01, 0.6])
    D = torch.tensor([0.2], dtype=torch.float64)
    l0, _ = disentangled_pose_loss(Tg.clone(), Tg, pts, K, D)
    assert float(l0) == pytest.approx(0, abs=1e-12)
    Tr = Tg.clone()
    Tr[0, :3, :3] = torch.from_numpy(rotvec_to_matrix(np.array([0, 0, 0.1]))) @ Tg[0, :3, :3]
    _, p = disentangled_pose_loss(Tr, Tg, pts, K, D)
    assert p["rot"] > 0 and float(p["xy"]) < 1e-12 and float(p["z"]) < 1e-12
    Tz = Tg.clone()
    Tz[0, :3, 3] *= 1.1                   # along the viewing ray: depth only
    _, p = disentangled_pose_loss(Tz, Tg, pts, K, D)
    assert float(p["rot"]) < 1e-12 and float(p["xy"]) < 1e-9 and p["z"] > 0
    Txy = Tg.clone()
    Txy[0, 0, 3] += 0.01                  # sideways at the same depth: image position only
    _, p = disentangled_pose_loss(Txy, Tg, pts, K, D)
    assert float(p["xy"]) == pytest.approx(0.01 / 0.2, rel=1e-6) and float(p["z"]) < 1e-12


def _flow_setup(S=64):
    """A planar textured square seen at T_init; exact flow to T_gt."""
    K = np.array([[120.0, 0, (S - 1) / 2], [0, 120.0, (S - 1) / 2], [0, 0, 1]])
    T0 = _pose([0.0, 0.0, 0.0], [0.0, 0.0, 0.5])[0].numpy()
    Tg = _pose([0.05, -0.04, 0.03], [0.01, -0.005, 0.52])[0].numpy()
    v, u = np.mgrid[0:S, 0:S].astype(float)
    # the plane z = 0 of the object, seen frontally: back-project
    Z = T0[2, 3]
    X = np.stack([(u - K[0, 2]) / K[0, 0] * Z, (v - K[1, 2]) / K[1, 1] * Z, np.zeros_like(u)], -1)
    mask = (np.abs(X[..., 0]) < 0.08) & (np.abs(X[..., 1]) < 0.08)
    P = X @ Tg[:3, :3].T + Tg[:3, 3]
    uv = (P @ K.T)[..., :2] / P[..., 2:3]
    flow = uv - np.stack([u, v], -1)
    return K, T0, Tg, X * mask[..., None], mask, flow


def test_pose_from_exact_flow_recovers_gt_and_is_differentiable():
    K, T0, Tg, X, mask, flow = _flow_setup()
    S = flow.shape[0]
    mu = torch.tensor(flow[None], dtype=torch.float32, requires_grad=True)
    out = RefinerOutput(flow=mu, scale=torch.full((1, S, S), 0.5),
                        certainty_logit=torch.full((1, S, S), 5.0),
                        sensitivity=torch.ones(1, S, S))
    T, ok = pose_from_flow(out, torch.tensor(X[None], dtype=torch.float32),
                           torch.tensor(mask[None]), torch.tensor(K[None]),
                           torch.tensor(T0[None]), stride=4, iterations=5)
    assert bool(ok.all())
    np.testing.assert_allclose(T[0].detach().numpy(), Tg, atol=1e-5)
    pts = torch.randn(1, 50, 3, dtype=torch.float64) * 0.05
    loss, _ = disentangled_pose_loss(T, torch.tensor(Tg[None]), pts, torch.tensor(K[None]),
                                     torch.tensor([0.2]))
    (loss.sum() + 0 * mu.sum()).backward()
    assert mu.grad is not None and torch.isfinite(mu.grad).all()


def test_refiner_loss_pose_terms_improve_with_a_better_flow():
    K, T0, Tg, X, mask, flow = _flow_setup()
    S = flow.shape[0]
    batch = {"flow": torch.tensor(flow[None], dtype=torch.float32),
             "cert": torch.tensor(mask[None], dtype=torch.float32),
             "flow_valid": torch.tensor(mask[None]), "render_mask": torch.tensor(mask[None]),
             "xyz": torch.tensor(X[None], dtype=torch.float32), "K": torch.tensor(K[None]),
             "T_init": torch.tensor(T0[None]), "T_gt": torch.tensor(Tg[None]),
             "points": torch.randn(1, 64, 3) * 0.05, "diameter": torch.tensor([0.2])}

    def out(f):
        return RefinerOutput(flow=torch.tensor(f[None], dtype=torch.float32),
                             scale=torch.ones(1, S, S), certainty_logit=torch.zeros(1, S, S),
                             sensitivity=torch.ones(1, S, S))
    _, m_good = refiner_loss(out(flow), batch)
    _, m_zero = refiner_loss(out(np.zeros_like(flow)), batch)
    assert m_good["epe"] < 1e-4 and m_zero["epe"] == pytest.approx(m_zero["epe_init"])
    assert m_good["pose"] < 1e-4 < m_zero["pose"]
    assert m_good["rot_deg"] < 0.1 and m_zero["rot_deg"] == pytest.approx(m_zero["rot_deg_init"], abs=0.05)


def test_coarse_and_selection_losses():
    B, N, K = 2, 16, 16
    cls = torch.randint(0, K + 1, (B, N))
    off = torch.rand(B, N, 2) - 0.5
    logits = torch.full((B, N, K + 1), -20.0)
    logits.scatter_(2, cls[..., None], 20.0)
    loss, m = coarse_loss(CoarseOutput(logits, off.clone()), cls, off)
    assert m["acc"] == 1.0 and m["ce"] < 1e-6 and m["l1"] < 1e-7 and m["match_px"] < 1e-4
    _, m2 = coarse_loss(CoarseOutput(torch.zeros(B, N, K + 1), torch.zeros(B, N, 2)), cls, off)
    assert m2["ce"] == pytest.approx(np.log(K + 1), rel=1e-5)
    lab = torch.tensor([1.0, 0.0, 1.0, 0.0])
    l, m = selection_loss(torch.tensor([5.0, -5.0, 5.0, -5.0]), lab)
    assert m["acc"] == 1.0 and float(l) < 0.01
