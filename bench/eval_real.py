"""The real-data benchmark: one table from the real frames with ground truth in ../shared/real.

    OMP_NUM_THREADS=2 .venv/bin/python bench/eval_real.py [--real ../shared/real] [--stride 1]
        [--jobs 1] [--sections lmo,rgbd,keep,judge[,landscape]] [--no-fpfh] [--json out/eval_real.json]

1. LM-O dev (``lmo_rgb_dev``: 96 real Kinect images, 691 targets, RGB only): the pipeline with
   the GT visible boxes as detections, coarse only / 1 / 5 hypotheses, exactly as
   ``coop-ros eval --bop lmo_rgb_dev --estimator coop --mode rgb --hypotheses N [--coarse-only]``.
   No depth, so AR = mean(AR_MSSD, AR_MSPD) (marked AR*). ``--stride N`` evaluates every N-th
   image only (say so when you quote it). Per-object AR and the covariance check of
   bench/eval_synthetic.py (NEES, Spearman) on the refined runs follow the table.
2. The real RGB-D frames (``lm_s6_im0_cat_rgbd``: LINEMOD cat, Kinect; ``ycbvideo_v0000_f000001_
   gelatin_rgbd``: YCB-Video gelatin box, Asus Xtion, depth in 0.1 mm, mesh in metres): RGB-D
   coarse / 1 / 5 hypotheses, AR with VSD; and beside them the baseline a robotics user would
   try first without weights: the observed depth in the box -> FPFH + RANSAC (5 seeds) ->
   point-to-plane ICP (open3d, ``bench/fpfh_baseline.py``). open3d-cpu is not a dependency of
   coop_ros: the first run installs it into its own virtual environment
   (``$COOP_ROS_CACHE/open3d-venv``, default ``~/.cache/coop_ros/open3d-venv``, ~45 s; its
   system library libusb-1.0-0 with apt when run as root).

3. ``--sections keep``: refinement keeps the truth. ``PoseEstimator.refine_pose`` (the
   refinement every hypothesis gets, as a tracker would call it) started exactly at the GT pose
   and at GT + 5 deg / 10 mm (random axis and direction, seeded): 30 LM-O dev targets with
   visib_fract >= 0.5 (evenly spread over the split) in RGB (3 perturbed starts each), the two
   RGB-D frames in RGB-D (10 perturbed starts each). Share within 3 deg / 3 % of the distance (RGB) and 2 deg / 5 mm
   (RGB-D), rotation symmetry-aware, and the median errors.
4. ``--sections landscape`` (not run by default, ~4 min): why the truth is or is not kept. For
   every LM-O dev target with visib_fract >= 0.5 and the RGB-D frames, the share of the evidence
   search's 12 moves (at each of its four step sizes) that score above the GT pose, and the
   share of targets whose GT beats all 12; again from the GT shifted by the image offset that
   scores best (a systematic offset between the GT and the photo shows there). For the RGB-D
   frames also where the depth alone puts the object: point-to-plane ICP
   (:func:`coop_ros.pipeline.icp.icp_point_to_plane`, 30 steps) started at the GT.
5. ``--sections judge``: the judge on LM-O dev, RGB (all targets, or every ``--stride``-th
   image): AR* of the GT perturbed by 5 deg / 10 mm (``coop-ros eval --estimator perturbed``,
   seed 0), of ``refine_pose`` from the GT and from those very poses (``--estimator coop-refine
   --start gt | perturbed``), overall and per visib_fract bin (< 0.5, 0.5-0.8, >= 0.8). The
   refined poses should score at least what the poses they start from score.
6. ``--sections track`` (not run by default): tracking on LM-O dev, RGB. ``coop-ros eval
   --estimator coop-track --hypotheses 5`` (the images in im_id order as one sequence: the first
   image's targets estimated with 5 hypotheses, later ones tracked from the previous poses --
   ``static_scene`` prediction, the camera motion from the tracked objects' centres and their
   new boxes --, re-estimated when a track is lost) beside per-frame ``coop`` with 5
   hypotheses, AR* and seconds per target from the same run, and the tracks' statuses and
   causes of loss. ``--track-motion``, ``--track-min-evidence``, ``--track-levels`` pass on.

Times are seconds per target (the estimator's wall time per image / its targets, templates
loaded from the disk cache); with ``--jobs N`` N configurations run at once in separate
processes sharing the cores, so quote times from ``--jobs 1``. Skips cleanly (exit 0) when
../shared/real is absent.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from argparse import Namespace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LMO = "lmo_rgb_dev"
RGBD = ("lm_s6_im0_cat_rgbd", "ycbvideo_v0000_f000001_gelatin_rgbd")
CONFIGS = {"lmo": [("rgb", 0), ("rgb", 1), ("rgb", 5)],
           "rgbd": [("rgbd", 0), ("rgbd", 1), ("rgbd", 5)]}


def _dataset(path: Path, stride: int = 1):
    from coop_ros.bop.dataset import BopDataset
    ds = BopDataset(path)
    if stride > 1:
        all_t = ds.targets()
        keep = set(sorted({(t.scene_id, t.im_id) for t in all_t})[::stride])
        sub = [t for t in all_t if (t.scene_id, t.im_id) in keep]
        ds.targets = lambda: list(sub)   # noqa: E731  (this benchmark's subset)
    return ds


def _coop_row(path: Path, mode: str, hyps: int, args, variant: str = "") -> dict:
    """Evaluate one configuration of the pipeline on one dataset folder; a table row.
    ``variant`` "track": the ``coop-track`` estimator (each scene's images in im_id order as one
    sequence, tracked from the first frame's ``hyps``-hypothesis estimates, re-estimated with
    ``hyps`` hypotheses when lost; section 6 of the module docstring)."""
    from coop_ros.bop.evaluate import evaluate
    from coop_ros.bop.coop_adapter import make_estimator, make_track_estimator
    ds = _dataset(path, args.stride if path.name == LMO else 1)
    ns = Namespace(mode=mode, hypotheses=max(hyps, 1), coarse_only=hyps == 0, gt_box="visib",
                   backend="weight-free", template_cache=args.template_cache, precision="fp32",
                   coarse_ckpt=None, refiner_ckpt=None, selection_ckpt=None, device="cpu",
                   track_motion=getattr(args, "track_motion", None),
                   track_min_evidence=getattr(args, "track_min_evidence", None),
                   track_levels=getattr(args, "track_levels", None))
    records: list = []
    track = variant == "track"
    fn = make_track_estimator(ns, ds, records=records) if track else \
        make_estimator(ns, ds, records)
    name = f"coop{'-track' if track else ''} {mode} " + ("coarse" if hyps == 0 else
                                                           f"{hyps} hyp")
    rep = evaluate(ds, fn, progress=False, compute_vsd=True, estimator_name=name)
    print(f"done {path.name} {mode}:{hyps}{':track' if track else ''}: AR {rep.ar:.3f}",
          file=sys.stderr, flush=True)
    row = _row(rep, path.name, mode, ("tracked, " if track else "") + (
        "coarse only" if hyps == 0 else f"{hyps} hypothes{'is' if hyps == 1 else 'es'}"))
    if track:
        from collections import Counter
        row["track_status"] = dict(Counter(r.status for _, _, r, _ in records))
        row["track_lost"] = dict(Counter(r.reason.split(":")[1].strip() for _, _, r, _ in records
                                         if r.reason))
    elif hyps > 0:
        sys.path.insert(0, str(ROOT / "bench"))
        from eval_synthetic import covariance_stats
        row["covariance"] = covariance_stats(records, ds)
    return row


def _row(rep, data: str, mode: str, method: str) -> dict:
    return {"data": data, "mode": mode, "method": method, "n": rep.n_targets,
            "ar_vsd": rep.ar_vsd, "ar_mssd": rep.ar_mssd, "ar_mspd": rep.ar_mspd, "ar": rep.ar,
            "ar_def": rep.ar_definition, "s_per_target": rep.mean_time_per_target,
            "ar_best_of_hypotheses": rep.ar_best_of_hypotheses,
            "ar_mssd_best_coarse": rep.ar_mssd_best_coarse,
            "by_visibility": rep.by_visibility(),
            "per_object": {str(k): v for k, v in rep.per_object().items()},
            "missing": [f"{t.obj_id}: {t.reason}" for t in rep.targets if not t.has_estimate]}


# --------------------------------------------------------------------------- keeps the truth

#: (rotation [deg], translation) limits of "kept": RGB translation as a fraction of the distance,
#: RGB-D in metres
KEEP_LIMITS = {"rgb": (3.0, 0.03), "rgbd": (2.0, 0.005)}
#: perturbed starts per target (RGB: 30 LM-O dev targets; RGB-D: the two frames)
KEEP_STARTS = {"rgb": 3, "rgbd": 10}


def _keep_errors(T, Tg, obj) -> tuple[float, float]:
    """Rotation [deg] and translation [m] error against the closest symmetric GT pose."""
    from coop_ros.geometry.se3 import pose_errors
    errs = [pose_errors(T, Tg @ S) for S in obj.symmetry_transforms(0.01)]
    return min(errs, key=lambda e: e[0] / 180.0 + e[1] / obj.diameter)


def _rgbd_targets(real: Path) -> list[tuple]:
    """(dataset, data name, frame, GT index, visible box) of every target with visib_fract >= 0.5
    in the real RGB-D frames (GT info computed from the depth where a folder has none)."""
    from coop_ros.bop.dataset import compute_gt_info
    out = []
    for d in RGBD:
        if not (real / d).is_dir():
            continue
        ds = _dataset(real / d)
        for k in ds.images():
            fr = ds.frame(*k)
            info = fr.gt_info or compute_gt_info(fr, ds)
            out += [(ds, d, fr, j, info[j].detection_box()) for j, g in enumerate(fr.gt)
                    if ds.has_model(g.obj_id) and info[j].visib_fract >= 0.5]
    return out


def _registered(ests: dict, data: str, ds, obj_id, args):
    """The estimator of dataset ``data`` (one per dataset: object ids are per dataset), with
    object ``obj_id`` registered."""
    from coop_ros.pipeline.estimator import PoseConfig, PoseEstimator
    est = ests.setdefault(data, PoseEstimator(PoseConfig(template_cache_dir=args.template_cache)))
    if not est.has_object(obj_id):
        est.add_object(obj_id, ds.object(obj_id))
    return est


def _keep_rows(real: Path, args) -> list[dict]:
    """Refinement keeps the truth (section 3 of the module docstring): table rows."""
    from coop_ros.geometry.se3 import perturb_pose
    from coop_ros.pipeline.estimator import Detection
    ests: dict = {}
    cases = []        # (dataset, data, mode, frame, gt index, box, perturbed starts)
    if (real / LMO).is_dir():
        ds = _dataset(real / LMO)
        frames = {k: ds.frame(*k) for k in ds.images()}
        inst = [(k, j) for k in sorted(frames) for j, gi in enumerate(frames[k].gt_info)
                if gi.visib_fract >= 0.5 and ds.has_model(frames[k].gt[j].obj_id)]
        for k, j in inst[::max(len(inst) // 30, 1)][:30]:
            cases.append((ds, LMO, "rgb", frames[k], j, frames[k].gt_info[j].detection_box(),
                          KEEP_STARTS["rgb"]))
    cases += [(ds, d, "rgbd", fr, j, box, KEEP_STARTS["rgbd"])
              for ds, d, fr, j, box in _rgbd_targets(real)]
    rng = np.random.default_rng(0)
    res: dict = {}
    for ds, data, mode, fr, j, box, n_pert in cases:
        g = fr.gt[j]
        obj = ds.object(g.obj_id)
        est = _registered(ests, data, ds, g.obj_id, args)
        starts = [("GT", g.T_cam_obj)] + [("GT + 5 deg / 10 mm",
                                           perturb_pose(g.T_cam_obj, 5.0, 0.010, rng))
                                          for _ in range(n_pert)]
        for start, T0 in starts:
            t0 = time.perf_counter()
            r = est.refine_pose(fr.rgb, fr.K, Detection(g.obj_id, tuple(map(float, box))), T0,
                                depth=fr.depth if mode == "rgbd" else None, mode=mode)
            dt = time.perf_counter() - t0
            rot, tr = _keep_errors(r.T_cam_obj, g.T_cam_obj, obj)
            if mode == "rgb":
                tr = tr / float(np.linalg.norm(g.T_cam_obj[:3, 3]))
            res.setdefault((data if data == LMO else "real RGB-D frames", mode, start),
                           []).append((rot, tr, dt))
    rows = []
    for (data, mode, start), v in res.items():
        a = np.array(v)
        lr, lt = KEEP_LIMITS[mode]
        rows.append({"data": data, "mode": mode, "start": start, "n": len(a),
                     "kept": float(np.mean((a[:, 0] < lr) & (a[:, 1] < lt))),
                     "rot_median": float(np.median(a[:, 0])),
                     "tr_median": float(np.median(a[:, 1])),
                     "s_per_target": float(np.mean(a[:, 2]))})
    return rows


def print_keep_table(rows: list[dict]) -> None:
    print("\nRefinement keeps the truth (refine_pose from GT and from GT + 5 deg / 10 mm):\n")
    print("| data | mode | start | n | kept | median rotation | median translation | s / target |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        lr, lt = KEEP_LIMITS[r["mode"]]
        lim = f"{lr:.0f} deg / " + (f"{100 * lt:.0f} %" if r["mode"] == "rgb"
                                    else f"{lt * 1e3:.0f} mm")
        tr = (f"{100 * r['tr_median']:.2f} %" if r["mode"] == "rgb"
              else f"{1e3 * r['tr_median']:.2f} mm")
        print(f"| {r['data']} | {r['mode']} | {r['start']} | {r['n']} | {100 * r['kept']:.0f} % "
              f"within {lim} | {r['rot_median']:.2f} deg | {tr} | {r['s_per_target']:.2f} |")


# --------------------------------------------------------------------------- the judge

#: the perturbation of the judge section (as ``coop-ros eval --estimator perturbed``'s default)
JUDGE_PERTURBATION = (5.0, 10.0, 0)     # degrees, millimetres, seed


def _judge_rows(real: Path, args) -> list[dict]:
    """Section 5 of the module docstring: on LM-O dev (``--stride``), RGB, AR of the GT perturbed
    by 5 deg / 10 mm as they are, and of ``refine_pose`` from the GT and from those poses
    (``coop-ros eval --estimator perturbed`` and ``--estimator coop-refine --start gt |
    perturbed``), overall and by visib_fract."""
    from coop_ros.bop.coop_adapter import make_refine_estimator
    from coop_ros.bop.evaluate import evaluate, perturbed_estimator
    if not (real / LMO).is_dir():
        return []
    ds = _dataset(real / LMO, args.stride)
    rot, tr_mm, seed = JUDGE_PERTURBATION
    rows = []
    est = None
    for name, start in (("GT + 5 deg / 10 mm, unrefined", None), ("refine_pose from GT", "gt"),
                        ("refine_pose from GT + 5 deg / 10 mm", "perturbed")):
        if start is None:
            fn = perturbed_estimator(rot, tr_mm / 1000.0, seed)
        else:
            ns = Namespace(mode="rgb", gt_box="visib", backend="weight-free",
                           template_cache=args.template_cache, precision="fp32",
                           coarse_ckpt=None, refiner_ckpt=None, selection_ckpt=None,
                           device="cpu", start=start, rot_deg=rot, trans_mm=tr_mm, seed=seed)
            fn = make_refine_estimator(ns, ds, estimator=est)
        rep = evaluate(ds, fn, progress=False, compute_vsd=False, estimator_name=name)
        print(f"done judge {name}: AR {rep.ar:.3f}", file=sys.stderr, flush=True)
        row = _row(rep, LMO, "rgb", name)
        row["section"] = "judge"
        rows.append(row)
    return rows


def print_judge_table(rows: list[dict], stride: int) -> None:
    print(f"\nThe judge on LM-O dev{f' (every {stride}th image)' if stride > 1 else ''}, RGB: "
          "refine_pose from the GT and from GT + 5 deg / 10 mm (seeded as coop-ros eval "
          "--estimator perturbed), beside the unrefined perturbed poses; AR* by visib_fract:\n")
    bins = [b["bin"] for b in rows[0]["by_visibility"]]
    print("| start | targets | AR_MSSD | AR_MSPD | AR* | " + " | ".join(
        f"AR* visib {b}" for b in bins) + " | s / target |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(bins) + "---:|")
    for r in rows:
        vis = " | ".join(f"{_fmt(b['ar'])} ({b['n']})" for b in r["by_visibility"])
        print(f"| {r['method']} | {r['n']} | {_fmt(r['ar_mssd'])} | {_fmt(r['ar_mspd'])} "
              f"| {_fmt(r['ar'])} | {vis} | {_fmt(r['s_per_target'], 3)} |")


# --------------------------------------------------------------------------- evidence landscape

#: (rotation [deg], shift [evidence-crop px], depth [fraction]) of the evidence search's levels
LANDSCAPE_LEVELS = [(8.0 * 0.5 ** k, 4.0 * 0.5 ** k, 0.04 * 0.5 ** k) for k in range(4)]


def _landscape_rows(real: Path, args) -> list[dict]:
    """How sharply the evidence peaks at the ground truth (section 4 of the module docstring).

    For every LM-O dev target with visib_fract >= 0.5 (every ``--stride``-th image) and the
    real RGB-D frames: the evidence of the GT pose against the 12 moves of the evidence search
    (:func:`coop_ros.pipeline.search.pose_moves`) at each of its levels, from the GT pose and
    from the GT pose shifted by the image offset that scores best on a +-2 crop px grid (0.5 px
    steps). A search started at the GT stays there only when no move beats it."""
    from coop_ros.evidence import Evidence
    from coop_ros.geometry.se3 import orthonormalized
    from coop_ros.pipeline.icp import icp_point_to_plane
    from coop_ros.pipeline.search import pose_moves
    from coop_ros.pipeline.views import QueryImage, RenderTarget
    cases = []
    rows_icp = []
    if (real / LMO).is_dir():
        ds = _dataset(real / LMO)
        for k in sorted(ds.images())[::max(args.stride, 1)]:
            fr = ds.frame(*k)
            cases += [(ds, LMO, "rgb", fr, j, gi.detection_box()) for j, gi in enumerate(fr.gt_info)
                      if gi.visib_fract >= 0.5 and ds.has_model(fr.gt[j].obj_id)]
    cases += [(ds, d, "rgbd", fr, j, box) for ds, d, fr, j, box in _rgbd_targets(real)]
    ests: dict = {}
    grid = np.arange(-2.0, 2.001, 0.5)
    res: dict = {}
    for ds, data, mode, fr, j, box in cases:
        g = fr.gt[j]
        obj = ds.object(g.obj_id)
        est = _registered(ests, data, ds, g.obj_id, args)
        key = est.evidence_key(g.obj_id)
        ev = Evidence(fr.rgb, fr.K, box, depth=fr.depth if mode == "rgbd" else None)
        f = 0.5 * (ev.K[0, 0] + ev.K[1, 1])
        Tg = orthonormalized(g.T_cam_obj)
        z = float((Tg[:3, :3] @ obj.center + Tg[:3, 3])[2])
        shifted = np.repeat(Tg[None], grid.size ** 2, axis=0)
        shifted[:, 0, 3] += np.tile(grid, grid.size) * z / f
        shifted[:, 1, 3] += np.repeat(grid, grid.size) * z / f
        s_grid = ev.evaluate(est.renderer, key, shifted)[0]
        b = int(np.argmax(s_grid))
        name = data if data == LMO else "real RGB-D frames"
        res.setdefault((name, "offset"), []).append((grid[b % grid.size], grid[b // grid.size]))
        if mode == "rgbd":       # where the depth alone puts the object: ICP from the GT
            q = QueryImage(rgb=fr.rgb, K=fr.K, depth=fr.depth, box=np.asarray(box, np.float64))
            target = RenderTarget(est.renderer, est.render_key(g.obj_id), est.object_model(
                g.obj_id), est.config.crop_size)
            rot, tr = _keep_errors(icp_point_to_plane(Tg, q, target, 30)[0], Tg, obj)
            rows_icp.append({"section": "landscape", "data": data, "icp_from_gt_rot_deg": rot,
                             "icp_from_gt_tr_mm": 1e3 * tr})
        for start, T0, s0 in (("GT", Tg, s_grid[grid.size ** 2 // 2]),
                              ("GT shifted by its best offset", shifted[b], s_grid[b])):
            for lv, (a, p, dz) in enumerate(LANDSCAPE_LEVELS):
                moves = pose_moves(T0, obj.center, f, np.radians(a), p, dz)[0]
                above = ev.evaluate(est.renderer, key, moves)[0] > s0
                res.setdefault((name, start, lv), []).append(above)
    rows = list(rows_icp)
    for key, v in res.items():
        if key[1] == "offset":
            rows.append({"section": "landscape", "data": key[0], "offset_median_px":
                         np.median(np.array(v), axis=0).tolist(), "n": len(v)})
            continue
        a = np.array(v)                        # (targets, 12): tx-, tx+, ty-, ty+, z-, z+, r..
        rot, sh, dz = LANDSCAPE_LEVELS[key[2]]
        rows.append({"section": "landscape", "data": key[0], "start": key[1], "level": key[2],
                     "rot_deg": rot, "shift_px": sh, "depth_frac": dz, "n": len(a),
                     "above_shift": float(a[:, :4].mean()), "above_depth": float(a[:, 4:6].mean()),
                     "above_rot": float(a[:, 6:].mean()),
                     "gt_above_all": float((~a).all(1).mean())})
    return rows


def print_landscape_table(rows: list[dict]) -> None:
    print("\nEvidence landscape at the GT (share of the evidence search's moves that score above "
          "the start):\n")
    print("| data | start | move sizes | n | shift moves above | depth moves above "
          "| rotation moves above | start above all 12 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "level" in r:
            print(f"| {r['data']} | {r['start']} | {r['rot_deg']:g} deg / {r['shift_px']:g} px / "
                  f"{100 * r['depth_frac']:g} % | {r['n']} | {100 * r['above_shift']:.0f} % "
                  f"| {100 * r['above_depth']:.0f} % | {100 * r['above_rot']:.0f} % "
                  f"| {100 * r['gt_above_all']:.0f} % |")
    for r in rows:
        if "icp_from_gt_rot_deg" in r:
            print(f"\n{r['data']}: point-to-plane ICP on the depth alone, started at the GT, ends "
                  f"{r['icp_from_gt_rot_deg']:.2f} deg / {r['icp_from_gt_tr_mm']:.1f} mm from it")
    for r in rows:
        if "offset_median_px" in r:
            dx, dy = r["offset_median_px"]
            print(f"\n{r['data']}: best image offset of the GT rendering, median over {r['n']} "
                  f"targets: dx {dx:+.1f}, dy {dy:+.1f} evidence-crop px")


# --------------------------------------------------------------------------- FPFH baseline

def _open3d_python(cache: Path) -> Path:
    """The python of the open3d virtual environment (made on first use). Raises RuntimeError
    with the reason when it cannot be installed."""
    venv = cache / "open3d-venv"
    py = venv / "bin" / "python"
    ok = py.is_file() and subprocess.run([str(py), "-c", "import open3d"],
                                         capture_output=True).returncode == 0
    if ok:
        return py
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run("dpkg -s libusb-1.0-0 >/dev/null 2>&1 || (apt-get update -qq && "
                       "apt-get install -y -qq libusb-1.0-0)", shell=True,
                       capture_output=True)
    print(f"installing open3d-cpu==0.20.0 into {venv} (FPFH baseline, once)", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "open3d-cpu==0.20.0"],
             [str(py), "-c", "import open3d"]]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed: {(r.stderr or r.stdout)[-300:]}")
    return py


def _fpfh_row(path: Path, py: Path) -> dict:
    from coop_ros.bop.dataset import Estimate, compute_gt_info, valid_gt_indices
    from coop_ros.bop.evaluate import evaluate
    from coop_ros.geometry.camera import backproject_depth
    ds = _dataset(path)
    jobs, keys = {}, []
    for (s, i) in ds.images():
        fr = ds.frame(s, i)
        if fr.depth is None:
            continue
        info = fr.gt_info or compute_gt_info(fr, ds)
        for tg in [t for t in ds.targets() if (t.scene_id, t.im_id) == (s, i)]:
            for gi in valid_gt_indices(fr, tg):
                x, y, w, h = info[gi].bbox_visib
                m = np.zeros(fr.depth.shape, bool)
                m[y:y + h + 1, x:x + w + 1] = True
                P, valid = backproject_depth(np.where(m, fr.depth, 0.0), fr.K)
                k = len(keys)
                jobs[f"scene_{k}"] = P[valid]
                jobs[f"model_{k}"] = ds.object(tg.obj_id).sample_surface(20000)
                keys.append((s, i, tg.obj_id))
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "jobs.npz", **jobs)
        subprocess.run([str(py), str(ROOT / "bench" / "fpfh_baseline.py"),
                        str(Path(tmp) / "jobs.npz"), str(Path(tmp) / "out.json")], check=True)
        res = json.loads((Path(tmp) / "out.json").read_text())
    ests = [Estimate(s, i, o, r["fitness"], np.asarray(r["T"]), r["time_s"])
            for (s, i, o), r in zip(keys, res)]
    rep = evaluate(ds, estimates=ests, progress=False, estimator_name="fpfh")
    rep.mean_time_per_target = float(np.mean([r["time_s"] for r in res]))
    return _row(rep, path.name, "rgbd", "FPFH + RANSAC + ICP (open3d)")


# --------------------------------------------------------------------------- table

def _fmt(x, nd=3):
    return "n/a" if x is None else f"{x:.{nd}f}"


def print_table(rows: list[dict], stride: int) -> None:
    print("\n| data | mode | method | targets | AR_VSD | AR_MSSD | AR_MSPD | AR | s / target |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        name = r["data"] + (f" (every {stride}th image)" if r["data"] == LMO and stride > 1
                            else "")
        ar = _fmt(r["ar"]) + ("*" if r["ar_vsd"] is None else "")
        print(f"| {name} | {r['mode']} | {r['method']} | {r['n']} | {_fmt(r['ar_vsd'])} "
              f"| {_fmt(r['ar_mssd'])} | {_fmt(r['ar_mspd'])} | {ar} "
              f"| {_fmt(r['s_per_target'], 2)} |")
    print("\nAR* = mean(AR_MSSD, AR_MSPD): LM-O dev has no depth images, so no VSD. GT visible "
          "boxes as detections; weight-free backend.")
    lmo = [r for r in rows if r["data"] == LMO]
    if lmo:
        objs = sorted({int(k) for r in lmo for k in r["per_object"]})
        print("\nLM-O dev, AR* per object:\n")
        print("| object | targets | " + " | ".join(r["method"] for r in lmo) + " |")
        print("|---:|---:|" + "---:|" * len(lmo))
        for o in objs:
            n = lmo[0]["per_object"][str(o)]["n"]
            print(f"| {o} | {n} | " + " | ".join(_fmt(r["per_object"][str(o)]["ar"])
                                               for r in lmo) + " |")
    orc = [r for r in rows if r.get("ar_best_of_hypotheses") is not None]
    if orc:
        print("\nOracles of the same runs (coop-ros eval's ar_best_of_hypotheses: per target the "
              "hypothesis with the lowest error of each metric; ar_mssd_best_coarse: the best "
              "coarse pose's AR_MSSD), overall and by visib_fract:\n")
        print("| data | mode | method | visib_fract | targets | AR | best of hypotheses AR "
              "| AR_MSSD | best coarse AR_MSSD |")
        print("|---|---|---|---|---:|---:|---:|---:|---:|")
        for r in orc:
            star = "*" if r["ar_vsd"] is None else ""
            parts = [dict(bin="all", n=r["n"], ar=r["ar"], ar_mssd=r["ar_mssd"],
                          ar_best_of_hypotheses=r["ar_best_of_hypotheses"],
                          ar_mssd_best_coarse=r["ar_mssd_best_coarse"])]
            parts += [b for b in r.get("by_visibility", []) if b["n"]] if r["n"] > 1 else []
            for b in parts:
                print(f"| {r['data']} | {r['mode']} | {r['method']} | {b['bin']} | {b['n']} "
                      f"| {_fmt(b['ar'])}{star} | {_fmt(b['ar_best_of_hypotheses'])}{star} "
                      f"| {_fmt(b['ar_mssd'])} | {_fmt(b['ar_mssd_best_coarse'])} |")
    cov = [r for r in rows if r.get("covariance", {}).get("nees_median") is not None]
    if cov:
        print("\nCovariance check (refined runs; NEES e^T Sigma^-1 e, chi-square(6) median 5.35; "
              "inflation from the first half of the targets, NEES median of the second half "
              "after it; Spearman rank correlation of predicted and actual error size; results "
              "marked ambiguous, with the share of those and of all more than 30 deg off):\n")
        print("| data | mode | method | n | NEES median | inflation (1st half) "
              "| NEES median held-out | Spearman | ambiguous (> 30 deg off) | all > 30 deg off |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in cov:
            c = r["covariance"]
            amb = c.get("ambiguous_rot_over_30")
            print(f"| {r['data']} | {r['mode']} | {r['method']} | {c['n']} "
                  f"| {_fmt(c['nees_median'], 1)} | {_fmt(c['inflation_first_half'], 2)} "
                  f"| {_fmt(c['nees_median_heldout_calibrated'], 1)} | {_fmt(c['spearman'], 2)} "
                  f"| {c.get('ambiguous', 0)}" + ("" if amb is None else f" ({100 * amb:.0f} %)")
                  + f" | {100 * c.get('rot_over_30', 0.0):.0f} % |")
    for r in rows:
        if r["missing"]:
            print(f"\n{r['data']} {r['mode']} {r['method']}: {len(r['missing'])} target(s) "
                  "without an estimate: " + "; ".join(r["missing"][:10]))


def print_track_table(rows: list[dict], stride: int) -> None:
    """Section 6: tracked against per-frame on LM-O dev (rows of the same run)."""
    per = next((r for r in rows if r["data"] == LMO and r["method"] == "5 hypotheses"), None)
    trk = next((r for r in rows if r["data"] == LMO and r["method"] == "tracked, 5 hypotheses"),
               None)
    if per is None or trk is None:
        return
    print(f"\nTracking on LM-O dev{f' (every {stride}th image)' if stride > 1 else ''}, RGB: the "
          "images in im_id order as one sequence (coop-track), against per-frame estimates "
          "(same run; goal: AR* >= per-frame - 0.02 at <= 0.25 x its time):\n")
    print("| method | targets | AR_MSSD | AR_MSPD | AR* | s / target | time vs per-frame |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in (per, trk):
        ratio = r["s_per_target"] / per["s_per_target"] if per["s_per_target"] else None
        print(f"| {r['method']} | {r['n']} | {_fmt(r['ar_mssd'])} | {_fmt(r['ar_mspd'])} "
              f"| {_fmt(r['ar'])}* | {_fmt(r['s_per_target'], 2)} | {_fmt(ratio, 2)} |")
    print(f"\ntracked results by status: {trk.get('track_status')}; tracks lost by cause: "
          f"{trk.get('track_lost')}")


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", default=str(ROOT.parent / "shared" / "real"))
    ap.add_argument("--stride", type=int, default=1, help="LM-O dev: every N-th image")
    ap.add_argument("--sections", default="lmo,rgbd,keep,judge")
    ap.add_argument("--jobs", type=int, default=1, help="configurations evaluated at once")
    ap.add_argument("--no-fpfh", action="store_true", help="skip the open3d baseline")
    ap.add_argument("--template-cache", default=os.environ.get("COOP_ROS_CACHE", str(
        Path.home() / ".cache" / "coop_ros")) + "/templates")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--track-motion", default=None, help="section track: coop-track --track-motion")
    ap.add_argument("--track-min-evidence", type=float, default=None,
                    help="section track: coop-track --track-min-evidence")
    ap.add_argument("--track-levels", default=None, help="section track: coop-track --track-levels")
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)      # worker: DATA:MODE:N
    ap.add_argument("--row-json", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    real = Path(args.real)
    if not real.is_dir():
        print(f"eval_real: {real} not found: no real data, nothing to evaluate (skipped)")
        return 0
    if args.only:
        data, mode, h, *var = args.only.split(":")
        row = _coop_row(real / data, mode, int(h), args, var[0] if var else "")
        if args.row_json:
            Path(args.row_json).write_text(json.dumps(row))
        else:
            print_table([row], args.stride)
        return 0
    sections = [s for s in args.sections.split(",") if s]
    work = []
    if "lmo" in sections and (real / LMO).is_dir():
        work += [(LMO, m, h) for m, h in CONFIGS["lmo"]]
    if "rgbd" in sections:
        work += [(d, m, h) for d in RGBD if (real / d).is_dir() for m, h in CONFIGS["rgbd"]]
    if "track" in sections and (real / LMO).is_dir():
        work += [w for w in [(LMO, "rgb", 5), (LMO, "rgb", 5, "track")] if w not in work]
    t0 = time.perf_counter()
    rows = _run(work, args, argv if argv is not None else sys.argv[1:])
    if "rgbd" in sections and not args.no_fpfh:
        cache = Path(os.environ.get("COOP_ROS_CACHE", Path.home() / ".cache" / "coop_ros"))
        try:
            py = _open3d_python(cache)
            for d in RGBD:
                if (real / d).is_dir():
                    rows.append(_fpfh_row(real / d, py))
        except (RuntimeError, subprocess.CalledProcessError) as e:
            print(f"FPFH baseline not run: {e}", file=sys.stderr)
    order = {d: i for i, d in enumerate((LMO,) + RGBD)}
    methods = ["coarse only", "1 hypothesis", "5 hypotheses", "tracked, 5 hypotheses"]
    rows.sort(key=lambda r: (order.get(r["data"], 9), r["mode"],
                             methods.index(r["method"]) if r["method"] in methods else 9))
    if rows:
        print_table(rows, args.stride)
    if "track" in sections:
        print_track_table(rows, args.stride)
    keep = _keep_rows(real, args) if "keep" in sections else []
    if keep:
        print_keep_table(keep)
    judge = _judge_rows(real, args) if "judge" in sections else []
    if judge:
        print_judge_table(judge, args.stride)
    land = _landscape_rows(real, args) if "landscape" in sections else []
    if land:
        print_landscape_table(land)
    print(f"\n(wall time {time.perf_counter() - t0:.0f} s, --jobs {args.jobs})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows + keep + judge + land, indent=1))
    return 0


def _run(work, args, argv) -> list[dict]:
    if args.jobs <= 1:
        return [_coop_row(Path(args.real) / w[0], w[1], w[2], args, *w[3:]) for w in work]
    from concurrent.futures import ThreadPoolExecutor
    base, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--jobs":
            skip = True
        elif not a.startswith("--jobs="):
            base.append(a)
    with tempfile.TemporaryDirectory() as tmp:
        def one(w):
            out = Path(tmp) / f"{w[0]}_{w[1]}_{w[2]}.json"
            subprocess.run([sys.executable, __file__, *base, "--only", ":".join(map(str, w)),
                            "--row-json", str(out)], check=True)
            return json.loads(out.read_text())
        # the slowest configurations first, so the jobs finish together
        ordered = sorted(work, key=lambda w: (w[0] != LMO, -w[2], len(w)))
        with ThreadPoolExecutor(args.jobs) as pool:
            return list(pool.map(one, ordered))


if __name__ == "__main__":
    sys.exit(main())
