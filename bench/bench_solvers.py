"""Time per call of the geometry solvers on 1000 correspondences; prints a Markdown table.

    .venv/bin/python bench/bench_solvers.py [--n 1000] [--repeats 20] [--threads 1]

Scene: object points in a 0.2 m box ~1 m in front of a 600 px / 640x480 camera, random rotation;
2D-3D: 1 px noise and 30 % outliers uniform in the image; 3D-3D: 1 mm noise and 30 % outliers.
LM runs start from a 10 deg / 5 cm perturbation on the inliers (10 LM iterations + 1 GN step).
Reported: median and min wall time per call over the repeats (after one warm-up call), and the
pose error of the last call.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from coop_ros.geometry import se3
from coop_ros.geometry.pnp import lm_pnp, refine_pose_lm, solve_pnp_ransac
from coop_ros.geometry.rigid import kabsch_magsac, rigid_covariance, weighted_kabsch

K = np.array([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]])


def _timeit(fn, repeats):
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return np.median(times), np.min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="correspondences per problem")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: the problems are small, the CPU shared)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    n = args.n

    T = se3.make_pose(se3.random_rotation(rng), [0.05, -0.03, 1.0])
    X = rng.uniform(-0.1, 0.1, (n, 3))
    P = se3.transform_points(T, X)
    uv_exact = (P @ K.T)[:, :2] / P[:, 2:]
    uv = uv_exact + rng.normal(0, 1.0, (n, 2))
    out = rng.random(n) < 0.3
    uv_out = uv.copy()
    uv_out[out] = rng.uniform([0, 0], [640, 480], (out.sum(), 2))
    Y = P + rng.normal(0, 0.001, P.shape)
    Y[out] = T[:3, 3] + rng.uniform(-0.15, 0.15, (out.sum(), 3))
    T0 = se3.perturb_pose(T, 10.0, 0.05, rng)

    rows = []

    def add(name, fn, per=1, pose=lambda r: r.T):
        med, mn, res = _timeit(fn, args.repeats)
        Te = pose(res)
        err = se3.pose_errors(Te, T) if Te is not None else (float("nan"), float("nan"))
        rows.append((name, med * 1e3 / per, mn * 1e3 / per, err[0], err[1] * 1e3))

    add("solve_pnp_ransac epnp (30% out, +refine)", lambda: solve_pnp_ransac(uv_out, X, K))
    add("solve_pnp_ransac epnp (30% out, no refine)",
        lambda: solve_pnp_ransac(uv_out, X, K, refine=False))
    add("solve_pnp_ransac magsac (30% out, +refine)",
        lambda: solve_pnp_ransac(uv_out, X, K, method="magsac"))

    inl = ~out
    f64 = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    x1, X1 = f64(uv[inl])[None], f64(X[inl])[None]
    w1 = torch.ones(1, int(inl.sum()), dtype=torch.float64)
    Kt, T0t = f64(K), f64(T0)[None]
    add("lm_pnp B=1 float64 (10 it + GN)", lambda: lm_pnp(x1, X1, w1, Kt, T0t),
        pose=lambda r: r.T[0].numpy())
    add("lm_pnp B=1 float32 (10 it + GN)",
        lambda: lm_pnp(x1.float(), X1.float(), w1.float(), Kt.float(), T0t.float()),
        pose=lambda r: r.T[0].double().numpy())

    def fwd_bwd():
        ww = w1.clone().requires_grad_()
        r = lm_pnp(x1, X1, ww, Kt, T0t)
        r.T[:, :3, 3].sum().backward()
        return r
    add("lm_pnp B=1 float64 forward+backward", fwd_bwd, pose=lambda r: r.T[0].detach().numpy())
    B = 8
    add(f"lm_pnp B={B} float64, per problem",
        lambda: lm_pnp(x1.expand(B, -1, -1), X1.expand(B, -1, -1), w1.expand(B, -1), Kt,
                       T0t.expand(B, -1, -1)), per=B, pose=lambda r: r.T[0].numpy())
    add("refine_pose_lm (numpy wrapper)", lambda: refine_pose_lm(uv[inl], X[inl], K, T0),
        pose=lambda r: r[0])

    add("kabsch_magsac (30% out)", lambda: kabsch_magsac(X, Y))
    add("weighted_kabsch B=1 float64 (inliers)",
        lambda: weighted_kabsch(f64(X[inl])[None], f64(Y[inl])[None]),
        pose=lambda r: se3.make_pose(r[0][0].numpy(), r[1][0].numpy()))
    add("rigid_covariance (inliers)", lambda: rigid_covariance(X[inl], Y[inl], T),
        pose=lambda r: None)

    print(f"\nGeometry solvers, N = {n} correspondences ({int(inl.sum())} inliers), "
          f"torch threads = {args.threads}, repeats = {args.repeats}\n")
    print("| solver | median ms/call | min ms/call | rot err deg | trans err mm |")
    print("|---|---:|---:|---:|---:|")
    for name, med, mn, er, et in rows:
        print(f"| {name} | {med:.2f} | {mn:.2f} | {er:.4f} | {et:.3f} |")


if __name__ == "__main__":
    main()
