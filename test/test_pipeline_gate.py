"""The plausibility gate (coop_ros/pipeline/gate.py) on a known pose of a 150 x 100 x 60 mm box
at 0.8 m: the true pose and poses off by 10-50 % in distance pass; a pose 10x or 100x too far, 0.46 mm
from the camera, behind it, 1000x too far (mesh units), beside the box, or whose rendered depth
the observed depth contradicts fails with its numbers. No renderer: the depth views are built
here."""
import numpy as np
import pytest
import trimesh

from coop_ros.errors import Reason
from coop_ros.geometry.se3 import make_pose, rotvec_to_matrix
from coop_ros.objects import ObjectModel
from coop_ros.pipeline.gate import DEFAULT_LIMITS, apply_gate, check_pose, hull_points
from coop_ros.pipeline.results import STATUS_OK, Hypothesis, PoseResult

K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
SIZE = (640, 480)


@pytest.fixture(scope="module")
def box():
    obj = ObjectModel.from_trimesh(trimesh.creation.box(extents=(0.15, 0.10, 0.06)), units="m")
    T = make_pose(rotvec_to_matrix(np.array([0.3, -0.4, 0.2])), np.array([0.05, -0.02, 0.8]))
    pts = hull_points(obj)
    P = pts @ T[:3, :3].T + T[:3, 3]
    uv = P[:, :2] / P[:, 2:] * 600.0 + [320, 240]
    x0, y0 = np.floor(uv.min(0) + 0.5)
    x1, y1 = np.ceil(uv.max(0) - 0.5)
    return obj, T, pts, (x0, y0, x1 - x0 + 1, y1 - y0 + 1)


def _moved(T, k=1.0, shift=(0.0, 0.0, 0.0)):
    T = T.copy()
    T[:3, 3] = T[:3, 3] * k + np.asarray(shift)
    return T


def test_true_and_imprecise_poses_pass(box):
    obj, T, pts, b = box
    for k in (1.0, 0.9, 1.1, 1.5):      # RGB distance is uncertain: 10-50 % off still passes
        rep = check_pose(_moved(T, k), pts, K, SIZE, b, obj.diameter)
        assert rep.passed, (k, rep.detail)
    rep = check_pose(T, pts, K, SIZE, b, obj.diameter)
    assert 0.95 < rep.numbers["small"] < 1.1 and 0.9 < rep.numbers["large"] < 1.05
    assert rep.numbers["cover"] == pytest.approx(1.0)
    # occlusion: the detection box is only the left third of the object -> still passes
    occl = (b[0], b[1], b[2] / 3.0, b[3])
    assert check_pose(T, pts, K, SIZE, occl, obj.diameter).passed


def test_implausible_poses_fail_with_their_numbers(box):
    obj, T, pts, b = box
    cases = {
        "10x too far": (_moved(T, 10.0), "box", "too far"),
        "100x too far": (_moved(T, 100.0), "front", "80 m from the camera (at most 20 m)"),
        "0.46 mm from the camera": (_moved(T, 0.46e-3 / 0.8), "front", "z 0.46 mm (median)"),
        "behind the camera": (_moved(T, -1.0), "front", "not in front of the camera"),
        "mesh mm as m": (_moved(T, 1000.0), "front", "mesh in millimetres declared as metres"),
        "5x too near": (_moved(T, 0.2), "box", "too near"),
        "beside the box": (_moved(T, shift=(0.3, 0.0, 0.0)), "box", "beside the detected"),
    }
    for name, (Tb, check, words) in cases.items():
        rep = check_pose(Tb, pts, K, SIZE, b, obj.diameter)
        assert not rep.passed and rep.check == check and words in rep.detail, (name, rep)
    rep = check_pose(_moved(T, 10.0), pts, K, SIZE, b, obj.diameter)
    assert rep.numbers["small"] < 0.11 and "(x0.099" in rep.detail and "within 0.8" in rep.detail


def _view(z_obs, z_ren=0.8, n=40):
    m = np.zeros((64, 64), bool)
    m[10:10 + n, 10:10 + n] = True
    zr = np.where(m, z_ren, 0.0)
    return m, zr, np.full((64, 64), z_obs)


def test_depth_check_allows_occluders_and_refuses_contradictions(box):
    obj, T, pts, b = box

    def rep(view):
        return check_pose(T, pts, K, SIZE, b, obj.diameter, depth_view=view)
    assert rep(_view(0.801)).passed                       # agrees within millimetres
    m, zr, zo = _view(0.8)
    zo[10:40, 10:50] = 0.5                                # 3/4 of it behind an occluder
    r = rep((m, zr, zo))
    assert r.passed and r.numbers["nearer"] > 0.7
    r = rep(_view(0.44, z_ren=97.8))                      # mesh in mm declared as metres
    assert not r.passed and r.check == "depth" and r.numbers["agree"] == 0.0
    r = rep(_view(1.2))                                   # the camera sees through it
    assert not r.passed and "sees through" in r.detail
    m, zr, zo = _view(0.0)                                # no depth measured: not judged
    assert rep((m, zr, zo)).passed


def test_apply_gate_fails_the_result_and_marks_implausible_alternatives(box):
    obj, T, pts, b = box
    far = _moved(T, 10.0)
    hyps = [Hypothesis(T_coarse=T, T=T, template_index=0, template_score=1.0, score=0.6),
            Hypothesis(T_coarse=far, T=far, template_index=1, template_score=1.0, score=0.5)]
    r = PoseResult(obj_id=1, status=STATUS_OK, T_cam_obj=T, score=0.6, hypotheses=hyps,
                   timings={"total": 1.0}, box_xywh=np.asarray(b))
    out = apply_gate(r, pts, K, SIZE, obj.diameter)
    assert out.ok and out.hypotheses[1].status == "failed"
    assert out.hypotheses[1].reason_code is Reason.IMPLAUSIBLE_POSE
    assert out.timings["gate"] >= 0 and out.timings["total"] >= 1.0
    r2 = PoseResult(obj_id=1, status=STATUS_OK, T_cam_obj=far, score=0.6, hypotheses=hyps[1:],
                    box_xywh=np.asarray(b))
    out = apply_gate(r2, pts, K, SIZE, obj.diameter)
    assert not out.ok and out.T_cam_obj is None and out.reason_code is Reason.IMPLAUSIBLE_POSE
    assert out.reason.startswith("implausible_pose: box:") and out.score == 0.6
    assert DEFAULT_LIMITS.box_small < 1.0 < DEFAULT_LIMITS.box_large
