"""Image normalisation and precision shared by training (:mod:`coop_ros.train`) and the learned
backend.

CroCo was pre-trained on ImageNet-normalised RGB; Co-op's networks take the same input:
``x = (rgb / 255 - mean) / std`` with the ImageNet mean / std, channels first.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "to_input", "precision_context", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_input(rgb, device=None) -> torch.Tensor:
    """(S, S, 3) or (B, S, S, 3) uint8 RGB (numpy or tensor) -> (B, 3, S, S) float32 normalised."""
    x = torch.as_tensor(np.ascontiguousarray(rgb) if isinstance(rgb, np.ndarray) else rgb)
    if x.ndim == 3:
        x = x[None]
    x = x.to(device=device, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def precision_context(device_type: str, precision: str):
    """Context for a network forward in ``precision``: ``"bf16"`` = bfloat16 autocast on
    ``device_type`` (``"cpu"`` / ``"cuda"``), ``"fp32"`` = nothing. InputError otherwise."""
    import contextlib

    from coop_ros.errors import InputError

    if precision == "bf16":
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise InputError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return contextlib.nullcontext()
