"""SIFT features of the weight-free slots (the generic image tools live in
:mod:`coop_ros.imaging`, re-exported here)."""
from __future__ import annotations

import cv2
import numpy as np

from coop_ros.imaging import EdgeMap, edge_map, edge_points, gray, normalized_gray  # noqa: F401

__all__ = ["gray", "normalized_gray", "EdgeMap", "edge_map", "edge_points", "sift_features",
           "SIFT_MAX"]

SIFT_MAX = 600

_SIFT = None


def sift_features(rgb: np.ndarray, mask: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """SIFT keypoints of an RGB crop inside ``mask``: ((M, 2) float64 (u, v), (M, 128) float32
    descriptors or None, (M, 2) float64 (scale [px], angle [rad]))."""
    global _SIFT
    if _SIFT is None:
        _SIFT = cv2.SIFT_create(nfeatures=SIFT_MAX, contrastThreshold=0.02)
    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    m = None if mask is None else (mask.astype(np.uint8) * 255)
    kps, desc = _SIFT.detectAndCompute(g, m)
    if not kps or desc is None:
        return np.zeros((0, 2)), None, np.zeros((0, 2))
    pts = np.array([k.pt for k in kps], dtype=np.float64)
    sa = np.array([(k.size, np.radians(k.angle)) for k in kps], dtype=np.float64)
    return pts, desc.astype(np.float32), sa
