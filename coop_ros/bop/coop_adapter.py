"""The Co-op pipeline as estimators of ``coop-ros eval`` (and of the benchmarks in bench/):

* ``coop``: the GT boxes of a frame's targets as detections (``bbox_visib`` by default,
  ``--gt-box obj`` for ``bbox_obj``), one :meth:`coop_ros.pipeline.estimator.PoseEstimator.estimate`
  call per frame, an :class:`~coop_ros.bop.dataset.Estimate` per pose (carrying the refined
  hypotheses and their coarse poses, for the report's oracle figures) and a
  :class:`~coop_ros.bop.dataset.NoEstimate` with the reason for every target without one;
* ``coop-refine``: :meth:`PoseEstimator.refine_pose` started at each target's GT pose
  (``--start gt``) or at the GT perturbed exactly as the ``perturbed`` estimator perturbs it
  (``--start perturbed``, its ``--rot-deg`` / ``--trans-mm`` / ``--seed``): does refinement keep
  the truth, does it improve a near pose? Compare with ``--estimator perturbed`` (the starts).
* ``coop-track``: each scene's images in im_id order as one sequence, one
  :class:`~coop_ros.pipeline.track.Tracker` per scene: the first frame's detections get the full
  estimate, later frames are tracked from the previous poses (the frame's GT boxes are the
  detections: association, the box checks and the polish), a lost track is re-estimated by the
  full pipeline on the same frame. Estimates carry the time of the whole frame, as ``coop``'s.

Object registration (templates) is not counted as estimation time. The pipeline is imported when
the estimator is built, not when the CLI is. This module imports nothing from
:mod:`coop_ros.bop.evaluate` (the evaluator registers these estimators: one direction).
"""
from __future__ import annotations

import time

import numpy as np

__all__ = ["add_args", "add_refine_args", "add_track_args", "make_estimator",
           "make_refine_estimator", "make_track_estimator", "perturbed_gt_pose"]


def add_args(group) -> None:
    """The ``coop`` estimator's options of ``coop-ros eval``."""
    group.add_argument("--mode", choices=("rgb", "rgbd"), default="rgbd",
                       help="coop: RGB (EPnP + weighted LM PnP) or RGB-D (Kabsch / ICP)")
    group.add_argument("--hypotheses", type=int, default=5, help="coop: coarse hypotheses")
    group.add_argument("--coarse-only", action="store_true", help="coop: no refinement")
    group.add_argument("--gt-box", choices=("visib", "obj"), default="visib",
                       help="coop: detection boxes from scene_gt_info bbox_visib (default) or "
                       "bbox_obj")
    group.add_argument("--backend", default="weight-free", help="coop: backend")
    group.add_argument("--template-cache", default=None, help="coop: template cache folder")
    group.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                       help="coop: networks of the coop backend in fp32 or bf16 (autocast)")
    for slot in ("coarse", "refiner", "selection"):
        group.add_argument(f"--{slot}-ckpt", default=None,
                           help=f"coop: {slot} network checkpoint (backend coop / auto)")


def add_refine_args(group) -> None:
    """The ``coop-refine`` estimator's own option (it also takes the ``coop`` options and the
    ``perturbed`` estimator's --rot-deg / --trans-mm / --seed)."""
    group.add_argument("--start", choices=("gt", "perturbed"), default="gt",
                       help="coop-refine: refine from the GT pose or from the GT perturbed as "
                       "--estimator perturbed perturbs it")


def perturbed_gt_pose(frame, gt_idx: int, rot_deg: float, trans_m: float,
                      seed: int = 0) -> np.ndarray:
    """GT instance ``gt_idx`` of ``frame`` rotated by exactly ``rot_deg`` about a random axis
    through the object origin and shifted by exactly ``trans_m`` metres in a random direction,
    the generator seeded by ``(seed, scene_id, im_id, gt_idx)``: (4, 4) [m]. The ``perturbed``
    and ``coop-refine --start perturbed`` estimators draw the same poses. A rotated pose's
    rotation is projected onto SO(3): a GT rotation kept as written (orthonormal to the pose
    checks' 1e-4) can leave that tolerance once rotated (LM-O dev scene 2, image 428, object
    11); a pure translation (``rot_deg`` 0) keeps the GT rotation as it is (MSSD = ``trans_m``)."""
    from coop_ros.geometry.se3 import orthonormalized, perturb_pose
    rng = np.random.default_rng([int(seed), frame.scene_id, frame.im_id, int(gt_idx)])
    T = perturb_pose(frame.gt[gt_idx].T_cam_obj, rot_deg, trans_m, rng)
    return orthonormalized(T) if rot_deg != 0 else T


def _pose_estimator(args, estimator):
    if estimator is not None:
        return estimator
    from coop_ros.pipeline.estimator import PoseConfig, PoseEstimator
    cfg = PoseConfig(backend=args.backend, template_cache_dir=args.template_cache,
                     device=getattr(args, "device", "cpu") or "cpu", precision=args.precision,
                     coarse_ckpt=args.coarse_ckpt, refiner_ckpt=args.refiner_ckpt,
                     selection_ckpt=args.selection_ckpt).validate()
    return PoseEstimator(cfg)


def _detections(frame, targets, gt_box: str):
    """(detections, GT indices, NoEstimates) of a frame's targets: the GT box of every valid GT
    instance as a detection (:meth:`~coop_ros.bop.dataset.GtInfo.detection_box`, ``gt_box``
    "visib" or "obj")."""
    from coop_ros.bop.dataset import NoEstimate, valid_gt_indices
    from coop_ros.pipeline.estimator import Detection
    dets, gis, out = [], [], []
    for tg in targets:
        for gi in valid_gt_indices(frame, tg):
            info = frame.gt_info[gi] if gi < len(frame.gt_info) else None
            if info is None:
                out.append(NoEstimate(frame.scene_id, frame.im_id, tg.obj_id,
                                      "no detection box: no GT info for this instance"))
                continue
            b = info.detection_box(gt_box)
            if b is None:
                out.append(NoEstimate(frame.scene_id, frame.im_id, tg.obj_id,
                                      f"no detection box: GT boxes {info.bbox_visib.tolist()}"
                                      f" / {info.bbox_obj.tolist()} are empty (not in view)"))
                continue
            dets.append(Detection(tg.obj_id, b))
            gis.append(gi)
    return dets, gis, out


def _sanity(frame, dets, gis, mode: str, est):
    """The node's plausibility checks of the inputs (coop_ros/pipeline/sanity.py): field of view
    of K and depth unit for the frame (an error refuses every detection), the box against the
    object's size at the measured depth per detection (RGB-D). Returns (detections, GT indices,
    NoEstimates of the refused ones, reason ``bad_input: ...``)."""
    from coop_ros.bop.dataset import NoEstimate
    from coop_ros.pipeline.sanity import box_scale_problem, frame_problems
    depth = frame.depth if mode == "rgbd" else None
    err, _warns = frame_problems(frame.K, frame.width, frame.height, depth,
                                 "BOP depth x depth_scale")
    if err:
        return [], [], [NoEstimate(frame.scene_id, frame.im_id, int(d.obj_id),
                                   f"bad_input: {err}") for d in dets]
    keep, refused = [], []
    for d, gi in zip(dets, gis):
        p = None if depth is None else box_scale_problem(
            d.box_xywh, depth, frame.K, est.object_model(d.obj_id).diameter)
        if p:
            refused.append(NoEstimate(frame.scene_id, frame.im_id, int(d.obj_id),
                                      f"bad_input: {p[1]}"))
        else:
            keep.append((d, gi))
    return [d for d, _ in keep], [g for _, g in keep], refused


def _register(est, dataset, targets) -> None:
    for tg in targets:   # object registration (onboarding) is not estimation time
        if not est.has_object(tg.obj_id):
            est.add_object(tg.obj_id, dataset.object(tg.obj_id))


def make_estimator(args, dataset, records: list | None = None, estimator=None):
    """The ``coop`` estimator of ``coop-ros eval`` (a factory for
    :func:`coop_ros.bop.evaluate.register_estimator`): ``args`` holds the options of
    :func:`add_args`; ``records``, when given, receives (PoseResult, T_gt (4, 4)) per detection
    (covariance checks); ``estimator``: a :class:`PoseEstimator` to use (its templates kept
    between calls) instead of one built from ``args``."""
    from coop_ros.bop.dataset import Estimate, NoEstimate
    est = _pose_estimator(args, estimator)

    def estimate(frame, targets):
        _register(est, dataset, targets)
        t0 = time.perf_counter()
        dets, gis, out = _detections(frame, targets, args.gt_box)
        dets, gis, refused = _sanity(frame, dets, gis, args.mode, est)
        out += refused
        if not dets:
            return out
        res = est.estimate(frame.rgb, frame.K, dets, depth=frame.depth if args.mode == "rgbd"
                           else None, mode=args.mode, num_hypotheses=args.hypotheses,
                           coarse_only=args.coarse_only)
        dt = time.perf_counter() - t0
        if records is not None:
            records.extend(zip(res, [frame.gt[gi].T_cam_obj for gi in gis]))
        for r in res:
            if r.ok:
                hyps = r.hypotheses or []
                out.append(Estimate(frame.scene_id, frame.im_id, int(r.obj_id), float(r.score),
                                    r.T_cam_obj, dt,
                                    hypotheses=[h.T for h in hyps] or None,
                                    coarse_poses=[h.T_coarse for h in hyps] or None))
            else:
                out.append(NoEstimate(frame.scene_id, frame.im_id, int(r.obj_id), r.reason))
        return out
    return estimate


def _estimate_of(frame, r, dt: float):
    """The :class:`~coop_ros.bop.dataset.Estimate` of an ok ``PoseResult`` ``r`` (pose only,
    ``dt`` [s] the frame's time), or its ``NoEstimate`` with the reason."""
    from coop_ros.bop.dataset import Estimate, NoEstimate
    if r.ok:
        return Estimate(frame.scene_id, frame.im_id, int(r.obj_id), float(r.score), r.T_cam_obj,
                        dt)
    return NoEstimate(frame.scene_id, frame.im_id, int(r.obj_id), r.reason)


def make_refine_estimator(args, dataset, estimator=None):
    """The ``coop-refine`` estimator of ``coop-ros eval``: :meth:`PoseEstimator.refine_pose` of
    every valid GT instance from its GT pose (``args.start == "gt"``) or from
    :func:`perturbed_gt_pose` (``args.rot_deg`` [deg], ``args.trans_mm`` [mm], ``args.seed``),
    in ``args.mode``, with its GT box as the detection."""
    est = _pose_estimator(args, estimator)

    def estimate(frame, targets):
        _register(est, dataset, targets)
        t0 = time.perf_counter()
        dets, gis, out = _detections(frame, targets, args.gt_box)
        res = []
        for det, gi in zip(dets, gis):
            T0 = frame.gt[gi].T_cam_obj if args.start == "gt" else perturbed_gt_pose(
                frame, gi, args.rot_deg, args.trans_mm / 1000.0, args.seed)
            res.append(est.refine_pose(frame.rgb, frame.K, det, T0, depth=frame.depth
                                       if args.mode == "rgbd" else None, mode=args.mode))
        dt = time.perf_counter() - t0
        return out + [_estimate_of(frame, r, dt) for r in res]
    return estimate


def add_track_args(group) -> None:
    """The ``coop-track`` estimator's own options (it also takes the ``coop`` options; its
    --hypotheses are those of the estimates that (re-)initialise a track)."""
    from coop_ros.pipeline.track import MOTIONS, TrackConfig
    d = TrackConfig()
    group.add_argument("--track-motion", choices=MOTIONS, default="static_scene",
                       help="coop-track: prediction (default static_scene: BOP scenes are "
                       "static, the camera moves)")
    group.add_argument("--track-min-evidence", type=float, default=None,
                       help=f"coop-track: lost below this image evidence (default "
                       f"{d.min_evidence['rgb']} RGB / {d.min_evidence['rgbd']} RGB-D)")
    group.add_argument("--track-levels", default=None,
                       help="coop-track: FIRST,END levels of the evidence search per tracked "
                       f"frame (default RGB {d.rgb_levels[0]},{d.rgb_levels[1]}, RGB-D "
                       f"{d.rgbd_levels[0]},{d.rgbd_levels[1]})")


def track_config(args):
    """The :class:`~coop_ros.pipeline.track.TrackConfig` of ``coop-ros eval`` options."""
    from coop_ros.errors import InputError
    from coop_ros.pipeline.track import TrackConfig
    d = TrackConfig()
    kw = {"motion": getattr(args, "track_motion", None) or "static_scene"}
    me = getattr(args, "track_min_evidence", None)
    if me is not None:
        kw["min_evidence"] = {**d.min_evidence, args.mode: float(me)}
    lv = getattr(args, "track_levels", None)
    if lv:
        try:
            a, b = (int(v) for v in str(lv).split(","))
        except ValueError:
            raise InputError(f"--track-levels must be FIRST,END (two integers), got {lv!r}") \
                from None
        kw["rgb_levels" if args.mode == "rgb" else "rgbd_levels"] = (a, b)
    return TrackConfig(**kw).validate()


#: coop-track: a track whose object is not among a frame's targets moves by its prediction for
#: up to this many frames (not refined: the frame asks nothing of it), then it is dropped
COAST_FRAMES = 3


def make_track_estimator(args, dataset, estimator=None, records: list | None = None):
    """The ``coop-track`` estimator of ``coop-ros eval`` (module docstring): ``args`` holds the
    options of :func:`add_args` and :func:`add_track_args`; ``records``, when given, receives
    (scene_id, im_id, TrackResult, T_gt (4, 4)) per detection (calibration of the lost
    criteria). A scene's frames must come in increasing im_id order (``coop-ros eval`` gives them
    so); a frame of an earlier im_id starts the scene's sequence again."""
    from coop_ros.pipeline.track import Tracker
    est = _pose_estimator(args, estimator)
    cfg = track_config(args)
    trackers: dict = {}      # scene_id -> (Tracker, last im_id)

    def estimate(frame, targets):
        _register(est, dataset, targets)
        t0 = time.perf_counter()
        dets, gis, out = _detections(frame, targets, args.gt_box)
        dets, gis, refused = _sanity(frame, dets, gis, args.mode, est)
        out += refused
        tr, last = trackers.get(frame.scene_id, (None, None))
        if tr is None or last is None or frame.im_id <= last:
            tr = Tracker(est, cfg, mode=args.mode)
        trackers[frame.scene_id] = (tr, frame.im_id)
        res = tr.step(frame.rgb, frame.K, dets, depth=frame.depth if args.mode == "rgbd"
                      else None, num_hypotheses=args.hypotheses, coast=COAST_FRAMES)
        dt = time.perf_counter() - t0
        for r in res:
            if r.detection is None:
                continue      # a track without a detection in this frame: not a target here
            if records is not None:
                records.append((frame.scene_id, frame.im_id, r,
                                frame.gt[gis[r.detection]].T_cam_obj))
            out.append(_estimate_of(frame, r.result, dt))
        return out
    return estimate
