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
A frame's work is bounded (``max_detections``, ``time_budget``, ``discard_older_than_ms``; see
coop_ros/ros/frame.py); ``destroy_node`` / SIGINT / SIGTERM stop it at the next stage boundary and
nothing is published afterwards. Camera inputs use the sensor-data QoS (``qos.<input>.
reliability``); what is wrong with the inputs (unmatched stamps, incompatible QoS, frame_ids,
stamps of 0, units) is reported on /diagnostics and in throttled log lines.
``main`` enlarges Fast DDS's shared-memory segment for this process before ``rclpy.init``
(coop_ros/ros/dds.py: images > 512 KiB are otherwise delivered up to a frame or 3 s late); the
camera driver's process needs the same for the inputs to arrive on time.

Run: ``python -m coop_ros.ros.node --ros-args --params-file config/coop.yaml`` (or
``ros2 run coop_ros coop_node`` / ``ros2 launch coop_ros coop.launch.py`` on a ROS 2 install).
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections import deque

import rclpy
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

try:   # Iron and newer
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from coop_ros.errors import CoopError
from coop_ros.msg import ObjectPoseEstimateArray
from coop_ros.errors import Reason
from coop_ros.ros import conversions as conv
from coop_ros.ros.diagnostics import LOST_HINT, NodeDiagnostics, Rate
from coop_ros.ros.frame import FrameProcessor, Note
from coop_ros.ros.parameters import NodeParameters
from coop_ros.render.overlay import draw_results
from coop_ros.ros.markers import mesh_markers
from coop_ros.ros.params import INPUTS, ConfigError, NodeConfig
from coop_ros.ros.startup import LARGE_MESH_FACES, load_objects, resolve_backend
from coop_ros.ros.sync import ApproximateSync, CameraInfoCache, LatestSlot

__all__ = ["CoopNode", "main"]


# ----------------------------------------------------------------------------- the node

class CoopNode(NodeParameters, NodeDiagnostics, Node):
    """The coop_node (see the module docstring). Construction raises ConfigError (a CoopError)
    for bad parameters, missing meshes or an unusable backend, naming the bad value."""

    #: how long destroy_node waits for the worker to finish its current stage [s]
    WORKER_JOIN_S = 0.25

    def __init__(self, node_name: str = "coop_node", **kwargs):
        super().__init__(node_name, **kwargs)
        try:
            self._setup()
        except BaseException:
            self._stop = getattr(self, "_stop", threading.Event())
            self._stop.set()
            Node.destroy_node(self)   # no half-built node stays in the context
            raise

    def _setup(self) -> None:
        self._lock = threading.Lock()
        self._pub_lock = threading.Lock()
        self._stop = threading.Event()
        self._declare()
        self.cfg = NodeConfig.from_flat(self._read_flat())
        log = self.get_logger()
        self.models = load_objects(self.cfg, log)
        self.backend_name, self._ckpts = resolve_backend(self.cfg, log)
        self.specs = {o.name: o for o in self.cfg.objects}

        # state shared with the worker / diagnostics
        self.rates = {k: Rate() for k in INPUTS}
        self.latencies = deque(maxlen=100)     # stamp -> publish [s]
        self.proc_times = deque(maxlen=100)    # worker processing [s]
        self.frames_processed = 0
        self.frames_failed = 0
        self.detections_skipped = 0
        self.detections_total = 0              # detections answered (any status)
        self.detections_budget_skipped = 0     # of them skipped budget_exhausted
        # (monotonic publish time, frame matched -> published [s]): the node's own latency,
        # queueing included, on its own clock (the stamp latency needs synchronised clocks)
        self.latency_log = deque(maxlen=1000)
        self.match_times = deque(maxlen=1000)  # monotonic times frames were matched
        self.frames_matched_total = 0          # frames matched (the sync is rebuilt on changes)
        self.detections_unmatched = deque(maxlen=1000)   # (time, n) detections dropped unmatched
        self.frames_stale = 0
        self.last_error = ""
        self.last_error_time = 0.0
        self._camera_infos = CameraInfoCache()
        self._images_since_depth = 0
        self._notes: dict = {}                 # key -> (level, text, monotonic time)
        self.messages_lost: dict = {}          # input role -> messages the middleware lost
        self._last_image_size = ""
        self._qos_issues: dict = {}            # topic role -> (text, monotonic time)
        self._slot = LatestSlot()
        self._sync = self._make_sync()
        self._estimator = None
        self._processor = None

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
                 f"{self.cfg.num_hypotheses} hypotheses, max_detections "
                 f"{self.cfg.max_detections}, time_budget {self.cfg.time_budget} s, "
                 f"input QoS {self.cfg.qos}, device {self.cfg.device}")

    # ------------------------------------------------------------------ I/O
    def _make_sync(self) -> ApproximateSync:
        """The frame synchroniser (image + detections [+ depth]); also (re)makes the tracking
        one, image [+ depth] alone, whose frames wait ``sync_slop`` s for their detections
        (:meth:`_flush_image_only`)."""
        depth = ["depth"] if self.cfg.mode == "rgbd" else []
        self._img_sync = ApproximateSync(["image"] + depth, slop_s=self.cfg.sync_slop,
                                         queue_size=self.cfg.sync_queue_size)
        self._image_only = None      # (frame, monotonic arrival, image stamp) waiting
        self._last_matched_stamp = -1
        return ApproximateSync(["image", "detections"] + depth, slop_s=self.cfg.sync_slop,
                               queue_size=self.cfg.sync_queue_size)

    def _flush_image_only(self) -> None:
        """Tracking: an image [+ depth] no detection matched within ``sync_slop`` s of its
        arrival is processed alone while some object is tracked (its tracks are followed and
        published); dropped otherwise (timer callback)."""
        now = time.monotonic()
        with self._lock:
            w = self._image_only
            if w is None or now - w[1] < max(self.cfg.sync_slop, 0.01):
                return
            self._image_only = None
        proc = self._processor
        if self.cfg.tracking and proc is not None and proc.tracking_active():
            from vision_msgs.msg import Detection2DArray
            frame = dict(w[0], detections=Detection2DArray(header=w[0]["image"].header))
            frame["t_recv"] = w[1]
            self.match_times.append(now)
            self._slot.put(frame)

    def _input_qos(self, name: str) -> QoSProfile:
        """The sensor-data profile (REP-2003: best effort, keep last 5, volatile) with the
        reliability of parameter qos.<name>.reliability."""
        q = QoSProfile(history=qos_profile_sensor_data.history, depth=qos_profile_sensor_data.depth,
                       durability=qos_profile_sensor_data.durability,
                       reliability=ReliabilityPolicy.RELIABLE if self.cfg.qos[name] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        return q

    def _sub(self, msg_type, topic: str, role: str, callback):
        def events(lost: bool):
            return SubscriptionEventCallbacks(
                incompatible_qos=lambda info, r=role, t=topic: self._on_incompatible_qos(r, t,
                                                                                      info),
                message_lost=(lambda info, r=role, t=topic: self._on_message_lost(r, t, info))
                if lost else None)
        try:
            return self.create_subscription(msg_type, topic, callback, self._input_qos(role),
                                            event_callbacks=events(True))
        except Exception:  # noqa: BLE001 -- a middleware without the message-lost event
            return self.create_subscription(msg_type, topic, callback, self._input_qos(role),
                                            event_callbacks=events(False))

    def _pub(self, msg_type, topic: str, qos):
        events = PublisherEventCallbacks(
            incompatible_qos=lambda info, t=topic: self._on_incompatible_qos("output", t, info))
        return self.create_publisher(msg_type, topic, qos, event_callbacks=events)

    def _make_io(self) -> None:
        qout = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                          reliability=ReliabilityPolicy.RELIABLE)
        if self.cfg.image_transport == "compressed":
            self._sub(CompressedImage, "image/compressed", "image",
                      lambda m: self._on_input("image", m))
        else:
            self._sub(Image, "image", "image", lambda m: self._on_input("image", m))
        self._sub(Image, "depth", "depth", lambda m: self._on_input("depth", m))
        self._sub(CameraInfo, "camera_info", "camera_info", self._on_camera_info)
        from vision_msgs.msg import Detection2DArray
        self._sub(Detection2DArray, "detections", "detections",
                  lambda m: self._on_input("detections", m))
        self.pub_poses = self._pub(Detection3DArray, "coop/poses", qout)
        self.pub_estimates = self._pub(ObjectPoseEstimateArray, "coop/estimates", qout)
        self.pub_markers = self._pub(MarkerArray, "coop/markers", qout)
        self.pub_overlay = self._pub(Image, "coop/overlay", qout)
        self.pub_object = {o.name: self._pub(PoseWithCovarianceStamped, f"coop/pose/{o.name}",
                                             qout) for o in self.cfg.objects}
        self.pub_tf = self._pub(TFMessage, "/tf", QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE))
        self.pub_diag = self._pub(DiagnosticArray, "/diagnostics", qout)
        self.create_timer(self.cfg.diagnostics_period, self._publish_diagnostics)
        self.create_timer(0.01, self._flush_image_only)

    def _on_incompatible_qos(self, role: str, topic: str, info) -> None:
        policy = getattr(getattr(info, "last_policy_kind", None), "name", "?")
        name = self.resolve_topic_name(topic)
        if role == "output":
            text = (f"a subscriber of '{name}' requests a QoS this node does not offer "
                    f"(policy {policy}): it receives nothing (outputs are reliable, volatile)")
        else:
            text = (f"input '{role}' ('{name}'): a publisher offers an incompatible QoS (policy "
                    f"{policy}), no messages are received; this node subscribes "
                    f"{self.cfg.qos[role]} (parameter qos.{role}.reliability)")
        self._qos_issues[f"{role}:{name}"] = (text, time.monotonic())
        self.get_logger().error(text, throttle_duration_sec=5.0)

    def _on_message_lost(self, role: str, topic: str, info) -> None:
        """The middleware lost messages of input ``role`` (a best-effort sample that never
        completed: for images, usually one larger than the publisher's shared-memory segment):
        counted, logged and reported on /diagnostics (ERROR for 30 s)."""
        n = int(getattr(info, "total_count_change", 0) or 0) or 1
        self.messages_lost[role] = self.messages_lost.get(role, 0) + n
        name = self.resolve_topic_name(topic)
        size = self._last_image_size if role in ("image", "depth") else ""
        text = (f"input '{role}' ('{name}'): {self.messages_lost[role]} messages lost by the "
                f"middleware so far ({n} now){size}: {LOST_HINT}")
        self._notes[f"lost:{role}"] = ("error", text, time.monotonic())
        self.get_logger().error(text, throttle_duration_sec=5.0)

    def _on_camera_info(self, msg) -> None:
        self.rates["camera_info"].tick(time.monotonic())
        self._camera_infos.add(conv.stamp_ns(msg.header), msg)

    def _on_input(self, name: str, msg) -> None:
        now = time.monotonic()
        self.rates[name].tick(now)
        if name == "image":
            nbytes = len(msg.data)
            self._last_image_size = (f" (the last image received: {getattr(msg, 'width', '?')}x"
                                     f"{getattr(msg, 'height', '?')}, {nbytes / 1e6:.1f} MB)")
        if name == "depth":
            self._images_since_depth = 0
        elif name == "image":
            self._images_since_depth += 1
        with self._lock:
            if name not in self._sync.names:   # depth in rgb mode: counted, not synchronised
                return
            n_before = self._sync.unmatchable
            d_before = self._sync.dropped.get("detections", 0)
            stamp = conv.stamp_ns(msg.header)
            matched = self._sync.add(name, stamp, msg, now)
            mism = self._sync.mismatches[-1] if self._sync.unmatchable > n_before else None
            d_lost = self._sync.dropped.get("detections", 0) - d_before
            if self.cfg.tracking and name in self._img_sync.names:
                alone = self._img_sync.add(name, stamp, msg, now)
                if alone is not None and conv.stamp_ns(alone["image"].header) > \
                        self._last_matched_stamp:
                    self._image_only = (alone, now, conv.stamp_ns(alone["image"].header))
            if matched is not None:
                ms = conv.stamp_ns(matched["image"].header)
                self._last_matched_stamp = max(self._last_matched_stamp, ms)
                if self._image_only is not None and self._image_only[2] <= ms:
                    self._image_only = None    # that image came with its detections
        if mism is not None and self._sync_stalled(now):
            self.get_logger().warning(self._mismatch_text(mism), throttle_duration_sec=5.0)
        if d_lost > 0:   # detections whose image (or depth) never came: lost or late in transport
            self.detections_unmatched.append((now, d_lost))
        if matched is not None:
            self._last_match = now
            self.match_times.append(now)
            self.frames_matched_total += 1
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
                if self._stop.is_set():
                    raise ConfigError("node destroyed during start-up")
                if len(obj.faces) >= LARGE_MESH_FACES:
                    self.get_logger().info(
                        f"object '{name}': {len(obj.faces)} faces, rendering "
                        f"{self.cfg.n_templates} templates (a few seconds per 100k faces on a "
                        "CPU renderer; cached for the next start unless template_cache_dir is "
                        "'none') ...")
                dt = est.add_object(name, obj)
                self.get_logger().info(f"object '{name}' registered ({dt:.1f} s, diameter "
                                       f"{obj.diameter * 1000:.0f} mm, {len(obj.faces)} faces)")
            self._estimator = est
            self._processor = FrameProcessor(est, self.models, self.cfg.objects,
                                             self.resolve_topic_name("camera_info"))
        except BaseException as e:  # noqa: BLE001 -- re-raised in the constructor
            self._startup_error = e if isinstance(e, CoopError) else ConfigError(
                f"estimator start-up failed: {type(e).__name__}: {e}")
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                frame = self._slot.get(timeout=0.5)
                if frame is None or self._stop.is_set():
                    continue
                t0 = time.perf_counter()
                try:
                    self._process(frame, time.monotonic())
                except Exception as e:  # noqa: BLE001 -- a bug must not kill the worker
                    if self._stop.is_set():
                        break
                    self._error(f"internal error: {type(e).__name__}: {e}")
                    self.get_logger().error(traceback.format_exc())
                self.proc_times.append(time.perf_counter() - t0)
        finally:
            est.release()

    def _error(self, text: str) -> None:
        self.last_error = text
        self.last_error_time = time.monotonic()

    def _camera_info_for(self, stamp: int, slop_ns: int, wait_s: float = 0.3):
        """(camera_info or None, notes): the one with the image's stamp (waits up to ``wait_s``
        for it while one may still come: topics arrive in no fixed order), else the latest."""
        cache = self._camera_infos
        t_end = time.monotonic() + wait_s
        msg, matched = cache.lookup(stamp, slop_ns)
        while not matched and cache.worth_waiting(stamp, slop_ns) and \
                time.monotonic() < t_end and not self._stop.is_set():
            time.sleep(0.01)
            msg, matched = cache.lookup(stamp, slop_ns)
        if msg is None:
            return None, []
        cache.served(stamp, matched)
        notes = []
        if not matched and cache.unmatched_streak >= cache.give_up_after and stamp != 0:
            off = cache.last_offset_ns
            notes.append(Note("camera_info_stamp", "warning", (
                f"camera_info stamps do not match the images on "
                f"'{self.resolve_topic_name('camera_info')}' (nearest "
                f"{off * 1e-6:+.1f} ms from the image, sync_slop "
                f"{self.cfg.sync_slop * 1000:.0f} ms): the latest camera_info is used")
                if off is not None else "camera_info stamps do not match the images"))
        return msg, notes

    def _process(self, frame: dict, t_start: float) -> None:
        cfg = self.cfg
        self._sync_estimator_config(cfg)
        header = frame["image"].header
        stamp = conv.stamp_ns(header)
        ci, notes = self._camera_info_for(stamp, int(cfg.sync_slop * 1e9))
        out = self._processor.process(
            frame, ci, cfg, notes=notes, should_stop=self._stop.is_set,
            deadline=t_start + cfg.time_budget if cfg.time_budget > 0 else None,
            now_ns=self.get_clock().now().nanoseconds)
        if self._stop.is_set():
            return
        log = self.get_logger()
        now = time.monotonic()
        for n in out.notes:
            self._notes[n.key] = (n.level, n.text, now)
            getattr(log, "error" if n.level == "error" else "warning")(
                n.text, throttle_duration_sec=10.0)
        where = f"frame {header.stamp.sec}.{header.stamp.nanosec:09d}"
        if out.failures:
            text = "; ".join(out.failures[:10]) + (
                f"; ... and {len(out.failures) - 10} more" if len(out.failures) > 10 else "")
            log.warning(f"{where}: {text}")
            self._error(text)
            self.frames_failed += 1
        if out.skipped:
            self.detections_skipped += len(out.skipped)
            kinds = out.skipped_reasons
            self.frames_stale += int(Reason.STALE_INPUT in kinds)
            log.info(f"{where}: {len(out.poses.detections)} estimated, {len(out.skipped)} "
                     f"skipped ({', '.join(f'{k} {v}' for k, v in kinds.items())}); first: "
                     f"{out.skipped[0]}")
        self._publish(out, cfg)
        self.detections_total += len(out.estimates.estimates)
        self.detections_budget_skipped += out.skipped_reasons.get(Reason.BUDGET_EXHAUSTED, 0)
        if "t_recv" in frame:
            t_pub = time.monotonic()
            self.latency_log.append((t_pub, t_pub - frame["t_recv"]))
        if stamp != 0:
            self.latencies.append(max(self.get_clock().now().nanoseconds - stamp, 0) * 1e-9)

    def _publish(self, out, cfg: NodeConfig) -> None:
        """Publish a frame's messages (coop/poses last, so a client waiting for them has the
        rest already). Nothing is published once the node is stopping."""
        with self._pub_lock:
            if self._stop.is_set() or not self.context.ok():
                return
            try:
                if cfg.publish["tf"] and out.tf is not None:
                    self.pub_tf.publish(out.tf)
                if cfg.publish["object_poses"]:
                    for name, ps in out.object_poses:
                        self.pub_object[name].publish(ps)
                if cfg.publish["estimates"]:
                    self.pub_estimates.publish(out.estimates)
                if cfg.publish["markers"]:
                    self.pub_markers.publish(mesh_markers(out.header, out.marker_items,
                                                          cfg.marker_type))
                if cfg.publish["overlay"] and out.rgb is not None and \
                        self.pub_overlay.get_subscription_count() > 0:
                    ov = draw_results(out.rgb, out.K, self._estimator.renderer, out.overlay_items,
                                      out.overlay_fail)
                    self.pub_overlay.publish(conv.rgb_to_image(ov, out.header))
                self.pub_poses.publish(out.poses)
            except Exception:  # noqa: BLE001 -- the context went away under us (shutdown)
                if self.context.ok():
                    raise
                return
            self.frames_processed += 1

    # ------------------------------------------------------------------ diagnostics
    # ------------------------------------------------------------------ shutdown
    def destroy_node(self):
        """Stop the worker (the estimation stops at its next stage boundary; nothing is published
        after this call starts), wait up to WORKER_JOIN_S for it, destroy the node. Returns in
        about WORKER_JOIN_S at most whatever the worker is doing."""
        stop, slot = getattr(self, "_stop", None), getattr(self, "_slot", None)
        if stop is not None:
            with self._pub_lock:      # waits for a publish in progress, then blocks the next
                stop.set()
        if slot is not None:
            slot.close()
        worker = getattr(self, "_worker", None)
        if worker is not None and worker.is_alive() and worker is not threading.current_thread():
            worker.join(timeout=self.WORKER_JOIN_S)
        return super().destroy_node()

    @property
    def worker_busy(self) -> bool:
        """True while the worker thread still runs (it may be finishing a stage after
        destroy_node)."""
        w = getattr(self, "_worker", None)
        return w is not None and w.is_alive()


def main(argv=None, exit_process: bool = True) -> int:
    """Entry point: ``python -m coop_ros.ros.node --ros-args --params-file coop.yaml``.

    SIGINT / SIGTERM (rclpy's signal handlers shut the context down) end the spin; the node is
    destroyed (the worker stops at its next stage boundary; destroy_node waits for it at most
    CoopNode.WORKER_JOIN_S), rclpy is shut down, and the process exits at once with
    ``os._exit`` after flushing its streams: the interpreter's own finalisation with torch and
    Fast DDS loaded took up to 2.4 s here, and a worker still inside a stage need not finish
    (nothing is published after destroy_node; the estimator holds no files). Does not return
    when ``exit_process`` is True (the executable); returns the exit code otherwise."""

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
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
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
    if exit_process:
        from coop_ros.ros.dds import cleanup
        cleanup()   # os._exit skips atexit: remove this process's Fast DDS profile file now
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
