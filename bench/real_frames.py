"""The two real frames of ../shared/real: errors against ground truth where it exists, overlays.

    OMP_NUM_THREADS=2 .venv/bin/python bench/real_frames.py [--real ../shared/real] [--out out]

* ycbv_s48_im1_masterchefcan (RGB only, GT): RGB mode, GT bbox_visib as the detection; prints
  rotation / translation error, MSSD / diameter, MSPD, ADD-S / diameter of the best pose, of
  every refined hypothesis and of the coarse poses; overlay ``out/ycbv_s48_im1_rgb_overlay.png``.
  The mesh's texture file is missing, so the templates are an untextured grey can.
* ycbvideo_posecnn_demo2_noGT (RGB-D, no GT): RGB-D mode with the hand-drawn box of SOURCE.md;
  prints the pose, the median |rendered - observed| depth over the visible rendered pixels, and
  writes ``out/ycbvideo_demo2_rgbd_overlay.png`` (also the RGB-only estimate for comparison).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np

from coop_ros.bop import metrics
from coop_ros.geometry.se3 import pose_errors
from coop_ros.pipeline.cli import read_camera
from coop_ros.render.overlay import draw_overlay
from coop_ros.pipeline.estimator import Detection, PoseConfig, PoseEstimator


def _errors(T, Tg, obj, K):
    R, t = Tg[:3, :3], Tg[:3, 3]
    rot, tr = pose_errors(T, Tg)
    syms = np.eye(4)[None]
    d = obj.diameter
    return (f"rot {rot:6.1f} deg  trans {tr * 1e3:6.1f} mm (dz {(T[2, 3] - t[2]) * 1e3:+6.1f})  "
            f"MSSD/d {metrics.mssd(T[:3, :3], T[:3, 3], R, t, obj.vertices, syms) / d:.3f}  "
            f"MSPD {metrics.mspd(T[:3, :3], T[:3, 3], R, t, K, obj.vertices, syms):6.1f} px  "
            f"ADD-S/d {metrics.adds(T[:3, :3], T[:3, 3], R, t, obj.vertices) / d:.3f}")


def _overlay(est, key, rgb, K, T, box, path):
    H, W = rgb.shape[:2]
    out = est.renderer.render(est.render_key(key), T, K, width=W, height=H)
    ov = draw_overlay(rgb, out.rgb[0], out.mask[0])
    x, y, w, h = box
    cv2.rectangle(ov, (int(x), int(y)), (int(x + w), int(y + h)), (255, 255, 0), 1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(ov, cv2.COLOR_RGB2BGR))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[2] / "shared" / "real"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "out"))
    ap.add_argument("--hypotheses", type=int, default=5)
    args = ap.parse_args(argv)
    real, outdir = Path(args.real), Path(args.out)
    warnings.simplefilter("ignore")
    est = PoseEstimator(PoseConfig())

    # ---- YCB-V, RGB, GT
    case = real / "ycbv_s48_im1_masterchefcan"
    rgb = cv2.cvtColor(cv2.imread(str(case / "rgb.png")), cv2.COLOR_BGR2RGB)
    K, _, _ = read_camera(case / "scene_camera.json")
    gt = json.loads((case / "scene_gt.json").read_text())["1"][0]
    info = json.loads((case / "scene_gt_info.json").read_text())["1"][0]
    Tg = np.eye(4)
    Tg[:3, :3] = np.array(gt["cam_R_m2c"]).reshape(3, 3)
    Tg[:3, 3] = np.array(gt["cam_t_m2c"]) / 1000.0
    est.add_object("ycbv1", case / "obj_000001.ply", units="mm")
    obj = est.object_model("ycbv1")
    x, y, w, h = info["bbox_visib"]
    box = (x, y, w + 1, h + 1)   # BOP's w = x_max - x_min; a detection spans the pixels
    print(f"== {case.name}: RGB, box bbox_visib {box}, {args.hypotheses} hypotheses")
    for coarse_only in (True, False):
        r = est.estimate(rgb, K, [Detection("ycbv1", box)], mode="rgb",
                         num_hypotheses=args.hypotheses, coarse_only=coarse_only)[0]
        tag = "coarse-only" if coarse_only else "refined"
        if not r.ok:
            print(f"  {tag}: FAILED {r.reason}")
            continue
        print(f"  {tag} best (score {r.score:.3f}, {r.timings['total']:.2f} s): "
              f"{_errors(r.T_cam_obj, Tg, obj, K)}")
        if not coarse_only:
            for h in r.hypotheses:
                print(f"    hyp tmpl {h.template_index:2d} score {h.score:.3f}: refined "
                      f"{_errors(h.T, Tg, obj, K)}")
                print(f"                          coarse  {_errors(h.T_coarse, Tg, obj, K)}")
            sd = np.sqrt(np.diag(r.covariance))
            print(f"    covariance std: t {np.round(sd[:3] * 1e3, 1)} mm, "
                  f"rot {np.round(np.degrees(sd[3:]), 1)} deg")
            p = _overlay(est, "ycbv1", rgb, K, r.T_cam_obj, box,
                         outdir / "ycbv_s48_im1_rgb_overlay.png")
            print(f"    overlay: {outdir / 'ycbv_s48_im1_rgb_overlay.png'} (rendered silhouette "
                  f"{int(p.mask[0].sum())} px; GT px_count_all {info['px_count_all']})")

    # ---- YCB-Video demo, RGB-D, no GT
    case = real / "ycbvideo_posecnn_demo2_noGT"
    rgb = cv2.cvtColor(cv2.imread(str(case / "rgb.png")), cv2.COLOR_BGR2RGB)
    K, scale, _ = read_camera(case / "camera.json")
    depth = cv2.imread(str(case / "depth.png"), cv2.IMREAD_UNCHANGED).astype(np.float32) \
        * scale / 1000.0
    est.add_object("demo1", case / "obj_000001.ply", units="mm")
    box = [303, 150, 110, 172]
    print(f"== {case.name}: box {box} (hand-drawn, SOURCE.md), no GT")
    for mode in ("rgbd", "rgb"):
        r = est.estimate(rgb, K, [Detection("demo1", box)], depth=depth, mode=mode,
                         num_hypotheses=args.hypotheses)[0]
        if not r.ok:
            print(f"  {mode}: FAILED {r.reason}")
            continue
        path = outdir / f"ycbvideo_demo2_{mode}_overlay.png"
        p = _overlay(est, "demo1", rgb, K, r.T_cam_obj, box, path)
        m = p.mask[0] & (depth > 0)
        dz = depth[m] - p.depth[0][m]
        vis = np.abs(dz) < 0.02
        print(f"  {mode}: score {r.score:.3f}, t = {np.round(r.T_cam_obj[:3, 3], 4)} m, "
              f"{r.timings['total']:.2f} s; rendered pixels whose observed depth agrees within "
              f"2 cm: {vis.mean():.2f}, their median |dz| {np.median(np.abs(dz[vis])) * 1e3:.1f} mm;"
              f" overlay {path}")
    est.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
