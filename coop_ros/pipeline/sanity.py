"""Plausibility checks of the inputs that name the likely cause of a wrong unit or scale.

A depth image in the wrong unit, or intrinsics scaled by a wrong factor, do not make the pipeline
crash: they make it fail later with a generic message ("only 0 rendered pixels agree with the
observed depth"). These checks run first and say what probably happened:

* :func:`depth_unit_problem` -- the median of the valid depth against the unit its encoding
  promises (16UC1 = millimetres, 32FC1 = metres);
* :func:`intrinsics_problem` -- the field of view fx / fy imply for the image size;
* :func:`box_scale_problem` -- the detection box against the largest size the object (its
  diameter) can have in the image at the measured depth with these intrinsics: catches a depth
  scale too large (x10), a focal length too small (x0.1) or a mesh 1000x too small (units).

Each returns None, or ``(level, message)`` with level "error" (the input cannot be right) or
"warning" (suspicious, processing goes on). No ROS import.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["depth_unit_problem", "intrinsics_problem", "box_scale_problem", "frame_problems"]

#: median depth outside [MIN, MAX] metres is not what a depth camera looking at a table-top
#: object measures
DEPTH_MEDIAN_MIN_M = 0.02
DEPTH_MEDIAN_MAX_M = 20.0
#: a horizontal or vertical field of view above this [deg] means fx / fy are too small
MAX_FOV_DEG = 150.0
#: a detection box diagonal more than this times the object's largest possible image extent
BOX_SCALE_FACTOR = 3.0


def _g(v: float) -> str:
    return f"{v:.4g}"


def depth_unit_problem(depth_m: np.ndarray, encoding: str) -> tuple[str, str] | None:
    """Check the valid pixels (> 0) of a depth image converted to metres.

    Args:
        depth_m: (H, W) float depth [m], 0 = no measurement.
        encoding: where it came from: "16UC1" / "mono16" (millimetres), "32FC1" (metres), or a
            free text such as "depth.png x depth_scale 1.0 mm" (millimetres after the scale).
    Returns:
        None, or (level, message) naming the median in the encoding's own unit and the likely
        cause ("metres sent as millimetres?").
    """
    d = np.asarray(depth_m)
    valid = d[np.isfinite(d) & (d > 0)]
    if valid.size == 0:
        return None
    med = float(np.median(valid))
    mm = encoding in ("16UC1", "mono16")
    if encoding == "32FC1":
        if med > DEPTH_MEDIAN_MAX_M:
            return ("error", f"depth median {_g(med)} in 32FC1 (metres): millimetres sent as "
                             "metres? (32FC1 holds metres, 16UC1 millimetres)")
        if med < DEPTH_MEDIAN_MIN_M:
            return ("error", f"depth median {_g(med)} in 32FC1 (metres) is below "
                             f"{DEPTH_MEDIAN_MIN_M * 100:.0f} cm: a unit or scale error "
                             "(kilometres? a wrong depth scale?)")
        return None
    raw_med = med * 1000.0
    if mm:
        if med < DEPTH_MEDIAN_MIN_M:
            return ("error", f"depth median {_g(raw_med)} in {encoding} (millimetres): metres "
                             f"sent as millimetres? ({encoding} holds millimetres, 32FC1 metres)")
        if med > DEPTH_MEDIAN_MAX_M:
            return ("error", f"depth median {_g(raw_med)} in {encoding} (millimetres) is beyond "
                             f"{DEPTH_MEDIAN_MAX_M:.0f} m: a wrong depth scale (x10? x1000?)")
        if float(valid.max()) * 1000.0 <= 255.5:
            return ("warning", f"{encoding} depth never exceeds 255 mm (median {_g(raw_med)}): "
                               "an 8-bit image sent as depth?")
        return None
    # free-text source (the CLI: raw PNG x depth scale)
    if med < DEPTH_MEDIAN_MIN_M or med > DEPTH_MEDIAN_MAX_M:
        return ("error", f"depth median {_g(med)} m from {encoding}: outside "
                         f"[{DEPTH_MEDIAN_MIN_M}, {DEPTH_MEDIAN_MAX_M:.0f}] m, a wrong depth scale? "
                         "(BOP convention: depth_mm = raw x depth_scale)")
    return None


def intrinsics_problem(K: np.ndarray, width: int, height: int) -> tuple[str, str] | None:
    """Field of view implied by (3, 3) K [px] for a width x height image: more than
    MAX_FOV_DEG means fx / fy are too small (e.g. scaled x0.1)."""
    K = np.asarray(K, dtype=np.float64)
    fx, fy = float(K[0, 0]), float(K[1, 1])
    if not (fx > 0 and fy > 0):
        return None
    fov_x = math.degrees(2.0 * math.atan(width / (2.0 * fx)))
    fov_y = math.degrees(2.0 * math.atan(height / (2.0 * fy)))
    if max(fov_x, fov_y) > MAX_FOV_DEG:
        return ("error", f"camera_info fx {fx:.4g} px, fy {fy:.4g} px give a {fov_x:.0f} x "
                         f"{fov_y:.0f} deg field of view for {width}x{height} images: focal "
                         "length scaled wrongly (x0.1? K of another resolution?)")
    if max(fx, fy) / min(fx, fy) > 3.0:
        return ("error", f"camera_info fx {fx:.4g} px and fy {fy:.4g} px differ "
                         f"x{max(fx, fy) / min(fx, fy):.1f}: one of them is wrong")
    return None


def box_scale_problem(box_xywh, depth_m: np.ndarray, K: np.ndarray, diameter_m: float
                      ) -> tuple[str, str] | None:
    """The detection box against the object's size at the measured depth.

    An object of diameter d whose nearest point is at depth z spans at most about f d / z pixels
    (f = mean focal length). A box diagonal more than BOX_SCALE_FACTOR times that is impossible:
    the depth is too large for the intrinsics (depth scale x10, or fx / fy x0.1). The nearest
    depth is the 2nd percentile of the valid depth in the box (occluders in front only make the
    bound larger, so they cause no false alarm). A box with fewer than 20 valid depth pixels is
    not judged; a non-finite box is an error (never an exception).

    Args:
        box_xywh: (4,) detection box [px]; depth_m: (H, W) depth [m], 0 = none; K: (3, 3) [px];
        diameter_m: the object's diameter [m].
    """
    x, y, w, h = (float(v) for v in np.asarray(box_xywh, np.float64).reshape(-1)[:4])
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return ("error", f"detection box (x, y, w, h) = ({x:g}, {y:g}, {w:g}, {h:g}) is not "
                         "finite")
    d = np.asarray(depth_m)
    H, W = d.shape[:2]
    x0, y0 = max(int(math.floor(x)), 0), max(int(math.floor(y)), 0)
    x1, y1 = min(int(math.ceil(x + w)), W), min(int(math.ceil(y + h)), H)
    if x1 <= x0 or y1 <= y0 or not diameter_m > 0:
        return None
    region = d[y0:y1, x0:x1]
    valid = region[np.isfinite(region) & (region > 0)]
    if valid.size < 20:
        return None
    z_near = float(np.percentile(valid, 2))
    K = np.asarray(K, dtype=np.float64)
    f = 0.5 * (K[0, 0] + K[1, 1])
    max_px = f * diameter_m / z_near
    diag = math.hypot(w, h)
    if diag > BOX_SCALE_FACTOR * max_px:
        return ("error", f"detection box {diag:.0f} px across is {diag / max_px:.1f}x the "
                         f"{max_px:.0f} px a {diameter_m * 1000:.0f} mm object can span at the "
                         f"measured depth {z_near:.3g} m with fx {K[0, 0]:.4g} px: depth scale "
                         "too large (x10?), focal length too small (x0.1?) or the mesh too "
                         "small (units mm for a mesh in metres?)")
    return None


def frame_problems(K: np.ndarray, width: int, height: int, depth_m: np.ndarray | None = None,
                   depth_source: str = "32FC1") -> tuple[str | None, list[str]]:
    """The node's frame-level checks for a caller without ROS (``coop-ros eval``): field of view
    of K for the image size, and the depth unit (``depth_source`` as in
    :func:`depth_unit_problem`). Returns (the first error's message or None, warnings)."""
    errors, warns = [], []
    for p in (intrinsics_problem(K, width, height),
              None if depth_m is None else depth_unit_problem(depth_m, depth_source)):
        if p:
            (errors if p[0] == "error" else warns).append(p[1])
    return (errors[0] if errors else None), warns
