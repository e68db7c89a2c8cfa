"""PoseEstimator end to end on a synthetic frame of a textured procedural box (seeded), the
refinement on its own, the covariance, and every failure path."""
import numpy as np
import pytest

from coop_ros.backends.base import NO_MATCH, Backend, CoarseMatcher, CoarseMatches
from coop_ros.errors import InputError
from coop_ros.geometry.se3 import make_pose, perturb_pose, pose_errors, random_rotation
from coop_ros.pipeline import Detection, PoseConfig, PoseResult, Reason
from coop_ros.pipeline.estimator import PoseEstimator
from coop_ros.pipeline.refine import RefineSettings, Refiner
from coop_ros.pipeline.views import QueryImage, RenderTarget

K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from coop_ros.synth.procedural import make_object, random_background
    from coop_ros.render.renderer import Light
    obj = make_object("textured_box", seed=0)
    est = PoseEstimator(PoseConfig(template_cache_dir=str(tmp_path_factory.mktemp("tpl"))))
    est.add_object(1, obj)
    est.renderer.add_object("scene", obj)
    frames = {}
    for seed in (1, 6):
        rng = np.random.default_rng(seed)
        R = random_rotation(rng)
        t = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.07, 0.07), rng.uniform(0.5, 0.8)])
        T = make_pose(R, t - R @ obj.center)
        bg = random_background(480, 640, rng)
        out = est.renderer.render_scene([("scene", T)], K, 640, 480, light=Light.random(rng),
                                        background=bg)
        rows, cols = np.nonzero(out.mask[0])
        box = (cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
        depth = out.depth[0] + (out.depth[0] == 0) * 1.2   # a wall behind the object
        frames[seed] = (out.rgb[0], depth, box, T)
    yield est, obj, frames
    est.release()


def test_rgbd_estimate_close_to_gt(setup):
    est, obj, frames = setup
    rgb, depth, box, T = frames[1]
    r = est.estimate(rgb, K, [Detection(1, box)], depth=depth, mode="rgbd", num_hypotheses=1)[0]
    assert r.ok, r.reason
    rot, tr = pose_errors(r.T_cam_obj, T)
    assert rot < 2.0 and tr < 0.005
    assert len(r.hypotheses) == 1 and r.hypotheses[0].T_coarse.shape == (4, 4)
    for k in ("templates", "crop", "coarse", "refine", "refine_iter_0", "selection", "total"):
        assert k in r.timings
    C = r.covariance
    assert C.shape == (6, 6) and np.allclose(C, C.T)
    assert np.linalg.eigvalsh(C).min() > 0


def test_rgb_estimate_close_to_gt(setup):
    est, obj, frames = setup
    rgb, _, box, T = frames[6]
    r = est.estimate(rgb, K, [Detection(1, box)], mode="rgb", num_hypotheses=2)[0]
    assert r.ok, r.reason
    rot, tr = pose_errors(r.T_cam_obj, T)
    assert rot < 3.0 and tr < 0.02
    assert 1 <= len(r.hypotheses) <= 2
    assert r.hypotheses[0].score >= max(h.score for h in r.hypotheses)
    C = r.covariance
    assert C.shape == (6, 6) and np.allclose(C, C.T) and np.linalg.eigvalsh(C).min() > 0


def test_refinement_improves_a_perturbed_pose(setup):
    est, obj, frames = setup
    rgb, depth, box, T = frames[1]
    key = est.render_key(1)
    rng = np.random.default_rng(3)
    T0 = perturb_pose(T, 6.0, 0.015, rng)
    q = QueryImage(rgb, K)
    target = RenderTarget(est.renderer, key, obj)
    r = Refiner(target, est.backend, RefineSettings(iterations=4)).rgb(T0, q)
    rot0, tr0 = pose_errors(T0, T)
    rot, tr = pose_errors(r.T, T)
    assert rot < 0.5 * rot0 and tr < 0.5 * tr0
    qd = QueryImage(rgb, K, depth)
    r = Refiner(target, est.backend, RefineSettings(iterations=2)).rgbd(T0, qd)
    rot, tr = pose_errors(r.T, T)
    assert rot < 1.0 and tr < 0.003


# ------------------------------------------------------------------ failure paths

def test_unknown_object(setup):
    est, obj, frames = setup
    rgb, depth, box, T = frames[1]
    r = est.estimate(rgb, K, [Detection(99, box)])[0]
    assert r.status == "failed" and r.reason_code is Reason.UNKNOWN_OBJECT
    assert r.reason.startswith("unknown_object: object id 99 is not registered")
    assert r.T_cam_obj is None and r.covariance is None


def test_box_outside_image(setup):
    est, obj, frames = setup
    rgb = frames[1][0]
    r = est.estimate(rgb, K, [Detection(1, (700, 500, 50, 50))])[0]
    assert r.status == "failed" and r.reason_code is Reason.BOX_OUTSIDE_IMAGE
    assert r.reason.startswith("box_outside_image: detection box: box_xywh")
    assert r.T_cam_obj is None


def test_empty_depth_in_box(setup):
    est, obj, frames = setup
    rgb, depth, box, T = frames[1]
    d = depth.copy()
    x, y, w, h = box
    d[y:y + h, x:x + w] = 0
    r = est.estimate(rgb, K, [Detection(1, box)], depth=d, mode="rgbd")[0]
    assert r.status == "failed" and r.reason_code is Reason.EMPTY_DEPTH
    assert r.reason.startswith("empty_depth: only 0 of ")


def test_bad_call_raises(setup):
    est, obj, frames = setup
    rgb, depth, box, T = frames[1]
    with pytest.raises(InputError, match="depth"):
        est.estimate(rgb, K, [Detection(1, box)], mode="rgbd")
    with pytest.raises(InputError, match="mode"):
        est.estimate(rgb, K, [Detection(1, box)], mode="rgbx")


class _StubMatcher(CoarseMatcher):
    """Returns fixed patch matches (to drive the coarse stage's failure paths)."""

    def __init__(self, kind):
        self.kind = kind

    def prepare(self, bank):
        return None

    def match(self, query, bank, prepared=None):
        T, P = len(bank), (query.size // 16) ** 2
        idx = np.full((T, P), NO_MATCH, np.int64)
        scores = np.zeros(T)
        if self.kind == "few":
            idx[:, :3] = 90
            scores[:] = 1.0
        elif self.kind == "degenerate":   # every patch -> the same template pixel
            idx[:] = 90
            scores[:] = 1.0
        return CoarseMatches(idx, np.zeros((T, P, 2), np.float32),
                             (idx != NO_MATCH).astype(np.float32), scores)


@pytest.mark.parametrize("kind,reason", [("none", Reason.NO_TEMPLATE_MATCHED),
                                         ("few", Reason.TOO_FEW_CORRESPONDENCES),
                                         ("degenerate", Reason.PNP_FAILED)])
def test_coarse_failures(setup, kind, reason):
    est, obj, frames = setup
    rgb, depth, box, T = frames[1]
    saved = est.backend
    try:
        est.backend = Backend("stub", _StubMatcher(kind), saved.flow, saved.scorer)
        r = est.estimate(rgb, K, [Detection(1, box)], mode="rgb", num_hypotheses=1)[0]
    finally:
        est.backend = saved
    assert isinstance(r, PoseResult)
    assert r.status == "failed" and r.reason_code is reason, r.reason
    assert r.reason.startswith(f"{reason.value}: ")
    assert r.T_cam_obj is None


def test_config_validation():
    with pytest.raises(InputError, match="crop_size"):
        PoseConfig(crop_size=100).validate()
    with pytest.raises(InputError, match="n_templates"):
        PoseConfig(n_templates=40).validate()
    with pytest.raises(InputError, match="precision"):
        PoseConfig(precision="fp16").validate()
    with pytest.raises(InputError, match="unknown PoseConfig"):
        PoseConfig.from_dict({"crop": 224})
    assert PoseConfig.from_dict({"num_hypotheses": 3}).num_hypotheses == 3
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="seed"):
            PoseConfig(seed=bad).validate()


# ----------------------------------------------------------------------------- time budget
def test_deadline_and_cancel_skip_detections(setup):
    import time
    est, obj, frames = setup
    rgb, depth, box, T = frames[1]
    dets = [Detection(1, box), Detection(1, box)]
    r = est.estimate(rgb, K, dets, depth=depth, mode="rgbd", num_hypotheses=1,
                     deadline=time.monotonic() - 1.0)
    assert [x.status for x in r] == ["skipped", "skipped"]
    assert r[0].reason.startswith("budget_exhausted: 0.00 s of the time budget left")
    assert r[0].reason_code is Reason.BUDGET_EXHAUSTED
    assert r[0].T_cam_obj is None and np.allclose(r[0].box_xywh, box)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 1          # the first detection starts, then "shutdown"
    r = est.estimate(rgb, K, dets, depth=depth, mode="rgbd", num_hypotheses=1,
                     should_stop=stop)
    assert r[0].status == "skipped" and r[0].reason.startswith("cancelled: ")
    assert r[1].status == "skipped" and r[1].reason.startswith("cancelled: ")
    assert r[0].reason_code is r[1].reason_code is Reason.CANCELLED
    assert "coarse" in r[0].timings          # it stopped after its coarse stage


def test_budget_cut_refinement_returns_the_best_so_far(setup):
    """Refinement predicted not to fit: every hypothesis keeps its coarse pose, is scored, and
    the best is returned marked best_so_far; with time left the result is refined."""
    import time
    est, obj, frames = setup
    rgb, depth, box, T = frames[1]
    full = est.estimate(rgb, K, [Detection(1, box)], depth=depth, mode="rgbd",
                        num_hypotheses=3)[0]
    assert full.ok and not full.best_so_far
    assert not np.allclose(full.T_cam_obj, full.hypotheses[0].T_coarse)
    saved = dict(est.stage_times._mean)
    try:
        est.stage_times._mean["refine"] = 1000.0           # one refinement "takes" 1000 s
        cut = est.estimate(rgb, K, [Detection(1, box)], depth=depth, mode="rgbd",
                           num_hypotheses=3, deadline=time.monotonic() + 100.0)[0]
    finally:
        est.stage_times._mean.clear()
        est.stage_times._mean.update(saved)
    assert cut.ok and cut.best_so_far
    assert len(cut.hypotheses) == len(full.hypotheses)
    for h in cut.hypotheses:
        assert h.reason.startswith("not_refined: budget_exhausted")
        assert h.reason_code is Reason.NOT_REFINED
        assert np.array_equal(h.T, h.T_coarse)
    assert np.array_equal(cut.T_cam_obj, cut.hypotheses[0].T_coarse)
    assert cut.score == max(h.score for h in cut.hypotheses)


def test_rgbd_depth_hypotheses_find_the_shape_without_template_matches(setup):
    """RGB-D: when no template matches (a stub matcher with no patch match), the coarse poses
    from the observed depth geometry alone still give the pose; without them the detection
    fails with the matcher's reason."""
    import dataclasses

    from coop_ros.pipeline.coarse import depth_hypotheses, observed_points
    est, obj, frames = setup
    rgb, depth, box, T = frames[1]
    # the generator alone: among its 4, a coarse pose in the basin of the truth or of one of the
    # box shape's 180 deg turns (the depth sees the shape, not the texture)
    hyps = depth_hypotheses(est._objects[1].bank, observed_points(depth, K, box, obj.diameter),
                            obj.diameter, 4)
    assert 1 <= len(hyps) <= 4 and all(h.template_index == -1 for h in hyps)
    turns = [make_pose(np.diag(d), np.zeros(3)) for d in ((1, 1, 1), (1, -1, -1), (-1, 1, -1),
                                                          (-1, -1, 1))]
    c = make_pose(np.eye(3), obj.center)
    err = min(pose_errors(h.T, T @ c @ S @ np.linalg.inv(c)) for h in hyps for S in turns)
    assert err[0] < 15.0 and err[1] < 0.1 * obj.diameter, err
    saved, cfg = est.backend, est.config
    try:
        est.backend = Backend("stub", _StubMatcher("none"), saved.flow, saved.scorer)
        r = est.estimate(rgb, K, [Detection(1, box)], depth=depth, mode="rgbd",
                         num_hypotheses=1)[0]
        est.config = dataclasses.replace(cfg, depth_hypotheses=0)
        off = est.estimate(rgb, K, [Detection(1, box)], depth=depth, mode="rgbd",
                           num_hypotheses=1)[0]
    finally:
        est.backend, est.config = saved, cfg
    assert r.ok, r.reason
    rot, tr = pose_errors(r.T_cam_obj, T)
    assert rot < 2.0 and tr < 0.005, (rot, tr)
    assert r.hypotheses[0].template_index == -1
    assert not off.ok and off.reason_code is Reason.NO_TEMPLATE_MATCHED


def test_a_detection_that_raises_fails_alone(setup, monkeypatch):
    """Issue 25, finding 1 (core): whatever one detection raises becomes that detection's failed
    result with a reason naming the exception; the other detections of the call are answered."""
    est, obj, frames = setup
    rgb, _, box, T = frames[6]
    real = PoseEstimator._estimate_one
    calls = []

    def flaky(self, rgb_, K_, depth_, det, *a, **kw):
        calls.append(det.box_xywh)
        if len(calls) == 1:
            raise RuntimeError("boom")
        if len(calls) == 2:
            raise InputError("odd box")
        return real(self, rgb_, K_, depth_, det, *a, **kw)
    monkeypatch.setattr(PoseEstimator, "_estimate_one", flaky)
    res = est.estimate(rgb, K, [Detection(1, box)] * 3, mode="rgb", num_hypotheses=1,
                       coarse_only=True)
    assert [r.status for r in res] == ["failed", "failed", "ok"], [r.reason for r in res]
    assert res[0].reason_code is Reason.INTERNAL_ERROR and "RuntimeError: boom at " in \
        res[0].reason
    assert res[1].reason_code is Reason.BAD_INPUT and res[1].reason == "bad_input: odd box"
    assert res[2].T_cam_obj is not None
