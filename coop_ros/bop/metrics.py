"""BOP pose error functions and recall scores (BOP 2019+ definitions), in metres and pixels.

API convention (one for all functions): a pose is given as a rotation ``R`` (3, 3) float64 and a
translation ``t`` (3,) float64 in metres, with ``x_cam = R @ x_obj + t`` (BOP ``cam_R_m2c`` /
``cam_t_m2c`` with t in metres). For a 4x4 ``T_cam_obj`` pass ``T[:3, :3], T[:3, 3]``.
Estimated pose first (``R_e, t_e``), then ground truth (``R_g, t_g``), as in the BOP toolkit.

``pts`` are (N, 3) model points in metres, object frame (BOP evaluates on the mesh vertices, e.g.
``ObjectModel.vertices``; ``ObjectModel.sample_surface`` is an alternative). ``syms`` is the
(S, 4, 4) array of ``ObjectModel.symmetry_transforms()`` (identity first); pass ``np.eye(4)[None]``
for an object without symmetries.

Recalls follow ``bop_toolkit`` (``eval_bop19_pose``): an error ``e`` is correct at threshold tau iff
``e < tau``; the recall of one error is the mean over the thresholds; a missing estimate is scored
with ``e = inf`` (never correct).

VSD (Visible Surface Discrepancy) needs depth renders of the model; it is implemented next to the
renderer (``coop_ros.render``), not here.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from coop_ros.errors import InputError
from coop_ros.geometry.camera import project_unchecked

__all__ = [
    "MSSD_THRESHOLDS", "MSPD_THRESHOLDS_PX", "ADD_THRESHOLD",
    "mssd", "mspd", "add", "adds",
    "mspd_thresholds", "recall_mssd", "recall_mspd", "recall_add",
]

#: MSSD correctness thresholds, fractions of the object diameter: 0.05, 0.10, ..., 0.50.
MSSD_THRESHOLDS = np.arange(1, 11) * 0.05
#: MSPD correctness thresholds [px] for a 640 px wide image: 5, 10, ..., 50 (scaled by width/640).
MSPD_THRESHOLDS_PX = np.arange(1, 11) * 5.0
#: ADD / ADD-S correctness threshold, fraction of the object diameter.
ADD_THRESHOLD = 0.1

# Symmetries are processed in chunks so that S * N * 3 float64 stays below ~50 MB.
_CHUNK_ELEMS = 2_000_000


def _rt(R, t, name: str) -> tuple[np.ndarray, np.ndarray]:
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if R.shape != (3, 3):
        raise InputError(f"{name}: rotation must be (3, 3), got {R.shape}")
    if t.size != 3:
        raise InputError(f"{name}: translation must have 3 values (metres), got shape {t.shape}")
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
        raise InputError(f"{name}: pose contains non-finite values")
    return R, t.reshape(3)


def _pts(pts) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise InputError(f"pts must be (N>=1, 3) model points in metres, got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise InputError("pts contain non-finite values")
    return pts


def _syms(syms) -> np.ndarray:
    syms = np.asarray(syms, dtype=np.float64)
    if syms.ndim == 2:
        syms = syms[None]
    if syms.ndim != 3 or syms.shape[1:] != (4, 4) or len(syms) == 0:
        raise InputError(f"syms must be (S>=1, 4, 4) symmetry transforms, got {syms.shape}")
    if not np.all(np.isfinite(syms)):
        raise InputError("syms contain non-finite values")
    return syms


def _K(K) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"K must be a finite (3, 3) intrinsic matrix with fx, fy > 0, got {K}")
    return K


def _sym_gt_points(R_g, t_g, pts, syms_chunk) -> np.ndarray:
    """(s, N, 3) model points under the GT pose composed with each symmetry: T_g @ T_sym."""
    R = R_g @ syms_chunk[:, :3, :3]                    # (s, 3, 3)
    t = syms_chunk[:, :3, 3] @ R_g.T + t_g              # (s, 3)
    return np.matmul(pts[None], R.transpose(0, 2, 1)) + t[:, None, :]


def _project(X: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(..., 3) camera points -> (..., 2) pixels (no check of z > 0, as the BOP toolkit)."""
    return project_unchecked(K, X)


def mssd(R_e, t_e, R_g, t_g, pts, syms) -> float:
    """Maximum Symmetry-aware Surface Distance [m].

    ``min over symmetries S of max over points x of |(R_e x + t_e) - T_g S x|``.

    Args:
        R_e, t_e: estimated pose, (3, 3) and (3,) metres.
        R_g, t_g: ground-truth pose, (3, 3) and (3,) metres.
        pts: (N, 3) model points, metres.
        syms: (S, 4, 4) symmetry transforms (``ObjectModel.symmetry_transforms()``).
    Returns:
        error in metres.
    """
    R_e, t_e = _rt(R_e, t_e, "estimated pose")
    R_g, t_g = _rt(R_g, t_g, "ground-truth pose")
    pts, syms = _pts(pts), _syms(syms)
    est = pts @ R_e.T + t_e
    step = max(1, _CHUNK_ELEMS // (3 * len(pts)))
    best = np.inf
    for i in range(0, len(syms), step):
        diff = _sym_gt_points(R_g, t_g, pts, syms[i:i + step]) - est[None]
        best = min(best, float(np.sqrt(np.einsum("snk,snk->sn", diff, diff).max(axis=1).min())))
    return best


def mspd(R_e, t_e, R_g, t_g, K, pts, syms) -> float:
    """Maximum Symmetry-aware Projection Distance [px].

    ``min over symmetries S of max over points x of |proj(R_e x + t_e) - proj(T_g S x)|``.

    Args:
        R_e, t_e, R_g, t_g: poses as in ``mssd`` (metres).
        K: (3, 3) camera intrinsics [px].
        pts: (N, 3) model points, metres.
        syms: (S, 4, 4) symmetry transforms.
    Returns:
        error in pixels.
    """
    R_e, t_e = _rt(R_e, t_e, "estimated pose")
    R_g, t_g = _rt(R_g, t_g, "ground-truth pose")
    K, pts, syms = _K(K), _pts(pts), _syms(syms)
    est = _project(pts @ R_e.T + t_e, K)
    step = max(1, _CHUNK_ELEMS // (3 * len(pts)))
    best = np.inf
    for i in range(0, len(syms), step):
        diff = _project(_sym_gt_points(R_g, t_g, pts, syms[i:i + step]), K) - est[None]
        best = min(best, float(np.sqrt(np.einsum("snk,snk->sn", diff, diff).max(axis=1).min())))
    return best


def add(R_e, t_e, R_g, t_g, pts) -> float:
    """ADD [m]: mean distance between corresponding model points under the two poses
    (Hinterstoisser et al. 2012). Args as ``mssd`` (no symmetries)."""
    R_e, t_e = _rt(R_e, t_e, "estimated pose")
    R_g, t_g = _rt(R_g, t_g, "ground-truth pose")
    pts = _pts(pts)
    return float(np.linalg.norm((pts @ R_e.T + t_e) - (pts @ R_g.T + t_g), axis=1).mean())


def adds(R_e, t_e, R_g, t_g, pts) -> float:
    """ADD-S [m]: mean over ground-truth-posed points of the distance to the nearest
    estimate-posed point (scipy cKDTree), as BOP toolkit's ``adi``. Always <= ``add``."""
    R_e, t_e = _rt(R_e, t_e, "estimated pose")
    R_g, t_g = _rt(R_g, t_g, "ground-truth pose")
    pts = _pts(pts)
    dists, _ = cKDTree(pts @ R_e.T + t_e).query(pts @ R_g.T + t_g, k=1)
    return float(np.mean(dists))


# ------------------------------------------------------------------------------------------------
# recalls
# ------------------------------------------------------------------------------------------------
def _errors(err, name: str) -> np.ndarray:
    e = np.asarray(err, dtype=np.float64).reshape(-1)
    if e.size == 0:
        raise InputError(f"{name}: no errors given")
    if np.any(e < 0):
        raise InputError(f"{name}: errors must be >= 0 (inf / nan = missing estimate)")
    return np.where(np.isnan(e), np.inf, e)


def _positive(x, name: str, n: int) -> np.ndarray:
    """(n,) float64 from a scalar or (n,) input; InputError unless finite and > 0."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size not in (1, n):
        raise InputError(f"{name} must be a scalar or one value per error ({n}), got {a.size}")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise InputError(f"{name} must be finite and > 0, got {a}")
    return np.broadcast_to(a, (n,))


def mspd_thresholds(image_width: float) -> np.ndarray:
    """(10,) MSPD thresholds [px] for an image ``image_width`` px wide: (5..50) * width / 640."""
    w = _positive(image_width, "image_width", 1)[0]
    return MSPD_THRESHOLDS_PX * (w / 640.0)


def recall_mssd(err, diameter) -> float:
    """BOP MSSD recall: mean over thresholds tau in ``MSSD_THRESHOLDS * diameter`` (and over the
    errors) of ``err < tau``.

    Args:
        err: scalar or (M,) MSSD errors [m]; inf / nan = missing estimate.
        diameter: scalar or (M,) object diameter(s) [m].
    Returns:
        recall in [0, 1].
    """
    e = _errors(err, "recall_mssd")
    d = _positive(diameter, "diameter", e.size)
    return float(np.mean(e[:, None] < MSSD_THRESHOLDS[None, :] * d[:, None]))


def recall_mspd(err, image_width) -> float:
    """BOP MSPD recall: mean over thresholds ``mspd_thresholds(image_width)`` (and over the
    errors) of ``err < tau``.

    Args:
        err: scalar or (M,) MSPD errors [px]; inf / nan = missing estimate.
        image_width: width of the image in pixels (640 -> thresholds 5..50 px).
    Returns:
        recall in [0, 1].
    """
    e = _errors(err, "recall_mspd")
    return float(np.mean(e[:, None] < mspd_thresholds(image_width)[None, :]))


def recall_add(err, diameter, threshold: float = ADD_THRESHOLD) -> float:
    """Fraction of ADD or ADD-S errors below ``threshold * diameter`` (10 % by default).

    Args:
        err: scalar or (M,) ADD / ADD-S errors [m]; inf / nan = missing estimate.
        diameter: scalar or (M,) object diameter(s) [m].
        threshold: fraction of the diameter.
    Returns:
        fraction in [0, 1] (1.0 / 0.0 for a single error: correct or not).
    """
    e = _errors(err, "recall_add")
    d = _positive(diameter, "diameter", e.size)
    thr = _positive(threshold, "threshold", 1)[0]
    return float(np.mean(e < thr * d))
