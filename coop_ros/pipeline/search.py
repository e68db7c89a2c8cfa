"""Evidence-guided local search of a pose: the refinement step that is judged only on the real
image.

A pattern (compass) search over the six pose parameters, each move rendered and scored by
:class:`coop_ros.evidence.Evidence`; a move is taken only when it raises the evidence, so the
result never scores lower than the start. Moves, about the object's bounding-box centre ``c``
(camera frame):

* rotations by +-a about the camera x, y, z axes (the centre stays where it is);
* shifts of +-p crop pixels along the image axes at the centre's depth;
* the centre moved along its viewing ray by +-s (relative): the weak direction of RGB gets its
  own move, judged by the silhouette's size against the region and contour evidence.

Steps start at (a, p, s) = (8 deg, 4 crop px, 4 %) -- the reach of a coarse pose from the
nearest of 42 templates -- and halve at each level when no move improves. After each set of
moves the combined move (the improving moves of all axes added) is tried as well.

Written here rather than taken from a library: the objective is a rendering (no gradients), the
moves must be batched into one render call, and SciPy's derivative-free optimisers (Nelder-Mead,
Powell) cannot batch or stop on a per-level improvement threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coop_ros.geometry.se3 import rotvec_to_matrix

__all__ = ["SearchResult", "evidence_search", "pose_moves"]


@dataclass
class SearchResult:
    """T (4, 4) best pose [m]; score and terms (len(TERMS),) of its evidence; score0: evidence of
    the start; evaluations: poses rendered; curvature: (6,) second differences of the evidence
    along the six moves of the last level (<= 0 at a maximum; order tx, ty, tz, rx, ry, rz);
    steps: (6,) the move sizes of the last level [m, m, m, rad, rad, rad]."""

    T: np.ndarray
    score: float
    terms: np.ndarray
    score0: float
    evaluations: int
    curvature: np.ndarray
    steps: np.ndarray


def pose_moves(T: np.ndarray, center_obj: np.ndarray, f_px: float, rot_rad: float,
               shift_px: float, depth_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """The 12 moves of :func:`evidence_search` from pose T: ((12, 4, 4) poses, (6,) move sizes in
    camera-frame units [m, m, m, rad, rad, rad]); moves 2k and 2k+1 are -/+ along parameter k
    (tx, ty, tz, rx, ry, rz). ``f_px``: focal length of the crop the shifts are measured in."""
    R, t = T[:3, :3], T[:3, 3]
    c = R @ center_obj + t
    dxy = shift_px * c[2] / f_px
    dz = depth_frac * float(np.linalg.norm(c))
    out = np.repeat(T[None], 12, axis=0)
    ray = c / np.linalg.norm(c)
    for k in range(2):
        out[2 * k, k, 3] -= dxy
        out[2 * k + 1, k, 3] += dxy
    out[4, :3, 3] = t - dz * ray
    out[5, :3, 3] = t + dz * ray
    for k in range(3):
        for j, s in enumerate((-1.0, 1.0)):
            w = np.zeros(3)
            w[k] = s * rot_rad
            Rn = rotvec_to_matrix(w) @ R
            out[6 + 2 * k + j, :3, :3] = Rn
            out[6 + 2 * k + j, :3, 3] = c - Rn @ center_obj
    return out, np.array([dxy, dxy, dz, rot_rad, rot_rad, rot_rad])


def _combine(T: np.ndarray, center_obj: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Pose T moved by (6,) deltas (tx, ty, along-ray, rx, ry, rz) at once."""
    R, t = T[:3, :3], T[:3, 3]
    c = R @ center_obj + t
    Rn = rotvec_to_matrix(deltas[3:]) @ R
    cn = c + np.array([deltas[0], deltas[1], 0.0]) + deltas[2] * c / np.linalg.norm(c)
    out = T.copy()
    out[:3, :3] = Rn
    out[:3, 3] = cn - Rn @ center_obj
    return out


def evidence_search(T0: np.ndarray, evidence, renderer, key: str, center_obj,
                    levels: int = 4, max_steps: int = 3, rot_deg: float = 8.0,
                    shift_px: float = 4.0, depth_frac: float = 0.04, min_gain: float = 1e-4,
                    start: tuple[float, np.ndarray] | None = None,
                    first_level: int = 0) -> SearchResult:
    """Maximise the evidence of the pose by pattern search (module docstring).

    Args:
        T0: (4, 4) start pose [m].
        evidence: :class:`coop_ros.evidence.Evidence` of the detection.
        renderer, key: renderer and the mesh key to render (the evidence proxy).
        center_obj: (3,) object-frame centre the rotations turn about [m].
        levels: step halvings; max_steps: moves per level at most; first_level: level to start
            at (a search continued after ``first_level`` levels).
        rot_deg, shift_px, depth_frac: first-level step sizes (degrees, evidence-crop pixels,
            fraction of the centre's distance).
        min_gain: smallest evidence increase that counts as an improvement.
        start: (score, terms) of T0 when already known (saves one rendering).
    Returns:
        :class:`SearchResult`.
    """
    center_obj = np.asarray(center_obj, np.float64)
    T = np.array(T0, dtype=np.float64)
    f = 0.5 * (evidence.K[0, 0] + evidence.K[1, 1])
    n_eval = 0
    if start is None:
        s, t = evidence.evaluate(renderer, key, T[None])
        score, terms = float(s[0]), t[0]
        n_eval += 1
    else:
        score, terms = float(start[0]), np.asarray(start[1])
    score0 = score
    curv = np.zeros(6)
    steps = np.zeros(6)
    for lv in range(first_level, max(levels, 0)):
        scale = 0.5 ** lv
        for _ in range(max(max_steps, 1)):
            cands, steps = pose_moves(T, center_obj, f, np.radians(rot_deg) * scale,
                                      shift_px * scale, depth_frac * scale)
            sc, tm = evidence.evaluate(renderer, key, cands)
            n_eval += len(cands)
            pair = sc.reshape(6, 2)
            curv = (pair[:, 0] + pair[:, 1] - 2.0 * score)
            gain = pair - score
            best = int(np.argmax(sc))
            # combined move: every parameter's better direction, where it improves
            sign = np.where(gain[:, 1] >= gain[:, 0], 1.0, -1.0)
            use = gain.max(1) > min_gain
            moved = False
            if use.sum() >= 2:
                Tc = _combine(T, center_obj, sign * steps * use)
                s2, t2 = evidence.evaluate(renderer, key, Tc[None])
                n_eval += 1
                if s2[0] > max(sc[best], score) + min_gain:
                    T, score, terms, moved = Tc, float(s2[0]), t2[0], True
            if not moved and sc[best] > score + min_gain:
                T, score, terms, moved = cands[best], float(sc[best]), tm[best], True
            if not moved:
                break
    return SearchResult(T=T, score=score, terms=terms, score0=score0, evaluations=n_eval,
                        curvature=curv, steps=steps)
