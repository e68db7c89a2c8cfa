"""The query image of one detection and renderings in crops that follow a pose: what the
refinement steps (:mod:`coop_ros.pipeline.refine`, :mod:`coop_ros.pipeline.icp`) and the
selection compare. Poses (4, 4) T_cam_obj [m]; crops square, ``size`` px, intrinsics pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from coop_ros.backends.base import Backend, ImageCrop
from coop_ros.errors import EstimationError, InputError
from coop_ros.geometry.camera import crop_around_projection
from coop_ros.errors import Reason

__all__ = ["QueryImage", "RenderTarget", "pose_crop", "render_view", "render_at", "render_and_flow",
           "pixel_grid", "subsample_pixels"]


@dataclass
class QueryImage:
    """The full query image of one detection.

    rgb: (H, W, 3) uint8. K: (3, 3). depth: (H, W) float metres (0 = none) or None.
    mask: (H, W) bool detection mask or None. box: (4,) BOP (x, y, w, h) or None.
    """

    rgb: np.ndarray
    K: np.ndarray
    depth: np.ndarray | None = None
    mask: np.ndarray | None = None
    box: np.ndarray | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    def view(self, crop, use_depth: bool = True) -> ImageCrop:
        """The query resampled into ``crop`` (colour linear, depth / mask nearest)."""
        rgb = crop.warp(self.rgb, "linear")
        depth = crop.warp(self.depth.astype(np.float32), "nearest") \
            if (use_depth and self.depth is not None) else None
        mask = crop.warp(self.mask.astype(bool), "nearest") if self.mask is not None else None
        box = None
        if self.box is not None:
            x, y, w, h = np.asarray(self.box, float)
            a = crop.image_to_crop(np.array([[x - 0.5, y - 0.5], [x + w - 0.5, y + h - 0.5]]))
            box = np.array([a[0, 0], a[0, 1], a[1, 0], a[1, 1]])
        return ImageCrop(rgb=rgb, K=crop.intrinsics(self.K), depth=depth, mask=mask, box=box)


def pose_crop(query: QueryImage, T: np.ndarray, obj, size: int, margin: float = 0.1):
    """Crop following the pose: the image of the object's bounding sphere (+ margin)."""
    try:
        return crop_around_projection(query.K, T, obj.diameter, size, margin=margin,
                                      image_size=query.image_size, center_obj=obj.center)
    except InputError as e:
        raise EstimationError(Reason.REFINEMENT_FAILED, f"the pose leaves the image ({e})") \
            from None


def render_view(renderer, key: str, T: np.ndarray, K_crop: np.ndarray, size: int) -> ImageCrop:
    """Rendering of object ``key`` at pose T with crop intrinsics, as an :class:`ImageCrop`."""
    out = renderer.render(key, T, K_crop, width=size, height=size)
    return ImageCrop(rgb=out.rgb[0], K=K_crop, depth=out.depth[0], mask=out.mask[0],
                     xyz=out.xyz[0])


@dataclass(frozen=True)
class RenderTarget:
    """What a refinement step renders: ``renderer`` (:class:`coop_ros.render.renderer.Renderer`),
    the mesh ``key`` in it, the :class:`coop_ros.objects.ObjectModel` ``obj`` (diameter, centre;
    metres) and the crop side ``size`` [px]."""

    renderer: Any
    key: str
    obj: Any
    size: int = 224


def render_at(query: QueryImage, T: np.ndarray, target: RenderTarget):
    """(crop following T, its intrinsics (3, 3), rendering at T in that crop)."""
    crop = pose_crop(query, T, target.obj, target.size)
    Kc = crop.intrinsics(query.K)
    return crop, Kc, render_view(target.renderer, target.key, T, Kc, target.size)


def render_and_flow(query: QueryImage, T: np.ndarray, target: RenderTarget, backend: Backend,
                    use_depth: bool):
    """One render-and-compare step: render at T, crop the query alike, flow render -> query.
    Returns (K_crop, rendering, query crop, FlowField); EstimationError on an empty rendering."""
    crop, Kc, rend = render_at(query, T, target)
    if not rend.mask.any():
        raise EstimationError(Reason.REFINEMENT_FAILED, "empty rendering at the pose")
    q = query.view(crop, use_depth=use_depth)
    return Kc, rend, q, backend.flow.flow(rend, q)


def pixel_grid(S: int) -> np.ndarray:
    """(S, S, 2) float64 pixel coordinates (u, v) of an S x S crop (centres at integers)."""
    return np.stack(np.meshgrid(np.arange(S, dtype=np.float64), np.arange(S, dtype=np.float64)),
                    -1)


def subsample_pixels(sel: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (rows, cols) of the True pixels, on a regular stride so at most ~max_points."""
    n = int(sel.sum())
    stride = max(1, int(np.ceil(np.sqrt(n / max_points))))
    sub = np.zeros_like(sel)
    sub[::stride, ::stride] = True
    return np.nonzero(sel & sub)
