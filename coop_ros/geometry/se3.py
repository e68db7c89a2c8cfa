"""SE(3) and rotation helpers on 4x4 ``T_cam_obj`` matrices (float64, metres).

Conversions go through scipy's ``Rotation`` (numpy) and ``roma`` (torch) rather than hand-written
formulas. A pose maps object (mesh) coordinates into the camera frame: ``x_cam = R @ x_obj + t``.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from coop_ros.errors import InputError


def make_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(3, 3) rotation and (3,) translation [m] -> (4, 4) float64 pose."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(R, dtype=np.float64).reshape(3, 3)
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def check_pose(T: np.ndarray, name: str = "pose") -> np.ndarray:
    """Validate a (4, 4) rigid transform; returns it as float64 or raises InputError naming it."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise InputError(f"{name} must be a 4x4 matrix, got shape {T.shape}")
    check_poses(T[None], name=name, index=False)
    return T


def check_poses(T: np.ndarray, name: str = "poses", index: bool = True) -> np.ndarray:
    """Validate a (B, 4, 4) batch of rigid transforms at once (a search renders ~500 poses per
    detection); returns it as float64 or raises InputError naming the first bad one
    (``name[b]``; just ``name`` when ``index`` is False). Tolerances: |R R^T - I| <= 1e-4,
    det R > 0, last row [0, 0, 0, 1] within 1e-9."""
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] != (4, 4):
        raise InputError(f"{name} must be (B, 4, 4), got shape {T.shape}")
    R = T[:, :3, :3]
    finite = np.isfinite(T).all(axis=(1, 2))
    with np.errstate(invalid="ignore"):
        rot_ok = (np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)).max(axis=(1, 2)) <= 1e-4) \
            & (np.linalg.det(np.where(finite[:, None, None], R, 0.0)) >= 0)
        row_ok = np.abs(T[:, 3] - [0, 0, 0, 1]).max(axis=1) <= 1e-9
    bad = np.flatnonzero(~(finite & rot_ok & row_ok))
    if len(bad):
        b = int(bad[0])
        where = f"{name}[{b}]" if index else name
        if not finite[b]:
            raise InputError(f"{where} contains non-finite values")
        if not rot_ok[b]:
            raise InputError(f"{where} rotation is not orthonormal with det +1")
        raise InputError(f"{where} last row must be [0, 0, 0, 1], got {T[b, 3]}")
    return T


def orthonormalized(T: np.ndarray) -> np.ndarray:
    """Copy of a (4, 4) pose whose rotation is projected onto SO(3) (SVD): a pose accepted by
    :func:`check_pose` (|R R^T - I| <= 1e-4) that further rotations must keep acceptable."""
    T = np.array(T, dtype=np.float64)
    U, _, Vt = np.linalg.svd(T[:3, :3])
    T[:3, :3] = U @ Vt
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a (..., 4, 4) rigid transform."""
    T = np.asarray(T, dtype=np.float64)
    out = np.zeros_like(T)
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -(Rt @ T[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def transform_points(T: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Apply (4, 4) T to (N, 3) points -> (N, 3)."""
    T = np.asarray(T, dtype=np.float64)
    return np.asarray(X, dtype=np.float64) @ T[:3, :3].T + T[:3, 3]


def rotvec_to_matrix(rv: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle [rad] -> (..., 3, 3)."""
    rv = np.asarray(rv, dtype=np.float64)
    return Rotation.from_rotvec(rv.reshape(-1, 3)).as_matrix().reshape(rv.shape[:-1] + (3, 3))


def matrix_to_rotvec(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation -> (..., 3) axis-angle [rad]."""
    R = np.asarray(R, dtype=np.float64)
    return Rotation.from_matrix(R.reshape(-1, 3, 3)).as_rotvec().reshape(R.shape[:-2] + (3,))


def quat_xyzw_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternion (x, y, z, w), the ROS order -> (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    return Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat_xyzw(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation -> (..., 4) unit quaternion (x, y, z, w), w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()
    q *= np.where(q[:, 3:4] < 0, -1.0, 1.0)
    return q.reshape(R.shape[:-2] + (4,))


def rotation_angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Geodesic angle between two (3, 3) rotations, degrees."""
    R = np.asarray(R_a, dtype=np.float64).T @ np.asarray(R_b, dtype=np.float64)
    c = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(c)))


def pose_errors(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    """(rotation error [deg], translation error [m]) between two (4, 4) poses."""
    return (rotation_angle_deg(T_est[:3, :3], T_gt[:3, :3]),
            float(np.linalg.norm(np.asarray(T_est)[:3, 3] - np.asarray(T_gt)[:3, 3])))


def perturb_pose(T: np.ndarray, angle_deg: float, trans_m: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Rotate T about a random axis by exactly ``angle_deg`` (about the object origin, in the camera
    frame) and shift it by exactly ``trans_m`` in a random direction. Returns a new (4, 4)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    out = np.array(T, dtype=np.float64)
    out[:3, :3] = rotvec_to_matrix(axis * np.radians(angle_deg)) @ out[:3, :3]
    out[:3, 3] = out[:3, 3] + d * trans_m
    return out


def random_rotation(rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    """Uniform random rotation(s): (3, 3) or (n, 3, 3)."""
    R = Rotation.random(1 if n is None else n, random_state=rng).as_matrix()
    return R[0] if n is None else R
