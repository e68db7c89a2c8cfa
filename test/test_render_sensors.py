"""Sensor models (coop_ros.render.sensors): the structured-light depth model's statistics against
its documented parameters, its holes and their reasons, and the RGB camera model."""
from __future__ import annotations

import numpy as np
import pytest

from coop_ros.render.sensors import (HOLE_REASONS, DepthSensor, RgbCamera, apply_rgb_camera,
                                     axial_noise_std, projector_shadow, simulate_depth)

K = np.array([[575.0, 0.0, 159.5], [0.0, 575.0, 119.5], [0.0, 0.0, 1.0]])
W, H = 320, 240


def _plane(z: float, tilt_deg: float = 0.0) -> np.ndarray:
    """(H, W) depth of a plane through (0, 0, z) tilted about the camera y axis."""
    t = np.tan(np.radians(tilt_deg))
    xs = (np.arange(W) - K[0, 2]) / K[0, 0]
    d = z / (1.0 + t * xs)          # plane z = z0 - t * x
    return np.repeat(d[None, :], H, axis=0)


@pytest.mark.parametrize("z", [0.6, 1.0, 1.4])
def test_axial_noise_and_quantisation_match_the_documented_model(z):
    s = DepthSensor()
    out, reasons, info = simulate_depth(_plane(z), K, np.random.default_rng(1), s,
                                        offset_m=0.002)
    inner = np.zeros((H, W), bool)
    inner[10:-10, 10:-10] = True
    assert (out[inner] > 0).all() and (reasons[inner] == 0).all()     # a matte plane: no holes
    err = out[inner] - z
    # Nguyen et al. 2012 at normal incidence, plus the 1/8 px disparity step's uniform error
    step = z ** 2 * s.subpixel / (K[0, 0] * s.baseline_m)
    expected = np.sqrt(axial_noise_std(z, 0.0, s) ** 2 + step ** 2 / 12.0)
    assert err.std() == pytest.approx(expected, rel=0.06)
    assert err.mean() == pytest.approx(0.002, abs=0.15e-3)            # the per-frame offset
    # every depth is f b / (k / 8): disparities on the 1/8 px grid
    disp = K[0, 0] * s.baseline_m / out[inner]
    np.testing.assert_allclose(disp * 8, np.round(disp * 8), atol=1e-6)
    levels = np.unique(np.round(out[inner], 9))
    assert np.diff(levels).min() == pytest.approx(step, rel=0.15)     # 3 mm at 1 m (LINEMOD)


def test_noise_grows_with_incidence_angle_as_documented():
    s = DepthSensor(subpixel=1e-4)        # no visible quantisation: the noise term alone
    stds = {}
    for tilt in (0.0, 60.0, 70.0):
        out, _, _ = simulate_depth(_plane(1.0, tilt), K, np.random.default_rng(2), s,
                                   offset_m=0.0)
        clean = _plane(1.0, tilt)
        sl = (slice(20, -20), slice(150, 170))          # near the optical axis: z ~ 1 m
        stds[tilt] = float((out[sl] - clean[sl]).std())
    for tilt, got in stds.items():
        assert got == pytest.approx(float(axial_noise_std(1.0, np.radians(tilt), s)), rel=0.1)
    assert stds[70.0] > 1.5 * stds[0.0]


def _box_scene():
    """A 0.7 m fronto-parallel square (100 x 100 px) in front of a 1.0 m wall."""
    d = np.full((H, W), 1.0)
    d[70:170, 110:210] = 0.7
    return d


def test_projector_shadow_left_of_a_foreground_object_and_no_holes_on_its_face():
    s = DepthSensor()
    d = _box_scene()
    sh = projector_shadow(d, K, s.baseline_m)
    width = K[0, 0] * s.baseline_m * (1 / 0.7 - 1 / 1.0)                # 18.5 px
    row = sh[120]
    cols = np.nonzero(row)[0]
    assert cols.min() >= 110 - width - 1.5 and cols.max() <= 109          # left of the box only
    assert abs(len(cols) - width) <= 1.5
    assert not sh[:, 110:].any() and not sh[:60].any()                     # nothing elsewhere
    out, reasons, _ = simulate_depth(d, K, np.random.default_rng(3), s)
    face = np.zeros((H, W), bool)
    face[75:165, 115:205] = True                                           # >= 5 px inside
    assert (out[face] > 0).all()
    # every hole has a reason, and the reasons are the documented ones
    assert ((out == 0) == (reasons > 0)).all()
    all_bits = sum(HOLE_REASONS.values())
    assert not (reasons & ~np.uint8(all_bits)).any()
    # away from the box's border (3 px), the only holes are the projector's shadow
    border = np.zeros((H, W), bool)
    border[67:173, 107:213] = True
    border[73:167, 113:207] = False
    assert set(np.unique(reasons[(out == 0) & ~border])) == {HOLE_REASONS["shadow"]}
    band = (reasons & HOLE_REASONS["shadow"]) > 0
    assert band[120, 110 - int(width) + 1:110].all()
    # flying pixels: depths strictly between the two surfaces, only next to the edges
    fly = (out > 0.72) & (out < 0.98)
    ys, xs = np.nonzero(fly)
    assert 20 < fly.sum() < 0.6 * 400
    near = ((np.abs(ys - 70) <= 3) | (np.abs(ys - 169) <= 3) | (np.abs(xs - 110) <= 3)
            | (np.abs(xs - 209) <= 3))
    assert near.all()


def test_dark_specular_grazing_and_range_holes_have_their_reasons():
    s = DepthSensor()
    d = np.full((H, W), 1.0)
    albedo = np.full((H, W), 0.5)
    albedo[:, :40] = 0.002                          # black matte strip: IR return too weak
    spec = np.zeros((H, W))
    spec[:] = 0.35                                  # glossy everywhere: saturates where the
    out, reasons, _ = simulate_depth(d, K, np.random.default_rng(4), s, albedo=albedo,
                                     specular=spec)  # projector mirrors into the camera
    assert ((reasons[:, 5:35] & HOLE_REASONS["dark"]) > 0).all()
    mirror = (reasons & HOLE_REASONS["specular"]) > 0
    # the mirror point of a fronto-parallel plane lies half the baseline right of the axis
    u_m = K[0, 2] + K[0, 0] * (s.baseline_m / 2) / 1.0
    ys, xs = np.nonzero(mirror)
    assert mirror.sum() > 100 and abs(xs.mean() - u_m) < 3 and abs(ys.mean() - K[1, 2]) < 3
    assert (out[:, 60:100] > 0).all()               # matte-enough, lit, in range: measured
    far, _, _ = simulate_depth(np.full((H, W), 4.5), K, np.random.default_rng(5), s)
    near, r_near, _ = simulate_depth(np.full((H, W), 0.3), K, np.random.default_rng(5), s)
    assert (far == 0).all() and (near == 0).all()
    assert ((r_near & HOLE_REASONS["range"]) > 0).all()
    steep, r_steep, _ = simulate_depth(_plane(1.0, 84.0), K, np.random.default_rng(6), s)
    assert ((r_steep[50:-50, 150:170] & HOLE_REASONS["grazing"]) > 0).all()


def test_depth_model_is_deterministic_per_seed():
    d = _box_scene()
    a = simulate_depth(d, K, np.random.default_rng(7))[0]
    b = simulate_depth(d, K, np.random.default_rng(7))[0]
    c = simulate_depth(d, K, np.random.default_rng(8))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_rgb_camera_exposure_noise_vignetting_and_determinism():
    flat = np.full((H, W, 3), 0.3, np.float32)
    cam = RgbCamera(exposure_ev=0.0, target_mean=0.18, gamma=1.0)
    img = apply_rgb_camera(flat, cam, np.random.default_rng(0))
    assert img.dtype == np.uint8 and img.shape == (H, W, 3)
    assert np.abs(img.astype(float) - 0.18 * 255).max() <= 1.0          # auto-exposure, no noise
    cam = RgbCamera(exposure_ev=1.0, gamma=1.0, shot_noise=4e-4, read_noise=0.004)
    img = apply_rgb_camera(flat, cam, np.random.default_rng(0)).astype(float)
    assert img.mean() == pytest.approx(0.36 * 255, abs=1.0)            # +1 EV doubles the level
    # demosaicing averages neighbouring samples: the green plane keeps at least half of the std
    sd = np.sqrt(4e-4 * 0.36 + 0.004 ** 2) * 255
    assert 0.4 * sd < img[20:-20, 20:-20, 1].std() < 1.1 * sd
    v = apply_rgb_camera(flat, RgbCamera(vignetting=0.3, gamma=1.0), np.random.default_rng(0))
    assert v[0, 0, 1] / v[H // 2, W // 2, 1] == pytest.approx(0.7, abs=0.02)
    full = RgbCamera(exposure_ev=0.2, wb_gains=(1.05, 1.0, 0.95), vignetting=0.2, defocus_px=0.8,
                     motion_px=2.0, motion_deg=30, shot_noise=2e-4, read_noise=0.003, gamma=2.2,
                     jpeg_quality=85)
    rad = np.random.default_rng(1).random((H, W, 3)).astype(np.float32)
    a = apply_rgb_camera(rad, full, np.random.default_rng(9))
    b = apply_rgb_camera(rad, full, np.random.default_rng(9))
    assert np.array_equal(a, b)
