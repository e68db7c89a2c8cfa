"""Image evidence of a pose: how well the object rendered at a pose explains the real image (and
depth) of one detection. Backend-independent; the coarse stage ranks candidates by it, refinement
accepts a step only when it raises it, and the weight-free selection scores hypotheses with it.

The evidence is computed in one fixed crop per detection (:class:`Evidence`): the detection box
plus a margin of ``margin`` x its long side (default 1.0: the box fills half the crop side, so the
crop holds as much background as object), resampled to ``size`` x ``size`` (default 128: real
detections are 30-200 px tall, so this is about the image's own resolution). Every pose is
rendered into that crop, so scores of different poses are comparable.

Terms, each computed from the rendering (silhouette, shaded vertex colours, depth) and the real
crop; the shaded rendering's appearance is never trusted beyond what survives a change of light:

* ``region``: mutual information [bits] between "inside the rendered silhouette" and the
  photo's colour (8^3 RGB cells) over the crop -- the region statistics of region-based trackers
  (RBOT, SRT3D): the right silhouette splits the crop into two parts whose colours differ most.
  Needs no appearance model of the object (works on low-texture objects and under any light).
* ``contour``: oriented chamfer agreement of the rendered silhouette's contour with the photo's
  Canny edges, ``mean (1 - min(d, tau) / tau) |cos(angle difference)|`` (tau 3 px at 128).
* ``gradient``: agreement of the image-gradient orientations of the shaded rendering and the
  photo inside the silhouette (2 px in from its contour), sign-free (light may invert a step)
  and weighted by the weaker of the two gradient magnitudes.
* ``chroma``: agreement of the chromaticity (r, g) of the rendering's vertex colours with the
  photo inside the silhouette, ``mean exp(-|dc|^2 / (2 0.03^2))`` (brightness-free).
* ``ncc``: local normalised cross-correlation (7 x 7) of the grey levels inside the silhouette.
* ``box``: IoU of the silhouette's bounding box with the detection box (a pose whose projection
  reaches far beyond the detected object, or covers a fraction of it, explains it badly).
* ``box_fit``: the same boxes side by side, ``mean_sides 1 / (1 + (d / sigma)^2)`` with ``d``
  the distance [px] between a side of the silhouette's box and the detection box's and
  ``sigma = box_sigma x`` the box's long side: the box's size is what an RGB image says best
  about the distance along the viewing ray (a 60 px object 2.5 % farther is 1.5 px smaller), so
  a pose near the truth is polished on it (:data:`POLISH_WEIGHTS`). A Cauchy profile per side:
  one side cut by an occluder or a detector's slip costs at most a quarter of the term. Its
  basin is as narrow as sigma (1 px for a 60 px box): it judges poses within a few pixels of
  the box, not the views of the coarse stage (weight 0 in the default weights).
* ``depth`` (with an observed depth): ``mean exp(-(z_obs - z_ren)^2 / (2 sigma^2))`` over the
  rendered pixels with a measurement that is not nearer than ``z_ren - 3 sigma`` (a nearer
  measurement is an occluder, not an error; a farther one -- the camera sees through where the
  object should be -- scores 0), times ``min(1, visible / 0.5)`` with ``visible`` the
  non-occluded share; sigma = max(5 mm, 0.5 % of the distance) (:data:`DEPTH_SIGMA_M`).
* ``explained`` (with depth): of the measured points that lie in the rendered depth range
  (+- 3 sigma) inside the detection box or the silhouette, the share the silhouette covers and
  agrees with (within 3 sigma): a pose that explains less of the observed object scores less.

score = sum_k weight_k clip(term_k, 0, 1) / sum_k weight_k, in [0, 1] (:class:`EvidenceWeights`). The RGB weights were fitted on the
real LM-O dev split (pairwise logistic regression on refined hypotheses, image-wise 4-fold cross
validation; see README); RGB-D adds the depth term.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from coop_ros.errors import InputError
from coop_ros.geometry.camera import make_crop
from coop_ros.imaging import color_labels, edge_map, entropy_bits

__all__ = ["EvidenceWeights", "Evidence", "EVIDENCE_SIZE", "EVIDENCE_MARGIN", "TERMS",
           "POLISH_WEIGHTS", "BOX_SIGMA"]

EVIDENCE_SIZE = 128
EVIDENCE_MARGIN = 1.0
#: names of the terms, in the order of :meth:`Evidence.terms` columns
TERMS = ("region", "contour", "gradient", "chroma", "ncc", "box", "depth", "explained",
         "box_fit")
#: depth noise the depth term allows: max(5 mm, 0.5 % of the distance) (Kinect / RealSense
#: class sensors at 0.5-1.5 m, plus a few mm of depth-to-colour registration error)
DEPTH_SIGMA_M = 0.005
DEPTH_SIGMA_REL = 0.005
#: noise of a detection box's sides the box_fit term allows, as a fraction of the box's long
#: side: calibrated on real LM-O dev with BOP's visible GT boxes (bench/eval_real.py; README).
#: Per side a Cauchy profile: a few bad sides cost little, and with box sides moved by 3-8 % of
#: the long side this value still did better than sigma = that error (README). PoseConfig.box_sigma.
BOX_SIGMA = 0.016

_K3 = np.ones((3, 3), np.uint8)
_K5 = np.ones((5, 5), np.uint8)


@dataclass(frozen=True)
class EvidenceWeights:
    """Weights of the evidence terms (see the module docstring); ``depth`` applies only when an
    observed depth is given."""

    region: float = 0.85
    contour: float = 1.3
    gradient: float = 1.0
    chroma: float = 0.75
    ncc: float = 1.35
    box: float = 1.1
    depth: float = 8.0
    explained: float = 2.0
    box_fit: float = 0.0

    def vector(self, with_depth: bool) -> np.ndarray:
        d = 1.0 if with_depth else 0.0
        return np.array([self.region, self.contour, self.gradient, self.chroma, self.ncc,
                         self.box, d * self.depth, d * self.explained, self.box_fit])


#: the weights that polish a pose near the truth (the selected hypothesis, a pose given to
#: ``PoseEstimator.refine_pose``): the default ones plus the side-by-side box fit
POLISH_WEIGHTS = EvidenceWeights(box_fit=3.0)


class Evidence:
    """The evidence crop of one detection and the score of rendered poses in it.

    Args:
        rgb: (H, W, 3) uint8 image.
        K: (3, 3) intrinsics of the image, pixels.
        box_xywh: (4,) detection box (BOP x, y, w, h), pixels.
        depth: optional (H, W) float depth [m] (0 = no measurement).
        size: crop side [px]; margin: fraction of the box's long side added around it.
        weights: :class:`EvidenceWeights`.
        box_sigma: side noise of the detection box the box_fit term allows, fraction of its long
            side (:data:`BOX_SIGMA`).

    Attributes:
        crop: the :class:`coop_ros.geometry.camera.Crop`; K: (3, 3) its intrinsics; size.
    """

    def __init__(self, rgb: np.ndarray, K: np.ndarray, box_xywh, depth: np.ndarray | None = None,
                 size: int = EVIDENCE_SIZE, margin: float = EVIDENCE_MARGIN,
                 weights: EvidenceWeights | None = None, box_sigma: float = BOX_SIGMA):
        H, W = rgb.shape[:2]
        self.crop = make_crop(box_xywh, size=size, margin=margin, image_size=(W, H))
        self.K = self.crop.intrinsics(K)
        self.size = int(size)
        self.weights = weights or EvidenceWeights()
        q = self.crop.warp(rgb, "linear")
        self.rgb = q
        # pixels of the crop that lie inside the image (the warp pads with zeros)
        self.valid = self.crop.warp(np.ones((H, W), np.uint8), "nearest") > 0
        lab = color_labels(q[self.valid], 8)
        order = np.argsort(lab, kind="stable")
        self._pix = np.flatnonzero(self.valid)[order]   # valid crop pixels sorted by colour cell
        ls = lab[order]
        self._starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
        self._tot = np.diff(np.r_[self._starts, len(ls)]).astype(np.float64)
        self._h_tot = float(entropy_bits(self._tot))
        self.edges = edge_map(q)
        g = cv2.cvtColor(q, cv2.COLOR_RGB2GRAY).astype(np.float32)
        self._g = g
        self._gx, self._gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
        self._mu = cv2.blur(g, (7, 7))
        self._var = cv2.blur(g * g, (7, 7)) - self._mu ** 2
        f = q.astype(np.float32) + 1.0
        self._chroma = f[..., :2] / f.sum(-1, keepdims=True)
        x, y, w, h = np.asarray(box_xywh, np.float64)
        a = self.crop.image_to_crop(np.array([[x - 0.5, y - 0.5], [x + w - 0.5, y + h - 0.5]]))
        self.box = np.array([a[0, 0], a[0, 1], a[1, 0], a[1, 1]])   # (u0, v0, u1, v1) crop px
        self.box_sigma_px = float(box_sigma) * max(self.box[2] - self.box[0],
                                                   self.box[3] - self.box[1])
        uu = np.arange(size)
        self._box_mask = ((uu[None, :] >= a[0, 0]) & (uu[None, :] <= a[1, 0])
                          & (uu[:, None] >= a[0, 1]) & (uu[:, None] <= a[1, 1]))
        self.depth = None
        if depth is not None:
            self.depth = self.crop.warp(np.asarray(depth, np.float32), "nearest").astype(np.float64)

    # ------------------------------------------------------------------ terms
    def region(self, masks: np.ndarray) -> np.ndarray:
        """(B, S, S) bool silhouettes -> (B,) mutual information [bits] (module docstring); 0
        when no crop pixel lies inside the image (a box far larger than the image)."""
        if self._pix.size == 0:
            return np.zeros(len(masks))
        inside = masks.reshape(len(masks), -1)[:, self._pix].astype(np.float64)
        nf = np.add.reduceat(inside, self._starts, axis=1)
        nb = self._tot[None] - nf
        n = self._tot.sum()
        f = nf.sum(1) / n
        return self._h_tot - (f * entropy_bits(nf) + (1 - f) * entropy_bits(nb))

    def _contour(self, m: np.ndarray, tau: float) -> float:
        """Oriented chamfer agreement of silhouette ``m`` (S, S) bool (module docstring).
        Computed on the silhouette's box padded by 8 px (the blur's 6 px radius + the Sobel's
        1 px: the values on the contour equal the whole crop's)."""
        m8 = np.ascontiguousarray(m).view(np.uint8)
        x, y, w, h = cv2.boundingRect(m8)
        if w == 0:
            return 0.0
        S = self.size
        r0, c0 = max(y - 8, 0), max(x - 8, 0)
        sub = m8[r0:min(y + h + 8, S), c0:min(x + w + 8, S)]
        c = (sub > 0) & (cv2.erode(sub, _K3) == 0)
        rows, cols = np.nonzero(c)
        if len(rows) < 5:
            return 0.0
        mf = cv2.GaussianBlur(sub.astype(np.float32), (0, 0), 1.5)
        th = np.arctan2(cv2.Sobel(mf, cv2.CV_32F, 0, 1)[rows, cols],
                        cv2.Sobel(mf, cv2.CV_32F, 1, 0)[rows, cols])
        rows += r0
        cols += c0
        d = self.edges.dist[rows, cols]
        return float(np.mean(np.clip(1.0 - d / tau, 0.0, 1.0)
                             * np.abs(np.cos(th - self.edges.nearest_theta[rows, cols]))))

    def _appearance(self, rgb: np.ndarray, inner: np.ndarray) -> tuple[float, float, float]:
        """(gradient, chroma, ncc) of a shaded rendering inside ``inner``. Computed on the box
        around ``inner`` padded by 6 px (every 3 x 3 / 7 x 7 window of an inner pixel lies inside
        it, so the values equal the whole crop's)."""
        x, y, w_, h_ = cv2.boundingRect(np.ascontiguousarray(inner).view(np.uint8))
        S = self.size
        sl = (slice(max(y - 6, 0), min(y + h_ + 6, S)), slice(max(x - 6, 0), min(x + w_ + 6, S)))
        inner = inner[sl]
        g = cv2.cvtColor(np.ascontiguousarray(rgb[sl]), cv2.COLOR_RGB2GRAY).astype(np.float32)
        gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0)[inner], cv2.Sobel(g, cv2.CV_32F, 0, 1)[inner]
        qx, qy = self._gx[sl][inner], self._gy[sl][inner]
        na, nb = np.hypot(qx, qy), np.hypot(gx, gy)
        w = np.minimum(na, nb)
        grad = float((np.abs(qx * gx + qy * gy) / np.maximum(na * nb, 1e-6) * w).sum()
                     / max(float(w.sum()), 1e-6))
        f = rgb[sl][inner].astype(np.float32) + 1.0
        s = f[:, 0] + f[:, 1] + f[:, 2]       # per-channel arithmetic: numpy's axis reductions
        qc = self._chroma[sl][inner]          # over 2-3 items cost more than the rest together
        d0, d1 = f[:, 0] / s - qc[:, 0], f[:, 1] / s - qc[:, 1]
        chroma = float(np.exp(-(d0 * d0 + d1 * d1) / (2 * 0.03 ** 2)).mean())
        mu = cv2.blur(g, (7, 7))
        cov = cv2.blur(self._g[sl] * g, (7, 7)) - self._mu[sl] * mu
        var = cv2.blur(g * g, (7, 7)) - mu ** 2
        ncc = float((cov / np.sqrt(np.maximum(self._var[sl], 4.0) * np.maximum(var, 4.0)))[inner]
                    .mean())
        return grad, chroma, ncc

    def _box_terms(self, m: np.ndarray) -> tuple[float, float]:
        """(IoU, side-by-side fit) of the silhouette's bounding box with the detection box
        (crop pixels; module docstring)."""
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        a = np.array([cols[0] - 0.5, rows[0] - 0.5, cols[-1] + 0.5, rows[-1] + 0.5])
        b = self.box
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        d = (a - b) / max(self.box_sigma_px, 1e-6)
        return (float(inter / union) if union > 0 else 0.0,
                float(np.mean(1.0 / (1.0 + d * d))))

    def _depth(self, zr: np.ndarray, m: np.ndarray) -> tuple[float, float]:
        """(depth agreement, explained fraction) of a rendered depth map (module docstring)."""
        zo = self.depth[m]
        zrm = zr[m].astype(np.float64)
        ok = zo > 0
        if not ok.any():
            return 0.0, 0.0
        zmed = float(np.median(zrm))
        sigma = max(DEPTH_SIGMA_M, DEPTH_SIGMA_REL * zmed)
        d = zo[ok] - zrm[ok]
        occl = d < -3.0 * sigma                     # something nearer: occlusion, not error
        n_vis = int((~occl).sum())
        visible = n_vis / max(int(ok.sum()), 1)
        agree = float(np.exp(-0.5 * (d[~occl] / sigma) ** 2).mean()) if n_vis else 0.0
        # the observed object inside the detection box that the silhouette leaves unexplained:
        # measured points outside the silhouette within the rendered depth range (+-3 sigma)
        zlo, zhi = float(zrm.min()) - 3 * sigma, float(zrm.max()) + 3 * sigma
        zb = self.depth[self._box_mask]
        on = (zb > zlo) & (zb < zhi)
        n_out = int((on & ~m[self._box_mask]).sum())
        n_in = int((np.abs(d) < 3.0 * sigma).sum())
        explained = n_in / max(n_in + n_out, 1)
        return agree * min(1.0, visible / 0.5), explained

    def terms(self, rgb: np.ndarray, masks: np.ndarray, depth: np.ndarray | None = None
              ) -> np.ndarray:
        """Evidence terms of B renderings in this crop.

        Args:
            rgb: (B, S, S, 3) uint8 shaded renderings; masks: (B, S, S) bool silhouettes;
            depth: (B, S, S) float rendered depth [m] (needed for the depth term).
        Returns:
            (B, len(TERMS)) float64 (columns in :data:`TERMS` order; depth 0 without depth).
        """
        masks = np.asarray(masks, bool)
        B, S = masks.shape[0], self.size
        if masks.shape[1:] != (S, S):
            raise InputError(f"renderings must be ({S}, {S}) like the evidence crop, got "
                             f"{masks.shape[1:]}")
        out = np.zeros((B, len(TERMS)))
        nonempty = masks.reshape(B, -1).sum(1) >= 5
        if not nonempty.any():
            return out
        out[nonempty, 0] = self.region(masks[nonempty])
        tau = 3.0 * S / 128.0
        for b in np.flatnonzero(nonempty):
            m = masks[b]
            out[b, 1] = self._contour(m, tau)
            inner = cv2.erode(m.astype(np.uint8), _K5) > 0
            if inner.sum() >= 10:
                out[b, 2:5] = self._appearance(rgb[b], inner)
            out[b, 5], out[b, 8] = self._box_terms(m)
            if self.depth is not None and depth is not None:
                out[b, 6:8] = self._depth(depth[b], m)
        return out

    def scores(self, terms: np.ndarray) -> np.ndarray:
        """(B, len(TERMS)) terms -> (B,) evidence in [0, 1]: the weighted mean of the terms, each
        clipped to [0, 1] (region in bits, ncc in [-1, 1] are the only ones that can leave it)."""
        w = self.weights.vector(self.depth is not None)
        return np.clip(terms, 0.0, 1.0) @ w / w.sum()

    def with_weights(self, weights: EvidenceWeights) -> "Evidence":
        """The same detection's evidence scored with other weights (the crop and its statistics
        are shared, not recomputed)."""
        import copy
        ev = copy.copy(self)
        ev.weights = weights
        return ev

    def evaluate(self, renderer, key: str, Ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Render object ``key`` at poses Ts (B, 4, 4) [m] in this crop; returns (scores (B,),
        terms (B, len(TERMS)))."""
        Ts = np.asarray(Ts, np.float64).reshape(-1, 4, 4)
        out = renderer.render(key, Ts, self.K, width=self.size, height=self.size, xyz=False)
        t = self.terms(out.rgb, out.mask, out.depth)
        return self.scores(t), t

    @staticmethod
    def as_dict(terms_row: np.ndarray) -> dict:
        """One row of :meth:`terms` as {name: value}."""
        return {k: float(v) for k, v in zip(TERMS, terms_row)}
