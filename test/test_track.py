"""Tracking (coop_ros.pipeline.track) on short synthetic sequences rendered with the package's own
renderer: a textured box (0.14 x 0.05 x 0.20 m) moving smoothly in front of a fixed random
background, 640 x 480, f = 600 px, one frame per 1/30 s. The detection is given on the first
frame only (and where a test says so); every pose is compared with the truth."""
import numpy as np
import pytest

from coop_ros.errors import InputError, Reason
from coop_ros.geometry.se3 import make_pose, pose_errors, rotvec_to_matrix
from coop_ros.pipeline import Detection, PoseConfig
from coop_ros.pipeline.estimator import PoseEstimator
from coop_ros.pipeline.track import (LOST, NEW, REINITIALISED, TRACKED, TrackConfig, Tracker,
                                     box_cover, box_iou, camera_motion, projected_box,
                                     sparse_icp)

K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
W, H = 640, 480
R0 = rotvec_to_matrix(np.array([0.4, -0.6, 0.3]))


class Scene:
    """The box at frame k: centre (x0 + vx k, 0.01 sin(k / 5), 0.65 + 0.002 k) m, turning
    1.5 deg per frame about (0, 1, 0.3)."""

    def __init__(self, est, obj):
        from coop_ros.synth.procedural import random_background
        from coop_ros.render.renderer import Light
        self.est, self.obj = est, obj
        rng = np.random.default_rng(1)
        self.bg = random_background(H, W, rng)
        self.light = Light.random(rng)

    def frame(self, k: int, x0: float = -0.08, vx: float = 0.006):
        """(rgb (H, W, 3) uint8, depth (H, W) [m] with a wall at 1.2 m, box (x, y, w, h) of the
        visible pixels or None, T_gt (4, 4), visible pixels)."""
        R = rotvec_to_matrix(np.array([0, 1.0, 0.3]) * np.radians(1.5) * k) @ R0
        c = np.array([x0 + vx * k, 0.01 * np.sin(k / 5), 0.65 + 0.002 * k])
        T = make_pose(R, c - R @ self.obj.center)
        out = self.est.renderer.render_scene([("scene", T)], K, W, H, light=self.light,
                                             background=self.bg)
        m = out.mask[0]
        rows, cols = np.nonzero(m)
        box = None if len(rows) == 0 else (int(cols.min()), int(rows.min()),
                                           int(cols.max() - cols.min() + 1),
                                           int(rows.max() - rows.min() + 1))
        depth = out.depth[0] + (out.depth[0] == 0) * 1.2
        return out.rgb[0], depth, box, T, int(m.sum())


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from coop_ros.synth.procedural import make_object
    obj = make_object("textured_box", seed=0)
    est = PoseEstimator(PoseConfig(template_cache_dir=str(tmp_path_factory.mktemp("tpl"))))
    est.add_object(1, obj)
    est.renderer.add_object("scene", obj)
    yield Scene(est, obj)
    est.release()


def run(tracker, frames, mode, detect, hyps=1):
    """Step ``tracker`` through ``frames`` (list of Scene.frame tuples); ``detect(k)``: give the
    GT box as a detection at frame k. Returns one list of TrackResults per frame."""
    out = []
    for k, (rgb, depth, box, _, _) in enumerate(frames):
        dets = [Detection(1, box)] if detect(k) and box is not None else []
        out.append(tracker.step(rgb, K, dets, depth=depth if mode == "rgbd" else None,
                                stamp=k / 30.0, num_hypotheses=hyps))
    return out


def errors(result, T):
    rot, tr = pose_errors(result.T_cam_obj, T)
    return rot, tr * 1000.0


# ----------------------------------------------------------------------------- following

@pytest.mark.parametrize("mode,hyps,max_deg,max_mm", [("rgbd", 1, 0.5, 2.0),
                                                      ("rgb", 5, 3.0, 15.0)])
def test_tracking_follows_the_truth(scene, mode, hyps, max_deg, max_mm):
    """12 frames, a detection on the first only: every later frame is tracked (same track, age
    = frame index) within max_deg / max_mm of the truth; the refinement ran without a
    detection box (the result's box is the projected one)."""
    frames = [scene.frame(k) for k in range(12)]
    tr = Tracker(scene.est, TrackConfig(motion="constant_velocity"), mode=mode)
    res = run(tr, frames, mode, lambda k: k == 0, hyps)
    assert [len(r) for r in res] == [1] * 12
    assert res[0][0].status == NEW and res[0][0].ok
    tid = res[0][0].track_id
    worst = (0.0, 0.0)
    for k in range(1, 12):
        r = res[k][0]
        assert r.status == TRACKED and r.ok, (k, r.status, r.reason, r.result.reason)
        assert r.track_id == tid and r.age == k and r.detection is None
        assert r.evidence >= tr.config.min_evidence[mode]
        rot, mm = errors(r.result, frames[k][3])
        worst = (max(worst[0], rot), max(worst[1], mm))
        C = r.result.covariance
        assert C is not None and C.shape == (6, 6) and np.all(np.isfinite(C))
    assert worst[0] < max_deg and worst[1] < max_mm, worst


def test_lost_when_the_object_leaves_the_view_then_reinitialised(scene):
    """RGB-D: the box slides out of the image to the right (20 mm per frame); the track is
    lost for 'view' before it is gone (never an ok pose once less than 10 % of it is seen),
    nothing is answered while no track and no detection exist, and the next detection
    re-initialises the object (status reinitialised, the reason of the loss kept)."""
    frames = [scene.frame(k, 0.2, 0.02) for k in range(16)]
    frames += [scene.frame(k, -0.05, 0.004) for k in range(16, 20)]
    tr = Tracker(scene.est, TrackConfig(), mode="rgbd")
    res = run(tr, frames, "rgbd", lambda k: k in (0, 17))
    lost_at = next(k for k, rs in enumerate(res) if rs and rs[0].status == LOST)
    full = frames[0][4]
    for k in range(1, lost_at):
        r = res[k][0]
        assert r.status == TRACKED and r.ok
        rot, mm = errors(r.result, frames[k][3])
        assert rot < 1.0 and mm < 6.0, (k, rot, mm)
    r = res[lost_at][0]
    assert not r.ok and r.result.reason_code == Reason.TRACK_LOST
    assert r.reason.startswith("track_lost: view: the object left the image")
    assert r.result.T_cam_obj is None
    assert frames[lost_at][4] < 0.2 * full       # lost while a part of it is still in view
    assert all(frames[k][4] >= 0.1 * full for k in range(1, lost_at))
    assert all(res[k] == [] for k in range(lost_at + 1, 17))
    r = res[17][0]
    assert r.status == REINITIALISED and r.ok and r.age == 0
    assert r.reason.startswith("track_lost: view:")
    rot, mm = errors(r.result, frames[17][3])
    assert rot < 1.0 and mm < 2.0
    r = res[18][0]
    assert r.status == TRACKED and r.ok and r.age == 1
    assert errors(r.result, frames[18][3])[1] < 2.0


# ----------------------------------------------------------------------------- bad input

def test_nan_depth_frame_loses_the_track_with_the_reason(scene):
    """RGB-D: a frame whose depth is all NaN loses the track (bad_input, no pose), a detection
    in such a frame fails bad_input too; the next frame's detection re-initialises."""
    frames = [scene.frame(k) for k in range(6)]
    rgb, depth, box, T, n = frames[3]
    frames[3] = (rgb, np.full_like(depth, np.nan), box, T, n)
    rgb, depth, box, T, n = frames[4]
    frames[4] = (rgb, np.full_like(depth, np.nan), box, T, n)
    tr = Tracker(scene.est, TrackConfig(), mode="rgbd")
    res = run(tr, frames, "rgbd", lambda k: k in (0, 4, 5))
    assert [r[0].status for r in res[:3]] == [NEW, TRACKED, TRACKED]
    r = res[3][0]
    assert r.status == LOST and not r.ok and r.result.T_cam_obj is None
    assert r.result.reason_code == Reason.TRACK_LOST
    assert r.reason == ("track_lost: bad_input: depth image has no valid measurement (all NaN "
                        "/ 0)")
    r = res[4][0]         # a detection in a NaN frame: no track, the detection fails
    assert not r.ok and r.result.reason_code == Reason.BAD_INPUT and r.track_id is None
    r = res[5][0]
    assert r.status == REINITIALISED and r.ok and r.reason.startswith("track_lost: bad_input")
    rot, mm = errors(r.result, frames[5][3])
    assert rot < 1.0 and mm < 2.0


@pytest.mark.parametrize("mode", ["rgbd", "rgb"])
def test_camera_jump_without_detection_is_lost_never_a_wrong_pose(scene, mode):
    """The object jumps 200 mm sideways in the image between two frames (a camera jump) and no
    detection comes: the track is lost (depth / evidence), no pose is given; a detection two
    frames later re-initialises it at the truth."""
    frames = [scene.frame(k) for k in range(3)] + [scene.frame(k, 0.12) for k in range(3, 6)]
    tr = Tracker(scene.est, TrackConfig(), mode=mode)
    res = run(tr, frames, mode, lambda k: k in (0, 5), hyps=1 if mode == "rgbd" else 5)
    assert [r[0].status for r in res[:3]] == [NEW, TRACKED, TRACKED]
    r = res[3][0]
    assert r.status == LOST and not r.ok and r.result.T_cam_obj is None
    assert r.result.reason_code == Reason.TRACK_LOST
    cause = "depth" if mode == "rgbd" else "evidence"
    assert r.reason.startswith(f"track_lost: {cause}: "), r.reason
    assert res[4] == []
    r = res[5][0]
    assert r.status == REINITIALISED and r.ok and r.reason == res[3][0].reason
    rot, mm = errors(r.result, frames[5][3])
    assert rot < (1.0 if mode == "rgbd" else 3.0) and mm < (2.0 if mode == "rgbd" else 30.0)


def test_detection_far_from_the_track_reinitialises(scene):
    """RGB-D: the camera jumps and a detection comes with the jump: it does not overlap the
    predicted projection, so the track is ended ('box: the detection is far from the track')
    and re-initialised from the detection, at the truth; the new track goes on."""
    frames = [scene.frame(k) for k in range(3)] + [scene.frame(k, 0.15) for k in range(3, 5)]
    tr = Tracker(scene.est, TrackConfig(), mode="rgbd")
    res = run(tr, frames, "rgbd", lambda k: k in (0, 3))
    first = res[0][0].track_id
    r = res[3][0]
    assert r.status == REINITIALISED and r.ok and r.track_id != first and r.age == 0
    assert r.reason.startswith("track_lost: box: the detection is far from the track (its box "
                               "overlaps the predicted projection by IoU 0.00")
    rot, mm = errors(r.result, frames[3][3])
    assert rot < 1.0 and mm < 2.0
    r = res[4][0]
    assert r.status == TRACKED and r.track_id == res[3][0].track_id and r.age == 1
    assert errors(r.result, frames[4][3])[1] < 2.0


# ----------------------------------------------------------------------------- parts

def test_box_helpers():
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert box_cover((2, 2, 4, 4), (0, 0, 10, 10)) == 1.0       # occluded: inside the projection
    assert box_cover((8, 0, 4, 10), (0, 0, 10, 10)) == pytest.approx(0.5)
    pts = np.array([[-0.1, -0.05, 0.0], [0.1, 0.05, 0.0]])
    b = projected_box(pts, make_pose(np.eye(3), [0, 0, 1.0]), K)
    assert np.allclose(b, [260.5, 210.5, 120.0, 60.0])
    assert projected_box(pts, make_pose(np.eye(3), [0, 0, -1.0]), K) is None


def test_camera_motion_recovers_a_known_motion():
    """static_scene prediction: 6 object centres seen before and their box centres now give the
    camera's motion (to 1e-6) with an outlier among them rejected."""
    rng = np.random.default_rng(0)
    C = np.c_[rng.uniform(-0.3, 0.3, (6, 2)), rng.uniform(0.7, 1.2, 6)]
    D = make_pose(rotvec_to_matrix(np.array([0.05, -0.2, 0.1])), [0.1, -0.05, 0.08])
    P = C @ D[:3, :3].T + D[:3, 3]
    uv = np.c_[600 * P[:, 0] / P[:, 2] + 320, 600 * P[:, 1] / P[:, 2] + 240]
    uv[5] += (150, -90)
    D_est, inl = camera_motion(C, uv, K)
    assert inl.tolist() == [True] * 5 + [False]
    rot, t = pose_errors(D_est, D)
    assert rot < 1e-4 and t < 1e-6
    assert camera_motion(C[:3], uv[:3], K) is None


def test_sparse_icp_pulls_a_perturbed_pose_onto_the_depth(scene):
    from coop_ros.geometry.se3 import perturb_pose
    _, depth, _, T, _ = scene.frame(0)
    T0 = perturb_pose(T, 3.0, 0.008, np.random.default_rng(2))
    r = sparse_icp(T0, depth, K, scene.est.renderer, scene.est.evidence_key(1), scene.obj)
    rot, t = pose_errors(r["T"], T)
    assert rot < 0.3 and t < 0.001, (rot, t)
    assert r["agree"] > 0.95 and r["steps"] >= 2
    C = r["covariance"]
    assert C.shape == (6, 6) and np.linalg.eigvalsh(C).min() > 0


def test_track_config_is_validated():
    with pytest.raises(InputError, match="TrackConfig.motion must be one of"):
        Tracker(None, TrackConfig(motion="teleport"))
    with pytest.raises(InputError, match="TrackConfig.rgb_levels"):
        TrackConfig(rgb_levels=(3, 1)).validate()
    with pytest.raises(InputError, match="TrackConfig.min_evidence"):
        TrackConfig(min_evidence={"rgb": 2.0, "rgbd": 0.5}).validate()
    with pytest.raises(InputError, match="mode must be"):
        Tracker(None, mode="depth")


def test_sequence_camera_path_is_smooth_and_seeded():
    """coop-ros synth --sequence-fps: the camera of a scene moves smoothly (at 30 Hz, 1-15 mm
    and under 1.5 deg per frame, keeping 0.5-1.3 m from the table centre), the same generator
    state gives the same path, and the option is checked."""
    from coop_ros.synth.realistic import sequence_camera_pose
    from coop_ros.synth.scenes import SynthConfig
    centre = np.array([0.0, 0.0, 0.05])
    for scene in range(5):
        Ts = [sequence_camera_pose(np.random.default_rng([1, 6, scene]), centre, k / 30.0)
              for k in range(60)]
        eyes = np.array([-T[:3, :3].T @ T[:3, 3] for T in Ts])
        step = np.linalg.norm(np.diff(eyes, axis=0), axis=1) * 1000.0
        turn = [pose_errors(a, b)[0] for a, b in zip(Ts[:-1], Ts[1:])]
        assert 1.0 < step.min() and step.max() < 15.0, (scene, step.min(), step.max())
        assert max(turn) < 1.5
        dist = np.linalg.norm(eyes - centre, axis=1)
        assert 0.5 < dist.min() and dist.max() < 1.3
    again = sequence_camera_pose(np.random.default_rng([1, 6, 4]), centre, 59 / 30.0)
    assert np.array_equal(again, Ts[-1])
    with pytest.raises(InputError, match="sequence_fps needs preset 'realistic'"):
        SynthConfig(sequence_fps=30.0).validated()
    with pytest.raises(InputError, match="sequence_fps must be a number"):
        SynthConfig(sequence_fps=-1.0, preset="realistic").validated()
    assert SynthConfig(sequence_fps=30, preset="realistic").validated().sequence_fps == 30.0
