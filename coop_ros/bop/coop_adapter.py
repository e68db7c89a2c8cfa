"""The Co-op pipeline as the ``coop`` estimator of ``coop-ros eval`` (and of the benchmarks in
bench/): the GT boxes of a frame's targets as detections (``bbox_visib`` by default, ``--gt-box
obj`` for ``bbox_obj``), one :meth:`coop_ros.pipeline.estimator.PoseEstimator.estimate` call per
frame, an :class:`~coop_ros.bop.dataset.Estimate` per pose and a
:class:`~coop_ros.bop.dataset.NoEstimate` with the reason for every target without one. Object
registration (templates) is not counted as estimation time. The pipeline is imported when the
estimator is built, not when the CLI is.
"""
from __future__ import annotations

import time

__all__ = ["add_args", "make_estimator"]


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


def make_estimator(args, dataset, records: list | None = None, estimator=None):
    """The ``coop`` estimator of ``coop-ros eval`` (a factory for
    :func:`coop_ros.bop.evaluate.register_estimator`): ``args`` holds the options of
    :func:`add_args`; ``records``, when given, receives (PoseResult, T_gt (4, 4)) per detection
    (covariance checks); ``estimator``: a :class:`PoseEstimator` to use (its templates kept
    between calls) instead of one built from ``args``."""
    from coop_ros.bop.dataset import Estimate, NoEstimate, valid_gt_indices
    from coop_ros.pipeline.estimator import Detection, PoseConfig, PoseEstimator
    est = estimator
    if est is None:
        cfg = PoseConfig(backend=args.backend, template_cache_dir=args.template_cache,
                         device=getattr(args, "device", "cpu") or "cpu", precision=args.precision,
                         coarse_ckpt=args.coarse_ckpt, refiner_ckpt=args.refiner_ckpt,
                         selection_ckpt=args.selection_ckpt).validate()
        est = PoseEstimator(cfg)

    def estimate(frame, targets):
        out = []
        for tg in targets:   # object registration (onboarding) is not estimation time
            if not est.has_object(tg.obj_id):
                est.add_object(tg.obj_id, dataset.object(tg.obj_id))
        t0 = time.perf_counter()
        dets, gts = [], []
        for tg in targets:
            for gi in valid_gt_indices(frame, tg):
                info = frame.gt_info[gi] if gi < len(frame.gt_info) else None
                if info is None:
                    out.append(NoEstimate(frame.scene_id, frame.im_id, tg.obj_id,
                                          "no detection box: no GT info for this instance"))
                    continue
                b = info.bbox_visib if args.gt_box == "visib" else info.bbox_obj
                if b[2] <= 1 or b[3] <= 1:
                    b = info.bbox_obj
                if b[2] <= 1 or b[3] <= 1:
                    out.append(NoEstimate(frame.scene_id, frame.im_id, tg.obj_id,
                                          f"no detection box: GT boxes {info.bbox_visib.tolist()}"
                                          f" / {info.bbox_obj.tolist()} are empty (not in view)"))
                    continue
                dets.append(Detection(tg.obj_id, tuple(float(v) for v in b)))
                gts.append(frame.gt[gi].T_cam_obj)
        if not dets:
            return out
        res = est.estimate(frame.rgb, frame.K, dets, depth=frame.depth if args.mode == "rgbd"
                           else None, mode=args.mode, num_hypotheses=args.hypotheses,
                           coarse_only=args.coarse_only)
        dt = time.perf_counter() - t0
        if records is not None:
            records.extend(zip(res, gts))
        for r in res:
            if r.ok:
                out.append(Estimate(frame.scene_id, frame.im_id, int(r.obj_id), float(r.score),
                                    r.T_cam_obj, dt))
            else:
                out.append(NoEstimate(frame.scene_id, frame.im_id, int(r.obj_id), r.reason))
        return out
    return estimate
