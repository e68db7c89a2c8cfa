"""2D rotary position embedding (RoPE), as in CroCo v2 (``models/pos_embed.py::RoPE2D``).

Convention (identical to CroCo v2, so pre-trained CroCo weights see the same rotations):

* a token's position is ``(y, x)`` = (patch row, patch column) of the 16-px patch grid;
* the head dimension ``D`` is split in two halves: the FIRST half is rotated by ``y``, the SECOND
  half by ``x``;
* inside each half of size ``d = D / 2``, the 1D RoPE uses the "rotate half" layout (pairs are
  ``(i, i + d/2)``, not interleaved) with frequencies ``freq ** (-2 i / d)``, ``i = 0 .. d/2 - 1``
  (``freq`` = 100 for CroCo v2 "RoPE100").

Because a rotation by angle ``a`` applied to q and by ``b`` to k gives ``q . k`` depending only on
``a - b``, attention logits depend only on the relative position of the two tokens.

CroCo looks up cos / sin tables by integer position; here the angles are computed directly
(``pos * inv_freq``, in float32 or float64), which gives the same numbers for integer positions,
also works for negative or fractional positions, and has no state (no cache, no buffers).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["RoPE2D", "grid_positions"]


def grid_positions(batch: int, grid_h: int, grid_w: int, device=None) -> torch.Tensor:
    """Token positions of a ``grid_h x grid_w`` patch grid in row-major (raster) order.

    Returns:
        (batch, grid_h * grid_w, 2) int64: ``[..., 0]`` = row y, ``[..., 1]`` = column x; token
        ``n = y * grid_w + x`` (the order of ``PatchEmbed``'s flattened tokens and of CroCo's
        ``PositionGetter``).
    """
    y = torch.arange(grid_h, device=device)
    x = torch.arange(grid_w, device=device)
    pos = torch.cartesian_prod(y, x)  # (h*w, 2), (y, x), row-major
    return pos.unsqueeze(0).expand(batch, -1, -1)


class RoPE2D(nn.Module):
    """2D rotary embedding applied to queries or keys.

    Args:
        freq: base frequency (CroCo v2: 100.0).
        F0: frequency scale (CroCo's ``F0``; 1.0 in all CroCo v2 models).
    """

    def __init__(self, freq: float = 100.0, F0: float = 1.0):
        super().__init__()
        self.freq = float(freq)
        self.F0 = float(F0)

    def extra_repr(self) -> str:
        return f"freq={self.freq:g}, F0={self.F0:g}"

    def _cos_sin(self, pos: torch.Tensor, d: int, dtype: torch.dtype):
        """cos, sin of shape (B, 1, N, d/2) for 1D positions ``pos`` (B, N); rows of a batch that
        is a broadcast view (stride 0, as from :func:`grid_positions`) are computed once."""
        if pos.shape[0] > 1 and pos.stride(0) == 0:
            pos = pos[:1]
        work = torch.float64 if dtype == torch.float64 else torch.float32
        inv_freq = 1.0 / (self.freq ** (torch.arange(0, d, 2, device=pos.device, dtype=work) / d))
        angles = (self.F0 * pos.to(work)[..., None] * inv_freq)[:, None]  # (B, 1, N, d/2)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate ``tokens`` by their 2D positions.

        Args:
            tokens: (B, heads, N, D) float (D divisible by 4).
            positions: (B, N, 2) integer or float, ``(y, x)`` per token.

        Returns:
            (B, heads, N, D), same dtype as ``tokens``.
        """
        D = tokens.shape[-1]
        if D % 4 != 0:
            raise ValueError(f"RoPE2D needs a head dimension divisible by 4, got {D}")
        if positions.ndim != 3 or positions.shape[-1] != 2 or positions.shape[1] != tokens.shape[2]:
            raise ValueError(f"positions must be (B, N={tokens.shape[2]}, 2), got {tuple(positions.shape)}")
        d = D // 2
        cy, sy = self._cos_sin(positions[..., 0], d, tokens.dtype)
        cx, sx = self._cos_sin(positions[..., 1], d, tokens.dtype)
        # halves (y, x), each in "rotate half" layout (a, b): (a cos - b sin, b cos + a sin)
        ay, by, ax, bx = tokens.chunk(4, dim=-1)
        return torch.cat((ay * cy - by * sy, by * cy + ay * sy,
                          ax * cx - bx * sx, bx * cx + ax * sx), dim=-1)
