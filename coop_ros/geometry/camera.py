"""Pinhole camera: intrinsics checks, projection, depth back-projection and square crops.

This is the ONE place in coop_ros for projection and crops.

Conventions
-----------
* Metres; OpenCV camera axes (x right, y down, z forward); poses are (4, 4) float64
  ``T_cam_obj`` with ``x_cam = R @ x_obj + t``.
* ``K`` is a (3, 3) float64 matrix ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` with s = 0.
* Pixel coordinates ``uv = (u, v)`` = (column, row) are continuous with **pixel centres at
  integers** (OpenCV's convention): pixel ``(i, j)`` (row i, column j) covers
  ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]`` and its centre is ``(u, v) = (j, i)``. A W x H image
  therefore spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``. ``cv2.warpAffine``, ``cv2.projectPoints``
  and ``cv2.solvePnP`` all use this convention, so ``K`` and the crop affine compose exactly.
* Boxes are BOP ``(x, y, w, h)`` in pixels: ``x, y`` index the first (top-left) pixel inside the
  box, ``w, h`` count pixels, so the box's continuous extent is
  ``[x - 0.5, x + w - 0.5] x [y - 0.5, y + h - 0.5]`` and its centre is
  ``(x + w/2 - 0.5, y + h/2 - 0.5)``. (BOP's own ``scene_gt_info`` boxes use
  ``w = x_max - x_min``, one pixel less than the count; the half-pixel difference is far inside
  the crop margin, so such boxes are used as they are.)
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from coop_ros.errors import BoxOutsideImageError, InputError
from coop_ros.geometry.se3 import check_pose, transform_points

__all__ = [
    "check_intrinsics", "check_image_size", "project", "project_camera_points",
    "backproject_depth", "depth_to_points", "Crop", "make_crop", "crop_around_projection",
]

_INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR,
                   "cubic": cv2.INTER_CUBIC}


# --------------------------------------------------------------------------- intrinsics

def check_image_size(image_size, name: str = "image_size") -> tuple[int, int]:
    """Validate an image size given as ``(W, H)`` pixels; returns ``(W, H)`` as Python ints.

    Raises InputError naming ``name`` when it is not two positive integers.
    """
    try:
        vals = np.asarray(image_size, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be (W, H) in pixels, got {image_size!r}") from None
    if vals.shape != (2,) or not np.all(np.isfinite(vals)) or np.any(vals < 1) \
            or np.any(vals != np.round(vals)):
        raise InputError(f"{name} must be two positive integers (W, H) in pixels, "
                         f"got {image_size!r}")
    return int(vals[0]), int(vals[1])


def check_intrinsics(K, image_size=None, name: str = "K") -> np.ndarray:
    """Validate pinhole intrinsics and return them as a (3, 3) float64 array (a copy).

    Args:
        K: (3, 3) array-like ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``, pixels.
        image_size: optional ``(W, H)`` of the full camera image K belongs to; then the
            principal point must lie inside ``[0, W] x [0, H]`` (catches K of another
            resolution). Do not pass it for crop intrinsics, whose principal point may
            legitimately lie outside the crop.
        name: what to call K in error messages.

    Raises:
        InputError naming the bad entry: wrong shape, non-finite entry, fx or fy <= 0,
        non-zero skew ``K[0,1]`` or ``K[1,0]``, lower row not ``[0, 0, 1]``, principal point
        outside the image.
    """
    try:
        K = np.array(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a 3x3 numeric matrix, got {type(K).__name__}") from None
    if K.shape != (3, 3):
        raise InputError(f"{name} must be a 3x3 matrix, got shape {K.shape}")
    bad = np.argwhere(~np.isfinite(K))
    if len(bad):
        i, j = bad[0]
        raise InputError(f"{name}[{i},{j}] is not finite ({K[i, j]}); intrinsics must be finite")
    fx, fy = K[0, 0], K[1, 1]
    if fx <= 0:
        raise InputError(f"{name}[0,0] (fx) must be > 0 pixels, got {fx}")
    if fy <= 0:
        raise InputError(f"{name}[1,1] (fy) must be > 0 pixels, got {fy}")
    if abs(K[0, 1]) > 1e-9 * fx:
        raise InputError(f"{name}[0,1] (skew) must be 0, got {K[0, 1]}")
    if K[1, 0] != 0:
        raise InputError(f"{name}[1,0] must be 0, got {K[1, 0]}")
    if np.any(K[2] != (0.0, 0.0, 1.0)):
        raise InputError(f"{name} lower row must be [0, 0, 1], got {K[2].tolist()}")
    if image_size is not None:
        W, H = check_image_size(image_size)
        cx, cy = K[0, 2], K[1, 2]
        if not (0.0 <= cx <= W and 0.0 <= cy <= H):
            raise InputError(f"{name} principal point (cx, cy) = ({cx}, {cy}) lies outside the "
                             f"{W}x{H} image; K does not belong to this image size")
    return K


def _check_points(X, name: str) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an (N, 3) numeric array") from None
    if X.ndim != 2 or X.shape[1] != 3:
        raise InputError(f"{name} must have shape (N, 3), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise InputError(f"{name} contains non-finite values "
                         f"(first at row {int(np.argwhere(~np.isfinite(X))[0, 0])})")
    return X


# --------------------------------------------------------------------------- projection

def project_camera_points(K, Xc) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points to pixels.

    Args:
        K: (3, 3) intrinsics (validated with :func:`check_intrinsics`).
        Xc: (N, 3) points in the camera frame, metres. Every point must have z > 0.

    Returns:
        ``(uv, z)``: uv (N, 2) float64 pixel coordinates (u = column, v = row, pixel centres at
        integers) and z (N,) float64 depths in metres.

    Raises:
        InputError for bad K, a bad shape, non-finite points or any point with z <= 0 (it has no
        image). To project a cloud that is partly behind the camera, filter first:
        ``Xc[Xc[:, 2] > 0]``.
    """
    K = check_intrinsics(K)
    Xc = _check_points(Xc, "Xc (camera points)")
    z = Xc[:, 2].copy()
    behind = np.flatnonzero(z <= 0)
    if behind.size:
        raise InputError(f"{behind.size} of {len(z)} points have z <= 0 (behind the camera), "
                         f"first at row {int(behind[0])} with z = {z[behind[0]]} m; "
                         "filter them before projecting")
    p = Xc @ K.T
    uv = p[:, :2] / p[:, 2:3]
    return uv, z


def project_unchecked(K: np.ndarray, Xc: np.ndarray, min_z: float | None = None) -> np.ndarray:
    """Pixels (..., 2) of camera-frame points Xc (..., 3) [m] with intrinsics K (3, 3): the fast
    variant of :func:`project_camera_points` for inner loops and metrics, with no checks.
    ``min_z``: the divisor is at least this (points at or behind the camera stay finite);
    None divides by z as it is (as the BOP toolkit does)."""
    p = Xc @ K.T
    z = p[..., 2:3]
    return p[..., :2] / (z if min_z is None else np.maximum(z, min_z))


def backproject_pixels(K: np.ndarray, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Camera-frame points (N, 3) [m] of pixels uv (N, 2) (u = column, v = row, centres at
    integers) at depths z (N,) [m], no checks: the inverse of :func:`project_unchecked`."""
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], axis=1)


def project(K, T_cam_obj, X) -> tuple[np.ndarray, np.ndarray]:
    """Project object-frame points with a pose.

    Args:
        K: (3, 3) intrinsics, pixels.
        T_cam_obj: (4, 4) float64 pose, metres (``x_cam = R @ x_obj + t``).
        X: (N, 3) points in the object frame, metres.

    Returns:
        ``(uv, z)``: (N, 2) float64 pixels and (N,) float64 camera depths in metres.

    Raises:
        InputError for a bad K, pose or points, or any point with z <= 0 in the camera frame.
    """
    T = check_pose(T_cam_obj, "T_cam_obj")
    X = _check_points(X, "X (object points)")
    return project_camera_points(K, transform_points(T, X))


def _check_depth(depth) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise InputError(f"depth must be an (H, W) array, got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise InputError(f"depth must be floating point metres, got dtype {depth.dtype} "
                         "(raw millimetre depth? convert with depth.astype(float) * depth_scale)")
    with np.errstate(invalid="ignore"):
        neg = np.isfinite(depth) & (depth < 0)
    if neg.any():
        r, c = np.argwhere(neg)[0]
        raise InputError(f"depth has {int(neg.sum())} negative values (first at row {r}, "
                         f"column {c}: {depth[r, c]}); depth must be >= 0 metres")
    return depth.astype(np.float64, copy=False)


def backproject_depth(depth, K) -> tuple[np.ndarray, np.ndarray]:
    """Lift every pixel of a depth map to a camera-frame 3D point.

    Args:
        depth: (H, W) float depth in metres (z along the optical axis, not ray length).
            0, NaN and +/-inf mean "no measurement".
        K: (3, 3) intrinsics of this image, pixels.

    Returns:
        ``(points, valid)``: points (H, W, 3) float64 camera-frame metres, where
        ``points[i, j] = depth[i, j] * K^-1 @ (j, i, 1)`` (pixel centres at integers);
        valid (H, W) bool, True where depth is finite and > 0. Invalid pixels get the point
        (0, 0, 0) -- never NaN -- so always use ``valid``.

    Raises:
        InputError for a non-2D or integer depth (millimetres?), negative depth, or bad K.
    """
    depth = _check_depth(depth)
    H, W = depth.shape
    K = check_intrinsics(K)
    valid = np.isfinite(depth) & (depth > 0)
    z = np.where(valid, depth, 0.0)
    u = np.arange(W, dtype=np.float64)[None, :]
    v = np.arange(H, dtype=np.float64)[:, None]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    points = np.empty((H, W, 3), dtype=np.float64)
    points[..., 0] = (u - cx) / fx * z
    points[..., 1] = (v - cy) / fy * z
    points[..., 2] = z
    return points, valid


def depth_to_points(depth, K, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame points of the valid (and masked) pixels of a depth map.

    Args:
        depth: (H, W) float depth in metres; 0 / NaN / inf = no measurement (skipped).
        K: (3, 3) intrinsics, pixels.
        mask: optional (H, W) bool (or 0/1) array; only pixels where it is true are kept.

    Returns:
        ``(points, uv)``: points (N, 3) float64 camera-frame metres and uv (N, 2) int64 pixel
        coordinates ``(u, v) = (column, row)`` of those points, in row-major order. Because pixel
        centres are at integers, ``project_camera_points(K, points)[0] == uv`` (up to rounding).

    Raises:
        InputError for bad depth / K, or a mask whose shape differs from depth.
    """
    points, valid = backproject_depth(depth, K)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != valid.shape:
            raise InputError(f"mask shape {mask.shape} differs from depth shape {valid.shape}")
        valid &= mask.astype(bool)
    rows, cols = np.nonzero(valid)
    uv = np.stack([cols, rows], axis=1).astype(np.int64)
    return points[rows, cols], uv


# --------------------------------------------------------------------------- crops

@dataclass(frozen=True)
class Crop:
    """A square crop of an image, resampled to ``size x size`` pixels.

    Built by :func:`make_crop`. ``A`` maps homogeneous image pixels to crop pixels (both with pixel
    centres at integers): ``uv_crop = scale * (uv - center) + (size - 1) / 2``.

    Attributes:
        A: (3, 3) float64 affine image -> crop (lower row [0, 0, 1]).
        A_inv: (3, 3) float64 affine crop -> image.
        size: side of the output crop, pixels.
        center: (2,) float64 crop centre in image pixels (u, v).
        side: side of the cropped square in image pixels (float).
        box_xywh: (4,) float64 the detection box the crop was made from (BOP x, y, w, h).
        image_size: ``(W, H)`` of the source image, or None when unknown.
    """

    A: np.ndarray
    A_inv: np.ndarray
    size: int
    center: np.ndarray
    side: float
    box_xywh: np.ndarray
    image_size: tuple[int, int] | None = None

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel (``size / side``)."""
        return float(self.A[0, 0])

    @property
    def image_box_xyxy(self) -> np.ndarray:
        """(4,) float64 continuous extent of the crop in image pixels ``(u0, v0, u1, v1)``:
        the outer edges, so a crop of the full pixel range has u0 = -0.5."""
        h = self.side / 2.0
        return np.array([self.center[0] - h, self.center[1] - h,
                         self.center[0] + h, self.center[1] + h])

    @property
    def image_box_xywh(self) -> np.ndarray:
        """(4,) float64 the crop region as a BOP box ``(x, y, side, side)`` in image pixels;
        ``make_crop(crop.image_box_xywh, crop.size, margin=0)`` reproduces this crop."""
        u0, v0, _, _ = self.image_box_xyxy
        return np.array([u0 + 0.5, v0 + 0.5, self.side, self.side])

    def intrinsics(self, K) -> np.ndarray:
        """(3, 3) float64 intrinsics of the crop, ``A @ K``, for the camera K of the source image.
        Projecting a 3D point with it equals ``image_to_crop`` of its projection with K."""
        return self.A @ check_intrinsics(K)

    def image_to_crop(self, uv) -> np.ndarray:
        """Map (..., 2) image pixels (u, v) to crop pixels; float64, same shape."""
        return self._apply(self.A, uv, "uv (image pixels)")

    def crop_to_image(self, uv) -> np.ndarray:
        """Map (..., 2) crop pixels (u, v) back to image pixels; float64, same shape."""
        return self._apply(self.A_inv, uv, "uv (crop pixels)")

    @staticmethod
    def _apply(A: np.ndarray, uv, name: str) -> np.ndarray:
        uv = np.asarray(uv, dtype=np.float64)
        if uv.ndim == 0 or uv.shape[-1] != 2:
            raise InputError(f"{name} must have shape (..., 2), got {uv.shape}")
        return uv @ A[:2, :2].T + A[:2, 2]

    def warp(self, image, interpolation: str = "linear") -> np.ndarray:
        """Resample an image into the crop with ``cv2.warpAffine``.

        Args:
            image: (H, W) or (H, W, C) array: uint8 RGB, float depth (metres), bool / uint8 mask,
                any dtype OpenCV can warp (uint8, uint16, int16, float32, float64) or bool.
            interpolation: "linear" (default, for colour), "nearest" (depth, masks, labels --
                no values are invented by mixing foreground and background), or "cubic".

        Returns:
            (size, size) or (size, size, C) array of the same dtype; pixels whose source lies
            outside the image are 0 (zero padding, nothing is clipped).

        Raises:
            InputError for an unknown interpolation, a non-image array, or an image whose size
            differs from ``image_size`` when the crop knows it.
        """
        if interpolation not in _INTERPOLATIONS:
            raise InputError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, "
                             f"got {interpolation!r}")
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
            raise InputError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
        if self.image_size is not None and (image.shape[1], image.shape[0]) != self.image_size:
            raise InputError(f"image is {image.shape[1]}x{image.shape[0]} (WxH) but the crop was "
                             f"made for a {self.image_size[0]}x{self.image_size[1]} image")
        is_bool = image.dtype == bool
        src = image.astype(np.uint8) if is_bool else image
        out = cv2.warpAffine(src, self.A[:2], (self.size, self.size),
                             flags=_INTERPOLATIONS[interpolation],
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing channel of 1
            out = out[..., None]
        return out.astype(bool) if is_bool else out


def _check_box(box_xywh) -> np.ndarray:
    try:
        box = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"box_xywh must be 4 numbers (x, y, w, h), got {box_xywh!r}") from None
    if box.shape != (4,):
        raise InputError(f"box_xywh must be 4 numbers (x, y, w, h), got {box.size} values")
    if not np.all(np.isfinite(box)):
        raise InputError(f"box_xywh {box.tolist()} is not finite")
    if box[2] <= 1 or box[3] <= 1:
        raise InputError(f"box_xywh {box.tolist()} is degenerate: width and height must be "
                         "> 1 pixel")
    return box


def make_crop(box_xywh, size: int = 224, margin: float = 0.2, image_size=None) -> Crop:
    """Square crop centred on a detection box, resampled to ``size x size``.

    The cropped square has side ``max(w, h) * (1 + margin)`` image pixels and the same centre as
    the box, ``(x + w/2 - 0.5, y + h/2 - 0.5)`` (pixel centres at integers). Parts outside the
    image are kept (the warp pads them with zeros); nothing is clipped or shifted.

    Args:
        box_xywh: (4,) BOP box ``(x, y, w, h)`` in image pixels.
        size: side of the output crop in pixels (CroCo: 224).
        margin: fraction of the box's longer side added around it (0.2 -> side = 1.2 max(w, h)).
        image_size: optional ``(W, H)`` of the image; then a box lying entirely outside it is
            rejected and :meth:`Crop.warp` checks the image size.

    Returns:
        :class:`Crop`.

    Raises:
        InputError naming the box when it is non-finite, w or h <= 1 px, or (with image_size)
        entirely outside the image; or for a bad size / margin / image_size.
    """
    box = _check_box(box_xywh)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise InputError(f"size must be a positive integer number of pixels, got {size!r}")
    size = int(size)
    margin = float(margin)
    if not np.isfinite(margin) or margin < 0:
        raise InputError(f"margin must be a finite fraction >= 0, got {margin}")
    if image_size is not None:
        W, H = check_image_size(image_size)
        x, y, w, h = box
        if x + w <= 0 or y + h <= 0 or x >= W or y >= H:
            raise BoxOutsideImageError(f"box_xywh {box.tolist()} lies entirely outside the "
                                       f"{W}x{H} image")
        image_size = (W, H)
    x, y, w, h = box
    center = np.array([x + w / 2.0 - 0.5, y + h / 2.0 - 0.5])
    side = float(max(w, h) * (1.0 + margin))
    s = size / side
    c = (size - 1) / 2.0
    A = np.array([[s, 0.0, c - s * center[0]],
                  [0.0, s, c - s * center[1]],
                  [0.0, 0.0, 1.0]])
    A_inv = np.array([[1.0 / s, 0.0, center[0] - c / s],
                      [0.0, 1.0 / s, center[1] - c / s],
                      [0.0, 0.0, 1.0]])
    return Crop(A=A, A_inv=A_inv, size=size, center=center, side=side, box_xywh=box,
                image_size=image_size)


def _sphere_extent(f: float, c: float, a: float, z: float, r: float) -> tuple[float, float]:
    """Exact image extent along one axis of a sphere (centre lateral offset a, depth z, radius
    r): the pixel lines whose back-projected planes are tangent to the sphere."""
    # plane through the optical centre for pixel p: f*X - (p - c)*Z = 0; with d = p - c,
    # tangency (f a - d z)^2 = r^2 (f^2 + d^2)  ->  (z^2 - r^2) d^2 - 2 f a z d + f^2 (a^2 - r^2) = 0
    qa = z * z - r * r
    qb = -2.0 * f * a * z
    qc = f * f * (a * a - r * r)
    disc = np.sqrt(max(qb * qb - 4.0 * qa * qc, 0.0))
    return c + (-qb - disc) / (2.0 * qa), c + (-qb + disc) / (2.0 * qa)


def crop_around_projection(K, T_cam_obj, diameter: float, size: int = 224, margin: float = 0.0,
                           image_size=None, center_obj=(0.0, 0.0, 0.0)) -> Crop:
    """Crop around the image of an object's bounding sphere at a given pose.

    Used by render-and-compare refinement: the crop follows the current pose estimate, and the
    same :class:`Crop` is applied to the query image and to the rendering. The box is the exact
    axis-aligned bounding box of the perspective image of the sphere (centre ``center_obj``,
    radius ``diameter / 2``), so the whole object is inside it at that pose.

    Args:
        K: (3, 3) intrinsics of the full image, pixels.
        T_cam_obj: (4, 4) float64 pose estimate, metres.
        diameter: object diameter in metres (> 0), e.g. the BOP model diameter.
        size: output crop side, pixels.
        margin: extra fraction of the box side (see :func:`make_crop`); the sphere already
            leaves room around the object, so the default is 0.
        image_size: optional ``(W, H)``, as in :func:`make_crop`.
        center_obj: (3,) bounding-sphere centre in the object frame, metres.

    Returns:
        :class:`Crop`.

    Raises:
        InputError for bad K / pose / diameter, a sphere that reaches the camera plane
        (``z - r <= 0``: no bounded image), or a projected box that is degenerate or entirely
        outside the image.
    """
    K = check_intrinsics(K)
    T = check_pose(T_cam_obj, "T_cam_obj")
    diameter = float(diameter)
    if not np.isfinite(diameter) or diameter <= 0:
        raise InputError(f"diameter must be a finite positive length in metres, got {diameter}")
    C = transform_points(T, _check_points(np.reshape(center_obj, (1, 3)), "center_obj"))[0]
    r = diameter / 2.0
    if C[2] - r <= 0:
        raise InputError(f"the object's bounding sphere (centre z = {C[2]:.4g} m, radius "
                         f"{r:.4g} m) reaches behind the camera plane; it has no bounded image")
    u0, u1 = _sphere_extent(K[0, 0], K[0, 2], C[0], C[2], r)
    v0, v1 = _sphere_extent(K[1, 1], K[1, 2], C[1], C[2], r)
    box = np.array([u0 + 0.5, v0 + 0.5, u1 - u0, v1 - v0])
    try:
        return make_crop(box, size=size, margin=margin, image_size=image_size)
    except InputError as e:
        raise InputError(f"projected bounding sphere of the object: {e}") from None
