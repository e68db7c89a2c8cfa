"""ROS message <-> numpy conversions of the node (no rclpy import: message classes only).

Images: ``sensor_msgs/Image`` rgb8 / bgr8 / rgba8 / bgra8 / mono8 -> (H, W, 3) uint8 RGB;
depth 16UC1 (millimetres) / 32FC1 (metres) -> (H, W) float32 metres (0 = no measurement);
``sensor_msgs/CompressedImage`` (jpeg / png) -> RGB. Poses: (4, 4) ``T_cam_obj`` [m] and (6, 6)
covariance (ROS order x, y, z, rot x, rot y, rot z) -> geometry_msgs. Every problem raises
:class:`coop_ros.errors.InputError` naming the field and value.
"""
from __future__ import annotations

import numpy as np

from coop_ros.errors import InputError
from coop_ros.geometry.se3 import matrix_to_quat_xyzw

__all__ = ["stamp_ns", "image_to_rgb", "compressed_to_rgb", "depth_to_m", "camera_info_to_K",
           "detections_from_msg", "pose_msg", "pose_with_covariance", "rgb_to_image",
           "SUPPORTED_ENCODINGS", "DEPTH_ENCODINGS"]

SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


def stamp_ns(header) -> int:
    """Header stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _pixels(msg, channels: int, dtype, what: str) -> np.ndarray:
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    if h <= 0 or w <= 0:
        raise InputError(f"{what}: empty image ({w}x{h})")
    if step < w * channels * itemsize:
        raise InputError(f"{what}: step {step} < width {w} x {channels} x {itemsize} bytes")
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, (bytes, np.ndarray))
                        else msg.data, dtype=np.uint8)
    if buf.size < h * step:
        raise InputError(f"{what}: data has {buf.size} bytes, expected {h} x step {step}")
    rows = buf[:h * step].reshape(h, step)[:, :w * channels * itemsize]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dt).reshape(h, w, channels) if channels > 1 else \
        np.ascontiguousarray(rows).view(dt).reshape(h, w)
    return arr.astype(np.dtype(dtype).newbyteorder("="), copy=False)


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB (copy)."""
    enc = msg.encoding
    if enc == "rgb8":
        return _pixels(msg, 3, np.uint8, "image").copy()
    if enc == "bgr8":
        return _pixels(msg, 3, np.uint8, "image")[..., ::-1].copy()
    if enc == "rgba8":
        return _pixels(msg, 4, np.uint8, "image")[..., :3].copy()
    if enc == "bgra8":
        return _pixels(msg, 4, np.uint8, "image")[..., 2::-1].copy()
    if enc in ("mono8", "8UC1"):
        g = _pixels(msg, 1, np.uint8, "image")
        return np.repeat(g[..., None], 3, axis=2)
    raise InputError(f"image: unsupported encoding {enc!r} (supported: "
                     f"{', '.join(SUPPORTED_ENCODINGS)})")


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg / png) -> (H, W, 3) uint8 RGB."""
    import cv2
    img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"compressed image: cannot decode format {msg.format!r} "
                         f"({len(msg.data)} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def depth_to_m(msg) -> np.ndarray:
    """Depth sensor_msgs/Image -> (H, W) float32 metres; 16UC1 / mono16 are millimetres,
    32FC1 metres; NaN / inf / <= 0 become 0 (no measurement)."""
    enc = msg.encoding
    if enc in ("16UC1", "mono16"):
        d = _pixels(msg, 1, np.uint16, "depth").astype(np.float32) * 1e-3
    elif enc == "32FC1":
        d = _pixels(msg, 1, np.float32, "depth").astype(np.float32, copy=True)
    else:
        raise InputError(f"depth: unsupported encoding {enc!r} (supported: 16UC1 [mm], "
                         "32FC1 [m])")
    d[~np.isfinite(d) | (d < 0)] = 0.0
    return d


#: names of the row-major entries of CameraInfo.k
_K_NAMES = ("fx", "k[1] (skew)", "cx", "k[3]", "fy", "cy", "k[6]", "k[7]", "k[8]")


def camera_info_to_K(msg) -> tuple[np.ndarray, tuple[int, int]]:
    """sensor_msgs/CameraInfo -> (K (3, 3) float64 pixels, (width, height)). InputError naming
    the entry: a non-finite one (``cx nan``), fx or fy <= 0."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    bad = [f"{_K_NAMES[i]} {v}" for i, v in enumerate(K.reshape(-1)) if not np.isfinite(v)]
    if bad:
        raise InputError(f"camera_info: K has non-finite entries: {', '.join(bad)} (K = "
                         f"{K.reshape(-1).tolist()})")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"camera_info: fx {K[0, 0]:g}, fy {K[1, 1]:g} (both must be > 0 "
                         f"pixels; K = {K.reshape(-1).tolist()})")
    return K, (int(msg.width), int(msg.height))


def detections_from_msg(msg) -> list[dict]:
    """vision_msgs/Detection2DArray -> [{class_id, score, box_xywh (4,), id, index, problem}]
    (the highest scoring hypothesis of each detection; a detection without results has class_id
    ''). ``problem`` is "" or why the detection cannot be used: a non-finite bbox centre / size
    or score (named, e.g. "bbox.center.position.x nan"); its box is then NaN and it must be
    answered failed (``bad_input``) without estimation."""
    out = []
    for i, d in enumerate(msg.detections):
        scores = [float(r.hypothesis.score) for r in d.results]
        finite = [r for r, s in zip(d.results, scores) if np.isfinite(s)]
        best = max(finite, key=lambda r: r.hypothesis.score, default=None)
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        w, h = d.bbox.size_x, d.bbox.size_y
        fields = {"bbox.center.position.x": cx, "bbox.center.position.y": cy,
                  "bbox.size_x": w, "bbox.size_y": h}
        bad = [f"{k} {v}" for k, v in fields.items() if not np.isfinite(v)]
        if d.results and best is None:
            bad.append(f"results[].hypothesis.score {scores}")
        problem = ""
        if bad:
            problem = (f"detection {i} (id {d.id!r}): {', '.join(bad)} not finite (the detector "
                       "sent an invalid box or score)")
        if best is None and d.results:
            best = d.results[0]
        out.append({"class_id": "" if best is None else str(best.hypothesis.class_id),
                    "score": 1.0 if not d.results else (float(best.hypothesis.score) if not bad
                                                        else 0.0),
                    "box_xywh": np.array([cx - w / 2.0, cy - h / 2.0, w, h], dtype=np.float64),
                    "id": d.id, "index": i, "problem": problem})
    return out


def pose_msg(T: np.ndarray):
    """(4, 4) T [m] -> geometry_msgs/Pose."""
    from geometry_msgs.msg import Pose
    T = np.asarray(T, dtype=np.float64)
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
    q = matrix_to_quat_xyzw(T[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
    return p


def pose_with_covariance(T: np.ndarray, cov: np.ndarray | None):
    """(4, 4) T [m] + (6, 6) covariance (ROS order) or None -> geometry_msgs/PoseWithCovariance.
    A missing covariance is published as -1 on the diagonal ("unknown")."""
    from geometry_msgs.msg import PoseWithCovariance
    m = PoseWithCovariance()
    m.pose = pose_msg(T)
    if cov is None or not np.all(np.isfinite(cov)):
        c = -np.eye(6)
    else:
        c = np.asarray(cov, dtype=np.float64).reshape(6, 6)
        c = 0.5 * (c + c.T)
    m.covariance = [float(v) for v in c.reshape(-1)]
    return m


def rgb_to_image(rgb: np.ndarray, header):
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8."""
    from sensor_msgs.msg import Image
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    m = Image()
    m.header = header
    m.height, m.width = int(rgb.shape[0]), int(rgb.shape[1])
    m.encoding = "rgb8"
    m.is_bigendian = 0
    m.step = int(rgb.shape[1] * 3)
    m.data = rgb.tobytes()
    return m
