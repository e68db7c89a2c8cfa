"""Tracking: a pose for every camera frame after the first estimate (issue 24).

    tracker = Tracker(estimator, TrackConfig(motion="constant_velocity"), mode="rgbd")
    out = tracker.step(rgb, K, detections, depth=depth_m, stamp=t_s)   # detections optional
    for r in out: r.status, r.track_id, r.age, r.result.T_cam_obj, r.reason

One :class:`Tracker` follows the objects seen by one camera; it holds one :class:`Track` per
object id (tracks are keyed by object: one instance per object is tracked, further detections of
the same object in a frame are estimated per frame). What runs per frame and track:

1. **predict** the pose (``TrackConfig.motion``): ``constant_pose``; ``constant_velocity`` (the
   last frame-to-frame motion of the object's centre and rotation, per second, smoothed); or
   ``static_scene`` (objects at rest, the camera moves: one camera motion shared by every track,
   from the previous centres of the tracks with a detection in this frame and their detection
   boxes' centres -- EPnP + RANSAC, then Levenberg-Marquardt on the inliers; with fewer than 4
   such tracks, constant velocity). The covariance grows by the process noise.
2. **associate** the frame's detections with the tracks: per object, the detection whose box
   overlaps the predicted projected box most (IoU). A detection of a tracked object whose box
   does not overlap the prediction at all (IoU < ``min_association_iou``) is *far from the
   track*: the track is lost and re-initialised from that detection. Detections are optional:
   a track without one is refined in the crop of its predicted projected box.
3. **refine** from the prediction with a small fixed budget, no coarse stage:
   RGB -- the evidence pattern search (:func:`~coop_ros.pipeline.search.evidence_search`) over
   ``rgb_levels``, then, with a detection, the polish on the box fit as
   :meth:`PoseEstimator.refine_pose` does; RGB-D -- :func:`sparse_icp`: the model rendered once
   at the prediction, its visible surface sampled (~300 points with normals) and aligned to the
   observed depth by point-to-plane Gauss-Newton steps with projective association (no
   rendering per step: the depth modality of ICG, Stoiber et al. 2022), then optionally the
   evidence search over ``rgbd_levels``.
4. **decide lost** (the first that holds, its cause and numbers in the reason): the input frame
   is unusable (``bad_input``); the projected box left the image (``view``); with a detection,
   the refined projected box overlaps it by IoU < ``min_box_iou`` (``box``); the image evidence
   of the refined pose (:data:`TRACK_WEIGHTS`: the evidence without its box terms, comparable
   with and without a detection) < ``min_evidence[mode]`` (``evidence``, calibrated on data:
   README "Tracking"); the refined covariance's largest position standard deviation >
   ``max_position_std`` x the diameter (``covariance``: the evidence no longer pins the pose);
   RGB-D, fewer than ``min_depth_share`` of the visible model points agree with the observed
   depth (``depth``); the plausibility gate fails (``implausible_pose``,
   :mod:`coop_ros.pipeline.gate`: every pose that leaves the tracker passes it, as every pose of
   ``PoseEstimator.estimate`` does).
5. a lost track with a detection in this frame is **re-initialised** at once by the full
   pipeline (:meth:`PoseEstimator.estimate`); without one it is reported lost (no pose) and
   dropped, and the next detection of its object starts a new track.

Statuses of :class:`TrackResult`: ``new`` (the first estimate of a track), ``tracked``,
``reinitialised`` (re-estimated after the track was lost; ``reason`` says why it was lost),
``lost`` (no pose; the result is failed with reason ``track_lost: <cause>: <detail>``),
``estimated`` (a detection estimated per frame, not tracked: a second instance of a tracked
object). Poses (4, 4) ``T_cam_obj`` [m], OpenCV camera axes; boxes (x, y, w, h) [px];
covariances (6, 6) ROS order about the camera axes [m^2, rad^2]; stamps and velocities in
seconds (without stamps, one frame counts as one second). No ROS import.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from coop_ros.errors import InputError, Reason
from coop_ros.evidence import POLISH_WEIGHTS, Evidence, EvidenceWeights
from coop_ros.geometry.camera import crop_around_projection
from coop_ros.geometry.se3 import matrix_to_rotvec, rotvec_to_matrix
from coop_ros.pipeline.gate import apply_gate, hull_points
from coop_ros.pipeline.refine import evidence_covariance
from coop_ros.pipeline.results import (STATUS_OK, Detection, Hypothesis, PoseResult)
from coop_ros.pipeline.search import evidence_search
from coop_ros.pipeline.views import subsample_pixels

__all__ = ["TrackConfig", "Track", "TrackResult", "Tracker", "TRACK_WEIGHTS", "NEW", "TRACKED",
           "REINITIALISED", "LOST", "ESTIMATED", "projected_box", "box_iou", "box_cover", "camera_motion", "anchor_to_box", "klt_pose",
           "sparse_icp"]

NEW, TRACKED, REINITIALISED, LOST, ESTIMATED = ("new", "tracked", "reinitialised", "lost",
                                                "estimated")
#: the evidence a tracked pose is judged by (lost check): the default weights without the box
#: terms, so that a pose tracked with a detection and one tracked in the crop of its own
#: projected box are judged alike (the box agreement is its own criterion)
TRACK_WEIGHTS = EvidenceWeights(box=0.0)
MOTIONS = ("constant_pose", "constant_velocity", "static_scene")


@dataclass(frozen=True)
class TrackConfig:
    """Settings of :class:`Tracker` (module docstring; validated by :meth:`validate`).

    motion: prediction model (``constant_pose`` | ``constant_velocity`` | ``static_scene``).
    velocity_smoothing: weight of the newest frame-to-frame motion in the velocity (0-1].
    rgb_levels: (first, end) levels of the RGB evidence search from the prediction (level k
        moves by 8 / 2^k deg, 4 / 2^k crop px, 4 / 2^k % of the distance).
    rgb_polish: with a detection, polish the RGB pose on the box fit (the estimator's
        ``polish_levels``).
    rgb_levels_undetected: RGB, the search levels without a detection (when the search runs).
    rgb_search_after_klt: RGB, run the evidence search also when the KLT step gave the pose
        (default); False keeps the KLT pose with its PnP covariance (~20 ms instead of ~170 ms
        per object and frame; it drifts as well, README "Tracking").
    rgbd_levels: (first, end) levels of the evidence search after the RGB-D ICP ((0, 0): none).
    klt: start the refinement at the pose :func:`klt_pose` finds from the previous frame (the
        model's corners followed by Lucas-Kanade, PnP) when it has at least ``klt_min_inliers``
        of the followed corners (and 12) as PnP inliers with a median reprojection error of at
        most ``klt_max_residual_px``, turned by at most ``klt_max_turn_deg`` from the prediction
        (a PnP of a few corners bunched at the image border can fall into a wrong minimum);
        else at the prediction.
    icp_iterations, icp_points, icp_crop: the sparse ICP's Gauss-Newton steps, model points and
        the side of the crop it renders the model in [px].
    min_evidence: {mode: lowest :data:`TRACK_WEIGHTS` evidence of a tracked pose}.
    min_box_cover: lowest share of the associated detection box inside the refined pose's
        projected box (:func:`box_cover`).
    min_association_iou: a detection of a tracked object overlapping the prediction less is far
        from the track (the track is lost, re-initialised from the detection).
    anchor_iou: with a detection whose box overlaps the prediction's projected box (after the
        KLT step) by less than this IoU, the refinement starts at :func:`anchor_to_box` of the
        prediction (0: never).
    max_position_std: largest position standard deviation of the refined covariance, as a
        fraction of the object diameter.
    min_depth_share: RGB-D, lowest share of the visible model points that agree with the
        observed depth (within max(10 mm, 2 % of the distance)).
    min_in_view: lowest share of the projected box inside the image.
    reinit_hypotheses: hypotheses of the full estimate that (re-)initialises a track (None: the
        estimator's ``num_hypotheses``).
    position_noise, rotation_noise: process noise of the prediction, per second: position std
        as a fraction of the diameter, rotation std [rad].
    """

    motion: str = "constant_velocity"
    velocity_smoothing: float = 0.7
    rgb_levels: tuple = (1, 4)
    rgb_polish: bool = True
    rgb_search_after_klt: bool = True
    rgb_levels_undetected: tuple = (1, 4)
    rgbd_levels: tuple = (0, 0)
    klt: bool = True
    klt_min_inliers: float = 0.5
    klt_max_residual_px: float = 1.0
    klt_max_turn_deg: float = 30.0
    icp_iterations: int = 8
    icp_points: int = 300
    icp_crop: int = 96
    min_evidence: dict = field(default_factory=lambda: {"rgb": 0.35, "rgbd": 0.5})
    min_box_cover: float = 0.7
    min_association_iou: float = 0.01
    anchor_iou: float = 0.5
    max_position_std: float = 0.5
    min_depth_share: float = 0.3
    min_in_view: float = 0.2
    reinit_hypotheses: int | None = None
    position_noise: float = 0.5
    rotation_noise: float = 1.0

    def validate(self) -> "TrackConfig":
        """Check every field; raises InputError naming the bad one. Returns self."""
        def bad(name, why):
            raise InputError(f"TrackConfig.{name} {why}, got {getattr(self, name)!r}")
        if self.motion not in MOTIONS:
            bad("motion", f"must be one of {list(MOTIONS)}")
        if not 0.0 < float(self.velocity_smoothing) <= 1.0:
            bad("velocity_smoothing", "must lie in (0, 1]")
        for name in ("rgb_levels", "rgbd_levels", "rgb_levels_undetected"):
            v = getattr(self, name)
            if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(
                    isinstance(x, int) and not isinstance(x, bool) for x in v)
                    and 0 <= v[0] <= v[1] <= 8):
                bad(name, "must be two integers (first, end) with 0 <= first <= end <= 8")
        for name, lo, hi in (("icp_iterations", 0, 50), ("icp_points", 12, 5000),
                             ("icp_crop", 32, 512)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                bad(name, f"must be an integer in [{lo}, {hi}]")
        if not isinstance(self.min_evidence, dict) or set(self.min_evidence) != {"rgb", "rgbd"} \
                or not all(0.0 <= float(v) <= 1.0 for v in self.min_evidence.values()):
            bad("min_evidence", "must be {'rgb': x, 'rgbd': y} with values in [0, 1]")
        for name in ("klt", "rgb_polish", "rgb_search_after_klt"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "must be true or false")
        for name in ("klt_min_inliers", "anchor_iou", "min_box_cover", "min_association_iou", "min_depth_share", "min_in_view"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                bad(name, "must lie in [0, 1]")
        for name in ("max_position_std", "position_noise", "rotation_noise",
                     "klt_max_residual_px", "klt_max_turn_deg"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v > 0):
                bad(name, "must be a positive number")
        if self.reinit_hypotheses is not None and not (
                isinstance(self.reinit_hypotheses, int) and 1 <= self.reinit_hypotheses <= 64):
            bad("reinit_hypotheses", "must be an integer in [1, 64] or None")
        return self


@dataclass
class Track:
    """State of one tracked object.

    track_id: unique per tracker; obj_id: the object; T: (4, 4) pose at the last frame [m];
    velocity: (6,) motion per second of the object's centre (camera frame) [m/s] and rotation
    vector [rad/s]; covariance: (6, 6) or None; evidence: recent :data:`TRACK_WEIGHTS` scores
    (newest last); age: frames since the track's (re-)initialisation; stamp: time of the last
    frame [s] or None; since_detection: frames since a detection was associated.
    """

    track_id: int
    obj_id: object
    T: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(6))
    covariance: np.ndarray | None = None
    evidence: deque = field(default_factory=lambda: deque(maxlen=30))
    age: int = 0
    stamp: float | None = None
    since_detection: int = 0
    frame: int = -1


@dataclass
class TrackResult:
    """One answer of :meth:`Tracker.step`.

    result: the :class:`PoseResult` (ok with the pose; failed ``track_lost: ...`` for a lost
    track; the estimator's result for a (re-)initialisation). status: :data:`NEW`,
    :data:`TRACKED`, :data:`REINITIALISED`, :data:`LOST` or :data:`ESTIMATED`. track_id: the
    track (None for a per-frame estimate that started no track). age: frames since the track's
    (re-)initialisation. reason: why the track was lost (lost, reinitialised), else "".
    detection: index into the step's detections, or None (tracked without a detection).
    evidence: the :data:`TRACK_WEIGHTS` evidence of the pose (nan when not computed).
    """

    result: PoseResult
    status: str
    track_id: int | None = None
    age: int = 0
    reason: str = ""
    detection: int | None = None
    evidence: float = float("nan")

    @property
    def obj_id(self):
        return self.result.obj_id

    @property
    def ok(self) -> bool:
        return self.result.ok


# ----------------------------------------------------------------------------- geometry helpers

def projected_box(points: np.ndarray, T: np.ndarray, K: np.ndarray) -> np.ndarray | None:
    """(4,) box (x, y, w, h) [px] spanned by the projections of ``points`` (N, 3) [m] at pose T
    (BOP convention: pixel centres at integers, x = u_min + 0.5), unclipped; None when a point
    lies within 1 mm of the camera plane or behind it."""
    P = points @ T[:3, :3].T + T[:3, 3]
    if not np.all(np.isfinite(P)) or P[:, 2].min() < 1e-3:
        return None
    u = K[0, 0] * P[:, 0] / P[:, 2] + K[0, 2]
    v = K[1, 1] * P[:, 1] / P[:, 2] + K[1, 2]
    return np.array([u.min() + 0.5, v.min() + 0.5, u.max() - u.min(), v.max() - v.min()])


def _xyxy(b) -> np.ndarray:
    x, y, w, h = (float(v) for v in np.asarray(b, np.float64).reshape(-1)[:4])
    return np.array([x, y, x + w, y + h])


def box_iou(a, b) -> float:
    """IoU of two (x, y, w, h) boxes (0 when either is empty)."""
    A, B = _xyxy(a), _xyxy(b)
    iw = max(0.0, min(A[2], B[2]) - max(A[0], B[0]))
    ih = max(0.0, min(A[3], B[3]) - max(A[1], B[1]))
    inter = iw * ih
    union = (A[2] - A[0]) * (A[3] - A[1]) + (B[2] - B[0]) * (B[3] - B[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_cover(det, proj) -> float:
    """Share of detection box ``det`` (x, y, w, h) inside the projected box ``proj``: the
    detection is the *visible* part of the object, so occlusion shrinks it inside the
    projection (IoU would fall), while a pose beside the object leaves it uncovered."""
    A, B = _xyxy(det), _xyxy(proj)
    area = (A[2] - A[0]) * (A[3] - A[1])
    if area <= 0:
        return 0.0
    iw = max(0.0, min(A[2], B[2]) - max(A[0], B[0]))
    ih = max(0.0, min(A[3], B[3]) - max(A[1], B[1]))
    return float(iw * ih / area)


def _in_view(box, W: int, H: int) -> float:
    """Share of box (x, y, w, h) inside a W x H image."""
    A = _xyxy(box)
    area = (A[2] - A[0]) * (A[3] - A[1])
    if area <= 0:
        return 0.0
    iw = max(0.0, min(A[2], W) - max(A[0], 0.0))
    ih = max(0.0, min(A[3], H) - max(A[1], 0.0))
    return float(iw * ih / area)


def _clip_box(box, W: int, H: int) -> np.ndarray:
    A = _xyxy(box)
    x0, y0 = min(max(A[0], 0.0), W - 1.0), min(max(A[1], 0.0), H - 1.0)
    x1, y1 = min(max(A[2], x0 + 1.0), float(W)), min(max(A[3], y0 + 1.0), float(H))
    return np.array([x0, y0, x1 - x0, y1 - y0])


def _angle_deg(A: np.ndarray, B: np.ndarray) -> float:
    """Rotation angle between the rotations of two (4, 4) poses [deg]."""
    c = (np.trace(A[:3, :3] @ B[:3, :3].T) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def _center(T: np.ndarray, c_obj: np.ndarray) -> np.ndarray:
    return T[:3, :3] @ c_obj + T[:3, 3]


def _moved(T: np.ndarray, c_obj: np.ndarray, twist: np.ndarray) -> np.ndarray:
    """Pose T with its centre moved by twist[:3] [m] and turned by rotation vector twist[3:]
    about its centre (camera frame)."""
    c = _center(T, c_obj) + twist[:3]
    R = rotvec_to_matrix(twist[3:]) @ T[:3, :3]
    out = np.eye(4)
    out[:3, :3] = R
    out[:3, 3] = c - R @ c_obj
    return out


def _twist(T0: np.ndarray, T1: np.ndarray, c_obj: np.ndarray) -> np.ndarray:
    """(6,) motion from T0 to T1: centre displacement [m] and rotation vector [rad]."""
    return np.concatenate([_center(T1, c_obj) - _center(T0, c_obj),
                           matrix_to_rotvec(T1[:3, :3] @ T0[:3, :3].T)])


def anchor_to_box(T: np.ndarray, proj_box, det_box, K: np.ndarray, c_obj: np.ndarray,
                  max_scale: float = 2.0) -> np.ndarray:
    """Pose T moved so that its projected box ``proj_box`` (x, y, w, h) [px] would span the
    detection box ``det_box``: its centre shifted by the boxes' centre offset and its distance
    divided by the larger of the side ratios (clipped to [1 / max_scale, max_scale]; the larger
    side, as occlusion shrinks a detection box more along one side); the rotation turned with
    the viewing ray so that the object shows the camera the same side. (4, 4) [m]."""
    c = _center(T, c_obj)
    p, d = np.asarray(proj_box, np.float64), np.asarray(det_box, np.float64)
    s = max(d[2] / max(p[2], 1e-6), d[3] / max(p[3], 1e-6))
    s = float(np.clip(s, 1.0 / max_scale, max_scale))
    z = c[2] / s
    u = K[0, 0] * c[0] / c[2] + K[0, 2] + (d[0] + d[2] / 2) - (p[0] + p[2] / 2)
    v = K[1, 1] * c[1] / c[2] + K[1, 2] + (d[1] + d[3] / 2) - (p[1] + p[3] / 2)
    c1 = np.array([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z])
    a, b = c / np.linalg.norm(c), c1 / np.linalg.norm(c1)
    axis = np.cross(a, b)
    n = np.linalg.norm(axis)
    R_ray = np.eye(3) if n < 1e-12 else rotvec_to_matrix(
        axis / n * np.arctan2(n, float(a @ b)))
    out = np.eye(4)
    out[:3, :3] = R_ray @ T[:3, :3]
    out[:3, 3] = c1 - out[:3, :3] @ c_obj
    return out


def camera_motion(centres: np.ndarray, uv: np.ndarray, K: np.ndarray,
                  reproj_px: float = 30.0) -> tuple[np.ndarray, np.ndarray] | None:
    """The camera's motion between two frames of a static scene from object centres: ``centres``
    (N, 3) [m] in the previous camera frame, ``uv`` (N, 2) [px] where they are seen now (the
    centres of their detection boxes). EPnP inside RANSAC (OpenCV, ``reproj_px``), then
    Levenberg-Marquardt on the inliers. Returns ((4, 4) T_now_prev, (N,) bool inliers) or None
    (fewer than 4 points or inliers, no solution)."""
    centres = np.asarray(centres, np.float64).reshape(-1, 3)
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    if len(centres) < 4:
        return None
    try:
        ok, rv, tv, inl = cv2.solvePnPRansac(centres, uv, K, None, reprojectionError=reproj_px,
                                             iterationsCount=200, flags=cv2.SOLVEPNP_EPNP)
        if not ok or inl is None or len(inl) < 4:
            return None
        idx = inl[:, 0]
        rv, tv = cv2.solvePnPRefineLM(centres[idx], uv[idx], K, None, rv, tv)
    except cv2.error:
        return None
    D = np.eye(4)
    D[:3, :3] = cv2.Rodrigues(rv)[0]
    D[:3, 3] = tv[:, 0]
    if not np.all(np.isfinite(D)):
        return None
    mask = np.zeros(len(centres), bool)
    mask[idx] = True
    return D, mask


# ----------------------------------------------------------------------------- frame to frame

def klt_pose(prev_gray: np.ndarray, gray: np.ndarray, T_prev: np.ndarray, T_guess: np.ndarray,
             K: np.ndarray, renderer, key: str, obj, crop: int = 128, max_points: int = 150,
             fb_px: float = 1.0, reproj_px: float = 3.0) -> dict | None:
    """The object's pose in this frame from its appearance in the previous one (model-based KLT
    tracking): the model is rendered at the previous pose ``T_prev`` in a ``crop`` px crop
    around its projection; up to ``max_points`` corners (Shi-Tomasi) of the previous image inside
    the rendered silhouette (eroded 2 px) get their 3D object points from the object-coordinate
    map; they are followed into this image by pyramidal Lucas-Kanade (kept when the backward flow
    returns within ``fb_px``); EPnP inside RANSAC (``reproj_px``) from the guess ``T_guess``,
    then Levenberg-Marquardt on the inliers, gives the pose.

    Args:
        prev_gray, gray: (H, W) uint8 previous and current grey images; T_prev, T_guess: (4, 4)
        [m]; K: (3, 3) [px]; renderer, key, obj: the renderer, mesh key and ObjectModel.
    Returns:
        {"T": (4, 4), "points": corners followed, "inliers": PnP inliers, "residual_px": median
        reprojection error of the inliers, "covariance": (6, 6) ROS order (position, rotation
        about the camera axes) from the PnP's reprojection Jacobian, or None} or None (fewer than 8 points followed or inliers, the
        object outside the image, no PnP solution).
    """
    H, W = gray.shape
    try:
        cr = crop_around_projection(K, T_prev, float(obj.diameter), crop, margin=0.05,
                                    image_size=(W, H), center_obj=obj.center)
    except InputError:
        return None
    out = renderer.render(key, T_prev, cr.intrinsics(K), width=crop, height=crop, xyz=True)
    m = cv2.erode(out.mask[0].astype(np.uint8), np.ones((5, 5), np.uint8))
    if int(m.sum()) < 20:
        return None
    g0 = cr.warp(prev_gray, "linear")
    c = cv2.goodFeaturesToTrack(g0, max_points, 0.01, 3, mask=m)
    if c is None or len(c) < 8:
        return None
    ij = np.rint(c.reshape(-1, 2)).astype(int)
    X = out.xyz[0][ij[:, 1], ij[:, 0]].astype(np.float64)
    P = X @ T_prev[:3, :3].T + T_prev[:3, 3]
    if P[:, 2].min() < 1e-3:
        return None
    uv0 = np.stack([K[0, 0] * P[:, 0] / P[:, 2] + K[0, 2],
                    K[1, 1] * P[:, 1] / P[:, 2] + K[1, 2]], 1).astype(np.float32)
    inside = (uv0[:, 0] >= 0) & (uv0[:, 0] <= W - 1) & (uv0[:, 1] >= 0) & (uv0[:, 1] <= H - 1)
    X, uv0 = X[inside], uv0[inside]
    if len(X) < 8:
        return None
    lk = dict(winSize=(21, 21), maxLevel=3,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
    uv1, st, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, uv0[:, None], None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(gray, prev_gray, uv1, None, **lk)
    ok = (st[:, 0] == 1) & (st2[:, 0] == 1) & (
        np.linalg.norm(back[:, 0] - uv0, axis=1) < fb_px)
    if int(ok.sum()) < 8:
        return None
    X, uv = X[ok], uv1[ok, 0].astype(np.float64)
    rv0 = cv2.Rodrigues(T_guess[:3, :3])[0]
    tv0 = T_guess[:3, 3].reshape(3, 1).copy()
    try:
        found, rv, tv, inl = cv2.solvePnPRansac(X, uv, K, None, rvec=rv0.copy(), tvec=tv0.copy(),
                                                useExtrinsicGuess=True, iterationsCount=100,
                                                reprojectionError=reproj_px,
                                                flags=cv2.SOLVEPNP_EPNP)
        if not found or inl is None or len(inl) < 8:
            return None
        idx = inl[:, 0]
        rv, tv = cv2.solvePnPRefineLM(X[idx], uv[idx], K, None, rv, tv)
    except cv2.error:
        return None
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(rv)[0]
    T[:3, 3] = tv[:, 0]
    if not np.all(np.isfinite(T)) or T[2, 3] <= 0:
        return None
    proj, jac = cv2.projectPoints(X[idx], rv, tv, K, None)
    err = np.linalg.norm(proj[:, 0] - uv[idx], axis=1)
    res = float(np.median(err))
    # covariance of (t, r) from the reprojection Jacobian (rows u, v; columns rvec 0-2, tvec
    # 3-5), residual std robustly (at least 0.5 px); the rotation-vector perturbation taken
    # as the one about the camera axes (small angles)
    J = np.concatenate([jac[:, 3:6], jac[:, 0:3]], 1)
    sigma = max(1.4826 * res, 0.5)
    try:
        cov = np.linalg.inv(J.T @ J) * sigma ** 2
        cov = 0.5 * (cov + cov.T)
    except np.linalg.LinAlgError:
        cov = None
    return {"T": T, "points": int(ok.sum()), "inliers": int(len(idx)), "residual_px": res,
            "covariance": cov}


# ----------------------------------------------------------------------------- RGB-D step

def _normals_obj(X: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-pixel normals (S, S, 3) of an object-coordinate map X (S, S, 3) [m] with mask m,
    from central differences (zeros where a neighbour is off the object)."""
    dx = np.zeros_like(X)
    dy = np.zeros_like(X)
    dx[:, 1:-1] = X[:, 2:] - X[:, :-2]
    dy[1:-1] = X[2:] - X[:-2]
    ok = np.zeros_like(m)
    ok[1:-1, 1:-1] = m[1:-1, 1:-1] & m[1:-1, 2:] & m[1:-1, :-2] & m[2:, 1:-1] & m[:-2, 1:-1]
    n = np.cross(dx, dy)
    nn = np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(ok[..., None] & (nn > 1e-12), n / np.maximum(nn, 1e-12), 0.0)


def sparse_icp(T0: np.ndarray, depth: np.ndarray, K: np.ndarray, renderer, key: str, obj,
               iterations: int = 8, n_points: int = 300, crop: int = 96, inflation: float = 1.0
               ) -> dict:
    """Point-to-plane ICP of the object's visible surface onto the observed depth, with the
    model rendered once (the depth modality of ICG, Stoiber et al. 2022, written here for the
    per-frame budget: :func:`coop_ros.pipeline.icp.icp_point_to_plane` re-renders a 224 px crop
    and computes normals of the observed depth at every step).

    The model is rendered at T0 in a ``crop`` px crop around its projection; ``n_points`` of the
    visible pixels give object points and normals (from the object-coordinate map). Each step
    projects them with the current pose into the full image, pairs each with the observed depth
    at that pixel (projective association), drops pairs farther apart in depth than a gate that
    shrinks from 10 % to 2 % of the diameter (and observed points nearer than that: occluders),
    and solves the Huber-weighted linearised problem ``n . (p - o)`` for (dt, dw) in the camera
    frame (perturbation ``t <- t + dt``, ``R <- exp([dw]x) R``).

    Args:
        T0: (4, 4) start pose [m]; depth: (H, W) observed depth [m] (0 = none); K: (3, 3) [px].
        renderer, key: the renderer and the mesh key; obj: the ObjectModel (diameter, centre).
    Returns:
        {"T": (4, 4), "covariance": (6, 6) or None (ROS order, camera frame), "pairs": pairs
        of the last step, "visible": model points in the image, "agree": share of the visible
        points whose observed depth lies within max(10 mm, 2 % z) of the model's at the result,
        "steps": steps taken}.
    """
    T = np.array(T0, np.float64)
    H, W = depth.shape
    D = float(obj.diameter)
    res = {"T": T, "covariance": None, "pairs": 0, "visible": 0, "agree": 0.0, "steps": 0}
    try:
        cr = crop_around_projection(K, T, D, crop, margin=0.05, image_size=(W, H),
                                    center_obj=obj.center)
    except InputError:
        return res
    Kc = cr.intrinsics(K)
    out = renderer.render(key, T, Kc, width=crop, height=crop, xyz=True)
    m = out.mask[0]
    N = _normals_obj(out.xyz[0].astype(np.float64), m)
    sel = m & (np.abs(N).sum(-1) > 0)
    rows, cols = subsample_pixels(sel, n_points)
    if len(rows) < 12:
        return res
    X = out.xyz[0][rows, cols].astype(np.float64)
    Nn = N[rows, cols]
    # normals pointing to the camera at T0 (object frame)
    Pc = X @ T[:3, :3].T + T[:3, 3]
    flip = ((Nn @ T[:3, :3].T) * Pc).sum(-1) > 0
    Nn[flip] *= -1
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    def pairs(T, gate):
        P = X @ T[:3, :3].T + T[:3, 3]
        z = P[:, 2]
        ok = z > 1e-3
        u = np.rint(fx * P[:, 0] / np.where(ok, z, 1.0) + cx).astype(np.int64)
        v = np.rint(fy * P[:, 1] / np.where(ok, z, 1.0) + cy).astype(np.int64)
        ok &= (u >= 0) & (u < W) & (v >= 0) & (v < H)
        zo = np.zeros(len(P))
        zo[ok] = depth[v[ok], u[ok]]
        vis = ok & (zo > 0)
        dz = zo - z
        use = vis & (np.abs(dz) < gate)
        o = np.stack([(u - cx) / fx * zo, (v - cy) / fy * zo, zo], 1)
        return P, o, use, vis, dz

    cov = None
    steps = 0
    npairs = 0
    for k in range(max(iterations, 0)):
        frac = k / max(iterations - 1, 1)
        gate = D * (0.10 * (1 - frac) + 0.02 * frac)
        P, o, use, vis, _ = pairs(T, gate)
        npairs = int(use.sum())
        if npairs < 12:
            break
        p, q = P[use], o[use]
        n = Nn[use] @ T[:3, :3].T
        r = ((p - q) * n).sum(-1)
        J = np.concatenate([n, np.cross(p - T[:3, 3], n)], 1)
        s = 1.4826 * np.median(np.abs(r)) + 1e-4
        w = np.minimum(1.0, 1.5 * s / np.maximum(np.abs(r), 1e-12))
        Hm = (J * w[:, None]).T @ J
        g = (J * w[:, None]).T @ r
        Hd = Hm + 1e-9 * np.trace(Hm) * np.eye(6)
        try:
            xi = -np.linalg.solve(Hd, g)
        except np.linalg.LinAlgError:
            break
        T = T.copy()
        T[:3, :3] = rotvec_to_matrix(xi[3:]) @ T[:3, :3]
        T[:3, 3] = T[:3, 3] + xi[:3]
        sigma2 = float((w * r * r).sum() / max(w.sum() - 6, 1))
        Hi = np.linalg.inv(Hd)
        cov = 0.5 * (Hi + Hi.T) * sigma2 * inflation
        steps += 1
        if np.abs(xi).max() < 1e-5:
            break
    P, _, _, vis, dz = pairs(T, np.inf)
    tol = np.maximum(0.01, 0.02 * P[:, 2])
    nvis = int(vis.sum())
    agree = float((vis & (np.abs(dz) < tol)).sum() / nvis) if nvis else 0.0
    res.update(T=T, covariance=cov, pairs=npairs, visible=nvis, agree=agree, steps=steps)
    return res


# ----------------------------------------------------------------------------- the tracker

class Tracker:
    """Tracks the objects of one camera stream with a :class:`PoseEstimator` (module docstring).

    Args:
        estimator: a :class:`~coop_ros.pipeline.estimator.PoseEstimator` with the objects
            registered (its renderer, evidence proxies and full pipeline are used).
        config: :class:`TrackConfig` (validated here).
        mode: "rgb" or "rgbd".
    """

    def __init__(self, estimator, config: TrackConfig | None = None, mode: str = "rgb"):
        if mode not in ("rgb", "rgbd"):
            raise InputError(f"mode must be 'rgb' or 'rgbd', got {mode!r}")
        self.estimator = estimator
        self.config = (config or TrackConfig()).validate()
        self.mode = mode
        self.tracks: dict = {}          # obj_id -> Track
        self._next_id = 1
        self._frame = 0                 # frames stepped
        self._prev_gray: np.ndarray | None = None    # (H, W) uint8 grey of the last frame
        self._lost_reasons: dict = {}   # obj_id -> why its last track ended (reinitialised)
        self.last_motion: np.ndarray | None = None   # static_scene: the last camera motion

    # ------------------------------------------------------------------ public
    def reset(self) -> None:
        """Forget every track."""
        self.tracks.clear()
        self._lost_reasons.clear()
        self._prev_gray = None
        self.last_motion = None

    def fail_frame(self, reason: str) -> list[TrackResult]:
        """A frame that cannot be read (the caller's checks failed, ``reason`` says why): every
        live track is lost with ``track_lost: <reason>`` and dropped; returns their results."""
        return self._bad_frame([], reason)

    def drop(self, obj_id) -> None:
        """Forget the track of ``obj_id`` (if any)."""
        self.tracks.pop(obj_id, None)
        self._lost_reasons.pop(obj_id, None)

    def step(self, rgb, K, detections=None, depth=None, stamp: float | None = None,
             num_hypotheses: int | None = None, deadline: float | None = None,
             should_stop=None, coast: int = 0) -> list[TrackResult]:
        """Process one frame (module docstring).

        Args:
            rgb: (H, W, 3) uint8; K: (3, 3) [px]; depth: (H, W) float [m] (mode rgbd).
            detections: list of :class:`Detection` (or (obj_id, box) tuples), may be empty or None.
            stamp: frame time [s] (None: one frame = one second).
            num_hypotheses: hypotheses of (re-)initialising estimates (default: the config's
                ``reinit_hypotheses``, else the estimator's).
            deadline, should_stop: as :meth:`PoseEstimator.estimate`; a track not refined
                before them is answered ``skipped`` (its state kept, not advanced).
            coast: 0 (default) refines every live track, with or without a detection; N > 0
                refines only the tracks with a detection in this frame: the others move by their
                prediction, unrefined and unanswered, and are dropped after N such frames in a
                row (an evaluation whose detections are the frame's targets).
        Returns:
            one :class:`TrackResult` per detection (in order: the detection's track, its
            (re-)initialisation or its per-frame estimate), then one per live track that had
            no detection (tracked or lost).
        Raises:
            nothing for bad frames: every live track is lost with the reason (``bad_input``)
            and every detection failed alike.
        """
        cfg, mode, est = self.config, self.mode, self.estimator
        dets = [d if isinstance(d, Detection) else Detection(*d) for d in (detections or [])]
        try:
            rgb, K, depth = est._check_inputs(rgb, K, depth, mode)
        except InputError as e:
            return self._bad_frame(dets, f"bad_input: {e.detail}")
        H, W = rgb.shape[:2]
        if mode == "rgbd" and not np.any(depth > 0):
            return self._bad_frame(dets, "bad_input: depth image has no valid measurement (all "
                                   "NaN / 0)")
        stop = should_stop or (lambda: False)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if cfg.klt else None

        # ---- predict
        preds = {}
        motion = None
        if cfg.motion == "static_scene":
            motion = self._camera_motion(dets, K)
        for oid, tr in self.tracks.items():
            preds[oid] = self._predict(tr, stamp, motion)

        # ---- associate: per object, the detection overlapping the prediction most
        assoc: dict = {}          # obj_id -> detection index
        far: dict = {}            # obj_id -> (detection index, iou)
        pred_boxes = {oid: projected_box(self._hull(oid), preds[oid], K) for oid in preds}
        for i, d in enumerate(dets):
            oid = d.obj_id
            if oid not in self.tracks or pred_boxes.get(oid) is None:
                continue
            iou = box_iou(pred_boxes[oid], d.box_xywh)
            cur = assoc.get(oid)
            if cur is None or iou > box_iou(pred_boxes[oid], dets[cur].box_xywh):
                assoc[oid] = i
        for oid, i in list(assoc.items()):
            iou = box_iou(pred_boxes[oid], dets[i].box_xywh)
            if iou < cfg.min_association_iou:
                far[oid] = (i, iou)
                del assoc[oid]

        out: list[TrackResult] = []
        by_det: dict = {}
        undetected: list[TrackResult] = []
        nh = num_hypotheses if num_hypotheses is not None else cfg.reinit_hypotheses

        # ---- tracks
        for oid in list(self.tracks):
            tr = self.tracks[oid]
            di = assoc.get(oid)
            if stop() or (deadline is not None and time.monotonic() > deadline):
                why = (Reason.CANCELLED, "node shutting down") if stop() else \
                    (Reason.BUDGET_EXHAUSTED, "the frame's time budget was spent before this "
                     "track was refined")
                r = TrackResult(PoseResult.skipped(oid, *why, mode=mode), TRACKED, tr.track_id,
                                tr.age, detection=di)
                (by_det.__setitem__(di, r) if di is not None else undetected.append(r))
                continue
            if oid in far:
                fi, iou = far[oid]
                lost = (f"track_lost: box: the detection is far from the track (its box "
                        f"overlaps the predicted projection by IoU {iou:.2f} < "
                        f"{cfg.min_association_iou:g})")
                del self.tracks[oid]
                by_det[fi] = self._initialise(rgb, K, depth, dets[fi], fi, nh, deadline,
                                              should_stop, stamp, lost)
                continue
            det = dets[di] if di is not None else None
            if det is None and coast > 0:
                tr.T, tr.since_detection = preds[oid], tr.since_detection + 1
                tr.stamp = tr.stamp if stamp is None else float(stamp)
                tr.frame = self._frame
                if tr.since_detection > coast:
                    del self.tracks[oid]
                continue
            r = self._track(tr, preds[oid], rgb, K, depth, det, di, stamp, gray)
            if r.status == LOST and det is not None:
                del self.tracks[oid]
                r = self._initialise(rgb, K, depth, det, di, nh, deadline, should_stop, stamp,
                                     r.reason)
            elif r.status == LOST:
                del self.tracks[oid]
                self._lost_reasons[oid] = r.reason
            (by_det.__setitem__(di, r) if di is not None else undetected.append(r))

        # ---- detections without a track: new tracks (one per object), or per-frame estimates
        for i, d in enumerate(dets):
            if i in by_det:
                continue
            if d.obj_id in self.tracks:     # a second instance of a tracked object
                by_det[i] = self._estimate_only(rgb, K, depth, d, i, nh, deadline, should_stop)
            else:
                by_det[i] = self._initialise(rgb, K, depth, d, i, nh, deadline, should_stop,
                                             stamp, None)
        out = [by_det[i] for i in range(len(dets))] + undetected
        self.last_motion = motion
        self._prev_gray = gray
        self._frame += 1
        return out

    # ------------------------------------------------------------------ helpers
    def _hull(self, obj_id) -> np.ndarray:
        return hull_points(self.estimator.object_model(obj_id), max_points=500)

    def _bad_frame(self, dets, reason: str) -> list[TrackResult]:
        """Every live track lost and every detection failed with ``reason`` (a bad frame)."""
        out = []
        for i, d in enumerate(dets):
            tr = self.tracks.get(d.obj_id)
            out.append(TrackResult(PoseResult.failed(d.obj_id, Reason.BAD_INPUT, reason.split(
                ": ", 1)[-1], mode=self.mode), LOST if tr else ESTIMATED,
                tr.track_id if tr else None, tr.age if tr else 0,
                reason=f"track_lost: {reason}" if tr else "", detection=i))
        seen = {d.obj_id for d in dets}
        for oid, tr in self.tracks.items():
            if oid in seen:
                continue
            out.append(self._lost(tr, f"track_lost: {reason}", None))
        for oid in self.tracks:
            self._lost_reasons[oid] = f"track_lost: {reason}"
        self.tracks.clear()
        return out

    def _lost(self, tr: Track, reason: str, di, score: float = float("nan")) -> TrackResult:
        detail = reason.split(": ", 1)[-1]
        return TrackResult(PoseResult.failed(tr.obj_id, Reason.TRACK_LOST, detail,
                                             mode=self.mode), LOST, tr.track_id, tr.age,
                           reason=reason, detection=di, evidence=score)

    def _camera_motion(self, dets, K) -> np.ndarray | None:
        """static_scene: the camera motion from the tracks that have a detection now."""
        cs, uv = [], []
        for d in dets:
            tr = self.tracks.get(d.obj_id)
            if tr is None:
                continue
            obj = self.estimator.object_model(d.obj_id)
            x, y, w, h = np.asarray(d.box_xywh, np.float64).reshape(-1)[:4]
            cs.append(_center(tr.T, obj.center))
            uv.append((x + w / 2 - 0.5, y + h / 2 - 0.5))
        if len(cs) < 4:
            return None
        r = camera_motion(np.array(cs), np.array(uv), K)
        return None if r is None else r[0]

    def _predict(self, tr: Track, stamp, motion) -> np.ndarray:
        """The predicted pose of a track (module docstring, step 1)."""
        if motion is not None:
            return motion @ tr.T
        if self.config.motion != "constant_velocity":   # static_scene without a motion: as is
            return tr.T.copy()
        dt = 1.0 if stamp is None or tr.stamp is None else max(float(stamp) - tr.stamp, 0.0)
        obj = self.estimator.object_model(tr.obj_id)
        return _moved(tr.T, obj.center, tr.velocity * dt)

    def _track(self, tr: Track, T_pred, rgb, K, depth, det, di, stamp, gray=None
               ) -> TrackResult:
        """Refine one track from its prediction and judge it (module docstring, steps 3-4)."""
        cfg, mode, est = self.config, self.mode, self.estimator
        t0 = time.perf_counter()
        obj = est.object_model(tr.obj_id)
        key = est.evidence_key(tr.obj_id)
        hull = self._hull(tr.obj_id)
        H, W = rgb.shape[:2]
        pbox = projected_box(hull, T_pred, K)
        if pbox is None or _in_view(pbox, W, H) < cfg.min_in_view:
            share = 0.0 if pbox is None else _in_view(pbox, W, H)
            return self._lost(tr, f"track_lost: view: the object left the image (its predicted "
                                  f"projection {share:.0%} inside, at least "
                                  f"{cfg.min_in_view:.0%})", di)
        timings: dict = {}
        T = T_pred
        klt_cov = None
        if cfg.klt and gray is not None and self._prev_gray is not None and \
                self._prev_gray.shape == gray.shape and tr.frame == self._frame - 1:
            kr = klt_pose(self._prev_gray, gray, tr.T, T_pred, K, est.renderer, key, obj)
            timings["klt"] = time.perf_counter() - t0
            if kr is not None and kr["inliers"] >= max(12, cfg.klt_min_inliers * kr["points"]) \
                    and kr["residual_px"] <= cfg.klt_max_residual_px \
                    and _angle_deg(kr["T"], T_pred) <= cfg.klt_max_turn_deg:
                kbox = projected_box(hull, kr["T"], K)
                if kbox is not None and _in_view(kbox, W, H) >= cfg.min_in_view:
                    T, pbox = kr["T"], kbox
                    klt_cov = kr["covariance"]
                    if klt_cov is not None:
                        klt_cov = klt_cov * est.inflation[mode]
        box = np.asarray(det.box_xywh, np.float64).reshape(-1) if det is not None else \
            _clip_box(pbox, W, H)
        if det is not None and box_iou(pbox, box) < cfg.anchor_iou:
            T = anchor_to_box(T, pbox, box, K, obj.center)
            timings["anchored"] = 1.0
        try:
            ev = Evidence(rgb, K, box, depth=depth if mode == "rgbd" else None,
                          box_sigma=est.config.box_sigma)
        except InputError as e:
            return self._lost(tr, f"track_lost: bad_input: box {np.round(box, 1).tolist()}: "
                                  f"{e.detail}", di)
        ev_track = ev.with_weights(TRACK_WEIGHTS)
        cov = None
        agree = None
        if mode == "rgbd":
            r = sparse_icp(T, depth, K, est.renderer, key, obj, cfg.icp_iterations,
                           cfg.icp_points, cfg.icp_crop, est.inflation["rgbd"])
            timings["icp"] = time.perf_counter() - t0
            if r["steps"] == 0:
                return self._lost(tr, f"track_lost: depth: only {r['pairs']} of the model's "
                                      f"visible points have an observed depth near them (NaN "
                                      "or missing depth, or the object moved away)", di)
            T, cov, agree = r["T"], r["covariance"], r["agree"]
            lo, hi = cfg.rgbd_levels
        else:
            lo, hi = cfg.rgb_levels
            if klt_cov is not None and not cfg.rgb_search_after_klt:
                lo, hi, cov = 0, 0, klt_cov      # the frame-to-frame pose as it is
            elif det is None:
                lo, hi = cfg.rgb_levels_undetected
        search_ev = ev if det is not None else ev_track
        if hi > lo:
            sr = evidence_search(T, search_ev, est.renderer, key, obj.center, levels=hi,
                                 first_level=lo)
            if sr.score > sr.score0 or cov is None:
                T = sr.T
                cov = evidence_covariance(sr, obj.diameter, est.inflation[mode])
        if mode == "rgb" and det is not None and cfg.rgb_polish:
            plo, phi = est.config.polish_levels
            if phi > plo:
                sp = evidence_search(T, ev.with_weights(POLISH_WEIGHTS), est.renderer, key,
                                     obj.center, levels=phi, first_level=plo)
                if sp.score > sp.score0:
                    T = sp.T
                    cov = evidence_covariance(sp, obj.diameter, est.inflation[mode])
        s, terms = ev_track.evaluate(est.renderer, key, T[None])
        score = float(s[0])
        timings["track"] = time.perf_counter() - t0

        # ---- lost?
        rbox = projected_box(hull, T, K)
        why = None
        if rbox is None or _in_view(rbox, W, H) < cfg.min_in_view:
            share = 0.0 if rbox is None else _in_view(rbox, W, H)
            why = (f"view: the object left the image (its projection {share:.0%} inside, at "
                   f"least {cfg.min_in_view:.0%})")
        elif det is not None and box_cover(box, rbox) < cfg.min_box_cover:
            why = (f"box: {box_cover(box, rbox):.0%} of the detection box lies inside the "
                   f"tracked pose's projection (at least {cfg.min_box_cover:.0%})")
        elif score < cfg.min_evidence[mode]:
            why = (f"evidence: the image evidence of the tracked pose {score:.3f} < "
                   f"{cfg.min_evidence[mode]:g} (min_evidence {mode})")
        elif agree is not None and agree < cfg.min_depth_share:
            why = (f"depth: {agree:.0%} of the model's visible points agree with the observed "
                   f"depth (at least {cfg.min_depth_share:.0%})")
        P = self._filtered_covariance(tr, cov, stamp, obj.diameter)
        if why is None and P is not None:
            k = 2 if mode == "rgb" else 3      # RGB: the distance along the ray is weak anyway
            std = float(np.sqrt(max(np.linalg.eigvalsh(P[:k, :k]).max(), 0.0)))
            if std > cfg.max_position_std * obj.diameter:
                why = (f"covariance: {'lateral ' if k == 2 else ''}position std "
                       f"{std * 1000:.0f} mm > {cfg.max_position_std:g} x the diameter "
                       f"{obj.diameter * 1000:.0f} mm (the image has not held the pose for "
                       "a while)")
        if why is not None:
            return self._lost(tr, f"track_lost: {why}", di, score)
        h = Hypothesis(T_coarse=T_pred.copy(), T=T.copy(), template_index=-1,
                       template_score=float("nan"), score=score,
                       score_terms=Evidence.as_dict(terms[0]), covariance=cov,
                       score_coarse=float("nan"))
        timings["total"] = time.perf_counter() - t0
        res = PoseResult(obj_id=tr.obj_id, status=STATUS_OK, T_cam_obj=T.copy(),
                         covariance=None if cov is None else cov.copy(), score=score,
                         hypotheses=[h], timings=timings, mode=mode, box_xywh=box)
        res = apply_gate(res, hull_points(obj), K, (W, H), obj.diameter,
                         ev if mode == "rgbd" else None, est.renderer, key)
        if not res.ok:
            return self._lost(tr, f"track_lost: {res.reason}", di, score)
        self._advance(tr, T, P, score, stamp, det is not None)
        return TrackResult(res, TRACKED, tr.track_id, tr.age, detection=di, evidence=score)

    def _filtered_covariance(self, tr: Track, cov, stamp, diameter: float):
        """The track's covariance after this frame: its last one grown by the process noise
        (``position_noise`` x diameter, ``rotation_noise`` rad, per second) and fused with the
        refined pose's covariance ``cov`` (information form: a flat evidence adds little
        information, so the covariance grows over frames where the image does not hold the
        pose). None when neither is known."""
        cfg = self.config
        dt = 1.0 if stamp is None or tr.stamp is None else max(float(stamp) - tr.stamp, 0.0)
        q = np.r_[[(cfg.position_noise * diameter) ** 2] * 3, [cfg.rotation_noise ** 2] * 3]
        P = None if tr.covariance is None else tr.covariance + np.diag(q * dt)
        if cov is None:
            return P
        if P is None:
            return np.array(cov, np.float64)
        eps = 1e-12 * np.eye(6)
        try:
            return np.linalg.inv(np.linalg.inv(P + eps) + np.linalg.inv(cov + eps))
        except np.linalg.LinAlgError:
            return np.array(cov, np.float64)

    def _advance(self, tr: Track, T, cov, score, stamp, detected: bool) -> None:
        """Update a track's state with its new pose."""
        obj = self.estimator.object_model(tr.obj_id)
        dt = 1.0 if stamp is None or tr.stamp is None else max(float(stamp) - tr.stamp, 1e-6)
        a = self.config.velocity_smoothing
        tr.velocity = a * _twist(tr.T, T, obj.center) / dt + (1 - a) * tr.velocity
        tr.T = np.array(T, np.float64)
        tr.covariance = None if cov is None else np.array(cov)
        tr.evidence.append(float(score))
        tr.age += 1
        tr.stamp = None if stamp is None else float(stamp)
        tr.since_detection = 0 if detected else tr.since_detection + 1
        tr.frame = self._frame

    def _estimate(self, rgb, K, depth, det, nh, deadline, should_stop) -> PoseResult:
        res = self.estimator.estimate(rgb, K, [det], depth=depth if self.mode == "rgbd" else None,
                                      mode=self.mode, num_hypotheses=nh, deadline=deadline,
                                      should_stop=should_stop)
        return res[0]

    def _initialise(self, rgb, K, depth, det, di, nh, deadline, should_stop, stamp,
                    lost_reason: str | None) -> TrackResult:
        """The full pipeline on a detection; an ok result starts a track (status new, or
        reinitialised when ``lost_reason`` says why the previous one ended)."""
        res = self._estimate(rgb, K, depth, det, nh, deadline, should_stop)
        if lost_reason is None:         # the object's earlier track ended in an earlier frame
            lost_reason = self._lost_reasons.get(det.obj_id)
        status = REINITIALISED if lost_reason else NEW
        if res.ok:
            self._lost_reasons.pop(det.obj_id, None)
        if not res.ok:
            return TrackResult(res, status, None, 0, reason=lost_reason or "", detection=di)
        tr = Track(track_id=self._next_id, obj_id=det.obj_id, T=np.array(res.T_cam_obj),
                   covariance=None if res.covariance is None else np.array(res.covariance),
                   stamp=None if stamp is None else float(stamp), frame=self._frame)
        self._next_id += 1
        tr.evidence.append(float(res.score))
        self.tracks[det.obj_id] = tr
        return TrackResult(res, status, tr.track_id, 0, reason=lost_reason or "", detection=di,
                           evidence=float("nan"))

    def _estimate_only(self, rgb, K, depth, det, di, nh, deadline, should_stop) -> TrackResult:
        res = self._estimate(rgb, K, depth, det, nh, deadline, should_stop)
        return TrackResult(res, ESTIMATED, None, 0, detection=di)


def with_config(tracker: Tracker, **changes) -> Tracker:
    """``tracker`` with its config fields changed (validated), tracks kept."""
    tracker.config = replace(tracker.config, **changes).validate()
    return tracker
