"""Image tools shared by the pipeline and the backends (no backend imports them from another):
grey and locally normalised grey images, oriented edges with their distance transform, colour
labels, entropies, signed distances of silhouettes.

All functions take (S, S, 3) uint8 RGB crops (and optional (S, S) bool masks) and return numpy
arrays; pixel coordinates are (u, v) with pixel centres at integers.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["gray", "normalized_gray", "EdgeMap", "edge_map", "edge_points", "color_labels",
           "entropy_bits"]


def gray(rgb: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 RGB -> (S, S) float32 grey in [0, 1]."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def normalized_gray(rgb: np.ndarray, sigma: float = 6.0) -> np.ndarray:
    """Local contrast normalisation (subtract the local mean, divide by the local std over a
    Gaussian window of ``sigma`` px), mapped to (S, S) uint8 around 128. Makes a shaded rendering
    and a real image comparable for brightness-constancy flow."""
    g = gray(rgb)
    mu = cv2.GaussianBlur(g, (0, 0), sigma)
    var = cv2.GaussianBlur(g * g, (0, 0), sigma) - mu * mu
    n = (g - mu) / np.sqrt(np.maximum(var, 0.0) + 0.03 ** 2)
    return np.clip(128.0 + 40.0 * n, 0, 255).astype(np.uint8)


@dataclass
class EdgeMap:
    """Edges of an image: distance transform and orientation of the nearest edge pixel.

    dist: (S, S) float32 distance to the nearest edge pixel [px].
    nearest_theta: (S, S) float32 gradient orientation (rad) of that nearest edge pixel.
    edges: (S, S) bool edge pixels.
    """

    dist: np.ndarray
    nearest_theta: np.ndarray
    edges: np.ndarray


def _edges(rgb: np.ndarray, mask: np.ndarray | None, low: float, high: float
           ) -> tuple[np.ndarray, np.ndarray]:
    g = cv2.GaussianBlur(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
    e = cv2.Canny(g, low, high, L2gradient=True) > 0
    gx = cv2.Sobel(g.astype(np.float32), cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g.astype(np.float32), cv2.CV_32F, 0, 1, ksize=3)
    theta = np.arctan2(gy, gx)
    if mask is not None:
        m = mask.astype(np.uint8)
        contour = cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        inner = cv2.erode(m, np.ones((3, 3), np.uint8)) > 0
        e = (e & inner) | (contour & (m > 0))
        # silhouette orientation from the smoothed mask (reliable on any background)
        mf = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 1.5)
        mx = cv2.Sobel(mf, cv2.CV_32F, 1, 0, ksize=3)
        my = cv2.Sobel(mf, cv2.CV_32F, 0, 1, ksize=3)
        theta = np.where(contour & (m > 0), np.arctan2(my, mx), theta)
    return e, theta.astype(np.float32)


def edge_map(rgb: np.ndarray, mask: np.ndarray | None = None, low: float = 40,
             high: float = 100) -> EdgeMap:
    """Canny edges of an image (restricted to ``mask`` + its contour when given), their distance
    transform and the orientation of the nearest edge pixel at every pixel."""
    e, theta = _edges(rgb, mask, low, high)
    S0, S1 = e.shape
    if not e.any():
        return EdgeMap(np.full(e.shape, 1e3, np.float32), np.zeros(e.shape, np.float32), e)
    dist, labels = cv2.distanceTransformWithLabels((~e).astype(np.uint8), cv2.DIST_L2, 3,
                                                   labelType=cv2.DIST_LABEL_PIXEL)
    # label l -> l-th zero pixel of the input in row-major order
    rows, cols = np.nonzero(e)
    lut = np.zeros(len(rows) + 1, np.float32)
    lut[1:] = theta[rows, cols]
    return EdgeMap(dist.astype(np.float32), lut[labels], e)


def edge_points(rgb: np.ndarray, mask: np.ndarray | None, max_points: int = 400,
                low: float = 40, high: float = 100, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edge pixels of an image as points: ((M, 2) float64 (u, v), (M,) float32 orientation [rad],
    (M,) bool is-silhouette). At most ``max_points``, subsampled deterministically; silhouette
    points (the mask contour) are always included first when a mask is given."""
    e, theta = _edges(rgb, mask, low, high)
    rows, cols = np.nonzero(e)
    sil = np.zeros(len(rows), bool)
    if mask is not None:
        m = mask.astype(np.uint8)
        contour = cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        sil = contour[rows, cols]
    if len(rows) > max_points:
        rng = np.random.default_rng(seed)
        idx_s = np.flatnonzero(sil)
        idx_i = np.flatnonzero(~sil)
        ns = min(len(idx_s), max_points // 2)
        ni = min(len(idx_i), max_points - ns)
        ns = min(len(idx_s), max_points - ni)
        keep = np.concatenate([rng.choice(idx_s, ns, replace=False) if ns else idx_s[:0],
                               rng.choice(idx_i, ni, replace=False) if ni else idx_i[:0]])
        rows, cols, sil = rows[keep], cols[keep], sil[keep]
    pts = np.stack([cols, rows], axis=1).astype(np.float64)
    return pts, theta[rows, cols], sil


def color_labels(rgb: np.ndarray, bins: int = 8) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) int64 label of its cell in a ``bins``^3 RGB grid."""
    q = (np.asarray(rgb).astype(np.int64) * bins) // 256
    return (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]


def entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Shannon entropy [bits] of histograms: (..., K) counts (need not be normalised) -> (...)."""
    c = np.asarray(counts, dtype=np.float64)
    p = c / np.maximum(c.sum(-1, keepdims=True), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(-1)
