"""Coarse stage: query crop -> per-template patch matches -> top-N templates -> poses.

RGB: each query patch centre (crop pixels, crop intrinsics ``A K``) and the 3D model point of its
matched template pixel (the template's xyz map) give 2D-3D correspondences -> EPnP + RANSAC.
RGB-D: the query depth at the patch centre lifts the query side to 3D too -> Kabsch inside
MAGSAC++ (3D-3D); if that fails the RGB PnP is used with its translation moved onto the observed
depth.

RGB also takes, from the best-scored templates, the pose of the matcher's own alignment (the
template's view turned in-plane) placed so that the object's projected box fits the detection box
(:func:`similarity_hypotheses`): EPnP on correspondences that are only as good as the nearest
view errs in depth, the box does not (real LM-O dev, every 4th image: among the 5 best-ranked
candidates the best MSSD recall rose from 0.22 to 0.29).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coop_ros.backends.base import NO_MATCH, CoarseMatches, ImageCrop, match_pixels, patch_centers
from coop_ros.errors import EstimationError, InputError
from coop_ros.geometry.camera import backproject_pixels
from coop_ros.geometry.pnp import solve_pnp_ransac
from coop_ros.geometry.rigid import kabsch_magsac
from coop_ros.geometry.se3 import rotation_angle_deg
from coop_ros.errors import Reason

__all__ = ["CoarseHypothesis", "correspondences", "coarse_hypotheses", "patch_depth",
           "observed_points", "depth_hypotheses", "similarity_hypotheses", "fit_box"]


@dataclass
class CoarseHypothesis:
    """A coarse pose: T (4, 4) [m], its template, the template score, correspondence counts."""

    T: np.ndarray
    template_index: int
    template_score: float
    num_correspondences: int
    num_inliers: int


def correspondences(matches: CoarseMatches, bank, t: int, size: int, min_conf: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2D-3D correspondences of template ``t``: query patch centres (M, 2) [crop px], model
    points (M, 3) [m], confidences (M,). Patches whose matched template pixel is off the
    template silhouette are dropped."""
    q = patch_centers(size)
    idx = matches.patch_index[t]
    ok = (idx != NO_MATCH) & (matches.confidence[t] > min_conf)
    uv = match_pixels(idx[ok], matches.offset[t][ok], size)
    r = np.clip(np.rint(uv[:, 1]).astype(int), 0, size - 1)
    c = np.clip(np.rint(uv[:, 0]).astype(int), 0, size - 1)
    on = bank.mask[t][r, c]
    X = bank.xyz[t][r, c].astype(np.float64)
    return q[ok][on], X[on], matches.confidence[t][ok][on]


def patch_depth(depth: np.ndarray, uv: np.ndarray, half: int = 3) -> np.ndarray:
    """Median of the valid depth in a (2 half + 1)^2 window at each pixel uv (M, 2); 0 if none."""
    S0, S1 = depth.shape
    out = np.zeros(len(uv))
    for i, (u, v) in enumerate(np.rint(uv).astype(int)):
        w = depth[max(v - half, 0):v + half + 1, max(u - half, 0):u + half + 1]
        w = w[w > 0]
        if w.size:
            out[i] = np.median(w)
    return out


def _pose_from_template(matches, bank, t, query: ImageCrop, mode: str, diameter: float,
                        reproj_px: float, min_corr: int, seed: int, center_obj: np.ndarray
                        ) -> tuple[np.ndarray, int, int]:
    S = query.size
    q2d, X, cf = correspondences(matches, bank, t, S)
    if len(q2d) < min_corr:
        raise EstimationError(Reason.TOO_FEW_CORRESPONDENCES, f"template {t} has {len(q2d)} "
                              f"matched patches (< {min_corr})")
    hi = cf >= 0.9
    if hi.sum() >= max(min_corr, 12):
        q2d, X, cf = q2d[hi], X[hi], cf[hi]
    if mode == "rgbd":
        z = patch_depth(np.asarray(query.depth, np.float64), q2d)
        ok = z > 0
        if ok.sum() >= min_corr:
            dst = backproject_pixels(query.K, q2d[ok], z[ok])
            try:
                r = kabsch_magsac(X[ok], dst, threshold_m=0.08 * diameter, min_inliers=min_corr,
                                  seed=seed)
                return r.T, int(ok.sum()), r.num_inliers
            except (EstimationError, InputError):
                pass
    # similarity pose (the template's view turned in-plane, at the distance its scale implies):
    # robust when the correspondences are only as good as the nearest template view
    sim = template_similarity(matches, bank, t, S)
    T_sim = None if sim is None else similarity_pose(sim[0], bank, t, query.K, center_obj)
    try:
        r = solve_pnp_ransac(q2d, X, query.K, method="epnp", reproj_px=reproj_px,
                             iterations=300, min_inliers=min(min_corr, 6))
        T, n_inl = r.T, r.num_inliers
        if T_sim is not None:
            # EPnP on approximate correspondences can put the object far off in depth: keep it
            # only when it agrees with the similarity pose
            dz = abs(T[2, 3] - T_sim[2, 3]) / T_sim[2, 3]
            if dz > 0.15 or rotation_angle_deg(T[:3, :3], T_sim[:3, :3]) > 30:
                T = T_sim
        inl_mask = r.inliers
    except (InputError, EstimationError) as e:
        if T_sim is None:
            if isinstance(e, InputError):
                raise EstimationError(Reason.TOO_FEW_CORRESPONDENCES, str(e)) from None
            raise EstimationError(Reason.PNP_FAILED, f"template {t}: {e}") from None
        T, n_inl, inl_mask = T_sim, sim[1], np.ones(len(q2d), bool)
    if mode == "rgbd" and query.depth is not None:
        # put the pose on the observed depth: scale its translation along the viewing ray
        z = patch_depth(np.asarray(query.depth, np.float64), q2d[inl_mask])
        Xc = X[inl_mask] @ T[:3, :3].T + T[:3, 3]
        ok = z > 0
        if ok.sum() >= 3:
            s = float(np.median(z[ok]) / np.median(Xc[ok, 2]))
            if 0.3 < s < 3.0:
                T = T.copy()
                T[:3, 3] *= s
    return T, len(q2d), n_inl


def similarity_pose(M: np.ndarray, bank, t: int, K_query: np.ndarray, center_obj: np.ndarray
                    ) -> np.ndarray:
    """Pose implied by a 2D similarity ``q = M [p, 1]`` (template t pixel -> query crop pixel).

    The template camera looks at the object centre from distance d; a similarity of scale s and
    in-plane angle a moves the centre's image to ``q_c = M c_t`` and means a distance
    ``d f_q / (f_t s)``; the rotation is the template's, turned by a about the optical axis and then
    by the rotation that takes the optical axis onto the ray through ``q_c``.
    """
    Kt = bank.K
    Tt = bank.poses[t]
    d = float(np.linalg.norm(Tt[:3, :3] @ center_obj + Tt[:3, 3]))
    s = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    a = float(np.arctan2(M[1, 0], M[0, 0]))
    ct = Tt[:3, :3] @ center_obj + Tt[:3, 3]
    pc = Kt @ ct
    qc = M[:, :2] @ (pc[:2] / pc[2]) + M[:, 2]
    fq = 0.5 * (K_query[0, 0] + K_query[1, 1])
    ft = 0.5 * (Kt[0, 0] + Kt[1, 1])
    dist = d * fq / (ft * s)
    r = np.linalg.solve(K_query, np.array([qc[0], qc[1], 1.0]))
    r /= np.linalg.norm(r)
    Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    R = _ray_rotation(r) @ Rz @ Tt[:3, :3]
    C = r * dist
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = C - R @ center_obj
    return T


def template_similarity(matches: CoarseMatches, bank, t: int, size: int
                        ) -> tuple[np.ndarray, int] | None:
    """(2, 3) similarity template t -> query fitted with RANSAC to the patch matches, and its
    inlier count; None when it cannot be fitted."""
    import cv2
    q = patch_centers(size)
    idx = matches.patch_index[t]
    ok = idx != NO_MATCH
    if ok.sum() < 3:
        return None
    uv = match_pixels(idx[ok], matches.offset[t][ok], size)
    M, inl = cv2.estimateAffinePartial2D(uv.astype(np.float32), q[ok].astype(np.float32),
                                         method=cv2.RANSAC, ransacReprojThreshold=0.04 * size,
                                         maxIters=500, confidence=0.99)
    if M is None or inl is None or not np.all(np.isfinite(M)) or abs(np.linalg.det(M[:, :2])) < 1e-6:
        return None
    return M.astype(np.float64), int(inl.sum())


def coarse_hypotheses(matches: CoarseMatches, bank, query: ImageCrop, mode: str, n: int,
                      diameter: float, reproj_px: float = 4.0, min_correspondences: int = 8,
                      seed: int = 0, max_tries: int | None = None,
                      center_obj=(0.0, 0.0, 0.0)) -> tuple[list[CoarseHypothesis], list[str]]:
    """Top-``n`` templates by score -> up to ``n`` distinct coarse poses (best template first).

    Templates are tried in score order (at most ``max_tries``, default 2 n + 2); a pose within
    10 deg and 5 % of the diameter of an earlier one is skipped as a duplicate. Deterministic:
    template t's MAGSAC++ (RGB-D) is seeded with ``seed + t``; OpenCV's RANSAC (EPnP,
    ``estimateAffinePartial2D``) seeds its own generator with a constant on every call.

    Returns:
        (hypotheses, the errors of the templates that gave no pose).

    Raises:
        EstimationError when no template gives a pose, its ``reason``
        ``Reason.NO_TEMPLATE_MATCHED`` (no template has a positive score / matched patches), else
        the reason of the best-scored template.
    """
    scores = np.asarray(matches.template_scores, dtype=np.float64)
    n_matched = (matches.patch_index != NO_MATCH).sum(1)
    usable = (scores > 0) & (n_matched > 0)
    if not usable.any():
        raise EstimationError(Reason.NO_TEMPLATE_MATCHED, "no template has a matched patch "
                              "or a positive score")
    order = [int(t) for t in np.argsort(-scores) if usable[t]]
    center_obj = np.asarray(center_obj, dtype=np.float64)
    max_tries = 2 * n + 2 if max_tries is None else max_tries
    hyps: list[CoarseHypothesis] = []
    fails: list[EstimationError] = []
    for t in order[:max_tries]:
        if len(hyps) >= n:
            break
        try:
            T, nc, ni = _pose_from_template(matches, bank, t, query, mode, diameter, reproj_px,
                                            min_correspondences, seed + t, center_obj)
        except EstimationError as e:
            fails.append(e)
            continue
        if T[2, 3] <= 0:
            fails.append(EstimationError(Reason.PNP_FAILED,
                                         f"template {t} puts the object behind the camera"))
            continue
        if _duplicate(T[:3, :3], T[:3, 3], hyps, diameter):
            continue
        hyps.append(CoarseHypothesis(T=T, template_index=t, template_score=float(scores[t]),
                                     num_correspondences=nc, num_inliers=ni))
    if not hyps:
        first = fails[0] if fails else EstimationError(Reason.NO_TEMPLATE_MATCHED,
                                                       "no template gave a pose")
        raise EstimationError(first.reason, first.detail)
    return hyps, fails


def _projected_box(T: np.ndarray, points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(u0, v0, u1, v1) [px]: the pixel extent (edges, pixel centres at integers) of object points
    (N, 3) [m] projected at pose T (4, 4) with K (3, 3)."""
    X = points @ T[:3, :3].T + T[:3, 3]
    z = np.maximum(X[:, 2], 1e-9)
    u = K[0, 0] * X[:, 0] / z + K[0, 2]
    v = K[1, 1] * X[:, 1] / z + K[1, 2]
    return np.array([u.min() - 0.5, v.min() - 0.5, u.max() + 0.5, v.max() + 0.5])


def fit_box(T: np.ndarray, box_xywh, points: np.ndarray, K: np.ndarray, center_obj: np.ndarray,
            steps: int = 3) -> np.ndarray:
    """Pose T (4, 4) [m] moved, its rotation kept, so that the projection of ``points`` (N, 3)
    [m] (the object's hull) spans the detection box (x, y, w, h) [px]: its centre moved along the
    viewing ray by the ratio of the two boxes' sizes (geometric mean of width and height), then
    across it by the offset of their centres, ``steps`` times. Returns a new (4, 4)."""
    x, y, w, h = (float(v) for v in box_xywh)
    b0 = np.array([x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5])
    s0 = np.sqrt((b0[2] - b0[0]) * (b0[3] - b0[1]))
    out = np.array(T, dtype=np.float64)
    R = out[:3, :3]
    for _ in range(steps):
        b = _projected_box(out, points, K)
        s = np.sqrt(max((b[2] - b[0]) * (b[3] - b[1]), 1e-12))
        c = (R @ center_obj + out[:3, 3]) * (s / s0)
        out[:3, 3] = c - R @ center_obj
        b = _projected_box(out, points, K)
        out[0, 3] += 0.5 * (b0[0] + b0[2] - b[0] - b[2]) * c[2] / K[0, 0]
        out[1, 3] += 0.5 * (b0[1] + b0[3] - b[1] - b[3]) * c[2] / K[1, 1]
    return out


def similarity_hypotheses(matches: CoarseMatches, bank, query: ImageCrop, box_xywh, K: np.ndarray,
                          points: np.ndarray, center_obj: np.ndarray, n_templates: int = 24
                          ) -> list[CoarseHypothesis]:
    """For each of the ``n_templates`` best-scored templates: the pose of the matcher's alignment
    (``matches.info["similarity"]``: template -> query crop; :func:`similarity_pose`) placed by
    :func:`fit_box` on the detection box ``box_xywh`` of the image with intrinsics ``K``
    (``points``: the object's hull (N, 3) [m]). Templates without an alignment give none."""
    sims = (matches.info or {}).get("similarity")
    if sims is None:
        return []
    scores = np.asarray(matches.template_scores, dtype=np.float64)
    out = []
    for t in np.argsort(-scores, kind="stable")[:n_templates]:
        M = np.asarray(sims[t], dtype=np.float64)
        if not (np.all(np.isfinite(M)) and abs(np.linalg.det(M[:, :2])) > 1e-9) or scores[t] <= 0:
            continue
        T = fit_box(similarity_pose(M, bank, int(t), query.K, center_obj), box_xywh, points, K,
                    center_obj)
        if np.all(np.isfinite(T)) and T[2, 3] > 0:
            out.append(CoarseHypothesis(T=T, template_index=int(t),
                                        template_score=float(scores[t]), num_correspondences=0,
                                        num_inliers=0))
    return out


def _duplicate(R: np.ndarray, t: np.ndarray, hyps: list, diameter: float) -> bool:
    """True when the pose (R (3, 3), t (3,)) lies within 10 deg and 5 % of the diameter of one
    of ``hyps`` (coarse hypotheses kept so far)."""
    return any(rotation_angle_deg(R, h.T[:3, :3]) < 10.0
               and np.linalg.norm(t - h.T[:3, 3]) < 0.05 * diameter for h in hyps)


def _ray_rotation(r: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking the optical axis (0, 0, 1) onto the unit ray ``r`` (3,)."""
    from coop_ros.geometry.se3 import rotvec_to_matrix
    z = np.array([0, 0, 1.0])
    v = np.cross(z, r)
    sv, cv = np.linalg.norm(v), float(z @ r)
    return np.eye(3) if sv < 1e-12 else rotvec_to_matrix(v / sv * np.arctan2(sv, cv))


def observed_points(depth: np.ndarray, K: np.ndarray, box, diameter: float,
                    mask: np.ndarray | None = None, max_points: int = 1500,
                    seed: int = 0) -> np.ndarray:
    """Camera-frame points (M, 3) [m] of the object's observed surface: the depth pixels in the
    detection box (and mask) inside the depth range one diameter deep that holds the most
    pixels, each counted with a Gaussian weight of its distance from the box centre (sigma a
    quarter of the box side): the object fills the middle of its box, the background and a
    table the rim. At most ``max_points`` (a seeded subset)."""
    H, W = depth.shape
    x, y, w, h = np.asarray(box, np.float64)
    x0, y0 = int(max(np.floor(x), 0)), int(max(np.floor(y), 0))
    x1, y1 = int(min(np.ceil(x + w), W)), int(min(np.ceil(y + h), H))
    z = np.asarray(depth[y0:y1, x0:x1], np.float64)
    ok = np.isfinite(z) & (z > 0)
    if mask is not None:
        ok &= np.asarray(mask[y0:y1, x0:x1], bool)
    rows, cols = np.nonzero(ok)
    if len(rows) < 3:
        return np.zeros((0, 3))
    zs = z[rows, cols]
    wgt = np.exp(-0.5 * (((cols + x0 - (x + 0.5 * w)) / (0.25 * w)) ** 2
                         + ((rows + y0 - (y + 0.5 * h)) / (0.25 * h)) ** 2))
    order = np.argsort(zs, kind="stable")
    cw = np.r_[0.0, np.cumsum(wgt[order])]
    end = np.searchsorted(zs[order], zs[order] + diameter, side="right")
    i = int(np.argmax(cw[end] - cw[:-1]))
    keep = order[i:end[i]]
    if len(keep) > max_points:
        keep = np.random.default_rng(seed).choice(keep, max_points, replace=False)
    uv = np.stack([cols[keep] + x0, rows[keep] + y0], 1).astype(np.float64)
    return backproject_pixels(K, uv, zs[keep])


def depth_hypotheses(bank, points: np.ndarray, diameter: float, n: int, in_plane: int = 12,
                     points_per_view: int = 150, icp_steps: int = 10,
                     seed: int = 0) -> list[CoarseHypothesis]:
    """Coarse poses from the observed depth geometry alone, next to the template matches (a
    detection whose patches match the wrong templates -- occlusion, a photo unlike the rendering
    -- still has its shape in the depth).

    Every template view's visible surface (``bank.xyz``, ``points_per_view`` points), turned
    in-plane in ``in_plane`` steps and towards the viewing ray of the observed points, is put
    with its centroid on theirs and scored by the share of its points within 0.1 diameter of an
    observed point; the best 4 n are refined by point-to-point ICP (``icp_steps`` trimmed
    Kabsch steps; scipy's cKDTree for the nearest points, the batched Kabsch of
    :mod:`coop_ros.geometry.rigid`), re-scored both ways (times the share of the observed points
    within 0.1 diameter of its points), and the best ``n`` that differ by more than 10 deg or 5 %
    of the diameter are returned, ``template_index`` -1 and ``template_score`` their score.
    ``points``: (M, 3) from :func:`observed_points`. Their effect on accuracy:
    ``bench/eval_realistic.py`` and ``bench/eval_real.py`` (RGB-D rows; figures in the README).

    Written here rather than taken from open3d (FPFH + RANSAC): open3d is not a runtime
    dependency (~300 MB), and the template views already give the visible surfaces to align.
    """
    from scipy.spatial import cKDTree

    from coop_ros.geometry.rigid import _kabsch_batch
    if len(points) < 12 or n <= 0:
        return []
    rng = np.random.default_rng(seed)
    views = []
    for t in range(len(bank)):
        P = bank.xyz[t][bank.mask[t]].astype(np.float64)
        if len(P) < 12:
            continue
        views.append((t, P[rng.choice(len(P), min(points_per_view, len(P)), replace=False)]))
    if not views:
        return []
    m = min(len(P) for _, P in views)
    P = np.stack([P[:m] for _, P in views])                            # (V, m, 3) object frame
    c = points.mean(0)
    Rc = _ray_rotation(c / np.linalg.norm(c))
    a = 2 * np.pi * np.arange(in_plane) / in_plane
    Rz = np.zeros((in_plane, 3, 3))
    Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = \
        np.cos(a), -np.sin(a), np.sin(a), np.cos(a), 1.0
    Rt = np.stack([bank.poses[t][:3, :3] for t, _ in views])         # (V, 3, 3)
    R = (Rc[None, None] @ Rz[None] @ Rt[:, None]).reshape(-1, 3, 3)  # (V * in_plane, 3, 3)
    src = np.repeat(P, in_plane, axis=0)                               # (B, m, 3)
    t = c[None] - np.einsum("bij,bj->bi", R, src.mean(1))
    tree = cKDTree(points)
    tau = 0.1 * diameter

    def share(R, t, src):
        d, _ = tree.query(np.einsum("bij,bmj->bmi", R, src) + t[:, None], distance_upper_bound=tau)
        return np.isfinite(d).mean(1)

    s = share(R, t, src)
    top = np.argsort(-s, kind="stable")[:4 * n]
    R, t, src = R[top], t[top], src[top]
    for _ in range(icp_steps):                       # trimmed point-to-point ICP, batched
        X = np.einsum("bij,bmj->bmi", R, src) + t[:, None]
        d, j = tree.query(X)
        gate = np.maximum(np.quantile(d, 0.8, axis=1, keepdims=True), 0.005 * diameter)
        dR, dt, _ = _kabsch_batch(X, points[j], (d <= gate).astype(np.float64))
        R, t = dR @ R, np.einsum("bij,bj->bi", dR, t) + dt
    # re-scored both ways: the share of its points near observed ones times the share of the
    # observed points near its points (a view that covers only part of the object scores less)
    X = np.einsum("bij,bmj->bmi", R, src) + t[:, None]
    s = share(R, t, src) * np.array([np.isfinite(cKDTree(x).query(
        points, distance_upper_bound=tau)[0]).mean() for x in X])
    out: list[CoarseHypothesis] = []
    for b in np.argsort(-s, kind="stable"):
        if len(out) >= n:
            break
        if _duplicate(R[b], t[b], out, diameter):
            continue
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R[b], t[b]
        out.append(CoarseHypothesis(T=T, template_index=-1, template_score=float(s[b]),
                                    num_correspondences=m, num_inliers=int(round(s[b] * m))))
    return out
