"""Deferred shading of a :class:`~coop_ros.render.renderer.GBuffer`: point lights with Blinn-Phong
highlights, shadow maps (cast shadows) and screen-space ambient occlusion.

All in the camera frame, metres, OpenCV axes; colours are linear light. Used by the realistic
synthetic scenes (:mod:`coop_ros.synth.realistic`); the pose pipeline keeps its simple headlight.

* :class:`ShadowMap`: classic shadow mapping (Williams 1978): the scene's depth is rendered
  from the light (a pinhole looking at the scene), every camera pixel is moved into the light's
  image and compared with that depth; 3 x 3 percentage-closer filtering softens the edge.
* :func:`ambient_occlusion`: a screen-space approximation (the "unsharp masking of the depth
  buffer" of Luft, Colditz & Deussen, SIGGRAPH 2006): a pixel lying behind the local mean
  depth (in a concave corner, a contact with the support, under an overhang) receives less
  ambient light. OpenCV blurs the depth; a hand-written sampler would only be slower.
* :func:`shade`: ``albedo * (ambient * ao + sum_l vis_l * E_l * max(n.l, 0)) + sum_l vis_l *
  E_l * ks * (n.h)^shininess``, with ``E_l = intensity / distance^2``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from coop_ros.geometry.se3 import make_pose

__all__ = ["PointLight", "look_at", "ShadowMap", "ambient_occlusion", "shade", "points"]


@dataclass
class PointLight:
    """A point light in the camera frame.

    Attributes:
        position: (3,) [m], camera frame.
        color: (3,) linear RGB intensity (irradiance at 1 m, arbitrary scale).
        shadows: cast shadows (shadow map) or not.
    """

    position: tuple
    color: tuple
    shadows: bool = True


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(4, 4) ``T_view_frame``: the transform from the frame of ``eye`` / ``target`` / ``up``
    (any common frame, metres) into a camera at ``eye`` looking at ``target`` (OpenCV axes: z
    forward, y down, ``up`` pointing to -y in the image)."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])            # rows: camera axes in the frame
    return make_pose(R, -R @ eye)


def points(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 camera-frame points [m] of a depth map [m] (0 stays at the origin)."""
    H, W = depth.shape
    xs = ((np.arange(W) - K[0, 2]) / K[0, 0])[None, :]
    ys = ((np.arange(H) - K[1, 2]) / K[1, 1])[:, None]
    z = depth.astype(np.float64)
    return np.stack(np.broadcast_arrays(xs * z, ys * z, z), axis=-1)


class ShadowMap:
    """The depth of a scene seen from a point light (a pinhole looking at ``target``), for
    shadow tests of any later camera view (the scene must not move).

    Args:
        renderer: a :class:`~coop_ros.render.renderer.Renderer` holding every item's mesh.
        items: ``[(key, T_frame_obj)]`` of the shadow casters, poses in a common frame [m].
        light_pos: (3,) light position in that frame [m].
        target: (3,) point the map looks at [m]; radius: radius [m] it must cover.
        size: map side [px].
    """

    def __init__(self, renderer, items, light_pos, target, radius: float, size: int = 512):
        eye = np.asarray(light_pos, np.float64)
        target = np.asarray(target, np.float64)
        up = [0.0, 0.0, 1.0] if abs((target - eye)[2]) < 0.99 * np.linalg.norm(target - eye) \
            else [0.0, 1.0, 0.0]
        self.T = look_at(eye, target, up=up)                       # T_light_frame
        dist = float(np.linalg.norm(target - eye))
        half = np.arctan2(radius, max(dist - radius, 1e-3))
        self.f = 0.5 * size / np.tan(min(half, np.radians(80.0)))
        self.size = int(size)
        self.K = np.array([[self.f, 0, (size - 1) / 2], [0, self.f, (size - 1) / 2], [0, 0, 1.0]])
        self.eye = eye
        self.depth = renderer.render_scene([(k, self.T @ T) for k, T in items], self.K, size,
                                           size).depth[0].astype(np.float64)

    def visibility(self, P: np.ndarray, normal: np.ndarray) -> np.ndarray:
        """Fraction of the light reaching the points ``P`` (..., 3) [m, the map's frame] with
        unit normals ``normal`` (..., 3): 1 lit, 0 shadowed, bilinear percentage-closer filtered
        over the 2 x 2 nearest texels; points outside the map are lit. Returns float32 of shape
        ``P.shape[:-1]``."""
        P = np.asarray(P, np.float32)
        Pl = P @ self.T[:3, :3].T.astype(np.float32) + self.T[:3, 3].astype(np.float32)
        zz = np.maximum(Pl[..., 2], 1e-6)
        u = self.K[0, 0] * Pl[..., 0] / zz + self.K[0, 2]
        v = self.K[1, 1] * Pl[..., 1] / zz + self.K[1, 2]
        to_l = self.eye.astype(np.float32) - P
        to_l /= np.maximum(np.sqrt(np.einsum("...k,...k->...", to_l, to_l)), 1e-9)[..., None]
        cos_l = np.clip(np.einsum("...k,...k->...", normal, to_l), 0.05, 1.0)
        # slope-scaled bias: one texel spans zz / f metres
        bias = 2.0 * zz / self.f * np.sqrt(1.0 - cos_l ** 2) / cos_l + 0.004
        n = self.size
        flat = self.depth.astype(np.float32).ravel()
        u0, v0 = np.floor(u), np.floor(v)
        fu, fv = (u - u0).astype(np.float32), (v - v0).astype(np.float32)
        u0 = np.clip(u0.astype(np.int64), 0, n - 2)
        v0 = np.clip(v0.astype(np.int64), 0, n - 2)
        base = v0 * n + u0
        zb = zz - bias
        lit = np.zeros(P.shape[:-1], np.float32)
        for off, w in ((0, (1 - fu) * (1 - fv)), (1, fu * (1 - fv)), (n, (1 - fu) * fv),
                       (n + 1, fu * fv)):
            occ = flat[base + off]
            lit += w * ((occ <= 0) | (zb <= occ))
        inside = (u >= 0) & (u <= n - 1) & (v >= 0) & (v <= n - 1) & (Pl[..., 2] > 0)
        lit[~inside] = 1.0
        return lit


def ambient_occlusion(depth: np.ndarray, K: np.ndarray, radius_m: float = 0.03,
                      strength: float = 0.6) -> np.ndarray:
    """(H, W) float32 ambient factor in [1 - strength, 1]: screen-space darkening of concave
    regions (contacts, corners) by depth unsharp masking (Luft et al. 2006).

    Args:
        depth: (H, W) camera z [m], 0 = nothing (treated as far background).
        K: intrinsics [px]; the blur radius is ``radius_m`` at the median scene depth.
        radius_m: neighbourhood size [m].
        strength: darkening at a depth deficit of ``radius_m``.
    """
    z = depth.astype(np.float32)
    valid = z > 0
    if not valid.any():
        return np.ones_like(z)
    zf = np.where(valid, z, float(z[valid].max()) * 1.5).astype(np.float32)
    sigma = max(1.0, float(K[0, 0]) * radius_m / float(np.median(z[valid])))
    blurred = cv2.GaussianBlur(zf, (0, 0), sigma)
    deficit = np.clip(zf - blurred, 0.0, radius_m) / radius_m      # behind the local mean
    return np.where(valid, 1.0 - strength * deficit, 1.0).astype(np.float32)


def shade(albedo_lin: np.ndarray, normal: np.ndarray, depth: np.ndarray, K: np.ndarray,
          lights: list, visibility: list, ambient: np.ndarray, ao: np.ndarray,
          ks: np.ndarray, shininess: np.ndarray) -> np.ndarray:
    """Linear radiance (H, W, 3) float32 of a G-buffer (formula: module docstring).

    Args:
        albedo_lin: (H, W, 3) linear albedo; normal: (H, W, 3); depth: (H, W) [m].
        K: (3, 3) [px]. lights: :class:`PointLight` list (camera frame); visibility: one
            (H, W) array per light (:meth:`ShadowMap.visibility`, or ones).
        ambient: (3,) linear ambient irradiance; ao: (H, W) ambient factor.
        ks, shininess: (H, W) specular coefficient and Blinn-Phong exponent per pixel.
    """
    P = points(depth, K).astype(np.float32)
    dot = lambda a, b: np.einsum("...k,...k->...", a, b)  # noqa: E731
    view = -P / np.maximum(np.sqrt(dot(P, P)), 1e-9)[..., None]
    normal = np.asarray(normal, np.float32)
    diffuse = np.asarray(ambient, np.float32)[None, None] * ao[..., None]
    spec = np.zeros_like(albedo_lin, dtype=np.float32)
    ks = np.asarray(ks, np.float32)
    shininess = np.asarray(shininess, np.float32)
    for light, vis in zip(lights, visibility):
        L = np.asarray(light.position, np.float32)[None, None] - P
        d2 = np.maximum(dot(L, L), 1e-4)
        L /= np.sqrt(d2)[..., None]
        e = vis / d2                                        # (H, W) irradiance factor
        ndl = np.maximum(dot(normal, L), 0.0)
        col = np.asarray(light.color, np.float32)[None, None]
        diffuse += col * (e * ndl)[..., None]
        h = L + view
        h /= np.maximum(np.sqrt(dot(h, h)), 1e-9)[..., None]
        ndh = np.clip(dot(normal, h), 0.0, 1.0)
        sp = ks * np.power(ndh, shininess) * (ndl > 0) * e
        spec += col * sp[..., None]
    return (albedo_lin * diffuse + spec).astype(np.float32)
