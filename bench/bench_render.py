"""Benchmark of the renderer and the template bank; prints a markdown table.

    .venv/bin/python bench/bench_render.py [--device cpu] [--runs 10]

Mesh: a torus with 20480 faces (closed, so back faces are culled) and the same torus made
"open" (one duplicated face: no culling), both 0.22 m wide, vertex-coloured. Times are the mean
(and standard deviation) over ``--runs`` runs after one warm-up run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coop_ros.geometry.se3 import make_pose, rotvec_to_matrix  # noqa: E402
from coop_ros.objects import ObjectModel  # noqa: E402
from coop_ros.render import Renderer  # noqa: E402
from coop_ros.render.templates import build_template_bank, template_camera  # noqa: E402
from coop_ros.geometry.viewpoints import template_poses  # noqa: E402


def _time(fn, runs: int) -> tuple[float, float]:
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.mean(ts)), float(np.std(ts))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()

    m = trimesh.creation.torus(0.08, 0.03, major_sections=128, minor_sections=80)
    V, F = np.asarray(m.vertices), np.asarray(m.faces)
    colors = (0.5 + 0.5 * V / np.abs(V).max(axis=0)).astype(np.float32)
    obj = ObjectModel(name="torus20k", vertices=V, faces=F, vertex_colors=colors)
    K224, dist = template_camera(obj.diameter, 224)
    poses42 = template_poses(42, distance=dist, center=obj.center)
    K640 = np.array([[1066.778, 0, 312.9869], [0, 1067.487, 241.3109], [0, 0, 1]])
    T640 = make_pose(rotvec_to_matrix(np.array([0.9, -0.4, 0.3])), [0.0, 0.0, 0.8])

    rows = []
    with Renderer(224, 224, device=args.device) as r:
        gl = r.gl_renderer
        r.add_object("torus", obj)
        r.add_mesh("open", V, np.concatenate([F, F[:1]]), vertex_colors=colors)
        for key, label in (("torus", "closed, culled"), ("open", "open, no culling")):
            rows.append((f"42 templates 224x224, 20k faces ({label}), one render() call",
                         *_time(lambda key=key: r.render(key, poses42, K224), args.runs), 0.5))
            rows.append((f"1 render 224x224, 20k faces ({label})",
                         *_time(lambda key=key: r.render(key, poses42[0], K224), args.runs * 5),
                         0.010))
        rows.append(("1 render 640x480, 20k faces (closed)",
                     *_time(lambda: r.render("torus", T640, K640, width=640, height=480),
                            args.runs * 5), None))
        rows.append(("render_scene 640x480, 2 objects + background",
                     *_time(lambda: r.render_scene(
                         [("torus", T640), ("open", make_pose(np.eye(3), [0.1, 0.05, 1.0]))],
                         K640, width=640, height=480,
                         background=np.zeros((480, 640, 3), np.uint8)), args.runs * 5), None))
        rows.append(("build_template_bank 42 x 224 (no cache, renderer given)",
                     *_time(lambda: build_template_bank(obj, r, use_cache=False), args.runs), None))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_template_bank(obj, None, cache_dir=tmp, device=args.device)
        rows.append(("build_template_bank 42 x 224, cold (new renderer + render + save .npz)",
                     time.perf_counter() - t0, 0.0, None))
        size_mb = sum(p.stat().st_size for p in Path(tmp).glob("*.npz")) / 1e6
        rows.append((f"build_template_bank cache hit (load {size_mb:.1f} MB .npz)",
                     *_time(lambda: build_template_bank(obj, None, cache_dir=tmp), args.runs),
                     None))
    t0 = time.perf_counter()
    Renderer(224, 224, device=args.device).release()
    rows.append(("Renderer() creation + release", time.perf_counter() - t0, 0.0, None))

    print(f"renderer: {gl} (device={args.device}), {os.cpu_count()} CPU cores, "
          f"mean of {args.runs} runs (single renders: {args.runs * 5}) after a warm-up\n")
    print("| case | mean | std | target |")
    print("|---|---|---|---|")
    for name, mean, std, target in rows:
        tgt = "" if target is None else (f"<= {target * 1e3:.0f} ms" if target < 0.1
                                         else f"<= {target:.1f} s")
        ok = "" if target is None else (" ok" if mean <= target else " MISSED")
        print(f"| {name} | {mean * 1e3:.1f} ms | {std * 1e3:.1f} ms | {tgt}{ok} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
