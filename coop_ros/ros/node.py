"""``coop_node``: the Co-op pose estimator as a ROS 2 node (the only module family importing rclpy).

Inputs (relative names, remappable): ``image`` (sensor_msgs/Image rgb8 / bgr8 / rgba8 / bgra8 /
mono8, or sensor_msgs/CompressedImage on ``image/compressed`` with image_transport=compressed),
``depth`` (16UC1 mm or 32FC1 m; used in mode rgbd), ``camera_info`` (latest one is used),
``detections`` (vision_msgs/Detection2DArray; class_id -> object through the objects parameters).
image + detections (+ depth in rgbd) are matched by approximate time (``sync_slop``).

Outputs, every processed frame (header = the image header): ``coop/poses``
(vision_msgs/Detection3DArray, one Detection3D per estimated instance -- an empty array when
nothing was estimated), ``coop/estimates`` (coop_ros/ObjectPoseEstimateArray, one entry per
detection with status + reason, hypotheses and timings), ``coop/pose/<object>``
(PoseWithCovarianceStamped), ``/tf`` (``<frame_prefix><object>_<k>`` child of the camera frame,
image stamp), ``coop/markers`` (MarkerArray), ``coop/overlay`` (Image, rendered only while
someone subscribes), ``/diagnostics``.

Estimation runs in a worker thread fed through a one-slot latest-frame buffer: while it works on
a frame, newer frames replace each other in the slot (the stale ones are dropped and counted).
``main`` enlarges Fast DDS's shared-memory segment for this process before ``rclpy.init``
(coop_ros/ros/dds.py: images > 512 KiB are otherwise delivered up to a frame or 3 s late); the
camera driver's process needs the same for the inputs to arrive on time.

Run: ``python -m coop_ros.ros.node --ros-args --params-file config/coop.yaml`` (or
``ros2 run coop_ros coop_node`` / ``ros2 launch coop_ros coop.launch.py`` on a ROS 2 install).
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
import warnings
from collections import deque
from dataclasses import replace

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import (Detection3D, Detection3DArray, ObjectHypothesis,
                             ObjectHypothesisWithPose)
from visualization_msgs.msg import MarkerArray

from coop_ros.errors import CoopError, InputError
from coop_ros.msg import ObjectPoseEstimate, ObjectPoseEstimateArray, PoseHypothesis
from coop_ros.ros import conversions as conv
from coop_ros.ros.markers import draw_results, instance_color, mesh_markers
from coop_ros.ros.params import (OBJECT_PARAMETERS, PARAMETERS, ConfigError, NodeConfig)
from coop_ros.ros.sync import ApproximateSync, LatestSlot

__all__ = ["CoopNode", "main", "resolve_backend", "load_objects"]

CKPT_ARCH = {"coarse": "coarse", "refiner": "refiner", "selection": "selection"}


# ----------------------------------------------------------------------------- start-up helpers

def _check_checkpoints(cfg: NodeConfig) -> dict:
    """{slot: path} of the configured checkpoints of the coop backend, each one read and its
    architecture checked; raises ConfigError naming the missing / corrupt file (or saying that
    none is configured, or that the learned backend is not available)."""
    from pathlib import Path
    paths = {k: cfg.checkpoints.get(k, "") for k in CKPT_ARCH}
    if not any(paths.values()):
        raise ConfigError("backend 'coop' needs at least one checkpoint: parameters "
                          "'checkpoints.coarse', 'checkpoints.refiner', 'checkpoints.selection' "
                          "are all empty")
    from coop_ros.nets.checkpoint import read_checkpoint
    out = {}
    for k, path in paths.items():
        if not path:
            continue
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"backend 'coop': checkpoint file not found: {p} "
                              f"(parameter 'checkpoints.{k}')")
        try:
            payload = read_checkpoint(p)
        except Exception as e:  # InputError from the reader, or anything torch raises
            raise ConfigError(f"backend 'coop': corrupt or unreadable checkpoint {p} "
                              f"(parameter 'checkpoints.{k}'): {e}") from None
        arch = payload["config"].get("arch")
        if arch != CKPT_ARCH[k]:
            raise ConfigError(f"backend 'coop': checkpoint {p} (parameter 'checkpoints.{k}') "
                              f"holds a {arch!r} network, expected {CKPT_ARCH[k]!r}")
        out[k] = str(p)
    from coop_ros.backends.base import available_backends
    if "coop" not in available_backends():
        raise ConfigError("backend 'coop' (the learned networks) is not available in this build "
                          f"of coop_ros (available: {available_backends()}); use backend "
                          "'weight-free' or 'auto'")
    return out


def resolve_backend(cfg: NodeConfig, log=None) -> tuple[str, dict]:
    """(backend name, {slot: checkpoint path}) the node uses: 'weight-free'; 'coop' (checkpoints
    checked; slots without one use the weight-free implementation); for 'auto' coop when a
    checkpoint is configured and loads, else weight-free -- the choice and its reason are logged.
    Raises ConfigError for backend 'coop' with a missing / corrupt checkpoint."""
    def say(level, msg):
        if log:
            getattr(log, level)(msg)
    if cfg.backend == "weight-free":
        say("info", "backend: weight-free (classical estimators, no checkpoint)")
        return "weight-free", {}
    if cfg.backend == "auto" and not any(cfg.checkpoints.values()):
        say("info", "backend auto -> using backend 'weight-free' (no checkpoint configured: "
                    "parameters checkpoints.coarse / refiner / selection are empty)")
        return "weight-free", {}
    try:
        ckpts = _check_checkpoints(cfg)
    except ConfigError as e:
        if cfg.backend == "coop":
            raise
        say("warning", f"backend auto -> using backend 'weight-free' ({e})")
        return "weight-free", {}
    slots = ", ".join(f"{k}: {ckpts.get(k, 'weight-free (no checkpoint)')}" for k in CKPT_ARCH)
    say("info", f"backend {'auto -> using backend ' if cfg.backend == 'auto' else ''}"
                f"'coop' ({slots})")
    return "coop", ckpts


def load_objects(cfg: NodeConfig, log=None) -> dict:
    """{name: ObjectModel} of the configured objects. A missing / unreadable mesh raises
    ConfigError naming the object and the file; an implausible size for the declared units logs
    a warning (and is kept: the user may know better)."""
    from coop_ros.objects import ObjectModel, UnitsWarning
    out = {}
    for spec in cfg.objects:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                obj = ObjectModel.load(spec.mesh, units=spec.units, name=spec.name,
                                       models_info=spec.symmetry)
            except InputError as e:
                raise ConfigError(f"object '{spec.name}' (parameter 'objects.{spec.name}.mesh'): "
                                  f"{e}") from None
        for w in caught:
            if issubclass(w.category, UnitsWarning) and log:
                log.warning(f"object '{spec.name}': mesh {spec.mesh} declared in "
                            f"'{spec.units}' looks wrong: {w.message} (check parameter "
                            f"'objects.{spec.name}.units')")
            elif log:
                log.warning(f"object '{spec.name}': {w.message}")
        out[spec.name] = obj
    return out


class _Rate:
    """Message counter -> rate over the last window."""

    def __init__(self):
        self.times = deque(maxlen=200)
        self.total = 0
        self.first = None

    def tick(self, t: float) -> None:
        if self.first is None:
            self.first = t
        self.times.append(t)
        self.total += 1

    def hz(self, now: float, window: float = 5.0) -> float:
        ts = [t for t in self.times if now - t <= window]
        if len(ts) < 2:
            return 0.0
        return (len(ts) - 1) / max(ts[-1] - ts[0], 1e-6)

    def last(self) -> float | None:
        return self.times[-1] if self.times else None


# ----------------------------------------------------------------------------- the node

class CoopNode(Node):
    """The coop_node (see the module docstring). Construction raises ConfigError (a CoopError)
    for bad parameters, missing meshes or an unusable backend, naming the bad value."""

    def __init__(self, node_name: str = "coop_node", **kwargs):
        super().__init__(node_name, **kwargs)
        try:
            self._setup()
        except BaseException:
            Node.destroy_node(self)   # no half-built node stays in the context
            raise

    def _setup(self) -> None:
        self._lock = threading.Lock()
        self._declare()
        self.cfg = NodeConfig.from_flat(self._read_flat())
        log = self.get_logger()
        self.models = load_objects(self.cfg, log)
        self.backend_name, self._ckpts = resolve_backend(self.cfg, log)
        self.by_class = {o.class_id: o for o in self.cfg.objects}
        self.specs = {o.name: o for o in self.cfg.objects}

        # state shared with the worker / diagnostics
        self.rates = {k: _Rate() for k in ("image", "depth", "camera_info", "detections")}
        self.latencies = deque(maxlen=100)     # stamp -> publish [s]
        self.proc_times = deque(maxlen=100)    # worker processing [s]
        self.frames_processed = 0
        self.frames_failed = 0
        self.last_error = ""
        self.last_error_time = 0.0
        self._camera_info = None
        self._camera_infos = deque(maxlen=30)
        self._images_since_depth = 0
        self._slot = LatestSlot()
        self._sync = self._make_sync()
        self._estimator = None

        # start the worker: the estimator (renderer = GL context) lives in that thread
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._worker = threading.Thread(target=self._worker_main, name="coop_worker", daemon=True)
        self._worker.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._worker.join(timeout=10)
            raise self._startup_error

        self._make_io()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        log.info(f"ready: mode {self.cfg.mode}, backend {self.backend_name}, objects "
                 f"{[(o.name, o.class_id) for o in self.cfg.objects]}, "
                 f"{self.cfg.num_hypotheses} hypotheses, device {self.cfg.device}")

    # ------------------------------------------------------------------ parameters
    def _declare(self) -> None:
        for name, (default, desc) in PARAMETERS.items():
            if name == "objects.names":
                self.declare_parameter(name, Parameter.Type.STRING_ARRAY, ParameterDescriptor(
                    description=desc, type=ParameterType.PARAMETER_STRING_ARRAY))
            else:
                self.declare_parameter(name, default, ParameterDescriptor(
                    description=desc, dynamic_typing=True))
        for n in self._object_names():
            for suffix, (default, desc) in OBJECT_PARAMETERS.items():
                self.declare_parameter(f"objects.{n}.{suffix}", default, ParameterDescriptor(
                    description=desc, dynamic_typing=True))

    def _object_names(self) -> list:
        try:
            v = self.get_parameter("objects.names").value
        except ParameterUninitializedException:
            return []
        return list(v or [])

    def _read_flat(self) -> dict:
        flat = {}
        for name in PARAMETERS:
            if name == "objects.names":
                flat[name] = self._object_names()
            else:
                flat[name] = self.get_parameter(name).value
        for n in flat["objects.names"]:
            for suffix in OBJECT_PARAMETERS:
                flat[f"objects.{n}.{suffix}"] = self.get_parameter(f"objects.{n}.{suffix}").value
        return flat

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        try:
            new = self.cfg.updated(changes)
        except ConfigError as e:
            self.get_logger().warning(f"parameter change rejected: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        with self._lock:
            rebuild = (new.sync_slop != self.cfg.sync_slop or new.mode != self.cfg.mode)
            self.cfg = new
            if rebuild:
                self._sync = self._make_sync()
        self.get_logger().info(f"parameters changed: {changes}")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ I/O
    def _make_sync(self) -> ApproximateSync:
        names = ["image", "detections"] + (["depth"] if self.cfg.mode == "rgbd" else [])
        return ApproximateSync(names, slop_s=self.cfg.sync_slop,
                               queue_size=self.cfg.sync_queue_size)

    def _make_io(self) -> None:
        rel = (ReliabilityPolicy.RELIABLE if self.cfg.input_reliability == "reliable"
               else ReliabilityPolicy.BEST_EFFORT)
        qin = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=rel)
        qout = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                          reliability=ReliabilityPolicy.RELIABLE)
        if self.cfg.image_transport == "compressed":
            self.create_subscription(CompressedImage, "image/compressed",
                                     lambda m: self._on_input("image", m), qin)
        else:
            self.create_subscription(Image, "image", lambda m: self._on_input("image", m), qin)
        self.create_subscription(Image, "depth", lambda m: self._on_input("depth", m), qin)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qin)
        from vision_msgs.msg import Detection2DArray
        self.create_subscription(Detection2DArray, "detections",
                                 lambda m: self._on_input("detections", m), qin)
        self.pub_poses = self.create_publisher(Detection3DArray, "coop/poses", qout)
        self.pub_estimates = self.create_publisher(ObjectPoseEstimateArray, "coop/estimates",
                                                   qout)
        self.pub_markers = self.create_publisher(MarkerArray, "coop/markers", qout)
        self.pub_overlay = self.create_publisher(Image, "coop/overlay", qout)
        self.pub_object = {o.name: self.create_publisher(PoseWithCovarianceStamped,
                                                         f"coop/pose/{o.name}", qout)
                           for o in self.cfg.objects}
        self.pub_tf = self.create_publisher(TFMessage, "/tf", QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE))
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", qout)
        self.create_timer(self.cfg.diagnostics_period, self._publish_diagnostics)

    def _on_camera_info(self, msg) -> None:
        self.rates["camera_info"].tick(time.monotonic())
        self._camera_info = msg
        self._camera_infos.append((conv.stamp_ns(msg.header), msg))

    def _camera_info_for(self, stamp: int, wait_s: float = 0.3):
        """The camera_info with the image's stamp (within sync_slop; waits up to ``wait_s`` for
        it, since topics arrive in no fixed order), else the latest one, else None."""
        slop = int(self.cfg.sync_slop * 1e9)
        t_end = time.monotonic() + wait_s
        while True:
            infos = list(self._camera_infos)
            best = min(infos, key=lambda sm: abs(sm[0] - stamp), default=None)
            if best is not None and abs(best[0] - stamp) <= slop:
                return best[1]
            if time.monotonic() >= t_end:
                return self._camera_info
            time.sleep(0.01)

    def _on_input(self, name: str, msg) -> None:
        now = time.monotonic()
        self.rates[name].tick(now)
        if name == "depth":
            self._images_since_depth = 0
        elif name == "image":
            self._images_since_depth += 1
        with self._lock:
            if name not in self._sync.names:   # depth in rgb mode: counted, not synchronised
                return
            matched = self._sync.add(name, conv.stamp_ns(msg.header), msg, now)
        if matched is not None:
            matched["t_recv"] = now
            self._slot.put(matched)

    # ------------------------------------------------------------------ worker
    def _worker_main(self) -> None:
        try:
            from coop_ros.pipeline.estimator import PoseEstimator
            from coop_ros.pipeline.results import PoseConfig
            pc = PoseConfig(**self.cfg.pose_config_kwargs(self.backend_name),
                            **{f"{k}_ckpt": v for k, v in self._ckpts.items()})
            est = PoseEstimator(pc)
            for name, obj in self.models.items():
                dt = est.add_object(name, obj)
                self.get_logger().info(f"object '{name}' registered ({dt:.1f} s, diameter "
                                       f"{obj.diameter * 1000:.0f} mm)")
            self._estimator = est
        except BaseException as e:  # noqa: BLE001 -- re-raised in the constructor
            self._startup_error = e if isinstance(e, CoopError) else ConfigError(
                f"estimator start-up failed: {type(e).__name__}: {e}")
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._slot.closed:
                frame = self._slot.get(timeout=0.5)
                if frame is None:
                    continue
                t0 = time.perf_counter()
                try:
                    self._process(frame)
                except Exception as e:  # noqa: BLE001 -- a bug must not kill the worker
                    self._error(f"internal error: {type(e).__name__}: {e}")
                    self.get_logger().error(traceback.format_exc())
                self.proc_times.append(time.perf_counter() - t0)
        finally:
            est.release()

    def _error(self, text: str) -> None:
        self.last_error = text
        self.last_error_time = time.monotonic()

    def _sync_estimator_config(self, cfg: NodeConfig) -> None:
        est = self._estimator
        pc = est.config
        if (pc.refine_iterations, pc.rgbd_refine_iterations, pc.min_score) != (
                cfg.refine_iterations, cfg.rgbd_refine_iterations, cfg.min_score):
            est.config = replace(pc, refine_iterations=cfg.refine_iterations,
                                 rgbd_refine_iterations=cfg.rgbd_refine_iterations,
                                 min_score=cfg.min_score).validate()

    def _process(self, frame: dict) -> None:
        cfg = self.cfg
        self._sync_estimator_config(cfg)
        img_msg, det_msg = frame["image"], frame["detections"]
        header = img_msg.header
        dets = conv.detections_from_msg(det_msg)
        log = self.get_logger()

        # per-detection mapping to objects (unknown class_ids fail alone)
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
        frame_error = ""
        rgb = K = None
        todo = [i for i, (_, s, _) in enumerate(entries) if s is not None]
        if todo:
            try:
                rgb, K, depth = self._frame_arrays(frame, cfg)
                from coop_ros.pipeline.results import Detection
                res = self._estimator.estimate(
                    rgb, K, [Detection(entries[i][1].name, entries[i][0]["box_xywh"],
                                       score=entries[i][0]["score"]) for i in todo],
                    depth=depth, mode=cfg.mode, num_hypotheses=cfg.num_hypotheses)
                for i, r in zip(todo, res):
                    results[i] = r
            except InputError as e:
                frame_error = f"bad_input: {e}"
        # ---- messages
        est_arr = ObjectPoseEstimateArray(header=header)
        det3d = Detection3DArray(header=header)
        parent = cfg.camera_frame or header.frame_id
        tfs, marker_items, overlay_items, overlay_fail = [], [], [], []
        failures = []
        for (d, spec, iid), r in zip(entries, results):
            e = ObjectPoseEstimate(class_id=d["class_id"], instance_id=iid)
            e.object_name = spec.name if spec else ""
            if spec is None:
                reason = (f"unknown_object: class_id {d['class_id']!r} is not configured "
                          f"(known: {sorted(self.by_class)})")
            elif r is None:
                reason = frame_error or "bad_input: not estimated"
            elif not r.ok:
                reason = r.reason
            else:
                reason = ""
            if reason:
                e.status, e.reason = ObjectPoseEstimate.STATUS_FAILED, reason
                e.score = float(r.score) if r is not None and np.isfinite(r.score) else 0.0
                failures.append(f"{iid or d['class_id']}: {reason}")
                overlay_fail.append({"box": d["box_xywh"], "label": reason.split(":")[0]})
                if r is not None and r.timings:
                    e.timings = self._timings(r.timings)
                est_arr.estimates.append(e)
                continue
            e.status, e.score = ObjectPoseEstimate.STATUS_OK, float(r.score)
            e.pose = conv.pose_with_covariance(r.T_cam_obj, r.covariance)
            e.timings = self._timings(r.timings)
            for h in r.hypotheses:
                if h.status == "ok":
                    e.hypotheses.append(PoseHypothesis(
                        pose=conv.pose_with_covariance(h.T, h.covariance),
                        score=float(h.score) if np.isfinite(h.score) else 0.0))
            est_arr.estimates.append(e)
            det3d.detections.append(self._detection3d(header, d, spec, iid, r))
            obj = self.models[spec.name]
            color = instance_color(len(marker_items))
            marker_items.append({"instance_id": iid, "name": spec.name, "T": r.T_cam_obj,
                                 "obj": obj, "mesh": spec.mesh, "units": spec.units,
                                 "color": color})
            overlay_items.append({"key": self._estimator.render_key(spec.name), "T": r.T_cam_obj,
                                  "box": d["box_xywh"], "color": color,
                                  "label": f"{iid} {r.score:.2f}"})
            if cfg.publish["object_poses"]:
                ps = PoseWithCovarianceStamped(header=header)
                ps.pose = e.pose
                self.pub_object[spec.name].publish(ps)
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
        if failures:
            text = "; ".join(failures)
            log.warning(f"frame {header.stamp.sec}.{header.stamp.nanosec:09d}: {text}")
            self._error(text)
            self.frames_failed += 1
        # publish: poses last, so a client waiting for them has the rest already
        if cfg.publish["tf"] and tfs:
            self.pub_tf.publish(TFMessage(transforms=tfs))
        if cfg.publish["estimates"]:
            self.pub_estimates.publish(est_arr)
        if cfg.publish["markers"]:
            self.pub_markers.publish(mesh_markers(header, marker_items, cfg.marker_type))
        if cfg.publish["overlay"] and rgb is not None and \
                self.pub_overlay.get_subscription_count() > 0:
            ov = draw_results(rgb, K, self._estimator.renderer, overlay_items, overlay_fail)
            self.pub_overlay.publish(conv.rgb_to_image(ov, header))
        self.pub_poses.publish(det3d)
        self.frames_processed += 1
        now_ns = self.get_clock().now().nanoseconds
        self.latencies.append(max(now_ns - conv.stamp_ns(header), 0) * 1e-9)

    def _frame_arrays(self, frame: dict, cfg: NodeConfig):
        """(rgb, K, depth or None) of a matched frame; raises InputError naming the problem."""
        img = frame["image"]
        rgb = conv.compressed_to_rgb(img) if isinstance(img, CompressedImage) else \
            conv.image_to_rgb(img)
        H, W = rgb.shape[:2]
        ci = self._camera_info_for(conv.stamp_ns(img.header))
        if ci is None:
            raise InputError(f"no camera_info received on "
                             f"'{self.resolve_topic_name('camera_info')}' yet")
        K, (cw, ch) = conv.camera_info_to_K(ci)
        if cw and ch and (cw, ch) != (W, H):
            raise InputError(f"camera_info is for {cw}x{ch} images, the image is {W}x{H}")
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
        return rgb, K, depth

    @staticmethod
    def _timings(t: dict):
        from coop_ros.msg import StageTimings
        return StageTimings(templates=float(t.get("templates", 0.0)),
                            coarse=float(t.get("coarse", 0.0)),
                            refine=float(t.get("refine", 0.0)),
                            select=float(t.get("selection", 0.0)),
                            total=float(t.get("total", 0.0)))

    def _detection3d(self, header, d, spec, iid, r) -> Detection3D:
        out = Detection3D(header=header, id=iid)
        best = ObjectHypothesisWithPose(
            hypothesis=ObjectHypothesis(class_id=spec.class_id, score=float(r.score)),
            pose=conv.pose_with_covariance(r.T_cam_obj, r.covariance))
        out.results.append(best)
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

    # ------------------------------------------------------------------ diagnostics
    def diagnostics_status(self) -> DiagnosticStatus:
        now = time.monotonic()
        cfg = self.cfg
        st = DiagnosticStatus(name=f"{self.get_name()}: pose estimation", hardware_id="coop_ros")
        level, msgs = DiagnosticStatus.OK, []
        img_last, depth_last = self.rates["image"].last(), self.rates["depth"].last()
        images_flowing = img_last is not None and now - img_last < max(cfg.depth_timeout, 1.0)
        img_first = self.rates["image"].first
        # two images in a row without a depth (one alone may just be ahead of its depth)
        if cfg.mode == "rgbd" and images_flowing and self._images_since_depth >= 2 \
                and now - img_first > cfg.depth_timeout and (
                depth_last is None or now - depth_last > cfg.depth_timeout):
            level = DiagnosticStatus.ERROR
            since = "ever" if depth_last is None else f"{now - depth_last:.1f} s"
            msgs.append(f"mode 'rgbd' but no depth image on "
                        f"'{self.resolve_topic_name('depth')}' for {since} while images arrive: "
                        "no frame can be processed (publish depth or set mode:=rgb)")
            self.get_logger().warning(msgs[-1], throttle_duration_sec=5.0)
        if images_flowing and self._camera_info is None and now - img_first > 1.0:
            level = DiagnosticStatus.ERROR
            msgs.append(f"no camera_info on '{self.resolve_topic_name('camera_info')}'")
        if self.last_error and now - self.last_error_time < 10.0:
            level = max(level, DiagnosticStatus.WARN)
            msgs.append(f"last error: {self.last_error}")
        st.level = level
        st.message = "; ".join(msgs) if msgs else "ok"
        lat = list(self.latencies)
        proc = list(self.proc_times)
        wait = self._sync.max_wait()
        vals = {
            "backend": self.backend_name, "mode": cfg.mode,
            **{f"rate_{k} [Hz]": f"{r.hz(now):.2f}" for k, r in self.rates.items()},
            **{f"received_{k}": str(r.total) for k, r in self.rates.items()},
            "frames_matched": str(self._sync.matched),
            "frames_processed": str(self.frames_processed),
            "frames_with_failures": str(self.frames_failed),
            "frames_dropped_stale": str(self._slot.dropped),
            "sync_dropped": str(sum(self._sync.dropped.values())),
            # first -> last input of a frame arriving, worst of the last 100 frames
            "sync_wait_max [ms]": f"{wait[0] * 1e3:.0f} ({wait[1]} last)" if wait else "",
            "latency_last [ms]": f"{lat[-1] * 1e3:.1f}" if lat else "",
            "latency_mean [ms]": f"{np.mean(lat) * 1e3:.1f}" if lat else "",
            "latency_max [ms]": f"{np.max(lat) * 1e3:.1f}" if lat else "",
            "processing_mean [ms]": f"{np.mean(proc) * 1e3:.1f}" if proc else "",
            "last_error": self.last_error,
        }
        st.values = [KeyValue(key=k, value=v) for k, v in vals.items()]
        return st

    def _publish_diagnostics(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status.append(self.diagnostics_status())
        self.pub_diag.publish(arr)

    # ------------------------------------------------------------------ shutdown
    def destroy_node(self):
        slot, worker = getattr(self, "_slot", None), getattr(self, "_worker", None)
        if slot is not None:
            slot.close()
        if worker is not None and worker.is_alive():
            worker.join(timeout=30)
        return super().destroy_node()


def main(argv=None) -> int:
    """Entry point: ``python -m coop_ros.ros.node --ros-args --params-file coop.yaml``."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from coop_ros.ros.dds import ensure_shm_segment
    try:   # before rclpy.init: Fast DDS reads its profile when the participant is created
        _, dds_note = ensure_shm_segment()
    except ValueError as e:
        print(f"[coop_node] FATAL: {e}", file=sys.stderr, flush=True)
        return 2
    rclpy.init(args=argv if argv is not None else sys.argv)
    try:
        node = CoopNode()
    except CoopError as e:
        print(f"[coop_node] FATAL: {e}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    node.get_logger().info(dds_note)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    try:
        ex.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
