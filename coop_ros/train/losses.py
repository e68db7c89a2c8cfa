"""Co-op's training losses and their metrics (paper + supplementary 1.1-1.3).

* coarse: cross-entropy over the K + 1 classes of every query patch + L1 on the offset of the
  matched patches (:func:`coarse_loss`).
* refiner: Laplace negative log-likelihood of the flow ``log(2b) + |y - mu|_1 / b`` on render
  pixels visible in the query, BCE of the certainty on the render silhouette, and the
  disentangled point-matching pose loss (GenFlow / MegaPose) of the pose that the differentiable
  weighted LM PnP gives from the predicted flow (:func:`refiner_loss`, :func:`pose_from_flow`,
  :func:`disentangled_pose_loss`).
* selection: BCE on the score logit (:func:`selection_loss`).

Every function returns ``(loss, metrics)`` with ``metrics`` a dict of floats (detached).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from coop_ros.errors import EstimationError, InputError
from coop_ros.nets.heads import CoarseOutput, RefinerOutput, confidence_weights
from coop_ros.train.config import LossConfig

__all__ = ["coarse_loss", "laplace_nll", "disentangled_pose_loss", "pose_from_flow",
           "refiner_loss", "selection_loss", "rotation_error_deg"]


# ==============================================================================================
# coarse
# ==============================================================================================
def coarse_loss(out: CoarseOutput, cls: torch.Tensor, offset: torch.Tensor,
                cfg: LossConfig | None = None, patch: int = 16) -> tuple[torch.Tensor, dict]:
    """CE over K + 1 classes + L1 on the offsets of matched patches.

    Args:
        out: logits (B, N, K + 1), offsets (B, N, 2).
        cls: (B, N) int64 targets in [0, K] (K = "no match").
        offset: (B, N, 2) offset targets in [-0.5, 0.5] (patch units).
    Metrics: ``acc`` (all patches), ``acc_match`` (patches whose target is a template patch),
    ``acc_nomatch``, ``offset_px`` (mean |error| [px] of the matched, correctly classified
    patches), ``match_px`` (mean distance [px] between predicted and true template pixel of the
    patches whose target is a template patch; a "no match" prediction counts as 16 px).
    """
    cfg = cfg or LossConfig()
    B, N, C = out.logits.shape
    K = C - 1
    ce = F.cross_entropy(out.logits.reshape(-1, C).float(), cls.reshape(-1))
    matched = cls < K
    n_m = matched.sum().clamp_min(1)
    l1 = ((out.offsets.float() - offset).abs().sum(-1) * matched).sum() / (2 * n_m)
    loss = cfg.cls * ce + cfg.offset * l1
    with torch.no_grad():
        pred = out.logits.argmax(-1)
        correct = pred == cls
        G = int(round(K ** 0.5))
        acc_m = (correct & matched).sum().float() / n_m
        nm = ~matched
        acc_nm = (correct & nm).sum().float() / nm.sum().clamp_min(1)
        good = correct & matched
        off_px = ((out.offsets - offset).abs().sum(-1) * good).sum() / (2 * good.sum().clamp_min(1))
        pj = pred.clamp_max(K - 1)
        puv = torch.stack(((pj % G).float() + 0.5 + out.offsets[..., 0],
                           (pj // G).float() + 0.5 + out.offsets[..., 1]), -1) * patch
        tj = cls.clamp_max(K - 1)
        tuv = torch.stack(((tj % G).float() + 0.5 + offset[..., 0],
                           (tj // G).float() + 0.5 + offset[..., 1]), -1) * patch
        dist = torch.where(pred < K, (puv - tuv).norm(dim=-1), torch.full_like(puv[..., 0], patch))
        match_px = (dist * matched).sum() / n_m
    return loss, {"loss": float(loss.detach()), "ce": float(ce.detach()), "l1": float(l1.detach()),
                  "acc": float(correct.float().mean()), "acc_match": float(acc_m),
                  "acc_nomatch": float(acc_nm), "offset_px": float(off_px) * patch,
                  "match_px": float(match_px), "matched_frac": float(matched.float().mean())}


# ==============================================================================================
# refiner
# ==============================================================================================
def laplace_nll(mu: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel Laplace NLL ``log(2 b) + |y - mu|_1 / b``: mu, y (..., 2), b (...) -> (...)."""
    return torch.log(2 * b) + (y - mu).abs().sum(-1) / b


def rotation_error_deg(Ra: torch.Tensor, Rb: torch.Tensor) -> torch.Tensor:
    """(B,) geodesic angle between (B, 3, 3) rotations, degrees."""
    c = ((Ra.transpose(-1, -2) @ Rb).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(c.clamp(-1 + 1e-7, 1 - 1e-7)))


def disentangled_pose_loss(T: torch.Tensor, T_gt: torch.Tensor, points: torch.Tensor,
                           K: torch.Tensor, diameter: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, dict]:
    """GenFlow / MegaPose disentangled point-matching loss (supplementary eq. 1).

    ``D(P, P_gt)`` = mean over model points of the L1 distance between the points moved by P and
    by P_gt. Three terms, each taking ONE part from the estimate and the rest from GT:

    * rotation: ``[R | t_gt]``;
    * image-plane translation: the object origin at the estimate's image position
      ``(u, v) = pi(K t)`` and the GT depth: ``t_xy = z_gt K^-1 [u, v, 1]`` with ``R_gt``;
    * depth: ``t_z = z K^-1 [u_gt, v_gt, 1]`` (GT image position, estimated depth) with ``R_gt``.

    (MegaPose's (v_x, v_y, v_z) parameterisation; with translation split as (t_x, t_y), t_z the
    same idea.) Returned per sample divided by ``diameter`` (objects of any size weigh alike).

    Args:
        T, T_gt: (B, 4, 4); points (B, P, 3) [m]; K (B, 3, 3); diameter (B,) [m] or None.
    Returns:
        ((B,) loss, metrics dict of (B,) tensors: rot, xy, z terms).
    """
    R, t = T[:, :3, :3], T[:, :3, 3]
    Rg, tg = T_gt[:, :3, :3].to(T.dtype), T_gt[:, :3, 3].to(T.dtype)
    K = K.to(T.dtype)
    X = points.to(T.dtype)
    Pg = X @ Rg.transpose(-1, -2) + tg[:, None]
    Kinv = torch.linalg.inv(K)

    def img(tt):
        p = tt[:, None, :] @ K.transpose(-1, -2)
        return p[:, 0, :2] / p[:, 0, 2:3]

    def ray(uv, z):
        h = torch.cat([uv, torch.ones_like(uv[:, :1])], -1)
        r = (h[:, None, :] @ Kinv.transpose(-1, -2))[:, 0]
        return r * z[:, None]

    uv_e, uv_g = img(t), img(tg)
    t_xy = ray(uv_e, tg[:, 2])
    t_z = ray(uv_g, t[:, 2])
    d_rot = (X @ R.transpose(-1, -2) + tg[:, None] - Pg).abs().sum(-1).mean(-1)
    d_xy = (t_xy - tg).abs().sum(-1)
    d_z = (t_z - tg).abs().sum(-1)
    scale = diameter.to(T.dtype) if diameter is not None else torch.ones_like(d_rot)
    loss = (d_rot + d_xy + d_z) / scale
    return loss, {"rot": d_rot / scale, "xy": d_xy / scale, "z": d_z / scale}


def pose_from_flow(out: RefinerOutput, xyz: torch.Tensor, render_mask: torch.Tensor,
                   K: torch.Tensor, T_init: torch.Tensor, radius_px: float = 2.0,
                   stride: int = 4, iterations: int = 3, weighting: str = "W"):
    """Differentiable pose from the predicted flow: weighted LM PnP on the render pixels of a
    ``stride`` grid (render pixel + mu <-> its model point), weights
    ``W = sigmoid(c) s (1 - exp(-R / b))`` (or ``W / (2 b^2)``), zero off the silhouette.

    Returns ``(T (B, 4, 4) float64, ok (B,) bool)``; samples whose LM fails (too few weighted
    points, singular system) keep ``T_init`` and ``ok = False`` (no gradient from them).
    """
    from coop_ros.geometry.pnp import lm_pnp

    B, S = out.flow.shape[0], out.flow.shape[1]
    o = stride // 2
    ys = torch.arange(o, S, stride, device=out.flow.device)
    xs = torch.arange(o, S, stride, device=out.flow.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    mu = out.flow[:, gy, gx].reshape(B, -1, 2)
    b = out.scale[:, gy, gx].reshape(B, -1)
    W = confidence_weights(out.certainty_logit[:, gy, gx].reshape(B, -1),
                           out.sensitivity[:, gy, gx].reshape(B, -1), b, radius_px)
    if weighting == "W_over_b2":
        W = W / (2 * b * b)
    m = render_mask[:, gy, gx].reshape(B, -1).to(W.dtype)
    W = W * m
    W = W / W.detach().sum(-1, keepdim=True).clamp_min(1e-12) * m.sum(-1, keepdim=True).clamp_min(1)
    grid = torch.stack((gx, gy), -1).reshape(1, -1, 2).to(mu.dtype)
    x2d = (grid + mu).double()
    X = xyz[:, gy, gx].reshape(B, -1, 3).double()
    K = K.double()
    T0 = T_init.double()
    ok = torch.ones(B, dtype=torch.bool, device=mu.device)
    try:
        res = lm_pnp(x2d, X, W.double(), K, T0, iterations=iterations, gauss_newton_final=True)
        return res.T, ok
    except (EstimationError, InputError):
        pass
    Ts = []
    for i in range(B):
        try:
            r = lm_pnp(x2d[i:i + 1], X[i:i + 1], W[i:i + 1].double(), K[i:i + 1], T0[i:i + 1],
                       iterations=iterations, gauss_newton_final=True)
            Ts.append(r.T[0])
        except (EstimationError, InputError):
            Ts.append(T0[i])
            ok[i] = False
    return torch.stack(Ts), ok


def refiner_loss(out: RefinerOutput, batch: dict, cfg: LossConfig | None = None,
                 stride: int = 4, with_pose: bool = True) -> tuple[torch.Tensor, dict]:
    """Flow NLL + certainty BCE + disentangled pose loss (module docstring).

    batch: flow (B, S, S, 2), cert (B, S, S), flow_valid (B, S, S) bool, render_mask (B, S, S),
    xyz (B, S, S, 3), K (B, 3, 3), T_init / T_gt (B, 4, 4), points (B, P, 3), diameter (B,).
    Metrics: ``epe`` (mean end-point error [px] on valid pixels), ``epe_init`` (EPE of zero
    flow), ``cert_acc``, and with the pose: ``rot_deg`` / ``trans_rel`` after PnP vs
    ``rot_deg_init`` / ``trans_rel_init`` (translation error / diameter), ``pose_ok``.
    """
    cfg = cfg or LossConfig()
    valid = batch["flow_valid"]
    nv = valid.sum().clamp_min(1)
    nll = (laplace_nll(out.flow, out.scale, batch["flow"]) * valid).sum() / nv
    rm = batch["render_mask"].to(out.certainty_logit.dtype)
    bce = (F.binary_cross_entropy_with_logits(out.certainty_logit, batch["cert"],
                                              reduction="none") * rm).sum() / rm.sum().clamp_min(1)
    loss = cfg.flow * nll + cfg.cert * bce
    m = {}
    with torch.no_grad():
        err = (out.flow - batch["flow"]).norm(dim=-1)
        m["epe"] = float((err * valid).sum() / nv)
        m["epe_init"] = float((batch["flow"].norm(dim=-1) * valid).sum() / nv)
        pc = (out.certainty_logit > 0) == (batch["cert"] > 0.5)
        m["cert_acc"] = float((pc * rm).sum() / rm.sum().clamp_min(1))
        m["b_mean"] = float((out.scale * valid).sum() / nv)
    if with_pose and cfg.pose > 0:
        T, ok = pose_from_flow(out, batch["xyz"], batch["render_mask"], batch["K"],
                               batch["T_init"], cfg.radius_px, stride, cfg.pose_lm_iterations,
                               cfg.pose_weighting)
        pl, parts = disentangled_pose_loss(T, batch["T_gt"], batch["points"], batch["K"],
                                           batch["diameter"])
        pl = pl.clamp_max(2.0)   # a wild LM solution must not dominate (its gradient is cut)
        okf = ok.to(pl.dtype)
        pose = (pl * okf).sum() / okf.sum().clamp_min(1)
        loss = loss + cfg.pose * pose.to(loss.dtype)
        with torch.no_grad():
            Tg = batch["T_gt"].double()
            D = batch["diameter"].double()
            m["pose"] = float(pose.detach())
            m["pose_ok"] = float(okf.mean())
            m["rot_deg"] = float(rotation_error_deg(T[:, :3, :3], Tg[:, :3, :3]).mean())
            m["rot_deg_init"] = float(rotation_error_deg(batch["T_init"][:, :3, :3].double(),
                                                         Tg[:, :3, :3]).mean())
            m["trans_rel"] = float(((T[:, :3, 3] - Tg[:, :3, 3]).norm(dim=-1) / D).mean())
            m["trans_rel_init"] = float(((batch["T_init"][:, :3, 3].double() - Tg[:, :3, 3])
                                         .norm(dim=-1) / D).mean())
    m.update({"loss": float(loss.detach()), "nll": float(nll.detach()), "bce": float(bce.detach())})
    return loss, m


# ==============================================================================================
# selection
# ==============================================================================================
def selection_loss(logits: torch.Tensor, label: torch.Tensor, cfg: LossConfig | None = None
                   ) -> tuple[torch.Tensor, dict]:
    """BCE on (B,) logits vs (B,) labels in {0, 1}. Metrics: acc, pos_rate, tpr, tnr."""
    cfg = cfg or LossConfig()
    pw = torch.tensor(cfg.pos_weight, dtype=logits.dtype, device=logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, label.to(logits.dtype), pos_weight=pw)
    with torch.no_grad():
        pred = logits > 0
        lab = label > 0.5
        acc = (pred == lab).float().mean()
        tpr = (pred & lab).sum().float() / lab.sum().clamp_min(1)
        tnr = (~pred & ~lab).sum().float() / (~lab).sum().clamp_min(1)
    return loss, {"loss": float(loss.detach()), "acc": float(acc), "tpr": float(tpr), "tnr": float(tnr),
                  "pos_rate": float(lab.float().mean())}
