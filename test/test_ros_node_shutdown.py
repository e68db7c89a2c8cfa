"""coop_node under load: bounded work per frame and shutdown.

* 500 detections in one frame are answered within time_budget + 1 s (or + one detection's frame
  time where that is longer: a slower machine), every detection reported
  (estimated, or skipped with a reason), and a good frame sent meanwhile is answered;
* max_detections keeps the highest detector scores;
* SIGINT / SIGTERM during a long frame end the node process within 1 s (measured here, from the
  signal to the exit), exit code 0, nothing on stderr that looks like an error;
* destroy_node during a long frame returns within 1 s and nothing is published afterwards.
"""
import os
import random
import signal
import subprocess
import sys
import time

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import pytest  # noqa: E402

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")

from conftest import box_node_overrides, node_params_file  # noqa: E402

STAMP0 = 1_750_000_000_000_000_000


@pytest.fixture(scope="module")
def scene(box_scene):
    return box_scene


def _frame(root):
    from coop_ros.bop.dataset import BopDataset
    return BopDataset(root / "scene").frame(0, 0)


def _many(frame, stamp, n):
    """The frame's messages with n copies of its GT box (scores 1.0, 0.999, ...)."""
    from coop_ros.ros.replay import frame_messages, make_detections
    msgs = frame_messages(frame, stamp)
    box = tuple(float(v) for v in frame.gt_info[0].bbox_visib)
    msgs["detections"] = make_detections([("1", box, 1.0 - 0.001 * k) for k in range(n)],
                                         msgs["detections"].header)
    return msgs


def _start(params, log_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "coop_ros.ros.node", "--ros-args",
                             "--params-file", str(params)], stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT, env=env)


def _diag_values(diags) -> dict:
    for a in reversed(list(diags)):
        for st in a.status:
            return {kv.key: kv.value for kv in st.values}
    return {}


def _wait_busy(rep, diags, msgs, timeout=120):
    """Make the node busy with ``msgs``: camera_info first (published until the node has one:
    a first message can be lost while the endpoints finish matching), then the frame (again
    every 2 s until the node has matched it). True when the worker holds the frame."""
    t_end = time.monotonic() + timeout
    t_send = 0.0
    while time.monotonic() < t_end:
        if int(_diag_values(diags).get("received_camera_info", "0")) >= 1:
            break
        if time.monotonic() - t_send > 1.0:
            rep.pubs["camera_info"].publish(msgs["camera_info"])
            t_send = time.monotonic()
        time.sleep(0.05)
    t_send = 0.0
    while time.monotonic() < t_end:
        if int(_diag_values(diags).get("frames_matched", "0")) >= 1:
            return True
        if time.monotonic() - t_send > 2.0:
            rep.publish(msgs)
            t_send = time.monotonic()
        time.sleep(0.05)
    return False


@pytest.mark.serial                   # wall-clock limits: run alone (see test/conftest.py)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_a_long_frame_exits_within_1s(scene, tmp_path, sig):
    from diagnostic_msgs.msg import DiagnosticArray

    from coop_ros.ros.replay import Replayer, Spinner
    params = node_params_file(scene, time_budget=0.0, max_detections=0)
    log = tmp_path / "node.log"
    proc = _start(params, log)
    sp = Spinner()
    try:
        rep = sp.add(Replayer("shutdown_probe", context=sp.context))
        diags = []
        rep.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        sp.start()
        assert rep.wait_for_node(120), log.read_text()[-2000:]
        assert _wait_busy(rep, diags, _many(_frame(scene), STAMP0, 40)), \
            log.read_text()[-2000:]                       # ~40 x 1 s of work
        time.sleep(1.0)                                    # inside the pipeline by now
        assert proc.poll() is None
        time.sleep(0.3)
        assert _diag_values(diags)["frames_processed"] == "0"     # still working on it
        t0 = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
        dt = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        sp.stop()
    text = log.read_text()
    print(f"{sig.name}: process exited {dt:.2f} s after the signal, exit code {rc}")
    assert rc == 0, text[-2000:]
    assert dt <= 1.0, f"exit took {dt:.2f} s after {sig.name}"
    with rep.lock:
        assert STAMP0 not in rep.poses, "the interrupted frame was published"
    for bad in ("Traceback", "RCLError", "Error", "context is invalid", "FATAL"):
        assert bad not in text, text[-3000:]


@pytest.mark.serial
def test_500_detections_answered_within_budget_and_next_frame_served(scene):
    from rclpy.parameter import Parameter

    from coop_ros.ros.node import CoopNode
    from coop_ros.ros.replay import Replayer, Spinner, frame_messages
    budget = 3.0
    frame = _frame(scene)
    sp = Spinner()
    try:
        node = sp.add(CoopNode(context=sp.context, parameter_overrides=box_node_overrides(
            scene, num_hypotheses=3, rgbd_refine_iterations=1, max_detections=0,
            time_budget=budget)))
        rep = sp.add(Replayer("budget_probe", context=sp.context))
        sp.start()
        assert rep.wait_for_node(60)
        # warm-up frame: the stage times the budget predicts from are measured; the budget
        # fits a few detections on this machine however loaded it is
        rep.publish(frame_messages(frame, STAMP0))
        assert rep.wait_result(STAMP0, 60) is not None
        t_end = time.monotonic() + 10
        while not node.proc_times and time.monotonic() < t_end:
            time.sleep(0.01)
        one_frame = node.proc_times[-1]             # one detection's frame on this machine
        budget = max(budget, 3.0 * one_frame)
        assert node.set_parameters([Parameter("time_budget", value=budget)])[0].successful
        s1, s2 = STAMP0 + 10**9, STAMP0 + 2 * 10**9
        t0 = time.monotonic()
        rep.publish(_many(frame, s1, 500))
        r = rep.wait_result(s1, budget + 30)
        t_answer = time.monotonic() - t0
        assert r is not None
        time.sleep(0.3)
        rep.publish(frame_messages(frame, s2))        # a good frame after the big one
        r2 = rep.wait_result(s2, budget + 30)
        vals = {kv.key: kv.value for kv in node.diagnostics_status().values}
    finally:
        sp.stop()
    poses, est = r
    st = [e.status for e in est.estimates]
    print(f"500 detections: answered {t_answer:.2f} s after publishing, time_budget "
          f"{budget:.2f} s, {st.count(0)} estimated, {st.count(2)} skipped")
    # a stage that has started runs to its end: the overrun is at most one stage's misprediction,
    # 1 s here (measured 0.1-0.6 s), or one detection's whole frame time on a slower machine
    slack = max(1.0, one_frame)
    assert t_answer <= budget + slack, \
        f"answered after {t_answer:.2f} s (budget {budget:.2f} s + {slack:.2f} s)"
    assert len(st) == 500
    n_ok, n_skip = st.count(0), st.count(2)
    assert n_ok >= 1 and n_ok + n_skip == 500, (n_ok, n_skip, st.count(1))
    assert len(poses.detections) == n_ok
    skipped = [e for e in est.estimates if e.status == 2]
    assert all(e.reason.startswith("budget_exhausted: ") for e in skipped), skipped[0].reason
    # highest detector scores are estimated first: the estimated ones are the first ones
    assert [e.status for e in est.estimates[:n_ok]] == [0] * n_ok
    assert r2 is not None and len(r2[0].detections) == 1 and r2[1].estimates[0].status == 0
    assert int(vals["detections_skipped"]) == n_skip


def test_max_detections_keeps_the_highest_scores(scene):
    from coop_ros.ros.node import CoopNode
    from coop_ros.ros.replay import Replayer, Spinner, frame_messages, make_detections
    frame = _frame(scene)
    box = tuple(float(v) for v in frame.gt_info[0].bbox_visib)
    sp = Spinner()
    try:
        sp.add(CoopNode(context=sp.context, parameter_overrides=box_node_overrides(
            scene, num_hypotheses=1, rgbd_refine_iterations=1, max_detections=2,
            time_budget=0.0)))
        rep = sp.add(Replayer("maxdet_probe", context=sp.context))
        sp.start()
        assert rep.wait_for_node(60)
        msgs = frame_messages(frame, STAMP0)
        msgs["detections"] = make_detections([("1", box, 0.2), ("1", box, 0.9), ("1", box, 0.5),
                                              ("1", box, 0.7)], msgs["detections"].header)
        rep.publish(msgs)
        r = rep.wait_result(STAMP0, 90)
    finally:
        sp.stop()
    assert r is not None
    poses, est = r
    st = [(e.instance_id, e.status) for e in est.estimates]
    assert st == [("box_0", 2), ("box_1", 0), ("box_2", 2), ("box_3", 0)], st
    assert est.estimates[0].reason.startswith("max_detections: ranked 4 of 4 by detector score 0.2")
    assert est.estimates[2].reason.startswith("max_detections: ranked 3 of 4")
    assert sorted(d.id for d in poses.detections) == ["box_1", "box_3"]


@pytest.mark.serial
def test_destroy_node_during_a_long_frame_returns_within_1s(scene):
    from coop_ros.ros.node import CoopNode
    from coop_ros.ros.replay import Replayer, Spinner
    frame = _frame(scene)
    sp = Spinner()
    try:
        node = CoopNode(context=sp.context, parameter_overrides=box_node_overrides(
            scene, num_hypotheses=1, max_detections=0, time_budget=0.0))
        sp.add(node)
        rep = sp.add(Replayer("destroy_probe", context=sp.context))
        sp.start()
        assert rep.wait_for_node(60)
        rep.publish(_many(frame, STAMP0, 40))
        t_end = time.monotonic() + 60
        while node._sync.matched < 1 and time.monotonic() < t_end:
            time.sleep(0.05)
        time.sleep(1.0)
        assert node._sync.matched == 1 and node.worker_busy
        sp.executor.remove_node(node)
        t0 = time.monotonic()
        node.destroy_node()
        dt = time.monotonic() - t0
        published_before = node.frames_processed
        time.sleep(3.0)                  # the worker finishes its stage: it must not publish
        with rep.lock:
            answered = STAMP0 in rep.poses
    finally:
        sp.stop()
    assert dt <= 1.0, f"destroy_node took {dt:.2f} s"
    assert published_before == 0 and node.frames_processed == 0 and not answered
