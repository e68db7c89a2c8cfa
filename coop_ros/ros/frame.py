"""One matched frame -> the node's output messages; shared by ``coop_node`` and ``coop-ros bag``.

No rclpy import (message classes only), so the same code answers a live frame in the node and a
recorded one in the bag tool, and both publish / write the same messages.

    proc = FrameProcessor(estimator, models, objects)
    out = proc.process({"image": img, "detections": dets, "depth": depth}, camera_info, cfg,
                       deadline=time.monotonic() + cfg.time_budget, should_stop=stop.is_set,
                       now_ns=clock_now_ns)
    out.poses, out.estimates, out.tf, out.object_poses, out.marker_items, out.notes

Per frame, in order: stale check (``discard_older_than_ms``); detections -> objects (unknown
class_ids and non-finite boxes / scores fail alone, ``bad_input``); ``max_detections`` (highest detector scores first, the rest skipped);
image / depth / camera_info conversion and plausibility checks (a frame-level problem fails every
detection with ``bad_input: ...``); a per-detection scale check (rgbd); estimation under the time
budget (whatever one detection raises fails that detection alone; every pose passes the
plausibility gate, coop_ros/pipeline/gate.py); messages. Problems with the inputs that do not stop the frame (frame_id mismatch, empty
frame_id, stamp 0, suspicious depth) are returned in ``notes`` for /diagnostics and the log.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from coop_ros.errors import InputError
from coop_ros.pipeline.budget import StageTimes
from coop_ros.ros import conversions as conv

__all__ = ["FrameProcessor", "FrameOutput", "Note"]


@dataclass(frozen=True)
class Note:
    """An input problem seen in a frame: ``key`` groups repeats (e.g. "frame_id"), ``level``
    "warning" | "error", ``text`` names the topics / values involved."""

    key: str
    level: str
    text: str


@dataclass
class FrameOutput:
    """Messages of one processed frame (see the module docstring). ``tf`` is None when there is
    no transform or no parent frame; ``object_poses`` [(object name, PoseWithCovarianceStamped)];
    ``marker_items`` / ``overlay_items`` / ``overlay_fail`` feed markers.py; ``rgb`` / ``K`` are
    None when the frame could not be converted; ``failures`` / ``skipped`` are
    "<instance>: <reason>" lines; ``skipped_reasons``: {Reason: count} of the skipped."""

    header: object
    poses: object
    estimates: object
    tf: object = None
    object_poses: list = field(default_factory=list)
    marker_items: list = field(default_factory=list)
    overlay_items: list = field(default_factory=list)
    overlay_fail: list = field(default_factory=list)
    rgb: np.ndarray | None = None
    K: np.ndarray | None = None
    failures: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    skipped_reasons: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    results: list = field(default_factory=list)
    tracked: list = field(default_factory=list)


def _timings(t: dict):
    from coop_ros.msg import StageTimings
    return StageTimings(templates=float(t.get("templates", 0.0)),
                        coarse=float(t.get("coarse", 0.0)),
                        refine=float(t.get("refine", 0.0)),
                        select=float(t.get("selection", 0.0)),
                        total=float(t.get("total", 0.0)))


#: coop_ros.pipeline.track statuses -> ObjectPoseEstimate.TRACK_* values
_TRACK_STATUS = {"new": 1, "tracked": 2, "reinitialised": 3, "lost": 4, "estimated": 5}


def _fmt_stamp(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


class FrameProcessor:
    """Turns matched frames into output messages with one :class:`PoseEstimator`.

    Args:
        estimator: a PoseEstimator with every object registered under its name.
        models: {name: ObjectModel} (bbox sizes, diameters, markers).
        objects: the configured :class:`coop_ros.ros.params.ObjectSpec` list.
    """

    def __init__(self, estimator, models: dict, objects: list,
                 camera_info_topic: str = "camera_info"):
        self.estimator = estimator
        self.models = models
        self.by_class = {o.class_id: o for o in objects}
        self.camera_info_topic = camera_info_topic
        #: seconds per detection of building the output messages after the estimate: kept free
        #: of the estimator's share of a time budget, so the frame's answer fits the budget
        self.output_times = StageTimes()
        #: parameter ``tracking``: the :class:`coop_ros.pipeline.track.Tracker` (None while off)
        self.tracker = None
        #: (monotonic time, object names tracked) of the recent frames with tracked poses
        self.track_log: deque = deque(maxlen=1000)

    def tracking_active(self) -> bool:
        """True while tracking is on and at least one object is tracked (an image without a
        detection is then worth processing)."""
        tr = self.tracker
        return tr is not None and bool(tr.tracks)

    def _tracker_for(self, cfg):
        """The tracker of ``cfg`` (made when tracking is switched on or the mode changes;
        dropped when it is switched off)."""
        from coop_ros.pipeline.track import TrackConfig, Tracker
        if not cfg.tracking:
            self.tracker = None
        elif self.tracker is None or self.tracker.mode != cfg.mode:
            self.tracker = Tracker(self.estimator, TrackConfig(motion=cfg.tracking_motion),
                                   mode=cfg.mode)
        elif self.tracker.config.motion != cfg.tracking_motion:
            from dataclasses import replace
            self.tracker.config = replace(self.tracker.config,
                                          motion=cfg.tracking_motion).validate()
        return self.tracker

    # ------------------------------------------------------------------ inputs
    def frame_arrays(self, frame: dict, camera_info, cfg, notes: list):
        """(rgb, K, depth or None) of a matched frame; raises InputError naming the problem.
        Warnings that do not stop the frame are appended to ``notes``."""
        from sensor_msgs.msg import CompressedImage

        from coop_ros.pipeline.sanity import depth_unit_problem, intrinsics_problem
        img = frame["image"]
        rgb = conv.compressed_to_rgb(img) if isinstance(img, CompressedImage) else \
            conv.image_to_rgb(img)
        H, W = rgb.shape[:2]
        if camera_info is None:
            raise InputError(f"no camera_info received on '{self.camera_info_topic}' yet")
        K, (cw, ch) = conv.camera_info_to_K(camera_info)
        if cw and ch and (cw, ch) != (W, H):
            raise InputError(f"camera_info is for {cw}x{ch} images, the image is {W}x{H}")
        p = intrinsics_problem(K, W, H)
        if p:
            raise InputError(p[1])
        depth = None
        if cfg.mode == "rgbd":
            dm = frame.get("depth")
            if dm is None:
                raise InputError("mode 'rgbd' but no depth image matched this frame")
            depth = conv.depth_to_m(dm)
            if depth.shape != (H, W):
                raise InputError(f"depth image is {depth.shape[1]}x{depth.shape[0]}, the image "
                                 f"is {W}x{H} (register the depth to the colour camera)")
            if not np.any(depth > 0):
                raise InputError("depth image has no valid measurement (all NaN / 0)")
            p = depth_unit_problem(depth, dm.encoding)
            if p and p[0] == "error":
                raise InputError(p[1])
            if p:
                notes.append(Note("depth_units", "warning", p[1]))
        return rgb, K, depth

    @staticmethod
    def header_notes(frame: dict, camera_info, cfg) -> list:
        """Notes on the frame_ids and the stamp of a frame's messages."""
        notes = []
        img = frame["image"]
        fids = {"image": img.header.frame_id}
        if cfg.mode == "rgbd" and frame.get("depth") is not None:
            fids["depth"] = frame["depth"].header.frame_id
        if camera_info is not None:
            fids["camera_info"] = camera_info.header.frame_id
        if not fids["image"]:
            where = (f"TF parent is camera_frame '{cfg.camera_frame}'" if cfg.camera_frame else
                     "no TF is published (set camera_frame or fix the camera driver)")
            notes.append(Note("frame_id", "warning",
                              f"image has an empty frame_id: poses carry no frame; {where}"))
        named = {k: v for k, v in fids.items() if v}
        if len(set(named.values())) > 1:
            notes.append(Note("frame_id", "warning", "frame_id mismatch: " + ", ".join(
                f"{k} '{v}'" for k, v in fids.items()) + " (depth must be registered to the "
                "colour camera and camera_info must describe it; poses use the image's)"))
        if conv.stamp_ns(img.header) == 0:
            notes.append(Note("stamp_zero", "warning",
                              "image stamp is 0 (the driver does not stamp its images): latency "
                              "and message age are not measured for such frames"))
        return notes

    # ------------------------------------------------------------------ processing
    def process(self, frame: dict, camera_info, cfg, *, deadline: float | None = None,
                should_stop=None, now_ns: int | None = None, notes=None) -> FrameOutput:
        """Estimate and build the messages of one matched frame {image, detections[, depth]}.

        Args:
            camera_info: the sensor_msgs/CameraInfo to use (or None: every detection fails).
            cfg: the node's :class:`coop_ros.ros.params.NodeConfig`.
            deadline: ``time.monotonic()`` value of the frame's time budget (None: none).
            should_stop: cancel flag (callable), checked between detections / stages.
            now_ns: the current time [ns] of the clock the stamps use, for the message-age
                limit (None: not checked).
            notes: extra :class:`Note` records of the caller (camera_info choice) to include.
        """
        from coop_ros.msg import ObjectPoseEstimate, ObjectPoseEstimateArray, PoseHypothesis
        from coop_ros.pipeline.results import (STATUS_OK, STATUS_SKIPPED, Detection, PoseResult,
                                              Reason)
        from vision_msgs.msg import Detection3DArray

        img_msg = frame["image"]
        header = img_msg.header
        dets = conv.detections_from_msg(frame["detections"])
        notes = list(notes or []) + self.header_notes(frame, camera_info, cfg)
        stamp = conv.stamp_ns(header)

        # detections -> objects; instance numbers in detection order
        entries = []   # (det dict, ObjectSpec or None, instance_id)
        counts: dict = {}
        for d in dets:
            spec = self.by_class.get(d["class_id"])
            if spec is None:
                entries.append((d, None, ""))
                continue
            k = counts.get(spec.name, 0)
            counts[spec.name] = k + 1
            entries.append((d, spec, f"{spec.name}_{k}"))
        results: list = [None] * len(entries)
        # a detection whose box / score is not finite is answered failed, never estimated
        for i, (d, spec, _) in enumerate(entries):
            if spec is not None and d.get("problem"):
                results[i] = PoseResult.failed(spec.name, Reason.BAD_INPUT, d["problem"])
        known = [i for i, (_, s, _) in enumerate(entries) if s is not None and results[i] is None]

        def skip_all(idx, reason, detail):
            for i in idx:
                results[i] = PoseResult.skipped(entries[i][1].name, reason, detail)

        tracker = self._tracker_for(cfg)
        tinfo: list = [None] * len(entries)     # TrackResult per entry (tracking on)
        extra: list = []                        # TrackResults of tracks without a detection
        rgb = K = None
        age_ms = None if (now_ns is None or stamp == 0) else (now_ns - stamp) * 1e-6
        if cfg.discard_older_than_ms > 0 and age_ms is not None and \
                age_ms > cfg.discard_older_than_ms:
            skip_all(known, Reason.STALE_INPUT, f"image stamp {_fmt_stamp(stamp)} is "
                            f"{age_ms / 1000:.3f} s old > discard_older_than_ms "
                            f"{cfg.discard_older_than_ms}")
            todo = []
        else:
            # highest detector scores first (also the order of estimation under the time
            # budget); beyond max_detections skipped
            order = sorted(known, key=lambda i: (-entries[i][0]["score"], i))
            todo = order
            if cfg.max_detections and len(order) > cfg.max_detections:
                todo = order[:cfg.max_detections]
                for rank, i in enumerate(order[cfg.max_detections:], cfg.max_detections + 1):
                    results[i] = PoseResult.skipped(
                        entries[i][1].name, Reason.MAX_DETECTIONS, f"ranked {rank} of "
                        f"{len(order)} by detector score {entries[i][0]['score']:.3g} "
                        f"(max_detections {cfg.max_detections})")
        tracking = tracker is not None and bool(tracker.tracks) and not (
            age_ms is not None and cfg.discard_older_than_ms > 0
            and age_ms > cfg.discard_older_than_ms)
        if todo or tracking:
            try:
                rgb, K, depth = self.frame_arrays(frame, camera_info, cfg, notes)
            except InputError as e:
                for i in todo:
                    results[i] = PoseResult.failed(entries[i][1].name, Reason.BAD_INPUT, str(e))
                todo = []
                if tracking:        # every track ends: this frame cannot hold them
                    extra = tracker.fail_frame(f"bad_input: {e}")
                    tracking = False
            except Exception as e:  # noqa: BLE001 -- an unforeseen message: answered, logged
                for i in todo:
                    results[i] = PoseResult.failed(entries[i][1].name, Reason.INTERNAL_ERROR,
                                                   f"reading the frame: {type(e).__name__}: {e}")
                todo = []
                if tracking:
                    extra = tracker.fail_frame(f"internal_error: reading the frame: "
                                               f"{type(e).__name__}: {e}")
                    tracking = False
            if todo and depth is not None:
                from coop_ros.pipeline.sanity import box_scale_problem
                for i in list(todo):
                    d, spec, _ = entries[i]
                    try:
                        p = box_scale_problem(d["box_xywh"], depth, K,
                                              self.models[spec.name].diameter)
                    except Exception as e:  # noqa: BLE001 -- one detection, not the frame
                        p = ("error", f"box check failed: {type(e).__name__}: {e}")
                    if p:
                        results[i] = PoseResult.failed(spec.name, Reason.BAD_INPUT, p[1])
                        todo.remove(i)
            if todo or tracking:
                reserve = self.output_times.expected("output") * max(len(entries), 1)
                if deadline is not None:       # the estimator keeps at least half of what is left
                    reserve = min(reserve, 0.5 * max(deadline - time.monotonic(), 0.0))
                dets_todo = [Detection(entries[i][1].name, entries[i][0]["box_xywh"],
                                       score=entries[i][0]["score"]) for i in todo]
                dl = None if deadline is None else deadline - reserve
                try:
                    if tracker is not None:
                        tres = tracker.step(rgb, K, dets_todo, depth=depth,
                                            stamp=stamp * 1e-9 if stamp else None,
                                            num_hypotheses=cfg.num_hypotheses,
                                            deadline=dl, should_stop=should_stop)
                        res = [r.result for r in tres[:len(todo)]]
                        for i, r in zip(todo, tres):
                            tinfo[i] = r
                        extra = tres[len(todo):]
                    else:
                        res = self.estimator.estimate(
                            rgb, K, dets_todo, depth=depth, mode=cfg.mode,
                            num_hypotheses=cfg.num_hypotheses, should_stop=should_stop,
                            deadline=dl)
                except InputError as e:      # a frame-level input problem the checks missed
                    res = [PoseResult.failed(entries[i][1].name, Reason.BAD_INPUT, e.detail)
                           for i in todo]
                except Exception as e:  # noqa: BLE001 -- the frame is answered all the same
                    res = [PoseResult.failed(entries[i][1].name, Reason.INTERNAL_ERROR,
                                             f"{type(e).__name__}: {e}") for i in todo]
                    if tracker is not None:      # its state is unknown now: start again
                        extra = tracker.fail_frame(f"internal_error: {type(e).__name__}: {e}")
                for i, r in zip(todo, res):
                    results[i] = r
        # the tracks without a detection in this frame: one entry each (instance <name>_<k>
        # after the object's detections, so an object tracked alone keeps <name>_0 and its TF)
        by_name = {o.name: o for o in self.by_class.values()}
        for r in extra:
            spec = by_name.get(r.obj_id)
            if spec is None:
                continue
            k = counts.get(spec.name, 0)
            counts[spec.name] = k + 1
            box = r.result.box_xywh
            entries.append(({"class_id": spec.class_id, "score": 1.0,
                             "box_xywh": tuple(float(v) for v in box) if box is not None
                             else (0.0, 0.0, 0.0, 0.0)}, spec, f"{spec.name}_{k}"))
            results.append(r.result)
            tinfo.append(r)

        # ---- messages
        t_out = time.monotonic()
        est_arr = ObjectPoseEstimateArray(header=header)
        det3d = Detection3DArray(header=header)
        out = FrameOutput(header=header, poses=det3d, estimates=est_arr, rgb=rgb, K=K,
                          notes=notes, results=results)
        parent = cfg.camera_frame or header.frame_id
        tfs = []
        for (d, spec, iid), r in zip(entries, results):
            e = ObjectPoseEstimate(class_id=d["class_id"], instance_id=iid)
            e.object_name = spec.name if spec else ""
            ti = tinfo[len(est_arr.estimates)]
            if ti is not None:
                e.track_status = _TRACK_STATUS[ti.status]
                e.track_id = int(ti.track_id or 0)
                e.track_age = int(ti.age)
            if spec is None:
                r = PoseResult.failed("", Reason.UNKNOWN_OBJECT, f"class_id {d['class_id']!r} "
                                          f"is not configured (known: {sorted(self.by_class)})")
            if not r.ok:
                skipped = r.status == STATUS_SKIPPED
                e.status = ObjectPoseEstimate.STATUS_SKIPPED if skipped else \
                    ObjectPoseEstimate.STATUS_FAILED
                e.reason = r.reason
                e.score = float(r.score) if np.isfinite(r.score) else 0.0
                (out.skipped if skipped else out.failures).append(
                    f"{iid or d['class_id']}: {r.reason}")
                if skipped:
                    w = r.reason_code
                    out.skipped_reasons[w] = out.skipped_reasons.get(w, 0) + 1
                out.overlay_fail.append({"box": d["box_xywh"], "label": str(r.reason_code or "")})
                if r.timings:
                    e.timings = _timings(r.timings)
                est_arr.estimates.append(e)
                continue
            e.status, e.score = ObjectPoseEstimate.STATUS_OK, float(r.score)
            if ti is not None and ti.reason:       # reinitialised: why the last track ended
                e.reason = ti.reason
            e.best_so_far = bool(r.best_so_far)
            e.ambiguous = bool(r.ambiguous)
            e.pose = conv.pose_with_covariance(r.T_cam_obj, r.covariance)
            e.timings = _timings(r.timings)
            for h in r.hypotheses:
                if h.status == STATUS_OK:
                    e.hypotheses.append(PoseHypothesis(
                        pose=conv.pose_with_covariance(h.T, h.covariance),
                        score=float(h.score) if np.isfinite(h.score) else 0.0))
            est_arr.estimates.append(e)
            det3d.detections.append(self.detection3d(header, spec, iid, r))
            from coop_ros.ros.markers import instance_color
            color = instance_color(len(out.marker_items))
            out.marker_items.append({"instance_id": iid, "name": spec.name, "T": r.T_cam_obj,
                                     "obj": self.models[spec.name], "mesh": spec.mesh,
                                     "units": spec.units, "color": color})
            out.overlay_items.append({"key": self.estimator.render_key(spec.name),
                                      "T": r.T_cam_obj, "box": d["box_xywh"], "color": color,
                                      "label": f"{iid} {r.score:.2f}"
                                               + (" (best so far)" if r.best_so_far else "")
                                               + (" (ambiguous)" if r.ambiguous else "")})
            from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
            ps = PoseWithCovarianceStamped(header=header)
            ps.pose = e.pose
            out.object_poses.append((spec.name, ps))
            if parent:
                t = TransformStamped()
                t.header.stamp = header.stamp
                t.header.frame_id = parent
                t.child_frame_id = f"{cfg.frame_prefix}{iid}"
                p = e.pose.pose
                t.transform.translation.x = p.position.x
                t.transform.translation.y = p.position.y
                t.transform.translation.z = p.position.z
                t.transform.rotation = p.orientation
                tfs.append(t)
        if tracker is not None:
            out.tracked = [r.obj_id for r in tinfo if r is not None and r.ok
                           and r.status == "tracked"]
            self.track_log.append((time.monotonic(), len(out.tracked)))
        if tfs:
            from tf2_msgs.msg import TFMessage
            out.tf = TFMessage(transforms=tfs)
        if entries:
            self.output_times.record("output", (time.monotonic() - t_out) / len(entries))
        return out

    def detection3d(self, header, spec, iid, r):
        """vision_msgs/Detection3D of an ok result: results[0] = the pose with covariance and
        score, further results = the other ok hypotheses; bbox = the mesh's axis-aligned extents
        at the pose."""
        from vision_msgs.msg import Detection3D, ObjectHypothesis, ObjectHypothesisWithPose
        out = Detection3D(header=header, id=iid)
        out.results.append(ObjectHypothesisWithPose(
            hypothesis=ObjectHypothesis(class_id=spec.class_id, score=float(r.score)),
            pose=conv.pose_with_covariance(r.T_cam_obj, r.covariance)))
        for h in r.hypotheses[1:]:
            if h.status != "ok":
                continue
            out.results.append(ObjectHypothesisWithPose(
                hypothesis=ObjectHypothesis(class_id=spec.class_id,
                                            score=float(h.score) if np.isfinite(h.score) else 0.0),
                pose=conv.pose_with_covariance(h.T, h.covariance)))
        obj = self.models[spec.name]
        lo, hi = obj.vertices.min(0), obj.vertices.max(0)
        Tc = np.array(r.T_cam_obj, dtype=np.float64)
        Tb = Tc.copy()
        Tb[:3, 3] = Tc[:3, :3] @ ((lo + hi) / 2) + Tc[:3, 3]
        out.bbox.center = conv.pose_msg(Tb)
        out.bbox.size.x, out.bbox.size.y, out.bbox.size.z = (float(v) for v in hi - lo)
        return out
