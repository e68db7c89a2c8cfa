"""Co-op heads on the CroCo backbone: coarse (patch class + offset) and DPT refiner (probabilistic flow).

Pixel convention (as :mod:`coop_ros.geometry.camera`): crop pixel coordinates ``uv = (u, v)``
= (column, row) with pixel centres at integers; a ``H x W`` crop spans ``[-0.5, W - 0.5] x
[-0.5, H - 0.5]``. Patch ``(r, c)`` (row r, column c of the ``H/16 x W/16`` grid, token index
``n = r * (W/16) + c``) covers pixels ``16c .. 16c + 15`` and ``16r .. 16r + 15``; its centre is
``uv = (16c + 7.5, 16r + 7.5)``.

Coarse "hybrid" correspondence (Co-op, CVPR 2025: match position = (patch centre + U) x 16), in
continuous patch units where patch ``c'`` spans ``[c', c' + 1)`` (0 = the crop's outer edge):
the point matched by query patch ``(r, c)``'s centre is ``(c' + 0.5 + U_x, r' + 0.5 + U_y)``,
``U`` in ``[-0.5, 0.5]^2``; times 16 this is in edge-based pixels, so in pixel-centre
coordinates

    template_uv = ((c' + 0.5 + U_x) * 16 - 0.5, (r' + 0.5 + U_y) * 16 - 0.5)
    query_uv    = (16 c + 7.5, 16 r + 7.5)

``U = 0`` is the template patch centre; ``U = -0.5`` / ``+0.5`` its outer edges. Class index
``j = r' * (W/16) + c'``; class ``K`` (the last, ``K = (H/16)(W/16)``) = "no match / occluded".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from coop_ros.errors import InputError
from coop_ros.nets.croco import CroCoConfig, CroCoNet, CroCoOutput, Encoding, as_config

__all__ = [
    "CoarseHead", "CoarseOutput", "CoarseNet", "template_scores", "Correspondences",
    "logits_to_correspondences", "patch_targets", "query_patch_centres",
    "dpt_hooks", "DPTRefinerHead", "RefinerOutput", "RefinerNet", "confidence_weights",
]


def _grid2(grid) -> tuple[int, int]:
    if isinstance(grid, int):
        return grid, grid
    g = tuple(int(v) for v in grid)
    if len(g) != 2:
        raise InputError(f"grid must be an int or (rows, cols), got {grid!r}")
    return g


# ==============================================================================================
# Coarse head
# ==============================================================================================
@dataclass
class CoarseOutput:
    """Coarse head output for B (query, template) pairs.

    logits: (B, N, K + 1) float, per query patch (raster order): K template patches (raster
        order), then "no match" (index K).
    offsets: (B, N, 2) float in [-0.5, 0.5], ``U = (U_x, U_y)`` (column, row) in patch units
        inside the matched template patch.
    """

    logits: torch.Tensor
    offsets: torch.Tensor


class CoarseHead(nn.Module):
    """Per query patch: a class over the K template patches + "no match", and a sub-patch offset.

    Two classifiers:

    * ``'pointer'`` (default): ``logit[i, j] = <Wq d_i, Wk t_j> / sqrt(key_dim)`` between query
      decoder token ``d_i`` (which has cross-attended to the template) and template encoder token
      ``t_j``; the "no match" logit is ``w . d_i + b``. K follows the template's token count, so
      any crop size works. Chosen because the backbone has no absolute position embedding (RoPE
      is relative): a fixed linear layer over absolute template-patch indices would have to
      recover absolute positions from border effects, while the pointer compares contents.
    * ``'linear'``: the literal reading, ``Linear(dec_dim, K + 1)`` with K fixed at construction
      (``num_patches``, 196 at 224 px).

    Offsets: ``0.5 * tanh(Linear(d_i))`` in [-0.5, 0.5]^2.

    Args:
        dec_dim: decoder width; enc_dim: encoder width (template tokens).
        classifier: ``'pointer'`` or ``'linear'``; key_dim: pointer projection width;
        num_patches: K for ``'linear'``.
    """

    def __init__(self, dec_dim: int, enc_dim: int, classifier: str = "pointer", key_dim: int = 256,
                 num_patches: int | None = None):
        super().__init__()
        if classifier not in ("pointer", "linear"):
            raise InputError(f"CoarseHead.classifier must be 'pointer' or 'linear', got {classifier!r}")
        self.classifier = classifier
        self.offset = nn.Linear(dec_dim, 2)
        if classifier == "pointer":
            self.key_dim = key_dim
            self.query_proj = nn.Linear(dec_dim, key_dim)
            self.key_proj = nn.Linear(enc_dim, key_dim)
            self.no_match = nn.Linear(dec_dim, 1)
        else:
            if not num_patches or num_patches <= 0:
                raise InputError("CoarseHead(classifier='linear') needs num_patches > 0")
            self.num_patches = int(num_patches)
            self.cls = nn.Linear(dec_dim, self.num_patches + 1)

    def forward(self, dec: torch.Tensor, template_tokens: torch.Tensor | None = None) -> CoarseOutput:
        """dec (B, N, dec_dim) query decoder tokens; template_tokens (B, K, enc_dim) (pointer only).

        Returns :class:`CoarseOutput` with logits (B, N, K + 1), offsets (B, N, 2).
        """
        offsets = 0.5 * torch.tanh(self.offset(dec))
        if self.classifier == "pointer":
            if template_tokens is None:
                raise InputError("the pointer coarse head needs the template's encoder tokens")
            q = self.query_proj(dec)
            k = self.key_proj(template_tokens).expand(dec.shape[0], -1, -1)
            match = (q @ k.transpose(1, 2)) / math.sqrt(self.key_dim)
            logits = torch.cat((match, self.no_match(dec)), dim=-1)
        else:
            if template_tokens is not None and template_tokens.shape[1] != self.num_patches:
                raise InputError(f"the linear coarse head was built for {self.num_patches} template "
                                 f"patches, got {template_tokens.shape[1]}")
            logits = self.cls(dec)
        return CoarseOutput(logits, offsets)


def template_scores(logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Score of each template from the classification confidence.

    ``score = sum_i w_i max_{j < K} p_ij / sum_i w_i``: the mean over query patches of the
    probability of the best TEMPLATE patch (the "no match" class excluded), ``p = softmax(logits)``.
    Why this one: it rewards a template both for explaining many query patches (patches the model
    sends to "no match" contribute ~0) and for explaining them confidently; the share of
    non-"no match" patches alone is a hard count (ties, blind to confidence), and the mean max-prob
    over matched patches alone would rank one confident patch above a full confident match.
    Query patches that are background get "no match" for every template, so they shift all
    scores alike; ``weights`` (e.g. the detection mask's coverage per patch) can exclude them.

    Args:
        logits: (B, N, K + 1) or (N, K + 1).
        weights: optional (B, N) or (N,) non-negative per-query-patch weights.
    Returns:
        (B,) (or a 0-d tensor) in [0, 1].
    """
    p = torch.softmax(logits.float(), dim=-1)[..., :-1].amax(dim=-1)  # (..., N)
    if weights is None:
        return p.mean(dim=-1)
    w = weights.to(p.dtype)
    return (p * w).sum(-1) / w.sum(-1).clamp_min(1e-12)


class Correspondences(NamedTuple):
    """2D-2D correspondences of one (query, template) pair in crop pixels (pixel centres at integers).

    query_uv: (M, 2) float32 query pixel (u, v) = patch centres.
    template_uv: (M, 2) float32 matched template pixel (u, v).
    confidence: (M,) float32 softmax probability of the chosen template patch.
    """

    query_uv: torch.Tensor
    template_uv: torch.Tensor
    confidence: torch.Tensor


def query_patch_centres(grid: int | Sequence[int] = 14, patch: int = 16, device=None) -> torch.Tensor:
    """Centres of the patches, raster order: (rows * cols, 2) float32 (u, v) = (16c + 7.5, 16r + 7.5)."""
    gh, gw = _grid2(grid)
    r, c = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    return torch.stack(((c.reshape(-1) + 0.5) * patch - 0.5, (r.reshape(-1) + 0.5) * patch - 0.5),
                       dim=-1).float()


def logits_to_correspondences(logits: torch.Tensor, offsets: torch.Tensor, patch: int = 16,
                              grid: int | Sequence[int] = 14, min_prob: float = 0.0) -> Correspondences:
    """Query-patch -> template-pixel correspondences from the coarse head of ONE pair.

    For query patch ``n = r * cols + c`` with argmax class ``j = r' * cols + c'`` (not "no match")
    and probability >= ``min_prob``: query pixel ``(16c + 7.5, 16r + 7.5)`` matches template pixel
    ``((c' + 0.5 + U_x) * 16 - 0.5, (r' + 0.5 + U_y) * 16 - 0.5)`` (module docstring). Query and
    template crops have the same grid.

    Args:
        logits: (N, K + 1) with N = K = rows * cols.
        offsets: (N, 2) in [-0.5, 0.5] (U_x, U_y).
        patch: patch size in pixels; grid: rows, cols (int = square).
        min_prob: keep matches whose class probability is >= this (0 keeps every patch whose
            argmax is a template patch).
    Returns:
        :class:`Correspondences` (M <= N rows), float32 on the logits' device.
    """
    gh, gw = _grid2(grid)
    K = gh * gw
    if logits.ndim != 2 or logits.shape != (K, K + 1):
        raise InputError(f"logits must be (N, K + 1) = ({K}, {K + 1}) for a {gh}x{gw} grid, "
                         f"got {tuple(logits.shape)}")
    if offsets.shape != (K, 2):
        raise InputError(f"offsets must be ({K}, 2), got {tuple(offsets.shape)}")
    prob = torch.softmax(logits.float(), dim=-1)
    conf, cls = prob.max(dim=-1)
    keep = (cls < K) & (conf >= min_prob)
    q_uv = query_patch_centres((gh, gw), patch, logits.device)[keep]
    j = cls[keep]
    U = offsets.float()[keep]
    t_uv = torch.stack((((j % gw).float() + 0.5 + U[:, 0]) * patch - 0.5,
                        ((j // gw).float() + 0.5 + U[:, 1]) * patch - 0.5), dim=-1)
    return Correspondences(q_uv, t_uv, conf[keep])


def patch_targets(template_uv: torch.Tensor, valid: torch.Tensor, patch: int = 16,
                  grid: int | Sequence[int] = 14) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets, the exact inverse of :func:`logits_to_correspondences`.

    Args:
        template_uv: (..., N, 2) template pixel (u, v) matched by each query patch centre.
        valid: (..., N) bool: the query patch centre sees the object and its match is visible.
    Returns:
        class (..., N) int64 in [0, K] (K = "no match" where invalid or outside the crop) and
        offset (..., N, 2) float32 in [-0.5, 0.5) (0 where "no match").
    """
    gh, gw = _grid2(grid)
    K = gh * gw
    x = (template_uv[..., 0].float() + 0.5) / patch  # continuous patch units
    y = (template_uv[..., 1].float() + 0.5) / patch
    c, r = torch.floor(x), torch.floor(y)
    inside = valid.bool() & (c >= 0) & (c < gw) & (r >= 0) & (r < gh)
    cls = torch.where(inside, (r * gw + c).long(), torch.full_like(r, K).long())
    off = torch.stack((x - c - 0.5, y - r - 0.5), dim=-1)
    off = torch.where(inside[..., None], off, torch.zeros_like(off))
    return cls, off


class CoarseNet(nn.Module):
    """Co-op coarse model: CroCo backbone (query attends to template) + :class:`CoarseHead`.

    Args:
        backbone: CroCo configuration (record, registry name or kwargs); paper: ``'large'``.
        classifier, key_dim: see :class:`CoarseHead` (``num_patches`` = the backbone's nominal
            grid for ``'linear'``).
    """

    arch = "coarse"

    def __init__(self, backbone: CroCoConfig | str | Mapping[str, Any] = "large",
                 classifier: str = "pointer", key_dim: int = 256):
        super().__init__()
        cfg = as_config(backbone)
        self.backbone = CroCoNet(cfg)
        self.head = CoarseHead(cfg.dec_embed_dim, cfg.enc_embed_dim, classifier=classifier,
                               key_dim=key_dim, num_patches=cfg.num_patches)
        self._kwargs = {"classifier": classifier, "key_dim": int(key_dim)}

    def get_config(self) -> dict[str, Any]:
        """Constructor kwargs: ``CoarseNet(**model.get_config())`` rebuilds this architecture."""
        return {"backbone": self.backbone.get_config(), **self._kwargs}

    def encode(self, img: torch.Tensor) -> Encoding:
        """(B, 3, H, W) -> :class:`Encoding` (cache the templates' once per object)."""
        return self.backbone.encode(img)

    def forward_features(self, query: Encoding, templates: Encoding) -> CoarseOutput:
        """Coarse outputs from cached encodings (either may have batch 1 and is broadcast).

        Returns logits (B, N, K + 1), offsets (B, N, 2) with B = max of the two batches.
        """
        dec = self.backbone.decode(query, templates)
        return self.head(dec, templates.expand(dec.shape[0]).tokens)

    def forward(self, query: torch.Tensor, template: torch.Tensor) -> CoarseOutput:
        """query (B, 3, H, W), template (B, 3, H, W) float -> :class:`CoarseOutput`."""
        out = self.backbone(query, template)
        return self.head(out.dec, out.enc2.tokens)


# ==============================================================================================
# DPT refiner head
# ==============================================================================================
def dpt_hooks(dec_depth: int) -> list[int]:
    """Decoder blocks (1-based) whose outputs feed the DPT head, after the last encoder block.

    ``round(dec_depth * j / 3)`` for j = 1, 2, 3: blocks 4, 8, 12 for the 12-block decoder
    (exactly CroCo-Flow's hooks), evenly spaced otherwise: 3, 5, 8 for 8 blocks (CroCo's own rule
    would take 2, 5, 8 and encoder block 11 instead of the last), 1, 3, 4 for 4 blocks.
    """
    if dec_depth < 3:
        raise InputError(f"the DPT head needs a decoder of at least 3 blocks, got {dec_depth}")
    return [int(math.floor(dec_depth * j / 3 + 0.5)) for j in (1, 2, 3)]


class _ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class _FusionBlock(nn.Module):
    """DPT feature fusion: (x [+ rcu1(skip)]) -> rcu2 -> x2 bilinear upsampling -> 1x1 conv."""

    def __init__(self, features: int):
        super().__init__()
        self.resConfUnit1 = _ResidualConvUnit(features)
        self.resConfUnit2 = _ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x, skip=None):
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


@dataclass
class RefinerOutput:
    """Per-pixel refiner maps on the RENDER crop's pixel grid (img1), all float.

    flow: (B, H, W, 2) Laplace mean mu in pixels, (du, dv): render pixel (u, v) matches query
        pixel (u + du, v + dv).
    scale: (B, H, W) Laplace scale b > 0 in pixels (softplus + b_min).
    certainty_logit: (B, H, W) logit of "this render pixel is visible in the query".
    sensitivity: (B, H, W) >= 0 (softplus): pose-informativeness, learned through the pose loss.
    """

    flow: torch.Tensor
    scale: torch.Tensor
    certainty_logit: torch.Tensor
    sensitivity: torch.Tensor


def confidence_weights(certainty_logit: torch.Tensor, sensitivity: torch.Tensor, b: torch.Tensor,
                       R: float | torch.Tensor) -> torch.Tensor:
    """Flow confidence ``W = sigmoid(c) * s * (1 - exp(-R / b))`` (all inputs broadcastable).

    ``1 - exp(-R / b) = P(|y - mu|_1 < R)`` for a Laplace flow of scale b (Co-op's flow confidence), computed
    as ``-expm1(-R / b)``. W lies in [0, s] and grows with R.

    Args:
        certainty_logit: (B, H, W); sensitivity: (B, H, W) >= 0; b: (B, H, W) > 0 pixels;
        R: radius in pixels (>= 0), float or broadcastable tensor.
    Returns:
        (B, H, W) weights, dtype of the inputs.
    """
    if not torch.is_tensor(R):
        R = torch.as_tensor(R, dtype=b.dtype, device=b.device)
    if bool((R < 0).any()):
        raise InputError(f"confidence radius R must be >= 0 px, got {R}")
    return torch.sigmoid(certainty_logit) * sensitivity * (-torch.expm1(-R / b))


class DPTRefinerHead(nn.Module):
    """DPT head (CroCo-Flow / MultiMAE ``DPTOutputAdapter`` layout) giving the refiner's per-pixel maps.

    Inputs are 4 token maps on the 1/16 grid: the last encoder block's tokens (enc_dim) and the
    outputs of decoder blocks :func:`dpt_hooks` (dec_dim). They are projected to ``layer_dims``
    and resampled to 1/4, 1/8, 1/16, 1/32, reduced to ``feature_dim`` (256), fused coarse to fine
    (RefineNet blocks, each x2 bilinear), then a conv head upsamples x2 to full resolution and
    outputs 5 channels: mu (2), b (softplus + b_min), certainty logit, sensitivity (softplus).

    Args:
        enc_dim, dec_dim: token widths; layer_dims: 4 widths of the reassembled maps (CroCo's
        default 96, 192, 384, 768); feature_dim: fusion width (256); last_dim: head width (32);
        b_min: lower bound of b in pixels.
    """

    num_outputs = 5

    def __init__(self, enc_dim: int, dec_dim: int, layer_dims: Sequence[int] = (96, 192, 384, 768),
                 feature_dim: int = 256, last_dim: int = 32, b_min: float = 1e-2):
        super().__init__()
        if len(layer_dims) != 4:
            raise InputError(f"DPTRefinerHead.layer_dims must have 4 entries, got {list(layer_dims)}")
        d = [int(v) for v in layer_dims]
        dims_in = [enc_dim, dec_dim, dec_dim, dec_dim]
        self.b_min = float(b_min)
        self.act_postprocess = nn.ModuleList([
            nn.Sequential(nn.Conv2d(dims_in[0], d[0], 1), nn.ConvTranspose2d(d[0], d[0], 4, stride=4)),
            nn.Sequential(nn.Conv2d(dims_in[1], d[1], 1), nn.ConvTranspose2d(d[1], d[1], 2, stride=2)),
            nn.Sequential(nn.Conv2d(dims_in[2], d[2], 1)),
            nn.Sequential(nn.Conv2d(dims_in[3], d[3], 1), nn.Conv2d(d[3], d[3], 3, stride=2, padding=1)),
        ])
        self.layer_rn = nn.ModuleList([nn.Conv2d(d[i], feature_dim, 3, padding=1, bias=False)
                                       for i in range(4)])
        self.refinenet = nn.ModuleList([_FusionBlock(feature_dim) for _ in range(4)])
        self.head = nn.Sequential(
            nn.Conv2d(feature_dim, feature_dim // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(feature_dim // 2, last_dim, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(last_dim, self.num_outputs, 1),
        )

    def forward(self, tokens: Sequence[torch.Tensor], grid: tuple[int, int]) -> RefinerOutput:
        """tokens: 4 tensors (B, gh * gw, C_i); grid (gh, gw) -> :class:`RefinerOutput` at (16 gh, 16 gw)."""
        if len(tokens) != 4:
            raise InputError(f"the DPT head takes 4 token maps, got {len(tokens)}")
        gh, gw = grid
        maps = []
        for i, t in enumerate(tokens):
            B, N, C = t.shape
            if N != gh * gw:
                raise InputError(f"DPT hook {i}: {N} tokens do not form a {gh}x{gw} grid")
            x = t.transpose(1, 2).reshape(B, C, gh, gw)
            maps.append(self.layer_rn[i](self.act_postprocess[i](x)))
        p = self.refinenet[3](maps[3])[:, :, :maps[2].shape[2], :maps[2].shape[3]]
        p = self.refinenet[2](p, maps[2])
        p = self.refinenet[1](p, maps[1])
        p = self.refinenet[0](p, maps[0])
        out = self.head(p)  # (B, 5, 16 gh, 16 gw)
        return RefinerOutput(
            flow=out[:, 0:2].permute(0, 2, 3, 1),
            scale=F.softplus(out[:, 2]) + self.b_min,
            certainty_logit=out[:, 3],
            sensitivity=F.softplus(out[:, 4]),
        )


class RefinerNet(nn.Module):
    """Co-op refiner: CroCo backbone (render attends to query) + :class:`DPTRefinerHead`.

    Args:
        backbone: CroCo configuration; paper: ``'large'``.
        layer_dims, feature_dim, last_dim, b_min: see :class:`DPTRefinerHead`.
    """

    arch = "refiner"

    def __init__(self, backbone: CroCoConfig | str | Mapping[str, Any] = "large",
                 layer_dims: Sequence[int] = (96, 192, 384, 768), feature_dim: int = 256,
                 last_dim: int = 32, b_min: float = 1e-2):
        super().__init__()
        cfg = as_config(backbone)
        self.backbone = CroCoNet(cfg)
        self.hooks = dpt_hooks(cfg.dec_depth)
        self.head = DPTRefinerHead(cfg.enc_embed_dim, cfg.dec_embed_dim, layer_dims, feature_dim,
                                   last_dim, b_min)
        self._kwargs = {"layer_dims": [int(v) for v in layer_dims], "feature_dim": int(feature_dim),
                        "last_dim": int(last_dim), "b_min": float(b_min)}

    def get_config(self) -> dict[str, Any]:
        """Constructor kwargs: ``RefinerNet(**model.get_config())`` rebuilds this architecture."""
        return {"backbone": self.backbone.get_config(), **self._kwargs}

    def head_forward(self, out: CroCoOutput) -> RefinerOutput:
        """DPT head on a backbone output (hooks: last encoder block + decoder blocks ``self.hooks``)."""
        toks = [out.enc1.tokens] + [out.dec_all[h - 1] for h in self.hooks]
        return self.head(toks, out.enc1.grid)

    def forward_features(self, render: Encoding, query: Encoding) -> RefinerOutput:
        """Refiner maps from cached encodings (the query's is reused across iterations / hypotheses)."""
        return self.head_forward(self.backbone.forward_features(render, query))

    def forward(self, render: torch.Tensor, query: torch.Tensor) -> RefinerOutput:
        """render (B, 3, H, W), query (B, 3, H, W) float crops -> per-pixel maps on the render grid."""
        return self.head_forward(self.backbone(render, query))
