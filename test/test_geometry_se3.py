"""A few numeric tests of coop_ros.geometry.se3."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from coop_ros.errors import InputError
from coop_ros.geometry.se3 import (check_pose, invert, make_pose, matrix_to_quat_xyzw,
                                   matrix_to_rotvec, perturb_pose, pose_errors,
                                   quat_xyzw_to_matrix, random_rotation, rotation_angle_deg,
                                   rotvec_to_matrix, transform_points)


def test_invert_and_transform_roundtrip():
    rng = np.random.default_rng(0)
    T = make_pose(random_rotation(rng), rng.normal(size=3))
    np.testing.assert_allclose(T @ invert(T), np.eye(4), atol=1e-12)
    X = rng.normal(size=(30, 3))
    np.testing.assert_allclose(transform_points(invert(T), transform_points(T, X)), X, atol=1e-12)
    # batched inverse
    Ts = np.stack([make_pose(R, t) for R, t in zip(random_rotation(rng, 5), rng.normal(size=(5, 3)))])
    np.testing.assert_allclose(np.einsum("nij,njk->nik", Ts, invert(Ts)),
                               np.tile(np.eye(4), (5, 1, 1)), atol=1e-12)


def test_rotation_conversions():
    R = rotvec_to_matrix([0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(R, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(matrix_to_rotvec(R), [0, 0, np.pi / 2], atol=1e-15)
    q = matrix_to_quat_xyzw(R)
    np.testing.assert_allclose(q, [0, 0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-15)
    # w >= 0 canonical sign, even for a rotation scipy might return with w < 0
    Rs = random_rotation(np.random.default_rng(1), 50)
    qs = matrix_to_quat_xyzw(Rs)
    assert qs.shape == (50, 4) and np.all(qs[:, 3] >= 0)
    np.testing.assert_allclose(quat_xyzw_to_matrix(qs), Rs, atol=1e-12)
    np.testing.assert_allclose(quat_xyzw_to_matrix(qs), Rotation.from_quat(qs).as_matrix(),
                               atol=1e-15)


def test_angles_and_pose_errors():
    R = rotvec_to_matrix(np.array([1.0, 2.0, 2.0]) / 3.0 * np.radians(37.0))
    assert rotation_angle_deg(np.eye(3), R) == pytest.approx(37.0, abs=1e-9)
    T_gt = make_pose(np.eye(3), [0.0, 0.0, 0.5])
    T_est = make_pose(R, [0.003, -0.004, 0.5])
    r, t = pose_errors(T_est, T_gt)
    assert r == pytest.approx(37.0, abs=1e-9) and t == pytest.approx(0.005, abs=1e-15)


def test_perturb_pose_exact_magnitudes():
    rng = np.random.default_rng(2)
    T = make_pose(random_rotation(rng), [0.1, 0.0, 0.7])
    for ang, tr in [(5.0, 0.01), (30.0, 0.0), (170.0, 0.2)]:
        P = perturb_pose(T, ang, tr, rng)
        r, t = pose_errors(P, T)
        assert r == pytest.approx(ang, abs=1e-7) and t == pytest.approx(tr, abs=1e-12)
        check_pose(P)


def test_check_pose_rejects():
    with pytest.raises(InputError, match="4x4"):
        check_pose(np.eye(3))
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        check_pose(bad, "T_cam_obj")
    refl = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(InputError, match="det"):
        check_pose(refl)
