"""Weight-free hypothesis scorer: render-and-compare agreement in [0, 1].

Terms (each in [0, 1]), computed on the query crop and the rendering at the hypothesis (same
crop, same intrinsics):

* ``edge``: oriented chamfer score of the rendering's edges (silhouette + interior Canny edges)
  against the query's edges (truncation 4 px at 224 px).
* ``ncc``: normalised cross-correlation of the image gradients (locally contrast-normalised grey)
  inside the rendered silhouette, clipped at 0.
* ``region``: IoU of the rendered silhouette with the query mask when one was given, else the IoU
  of the rendered silhouette's box with the detection box.
* ``depth`` (RGB-D): among rendered pixels with an observed depth, the fraction that agree
  (``|z_obs - z_render| < tau``) over agree + contradict (``z_obs > z_render + tau``: the
  camera sees through where the object should be); nearer observations count as occlusion and are
  neutral; times the fraction of rendered pixels that are not occluded (capped at 1 above 50 %).

score = 0.35 edge + 0.35 ncc + 0.3 region (RGB); 0.5 depth + 0.2 edge + 0.15 ncc + 0.15 region
(RGB-D).
"""
from __future__ import annotations

import cv2
import numpy as np

from coop_ros.backends.base import HypothesisScorer, ImageCrop
from coop_ros.backends.weightfree.features import edge_map, edge_points, normalized_gray

__all__ = ["RenderCompareScorer", "depth_agreement"]


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


def depth_agreement(z_obs: np.ndarray, z_ren: np.ndarray, mask: np.ndarray, tau: float
                    ) -> tuple[float, dict]:
    """Depth term of the score (see the module docstring); returns (score, counts)."""
    m = mask & (z_ren > 0)
    n = int(m.sum())
    if n == 0:
        return 0.0, {"n": 0}
    zo, zr = z_obs[m], z_ren[m]
    valid = zo > 0
    d = zo - zr
    agree = valid & (np.abs(d) < tau)
    behind = valid & (d >= tau)
    occl = valid & (d <= -tau)
    na, nb, no = int(agree.sum()), int(behind.sum()), int(occl.sum())
    ratio = na / max(na + nb, 1)
    visible = 1.0 - no / max(int(valid.sum()), 1)
    s = ratio * min(1.0, visible / 0.5)
    return float(s), {"agree": na, "behind": nb, "occluded": no, "n": n}


class RenderCompareScorer(HypothesisScorer):
    """Classical implementation of :class:`coop_ros.backends.base.HypothesisScorer`.

    Args:
        depth_tau_m: agreement threshold of the depth term [m] (None: 2 % of the rendered depth,
            at least 5 mm).
    """

    def __init__(self, depth_tau_m: float | None = None):
        self.depth_tau_m = depth_tau_m

    def score(self, query: ImageCrop, render: ImageCrop) -> tuple[float, dict]:
        S = render.size
        rm = render.mask.astype(bool)
        if not rm.any():
            return 0.0, {"empty_render": 1.0}
        tau = 4.0 * S / 224.0
        em = edge_map(query.rgb, query.mask)
        pts, th, _ = edge_points(render.rgb, rm, max_points=400)
        if len(pts):
            u, v = pts[:, 0].astype(int), pts[:, 1].astype(int)
            d = em.dist[v, u]
            edge = float(np.mean(np.clip(1 - d / tau, 0, 1)
                                 * np.abs(np.cos(th - em.nearest_theta[v, u]))))
        else:
            edge = 0.0
        qa = normalized_gray(query.rgb).astype(np.float32)
        ra = normalized_gray(render.rgb).astype(np.float32)
        md = cv2.dilate(rm.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        gq = np.stack([cv2.Sobel(qa, cv2.CV_32F, 1, 0), cv2.Sobel(qa, cv2.CV_32F, 0, 1)], -1)[md]
        gr = np.stack([cv2.Sobel(ra, cv2.CV_32F, 1, 0), cv2.Sobel(ra, cv2.CV_32F, 0, 1)], -1)[md]
        den = np.sqrt((gq ** 2).sum() * (gr ** 2).sum())
        ncc = float(max(0.0, (gq * gr).sum() / den)) if den > 0 else 0.0
        if query.mask is not None:
            qm = query.mask.astype(bool)
            region = float((qm & rm).sum() / max((qm | rm).sum(), 1))
        elif query.box is not None:
            rows, cols = np.nonzero(rm)
            rb = (cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5)
            region = _box_iou(rb, np.asarray(query.box, float))
        else:
            region = 0.0
        terms = {"edge": edge, "ncc": ncc, "region": region}
        if query.depth is not None and render.depth is not None:
            zr = np.asarray(render.depth, np.float64)
            t = self.depth_tau_m
            if t is None:
                t = max(0.02 * float(np.median(zr[rm])), 0.005)
            dep, counts = depth_agreement(np.asarray(query.depth, np.float64), zr, rm, t)
            terms["depth"] = dep
            s = 0.5 * dep + 0.2 * edge + 0.15 * ncc + 0.15 * region
        else:
            s = 0.35 * edge + 0.35 * ncc + 0.3 * region
        return float(s), terms
