"""Numeric tests of coop_ros.geometry.camera (projection, depth lifting, crops)."""
import cv2
import numpy as np
import pytest

from coop_ros.errors import InputError
from coop_ros.geometry.camera import (backproject_depth, check_intrinsics, crop_around_projection,
                                      depth_to_points, make_crop, project,
                                      project_camera_points)
from coop_ros.geometry.se3 import make_pose, random_rotation, transform_points

K = np.array([[600.0, 0.0, 318.7], [0.0, 590.0, 241.2], [0.0, 0.0, 1.0]])
W, H = 640, 480


def _pose(rng, z=0.6):
    return make_pose(random_rotation(rng), [rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), z])


# ------------------------------------------------------------------ intrinsics

def test_check_intrinsics_accepts_and_copies():
    out = check_intrinsics(K.tolist(), image_size=(W, H))
    assert out.dtype == np.float64 and out.shape == (3, 3)
    np.testing.assert_array_equal(out, K)


@pytest.mark.parametrize("mutate, words", [
    (lambda k: k.__setitem__((0, 2), np.nan), ["K[0,2]", "not finite"]),
    (lambda k: k.__setitem__((0, 0), 0.0), ["fx", "> 0"]),
    (lambda k: k.__setitem__((1, 1), -5.0), ["fy", "> 0"]),
    (lambda k: k.__setitem__((0, 1), 2.0), ["skew"]),
    (lambda k: k.__setitem__((2, 2), 1000.0), ["lower row"]),
])
def test_check_intrinsics_rejects(mutate, words):
    bad = K.copy()
    mutate(bad)
    with pytest.raises(InputError) as e:
        check_intrinsics(bad)
    for w in words:
        assert w in str(e.value)


def test_check_intrinsics_shape_and_image_size():
    with pytest.raises(InputError, match="3x3"):
        check_intrinsics(np.eye(4))
    with pytest.raises(InputError, match="principal point"):
        check_intrinsics(K, image_size=(320, 240))  # K of a 640x480 camera


# ------------------------------------------------------------------ projection

def test_project_matches_opencv():
    rng = np.random.default_rng(0)
    T = _pose(rng)
    X = rng.uniform(-0.05, 0.05, size=(50, 3))
    uv, z = project(K, T, X)
    ref, _ = cv2.projectPoints(X, cv2.Rodrigues(T[:3, :3])[0], T[:3, 3], K, None)
    assert np.abs(uv - ref.reshape(-1, 2)).max() < 1e-9
    np.testing.assert_allclose(z, transform_points(T, X)[:, 2], atol=1e-15)
    assert uv.dtype == np.float64 and uv.shape == (50, 2) and z.shape == (50,)


def test_project_rejects_points_behind_camera():
    Xc = np.array([[0.0, 0.0, 1.0], [0.1, 0.0, -0.2]])
    with pytest.raises(InputError, match="behind the camera"):
        project_camera_points(K, Xc)
    with pytest.raises(InputError, match="non-finite"):
        project_camera_points(K, np.array([[0.0, np.nan, 1.0]]))


def test_backproject_and_depth_to_points_roundtrip():
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.3, 1.5, size=(H, W))
    depth[10, 20] = 0.0
    depth[30, 40] = np.nan
    pts, valid = backproject_depth(depth, K)
    assert pts.shape == (H, W, 3) and valid.shape == (H, W)
    assert not valid[10, 20] and not valid[30, 40] and valid.sum() == H * W - 2
    np.testing.assert_array_equal(pts[30, 40], [0.0, 0.0, 0.0])  # invalid -> 0, not NaN
    assert np.all(np.isfinite(pts))
    # re-projecting every valid point gives back its pixel centre (u = column, v = row)
    mask = np.zeros((H, W), bool)
    mask[100:140, 200:260] = True
    mask[10, 20] = True  # masked but invalid depth: must be dropped
    P, uv = depth_to_points(depth, K, mask)
    assert P.shape == (40 * 60, 3) and uv.dtype == np.int64
    uv_re, z = project_camera_points(K, P)
    assert np.abs(uv_re - uv).max() < 1e-9
    np.testing.assert_allclose(z, depth[uv[:, 1], uv[:, 0]], rtol=0, atol=1e-15)


def test_depth_rejects_millimetres_and_negative():
    with pytest.raises(InputError, match="millimetre"):
        backproject_depth(np.full((4, 5), 800, np.uint16), K)
    d = np.ones((4, 5))
    d[2, 3] = -1.0
    with pytest.raises(InputError, match="negative"):
        backproject_depth(d, K)


# ------------------------------------------------------------------ crops

def test_crop_geometry_numbers():
    c = make_crop([100, 50, 80, 40], size=224, margin=0.2, image_size=(W, H))
    assert c.side == pytest.approx(96.0)
    np.testing.assert_allclose(c.center, [139.5, 69.5])
    assert c.scale == pytest.approx(224 / 96)
    # the box centre maps to the crop centre, the crop edges to the crop's outer pixel edges
    np.testing.assert_allclose(c.image_to_crop([139.5, 69.5]), [111.5, 111.5], atol=1e-12)
    u0, v0, u1, v1 = c.image_box_xyxy
    np.testing.assert_allclose(c.image_to_crop([[u0, v0], [u1, v1]]),
                               [[-0.5, -0.5], [223.5, 223.5]], atol=1e-12)
    # the crop box, fed back as a box with no margin, reproduces the same affine
    c2 = make_crop(c.image_box_xywh, size=224, margin=0.0)
    np.testing.assert_allclose(c2.A, c.A, atol=1e-12)
    np.testing.assert_allclose(c.A @ c.A_inv, np.eye(3), atol=1e-12)


def test_crop_roundtrip_and_intrinsics():
    rng = np.random.default_rng(2)
    for _ in range(5):
        box = [rng.uniform(-50, 600), rng.uniform(-50, 440), rng.uniform(5, 300),
               rng.uniform(5, 300)]
        c = make_crop(box, size=int(rng.integers(32, 300)), margin=rng.uniform(0, 0.5))
        uv = rng.uniform(-100, 700, size=(200, 2))
        assert np.abs(c.crop_to_image(c.image_to_crop(uv)) - uv).max() < 1e-6
        T = _pose(rng)
        X = rng.uniform(-0.05, 0.05, size=(100, 3))
        uv_img, _ = project(K, T, X)
        uv_crop, _ = project(c.intrinsics(K), T, X)
        assert np.abs(uv_crop - c.image_to_crop(uv_img)).max() < 1e-9


def _dot_centroid(img):
    w = img.astype(np.float64)
    if w.ndim == 3:
        w = w.sum(axis=2)
    v, u = np.mgrid[0:w.shape[0], 0:w.shape[1]]
    return np.array([(w * u).sum(), (w * v).sum()]) / w.sum()


@pytest.mark.parametrize("size, box, dot", [
    (224, [250, 180, 60, 45], [283.3, 199.7]),   # upsampled ~3.1x
    (128, [300, 200, 200, 150], [351.8, 310.4]),  # downsampled ~1.9x
])
def test_warp_moves_a_dot_where_image_to_crop_says(size, box, dot):
    # a smooth Gaussian dot at a sub-pixel image location, well inside the crop, uint8 RGB
    dot = np.array(dot)
    v, u = np.mgrid[0:H, 0:W]
    sigma = 4.0
    g = np.exp(-((u - dot[0]) ** 2 + (v - dot[1]) ** 2) / (2 * sigma ** 2))
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 1] = np.round(255 * g).astype(np.uint8)
    c = make_crop(box, size=size, margin=0.2, image_size=(W, H))
    out = c.warp(img)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    expected = c.image_to_crop(dot)
    got = _dot_centroid(out)
    # measured error ~0.01 px; a half-pixel convention slip gives ~0.5 px, so demand 0.1
    assert np.abs(got - expected).max() < 0.1, (got, expected)


def test_warp_nearest_mask_depth_and_padding():
    depth = np.full((H, W), 0.7, np.float32)
    mask = np.zeros((H, W), bool)
    mask[200:260, 300:380] = True
    # box hanging off the top-left corner: part of the crop lies outside the image
    c = make_crop([-40, -30, 100, 80], size=100, margin=0.0, image_size=(W, H))
    d = c.warp(depth, interpolation="nearest")
    assert d.dtype == np.float32 and d.shape == (100, 100)
    # crop pixel (0, 0) is at image (-40, -40): outside -> 0; the last, (59, 59), is inside
    assert d[0, 0] == 0.0 and d[-1, -1] == np.float32(0.7)
    assert set(np.unique(d).tolist()) == {0.0, np.float32(0.7).item()}  # nearest: no blends
    # a crop sampled 1:1 with no margin copies the mask exactly
    c1 = make_crop([290, 190, 100, 80], size=100, margin=0.0, image_size=(W, H))
    m = c1.warp(mask, interpolation="nearest")
    assert m.dtype == bool
    # crop covers image rows 180..279 (side 100 centred on row 229.5), columns 290..389
    np.testing.assert_array_equal(m, mask[180:280, 290:390])
    with pytest.raises(InputError, match="interpolation"):
        c1.warp(mask, interpolation="area")
    with pytest.raises(InputError, match="640x480"):
        c1.warp(np.zeros((10, 10), np.uint8))


@pytest.mark.parametrize("box, words", [
    ([10, 10, 0, 20], ["degenerate", "[10.0, 10.0, 0.0, 20.0]"]),
    ([10, 10, 20, 1], ["degenerate"]),
    ([np.nan, 10, 20, 20], ["not finite", "box_xywh"]),
    ([700, 10, 20, 20], ["entirely outside", "640x480"]),
    ([-30, 10, 30, 20], ["entirely outside"]),
    ([10, 20, 30], ["4 numbers"]),
])
def test_make_crop_rejects_bad_boxes(box, words):
    with pytest.raises(InputError) as e:
        make_crop(box, image_size=(W, H))
    for w in words:
        assert w in str(e.value)


def test_make_crop_partly_outside_is_fine():
    c = make_crop([-30, 10, 40, 20], image_size=(W, H))  # 10 px inside
    assert c.image_box_xyxy[0] < -0.5


def test_crop_around_projection_contains_the_sphere():
    rng = np.random.default_rng(3)
    T = make_pose(random_rotation(rng), [0.12, -0.08, 0.5])
    diameter = 0.1
    c = crop_around_projection(K, T, diameter, size=224, image_size=(W, H))
    # dense samples on the sphere's surface all project inside the crop, and the extreme ones
    # touch its border (exact tangent box; square crop -> touch along the longer axis)
    dirs = rng.normal(size=(20000, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    uv, _ = project(K, T, dirs * diameter / 2)  # sphere points, object frame
    uvc = c.image_to_crop(uv)
    assert uvc.min() >= -0.5 - 1e-6 and uvc.max() <= 223.5 + 1e-6
    span = uvc.max(axis=0) - uvc.min(axis=0)
    assert span.max() > 224 * 0.99
    with pytest.raises(InputError, match="behind the camera plane"):
        crop_around_projection(K, make_pose(np.eye(3), [0, 0, 0.04]), diameter)
    with pytest.raises(InputError, match="diameter"):
        crop_around_projection(K, T, -1.0)


def test_unchecked_projection_agrees_with_the_checked_one_and_inverts():
    from coop_ros.geometry.camera import (backproject_pixels, project_camera_points,
                                          project_unchecked)
    rng = np.random.default_rng(5)
    K = np.array([[600.0, 0, 320.5], [0, 605.0, 239.5], [0, 0, 1]])
    X = np.column_stack([rng.uniform(-0.3, 0.3, (50, 2)), rng.uniform(0.4, 2.0, 50)])
    uv, z = project_camera_points(K, X)
    assert np.array_equal(project_unchecked(K, X), uv)
    assert np.abs(backproject_pixels(K, uv, z) - X).max() < 1e-12
    # min_z keeps points at / behind the camera finite; without it the division is plain
    Xb = np.array([[0.1, 0.2, 0.0], [0.1, 0.2, -1.0]])
    assert np.all(np.isfinite(project_unchecked(K, Xb, min_z=1e-9)))
    assert project_unchecked(K, X[None]).shape == (1, 50, 2)
