"""Transformer blocks of the CroCo v2 backbone (plain torch; parameter names = CroCo's).

Parameter names are those of CroCo v2 ``models/blocks.py`` so that a public CroCo state_dict
loads without renaming: ``attn.qkv``, ``attn.proj``, ``cross_attn.{projq,projk,projv,proj}``,
``mlp.{fc1,fc2}``, ``norm1/norm2/norm3/norm_y``. Differences from CroCo, none of which changes
the numbers: no dropout / drop-path (CroCo v2 uses 0), and attention runs through
``torch.nn.functional.scaled_dot_product_attention`` (same scale ``head_dim ** -0.5``; it picks
the flash / memory-efficient kernels on GPU).

Shapes: tokens ``(B, N, C)`` float; positions ``(B, N, 2)`` int64 ``(y, x)`` patch coordinates
(see :mod:`coop_ros.nets.rope`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coop_ros.nets.rope import RoPE2D

__all__ = ["Mlp", "Attention", "CrossAttention", "Block", "DecoderBlock"]


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    B, N, C = x.shape
    return x.reshape(B, N, heads, C // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    B, H, N, d = x.shape
    return x.transpose(1, 2).reshape(B, N, H * d)


class Mlp(nn.Module):
    """Two-layer MLP ``fc2(GELU(fc1(x)))``: (B, N, C) -> (B, N, C_out)."""

    def __init__(self, in_features: int, hidden_features: int | None = None,
                 out_features: int | None = None):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with RoPE on q and k.

    Args:
        dim: token width C (divisible by ``num_heads``).
        num_heads: number of heads.
        qkv_bias: bias of the qkv projection (True in CroCo's encoder and decoder).
        rope: a :class:`RoPE2D` or None (no positional encoding).
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True,
                 rope: RoPE2D | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def _qkv(self, x: torch.Tensor, xpos: torch.Tensor):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, d)
        if self.rope is not None:
            q = self.rope(q, xpos)
            k = self.rope(k, xpos)
        return q, k, v

    def attention_logits(self, x: torch.Tensor, xpos: torch.Tensor) -> torch.Tensor:
        """Pre-softmax logits ``q . k * scale``: (B, heads, N, N) (for inspection and tests)."""
        q, k, _ = self._qkv(x, xpos)
        return (q @ k.transpose(-2, -1)) * self.scale

    def forward(self, x: torch.Tensor, xpos: torch.Tensor) -> torch.Tensor:
        """x (B, N, C), xpos (B, N, 2) -> (B, N, C)."""
        q, k, v = self._qkv(x, xpos)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(_merge_heads(out))


class CrossAttention(nn.Module):
    """Multi-head cross-attention (queries from one image, keys / values from the other) with RoPE.

    RoPE rotates q by the query tokens' positions and k by the key tokens' positions, so the
    logit of a pair depends on the offset between the two tokens' grid positions.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True,
                 rope: RoPE2D | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def _qk(self, query, key, qpos, kpos):
        q = _split_heads(self.projq(query), self.num_heads)
        k = _split_heads(self.projk(key), self.num_heads)
        if self.rope is not None:
            q = self.rope(q, qpos)
            k = self.rope(k, kpos)
        return q, k

    def attention_logits(self, query, key, qpos, kpos) -> torch.Tensor:
        """Pre-softmax logits: (B, heads, Nq, Nk)."""
        q, k = self._qk(query, key, qpos, kpos)
        return (q @ k.transpose(-2, -1)) * self.scale

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                qpos: torch.Tensor, kpos: torch.Tensor) -> torch.Tensor:
        """query (B, Nq, C), key / value (B, Nk, C), qpos (B, Nq, 2), kpos (B, Nk, 2) -> (B, Nq, C)."""
        q, k = self._qk(query, key, qpos, kpos)
        v = _split_heads(self.projv(value), self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(_merge_heads(out))


class Block(nn.Module):
    """Pre-norm ViT encoder block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 norm_eps: float = 1e-6, rope: RoPE2D | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, rope=rope)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, xpos: torch.Tensor) -> torch.Tensor:
        """x (B, N, C), xpos (B, N, 2) -> (B, N, C)."""
        x = x + self.attn(self.norm1(x), xpos)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """CroCo decoder block: self-attention, cross-attention to the other image, MLP (all pre-norm).

    ``norm_y`` normalises the other image's tokens before they serve as keys / values
    (CroCo's ``norm_im2_in_dec=True``; Identity, without parameters, when ``norm_mem=False``).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 norm_eps: float = 1e-6, norm_mem: bool = True, rope: RoPE2D | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, rope=rope)
        self.cross_attn = CrossAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, rope=rope)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=norm_eps) if norm_mem else nn.Identity()

    def forward(self, x: torch.Tensor, y: torch.Tensor, xpos: torch.Tensor,
                ypos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, Nx, C) this image, y (B, Ny, C) other image -> (x', y) with y unchanged."""
        x = x + self.attn(self.norm1(x), xpos)
        y_ = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), y_, y_, xpos, ypos)
        x = x + self.mlp(self.norm3(x))
        return x, y
