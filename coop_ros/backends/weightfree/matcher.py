"""Weight-free coarse matcher: shape + colour (+ depth) alignment search and SIFT -> Co-op's
per-patch matches.

Per template t of the bank (42 out-of-plane views; in-plane rotation free), every candidate
alignment (36 in-plane angles x 3 scales) is a 2D similarity template -> query crop: the rotated
template silhouette box is scaled to fit the detection box (scales: min / geometric mean / max of
the width and height ratios, so an occluded side does not dictate the scale) and centred on it.
Each candidate is scored by

* ``edge x box_iou``: oriented chamfer score of the template's edges (silhouette contour + Canny
  edges inside it) against the query's edges, ``mean_i (1 - min(d_i, tau)/tau) |cos(theta_i -
  phi_i)|``, times the IoU of the scaled template box with the detection box (without that factor
  a small template slides inside a textured object's edges);
* ``colour``: agreement of the chromaticity of the query and of the template mapped onto it, on
  a 8-px grid inside the box, weighted by how colourful the template is (0 for a grey mesh);
* ``depth`` (RGB-D): fraction of query pixels whose observed depth matches the template's relative
  depth up to one offset (5 % of the template's depth range + 1 cm);
* ``SIFT support``: SIFT matches (ratio test) consistent with the alignment, /30, capped at 1.
  A SIFT RANSAC similarity is a second candidate per template.
* ``region`` (x 4): mutual information [bits] between "inside the mapped template silhouette"
  and the query colour (8^3 RGB cells, 6-px grid) -- region statistics as in region-based
  trackers (RBOT, SRT3D): the right silhouette splits the crop into the two most differently
  coloured parts, whatever the light and whether or not the mesh is textured. On real LM-O
  images it raised the share of targets with a coarse pose within 30 deg among the 5 best
  templates from 30 % to 55 %.

The best candidate gives the template score and the dense matches: for each 16-px query patch
inside the box (or mask) the template pixel is the patch centre mapped by the inverse similarity
(NO_MATCH off the template silhouette), replaced where a consistent SIFT match lies in the patch
by that match transferred to the patch centre (confidence 1.0 vs 0.5); encoded as (template patch
index, offset in [-0.5, 0.5]^2) -- Co-op's representation.

Where it fails: correspondences carry the ~15 deg out-of-plane error of the nearest template
(refinement fixes that); untextured objects with a near-symmetric silhouette (a can: spin about
its axis, top/bottom flips) are ambiguous in RGB -- the YCB-V can with its untextured mesh fails;
heavy occlusion of a box side biases the scale; clutter inside the box adds false edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from coop_ros.backends.base import (NO_MATCH, PATCH, CoarseMatcher, CoarseMatches, ImageCrop,
                                    encode_pixels, patch_centers)
from coop_ros.backends.weightfree.features import edge_map, edge_points, sift_features
from coop_ros.imaging import color_labels, entropy_bits

__all__ = ["WeightFreeMatcher", "PreparedTemplates"]


@dataclass
class PreparedTemplates:
    """Per-template features of a bank (from :meth:`WeightFreeMatcher.prepare`)."""

    edge_pts: np.ndarray      # (T, M, 2) float64, padded
    edge_theta: np.ndarray    # (T, M) float32
    edge_valid: np.ndarray    # (T, M) bool
    contour: np.ndarray       # (T, C, 2) float64 silhouette points (resampled)
    sift_pts: list            # T x (n, 2)
    sift_desc: list           # T x (n, 128) or None
    chroma: np.ndarray        # (T, S, S, 2) float32 normalised chromaticity (r, g)
    rel_depth: np.ndarray     # (T, S, S) float32 depth minus the template's median depth [m]
    mask: np.ndarray          # (T, S, S) bool
    colorfulness: np.ndarray  # (T,) chroma std inside the silhouette (0 for a grey mesh)
    size: int


def _rot(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _flat_index(u: np.ndarray, v: np.ndarray, S: int, tidx: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions (B, N) float [px] -> (flat int32 index into a (T, S, S) array (row
    ``tidx`` (B,), or into one (S, S) image), inside (B, N) bool): the positions are rounded and
    clipped to the image (``u`` and ``v`` are overwritten). One flat gather is several times
    faster than numpy's three-array fancy indexing."""
    np.rint(u, out=u)
    np.rint(v, out=v)
    inside = (u >= 0) & (u < S) & (v >= 0) & (v < S)
    np.clip(u, 0, S - 1, out=u)
    np.clip(v, 0, S - 1, out=v)
    flat = v.astype(np.int32)
    if tidx is not None:
        flat += (np.asarray(tidx, np.int32) * S)[:, None]
    flat *= S
    flat += u.astype(np.int32)
    return flat, inside


def _gather_pairs(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of a C-contiguous (n, 2) float32 array (gathered as 8-byte items)."""
    a = np.ascontiguousarray(a, np.float32)
    return a.view(np.int64)[:, 0][idx].view(np.float32).reshape(-1, 2)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    f = rgb.astype(np.float32) + 1.0
    return (f[..., :2] / f.sum(-1, keepdims=True)).astype(np.float32)


class WeightFreeMatcher(CoarseMatcher):
    """Classical implementation of :class:`coop_ros.backends.base.CoarseMatcher`.

    Candidate alignments (template t, in-plane angle, scale) are scored by
    ``edge + w_c * colour + w_d * depth + w_s * min(SIFT support, 30) / 30 + w_r * region``
    where
    * edge: oriented chamfer score of the template edges against the query edges;
    * colour: agreement of the chromaticity of the query and of the template mapped onto it
      (weighted by how colourful the template is: 0 for an untextured grey mesh);
    * depth (RGB-D): fraction of query pixels whose observed depth matches the template's
      relative depth up to one offset (5 % of the template depth range + 1 cm);
    * SIFT support: SIFT matches consistent with the alignment;
    * region: colour mutual information of the mapped silhouette (module docstring).

    Args:
        n_angles: in-plane rotations searched.
        tau_px: chamfer truncation distance [px] at the 224-px crop (scaled with the crop).
        ratio: Lowe ratio test of the SIFT matches.
    """

    def __init__(self, n_angles: int = 36, tau_px: float = 6.0, ratio: float = 0.8,
                 sift_weight: float = 1.0, color_weight: float = 1.0, depth_weight: float = 1.0,
                 max_edge_points: int = 200, sample_stride: int = 8, region_weight: float = 4.0):
        self.n_angles = int(n_angles)
        self.tau_px = float(tau_px)
        self.ratio = float(ratio)
        self.sift_weight = float(sift_weight)
        self.color_weight = float(color_weight)
        self.depth_weight = float(depth_weight)
        self.region_weight = float(region_weight)
        self.max_edge_points = int(max_edge_points)
        self.sample_stride = int(sample_stride)
        self._bf = cv2.BFMatcher(cv2.NORM_L2)

    # ------------------------------------------------------------------ per object
    def prepare(self, bank) -> PreparedTemplates:
        T, S = len(bank), int(bank.size)
        M = self.max_edge_points
        pts = np.zeros((T, M, 2))
        th = np.zeros((T, M), np.float32)
        val = np.zeros((T, M), bool)
        C = 128
        contour = np.zeros((T, C, 2))
        sp, sd = [], []
        chroma = np.zeros((T, S, S, 2), np.float32)
        rel = np.zeros((T, S, S), np.float32)
        colorful = np.zeros(T)
        for t in range(T):
            p, a, _ = edge_points(bank.rgb[t], bank.mask[t], max_points=M, seed=t)
            n = len(p)
            pts[t, :n], th[t, :n], val[t, :n] = p, a, True
            m = bank.mask[t].astype(np.uint8)
            cnts, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cp = np.concatenate([c.reshape(-1, 2) for c in cnts]).astype(np.float64)
            idx = np.linspace(0, len(cp) - 1, C).astype(int)
            contour[t] = cp[idx]
            k, d, _ = sift_features(bank.rgb[t], bank.mask[t])
            sp.append(k)
            sd.append(d)
            chroma[t] = _chroma(bank.rgb[t])
            mk = bank.mask[t]
            colorful[t] = float(chroma[t][mk].std(0).mean()) if mk.any() else 0.0
            z = bank.depth[t]
            rel[t] = np.where(mk, z - np.median(z[mk]), 0.0)
        return PreparedTemplates(pts, th, val, contour, sp, sd, chroma, rel,
                                 bank.mask.astype(bool), colorful, S)

    # ------------------------------------------------------------------ scoring
    def _edge_score(self, em, P: np.ndarray, theta: np.ndarray, valid: np.ndarray,
                    tau: float) -> np.ndarray:
        """Oriented chamfer score of transformed points P (..., M, 2) with orientations
        (..., M); -> (...,)."""
        S = em.dist.shape[0]
        u = np.rint(P[..., 0]).astype(np.int64)
        v = np.rint(P[..., 1]).astype(np.int64)
        inside = (u >= 0) & (u < S) & (v >= 0) & (v < S)
        uc, vc = np.clip(u, 0, S - 1), np.clip(v, 0, S - 1)
        d = em.dist[vc, uc]
        phi = em.nearest_theta[vc, uc]
        s = np.clip(1.0 - d / tau, 0.0, 1.0) * np.abs(np.cos(theta - phi))
        s = np.where(inside & valid, s, 0.0)
        return s.sum(-1) / np.maximum(valid.sum(-1), 1)

    def _region_scores(self, prep: PreparedTemplates, tidx: np.ndarray, Minv: np.ndarray,
                       qpts: np.ndarray, qchroma: np.ndarray, qdepth,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Colour and depth agreement of candidates (B,) given query->template affine maps
        Minv (B, 2, 3) on query sample points qpts (N, 2) -> (colour (B,), depth (B,),
        coverage (B,)). qdepth: None or ((N,) depth minus its median [m], (N,) valid)."""
        S = prep.size
        qu, qv = qpts[None, :, 0], qpts[None, :, 1]                                 # (1, N)
        u = Minv[:, 0, 0, None] * qu + Minv[:, 0, 1, None] * qv + Minv[:, 0, 2, None]  # (B, N)
        v = Minv[:, 1, 0, None] * qu + Minv[:, 1, 1, None] * qv + Minv[:, 1, 2, None]
        flat, inside = _flat_index(u, v, S, tidx)
        on = inside & prep.mask.reshape(-1)[flat]                                   # (B, N)
        non = np.maximum(on.sum(1), 1)
        cov = on.mean(1)
        # chromaticity agreement, computed only where the template covers the sample; the (r, g)
        # float32 pairs are gathered as one 8-byte item each
        r, c = np.nonzero(on)
        ch = _gather_pairs(prep.chroma.reshape(-1, 2), flat[r, c])
        dc = ch - _gather_pairs(qchroma, c)
        x = np.exp(-(dc[:, 0] ** 2 + dc[:, 1] ** 2) / (2 * 0.03 ** 2))
        agree = np.zeros(on.shape, x.dtype)
        agree[r, c] = x
        col = agree.sum(1) / non
        col = col * np.minimum(prep.colorfulness[tidx] / 0.02, 1.0)
        dep = np.zeros(len(tidx))
        if qdepth is not None:
            qz, qv = qdepth
            zt = prep.rel_depth.reshape(-1)[flat]
            okd = on & qv[None]
            diff = np.where(okd, qz[None] - zt, np.nan)
            off = np.zeros(len(tidx))
            has = okd.any(1)         # templates without one depth overlap: no offset (no agreement)
            with np.errstate(all="ignore"):
                if has.any():
                    off[has] = np.nanmedian(diff[has], axis=1)
                uniq, inv = np.unique(tidx, return_inverse=True)
                rng_t = np.array([np.ptp(prep.rel_depth[t][prep.mask[t]]) for t in uniq])[inv]
                tol = 0.05 * rng_t + 0.01
                agree = np.abs(diff - off[:, None]) < tol[:, None]
            dep = np.where(okd, agree, False).sum(1) / non * np.minimum(
                okd.sum(1) / np.maximum(on.sum(1), 1) / 0.5, 1.0)
        return col, dep, cov

    @staticmethod
    def _region_mi(masks: np.ndarray, rgb: np.ndarray, Minv: np.ndarray, stride: int = 6,
                   bins: int = 8) -> np.ndarray:
        """Region statistics of candidate alignments: mutual information [bits] between "inside
        the template silhouette mapped into the query" and the query colour (``bins``^3 RGB
        cells), over a ``stride`` grid of the query crop.

        masks: (T, S, S) bool template silhouettes; Minv: (T * C, 2, 3) query -> template maps,
        C candidates per template, template-major. Returns (T * C,)."""
        T, S = masks.shape[0], masks.shape[1]
        g = np.arange(stride // 2, rgb.shape[0], stride)
        gv, gu = np.meshgrid(g, g, indexing="ij")
        lab = color_labels(rgb[gv.ravel(), gu.ravel()], bins)
        order = np.argsort(lab, kind="stable")
        ls = lab[order]
        starts = np.flatnonzero(np.r_[True, ls[1:] != ls[:-1]])
        tot = np.diff(np.r_[starts, len(ls)]).astype(np.float64)
        qu = gu.ravel()[order][None].astype(np.float64)
        qv = gv.ravel()[order][None].astype(np.float64)
        n = tot.sum()
        h_tot = float(entropy_bits(tot))
        per_t = len(Minv) // T
        out = np.zeros(len(Minv))
        for t in range(T):
            Mi = Minv[t * per_t:(t + 1) * per_t]
            u = Mi[:, 0, 0, None] * qu + Mi[:, 0, 1, None] * qv + Mi[:, 0, 2, None]
            v = Mi[:, 1, 0, None] * qu + Mi[:, 1, 1, None] * qv + Mi[:, 1, 2, None]
            flat, ok = _flat_index(u, v, S)
            inside = ok & masks[t].reshape(-1)[flat]
            nf = np.add.reduceat(inside.astype(np.float64), starts, axis=1)
            f = nf.sum(1) / n
            out[t * per_t:(t + 1) * per_t] = h_tot - (f * entropy_bits(nf)
                                                      + (1 - f) * entropy_bits(tot[None] - nf))
        return out

    # ------------------------------------------------------------------ per query
    def match(self, query: ImageCrop, bank, prepared: PreparedTemplates | None = None
              ) -> CoarseMatches:
        if prepared is None:
            prepared = self.prepare(bank)
        S = query.size
        G = S // PATCH
        T = len(bank)
        tau = self.tau_px * S / 224.0
        box = np.asarray(query.box if query.box is not None else (0, 0, S - 1, S - 1), float)
        cq = 0.5 * (box[:2] + box[2:])
        wq, hq = max(box[2] - box[0], 2.0), max(box[3] - box[1], 2.0)
        region = np.zeros((S, S), bool)
        r0, r1 = int(max(np.floor(box[1]), 0)), int(min(np.ceil(box[3]) + 1, S))
        c0, c1 = int(max(np.floor(box[0]), 0)), int(min(np.ceil(box[2]) + 1, S))
        region[r0:r1, c0:c1] = True
        if query.mask is not None:
            region &= query.mask.astype(bool)
        em = edge_map(query.rgb, query.mask if query.mask is not None else None)
        # query samples for colour / depth
        st = self.sample_stride
        gv, gu = np.mgrid[st // 2:S:st, st // 2:S:st]
        keep = region[gv, gu]
        qpts = np.stack([gu[keep], gv[keep]], 1).astype(np.float64)
        qchroma = _chroma(query.rgb)[gv[keep], gu[keep]]
        qdepth = None
        if query.depth is not None:
            qd = np.asarray(query.depth, np.float64)[gv[keep], gu[keep]]
            if (qd > 0).sum() >= 10:
                med = np.median(qd[qd > 0])
                qdepth = (np.where(qd > 0, qd - med, 0.0), qd > 0)
        # ---- 1. all (template, angle, scale) alignments, vectorised
        A = self.n_angles
        angles = np.arange(A) * (2 * np.pi / A)
        Rs = _rot(angles)                                            # (A, 2, 2)
        ct = np.full(2, (prepared.size - 1) / 2.0)
        Crot = np.einsum("aij,tcj->taci", Rs, prepared.contour - ct)  # (T, A, C, 2)
        lo, hi = Crot.min(2), Crot.max(2)                             # (T, A, 2)
        wt = np.maximum(hi[..., 0] - lo[..., 0], 1.0)
        ht = np.maximum(hi[..., 1] - lo[..., 1], 1.0)
        sx, sy = wq / wt, hq / ht
        scales = np.stack([np.minimum(sx, sy), np.sqrt(sx * sy), np.maximum(sx, sy)], -1)
        crot = 0.5 * (lo + hi)                                        # (T, A, 2)
        Erot = np.einsum("aij,tmj->tami", Rs, prepared.edge_pts - ct)  # (T, A, M, 2)
        P = (scales[..., None, None] * (Erot[:, :, None] - crot[:, :, None, None])
             + cq)                                                    # (T, A, 3, M, 2)
        theta = prepared.edge_theta[:, None, None, :] + angles[None, :, None, None]
        valid = np.broadcast_to(prepared.edge_valid[:, None, None, :], P.shape[:-1])
        es = self._edge_score(em, P, theta, valid, tau)               # (T, A, 3)
        # similarity template -> query: q = L p + b with L = s R, b = cq - s crot - L ct
        L = scales[..., None, None] * Rs[None, :, None]               # (T, A, 3, 2, 2)
        b = cq - scales[..., None] * crot[:, :, None] - np.einsum("taskj,j->task", L, ct)
        Lflat = L.reshape(-1, 2, 2)
        Linv = np.linalg.inv(Lflat)
        Minv = np.concatenate([Linv, -np.einsum("bij,bj->bi", Linv, b.reshape(-1, 2))[..., None]],
                              -1)
        tidx = np.repeat(np.arange(T), A * 3)
        col, dep, _ = self._region_scores(prepared, tidx, Minv, qpts, qchroma,
                                          qdepth)
        # box fit of the scaled, rotated template silhouette to the detection box (both centred)
        W_ = scales * wt[..., None]
        H_ = scales * ht[..., None]
        inter = np.minimum(W_, wq) * np.minimum(H_, hq)
        box_iou = (inter / (W_ * H_ + wq * hq - inter)).reshape(-1)
        mi = self._region_mi(prepared.mask, query.rgb, Minv)
        total = (es.reshape(-1) * box_iou + self.color_weight * col + self.depth_weight * dep
                 + self.region_weight * mi)
        total = total.reshape(T, A * 3)
        flat = total.argmax(1)

        # ---- 2. SIFT
        qk, qd_, _ = sift_features(query.rgb, region)
        patch_idx = np.full((T, G * G), NO_MATCH, np.int64)
        offset = np.zeros((T, G * G, 2), np.float32)
        conf = np.zeros((T, G * G), np.float32)
        scores = np.zeros(T)
        info = {"similarity": np.zeros((T, 2, 3)), "edge_score": np.zeros(T),
                "color_score": np.zeros(T), "depth_score": np.zeros(T),
                "sift_support": np.zeros(T, int), "source": [""] * T}
        centers = patch_centers(S)
        in_region = region[np.clip(np.rint(centers[:, 1]).astype(int), 0, S - 1),
                           np.clip(np.rint(centers[:, 0]).astype(int), 0, S - 1)]
        Lr = L.reshape(T, A * 3, 2, 2)
        br = b.reshape(T, A * 3, 2)
        for t in range(T):
            j = flat[t]
            cands = [("grid", np.hstack([Lr[t, j], br[t, j][:, None]]))]
            sc = float(np.sqrt(abs(np.linalg.det(Lr[t, j]))))
            pt_t = pt_q = None
            if qd_ is not None and prepared.sift_desc[t] is not None and len(qk) >= 2 \
                    and len(prepared.sift_pts[t]) >= 2:
                mm = self._bf.knnMatch(prepared.sift_desc[t], qd_, k=2)
                good = [m[0] for m in mm
                        if len(m) == 2 and m[0].distance < self.ratio * m[1].distance]
                if len(good) >= 3:
                    pt_t = prepared.sift_pts[t][[g.queryIdx for g in good]]
                    pt_q = qk[[g.trainIdx for g in good]]
                    if len(good) >= 4:
                        Ms, inl = cv2.estimateAffinePartial2D(
                            pt_t.astype(np.float32), pt_q.astype(np.float32), method=cv2.RANSAC,
                            ransacReprojThreshold=0.03 * S, maxIters=500, confidence=0.99)
                        if Ms is not None and inl is not None and inl.sum() >= 4 \
                                and np.all(np.isfinite(Ms)):
                            ss = np.sqrt(abs(np.linalg.det(Ms[:, :2])))
                            if 0.33 * sc < ss < 3.0 * sc:  # plausible w.r.t. the box fit
                                cands.append(("sift", Ms.astype(np.float64)))
            best = None
            for name, Mc in cands:
                Pc = prepared.edge_pts[t] @ Mc[:, :2].T + Mc[:, 2]
                rot_a = np.arctan2(Mc[1, 0], Mc[0, 0])
                e = float(self._edge_score(em, Pc, prepared.edge_theta[t] + rot_a,
                                           prepared.edge_valid[t], tau))
                Li = np.linalg.inv(Mc[:, :2])
                Mi = np.hstack([Li, (-Li @ Mc[:, 2])[:, None]])[None]
                c_, d_, _ = self._region_scores(prepared, np.array([t]), Mi, qpts, qchroma,
                                                qdepth)
                sup, sup_mask = 0, None
                if pt_t is not None:
                    d = np.linalg.norm(pt_t @ Mc[:, :2].T + Mc[:, 2] - pt_q, axis=1)
                    sup_mask = d < 0.04 * S
                    sup = int(sup_mask.sum())
                mi_c = float(mi.reshape(T, A * 3)[t, j]) if name == "grid" else \
                    float(self._region_mi(prepared.mask[t:t + 1], query.rgb, Mi)[0])
                tot = e + self.color_weight * float(c_[0]) + self.depth_weight * float(d_[0]) \
                    + self.sift_weight * min(sup, 30) / 30.0 + self.region_weight * mi_c
                if best is None or tot > best[0]:
                    best = (tot, name, Mc, e, float(c_[0]), float(d_[0]), sup, sup_mask)
            tot, name, Mc, e, c_, d_, sup, sup_mask = best
            scores[t] = tot
            info["similarity"][t] = Mc
            info["edge_score"][t] = e
            info["color_score"][t] = c_
            info["depth_score"][t] = d_
            info["sift_support"][t] = sup
            info["source"][t] = name
            # ---- dense patches from the similarity
            Li = np.linalg.inv(Mc[:, :2])
            tp = (centers - Mc[:, 2]) @ Li.T                          # query -> template
            ti = np.rint(tp).astype(np.int64)
            ok = in_region & np.all((ti >= 0) & (ti < S), axis=1)
            ok[ok] = bank.mask[t][ti[ok, 1], ti[ok, 0]]
            tpx = np.where(ok[:, None], tp, np.nan)
            cf = np.where(ok, 0.5, 0.0)
            # ---- precise SIFT matches consistent with the similarity
            if sup_mask is not None and sup >= 3:
                qs, ts = pt_q[sup_mask], pt_t[sup_mask]
                gq = np.floor((qs + 0.5) / PATCH).astype(int)
                pidx = np.clip(gq[:, 1], 0, G - 1) * G + np.clip(gq[:, 0], 0, G - 1)
                dc = np.linalg.norm(qs - centers[pidx], axis=1)
                order = np.argsort(-dc)  # closest last -> wins the assignment
                for jj in order:
                    p = pidx[jj]
                    if not in_region[p]:
                        continue
                    tt = ts[jj] + (centers[p] - qs[jj]) @ Li.T
                    r = np.rint(tt).astype(int)
                    if 0 <= r[0] < S and 0 <= r[1] < S and bank.mask[t][r[1], r[0]]:
                        tpx[p] = tt
                        cf[p] = 1.0
            idx, off = encode_pixels(tpx, S)
            patch_idx[t], offset[t] = idx, off
            conf[t] = np.where(idx == NO_MATCH, 0.0, cf)
        return CoarseMatches(patch_index=patch_idx, offset=offset, confidence=conf,
                             template_scores=scores, info=info)
