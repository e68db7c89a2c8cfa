"""Per-stage CPU time of the Co-op pipeline (weight-free backend): a printed table.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_pipeline.py [--frames 5] [--object textured_box]

Stages: template bank (42 views rendered + the matcher's per-object features, no cache; once per
object), coarse (matching + PnP / Kabsch), each refine iteration (summed over hypotheses; RGB-D:
flow + MAGSAC++ iterations then the ICP as one entry), selection, total per object. Mean over
``--frames`` synthetic frames (seeded), for 1 and 5 hypotheses, RGB and RGB-D.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from coop_ros.synth.procedural import make_object, random_background
from coop_ros.geometry.se3 import make_pose, random_rotation
from coop_ros.pipeline.estimator import Detection, PoseConfig, PoseEstimator
from coop_ros.render.renderer import Light
from coop_ros.render.templates import build_template_bank

K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--object", default="textured_box")
    args = ap.parse_args(argv)
    obj = make_object(args.object, seed=0)
    est = PoseEstimator(PoseConfig())
    t0 = time.perf_counter()
    bank = build_template_bank(obj, est.renderer, use_cache=False)
    t_bank = time.perf_counter() - t0
    t0 = time.perf_counter()
    est.backend.matcher.prepare(bank)
    t_feat = time.perf_counter() - t0
    est.add_object(1, obj)
    est.renderer.add_object("scene", obj)
    frames = []
    for seed in range(args.frames):
        rng = np.random.default_rng(100 + seed)
        R = random_rotation(rng)
        t = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.07, 0.07), rng.uniform(0.5, 0.8)])
        T = make_pose(R, t - R @ obj.center)
        out = est.renderer.render_scene([("scene", T)], K, 640, 480, light=Light.random(rng),
                                        background=random_background(480, 640, rng))
        rows, cols = np.nonzero(out.mask[0])
        box = (cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
        frames.append((out.rgb[0], out.depth[0] + (out.depth[0] == 0) * 1.2, box))
    print(f"object {args.object}; template bank: {t_bank:.2f} s render (42 views, 224 px) + "
          f"{t_feat:.2f} s matcher features, once per object (then disk-cached)")
    print(f"{args.frames} frames, CPU, {est.renderer.gl_renderer}; seconds per object (mean)\n")
    cols = ["coarse", "refine_iter_0", "refine_iter_1", "refine_iter_2", "refine_iter_3",
            "refine_iter_4", "selection", "total"]
    print("| mode | hyps | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    for mode in ("rgb", "rgbd"):
        for h in (1, 5):
            acc = {c: [] for c in cols}
            for rgb, depth, box in frames:
                r = est.estimate(rgb, K, [Detection(1, box)], depth=depth, mode=mode,
                                 num_hypotheses=h)[0]
                for c in cols:
                    acc[c].append(r.timings.get(c, np.nan))
            cells = []
            for c in cols:
                v = np.array(acc[c], float)
                cells.append("-" if np.all(np.isnan(v)) else f"{np.nanmean(v):.3f}")
            print(f"| {mode} | {h} | " + " | ".join(cells) + " |")
    print("\nrgb: refine_iter_0..3 = render + DIS flow + weighted LM PnP (+ Gauss-Newton in the "
          "last), refine_iter_4 = the depth check (13 renders along the viewing ray; only for weakly textured renderings, else a texture test only)")
    print("rgbd: refine_iter_0/1 = render + flow + MAGSAC++ Kabsch, refine_iter_2 = the "
          "point-to-plane ICP (up to 10 re-rendered steps)")
    print("times are summed over the hypotheses of one object")
    est.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
