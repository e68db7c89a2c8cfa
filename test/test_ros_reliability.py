"""Issue 25 through real ROS messages: one coop_node in this process (over DDS) serves, in turn,
a frame with a non-finite box beside a good one (finding 1), poses that the measurements
contradict (finding 2: a mesh in mm declared as metres, depth x 0.1, an RGB box far larger than
the image), detections whose images never arrive (finding 4), and a 30 Hz burst of 12
detections per frame whose overload /diagnostics must report (finding 6; the share of detections
skipped by the time budget: test_ros_components.py). Cheap settings (112 px crops, 12
templates, 1 hypothesis); run on Kilted only (scripts/test.sh runs test_ros_node_*.py on Jazzy
too; this file passed there as well: COOP_ROS_DISTRO=jazzy bash scripts/test.sh FILE). No answer is timed; every answer is checked for what it says."""
import os
import random
import time

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from conftest import box_node_overrides  # noqa: E402

S0 = 1_770_000_000_000_000_000
OK, FAILED = 0, 1


@pytest.fixture(scope="module")
def scene(box_scene):
    return box_scene


def _status(est):
    return [(e.status, e.reason.split(":")[0], e.instance_id) for e in est.estimates]


def test_node_isolates_bad_detections_refuses_implausible_poses_and_reports_overload(scene):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter

    from coop_ros.bop.dataset import BopDataset
    from coop_ros.ros.node import CoopNode
    from coop_ros.ros.replay import Replayer, Spinner, frame_messages, make_depth, make_detections
    frame = BopDataset(scene / "scene").frame(0, 0)
    gt_box = tuple(float(v) for v in frame.gt_info[0].bbox_visib)
    mesh = str(scene / "scene" / "models" / "obj_000001.ply")
    sp = Spinner()
    try:
        # "box": the mesh as it is (mm); "box_m": the same file declared in metres (x1000)
        node = sp.add(CoopNode(context=sp.context, parameter_overrides=box_node_overrides(
            scene, **{"objects.names": ["box", "box_m"], "objects.box_m.class_id": "2",
                      "objects.box_m.mesh": mesh, "objects.box_m.units": "m",
                      "time_budget": 0.0, "crop_size": 112, "n_templates": 12})))
        rep = sp.add(Replayer("reliability_probe", context=sp.context))
        diags = []
        rep.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 50)
        tfs = []
        sp.start()
        assert rep.wait_for_node(60)
        stamp = [S0]

        def send(boxes=None, depth_scale=None, ack=5.0):
            stamp[0] += 100_000_000
            msgs = frame_messages(frame, stamp[0])
            if boxes is not None:
                msgs["detections"] = make_detections(boxes, msgs["detections"].header)
            if depth_scale is not None:
                msgs["depth"] = make_depth(frame.depth * depth_scale, msgs["depth"].header)
            rep.publish(msgs, ack_timeout=ack)
            return stamp[0]

        def answer(s, timeout=60):
            r = rep.wait_result(s, timeout)
            assert r is not None, "no answer: the frame was lost"
            with rep.lock:
                tfs.append(rep.tf.get(s))
            return r

        # 1. a NaN box and an inf box beside a good one: both refused at conversion, the good
        #    detection of the same frame is answered (before: ValueError, no answer at all)
        nan = float("nan")
        poses, est = answer(send([("1", (nan, 10.0, 50.0, 50.0)), ("1", gt_box),
                                  ("1", (100.0, 100.0, float("inf"), 40.0))]), timeout=30)
        assert _status(est) == [(FAILED, "bad_input", "box_0"), (OK, "", "box_1"),
                                (FAILED, "bad_input", "box_2")], _status(est)
        assert "bbox.center.position.x nan" in est.estimates[0].reason
        assert "bbox.size_x inf" in est.estimates[2].reason
        assert [d.id for d in poses.detections] == ["box_1"]
        T_good = poses.detections[0].results[0].pose.pose.position
        assert 0.2 < T_good.z < 2.0

        # 2a. the mesh in mm declared as metres (1000x): the depth contradicts the pose
        #     (before: ok, z ~ 100 m on /tf)
        poses, est = answer(send([("2", gt_box)]))
        assert _status(est) == [(FAILED, "implausible_pose", "box_m_0")], est.estimates[0].reason
        assert len(poses.detections) == 0 and not tfs[-1]
        # 2b. depth x 0.1: the pose fitted to it contradicts the box (before: ok, z 0.07 m)
        poses, est = answer(send(depth_scale=0.1))
        assert _status(est) == [(FAILED, "implausible_pose", "box_0")], est.estimates[0].reason
        assert len(poses.detections) == 0 and not tfs[-1]
        # 2c. RGB: a box far larger than the image (before: ok, score 0, 0.46 mm from the camera)
        assert node.set_parameters([Parameter("mode", value="rgb")])[0].successful
        poses, est = answer(send([("1", (-1e5, -1e5, 2e5, 2e5))]))
        assert _status(est) == [(FAILED, "implausible_pose", "box_0")], est.estimates[0].reason
        assert "not in front of the camera" in est.estimates[0].reason
        assert len(poses.detections) == 0

        # 4. images that never arrive (a best-effort image larger than the publisher's Fast DDS
        #    segment is dropped in transport) while detections do: /diagnostics ERROR naming
        #    the likely cause and the fix (before: OK, no log line; the large-image measurement
        #    itself crosses processes: bench/big_frames.py)
        diags.clear()
        t_end = time.monotonic() + 2.6
        while time.monotonic() < t_end:
            stamp[0] += 100_000_000
            msgs = frame_messages(frame, stamp[0])
            rep.pubs["camera_info"].publish(msgs["camera_info"])
            rep.pubs["detections"].publish(msgs["detections"])
            time.sleep(0.1)
        time.sleep(0.5)
        st = node.diagnostics_status()
        assert int(st.level[0] if isinstance(st.level, bytes) else st.level) == 2, st.message
        assert "detections arrive on '/detections' but no image on '/image'" in st.message
        assert "shared-memory segment" in st.message and "qos.image.reliability" in st.message
        poses, est = answer(send())               # images again: served
        assert _status(est)[0][0] == OK
        # ... and the detections that never got their image are counted and reported
        st = node.diagnostics_status()
        assert "detection messages in the last 30 s dropped without their image" in st.message
        vals = {kv.key: kv.value for kv in st.values}
        assert int(vals["detections_without_image"]) >= 5, vals

        # 6. overload: 30 Hz x 12 detections for 2 s (2 estimated per frame, no time budget)
        #    -> /diagnostics WARN / ERROR naming the share of frames dropped (before: OK)
        assert node.set_parameters([Parameter("max_detections", value=2)])[0].successful
        diags.clear()
        boxes = [("1", gt_box)] * 12
        t_next = time.monotonic()
        sent = []
        for _ in range(60):
            sent.append(send(boxes, ack=0.0))
            t_next += 1.0 / 30.0
            time.sleep(max(0.0, t_next - time.monotonic()))
        assert rep.wait_result(sent[-1], 120) is not None
        # what a user sees: a /diagnostics status that says so, with the numbers
        t_end = time.monotonic() + 10.0
        over = []
        while not over and time.monotonic() < t_end:
            over = [s for a in list(diags) for s in a.status if "overloaded" in s.message]
            time.sleep(0.1)
        assert over, [s.message for a in diags for s in a.status][-3:]
        st = over[-1]
        vals = {kv.key: kv.value for kv in st.values}
        assert int(st.level[0] if isinstance(st.level, bytes) else st.level) >= 1, st.message
        assert "of the matched frames dropped unprocessed" in st.message, st.message
        assert float(vals["frames_dropped_ratio"]) >= 0.5, vals
        assert float(vals["frame_period [ms]"]) < 100.0, vals
    finally:
        sp.stop()
    assert np.isfinite(T_good.z)
