"""Numeric tests of coop_ros.geometry.viewpoints (icosphere template views, look-at poses)."""
import numpy as np
import pytest

from coop_ros.errors import InputError
from coop_ros.geometry.camera import project
from coop_ros.geometry.se3 import invert, transform_points
from coop_ros.geometry.viewpoints import (look_at, nearest_neighbour_angles, template_poses,
                                          viewpoint_directions)

K = np.array([[572.4, 0.0, 325.3], [0.0, 573.6, 242.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("n", [12, 42, 162, 642])
def test_viewpoint_counts_and_unit_norm(n):
    d = viewpoint_directions(n)
    assert d.shape == (n, 3) and d.dtype == np.float64
    assert np.abs(np.linalg.norm(d, axis=1) - 1.0).max() < 1e-12
    assert np.abs(d.mean(axis=0)).max() < 1e-12  # symmetric sphere sampling
    assert len(np.unique(np.round(d, 9), axis=0)) == n


def test_42_views_spacing():
    ang = nearest_neighbour_angles(viewpoint_directions(42))
    print(f"42 views: nn angle mean {ang.mean():.3f} min {ang.min():.3f} max {ang.max():.3f}")
    assert abs(ang.mean() - 31.7) < 1.0 and ang.min() > 28.0
    # 12 icosahedron vertices: all neighbours at the edge angle arctan(2) = 63.435 deg
    ang12 = nearest_neighbour_angles(viewpoint_directions(12))
    np.testing.assert_allclose(ang12, np.degrees(np.arctan(2.0)), atol=1e-9)
    # each level roughly halves the spacing
    m162 = nearest_neighbour_angles(viewpoint_directions(162)).mean()
    assert 14.0 < m162 < 18.0


def test_bad_view_count_lists_allowed():
    with pytest.raises(InputError) as e:
        viewpoint_directions(40)
    for s in ("12", "42", "162", "642", "40"):
        assert s in str(e.value)


def test_look_at_target_on_optical_axis():
    rng = np.random.default_rng(0)
    for _ in range(20):
        eye = rng.uniform(-1, 1, 3)
        target = rng.uniform(-0.1, 0.1, 3)
        T = look_at(eye, target)
        R = T[:3, :3]
        assert np.abs(R @ R.T - np.eye(3)).max() < 1e-12
        assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
        uv, z = project(K, T, target[None])
        assert np.abs(uv[0] - K[:2, 2]).max() < 1e-9
        assert z[0] == pytest.approx(np.linalg.norm(target - eye), abs=1e-12)
        # the camera centre is at eye
        np.testing.assert_allclose(invert(T)[:3, 3], eye, atol=1e-12)
        # up points up in the image: a point above the target has a smaller v
        uv_up, _ = project(K, T, (target + [0, 0, 0.01])[None])
        if abs(np.dot((target - eye) / np.linalg.norm(target - eye), [0, 0, 1])) < 0.99:
            assert uv_up[0, 1] < uv[0, 1] and abs(uv_up[0, 0] - uv[0, 0]) < 1e-6


def test_look_at_parallel_up_is_deterministic():
    T1 = look_at([0, 0, 0.5])        # looking straight down the -z axis of the object
    T2 = look_at([0, 0, 0.5])
    np.testing.assert_array_equal(T1, T2)
    R = T1[:3, :3]
    assert np.abs(R @ R.T - np.eye(3)).max() < 1e-12 and np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R[2], [0, 0, -1], atol=1e-12)  # camera z = -object z
    np.testing.assert_allclose(transform_points(T1, np.zeros((1, 3)))[0], [0, 0, 0.5], atol=1e-12)
    T3 = look_at([0, 0, -0.5])
    np.testing.assert_allclose(T3[:3, :3][2], [0, 0, 1], atol=1e-12)


def test_look_at_bad_inputs():
    with pytest.raises(InputError, match="coincides"):
        look_at([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="eye"):
        look_at([np.nan, 0, 1])
    with pytest.raises(InputError, match="zero vector"):
        look_at([0, 0, 1], up=[0, 0, 0])


def test_template_poses():
    center = np.array([0.01, -0.02, 0.03])
    Ts = template_poses(42, distance=0.4, center=center)
    assert Ts.shape == (42, 4, 4) and Ts.dtype == np.float64
    c_cam = np.einsum("nij,j->ni", Ts[:, :3, :3], center) + Ts[:, :3, 3]
    np.testing.assert_allclose(c_cam, np.tile([0, 0, 0.4], (42, 1)), atol=1e-12)
    # camera centres sit on the sphere of radius 0.4 around center, along the icosphere dirs
    eyes = invert(Ts)[:, :3, 3]
    np.testing.assert_allclose((eyes - center) / 0.4, viewpoint_directions(42), atol=1e-12)
    # every camera's optical axis (row 2 of R, in object coordinates) points back along -dir
    np.testing.assert_allclose(Ts[:, 2, :3], -viewpoint_directions(42), atol=1e-12)
    with pytest.raises(InputError, match="distance"):
        template_poses(42)
    with pytest.raises(InputError, match="distance"):
        template_poses(42, distance=-0.1)
