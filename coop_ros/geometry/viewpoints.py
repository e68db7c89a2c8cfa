"""Template viewpoints: icosphere directions and look-at camera poses.

Co-op renders 42 templates from camera positions on an icosahedron subdivided once (12 vertices +
30 edge midpoints; "level 0" in GigaPose / CNOS / SAM-6D naming), each camera looking at the
object centre. Only out-of-plane rotations are sampled; the in-plane rotation is recovered later
by the correspondences. Poses are (4, 4) float64 ``T_cam_obj`` in metres, OpenCV camera axes
(x right, y down, z forward).
"""
from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from coop_ros.errors import InputError
from coop_ros.geometry.se3 import make_pose

__all__ = ["ALLOWED_VIEW_COUNTS", "viewpoint_directions", "look_at", "template_poses",
           "nearest_neighbour_angles"]

#: number of views -> icosphere subdivisions (trimesh.creation.icosphere)
ALLOWED_VIEW_COUNTS = {12: 0, 42: 1, 162: 2, 642: 3}

# sin of the angle below which the viewing direction counts as parallel to ``up``
_PARALLEL_SIN = 1e-6


def viewpoint_directions(n_views: int = 42) -> np.ndarray:
    """Unit directions of icosphere vertices (object frame).

    Args:
        n_views: 12 (icosahedron), 42 (subdivided once; Co-op's templates), 162 or 642.

    Returns:
        (n_views, 3) float64 unit vectors, in trimesh's deterministic vertex order.

    Raises:
        InputError listing the allowed values for any other ``n_views``.
    """
    if isinstance(n_views, bool) or not isinstance(n_views, (int, np.integer)) \
            or int(n_views) not in ALLOWED_VIEW_COUNTS:
        raise InputError(f"n_views must be one of {sorted(ALLOWED_VIEW_COUNTS)} (icosphere "
                         f"levels), got {n_views!r}")
    sphere = trimesh.creation.icosphere(subdivisions=ALLOWED_VIEW_COUNTS[int(n_views)], radius=1.0)
    dirs = np.array(sphere.vertices, dtype=np.float64)
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def _vec3(v, name: str) -> np.ndarray:
    try:
        v = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be 3 numbers, got {v!r}") from None
    if v.shape != (3,):
        raise InputError(f"{name} must be 3 numbers, got {v.size} values")
    if not np.all(np.isfinite(v)):
        raise InputError(f"{name} {v.tolist()} is not finite")
    return v


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Pose of a camera at ``eye`` looking at ``target`` (both in the object frame, metres).

    The camera's z axis points from eye to target, its y axis (image down) is the component of
    ``-up`` orthogonal to z, and x = y cross z (image right). So ``target`` lies on the optical
    axis at depth ``|target - eye|`` and ``up`` points up in the image.

    When the viewing direction is parallel to ``up`` (sin of the angle < 1e-6) a substitute up is
    chosen deterministically: the coordinate axis (x, then y, then z on ties) least aligned with
    the viewing direction.

    Args:
        eye: (3,) camera centre in the object frame, metres.
        target: (3,) point looked at, object frame, metres.
        up: (3,) object-frame direction that should appear upwards in the image (non-zero).

    Returns:
        (4, 4) float64 ``T_cam_obj`` (``x_cam = R @ x_obj + t``).

    Raises:
        InputError for non-finite inputs, ``eye == target`` or a zero ``up``.
    """
    eye = _vec3(eye, "eye")
    target = _vec3(target, "target")
    up = _vec3(up, "up")
    d = target - eye
    dist = np.linalg.norm(d)
    if dist <= 1e-12:
        raise InputError(f"eye {eye.tolist()} coincides with target {target.tolist()}; "
                         "the viewing direction is undefined")
    n_up = np.linalg.norm(up)
    if n_up <= 1e-12:
        raise InputError(f"up {up.tolist()} is a zero vector")
    z = d / dist
    x = np.cross(z, up / n_up)
    if np.linalg.norm(x) < _PARALLEL_SIN:
        alt = np.eye(3)[int(np.argmin(np.abs(z)))]
        x = np.cross(z, alt)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R_obj_cam = np.stack([x, y, z], axis=1)  # columns: camera axes in the object frame
    R = R_obj_cam.T
    return make_pose(R, -R @ eye)


def template_poses(n_views: int = 42, distance: float | None = None,
                   center=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Template camera poses: one camera per icosphere direction, looking at the object centre.

    Camera i sits at ``center + distance * viewpoint_directions(n_views)[i]`` and looks at
    ``center``, which therefore lies on every optical axis at depth ``distance``.

    Args:
        n_views: 12, 42 (Co-op), 162 or 642.
        distance: camera-to-centre distance in metres (> 0); required.
        center: (3,) object-frame point to look at, metres (e.g. the bounding-box centre).
        up: (3,) object-frame up direction passed to :func:`look_at`.

    Returns:
        (n_views, 4, 4) float64 ``T_cam_obj``.

    Raises:
        InputError for a missing / non-positive / non-finite distance, or a bad n_views / center.
    """
    if distance is None:
        raise InputError("distance (metres from camera to object centre) is required")
    distance = float(distance)
    if not np.isfinite(distance) or distance <= 0:
        raise InputError(f"distance must be a finite positive length in metres, got {distance}")
    center = _vec3(center, "center")
    dirs = viewpoint_directions(n_views)
    return np.stack([look_at(center + distance * d, center, up) for d in dirs])


def nearest_neighbour_angles(dirs) -> np.ndarray:
    """Angle from each direction to its nearest other direction.

    Args:
        dirs: (N, 3) directions (normalised here), N >= 2.

    Returns:
        (N,) float64 angles in degrees.

    Raises:
        InputError for a bad shape, fewer than 2 directions, non-finite or zero vectors.
    """
    try:
        dirs = np.asarray(dirs, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("dirs must be an (N, 3) numeric array") from None
    if dirs.ndim != 2 or dirs.shape[1] != 3 or dirs.shape[0] < 2:
        raise InputError(f"dirs must have shape (N, 3) with N >= 2, got {dirs.shape}")
    if not np.all(np.isfinite(dirs)):
        raise InputError("dirs contains non-finite values")
    norms = np.linalg.norm(dirs, axis=1)
    if np.any(norms <= 1e-12):
        raise InputError(f"dirs row {int(np.argmin(norms))} is a zero vector")
    unit = dirs / norms[:, None]
    chord, _ = cKDTree(unit).query(unit, k=2)
    return np.degrees(2.0 * np.arcsin(np.clip(chord[:, 1] / 2.0, 0.0, 1.0)))
