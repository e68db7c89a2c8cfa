"""Overlay images: poses rendered and tinted over the photo they were estimated from, for people
to check by eye (``coop-ros estimate --overlay``, the node's ``coop/overlay``, bench/). Images
(H, W, 3) uint8 RGB; poses (4, 4) T_cam_obj [m]; K (3, 3) pixels.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["draw_overlay", "draw_results"]


def draw_overlay(rgb: np.ndarray, render_rgb: np.ndarray, mask: np.ndarray,
                 color=(0, 255, 0), alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8: the image with the rendering tinted over the mask and the mask outline."""
    out = rgb.astype(np.float32).copy()
    tint = 0.5 * render_rgb.astype(np.float32) + 0.5 * np.array(color, np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * tint[mask]
    out = np.clip(out, 0, 255).astype(np.uint8)
    cnts, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, cnts, -1, color, 2)
    return out


def draw_results(rgb: np.ndarray, K: np.ndarray, renderer, items, failures=()) -> np.ndarray:
    """Overlay image: every estimated instance rendered and tinted over the image, its box and
    label; failed detections as red boxes with their reason.

    Args:
        rgb: (H, W, 3) uint8 RGB. K: (3, 3) pixels.
        renderer: a :class:`coop_ros.render.renderer.Renderer` holding the meshes.
        items: list of dicts {key (renderer key), T (4, 4) m, label, box (4,) xywh or None,
            color}.
        failures: list of dicts {box (4,) xywh or None, label}.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    out = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    H, W = out.shape[:2]
    for it in items:
        r = renderer.render(it["key"], it["T"], K, width=W, height=H)
        out = draw_overlay(out, r.rgb[0], r.mask[0], color=it["color"])
    for it in list(items) + [dict(f, color=(255, 0, 0)) for f in failures]:
        if it.get("box") is None:
            continue
        x, y, w, h = (float(v) for v in it["box"])
        p0 = (int(round(x)), int(round(y)))
        cv2.rectangle(out, p0, (int(round(x + w)), int(round(y + h))), it["color"], 1)
        cv2.putText(out, it["label"][:60], (p0[0], max(p0[1] - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, it["color"], 1, cv2.LINE_AA)
    return out
