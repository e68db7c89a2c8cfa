"""MegaPose-style photometric augmentation (Pillow), applied to the query crop only.

MegaPose (after CosyPose) applies, each with its own probability: Gaussian blur (radius in
``blur_radius``), sharpness, contrast, brightness and colour (saturation) enhancement with a
factor drawn uniformly from the configured interval (Pillow ``ImageEnhance``; factor 1 = no
change). The defaults in :class:`coop_ros.train.config.AugmentConfig` are MegaPose's
(blur p 0.4 (1, 3); sharpness p 0.3 (0, 50); contrast p 0.3 (0.2, 50); brightness p 0.5
(0.1, 6); colour p 0.3 (0, 20)).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from coop_ros.train.config import AugmentConfig

__all__ = ["augment_rgb"]


def augment_rgb(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig | None = None
                ) -> np.ndarray:
    """Augmented copy of an (H, W, 3) uint8 RGB image (same shape and dtype).

    Args:
        rgb: (H, W, 3) uint8.
        rng: the only source of randomness (same rng state -> same output).
        cfg: probabilities and ranges; None = defaults; ``enabled=False`` returns a copy.
    """
    cfg = cfg or AugmentConfig()
    rgb = np.asarray(rgb)
    if not cfg.enabled:
        return rgb.copy()
    im = Image.fromarray(rgb)
    if rng.random() < cfg.blur_p:
        im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(*cfg.blur_radius))))
    for p, rng_f, enh in ((cfg.sharpness_p, cfg.sharpness, ImageEnhance.Sharpness),
                          (cfg.contrast_p, cfg.contrast, ImageEnhance.Contrast),
                          (cfg.brightness_p, cfg.brightness, ImageEnhance.Brightness),
                          (cfg.color_p, cfg.color, ImageEnhance.Color)):
        if rng.random() < p:
            im = enh(im).enhance(float(rng.uniform(*rng_f)))
    return np.asarray(im, dtype=np.uint8).copy()
