"""BOP pose errors (MSSD, MSPD, ADD, ADD-S) and recalls: analytic values on synthetic objects."""
import numpy as np
import pytest
import trimesh

from coop_ros.bop.metrics import (ADD_THRESHOLD, MSPD_THRESHOLDS_PX, MSSD_THRESHOLDS, add, adds,
                                  mspd, mspd_thresholds, mssd, recall_add, recall_mspd,
                                  recall_mssd)
from coop_ros.errors import InputError
from coop_ros.geometry.se3 import random_rotation, rotvec_to_matrix
from coop_ros.objects import ObjectModel

K = np.array([[600.0, 0.0, 320.0], [0.0, 610.0, 240.0], [0.0, 0.0, 1.0]])
NO_SYM = np.eye(4)[None]


def _rot(axis, deg):
    return rotvec_to_matrix(np.radians(deg) * np.asarray(axis, dtype=np.float64))


@pytest.fixture
def gt():
    rng = np.random.default_rng(3)
    return random_rotation(rng), np.array([0.02, -0.03, 0.7])


@pytest.fixture
def cylinder():
    """Radius 5 cm, height 20 cm, continuous symmetry about z (through the origin)."""
    mesh = trimesh.creation.cylinder(radius=0.05, height=0.2, sections=64)
    info = {"symmetries_continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]}
    return ObjectModel.from_trimesh(mesh, units="m", name="cyl", models_info=info)


@pytest.fixture
def box():
    """0.2 x 0.1 x 0.05 m box with the three 180 deg symmetries (about x, y and z)."""
    mesh = trimesh.creation.box(extents=(0.2, 0.1, 0.05))
    syms = []
    for axis in np.eye(3):
        T = np.eye(4)
        T[:3, :3] = np.round(_rot(axis, 180.0))
        syms.append(T.reshape(-1).tolist())
    return ObjectModel.from_trimesh(mesh, units="m", name="box",
                                    models_info={"symmetries_discrete": syms})


def test_thresholds():
    assert np.allclose(MSSD_THRESHOLDS, [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5])
    assert np.allclose(MSPD_THRESHOLDS_PX, np.arange(5, 51, 5))
    assert np.allclose(mspd_thresholds(640), np.arange(5, 51, 5))
    assert np.allclose(mspd_thresholds(1280), np.arange(10, 101, 10))
    assert ADD_THRESHOLD == 0.1


def test_zero_at_ground_truth(cylinder, gt):
    R, t = gt
    pts, syms = cylinder.vertices, cylinder.symmetry_transforms()
    assert mssd(R, t, R, t, pts, syms) == pytest.approx(0.0, abs=1e-12)
    assert mspd(R, t, R, t, K, pts, syms) == pytest.approx(0.0, abs=1e-9)
    assert add(R, t, R, t, pts) == pytest.approx(0.0, abs=1e-12)
    assert adds(R, t, R, t, pts) == pytest.approx(0.0, abs=1e-12)


def test_pure_translation(gt):
    R, t = gt
    pts = np.random.default_rng(0).uniform(-0.05, 0.05, size=(500, 3))
    d = np.array([0.003, -0.004, 0.012])          # |d| = 0.013 m
    assert mssd(R, t + d, R, t, pts, NO_SYM) == pytest.approx(0.013, abs=1e-12)
    assert add(R, t + d, R, t, pts) == pytest.approx(0.013, abs=1e-12)
    assert adds(R, t + d, R, t, pts) <= 0.013 + 1e-12


def test_mspd_planar_shift_is_fx_d_over_z():
    # planar object (z = 0 in its frame) facing the camera at depth z = 0.5 m, moved by d = 1 cm
    # along x: every point moves by fx * d / z = 600 * 0.01 / 0.5 = 12 px.
    xy = np.random.default_rng(1).uniform(-0.04, 0.04, size=(300, 2))
    pts = np.column_stack([xy, np.zeros(300)])
    R, t = np.eye(3), np.array([0.01, 0.02, 0.5])
    e = mspd(R, t + [0.01, 0.0, 0.0], R, t, K, pts, NO_SYM)
    assert e == pytest.approx(12.0, abs=1e-9)
    e_y = mspd(R, t + [0.0, 0.01, 0.0], R, t, K, pts, NO_SYM)   # fy = 610 -> 12.2 px
    assert e_y == pytest.approx(12.2, abs=1e-9)
    assert recall_mspd(e, 640) == pytest.approx(0.8)     # 12 < 15, 20, ..., 50
    assert recall_mspd(e, 1280) == pytest.approx(0.9)    # 12 < 20, 30, ..., 100


def test_rotation_about_centre_gives_chord(gt):
    # ring of radius r = 4 cm in the xy plane plus interior points; rotation by 30 deg about z
    # through the centre: the ring points move by the chord 2 r sin(theta / 2) = 0.0207055 m.
    r, theta = 0.04, 30.0
    phi = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    ring = np.column_stack([r * np.cos(phi), r * np.sin(phi), np.zeros_like(phi)])
    inner = np.random.default_rng(2).uniform(-0.02, 0.02, size=(200, 3))
    pts = np.vstack([ring, inner])
    R, t = gt
    R_e = R @ _rot([0, 0, 1], theta)
    chord = 2 * r * np.sin(np.radians(theta) / 2)
    assert chord == pytest.approx(0.0207055236, abs=1e-9)
    assert mssd(R_e, t, R, t, pts, NO_SYM) == pytest.approx(chord, abs=1e-12)
    assert add(R_e, t, R, t, pts) < chord            # interior points move less
    assert add(R_e, t, R, t, ring) == pytest.approx(chord, abs=1e-12)


def test_continuous_symmetry_cylinder(cylinder, gt):
    R, t = gt
    syms = cylinder.symmetry_transforms()
    d = cylinder.diameter
    assert d == pytest.approx(np.hypot(0.1, 0.2), abs=1e-12)   # 0.2236 m
    # 37 deg about the symmetry axis: MSSD ~ 0 (residual of the 1.14 deg discretisation)
    R_e = R @ _rot([0, 0, 1], 37.0)
    e = mssd(R_e, t, R, t, cylinder.vertices, syms)
    assert e < 0.01 * d
    assert recall_mssd(e, d) == 1.0
    assert mspd(R_e, t, R, t, K, cylinder.vertices, syms) < 1.0   # px
    # without the symmetries the same estimate is wrong by 2 r sin(18.5 deg) = 0.0317 m
    e_nosym = mssd(R_e, t, R, t, cylinder.vertices, NO_SYM)
    assert e_nosym == pytest.approx(2 * 0.05 * np.sin(np.radians(18.5)), rel=1e-9)
    # 37 deg about x: the rim points (0, +-r, +-h/2) move by 2 sin(18.5 deg) sqrt(r^2 + (h/2)^2)
    R_x = R @ _rot([1, 0, 0], 37.0)
    e_x = mssd(R_x, t, R, t, cylinder.vertices, syms)
    expected = 2 * np.sin(np.radians(18.5)) * np.hypot(0.05, 0.1)
    assert e_x == pytest.approx(expected, rel=1e-6)             # 0.07095 m = 0.317 d
    assert e_x > 0.3 * d
    assert recall_mssd(e_x, d) == pytest.approx(0.4)             # correct only at 0.35 .. 0.5


def test_discrete_symmetry_box(box, gt):
    R, t = gt
    syms = box.symmetry_transforms()
    assert syms.shape == (4, 4, 4)
    pts = box.vertices
    R_e = R @ _rot([0, 0, 1], 180.0)
    assert mssd(R_e, t, R, t, pts, syms) == pytest.approx(0.0, abs=1e-12)
    assert mspd(R_e, t, R, t, K, pts, syms) == pytest.approx(0.0, abs=1e-9)
    assert recall_mssd(mssd(R_e, t, R, t, pts, syms), box.diameter) == 1.0
    # without symmetries: corners (+-0.1, +-0.05, .) move by 2 * hypot(0.1, 0.05) = 0.2236 m
    assert mssd(R_e, t, R, t, pts, NO_SYM) == pytest.approx(2 * np.hypot(0.1, 0.05), abs=1e-12)
    # the box vertex set maps onto itself: ADD-S = 0 while ADD = mean corner motion
    assert adds(R_e, t, R, t, pts) == pytest.approx(0.0, abs=1e-12)
    assert add(R_e, t, R, t, pts) == pytest.approx(2 * np.hypot(0.1, 0.05), abs=1e-12)
    # a 90 deg turn about z is not a symmetry: the best symmetry leaves >= 0.1 m error
    R_90 = R @ _rot([0, 0, 1], 90.0)
    assert mssd(R_90, t, R, t, pts, syms) > 0.1
    assert recall_mssd(mssd(R_90, t, R, t, pts, syms), box.diameter) < 1.0


def test_adds_never_exceeds_add():
    rng = np.random.default_rng(7)
    mesh = trimesh.creation.box(extents=(0.1, 0.06, 0.03))
    obj = ObjectModel.from_trimesh(mesh, units="m")
    pts = obj.sample_surface(400, seed=1)
    for _ in range(20):
        R_g, R_e = random_rotation(rng), random_rotation(rng)
        t_g = np.array([0.0, 0.0, 0.5])
        t_e = t_g + rng.normal(scale=0.02, size=3)
        a, s = add(R_e, t_e, R_g, t_g, pts), adds(R_e, t_e, R_g, t_g, pts)
        assert 0 <= s <= a + 1e-15
        assert a > 0


def test_recall_values():
    d = 0.2
    assert recall_mssd(0.12 * d, d) == pytest.approx(0.8)
    assert recall_mssd(0.0, d) == 1.0
    assert recall_mssd(0.05 * d, d) == pytest.approx(0.9)       # strict "<", as BOP
    assert recall_mssd(0.6 * d, d) == 0.0
    assert recall_mssd(np.inf, d) == 0.0                         # missing estimate
    assert recall_mssd([0.12 * d, np.inf], d) == pytest.approx(0.4)
    assert recall_mspd(27.0, 640) == pytest.approx(0.5)          # 27 < 30 .. 50
    assert recall_add(0.09 * d, d) == 1.0
    assert recall_add(0.11 * d, d) == 0.0
    assert recall_add(np.array([0.05, 0.2, np.inf]) * d, d) == pytest.approx(1 / 3)


def test_bad_input_raises():
    pts = np.zeros((5, 3))
    with pytest.raises(InputError, match="rotation"):
        mssd(np.eye(2), np.zeros(3), np.eye(3), np.zeros(3), pts, NO_SYM)
    with pytest.raises(InputError, match="pts"):
        add(np.eye(3), np.zeros(3), np.eye(3), np.zeros(3), np.zeros((5, 2)))
    with pytest.raises(InputError, match="syms"):
        mssd(np.eye(3), np.zeros(3), np.eye(3), np.zeros(3), pts, np.eye(3))
    with pytest.raises(InputError, match="K"):
        mspd(np.eye(3), [0, 0, 1], np.eye(3), [0, 0, 1], np.eye(3) * 0, pts, NO_SYM)
    with pytest.raises(InputError, match="diameter"):
        recall_mssd(0.01, 0.0)
    with pytest.raises(InputError, match="image_width"):
        recall_mspd(3.0, -640)
