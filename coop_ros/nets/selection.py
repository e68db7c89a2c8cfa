"""Co-op hypothesis selection model: (query crop, render at a refined hypothesis) -> score logit.

Backbone: the ``selection`` CroCo configuration (ViT-B encoder, 512-wide 8-block decoder, paper
supplementary 1.3). The query's decoder tokens (query attending to the render) are mean-pooled
and scored by a small MLP: ``LayerNorm -> Linear(dec, hidden) -> GELU -> Linear(hidden, 1)``.
The logit is trained with BCE (positive = hypothesis within a tight rotation / translation
threshold of the ground truth); higher = better hypothesis.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from coop_ros.nets.croco import CroCoConfig, CroCoNet, Encoding, as_config

__all__ = ["SelectionNet"]


class SelectionNet(nn.Module):
    """Scores (query, render) pairs.

    Args:
        backbone: CroCo configuration (record, registry name or kwargs); paper: ``'selection'``.
        hidden_dim: width of the scoring MLP.
    """

    arch = "selection"

    def __init__(self, backbone: CroCoConfig | str | Mapping[str, Any] = "selection",
                 hidden_dim: int = 256):
        super().__init__()
        cfg = as_config(backbone)
        self.backbone = CroCoNet(cfg)
        d = cfg.dec_embed_dim
        self.score_head = nn.Sequential(nn.LayerNorm(d, eps=cfg.norm_eps), nn.Linear(d, hidden_dim),
                                        nn.GELU(), nn.Linear(hidden_dim, 1))
        self._kwargs = {"hidden_dim": int(hidden_dim)}

    def get_config(self) -> dict[str, Any]:
        """Constructor kwargs: ``SelectionNet(**model.get_config())`` rebuilds this architecture."""
        return {"backbone": self.backbone.get_config(), **self._kwargs}

    def encode(self, img: torch.Tensor) -> Encoding:
        """(B, 3, H, W) -> :class:`Encoding` (encode the query once for all hypotheses)."""
        return self.backbone.encode(img)

    def forward_features(self, query: Encoding, render: Encoding) -> torch.Tensor:
        """Score logits (B,) from cached encodings (batch 1 broadcasts)."""
        dec = self.backbone.decode(query, render)  # (B, N, dec)
        return self.score_head(dec.mean(dim=1)).squeeze(-1)

    def forward(self, query: torch.Tensor, render: torch.Tensor) -> torch.Tensor:
        """query (B, 3, H, W), render (B, 3, H, W) float crops -> (B,) float score logits."""
        return self.score_head(self.backbone(query, render).dec.mean(dim=1)).squeeze(-1)
