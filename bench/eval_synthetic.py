"""The synthetic evaluation of the Co-op pipeline: a printed table.

    OMP_NUM_THREADS=2 .venv/bin/python bench/eval_synthetic.py [--data /tmp/coop_synth_s7]
        [--max-targets N] [--configs rgb:0,rgb:1,rgb:5,rgbd:0,rgbd:1,rgbd:5] [--no-vsd]
        [--device cpu|cuda] [--backend weight-free|coop|auto] [--coarse-ckpt C]
        [--refiner-ckpt R] [--selection-ckpt S] [--precision fp32|bf16] [--jobs N]

``--jobs N`` evaluates N configurations at once, each in its own process (its own renderer and
networks); the table is the same as with one job.

1. Makes the dataset when it is missing, exactly as
   ``coop-ros synth --out DATA --objects textured_box,can,mug --scenes 4 --images 5
   --objects-per-image 3 3 --occlusion mild --seed 7`` (60 targets, deterministic).
2. For every configuration (mode x hypotheses; 0 = coarse only) runs the ``coop`` estimator
   through :func:`coop_ros.bop.evaluate.evaluate` (GT ``bbox_visib`` boxes as detections; the same
   as ``coop-ros eval --bop DATA --estimator coop --mode M --hypotheses N [--coarse-only]``) and
   prints AR_VSD / AR_MSSD / AR_MSPD / AR and the time per target.
3. Covariance check of the refined runs: NEES ``e^T Sigma^-1 e`` with e = (t_est - t_gt,
   rotvec(R_est R_gt^T)) in the camera frame (symmetry-aware: the closest symmetric GT), its
   median against the chi-square(6) median 5.35, and the Spearman rank correlation between the
   predicted error size ``sqrt(tr Sigma_t) + r sqrt(tr Sigma_R)`` and the actual error
   ``|dt| + r |dw|`` (r = diameter / 2).
"""
from __future__ import annotations

import argparse
from argparse import Namespace
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from coop_ros.bop import coop_adapter
from coop_ros.bop.dataset import BopDataset
from coop_ros.bop.evaluate import evaluate
from coop_ros.geometry.se3 import matrix_to_rotvec
from coop_ros.pipeline.estimator import PoseConfig, PoseEstimator

SYNTH_ARGS = ["--objects", "textured_box,can,mug", "--scenes", "4", "--images", "5",
              "--objects-per-image", "3", "3", "--occlusion", "mild", "--seed", "7", "--quiet"]


def make_estimator(est: PoseEstimator, dataset, mode: str, hyps: int, records: list):
    """``coop-ros eval``'s ``coop`` estimator (:mod:`coop_ros.bop.coop_adapter`) on ``est`` (its
    templates kept between configurations): GT visible boxes, ``hyps`` hypotheses (0 = coarse
    only); ``records`` receives (PoseResult, T_gt) per detection."""
    args = Namespace(mode=mode, hypotheses=max(hyps, 1), coarse_only=hyps == 0, gt_box="visib")
    return coop_adapter.make_estimator(args, dataset, records, estimator=est)


def covariance_stats(records, dataset) -> dict:
    nees, pred, actual, amb, rot = [], [], [], [], []
    for r, Tg in records:
        if not r.ok or r.covariance is None:
            continue
        obj = dataset.object(int(r.obj_id))
        syms = obj.symmetry_transforms(0.05)
        Tgs = Tg[None] @ syms
        dR = np.einsum("ij,sjk->sik", r.T_cam_obj[:3, :3], np.transpose(Tgs[:, :3, :3], (0, 2, 1)))
        ang = np.linalg.norm(matrix_to_rotvec(dR), axis=1)
        k = int(np.argmin(ang + np.linalg.norm(r.T_cam_obj[:3, 3] - Tgs[:, :3, 3], axis=1)
                          / obj.diameter))
        e = np.concatenate([r.T_cam_obj[:3, 3] - Tgs[k, :3, 3], matrix_to_rotvec(dR[k])])
        C = r.covariance
        try:
            nees.append(float(e @ np.linalg.solve(C, e)))
        except np.linalg.LinAlgError:
            continue
        rad = obj.diameter / 2
        amb.append(bool(getattr(r, "ambiguous", False)))
        rot.append(float(np.degrees(np.linalg.norm(e[3:]))))
        pred.append(np.sqrt(max(np.trace(C[:3, :3]), 0)) + rad * np.sqrt(max(np.trace(C[3:, 3:]), 0)))
        actual.append(np.linalg.norm(e[:3]) + rad * np.linalg.norm(e[3:]))
    if len(nees) < 3:
        return {"n": len(nees)}
    rho = spearmanr(pred, actual).statistic
    nees = np.asarray(nees)
    h = len(nees) // 2
    # held-out calibration: inflation factor from the first half (median NEES / chi2_6 median),
    # NEES of the second half after inflating its covariances by that factor
    factor = float(np.median(nees[:h]) / 5.348)
    held = nees[h:] / factor
    amb, rot = np.asarray(amb), np.asarray(rot)
    return {"n": len(nees), "nees_median": float(np.median(nees)), "nees_mean": float(np.mean(nees)),
            "spearman": float(rho), "inflation_first_half": factor,
            "nees_median_heldout_calibrated": float(np.median(held)),
            "frac_heldout_nees_below_chi2_95": float(np.mean(held < 12.59)),
            # results marked ambiguous (a rival pose, select.rival), and the share of those and
            # of all results whose rotation is more than 30 deg off
            "ambiguous": int(amb.sum()),
            "ambiguous_rot_over_30": float(np.mean(rot[amb] > 30)) if amb.any() else None,
            "rot_over_30": float(np.mean(rot > 30))}


def _row(est, ds, cfg: str, args) -> dict:
    """Evaluate one configuration ``mode:hypotheses`` (0 = coarse only): a row of the table."""
    mode, h = cfg.split(":")
    h = int(h)
    records: list = []
    fn = make_estimator(est, ds, mode, h, records)
    t0 = time.perf_counter()
    rep = evaluate(ds, fn, max_targets=args.max_targets, progress=False,
                   compute_vsd=not args.no_vsd, estimator_name=f"coop-{mode}-{h}",
                   renderer=None, device=args.device)
    wall = time.perf_counter() - t0
    cs = covariance_stats(records, ds) if h > 0 else {}
    tt = [r.timings.get("total", 0.0) for r, _ in records]
    print(f"done {cfg}: AR {rep.ar:.3f} ({wall:.0f} s) cov {cs}", file=sys.stderr, flush=True)
    return {"cfg": cfg, "mode": mode, "stage": "coarse" if h == 0 else f"{h} hyp",
            "ar_vsd": rep.ar_vsd, "ar_mssd": rep.ar_mssd, "ar_mspd": rep.ar_mspd, "ar": rep.ar,
            "n_targets": rep.n_targets, "ar_definition": rep.ar_definition,
            "s_per_object": float(np.mean(tt)) if tt else float("nan"),
            "failed": sum(1 for r, _ in records if not r.ok), "cov": cs}


def _pose_config(args) -> PoseConfig:
    return PoseConfig(template_cache_dir=args.template_cache, device=args.device,
                      precision=args.precision,
                      backend=args.backend, coarse_ckpt=args.coarse_ckpt,
                      refiner_ckpt=args.refiner_ckpt, selection_ckpt=args.selection_ckpt).validate()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/coop_synth_s7")
    ap.add_argument("--max-targets", type=int, default=None)
    ap.add_argument("--configs", default="rgb:0,rgb:1,rgb:5,rgbd:0,rgbd:1,rgbd:5")
    ap.add_argument("--no-vsd", action="store_true")
    ap.add_argument("--template-cache", default="/tmp/coop_templates")
    ap.add_argument("--device", default="cpu", help="renderer + networks: cpu | cuda[:i]")
    ap.add_argument("--backend", default="weight-free", help="weight-free | coop | auto")
    ap.add_argument("--coarse-ckpt", default=None)
    ap.add_argument("--refiner-ckpt", default=None)
    ap.add_argument("--selection-ckpt", default=None)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="networks of the coop backend (autocast)")
    ap.add_argument("--jobs", type=int, default=1, help="configurations evaluated at once")
    ap.add_argument("--row-json", default=None, help=argparse.SUPPRESS)   # --jobs worker output
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not (data / "test").is_dir():
        subprocess.run([sys.executable, "-m", "coop_ros.cli", "synth", "--out", str(data),
                        "--device", args.device] + SYNTH_ARGS, check=True)
    cfg = _pose_config(args)   # bad backend / checkpoint paths fail here, before any job starts
    configs = args.configs.split(",")
    if args.jobs > 1 and len(configs) > 1:
        rows = _run_jobs(configs, args, argv if argv is not None else sys.argv[1:])
    else:
        ds = BopDataset(data)
        est = PoseEstimator(cfg)
        rows = [_row(est, ds, c, args) for c in configs]
        est.release()
        if args.row_json:
            Path(args.row_json).write_text(json.dumps(rows))
            return 0
    backend = est_label(args)
    print(f"\nsynthetic set: {data} ({rows[0]['n_targets']} targets), GT bbox_visib detections, "
          f"{backend}, device {args.device}")
    print("| mode | stage | AR_VSD | AR_MSSD | AR_MSPD | AR | s / object | failed | NEES median "
          "(raw) | inflation (1st half) | NEES median held-out | Spearman(cov, err) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    f = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    for r in rows:
        cs = r["cov"]
        print(f"| {r['mode']} | {r['stage']} | {f(r['ar_vsd'])} | {f(r['ar_mssd'])} "
              f"| {f(r['ar_mspd'])} | {f(r['ar'])} | {r['s_per_object']:.2f} | {r['failed']} "
              f"| {f(cs.get('nees_median'))} | {f(cs.get('inflation_first_half'))} "
              f"| {f(cs.get('nees_median_heldout_calibrated'))} | {f(cs.get('spearman'))} |")
    print(f"\nAR definition: {rows[0]['ar_definition']}")
    return 0


def est_label(args) -> str:
    """'weight-free backend' or 'coop backend (coarse: PATH, ...)' for the table's caption."""
    ck = {k: getattr(args, f"{k}_ckpt") for k in ("coarse", "refiner", "selection")}
    used = {k: v for k, v in ck.items() if v}
    if args.backend == "weight-free" or not used:
        return "weight-free backend"
    return f"{args.backend} backend ({args.precision}; " + \
        ", ".join(f"{k}: {v}" for k, v in used.items()) + "; other slots weight-free)"


def _run_jobs(configs, args, argv) -> list:
    """Each configuration in its own process (this script with --configs C --row-json F)."""
    from concurrent.futures import ThreadPoolExecutor

    def without(argv, flag):
        out, skip = [], False
        for a in argv:
            if skip:
                skip = False
                continue
            if a == flag:
                skip = True
                continue
            if not a.startswith(flag + "="):
                out.append(a)
        return out

    base = without(without(argv, "--configs"), "--jobs")
    with tempfile.TemporaryDirectory() as tmp:
        def one(c):
            path = Path(tmp) / f"{c.replace(':', '_')}.json"
            subprocess.run([sys.executable, __file__, *base, "--configs", c, "--jobs", "1",
                            "--row-json", str(path)], check=True)
            return json.loads(path.read_text())[0]
        with ThreadPoolExecutor(args.jobs) as pool:
            return list(pool.map(one, configs))


if __name__ == "__main__":
    sys.exit(main())
