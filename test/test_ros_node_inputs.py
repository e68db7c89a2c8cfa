"""coop_node tells what is wrong with its inputs (no silent failure), one scenario per row of the
issue's table: unmatched stamps, a best-effort camera driver and a QoS mismatch, depth in the
wrong unit / scale and intrinsics scaled wrongly, camera_info stamps that never match, frame_id
mismatches, empty frame_ids and stamps of 0. Every answer is checked for what it says; a bad frame
never carries a pose."""
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

S0 = 1_760_000_000_000_000_000


@pytest.fixture(scope="module")
def scene(box_scene):
    return box_scene


class _Rig:
    """A node + a publisher/listener in this process, with /diagnostics recorded."""

    def __init__(self, scene, reliability="reliable", inputs=None, **params):
        from diagnostic_msgs.msg import DiagnosticArray

        from coop_ros.bop.dataset import BopDataset
        from coop_ros.ros.node import CoopNode
        from coop_ros.ros.replay import Replayer, Spinner
        self.frame = BopDataset(scene / "scene").frame(0, 0)
        self.sp = Spinner()
        self.node = self.sp.add(CoopNode(context=self.sp.context,
                                         parameter_overrides=box_node_overrides(scene, **params)))
        self.rep = self.sp.add(Replayer("inputs_probe", context=self.sp.context,
                                        reliability=reliability))
        self.diags = []
        self.rep.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, 50)
        self.sp.start()
        assert self.rep.wait_for_node(60, inputs=inputs)
        self.stamp = S0

    def msgs(self, step_ns=100_000_000):
        from coop_ros.ros.replay import frame_messages
        self.stamp += step_ns
        return frame_messages(self.frame, self.stamp)

    def wait_diag(self, pred, timeout):
        """First /diagnostics status (after now) for which pred(status) holds, or None."""
        t0 = time.monotonic()
        n0 = len(self.diags)
        while time.monotonic() - t0 < timeout:
            for a in list(self.diags)[n0:]:
                for s in a.status:
                    if pred(s):
                        return s, time.monotonic() - t0
            time.sleep(0.05)
        return None, None

    def answer(self, msgs, timeout=60):
        self.rep.publish(msgs)
        stamp = self.rep._key(msgs["image"].header)
        r = self.rep.wait_result(stamp, timeout)
        assert r is not None, "no answer"
        return r

    def stop(self):
        self.sp.stop()


def _level(s):
    return s.level if isinstance(s.level, int) else s.level[0]


@pytest.mark.serial
def test_unmatched_stamps_turn_diagnostics_warn_within_5s(scene, capfd):
    rig = _Rig(scene)
    try:
        def late(m):
            h = m["detections"].header
            ns = rig.stamp + 200_000_000          # detections stamped 200 ms after the image
            h.stamp.sec, h.stamp.nanosec = ns // 10**9, ns % 10**9
            return m
        t0 = time.monotonic()
        st = None
        while time.monotonic() - t0 < 5.0 and st is None:
            rig.rep.publish(late(rig.msgs(10**9)))
            st, _ = rig.wait_diag(lambda s: _level(s) == 1 and "not matched" in s.message, 0.3)
        dt = time.monotonic() - t0
        with rig.rep.lock:
            answered = len(rig.rep.poses)
    finally:
        rig.stop()
    assert st is not None and dt <= 5.0, f"no WARN within 5 s ({dt:.1f} s)"
    assert answered == 0
    m = st.message
    assert "sync_slop 50 ms" in m and "image '/image' stamp 176000000" in m, m
    assert "nearest detections '/detections' stamp 176000000" in m and "(+200.0 ms)" in m, m
    assert "inputs not matched" in capfd.readouterr().err        # the throttled log line


def test_best_effort_camera_is_received_with_the_defaults(scene):
    rig = _Rig(scene, reliability="best_effort")
    try:
        poses, est = rig.answer(rig.msgs())
    finally:
        rig.stop()
    assert len(poses.detections) == 1 and est.estimates[0].status == 0


def test_qos_mismatch_is_an_error_naming_the_topic(scene):
    rig = _Rig(scene, reliability="best_effort", inputs=("detections",),
               **{"qos.image.reliability": "reliable"})
    try:
        rig.rep.publish(rig.msgs())
        st, dt = rig.wait_diag(lambda s: _level(s) == 2 and "incompatible QoS" in s.message, 5.0)
    finally:
        rig.stop()
    assert st is not None, "no ERROR within 5 s"
    assert "input 'image' ('/image')" in st.message and "RELIABILITY" in st.message, st.message
    assert "qos.image.reliability" in st.message


def test_depth_units_scales_and_intrinsics_name_the_likely_cause(scene, capfd):
    from coop_ros.ros.replay import make_depth
    rig = _Rig(scene)
    f = rig.frame
    reasons = {}
    try:
        def with_depth(d, enc):
            m = rig.msgs()
            m["depth"] = make_depth(d, m["depth"].header, enc)
            return m
        depth = f.depth.astype(np.float64)
        cases = {
            "metres in 16UC1": with_depth(depth / 1000.0, "16UC1"),   # 0.9 -> "1" mm
            "mm in 32FC1": with_depth(depth * 1000.0, "32FC1"),
            "depth x10": with_depth(depth * 10.0, "16UC1"),
        }
        m = rig.msgs()
        m["camera_info"].k = list(np.asarray(m["camera_info"].k) *
                                  np.array([0.1, 1, 1, 1, 0.1, 1, 1, 1, 1]))
        cases["fx x0.1"] = m
        for name, msgs in cases.items():
            poses, est = rig.answer(msgs)
            assert len(poses.detections) == 0, f"{name}: a pose was published"
            assert est.estimates[0].status == 1
            reasons[name] = est.estimates[0].reason
            rig.answer(rig.msgs())                     # a good frame after each
        # 8-bit depth: values 0..255 sent as 16UC1 -> a warning naming it
        rig.rep.publish(with_depth(np.clip(depth * 1000 / 8, 0, 255) / 1000.0, "16UC1"))
        st, _ = rig.wait_diag(lambda s: "8-bit image sent as depth" in s.message, 60)
    finally:
        rig.stop()
    assert "metres sent as millimetres?" in reasons["metres in 16UC1"], reasons
    assert "depth median 1 in 16UC1" in reasons["metres in 16UC1"], reasons
    assert "millimetres sent as metres?" in reasons["mm in 32FC1"], reasons
    assert "depth scale too large (x10?)" in reasons["depth x10"], reasons
    assert "field of view" in reasons["fx x0.1"] and "x0.1?" in reasons["fx x0.1"], reasons
    assert st is not None and _level(st) >= 1
    assert "All-NaN slice" not in capfd.readouterr().err


def test_camera_info_frame_ids_and_zero_stamps_are_reported(scene):
    rig = _Rig(scene)
    try:
        # camera_info stamped 300 ms off: the latest is used without waiting, and reported
        waits = []
        for _ in range(3):
            m = rig.msgs()
            ns = rig.stamp - 300_000_000
            m["camera_info"].header.stamp.sec, m["camera_info"].header.stamp.nanosec = \
                ns // 10**9, ns % 10**9
            poses, est = rig.answer(m)
            assert est.estimates[0].status == 0
            waits.append(rig.node._camera_infos.unmatched_streak)
        st, _ = rig.wait_diag(lambda s: "camera_info stamps do not match" in s.message, 5)
        assert st is not None and "(nearest -300.0 ms from the image" in st.message, st
        assert waits == [1, 2, 3]
        assert not rig.node._camera_infos.worth_waiting(rig.stamp + 10**8, 50_000_000)

        # three different frame_ids
        m = rig.msgs()
        m["image"].header.frame_id = "cam_color"
        m["depth"].header.frame_id = "cam_depth"
        m["camera_info"].header.frame_id = "cam_ir"
        rig.answer(m)
        st, _ = rig.wait_diag(lambda s: "frame_id mismatch" in s.message, 5)
        assert st is not None and _level(st) == 1
        assert "image 'cam_color', depth 'cam_depth', camera_info 'cam_ir'" in st.message

        # empty frame_id: poses, but no TF with an empty parent
        m = rig.msgs()
        for k in ("image", "depth", "camera_info", "detections"):
            m[k].header.frame_id = ""
        poses, _ = rig.answer(m)
        time.sleep(0.3)
        with rig.rep.lock:
            tf = rig.rep.tf.get(rig.stamp, [])
        assert len(poses.detections) == 1 and tf == []
        st, _ = rig.wait_diag(lambda s: "empty frame_id" in s.message, 5)
        assert st is not None

        # stamp 0: answered, reported, not used for latency
        n_lat = len(rig.node.latencies)
        m = rig.msgs()
        for k in ("image", "depth", "camera_info", "detections"):
            m[k].header.stamp.sec, m[k].header.stamp.nanosec = 0, 0
        rig.rep.publish(m)
        r = rig.rep.wait_result(0, 60)
        assert r is not None and len(r[0].detections) == 1
        st, _ = rig.wait_diag(lambda s: "image stamp is 0" in s.message, 5)
        assert st is not None
        assert len(rig.node.latencies) == n_lat
        vals = {kv.key: kv.value for kv in rig.node.diagnostics_status().values}
        assert float(vals["latency_max [ms]"]) < 3.6e6 * 24 * 365 * 10   # not 56 years
    finally:
        rig.stop()
