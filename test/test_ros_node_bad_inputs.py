"""coop_node on bad input: one node instance serves a sequence of bad and good frames (every bad
frame is answered with a status + reason, the next good frame is served); start-up errors come
from short-lived node constructions in this process."""
import os
import random
import time

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from rclpy.parameter import Parameter  # noqa: E402

from conftest import BOX_NODE_PARAMS  # noqa: E402
from coop_ros.ros.params import ConfigError, NodeConfig  # noqa: E402


@pytest.fixture(scope="module")
def scene(box_scene):
    return box_scene


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, m, **kw):
        self.lines.append(("info", m))

    def warning(self, m, **kw):  # noqa: D401
        self.lines.append(("warning", m))


def _construct(scene, *params):
    """Construct (and destroy) a CoopNode with parameter overrides; returns the ConfigError."""
    from coop_ros.ros.node import CoopNode
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        base = [Parameter("objects.names", value=["box"]),
                Parameter("objects.box.class_id", value="1"),
                Parameter("objects.box.mesh", value=str(scene / "scene/models/obj_000001.ply")),
                Parameter("template_cache_dir", value=str(scene / "templates")),
                Parameter("n_templates", value=BOX_NODE_PARAMS["n_templates"])]
        names = {p.name for p in params}
        node = CoopNode(context=ctx, parameter_overrides=[p for p in base if p.name not in names]
                        + list(params))
        node.destroy_node()
        return None
    except ConfigError as e:
        return e
    finally:
        rclpy.try_shutdown(context=ctx)


# ----------------------------------------------------------------------------- start-up errors
def test_missing_mesh_is_a_clear_startup_error(scene):
    e = _construct(scene, Parameter("objects.box.mesh", value="/nonexistent/box.ply"))
    assert e is not None
    assert "mesh file not found: /nonexistent/box.ply" in str(e)
    assert "objects.box.mesh" in str(e)


def test_bad_parameter_value_is_named(scene):
    e = _construct(scene, Parameter("num_hypotheses", value=0))
    assert "parameter 'num_hypotheses' must be an integer in [1, 64], got 0" in str(e)
    e = _construct(scene, Parameter("mode", value="lidar"))
    assert "parameter 'mode'" in str(e) and "'lidar'" in str(e)


def test_coop_backend_missing_or_corrupt_checkpoint(scene, tmp_path):
    e = _construct(scene, Parameter("backend", value="coop"),
                   Parameter("checkpoints.coarse", value="/nonexistent/coarse.pt"),
                   Parameter("checkpoints.refiner", value="/nonexistent/refiner.pt"),
                   Parameter("checkpoints.selection", value="/nonexistent/selection.pt"))
    assert "checkpoint file not found: /nonexistent/coarse.pt" in str(e)
    assert "checkpoints.coarse" in str(e)
    bad = tmp_path / "coarse.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    e = _construct(scene, Parameter("backend", value="coop"),
                   Parameter("checkpoints.coarse", value=str(bad)),
                   Parameter("checkpoints.refiner", value=str(bad)),
                   Parameter("checkpoints.selection", value=str(bad)))
    assert f"corrupt or unreadable checkpoint {bad}" in str(e)
    e = _construct(scene, Parameter("backend", value="coop"))
    assert "needs at least one checkpoint" in str(e) and "'checkpoints.coarse'" in str(e)


def test_auto_backend_falls_back_with_a_log_line(scene):
    from coop_ros.ros.startup import resolve_backend
    base = {"objects.names": ["box"], "objects.box.mesh": "x.ply"}
    log = _Log()
    assert resolve_backend(NodeConfig.from_flat(base), log) == ("weight-free", {})
    assert "backend auto -> using backend 'weight-free' (no checkpoint configured" in \
        log.lines[-1][1]
    cfg = NodeConfig.from_flat(dict(base, **{"checkpoints.coarse": "/nonexistent/c.pt"}))
    assert resolve_backend(cfg, log) == ("weight-free", {})
    assert log.lines[-1][0] == "warning" and "checkpoint file not found: /nonexistent/c.pt" \
        in log.lines[-1][1], log.lines


def test_mesh_in_wrong_units_warns(scene):
    from coop_ros.ros.startup import load_objects
    mesh = str(scene / "scene/models/obj_000001.ply")      # millimetres, declared metres
    cfg = NodeConfig.from_flat({"objects.names": ["box"], "objects.box.mesh": mesh,
                                "objects.box.units": "m"})
    log = _Log()
    models = load_objects(cfg, log)
    assert models["box"].units_suspect
    warns = [m for lvl, m in log.lines if lvl == "warning"]
    assert warns and "declared in 'm' looks wrong" in warns[0] and "objects.box.units" in warns[0]


# ---------------------------------------------------------------------- one node, many frames
def test_bad_frames_are_answered_and_good_frames_still_served(scene, capfd):
    from diagnostic_msgs.msg import DiagnosticArray

    from coop_ros.bop.dataset import BopDataset
    from coop_ros.ros.node import CoopNode
    from coop_ros.ros.replay import (Replayer, Spinner, frame_messages, make_depth,
                                     make_detections)
    frame = BopDataset(scene / "scene").frame(0, 0)
    gt_box = frame.gt_info[0].detection_box()
    sp = Spinner()
    try:
        node = sp.add(CoopNode(context=sp.context, parameter_overrides=[
            Parameter("objects.names", value=["box"]),
            Parameter("objects.box.class_id", value="1"),
            Parameter("objects.box.mesh", value=str(scene / "scene/models/obj_000001.ply")),
            Parameter("template_cache_dir", value=str(scene / "templates")),
            *[Parameter(k, value=v) for k, v in BOX_NODE_PARAMS.items()],
            Parameter("depth_timeout", value=0.5)]))
        rep = sp.add(Replayer("test_publisher", context=sp.context))
        diags = []
        rep.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        sp.start()
        assert rep.wait_for_node(30)
        stamp = [1_800_000_000_000_000_000]

        def send(mutate=None, drop=()):
            stamp[0] += 100_000_000
            msgs = frame_messages(frame, stamp[0])
            if mutate:
                mutate(msgs)
            for k in drop:
                msgs.pop(k)
            rep.publish(msgs)
            return stamp[0]

        def answer(s, timeout=60):
            r = rep.wait_result(s, timeout)
            assert r is not None, "no answer"
            return r

        def good():
            poses, est = answer(send())
            assert len(poses.detections) == 1 and est.estimates[0].status == 0, \
                est.estimates[0].reason
            return poses, est

        def reason_of(s):
            poses, est = answer(s)
            assert len(poses.detections) == 0, "a bad frame produced a pose"
            assert len(est.estimates) == 1 and est.estimates[0].status == 1
            return est.estimates[0].reason

        # 1. missing camera_info (none received yet)
        r = reason_of(send(drop=("camera_info",)))
        assert "no camera_info received on '/camera_info'" in r, r
        good()

        # 2. unsupported encoding
        def yuv(m):
            m["image"].encoding = "yuv422"
        r = reason_of(send(yuv))
        assert "unsupported encoding 'yuv422'" in r, r
        good()

        # 3. depth of another size
        def small_depth(m):
            m["depth"] = make_depth(frame.depth[::2, ::2], m["depth"].header)
        r = reason_of(send(small_depth))
        assert "depth image is 320x240, the image is 640x480" in r, r
        good()

        # 4. all-NaN depth (32FC1)
        def nan_depth(m):
            m["depth"] = make_depth(np.full_like(frame.depth, np.nan), m["depth"].header,
                                    "32FC1")
        r = reason_of(send(nan_depth))
        assert "no valid measurement" in r, r
        good()

        # 5. box outside the image + unknown class_id + a good detection in one frame
        def mixed(m):
            h = m["detections"].header
            m["detections"] = make_detections([("1", (-500, -500, 50, 50)), ("99", gt_box),
                                               ("1", gt_box)], h)
        poses, est = answer(send(mixed))
        st = [(e.status, e.reason.split(":")[0], e.instance_id) for e in est.estimates]
        assert st == [(1, "box_outside_image", "box_0"), (1, "unknown_object", ""),
                      (0, "", "box_1")], st
        assert "'99' is not configured" in est.estimates[1].reason
        assert [d.id for d in poses.detections] == ["box_1"]

        # 6. empty detections: an empty array is published, not nothing
        def empty(m):
            m["detections"] = make_detections([], m["detections"].header)
        poses, est = answer(send(empty), timeout=10)
        assert len(poses.detections) == 0 and len(est.estimates) == 0
        good()

        # 7. rgbd with no depth arriving: no frame can be matched -> diagnostic ERROR
        diags.clear()
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            send(drop=("depth",))
            time.sleep(0.2)
        time.sleep(0.5)
        errors = [s for a in list(diags) for s in a.status if s.level == b"\x02" or s.level == 2]
        assert errors, [s.message for a in diags for s in a.status]
        assert "mode 'rgbd' but no depth image on '/depth'" in errors[-1].message
        good()

        # 8. run-time parameters: validated, applied to the next frame
        res = node.set_parameters([Parameter("num_hypotheses", value=0)])
        assert not res[0].successful and "num_hypotheses" in res[0].reason
        res = node.set_parameters([Parameter("backend", value="weight-free")])
        assert not res[0].successful and "restart" in res[0].reason
        assert node.set_parameters([Parameter("min_score", value=0.999)])[0].successful
        r = reason_of(send())
        assert r.startswith("low_score"), r
        assert node.set_parameters([Parameter("min_score", value=0.0)])[0].successful
        poses, _ = good()
        vals = {kv.key: kv.value for kv in node.diagnostics_status().values}
        assert int(vals["frames_processed"]) >= 14
        assert "low_score" in vals["last_error"]
    finally:
        sp.stop()
    err = capfd.readouterr().err
    assert "unknown_object" in err and "box_outside_image" in err   # logged warnings


def test_coop_backend_with_a_checkpoint_starts_and_checks_architectures(scene, tmp_path):
    nets = pytest.importorskip("coop_ros.nets")
    sel = str(nets.save_checkpoint(tmp_path / "selection.pt",
                                   nets.SelectionNet("tiny", hidden_dim=32)))
    e = _construct(scene, Parameter("backend", value="coop"),
                   Parameter("checkpoints.coarse", value=sel))
    assert "holds a 'selection' network, expected 'coarse'" in str(e)
    assert "checkpoints.coarse" in str(e)
    from coop_ros.ros.node import CoopNode
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = CoopNode(context=ctx, parameter_overrides=[
            Parameter("objects.names", value=["box"]),
            Parameter("objects.box.class_id", value="1"),
            Parameter("objects.box.mesh", value=str(scene / "scene/models/obj_000001.ply")),
            Parameter("template_cache_dir", value=str(scene / "templates")),
            Parameter("n_templates", value=BOX_NODE_PARAMS["n_templates"]),
            Parameter("backend", value="coop"), Parameter("checkpoints.selection", value=sel)])
        assert node.backend_name == "coop"
        assert node._estimator.backend.name == "coop"
        assert node._estimator.config.selection_ckpt == sel
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
