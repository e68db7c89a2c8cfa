"""CroCo v2 backbone: patch embedding, siamese ViT encoder, cross-attention ViT decoder, RoPE100.

Module and parameter names are exactly CroCo v2's (``models/croco.py``), so a public CroCo v2
checkpoint loads by name (:func:`coop_ros.nets.checkpoint.load_croco_weights`)::

    patch_embed.proj                         Conv2d(3, enc_embed_dim, 16, stride 16)
    enc_blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}
    enc_norm
    decoder_embed                            Linear(enc_embed_dim, dec_embed_dim)
    dec_blocks.{i}.{norm1, attn.qkv, attn.proj, cross_attn.{projq, projk, projv, proj},
                    norm2, norm3, norm_y, mlp.fc1, mlp.fc2}
    dec_norm

No absolute positional embedding (CroCo v2 ``pos_embed='RoPE100'``): positions enter only through
2D RoPE on q and k of every attention, so any image size divisible by the patch size works.
CroCo's pre-training parts (``mask_token``, ``prediction_head``) are not part of this model.

Images are ``(B, 3, H, W)`` float tensors, normalised by the caller (CroCo used ImageNet mean /
std); ``H`` and ``W`` must be multiples of ``patch_size`` (16). Tokens are in raster order of
the ``(H/16, W/16)`` patch grid.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import torch
from torch import nn

from coop_ros.errors import InputError
from coop_ros.nets.blocks import Block, DecoderBlock
from coop_ros.nets.rope import RoPE2D, grid_positions

__all__ = ["CroCoConfig", "CONFIGS", "get_config", "PatchEmbed", "Encoding", "CroCoOutput",
           "CroCoNet", "as_config"]


@dataclass(frozen=True)
class CroCoConfig:
    """Constructor arguments of a CroCo v2 backbone (field names = CroCo's ``croco_kwargs``).

    Defaults are CroCo v2's own defaults (ViT-B encoder, ViT-S-like decoder), so a checkpoint's
    ``croco_kwargs`` maps onto this record directly (:meth:`from_croco_kwargs`).

    Attributes:
        img_size: nominal (H, W) in pixels (the model itself accepts any multiple of patch_size).
        patch_size: patch side in pixels (16).
        enc_embed_dim / enc_depth / enc_num_heads: encoder width, blocks, heads.
        dec_embed_dim / dec_depth / dec_num_heads: decoder width, blocks, heads.
        mlp_ratio: MLP hidden width / token width (4).
        norm_eps: LayerNorm epsilon (1e-6).
        pos_embed: ``'RoPE<freq>'`` (CroCo v2: ``'RoPE100'``); absolute ('cosine') is not supported.
        norm_im2_in_dec: normalise the other image's tokens in the decoder (``norm_y``).
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    enc_embed_dim: int = 768
    enc_depth: int = 12
    enc_num_heads: int = 12
    dec_embed_dim: int = 512
    dec_depth: int = 8
    dec_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    pos_embed: str = "RoPE100"
    norm_im2_in_dec: bool = True

    def __post_init__(self):
        img = self.img_size
        if isinstance(img, (int, float)) and not isinstance(img, bool):
            img = (img, img)
        try:
            img = tuple(int(v) for v in img)
        except TypeError:
            raise InputError(f"CroCoConfig.img_size must be an int or (H, W), got {self.img_size!r}") from None
        object.__setattr__(self, "img_size", img)
        for name in ("patch_size", "enc_embed_dim", "enc_depth", "enc_num_heads",
                     "dec_embed_dim", "dec_depth", "dec_num_heads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InputError(f"CroCoConfig.{name} must be a positive int, got {v!r}")
        if len(img) != 2 or min(img) <= 0 or img[0] % self.patch_size or img[1] % self.patch_size:
            raise InputError(f"CroCoConfig.img_size {img} must be 2 positive multiples of "
                             f"patch_size {self.patch_size}")
        for part in ("enc", "dec"):
            dim, heads = getattr(self, f"{part}_embed_dim"), getattr(self, f"{part}_num_heads")
            if dim % heads or (dim // heads) % 4:
                raise InputError(f"CroCoConfig.{part}_embed_dim {dim} / {part}_num_heads {heads} must "
                                 "give an integer head dimension divisible by 4 (2D RoPE)")
        if not (float(self.mlp_ratio) > 0):
            raise InputError(f"CroCoConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if not (0 < float(self.norm_eps) < 1):
            raise InputError(f"CroCoConfig.norm_eps must be in (0, 1), got {self.norm_eps!r}")
        _ = self.rope_freq  # validates pos_embed

    @property
    def rope_freq(self) -> float:
        """RoPE base frequency parsed from ``pos_embed`` (100.0 for ``'RoPE100'``)."""
        m = re.fullmatch(r"RoPE(\d+(?:\.\d*)?)", str(self.pos_embed))
        if m is None or float(m.group(1)) <= 0:
            raise InputError(f"CroCoConfig.pos_embed must be 'RoPE<freq>' (CroCo v2, e.g. 'RoPE100'), "
                             f"got {self.pos_embed!r}; absolute ('cosine', CroCo v1) is not supported")
        return float(m.group(1))

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (H / patch, W / patch) at the nominal image size: (14, 14) at 224."""
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def to_dict(self) -> dict[str, Any]:
        """Plain-type kwargs (img_size as a list), ``CroCoConfig(**d)`` rebuilds the record."""
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, what: str = "config") -> "CroCoConfig":
        """Build from kwargs; unknown keys raise InputError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"{what}: unknown CroCoConfig field(s) {unknown}")
        return cls(**dict(d))

    @classmethod
    def from_croco_kwargs(cls, kwargs: Mapping[str, Any]) -> "CroCoConfig":
        """Config of a public CroCo checkpoint's ``croco_kwargs`` (CroCo defaults for the rest).

        Pre-training-only arguments (``mask_ratio``) and ``norm_layer`` are ignored.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in kwargs.items() if k in known})


#: Registry of backbone configurations.
#: ``large``: ViT-L encoder + ViT-B decoder (Co-op coarse and refiner models; CroCo v2
#: "ViTLarge_BaseDecoder"). ``selection``: ViT-B encoder + ViT-S-like decoder (Co-op selection;
#: CroCo v2 "ViTBase_SmallDecoder"). ``tiny``: for CPU tests and small training runs.
CONFIGS: dict[str, CroCoConfig] = {
    "large": CroCoConfig(enc_embed_dim=1024, enc_depth=24, enc_num_heads=16,
                         dec_embed_dim=768, dec_depth=12, dec_num_heads=12),
    "selection": CroCoConfig(enc_embed_dim=768, enc_depth=12, enc_num_heads=12,
                             dec_embed_dim=512, dec_depth=8, dec_num_heads=16),
    "tiny": CroCoConfig(enc_embed_dim=192, enc_depth=4, enc_num_heads=3,
                        dec_embed_dim=128, dec_depth=4, dec_num_heads=4),
}


def get_config(name: str) -> CroCoConfig:
    """Registered configuration by name (``large``, ``selection``, ``tiny``)."""
    if name not in CONFIGS:
        raise InputError(f"unknown CroCo configuration {name!r}; known: {sorted(CONFIGS)}")
    return CONFIGS[name]


def as_config(config: "CroCoConfig | str | Mapping[str, Any] | None", **overrides) -> CroCoConfig:
    """Normalise a config given as a record, a registry name or a kwargs mapping (+ overrides)."""
    if config is None:
        cfg = CroCoConfig()
    elif isinstance(config, CroCoConfig):
        cfg = config
    elif isinstance(config, str):
        cfg = get_config(config)
    elif isinstance(config, Mapping):
        cfg = CroCoConfig.from_dict(config)
    else:
        raise InputError(f"CroCo config must be a CroCoConfig, a name or a dict, got {type(config).__name__}")
    if overrides:
        known = {f.name for f in dataclasses.fields(CroCoConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InputError(f"unknown CroCoConfig field(s) {unknown}")
        cfg = dataclasses.replace(cfg, **overrides)
    return cfg


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding: (B, 3, H, W) -> tokens (B, H/p * W/p, C), raster order."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """img (B, 3, H, W) float -> (tokens (B, N, C), pos (B, N, 2) int64 (y, x), grid (H/p, W/p))."""
        if img.ndim != 4 or img.shape[1] != self.in_chans:
            raise InputError(f"image batch must be (B, {self.in_chans}, H, W), got {tuple(img.shape)}")
        B, _, H, W = img.shape
        p = self.patch_size
        if H % p or W % p or H == 0 or W == 0:
            raise InputError(f"image size {H}x{W} is not a positive multiple of the patch size {p}")
        if not img.is_floating_point():
            raise InputError(f"image batch must be a float tensor (normalised RGB), got {img.dtype}")
        x = self.proj(img).flatten(2).transpose(1, 2)
        grid = (H // p, W // p)
        return x, grid_positions(B, grid[0], grid[1], device=img.device), grid


class Encoding(NamedTuple):
    """Encoder output of a batch of images (cacheable: e.g. an object's 42 templates).

    tokens: (B, N, enc_embed_dim) float, after ``enc_norm``.
    pos: (B, N, 2) int64 patch positions (y, x).
    grid: (H / 16, W / 16).
    """

    tokens: torch.Tensor
    pos: torch.Tensor
    grid: tuple[int, int]

    def expand(self, batch: int) -> "Encoding":
        """Broadcast a batch-1 encoding to ``batch`` (a view, no copy)."""
        if self.tokens.shape[0] == batch:
            return self
        if self.tokens.shape[0] != 1:
            raise InputError(f"cannot broadcast an encoding of batch {self.tokens.shape[0]} to {batch}")
        return Encoding(self.tokens.expand(batch, -1, -1), self.pos.expand(batch, -1, -1), self.grid)


@dataclass
class CroCoOutput:
    """Output of :meth:`CroCoNet.forward`.

    enc1, enc2: :class:`Encoding` of img1 / img2 (tokens after ``enc_norm``).
    dec: (B, N1, dec_embed_dim) decoder tokens of img1 attending to img2, after ``dec_norm``.
    dec_all: the dec_depth decoder block outputs (each (B, N1, dec_embed_dim)); the last one is
        ``dec`` (normed), the others are raw block outputs (CroCo's ``return_all_blocks``). The DPT
        head takes its decoder hooks from here.
    """

    enc1: Encoding
    enc2: Encoding
    dec: torch.Tensor
    dec_all: list[torch.Tensor] = field(default_factory=list)


def _init_weights(m: nn.Module) -> None:
    """CroCo's initialisation: xavier-uniform Linear, zero bias, unit LayerNorm."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class CroCoNet(nn.Module):
    """CroCo v2 encoder-decoder (no pre-training head).

    Args:
        config: :class:`CroCoConfig`, a registry name (``'large'``, ``'selection'``, ``'tiny'``)
            or a kwargs dict; defaults to ``CroCoConfig()`` (CroCo's defaults).
        **overrides: fields of CroCoConfig replacing those of ``config`` (so
            ``CroCoNet(**cfg.to_dict())`` rebuilds a model).
    """

    arch = "croco"

    def __init__(self, config: CroCoConfig | str | Mapping[str, Any] | None = None, **overrides):
        super().__init__()
        cfg = as_config(config, **overrides)
        self.config = cfg
        self.patch_embed = PatchEmbed(cfg.patch_size, 3, cfg.enc_embed_dim)
        self.rope = RoPE2D(freq=cfg.rope_freq)
        self.enc_blocks = nn.ModuleList([
            Block(cfg.enc_embed_dim, cfg.enc_num_heads, cfg.mlp_ratio, qkv_bias=True,
                  norm_eps=cfg.norm_eps, rope=self.rope) for _ in range(cfg.enc_depth)])
        self.enc_norm = nn.LayerNorm(cfg.enc_embed_dim, eps=cfg.norm_eps)
        self.decoder_embed = nn.Linear(cfg.enc_embed_dim, cfg.dec_embed_dim, bias=True)
        self.dec_blocks = nn.ModuleList([
            DecoderBlock(cfg.dec_embed_dim, cfg.dec_num_heads, cfg.mlp_ratio, qkv_bias=True,
                         norm_eps=cfg.norm_eps, norm_mem=cfg.norm_im2_in_dec, rope=self.rope)
            for _ in range(cfg.dec_depth)])
        self.dec_norm = nn.LayerNorm(cfg.dec_embed_dim, eps=cfg.norm_eps)
        self.apply(_init_weights)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    # -- configuration ------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor kwargs: ``CroCoNet(**model.get_config())`` rebuilds this architecture."""
        return self.config.to_dict()

    # -- encoder ------------------------------------------------------------------------------
    def encode(self, img: torch.Tensor) -> Encoding:
        """Encode a batch of images (shared weights for both images of a pair).

        Args:
            img: (B, 3, H, W) float, H and W multiples of 16.
        Returns:
            :class:`Encoding` with tokens (B, H/16 * W/16, enc_embed_dim) after ``enc_norm``.
        """
        x, pos, grid = self.patch_embed(img)
        for blk in self.enc_blocks:
            x = blk(x, pos)
        return Encoding(self.enc_norm(x), pos, grid)

    # -- decoder ------------------------------------------------------------------------------
    def decode(self, enc1: Encoding, enc2: Encoding, return_all: bool = False):
        """Decoder tokens of image 1 attending to image 2.

        A batch-1 encoding is broadcast against the other one (query vs K templates).

        Args:
            enc1, enc2: encodings, batch B or 1.
            return_all: also return every block's output.
        Returns:
            (B, N1, dec_embed_dim) after ``dec_norm``; with ``return_all`` a list of the dec_depth
            block outputs, the last one normed (CroCo's convention).
        """
        B = max(enc1.tokens.shape[0], enc2.tokens.shape[0])
        enc1, enc2 = enc1.expand(B), enc2.expand(B)
        if enc1.tokens.shape[-1] != self.config.enc_embed_dim or enc2.tokens.shape[-1] != self.config.enc_embed_dim:
            raise InputError(f"encodings must have width {self.config.enc_embed_dim}, got "
                             f"{enc1.tokens.shape[-1]} and {enc2.tokens.shape[-1]}")
        x = self.decoder_embed(enc1.tokens)
        y = self.decoder_embed(enc2.tokens)
        outs = []
        for blk in self.dec_blocks:
            x, y = blk(x, y, enc1.pos, enc2.pos)
            outs.append(x)
        outs[-1] = self.dec_norm(outs[-1])
        return outs if return_all else outs[-1]

    def forward_features(self, enc1: Encoding, enc2: Encoding) -> CroCoOutput:
        """Decode cached encodings: same output as :meth:`forward` without re-encoding."""
        dec_all = self.decode(enc1, enc2, return_all=True)
        B = dec_all[-1].shape[0]
        return CroCoOutput(enc1.expand(B), enc2.expand(B), dec_all[-1], dec_all)

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> CroCoOutput:
        """Encode both images (one batched pass when they have the same size) and decode img1.

        Args:
            img1, img2: (B, 3, H, W) float (batch 1 broadcasts against B).
        Returns:
            :class:`CroCoOutput` (enc1, enc2, dec (B, N1, dec_embed_dim), dec_all).
        """
        if img1.shape == img2.shape:
            B = img1.shape[0]
            e = self.encode(torch.cat((img1, img2), dim=0))
            enc1 = Encoding(e.tokens[:B], e.pos[:B], e.grid)
            enc2 = Encoding(e.tokens[B:], e.pos[B:], e.grid)
        else:
            enc1, enc2 = self.encode(img1), self.encode(img2)
        return self.forward_features(enc1, enc2)
