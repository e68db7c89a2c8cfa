"""Replay a BOP-format scene to ``coop_node`` and compare its answers with the ground truth.

    python -m coop_ros.ros.replay --bop DIR [--frames N] [--rate HZ | --lockstep]
        [--timeout S] [--overlay-dir out/demo_overlay] [--mode rgbd]

Publishes, per frame: ``camera_info``, ``depth`` (16UC1 mm), ``image`` (rgb8) and
``detections`` (vision_msgs/Detection2DArray from the GT ``bbox_visib`` boxes, class_id = the BOP
obj_id) with one stamp; listens to ``coop/poses``, ``coop/estimates``, ``/tf`` and
``coop/overlay``. ``--lockstep`` (default) waits for the node's answer before the next frame;
``--rate`` publishes at a fixed rate. Prints a table (object, rotation error, translation error,
MSSD / diameter, score, latency) and exits 0 only when every frame got a Detection3DArray.

:class:`Replayer` is also used by the tests and bench/soak_node.py.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from builtin_interfaces.msg import Time
from coop_ros.msg import ObjectPoseEstimateArray
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import (Detection2D, Detection2DArray, Detection3DArray, ObjectHypothesis,
                             ObjectHypothesisWithPose)

__all__ = ["Replayer", "frame_messages", "make_image", "make_depth", "make_camera_info",
           "make_detections", "main"]


def _time(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def make_image(rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """(H, W, 3) uint8 RGB -> Image in ``encoding`` (rgb8 | bgr8 | mono8)."""
    if encoding == "bgr8":
        data = np.ascontiguousarray(rgb[..., ::-1])
    elif encoding == "mono8":
        data = np.ascontiguousarray(rgb.mean(axis=2).astype(np.uint8))
    else:
        data = np.ascontiguousarray(rgb)
    ch = 1 if data.ndim == 2 else data.shape[2]
    return Image(header=header, height=int(data.shape[0]), width=int(data.shape[1]),
                 encoding=encoding, is_bigendian=0, step=int(data.shape[1] * ch),
                 data=data.tobytes())


def make_depth(depth_m: np.ndarray, header: Header, encoding: str = "16UC1") -> Image:
    """(H, W) metres -> Image 16UC1 (mm) or 32FC1 (m)."""
    if encoding == "32FC1":
        data = np.ascontiguousarray(depth_m.astype(np.float32))
        step = data.shape[1] * 4
    else:
        data = np.ascontiguousarray(np.clip(np.round(depth_m * 1000.0), 0, 65535)
                                    .astype(np.uint16))
        step = data.shape[1] * 2
    return Image(header=header, height=int(data.shape[0]), width=int(data.shape[1]),
                 encoding=encoding, is_bigendian=0, step=int(step), data=data.tobytes())


def make_camera_info(K: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    ci = CameraInfo(header=header, width=int(width), height=int(height))
    ci.k = [float(v) for v in np.asarray(K, dtype=np.float64).reshape(-1)]
    ci.p = [float(K[0, 0]), 0.0, float(K[0, 2]), 0.0, 0.0, float(K[1, 1]), float(K[1, 2]), 0.0,
            0.0, 0.0, 1.0, 0.0]
    ci.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    ci.distortion_model = "plumb_bob"
    ci.d = [0.0] * 5
    return ci


def make_detections(boxes, header: Header) -> Detection2DArray:
    """[(class_id, (x, y, w, h)[, score])] -> Detection2DArray (bbox centre + size, pixels)."""
    arr = Detection2DArray(header=header)
    for i, b in enumerate(boxes):
        cid, (x, y, w, h) = b[0], b[1]
        score = float(b[2]) if len(b) > 2 else 1.0
        d = Detection2D(header=header, id=str(i))
        d.bbox.center.position.x = float(x) + float(w) / 2.0
        d.bbox.center.position.y = float(y) + float(h) / 2.0
        d.bbox.size_x, d.bbox.size_y = float(w), float(h)
        d.results.append(ObjectHypothesisWithPose(
            hypothesis=ObjectHypothesis(class_id=str(cid), score=score)))
        arr.detections.append(d)
    return arr


def gt_boxes(frame) -> list:
    """[(class_id = str(obj_id), box (x, y, w, h))] of a BopFrame's GT instances, in GT order
    (the k-th detection is GT instance k): the visible boxes as detections
    (:meth:`coop_ros.bop.dataset.GtInfo.detection_box`); an instance out of view keeps its empty
    ``bbox_obj``, which the node answers as a bad box."""
    out = []
    for k, g in enumerate(frame.gt):
        info = frame.gt_info[k]
        b = info.detection_box("visib")
        out.append((str(g.obj_id), b if b is not None else tuple(float(v) for v in info.bbox_obj)))
    return out


def frame_messages(frame, stamp_ns: int, frame_id: str = "camera_color_optical_frame",
                   depth_encoding: str = "16UC1") -> dict:
    """The four input messages of a BopFrame with one stamp (each with its own Header)."""
    def h():
        return Header(stamp=_time(stamp_ns), frame_id=frame_id)
    msgs = {"camera_info": make_camera_info(frame.K, frame.width, frame.height, h()),
            "image": make_image(frame.rgb, h()),
            "detections": make_detections(gt_boxes(frame), h())}
    if frame.depth is not None:
        msgs["depth"] = make_depth(frame.depth, h(), depth_encoding)
    return msgs


class Replayer(Node):
    """Publishes frames to the node's inputs and records its outputs by stamp (ns).

    Attributes (filled from the executor thread, read under ``lock``): ``poses`` {stamp:
    Detection3DArray}, ``estimates`` {stamp: ObjectPoseEstimateArray}, ``tf`` {stamp:
    [TransformStamped]}, ``overlays`` {stamp: Image}, ``overlay`` last Image, ``received_at``
    {stamp: monotonic time}.

    ``reliability`` ("reliable" | "best_effort") is the QoS of the camera publishers (image,
    depth, camera_info; a driver publishing with the sensor-data profile is "best_effort");
    detections are always published reliable, as a detector does.
    """

    def __init__(self, name: str = "coop_replay", overlay: bool = False,
                 reliability: str = "reliable", **kw):
        super().__init__(name, **kw)
        q = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                       reliability=ReliabilityPolicy.RELIABLE)
        qin = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort"
                         else ReliabilityPolicy.RELIABLE)
        self.pubs = {"image": self.create_publisher(Image, "image", qin),
                     "depth": self.create_publisher(Image, "depth", qin),
                     "camera_info": self.create_publisher(CameraInfo, "camera_info", qin),
                     "detections": self.create_publisher(Detection2DArray, "detections", q)}
        self.lock = threading.Lock()
        self.poses, self.estimates, self.tf, self.received_at, self.sent_at = {}, {}, {}, {}, {}
        self.overlay = None
        self.overlays = {}
        self.create_subscription(Detection3DArray, "coop/poses", self._on_poses, q)
        self.create_subscription(ObjectPoseEstimateArray, "coop/estimates", self._on_est, q)
        self.create_subscription(TFMessage, "/tf", self._on_tf, QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE))
        if overlay:
            self.create_subscription(Image, "coop/overlay", self._on_overlay, q)

    @staticmethod
    def _key(header) -> int:
        return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)

    def _on_poses(self, m):
        with self.lock:
            k = self._key(m.header)
            self.poses[k] = m
            self.received_at[k] = time.monotonic()

    def _on_est(self, m):
        with self.lock:
            self.estimates[self._key(m.header)] = m

    def _on_tf(self, m):
        with self.lock:
            for t in m.transforms:
                self.tf.setdefault(self._key(t.header), []).append(t)

    def _on_overlay(self, m):
        with self.lock:
            self.overlay = m
            self.overlays[self._key(m.header)] = m

    def wait_for_node(self, timeout: float = 120.0, need_output: bool = True,
                      inputs=None) -> bool:
        """Wait until the node subscribes to our ``inputs`` (default: every input we publish,
        :attr:`pubs`) and publishes coop/poses.

        Every topic a frame is published on must be matched before the first frame: a reliable
        publisher drops what it sends before discovery matched it with the node, and on a busy
        machine one endpoint (camera_info, say) can match a second later than the others."""
        inputs = tuple(self.pubs) if inputs is None else inputs
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            ok = all(self.pubs[k].get_subscription_count() > 0 for k in inputs)
            if ok and (not need_output or self.count_publishers("coop/poses") > 0):
                time.sleep(0.5)   # let the remaining endpoints match too
                return True
            time.sleep(0.1)
        return False

    def publish(self, msgs: dict, ack_timeout: float = 5.0) -> bool:
        """Publish a frame's messages: camera_info, depth and image first, then -- once every
        subscriber acknowledged those (reliable QoS; at most ``ack_timeout`` s) -- detections.

        Why the wait: a publisher counts a subscriber as soon as *it* has discovered the
        subscriber, but the subscriber drops samples until it has discovered the publisher in
        turn; the publisher repeats them only after its next heartbeat (Fast DDS: 3 s). On a
        busy machine the first frame's camera_info then reached the node after its detections,
        and the node rightly answered "no camera_info received". Waiting for the acknowledgement
        makes the camera data arrive before the detections that trigger the estimate. Returns
        False when an acknowledgement did not come in time (the detections are sent anyway)."""
        k = self._key(msgs["image"].header if "image" in msgs else msgs["detections"].header)
        with self.lock:
            self.sent_at[k] = time.monotonic()
        camera = [n for n in ("camera_info", "depth", "image") if msgs.get(n) is not None]
        for name in camera:
            self.pubs[name].publish(msgs[name])
        acked = True
        t_end = time.monotonic() + ack_timeout
        for name in camera:
            left = max(t_end - time.monotonic(), 0.0)
            acked &= self.pubs[name].wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))
        if msgs.get("detections") is not None:
            self.pubs["detections"].publish(msgs["detections"])
        return bool(acked)

    def wait_result(self, stamp_ns: int, timeout: float, need_estimates: bool = True):
        """(Detection3DArray, ObjectPoseEstimateArray or None) for a stamp, or None on timeout."""
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            with self.lock:
                p = self.poses.get(stamp_ns)
                e = self.estimates.get(stamp_ns)
            if p is not None and (e is not None or not need_estimates):
                return p, e
            time.sleep(0.01)
        return None


class Spinner:
    """rclpy context + executor in a background thread for a set of nodes (tests, scripts)."""

    def __init__(self, args=None):
        from rclpy.executors import SingleThreadedExecutor

        from coop_ros.ros.dds import ensure_shm_segment
        # images / depth > 512 KiB: without a larger Fast DDS shared-memory segment in the
        # publishing process they reach the node up to a frame (or 3 s) late (see dds.py)
        self.dds_note = ensure_shm_segment()[1]
        self.context = rclpy.Context()
        rclpy.init(args=args, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self._thread = None

    def add(self, node):
        self.executor.add_node(node)
        return node

    def start(self):
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        return self

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 -- shutdown races
            pass

    def stop(self):
        for n in list(self.executor.get_nodes()):
            self.executor.remove_node(n)
            n.destroy_node()
        self.executor.shutdown(timeout_sec=2)
        rclpy.try_shutdown(context=self.context)
        if self._thread:
            self._thread.join(timeout=5)


# ----------------------------------------------------------------------------- evaluation

def sym_rotation_error_deg(T_est: np.ndarray, T_gt: np.ndarray, syms: np.ndarray) -> float:
    """Smallest rotation error [deg] between T_est and T_gt @ S over the object's symmetry
    transforms S ((n, 4, 4), identity first): 0 for a can turned about its axis."""
    from coop_ros.geometry.se3 import rotation_angle_deg
    R = np.asarray(T_est)[:3, :3]
    return float(min(rotation_angle_deg(R, (np.asarray(T_gt) @ S)[:3, :3]) for S in syms))


def evaluate(ds, frames, rep: Replayer, names: dict) -> tuple[list, int]:
    """Rows {frame, object, instance, status, rot_deg (symmetry-aware), rot_raw_deg, trans_mm,
    mssd_rel, score, latency_s} comparing the node's estimates with the GT; and the number of
    frames without an answer."""
    from coop_ros.bop.metrics import mssd
    from coop_ros.geometry.se3 import pose_errors, quat_xyzw_to_matrix
    rows, missing = [], 0
    cache = {}
    for (stamp, frame) in frames:
        with rep.lock:
            poses, est = rep.poses.get(stamp), rep.estimates.get(stamp)
            lat = rep.received_at.get(stamp, np.nan) - rep.sent_at.get(stamp, np.nan)
        if poses is None:
            missing += 1
            continue
        for k, g in enumerate(frame.gt):
            e = est.estimates[k] if est is not None and k < len(est.estimates) else None
            row = {"frame": f"{frame.scene_id}/{frame.im_id}",
                   "object": names.get(g.obj_id, str(g.obj_id)),
                   "instance": e.instance_id if e else "", "latency_s": lat}
            if e is None or e.status != 0:
                word = "skipped: " if e is not None and e.status == 2 else "failed: "
                row.update(status=word + (e.reason if e else "no estimate"))
                rows.append(row)
                continue
            p = e.pose.pose
            T = np.eye(4)
            T[:3, :3] = quat_xyzw_to_matrix(np.array([p.orientation.x, p.orientation.y,
                                                      p.orientation.z, p.orientation.w]))
            T[:3, 3] = [p.position.x, p.position.y, p.position.z]
            rot, tr = pose_errors(T, g.T_cam_obj)
            if g.obj_id not in cache:
                obj = ds.object(g.obj_id)
                cache[g.obj_id] = (obj.sample_surface(1000), obj.symmetry_transforms(),
                                   obj.diameter)
            pts, syms, diam = cache[g.obj_id]
            err = mssd(T[:3, :3], T[:3, 3], g.T_cam_obj[:3, :3], g.T_cam_obj[:3, 3], pts, syms)
            row.update(status="ok", rot_deg=sym_rotation_error_deg(T, g.T_cam_obj, syms),
                       rot_raw_deg=rot, sym=len(syms) > 1, trans_mm=tr * 1000.0,
                       mssd_rel=err / diam,
                       score=e.score, cov_diag=list(e.pose.covariance[::7]),
                       node_total_s=e.timings.total)
            rows.append(row)
    return rows, missing


def print_table(rows, file=sys.stdout) -> None:
    """The demo table; "rot err" is symmetry-aware (see :func:`sym_rotation_error_deg`), "raw"
    the plain angle, shown for symmetric objects."""
    print(f"{'frame':>6} {'object':<14} {'instance':<16} {'rot err':>8} {'(raw)':>8} "
          f"{'trans err':>10} {'MSSD/diam':>9} {'score':>6} {'latency':>8}  status", file=file)
    print(f"{'':>6} {'':<14} {'':<16} {'[deg]':>8} {'[deg]':>8} {'[mm]':>10} {'':>9} {'':>6} "
          f"{'[s]':>8}", file=file)
    for r in rows:
        if r["status"] == "ok":
            raw = f"{r['rot_raw_deg']:8.2f}" if r.get("sym") else f"{'':>8}"
            print(f"{r['frame']:>6} {r['object']:<14} {r['instance']:<16} {r['rot_deg']:8.2f} "
                  f"{raw} {r['trans_mm']:10.1f} {r['mssd_rel']:9.3f} {r['score']:6.3f} "
                  f"{r['latency_s']:8.2f}  ok", file=file)
        else:
            print(f"{r['frame']:>6} {r['object']:<14} {r['instance']:<16} {'-':>8} {'':>8} "
                  f"{'-':>10} {'-':>9} {'-':>6} {r['latency_s']:8.2f}  {r['status'][:70]}",
                  file=file)
    if any(r.get("sym") for r in rows):
        print("rot err: the smallest angle over the object's symmetries (a symmetric object's "
              "turn about its symmetry axis is not observable, e.g. the can's spin); (raw): "
              "without them", file=file)
    ok = [r for r in rows if r["status"] == "ok"]
    if ok:
        print(f"summary: {len(ok)}/{len(rows)} instances estimated; median rotation error "
              f"{np.median([r['rot_deg'] for r in ok]):.2f} deg, median translation error "
              f"{np.median([r['trans_mm'] for r in ok]):.1f} mm; MSSD < 0.1 diameter: "
              f"{sum(r['mssd_rel'] < 0.1 for r in ok)}/{len(rows)}", file=file)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m coop_ros.ros.replay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bop", required=True, help="BOP-format dataset root (coop-ros synth)")
    ap.add_argument("--frames", type=int, default=0, help="frames to send (0: all)")
    ap.add_argument("--repeat", type=int, default=1, help="send the frame list this many times")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="publish at this rate [Hz] instead of waiting for each answer")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait per answer")
    ap.add_argument("--startup-timeout", type=float, default=180.0,
                    help="seconds to wait for the node to come up")
    ap.add_argument("--frame-id", default="camera_color_optical_frame")
    ap.add_argument("--stamp-start-ns", type=int, default=0,
                    help="stamp of frame i = this + i x 100 ms (default: the wall clock)")
    ap.add_argument("--depth-encoding", default="16UC1", choices=("16UC1", "32FC1"))
    ap.add_argument("--overlay-dir", default=None,
                    help="write the node's overlay of every frame here (<scene>_<image>.png)")
    ap.add_argument("--names", default="", help="obj_id=name,... for the table")
    args, ros_args = ap.parse_known_args(argv)

    from coop_ros.bop.dataset import BopDataset
    ds = BopDataset(args.bop)
    ids = ds.images()
    if args.frames:
        ids = ids[:args.frames]
    names = {}
    for item in filter(None, args.names.split(",")):
        k, _, v = item.partition("=")
        names[int(k)] = v
    frames_data = [ds.frame(s, i) for s, i in ids]

    sp = Spinner(args=["replay"] + ros_args)
    rep = sp.add(Replayer(overlay=bool(args.overlay_dir), context=sp.context))
    sp.start()
    try:
        print(f"[replay] waiting for coop_node (up to {args.startup_timeout:.0f} s) ...",
              flush=True)
        if not rep.wait_for_node(args.startup_timeout):
            print("[replay] ERROR: coop_node did not come up (no subscriber on one of "
                  f"{', '.join(map(repr, rep.pubs))} / no publisher of 'coop/poses')",
                  file=sys.stderr)
            return 3
        sent = []
        period = 1.0 / args.rate if args.rate > 0 else 0.0
        t_next = time.monotonic()
        for _ in range(args.repeat):
            for frame in frames_data:
                stamp = (args.stamp_start_ns + len(sent) * 100_000_000 if args.stamp_start_ns
                         else time.time_ns())
                if not rep.publish(frame_messages(frame, stamp, args.frame_id,
                                                  args.depth_encoding)):
                    print(f"[replay] frame {frame.scene_id}/{frame.im_id}: the node did not "
                          "acknowledge the camera messages within 5 s", file=sys.stderr)
                sent.append((stamp, frame))
                if period:
                    t_next += period
                    time.sleep(max(0.0, t_next - time.monotonic()))
                else:
                    r = rep.wait_result(stamp, args.timeout)
                    status = "answered" if r else "NO ANSWER"
                    print(f"[replay] frame {frame.scene_id}/{frame.im_id}: {status}"
                          + (f" ({len(r[0].detections)} poses)" if r else ""), flush=True)
        if period:
            rep.wait_result(sent[-1][0], args.timeout)
        if args.overlay_dir:   # the overlays may still be on their way
            t_end = time.monotonic() + 10.0
            while time.monotonic() < t_end:
                with rep.lock:
                    have = set(rep.overlays)
                if all(st in have for st, _ in sent if st in rep.poses):
                    break
                time.sleep(0.05)
        rows, missing = evaluate(ds, sent, rep, names)
        print()
        print_table(rows)
        if args.overlay_dir:
            import cv2

            from coop_ros.ros.conversions import image_to_rgb
            out_dir = Path(args.overlay_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            written = 0
            for k, (st, frame) in enumerate(sent):
                with rep.lock:
                    ov = rep.overlays.get(st)
                if ov is None:
                    print(f"[replay] no overlay for frame {frame.scene_id}/{frame.im_id}",
                          file=sys.stderr)
                    continue
                suffix = f"_{k // len(frames_data)}" if args.repeat > 1 else ""
                path = out_dir / f"{frame.scene_id:06d}_{frame.im_id:06d}{suffix}.png"
                cv2.imwrite(str(path), cv2.cvtColor(image_to_rgb(ov), cv2.COLOR_RGB2BGR))
                written += 1
            print(f"overlays: {written} images in {out_dir}")
        print(f"frames: {len(sent)} sent, {len(sent) - missing} answered, {missing} without "
              "an answer")
        return 0 if missing == 0 else 1
    finally:
        sp.stop()


if __name__ == "__main__":
    sys.exit(main())
