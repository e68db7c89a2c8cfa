"""``coop-ros estimate``: the pose of one object in one image, printed as JSON, plus an overlay.

    coop-ros estimate --rgb rgb.png [--depth depth.png --depth-scale 0.1] --camera camera.json \
        --mesh obj_000001.ply --units mm --box 303,150,110,172 [--mode rgbd] [--hypotheses 5] \
        [--out overlay.png]

camera.json: BOP ``{"cam_K": [9 numbers], "depth_scale": s, ...}``, a BOP ``scene_camera.json``
(the first / only image entry is used), or ``{"fx", "fy", "cx", "cy", "width", "height"}``;
``width`` / ``height`` when present must be the image's size. The depth scale converts raw depth
to millimetres (BOP convention: depth_mm = raw x scale); ``--depth-scale`` overrides the camera
file's value. Template banks are cached (``--template-cache``: default ``$COOP_ROS_CACHE`` or
``~/.cache/coop_ros/templates``, ``none`` = off). Every argument (files, box, camera, images,
``--out``) is checked before the pipeline (torch, renderer) is loaded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from coop_ros.errors import InputError

__all__ = ["configure_parser", "run", "read_camera"]


def _number(value, path, field: str, positive: bool = False) -> float:
    """A camera-file field as a finite float (> 0 with ``positive``); InputError naming the file
    and the field otherwise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    v = float(value) if ok else float("nan")
    if not ok or not np.isfinite(v) or (positive and v <= 0):
        want = "a finite number > 0" if positive else "a finite number"
        raise InputError(f"camera file {path}: '{field}' must be {want}, got {value!r}")
    return v


def read_camera(path) -> tuple[np.ndarray, float | None, tuple[int, int] | None]:
    """(K (3, 3), depth scale [mm per raw unit] or None, (W, H) or None) from a camera JSON.
    InputError naming the file and the field for a wrong type or value (``"fx": "a"``,
    ``"depth_scale": null``, a non-finite or non-positive focal length, ...)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"camera file {path}: {e}") from None
    if isinstance(data, dict) and "cam_K" not in data and "fx" not in data and data:
        first = next(iter(data.values()))  # scene_camera.json: {"<im_id>": {...}}
        if isinstance(first, dict) and "cam_K" in first:
            data = first
    if not isinstance(data, dict):
        raise InputError(f"camera file {path}: expected a JSON object")
    if "cam_K" in data:
        k = data["cam_K"]
        if not isinstance(k, list) or len(k) != 9:
            raise InputError(f"camera file {path}: cam_K must be 9 numbers (row-major 3x3 "
                             f"[fx, 0, cx, 0, fy, cy, 0, 0, 1]), got "
                             f"{len(k) if isinstance(k, list) else repr(k)}")
        K = np.array([_number(v, path, f"cam_K[{i}]") for i, v in enumerate(k)]).reshape(3, 3)
    elif all(k in data for k in ("fx", "fy", "cx", "cy")):
        K = np.array([[_number(data["fx"], path, "fx"), 0, _number(data["cx"], path, "cx")],
                      [0, _number(data["fy"], path, "fy"), _number(data["cy"], path, "cy")],
                      [0, 0, 1.0]], dtype=np.float64)
    else:
        raise InputError(f"camera file {path}: needs 'cam_K' (BOP) or 'fx', 'fy', 'cx', 'cy'")
    from coop_ros.geometry.camera import check_intrinsics
    K = check_intrinsics(K, name=f"camera file {path}: K")
    size = None
    if "width" in data and "height" in data:
        w, h = data["width"], data["height"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and
                   float(v).is_integer() for v in (w, h)):
            raise InputError(f"camera file {path}: width / height must be integers > 0, got "
                             f"{w!r} / {h!r}")
        size = (int(w), int(h))
    scale = _number(data["depth_scale"], path, "depth_scale", positive=True) \
        if "depth_scale" in data else None
    return K, scale, size


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rgb", required=True, help="RGB image (png / jpg)")
    p.add_argument("--depth", default=None, help="depth image (16-bit png, raw units)")
    p.add_argument("--depth-scale", type=float, default=None,
                   help="millimetres per raw depth unit (default: the camera file's, else 1)")
    p.add_argument("--camera", required=True, help="camera JSON (BOP cam_K or fx/fy/cx/cy)")
    p.add_argument("--mesh", required=True, help="object mesh (.ply / .obj)")
    p.add_argument("--units", default="mm", choices=("mm", "m"), help="mesh units")
    p.add_argument("--box", required=True, help="detection box x,y,w,h in pixels (may start "
                   "with a negative number: --box -30,10,50,60)")
    p.add_argument("--mask", default=None, help="optional detection mask image (non-zero = object)")
    p.add_argument("--mode", choices=("rgb", "rgbd"), default=None,
                   help="rgb or rgbd (default: rgbd when --depth is given)")
    p.add_argument("--hypotheses", type=int, default=5, help="coarse hypotheses to refine")
    p.add_argument("--coarse-only", action="store_true", help="no refinement")
    p.add_argument("--backend", default="weight-free", help="backend (weight-free)")
    p.add_argument("--template-cache", default=None,
                   help="template cache folder (default: $COOP_ROS_CACHE or "
                        "~/.cache/coop_ros/templates; 'none' = no cache)")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:i]")
    p.add_argument("--out", default=None, help="write an overlay PNG here")


def _read_image(path, flags) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise InputError(f"cannot read image {path}")
    return img


def _check_out(path) -> Path:
    """--out: its folder must exist (or be creatable) and be writable -- checked before the
    work, not after it."""
    out = Path(path)
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out} is a folder; give a .png file name")
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {out}: cannot create folder {folder} ({e.strerror})") from None
    if not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InputError(f"--out {out}: not writable")
    return out


def run(args: argparse.Namespace) -> int:
    # ---- every argument first (cheap); the pipeline (torch, renderer) only after
    from coop_ros.pipeline.sanity import box_scale_problem, depth_unit_problem, intrinsics_problem
    for flag in ("rgb", "depth", "camera", "mesh", "mask"):
        v = getattr(args, flag)
        if v is not None and not Path(v).is_file():
            raise InputError(f"--{flag} {v}: file not found")
    if args.out:
        _check_out(args.out)
    if not 1 <= args.hypotheses <= 64:
        raise InputError(f"--hypotheses must lie in [1, 64], got {args.hypotheses}")
    try:
        box = [float(v) for v in args.box.split(",")]
    except ValueError:
        raise InputError(f"--box must be x,y,w,h numbers, got {args.box!r}") from None
    if len(box) != 4:
        raise InputError(f"--box must be 4 numbers x,y,w,h, got {len(box)}")
    if not all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
        raise InputError(f"--box must be finite x,y,w,h with w, h > 0, got {args.box!r}")
    if args.depth_scale is not None and not (np.isfinite(args.depth_scale)
                                             and args.depth_scale > 0):
        raise InputError(f"--depth-scale must be a finite number > 0 (millimetres per raw depth "
                         f"unit), got {args.depth_scale!r}")
    rgb = cv2.cvtColor(_read_image(args.rgb, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    K, cam_scale, size = read_camera(args.camera)
    H, W = rgb.shape[:2]
    if size is not None and size != (W, H):
        raise InputError(f"camera file {args.camera} is for {size[0]}x{size[1]} images, "
                         f"--rgb {args.rgb} is {W}x{H}")
    # the node's plausibility checks of the inputs (coop_ros/pipeline/sanity.py)
    p = intrinsics_problem(K, W, H)
    if p:
        raise InputError(f"camera file {args.camera}: {p[1]}")
    depth = None
    if args.depth:
        raw = _read_image(args.depth, cv2.IMREAD_UNCHANGED)
        if raw.shape[:2] != (H, W):
            raise InputError(f"--depth {args.depth} is {raw.shape[1]}x{raw.shape[0]}, --rgb is "
                             f"{W}x{H}")
        scale = args.depth_scale if args.depth_scale is not None else (cam_scale or 1.0)
        depth = raw.astype(np.float32) * float(scale) / 1000.0
        p = depth_unit_problem(depth, f"--depth x depth scale {scale:g} mm")
        if p and p[0] == "error":
            raise InputError(p[1])
        if p:
            print(f"coop-ros estimate: warning: {p[1]}", file=sys.stderr)
    mode = args.mode or ("rgbd" if depth is not None else "rgb")
    if mode == "rgbd" and depth is None:
        raise InputError("--mode rgbd needs --depth")
    # the mesh (no torch yet): its units, and the box against its size at the measured depth
    import warnings

    from coop_ros.objects import ObjectModel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj = ObjectModel.load(args.mesh, units=args.units, name="object")
    if obj.units_suspect:
        print(f"coop-ros estimate: warning: --mesh {args.mesh} --units {args.units}: its "
              f"diameter is {obj.diameter / (1e-3 if args.units == 'mm' else 1.0):.4g} "
              f"{args.units}, implausible for an object a camera estimates (wrong --units?); a "
              "pose that the measurements contradict is reported failed (implausible_pose)",
              file=sys.stderr)
    if mode == "rgbd":
        p = box_scale_problem(box, depth, K, obj.diameter)
        if p:
            raise InputError(f"--box {args.box}: {p[1]} (--depth-scale / camera file)")
    mask = None
    if args.mask:
        mask = _read_image(args.mask, cv2.IMREAD_GRAYSCALE) > 0
    cache = args.template_cache
    if cache is None:
        cache = os.environ.get("COOP_ROS_CACHE") or str(Path.home() / ".cache" / "coop_ros" /
                                                         "templates")
    elif cache.lower() == "none":
        cache = None

    from coop_ros.pipeline.estimator import Detection, PoseConfig, PoseEstimator
    cfg = PoseConfig(backend=args.backend, template_cache_dir=cache, device=args.device)
    est = PoseEstimator(cfg)
    est.add_object("object", obj)
    res = est.estimate(rgb, K, [Detection("object", box, mask)], depth=depth, mode=mode,
                       num_hypotheses=args.hypotheses, coarse_only=args.coarse_only)[0]
    d = {"status": res.status, "reason": res.reason, "mode": mode, "score": res.score,
         "best_so_far": res.best_so_far, "ambiguous": res.ambiguous,
         "T_cam_obj": None if res.T_cam_obj is None else res.T_cam_obj.tolist(),
         "covariance": None if res.covariance is None else res.covariance.tolist(),
         "timings_s": res.timings,
         "hypotheses": [{"T": h.T.tolist(), "T_coarse": h.T_coarse.tolist(), "score": h.score,
                         "template": h.template_index, "status": h.status, "reason": h.reason}
                        for h in res.hypotheses]}
    print(json.dumps(PoseResultJSON.clean(d), indent=1))
    if args.out and res.ok:
        H, W = rgb.shape[:2]
        out = est.renderer.render(est.render_key("object"), res.T_cam_obj, K, width=W, height=H)
        from coop_ros.render.overlay import draw_overlay
        ov = draw_overlay(rgb, out.rgb[0], out.mask[0])
        x, y, w, h = box
        cv2.rectangle(ov, (int(x), int(y)), (int(x + w), int(y + h)), (255, 255, 0), 1)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.out), cv2.cvtColor(ov, cv2.COLOR_RGB2BGR))
        print(f"overlay: {args.out}", file=sys.stderr)
    est.release()
    return 0 if res.ok else 1


class PoseResultJSON:
    @staticmethod
    def clean(x):
        if isinstance(x, dict):
            return {k: PoseResultJSON.clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [PoseResultJSON.clean(v) for v in x]
        if isinstance(x, float) and not np.isfinite(x):
            return None
        if isinstance(x, (np.floating, np.integer)):
            return x.item()
        return x
