"""Sensor models for realistic synthetic images: an RGB camera and a structured-light depth camera.

Both take clean renderings (linear radiance, metric depth) and return what a camera would save.
Every magnitude below is a parameter with a documented source; the defaults describe the
Kinect v1 / PrimeSense class of RGB-D sensors that recorded LINEMOD, LM-O and YCB-Video.

RGB camera (:class:`RgbCamera`, :func:`apply_rgb_camera`), in the order light passes through a
camera: exposure (auto-exposure to a mean level, with an error), white-balance error,
vignetting, defocus blur, motion blur, a Bayer colour-filter mosaic with shot + read noise,
bilinear demosaicing, gamma, 8-bit quantisation, JPEG compression.

Depth camera (:class:`DepthSensor`, :func:`simulate_depth`): a projector + IR camera pair with
baseline ``b`` that measures disparity ``d = f b / z`` in 1/8-pixel steps. Modelled effects:

=====================  ===========================================================================
effect                 model
=====================  ===========================================================================
axial noise            Gaussian, std ``0.0012 + 0.0019 (z - 0.4)^2 + 0.0001 / sqrt(z) *
                       theta^2 / (pi/2 - theta)^2`` m (z in m, theta = angle between the surface
                       normal and the viewing ray): Nguyen, Izadi & Lovell, "Modeling Kinect
                       sensor noise for improved 3D reconstruction and tracking", 3DIMPVT 2012
                       (quoted from memory)
lateral noise          depth edges displaced by a smooth random field of std
                       ``0.8 + 0.035 theta / (pi/2 - theta)`` px (Nguyen et al. 2012, from memory)
quantisation           disparity rounded to 1/8 px: depth step ``z^2 / (8 f b)`` (Khoshelham &
                       Elberink, "Accuracy and resolution of Kinect depth data", Sensors 2012:
                       resolution "a few mm at 1 m, ~7 cm at 5 m"; measured here: 3.0 mm steps
                       at 1.05 m in the LINEMOD frame, 1.0 mm at 0.57 m in the YCB-Video frame)
projector shadow       no depth where the projector (``b`` = 7.5 cm to the +x side of the camera)
                       does not see the surface (stereo ordering test along the baseline); the
                       one-sided holes left of foreground objects in the YCB-Video frame
flying pixels          at depth discontinuities: a fraction of the pixels next to the edge take
                       a depth between the foreground and the background (correlation window
                       straddling the edge)
silhouette dropouts    a fraction of the pixels next to a depth discontinuity are invalid
dark surfaces          no return where the IR signal ``albedo * cos(theta) / z^2`` is below a
                       threshold (black matte objects are missing in Kinect depth)
specular surfaces      no depth where a glossy surface mirrors the projector into the camera
                       (saturated speckle)
grazing angles         no depth beyond ``max_incidence_deg``
range                  no depth outside [z_min, z_max]
per-frame offset       one depth offset per frame (calibration drift); the real frames' median
                       observed - rendered depth: +0.5 mm (LINEMOD cat), +0.6 mm (YCB-Video
                       gelatin box), -6..+7 mm over 8 LM-O objects of one frame (GT poses)
=====================  ===========================================================================

Invalid pixels are 0. :func:`simulate_depth` also returns why each pixel is invalid (bit flags
:data:`HOLE_REASONS`), so tests can check that no hole appears without a reason.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from coop_ros.errors import InputError

__all__ = ["RgbCamera", "apply_rgb_camera", "sample_rgb_camera", "DepthSensor", "simulate_depth",
           "axial_noise_std", "HOLE_REASONS", "srgb_to_linear", "depth_normals",
           "projector_shadow"]

#: bit flags of :func:`simulate_depth`'s ``reasons`` array
HOLE_REASONS = {"range": 1, "shadow": 2, "edge": 4, "dark": 8, "specular": 16, "grazing": 32,
                "no_surface": 64}


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1 curve), float32."""
    c = np.asarray(c, dtype=np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


# =============================================================================================
# RGB camera
# =============================================================================================
@dataclass
class RgbCamera:
    """One frame's RGB camera settings (draw them with :func:`sample_rgb_camera`).

    Attributes:
        exposure_ev: auto-exposure error [EV] around ``target_mean`` (0 = on target).
        target_mean: mean linear level the auto-exposure aims at (18 % grey).
        wb_gains: (3,) residual white-balance gains (R, G, B) applied after exposure.
        vignetting: relative light loss at the image corner (``1 - v r^2`` with r = 1 there).
        defocus_px: std of the Gaussian defocus blur [px] (0 = none).
        motion_px: length of the linear motion-blur kernel [px] (0 = none).
        motion_deg: its direction [deg].
        shot_noise: variance of the shot noise per unit linear level (``var = a x + b``).
        read_noise: std of the read noise [linear level].
        gamma: display gamma of the tone curve (``out = in^(1/gamma)``).
        jpeg_quality: JPEG quality (100 = no compression step at all).
    """

    exposure_ev: float = 0.0
    target_mean: float = 0.18
    wb_gains: tuple = (1.0, 1.0, 1.0)
    vignetting: float = 0.0
    defocus_px: float = 0.0
    motion_px: float = 0.0
    motion_deg: float = 0.0
    shot_noise: float = 0.0
    read_noise: float = 0.0
    gamma: float = 2.2
    jpeg_quality: int = 100

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


#: ranges of :func:`sample_rgb_camera` with their sources (magnitudes a real camera shows)
RGB_RANGES = {
    "exposure_ev": (-0.5, 0.5),   # auto-exposure settles within ~1/2 stop of its target
    "wb_log2_std": 0.07,          # residual white-balance error ~5 % per channel (std)
    "vignetting": (0.1, 0.35),    # cos^4 law at ~37 deg off-axis (Kinect corner): 0.6; lens
                                  # correction leaves 10-35 % corner fall-off
    "defocus_px": (0.3, 0.8),     # Kinect v1 RGB images: 1-2 px wide edges at 640 x 480
    "motion_px": (0.0, 1.5),      # hand-held / moving capture at 30 Hz (LM-O was hand-held)
    "shot_noise": (1e-4, 4e-4),   # std 0.7-1.4 % of full scale at mid-grey (small-pixel CMOS)
    "read_noise": (0.002, 0.004), # 0.5-1 DN of 255
    "gamma": (1.9, 2.4),          # camera tone curves around sRGB's 2.2
    "jpeg_quality": (75, 95),     # JPEG-compressed camera streams / datasets
}


def sample_rgb_camera(rng: np.random.Generator) -> RgbCamera:
    """Draw one frame's :class:`RgbCamera` from :data:`RGB_RANGES` (uniform in each range)."""
    u = lambda key: float(rng.uniform(*RGB_RANGES[key]))  # noqa: E731
    wb = 2.0 ** rng.normal(0.0, RGB_RANGES["wb_log2_std"], 3)
    wb = wb / wb[1]
    return RgbCamera(exposure_ev=u("exposure_ev"), wb_gains=tuple(float(x) for x in wb),
                     vignetting=u("vignetting"), defocus_px=u("defocus_px"),
                     motion_px=u("motion_px"), motion_deg=float(rng.uniform(0, 180)),
                     shot_noise=u("shot_noise"), read_noise=u("read_noise"), gamma=u("gamma"),
                     jpeg_quality=int(rng.integers(RGB_RANGES["jpeg_quality"][0],
                                                   RGB_RANGES["jpeg_quality"][1] + 1)))


def _motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    n = int(np.ceil(length)) | 1
    k = np.zeros((n, n), np.float32)
    c = (n - 1) / 2.0
    a = np.radians(angle_deg)
    for t in np.linspace(-length / 2, length / 2, 4 * n):
        x, y = c + t * np.cos(a), c + t * np.sin(a)
        k[int(round(y)), int(round(x))] += 1.0
    return k / k.sum()


def apply_rgb_camera(radiance: np.ndarray, cam: RgbCamera, rng: np.random.Generator) -> np.ndarray:
    """Turn linear scene radiance into the 8-bit image a camera saves.

    Args:
        radiance: (H, W, 3) float32 linear RGB radiance (any scale: auto-exposure normalises).
        cam: the frame's :class:`RgbCamera`.
        rng: the only source of randomness (noise).
    Returns:
        (H, W, 3) uint8 RGB.
    """
    x = np.asarray(radiance, dtype=np.float32)
    if x.ndim != 3 or x.shape[2] != 3:
        raise InputError(f"radiance must be (H, W, 3), got {x.shape}")
    H, W = x.shape[:2]
    mean = float(x.mean())
    x = x * (cam.target_mean * 2.0 ** cam.exposure_ev / max(mean, 1e-8))
    x = x * np.asarray(cam.wb_gains, np.float32)[None, None]
    if cam.vignetting > 0:
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        r2 = ((xx - (W - 1) / 2) ** 2 + (yy - (H - 1) / 2) ** 2) / (((W - 1) / 2) ** 2
                                                                  + ((H - 1) / 2) ** 2)
        x = x * (1.0 - cam.vignetting * r2)[..., None]
    if cam.defocus_px > 0:
        x = cv2.GaussianBlur(x, (0, 0), cam.defocus_px, borderType=cv2.BORDER_REFLECT)
    if cam.motion_px >= 1.0:
        x = cv2.filter2D(x, -1, _motion_kernel(cam.motion_px, cam.motion_deg),
                         borderType=cv2.BORDER_REFLECT)
    # Bayer mosaic (RGGB), shot + read noise on the one sample of each pixel, then demosaic
    mosaic = np.empty((H, W), np.float32)
    mosaic[0::2, 0::2] = x[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = x[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = x[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = x[1::2, 1::2, 2]
    mosaic = np.clip(mosaic, 0.0, 1.0)
    var = cam.shot_noise * mosaic + cam.read_noise ** 2
    mosaic = mosaic + np.sqrt(var) * rng.standard_normal((H, W)).astype(np.float32)
    raw = np.clip(np.round(mosaic * 65535.0), 0, 65535).astype(np.uint16)
    # OpenCV names Bayer patterns by the 2x2 block starting at the second row / column
    x = cv2.cvtColor(raw, cv2.COLOR_BayerBG2RGB).astype(np.float32) / 65535.0
    x = np.clip(x, 0.0, 1.0) ** (1.0 / cam.gamma)
    img = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    if cam.jpeg_quality < 100:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(cam.jpeg_quality)])
        img = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return img


# =============================================================================================
# structured-light depth camera
# =============================================================================================
@dataclass
class DepthSensor:
    """Parameters of the structured-light depth model (defaults: Kinect v1 / PrimeSense).

    Attributes:
        baseline_m: projector - IR camera baseline [m] (Kinect v1: 7.5 cm, Khoshelham &
            Elberink 2012); the projector sits on the +x side of the camera.
        subpixel: disparity resolution [px] (1/8 px, Khoshelham & Elberink 2012).
        sigma_a, sigma_b, z0: axial noise ``sigma_a + sigma_b (z - z0)^2`` [m] (Nguyen 2012:
            0.0012, 0.0019, 0.4).
        sigma_theta: coefficient of the incidence term ``sigma_theta / sqrt(z) * theta^2 /
            (pi/2 - theta)^2`` [m] (Nguyen 2012: 0.0001).
        lateral_px, lateral_theta: lateral noise ``lateral_px + lateral_theta * theta /
            (pi/2 - theta)`` [px] (Nguyen 2012: 0.8, 0.035).
        z_min, z_max: measurable range [m] (Kinect v1 near limit ~0.4-0.5 m; far 4 m).
        max_incidence_deg: no depth on surfaces seen more obliquely [deg].
        edge_jump_m: a neighbour farther by more than this (and 3 % of z) marks a depth edge.
        edge_invalid: fraction of edge pixels without depth.
        edge_flying: fraction of edge pixels with a depth between fore- and background.
        dark_threshold: IR return ``albedo * cos(theta) / z^2`` below which there is no depth
            (albedo = linear luminance).
        specular_min: surfaces with a specular coefficient above this can saturate ...
        specular_cos: ... where ``n . h`` (h = half vector of projector and camera rays)
            exceeds this (mirror reflection of the projector within ~8 deg).
        offset_std_m: std of the per-frame depth offset [m].
    """

    baseline_m: float = 0.075
    subpixel: float = 0.125
    sigma_a: float = 0.0012
    sigma_b: float = 0.0019
    z0: float = 0.4
    sigma_theta: float = 0.0001
    lateral_px: float = 0.8
    lateral_theta: float = 0.035
    z_min: float = 0.4
    z_max: float = 4.0
    max_incidence_deg: float = 80.0
    edge_jump_m: float = 0.02
    edge_invalid: float = 0.25
    edge_flying: float = 0.25
    dark_threshold: float = 0.005
    specular_min: float = 0.25
    specular_cos: float = 0.99
    offset_std_m: float = 0.003

    def as_dict(self) -> dict:
        return asdict(self)


def axial_noise_std(z: np.ndarray, theta: np.ndarray, s: DepthSensor) -> np.ndarray:
    """Nguyen et al. (2012) axial noise std [m] at depth ``z`` [m] and incidence ``theta``
    [rad] (arrays of one shape); theta is clipped below 85 deg."""
    th = np.minimum(np.asarray(theta, np.float64), np.radians(85.0))
    z = np.asarray(z, np.float64)
    return (s.sigma_a + s.sigma_b * (z - s.z0) ** 2
            + s.sigma_theta / np.sqrt(np.maximum(z, 1e-3)) * th ** 2 / (np.pi / 2 - th) ** 2)


def depth_normals(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 unit normals (camera frame, facing the camera) of a depth map [m] by
    central differences of the back-projected points (one-sided at the image border); 0 where
    they are degenerate."""
    H, W = depth.shape
    z = depth.astype(np.float32)
    xs = ((np.arange(W, dtype=np.float32) - K[0, 2]) / K[0, 0])[None, :]
    ys = ((np.arange(H, dtype=np.float32) - K[1, 2]) / K[1, 1])[:, None]
    P = np.stack([xs * z, ys * z, z], axis=-1)
    dx = np.zeros_like(P)
    dy = np.zeros_like(P)
    dx[:, 1:-1] = P[:, 2:] - P[:, :-2]
    dx[:, 0], dx[:, -1] = P[:, 1] - P[:, 0], P[:, -1] - P[:, -2]     # one-sided at the border
    dy[1:-1] = P[2:] - P[:-2]
    dy[0], dy[-1] = P[1] - P[0], P[-1] - P[-2]
    n = np.cross(dx, dy)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.divide(n, norm, out=np.zeros_like(n), where=norm > 1e-12)
    n[(n * P).sum(-1) > 0] *= -1.0
    return n


def projector_shadow(depth: np.ndarray, K: np.ndarray, baseline_m: float) -> np.ndarray:
    """(H, W) bool: pixels the projector cannot see, for a projector ``baseline_m`` to the +x
    side of the camera with the same intrinsics (a rectified pair).

    A surface point at column u and depth z appears in the projector at ``u - f b / z``. Scanning
    each row from the right, a point is hidden when a point to its right (closer to the
    projector) lands at or left of it in the projector image: the stereo ordering test,
    exact for surfaces the camera sees. Pixels without depth count as infinitely far. Written
    with NumPy (a running minimum per row) because no library offers this occlusion test on a
    depth map; rendering a second view would cost a full scene render.
    """
    H, W = depth.shape
    fb = float(K[0, 0]) * float(baseline_m)
    u = np.arange(W, dtype=np.float64)[None, :].repeat(H, 0)
    with np.errstate(divide="ignore"):
        up = np.where(depth > 0, u - fb / np.maximum(depth, 1e-6), u)
    # running minimum of the projector column over the pixels strictly to the right
    rmin = np.minimum.accumulate(up[:, ::-1], axis=1)[:, ::-1]
    right = np.full((H, W), np.inf)
    right[:, :-1] = rmin[:, 1:]
    return (up > right - 0.5) & (depth > 0)


def _smooth_field(rng, H, W, sigma_px: float, std: float) -> np.ndarray:
    f = rng.standard_normal((H, W)).astype(np.float32)
    f = cv2.GaussianBlur(f, (0, 0), sigma_px)
    return f * (std / max(float(f.std()), 1e-8))


def simulate_depth(depth: np.ndarray, K: np.ndarray, rng: np.random.Generator,
                   sensor: DepthSensor | None = None, normals: np.ndarray | None = None,
                   albedo: np.ndarray | None = None, specular: np.ndarray | None = None,
                   offset_m: float | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Structured-light depth from a clean rendered depth map (effects: module docstring).

    Args:
        depth: (H, W) clean camera z [m], 0 where nothing was rendered.
        K: (3, 3) intrinsics [px] (the depth is registered to this camera).
        rng: the only source of randomness.
        sensor: :class:`DepthSensor` (default: Kinect v1).
        normals: (H, W, 3) camera-frame unit normals facing the camera (default: from depth).
        albedo: (H, W) linear IR reflectance proxy in [0, 1] (default 0.5 everywhere).
        specular: (H, W) specular coefficient of the surface (default 0: matte).
        offset_m: per-frame depth offset [m] (default: drawn with ``offset_std_m``).
    Returns:
        (depth_out (H, W) float64 [m] with 0 = no measurement, reasons (H, W) uint8 bit flags of
        :data:`HOLE_REASONS` for every pixel without depth (0 where valid), info dict with the
        drawn offset).
    """
    s = sensor or DepthSensor()
    z = np.asarray(depth, dtype=np.float64)
    if z.ndim != 2:
        raise InputError(f"depth must be (H, W), got {z.shape}")
    H, W = z.shape
    K = np.asarray(K, dtype=np.float64)
    valid = z > 0
    n = depth_normals(z, K) if normals is None else np.asarray(normals, np.float32)
    xs = ((np.arange(W) - K[0, 2]) / K[0, 0])[None, :]
    ys = ((np.arange(H) - K[1, 2]) / K[1, 1])[:, None]
    ray = np.stack(np.broadcast_arrays(xs, ys, np.ones((H, W))), axis=-1).astype(np.float32)
    ray /= np.sqrt(np.einsum("...k,...k->...", ray, ray))[..., None]
    cos_t = np.clip(-np.einsum("...k,...k->...", n, ray), 0.0, 1.0)
    # no surface / no normal: no angle effect
    cos_t[~valid | (np.einsum("...k,...k->...", n, n) < 0.5)] = 1.0
    theta = np.arccos(cos_t)
    reasons = np.zeros((H, W), np.uint8)

    # lateral noise: depth resampled at positions displaced by a smooth random field
    lat = s.lateral_px + s.lateral_theta * theta / np.maximum(np.pi / 2 - theta, 1e-3)
    dxf = _smooth_field(rng, H, W, 1.5, 1.0) * lat.astype(np.float32)
    dyf = _smooth_field(rng, H, W, 1.5, 1.0) * lat.astype(np.float32)
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    zl = cv2.remap(z.astype(np.float32), gx + dxf, gy + dyf, cv2.INTER_NEAREST,
                   borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    # keep the clean depth away from edges (the displacement only moves edges)
    edge = np.zeros((H, W), bool)
    zmax = cv2.dilate(z.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.float64)
    zero_nb = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)) == 0
    jump = np.maximum(s.edge_jump_m, 0.03 * z)
    edge = valid & (((zmax - z) > jump) | zero_nb)
    edge = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    zl = np.where(edge, zl, z)
    valid_l = zl > 0
    reasons[~valid_l & valid] |= HOLE_REASONS["edge"]
    reasons[~valid_l & ~valid] |= HOLE_REASONS["no_surface"]

    # flying pixels and dropouts at depth discontinuities (after the lateral displacement)
    zmax_l = cv2.dilate(zl.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.float64)
    zmin_l = -cv2.dilate(-np.where(valid_l, zl, 1e6).astype(np.float32),
                         np.ones((3, 3), np.uint8)).astype(np.float64)
    near_edge = valid_l & (((zmax_l - zl) > np.maximum(s.edge_jump_m, 0.03 * zl))
                           | ((zl - zmin_l) > np.maximum(s.edge_jump_m, 0.03 * zl)))
    r = rng.random((H, W))
    flying = near_edge & (r < s.edge_flying)
    dropout = near_edge & (r >= s.edge_flying) & (r < s.edge_flying + s.edge_invalid)
    t = rng.random((H, W))
    zl = np.where(flying, zmin_l + t * (zmax_l - zmin_l), zl)
    # projector shadow (on the depth the camera sees)
    shadow = projector_shadow(z, K, s.baseline_m)

    # axial noise and disparity quantisation
    sig = axial_noise_std(np.where(valid_l, zl, 1.0), theta, s)
    off = float(rng.normal(0.0, s.offset_std_m)) if offset_m is None else float(offset_m)
    zn = zl + off + sig * rng.standard_normal((H, W))
    fb = float(K[0, 0]) * s.baseline_m
    disp = fb / np.maximum(zn, 1e-6)
    disp_q = np.round(disp / s.subpixel) * s.subpixel
    zq = fb / np.maximum(disp_q, 1e-9)

    # invalid pixels and their reasons
    lum = np.full((H, W), 0.5) if albedo is None else np.asarray(albedo, np.float64)
    ir = lum * cos_t / np.maximum(z, 1e-3) ** 2
    dark = valid & (ir < s.dark_threshold)
    spec = np.zeros((H, W), bool)
    if specular is not None:
        cand = valid & (np.asarray(specular) > s.specular_min)
        rc, zc = ray[cand].astype(np.float64), z[cand]
        to_p = np.array([s.baseline_m, 0.0, 0.0]) - rc * (zc / rc[:, 2])[:, None]
        to_p /= np.maximum(np.linalg.norm(to_p, axis=1, keepdims=True), 1e-9)
        h = to_p - rc
        h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-9)
        spec[cand] = np.einsum("ij,ij->i", n[cand], h) > s.specular_cos
    grazing = valid & (theta > np.radians(s.max_incidence_deg))
    rng_bad = valid_l & ((zq < s.z_min) | (zq > s.z_max))
    for mask, key in ((shadow, "shadow"), (dropout, "edge"), (dark, "dark"), (spec, "specular"),
                      (grazing, "grazing"), (rng_bad, "range")):
        reasons[mask] |= HOLE_REASONS[key]
    out = np.where(reasons == 0, zq, 0.0)
    reasons[out > 0] = 0
    return out, reasons, {"offset_m": off}
