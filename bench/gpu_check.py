#!/usr/bin/env python3
"""Checks of the device paths (renderer, networks, pipeline) against numbers; prints a table.

    python bench/gpu_check.py --device cuda     # on a GPU machine (scripts/gpu/session.sh check)
    .venv/bin/python bench/gpu_check.py --device cpu   # the same checks on Mesa / CPU

CI has no GPU, so ``device="cuda"`` paths are checked here, when a GPU machine is lent:

1. renderer: a sphere (icosphere, 2562 vertices, r = 5 cm) at 0.5 m on the optical axis; the mask
   area and the depth of every covered pixel are compared with the exact ray-sphere
   intersection, the object-coordinate map with |xyz| = r;
2. template bank: 42 views of a textured procedural box, seconds;
3. networks (``tiny`` configuration, random weights): the coarse and refiner outputs on
   ``--device`` against CPU float32, and bf16 autocast against float32 on the device;
4. pipeline: ``PoseEstimator(device=...)`` (weight-free backend) on a small synthetic scene
   rendered on the device: rotation / translation / MSSD errors per instance, RGB and RGB-D.

Exit status 0 when every check is within its tolerance (printed beside it), 1 otherwise.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS: list[tuple[str, str, str, bool]] = []   # (check, value, tolerance, ok)


def record(check: str, value: float, tol: float, fmt: str = "{:.4g}", lower_is_ok=True) -> bool:
    ok = bool(np.isfinite(value) and (value <= tol if lower_is_ok else value >= tol))
    RESULTS.append((check, fmt.format(value), ("<= " if lower_is_ok else ">= ") + fmt.format(tol),
                    ok))
    return ok


def check_renderer(device: str) -> None:
    import trimesh

    from coop_ros.geometry.se3 import make_pose
    from coop_ros.render import Renderer

    r, z, f, S = 0.05, 0.5, 600.0, 256
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=r)
    K = np.array([[f, 0, (S - 1) / 2], [0, f, (S - 1) / 2], [0, 0, 1.0]])
    T = make_pose(np.eye(3), np.array([0.0, 0.0, z]))
    with Renderer(S, S, device=device) as ren:
        RESULTS.append(("renderer", ren.gl_renderer, "", True))
        ren.add_mesh("sphere", np.asarray(sphere.vertices), np.asarray(sphere.faces))
        out = ren.render("sphere", T, K)
    mask, depth, xyz = out.mask[0], out.depth[0], out.xyz[0]
    # exact: the ray through pixel (u, v) hits the sphere at the nearest root of |s d - c| = r
    u, v = np.meshgrid(np.arange(S), np.arange(S))
    d = np.stack([(u - K[0, 2]) / f, (v - K[1, 2]) / f, np.ones_like(u, float)], -1)   # z = 1
    c = np.array([0.0, 0.0, z])
    a, b = (d * d).sum(-1), -2 * (d @ c)
    disc = b * b - 4 * a * (c @ c - r * r)
    hit = disc > 0
    s = np.where(hit, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), 0.0)   # depth (z) of the hit
    # pixels whose ray passes >= 1 mm inside the silhouette (the polygon's edge lies up to
    # ~0.4 mm inside the true sphere): all of them must be covered
    ray_dist = np.linalg.norm(np.cross(d, c), axis=-1) / np.sqrt(a)
    inner = ray_dist < r - 1e-3
    record("render: mask area / exact - 1 (abs)", abs(mask.sum() / hit.sum() - 1), 0.01)
    record("render: covered pixels missing from the mask", float((inner & ~mask).sum()), 0,
           "{:.0f}")
    both = mask & inner
    record("render: max |depth - exact| [mm]", float(np.abs(depth[both] - s[both]).max() * 1e3),
           0.5)
    record("render: max ||xyz| - r| [mm]",
           float(np.abs(np.linalg.norm(xyz[mask], axis=-1) - r).max() * 1e3), 0.5)


def check_templates(device: str) -> None:
    from coop_ros.synth.procedural import make_object
    from coop_ros.render import Renderer
    from coop_ros.render.templates import build_template_bank

    obj = make_object("textured_box", seed=0)
    with Renderer(224, 224, device=device) as ren:
        build_template_bank(obj, ren, n_views=42)            # warm-up (upload, shaders)
        t0 = time.perf_counter()
        bank = build_template_bank(obj, ren, n_views=42)
        dt = time.perf_counter() - t0
    record("templates: 42 views, seconds", dt, 5.0, "{:.3f}")
    record("templates: min mask pixels over the 42 views",
           float(bank.mask.reshape(42, -1).sum(1).min()), 500, "{:.0f}", lower_is_ok=False)


def check_networks(device: str) -> None:
    from coop_ros.nets import CoarseNet, RefinerNet

    torch.manual_seed(0)
    x = torch.rand(2, 3, 224, 224)
    y = torch.rand(2, 3, 224, 224)
    nets = {"coarse": CoarseNet("tiny", key_dim=64).eval(),
            "refiner": RefinerNet("tiny").eval()}
    for name, net in nets.items():
        with torch.no_grad():
            ref = net(x, y)
            net.to(device)
            xd, yd = x.to(device), y.to(device)
            got = net(xd, yd)
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
                low = net(xd, yd)
        key = "logits" if name == "coarse" else "flow"
        a, b, c = getattr(ref, key), getattr(got, key).float().cpu(), getattr(low, key).float().cpu()
        scale = float(a.abs().max()) + 1e-12
        if device != "cpu":
            record(f"nets: {name} {key}, {device} fp32 vs CPU, max rel diff",
                   float((a - b).abs().max()) / scale, 1e-2)
        record(f"nets: {name} {key}, bf16 vs fp32, max rel diff", float((a - c).abs().max()) / scale,
               0.1)


def check_pipeline(device: str, work: Path) -> None:
    from coop_ros.bop.dataset import BopDataset
    from coop_ros.bop.metrics import mssd
    from coop_ros.synth.scenes import generate_dataset
    from coop_ros.geometry.se3 import rotation_angle_deg
    from coop_ros.pipeline.estimator import Detection, PoseConfig, PoseEstimator

    generate_dataset(work / "scene", ["textured_box", "mug"], n_scenes=1, images_per_scene=2,
                     objects_per_image=(2, 2), distractors=(0, 1), occlusion="none", seed=3,
                     device=device, progress=False)
    ds = BopDataset(work / "scene")
    est = PoseEstimator(PoseConfig(device=device, template_cache_dir=str(work / "tpl")))
    for mode in ("rgbd", "rgb"):
        errs = []
        for sid, iid in ds.images():
            frame = ds.frame(sid, iid)
            dets, gts = [], []
            for gt, info in zip(frame.gt, frame.gt_info):
                if not est.has_object(gt.obj_id):
                    est.add_object(gt.obj_id, ds.object(gt.obj_id))
                dets.append(Detection(gt.obj_id, info.detection_box()))
                gts.append(gt)
            res = est.estimate(frame.rgb, frame.K, dets,
                               depth=frame.depth if mode == "rgbd" else None, mode=mode)
            for r, gt in zip(res, gts):
                obj = ds.object(gt.obj_id)
                if not r.ok:
                    errs.append(np.inf)
                    continue
                e = mssd(r.T_cam_obj[:3, :3], r.T_cam_obj[:3, 3], gt.T_cam_obj[:3, :3],
                         gt.T_cam_obj[:3, 3], obj.vertices, obj.symmetry_transforms(0.05))
                errs.append(e / obj.diameter)
                rot = rotation_angle_deg(r.T_cam_obj[:3, :3], gt.T_cam_obj[:3, :3])
                tr = np.linalg.norm(r.T_cam_obj[:3, 3] - gt.T_cam_obj[:3, 3]) * 1e3
                print(f"  {mode} obj {gt.obj_id}: rot {rot:.2f} deg, trans {tr:.1f} mm, "
                      f"MSSD/d {errs[-1]:.3f}, {r.timings.get('total', 0):.2f} s", file=sys.stderr)
        record(f"pipeline {mode}: instances with MSSD < 0.1 d (of {len(errs)})",
               float(np.sum(np.asarray(errs) < 0.1)), len(errs) - 1, "{:.0f}", lower_is_ok=False)
    est.release()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cpu | cuda | cuda:<i>")
    ap.add_argument("--skip", default="", help="comma-separated: renderer,templates,nets,pipeline")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"cuda available {torch.cuda.is_available()}"
          + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
    steps = [("renderer", lambda: check_renderer(args.device)),
             ("templates", lambda: check_templates(args.device)),
             ("nets", lambda: check_networks(args.device))]
    with tempfile.TemporaryDirectory() as tmp:
        steps.append(("pipeline", lambda: check_pipeline(args.device, Path(tmp))))
        for name, fn in steps:
            if name in skip:
                continue
            t0 = time.perf_counter()
            try:
                fn()
            except Exception as e:   # a failed step is a row of the table, the others still run
                RESULTS.append((f"{name}: {type(e).__name__}", str(e)[:200], "no error", False))
            print(f"[{name}] {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(f"\ndevice {args.device}\n\n| check | value | tolerance | ok |\n|---|---|---|---|")
    for check, value, tol, ok in RESULTS:
        print(f"| {check} | {value} | {tol} | {'yes' if ok else 'NO'} |")
    bad = [r for r in RESULTS if not r[3]]
    print(f"\n{len(RESULTS) - len(bad)}/{len(RESULTS)} checks within tolerance")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
