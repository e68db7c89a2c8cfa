"""Calibration of the plausibility gate (coop_ros/pipeline/gate.py) on the real frames.

    OMP_NUM_THREADS=1 .venv/bin/python bench/gate_calibration.py [--real ../shared/real]
        [--stride 8] [--configs 0,1,5] [--no-estimates] [--json out/gate_calibration.json]

1. **Ground truth.** Every valid GT instance of LM-O dev (all 96 images, RGB: the front and box
   checks, with the visible GT box as the detection, as ``coop-ros eval`` uses it) and of the
   two real RGB-D frames (all checks, the depth rendered as the estimator renders it): the
   gate's numbers at the GT pose, their extremes and the margin to each limit. Every GT pose
   must pass.
2. **Along the view ray.** The GT poses moved along their view ray (distance x k): the
   smallest and largest k the gate still passes for each target -- RGB depth is uncertain, so a
   pose 10-20 % off in distance must pass; 100x too far or a few mm from the camera must not.
3. **Estimates.** The pipeline (weight-free; ``--configs``: hypotheses per configuration, 0 =
   coarse only, as ``bench/eval_real.py``'s rows) on LM-O dev (every ``--stride``-th image, as
   ``bench/eval_real.py --stride``) and on the RGB-D frames: every result the gate
   refuses, with its error against the GT (MSSD / diameter, MSPD px; "counted" = it would add to
   the AR: MSSD < 0.5 diameter or MSPD < 50 px x W / 640), the gate's numbers at the accepted
   estimates, and AR with the gate and without it (the refused results' poses put back: what the
   pipeline returned before the gate).

Prints tables; ``--json`` writes every number. A benchmark script, not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
LMO = "lmo_rgb_dev"
RGBD = ("lm_s6_im0_cat_rgbd", "ycbvideo_v0000_f000001_gelatin_rgbd")
KS = np.array([0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
               1.1, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 10.0, 100.0])
NUMS = ("near_m", "small", "large", "cover", "agree", "farther_of_unoccluded")


def _targets(ds, frame, info):
    """[(gt index, box)] of a frame's valid GT instances with the adapter's detection box
    (``GtInfo.detection_box`` where the dataset reader has it: BOP's box + 1 px)."""
    from coop_ros.bop.dataset import valid_gt_indices
    out = []
    for tg in [t for t in ds.targets() if (t.scene_id, t.im_id) == (frame.scene_id,
                                                                   frame.im_id)]:
        for gi in valid_gt_indices(frame, tg):
            if hasattr(info[gi], "detection_box"):     # the adapter's box (pixels spanned)
                b = info[gi].detection_box("visib")
                if b is not None:
                    out.append((gi, b))
                continue
            b = info[gi].bbox_visib
            if b[2] <= 1 or b[3] <= 1:
                b = info[gi].bbox_obj
            if b[2] > 1 and b[3] > 1:
                out.append((gi, tuple(float(v) for v in b)))
    return out


def _check(est, obj_id, T, frame, box, mode):
    """The gate's report of pose T exactly as the estimator computes it."""
    from coop_ros.evidence import Evidence
    from coop_ros.pipeline.gate import check_pose, hull_points, render_depth_view
    reg = est._objects[obj_id]
    hull = reg.hull if hasattr(reg, "hull") else hull_points(reg.obj)
    size = (frame.width, frame.height)
    rep = check_pose(T, hull, frame.K, size, box, reg.obj.diameter)
    if mode == "rgbd" and rep.passed:
        ev = Evidence(frame.rgb, frame.K, box, depth=frame.depth)
        view = render_depth_view(T, ev, est.renderer, est.evidence_key(obj_id))
        rep = check_pose(T, hull, frame.K, size, box, reg.obj.diameter, depth_view=view)
    return rep


def _errors(ds, obj, T, Tg, K, W):
    from coop_ros.bop import metrics
    pts = obj.vertices
    syms = obj.symmetry_transforms(0.01)
    e_s = metrics.mssd(T[:3, :3], T[:3, 3], Tg[:3, :3], Tg[:3, 3], pts, syms)
    e_p = metrics.mspd(T[:3, :3], T[:3, 3], Tg[:3, :3], Tg[:3, 3], K, pts, syms)
    counted = e_s < 0.5 * obj.diameter or e_p < 50.0 * W / 640.0
    return e_s / obj.diameter, e_p, bool(counted)


def _frames(path: Path, stride: int):
    from eval_real import _dataset

    from coop_ros.bop.dataset import compute_gt_info
    ds = _dataset(path, stride)
    keys = sorted({(t.scene_id, t.im_id) for t in ds.targets()})
    for k in keys:
        fr = ds.frame(*k)
        yield ds, fr, fr.gt_info or compute_gt_info(fr, ds)


def _summary(rows, limits):
    """{number: (min, max)} over report rows."""
    out = {}
    for k in NUMS:
        v = [r[k] for r in rows if k in r and r[k] is not None]
        if v:
            out[k] = (float(np.min(v)), float(np.max(v)), len(v))
    return out


def _print_summary(title, summ, limits):
    lim = {"near_m": ("min", limits.min_near_m), "small": ("min", limits.box_small),
           "large": ("max", limits.box_large), "cover": ("min", limits.box_cover),
           "agree": ("min", limits.depth_agree),
           "farther_of_unoccluded": ("max", limits.depth_farther)}
    print(f"\n{title}\n")
    print("| number | n | min | max | limit | margin (worst / limit) |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, (lo, hi, n) in summ.items():
        side, L = lim[k]
        worst = lo if side == "min" else hi
        margin = (worst / L) if side == "min" else (L / worst if worst > 0 else float("inf"))
        print(f"| {k} | {n} | {lo:.3g} | {hi:.3g} | {side} {L:g} | x{margin:.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default=str(ROOT.parent / "shared" / "real"))
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--configs", default="5",
                    help="hypotheses per configuration, comma-separated; 0 = coarse only")
    ap.add_argument("--no-estimates", action="store_true", help="GT sections only")
    ap.add_argument("--template-cache", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    real = Path(args.real)
    if not (real / LMO).is_dir():
        print(f"{real / LMO} absent: nothing to calibrate on")
        return 0
    from coop_ros.bop.dataset import Estimate
    from coop_ros.bop.evaluate import evaluate
    from coop_ros.errors import Reason
    from coop_ros.pipeline.estimator import Detection, PoseConfig, PoseEstimator
    from coop_ros.pipeline.gate import DEFAULT_LIMITS
    import os
    cache = args.template_cache or os.environ.get("COOP_ROS_CACHE") or str(
        Path.home() / ".cache" / "coop_ros" / "templates")
    out: dict = {"limits": DEFAULT_LIMITS.__dict__}
    t_start = time.monotonic()

    # ---------------------------------------------------------------- 1 + 2: ground truth
    sets = [(LMO, "rgb")] + [(d, "rgbd") for d in RGBD if (real / d).is_dir()]
    ests = {}
    gt_rows, ray = [], []
    for name, mode in sets:
        est = ests[name] = PoseEstimator(PoseConfig(template_cache_dir=cache))
        for ds, fr, info in _frames(real / name, 1):
            for gi, box in _targets(ds, fr, info):
                g = fr.gt[gi]
                if not est.has_object(g.obj_id):
                    est.add_object(g.obj_id, ds.object(g.obj_id))
                rep = _check(est, g.obj_id, g.T_cam_obj, fr, box, mode)
                row = dict(data=name, mode=mode, im=fr.im_id, obj=g.obj_id, passed=rep.passed,
                           check=rep.check, detail=rep.detail,
                           visib=float(info[gi].visib_fract), **rep.numbers)
                gt_rows.append(row)
                # along the view ray: the first k below / above 1 that fails
                ok = []
                for k in KS:
                    T = g.T_cam_obj.copy()
                    T[:3, 3] *= k
                    ok.append(_check(est, g.obj_id, T, fr, box, "rgb").passed if mode == "rgb"
                              else _check(est, g.obj_id, T, fr, box, mode).passed)
                ok = np.array(ok)
                i1 = int(np.flatnonzero(KS == 1.0)[0])
                lo = KS[:i1][~ok[:i1]].max() if (~ok[:i1]).any() else None
                hi = KS[i1 + 1:][~ok[i1 + 1:]].min() if (~ok[i1 + 1:]).any() else None
                ray.append(dict(data=name, mode=mode, lo_fail=lo, hi_fail=hi,
                                passes=[float(k) for k in KS[ok]]))
    out["gt"] = gt_rows
    out["ray"] = ray
    fails = [r for r in gt_rows if not r["passed"]]
    print(f"ground truth: {len(gt_rows)} poses ({sum(r['mode'] == 'rgb' for r in gt_rows)} "
          f"LM-O dev RGB, {sum(r['mode'] == 'rgbd' for r in gt_rows)} RGB-D), refused: "
          f"{len(fails)}")
    for r in fails:
        print(f"  REFUSED GT {r['data']} im {r['im']} obj {r['obj']} visib {r['visib']:.2f}: "
              f"{r['check']}: {r['detail']}")
    for mode in ("rgb", "rgbd"):
        _print_summary(f"Gate numbers at the GT poses ({mode})",
                       _summary([r for r in gt_rows if r["mode"] == mode], DEFAULT_LIMITS),
                       DEFAULT_LIMITS)
    for mode in ("rgb", "rgbd"):
        rr = [r for r in ray if r["mode"] == mode]
        if not rr:
            continue
        lo = [r["lo_fail"] for r in rr if r["lo_fail"] is not None]
        hi = [r["hi_fail"] for r in rr if r["hi_fail"] is not None]
        print(f"\nGT moved along the view ray ({mode}, {len(rr)} poses): distance x k refused for "
              f"k <= {max(lo) if lo else 'none'} (largest such k; median {np.median(lo) if lo else '-'})"
              f" and k >= {min(hi) if hi else 'none'} (smallest; median "
              f"{np.median(hi) if hi else '-'}); all pass in x{max(lo) if lo else 0}.."
              f"x{min(hi) if hi else 'inf'} exclusive")
    print(f"({time.monotonic() - t_start:.0f} s)")
    if args.no_estimates:
        return _write(args, out)

    # ---------------------------------------------------------------- 3: estimates
    est_rows = []
    for name, mode, hyps in [(n, m, int(h)) for n, m in sets for h in args.configs.split(",")]:
        est = ests[name]
        label = "coarse only" if hyps == 0 else f"{hyps} hypotheses"
        ds_all = None
        gated, ungated = [], []
        for ds, fr, info in _frames(real / name, args.stride if name == LMO else 1):
            ds_all = ds
            tg = _targets(ds, fr, info)
            if not tg:
                continue
            dets = [Detection(fr.gt[gi].obj_id, box) for gi, box in tg]
            res = est.estimate(fr.rgb, fr.K, dets, depth=fr.depth if mode == "rgbd" else None,
                               mode=mode, num_hypotheses=max(hyps, 1), coarse_only=hyps == 0)
            for (gi, box), r in zip(tg, res):
                g = fr.gt[gi]
                refused = r.reason_code is Reason.IMPLAUSIBLE_POSE
                T = r.T_cam_obj if r.ok else (r.hypotheses[0].T if refused else None)
                if T is None:
                    est_rows.append(dict(data=name, mode=mode, config=label, im=fr.im_id,
                                         obj=g.obj_id, status=r.status, reason=r.reason))
                    continue
                obj = est.object_model(g.obj_id)
                e_s, e_p, counted = _errors(ds, obj, T, g.T_cam_obj, fr.K, fr.width)
                rep = _check(est, g.obj_id, T, fr, box, mode)
                est_rows.append(dict(data=name, mode=mode, config=label, im=fr.im_id,
                                     obj=g.obj_id, status=r.status, refused=refused,
                                     reason=r.reason,
                                     mssd_rel=e_s, mspd_px=e_p, counted=counted,
                                     visib=float(info[gi].visib_fract), **rep.numbers))
                e = Estimate(fr.scene_id, fr.im_id, int(g.obj_id), float(r.score), T)
                ungated.append(e)
                if r.ok:
                    gated.append(e)
        if ds_all is None:
            continue
        kw = dict(progress=False, compute_vsd=mode == "rgbd")
        ar_before = evaluate(ds_all, estimates=ungated, **kw).ar
        ar_after = evaluate(ds_all, estimates=gated, **kw).ar
        rows = [r for r in est_rows if r["data"] == name and r["config"] == label]
        ref = [r for r in rows if r.get("refused")]
        print(f"\n{name} ({mode}, {label}"
              f"{f', every {args.stride}th image' if name == LMO else ''}): {len(rows)} results, "
              f"refused by the gate {len(ref)}, of them counted in the AR (MSSD < 0.5 d or "
              f"MSPD < 50 px): {sum(r['counted'] for r in ref)}; AR without the gate "
              f"{ar_before:.4f}, with it {ar_after:.4f} ({ar_after - ar_before:+.4f})")
        for r in ref:
            print(f"  refused im {r['im']} obj {r['obj']} visib {r['visib']:.2f}: MSSD "
                  f"{r['mssd_rel']:.2f} d, MSPD {r['mspd_px']:.0f} px: {r['reason'][:220]}")
        out.setdefault("ar", {})[f"{name} {label}"] = {"without_gate": ar_before, "with_gate": ar_after,
                                          "results": len(rows), "refused": len(ref),
                                          "refused_counted": sum(r["counted"] for r in ref)}
        acc = [r for r in rows if r.get("status") == "ok" and r.get("counted")]
        _print_summary(f"Gate numbers at the accepted estimates counted in the AR ({name}, "
                       f"{label})",
                       _summary(acc, DEFAULT_LIMITS), DEFAULT_LIMITS)
    out["estimates"] = est_rows
    print(f"\nwall time {time.monotonic() - t_start:.0f} s")
    return _write(args, out)


def _write(args, out) -> int:
    if args.json:
        p = Path(args.json)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(out, indent=1, default=lambda x: x.item() if hasattr(x, "item")
                                else str(x)))
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
