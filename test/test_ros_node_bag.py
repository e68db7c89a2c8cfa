"""``coop-ros bag``: a bag this test writes with rosbags (image, depth, camera_info, detections;
sqlite3 and mcap) -> coop-ros bag -> a new bag + CSV whose Detection3DArray poses equal the ones
coop_node publishes for the same frames over DDS (same parameters, deterministic pipeline)."""
import csv
import os
import random
import subprocess
import sys

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("rosbags")

from conftest import box_node_overrides, node_params_file  # noqa: E402

S0 = 1_770_000_000_000_000_000
STAMPS = [S0, S0 + 100_000_000, S0 + 200_000_000]


@pytest.fixture(scope="module")
def scene(box_scene):
    return box_scene


def _frames(scene):
    """Per stamp, the messages of the scene's frame; the middle one with the depth of the
    first frame shifted 60 ms (outside the slop: an unmatched image)."""
    from coop_ros.bop.dataset import BopDataset
    from coop_ros.ros.replay import frame_messages
    f = BopDataset(scene / "scene").frame(0, 0)
    return [frame_messages(f, s) for s in STAMPS]


def _write_bag(path, frames, storage):
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from coop_ros.ros.bag import msgdef_typestore
    ts = msgdef_typestore()
    topics = {"image": "/cam/color", "depth": "/cam/depth", "camera_info": "/cam/info",
              "detections": "/det"}
    w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else
               StoragePlugin.SQLITE3)
    w.open()
    conns = {}
    t = 10**18
    for msgs in frames:
        for k in ("camera_info", "depth", "image", "detections"):
            m = msgs[k]
            if k not in conns:
                mt = f"{type(m).__module__.split('.')[0]}/msg/{type(m).__name__}"
                conns[k] = w.add_connection(topics[k], mt, typestore=ts)
            t += 5_000_000
            w.write(conns[k], t, serialize_message(m))
    w.close()
    return topics


def _read_poses(path):
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from vision_msgs.msg import Detection3DArray
    out = {}
    with Reader(path) as r:
        conns = [c for c in r.connections if c.topic == "/coop/poses"]
        assert conns and conns[0].msgtype == "vision_msgs/msg/Detection3DArray"
        for _, _, raw in r.messages(connections=conns):
            m = deserialize_message(raw, Detection3DArray)
            out[m.header.stamp.sec * 10**9 + m.header.stamp.nanosec] = m
        topics = {c.topic for c in r.connections}
    return out, topics


def _pose_vec(d):
    p = d.results[0].pose.pose
    return np.array([p.position.x, p.position.y, p.position.z, p.orientation.x,
                     p.orientation.y, p.orientation.z, p.orientation.w])


@pytest.fixture(scope="module")
def node_poses(scene):
    """What coop_node publishes for the same frames (over DDS, in this process)."""
    from coop_ros.ros.node import CoopNode
    from coop_ros.ros.replay import Replayer, Spinner
    sp = Spinner()
    try:
        sp.add(CoopNode(context=sp.context, parameter_overrides=box_node_overrides(
            scene, num_hypotheses=2, rgbd_refine_iterations=1, time_budget=0.0)))
        rep = sp.add(Replayer("bag_reference", context=sp.context))
        sp.start()
        assert rep.wait_for_node(60)
        out = {}
        for msgs, s in zip(_frames(scene), STAMPS):
            rep.publish(msgs)
            r = rep.wait_result(s, 60)
            assert r is not None
            out[s] = r[0]
    finally:
        sp.stop()
    return out


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_round_trip_matches_the_node(scene, tmp_path, node_poses, storage, capsys):
    """coop-ros bag run in this process (its command line: coop_ros.cli.main; the ``python -m``
    entry point is run by test_bag_arguments_are_checked_first): the pipeline's imports are
    not paid again per storage format."""
    from coop_ros.cli import main
    bag_in = tmp_path / f"in_{storage}"
    topics = _write_bag(bag_in, _frames(scene), storage)
    params = node_params_file(scene, num_hypotheses=2, time_budget=0.0)
    out = tmp_path / f"out_{storage}"
    args = ["bag", str(bag_in), "--out", str(out), "--params-file", str(params), "--no-progress"]
    args += [a for k, t in topics.items() for a in ("-r", f"{k}:={t}")]
    rc = main(args)
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stdout[-2000:] + stderr[-3000:]
    assert "3 images, 3 frames matched and processed" in stdout, stdout
    assert "estimates: 3 ok, 0 failed, 0 skipped" in stdout, stdout
    poses, topics_out = _read_poses(out)
    assert {"/coop/poses", "/coop/estimates", "/tf", "/coop/pose/box",
            "/coop/markers"} <= topics_out
    assert sorted(poses) == STAMPS
    for s in STAMPS:
        a, b = poses[s], node_poses[s]
        assert [d.id for d in a.detections] == [d.id for d in b.detections] == ["box_0"]
        assert np.allclose(_pose_vec(a.detections[0]), _pose_vec(b.detections[0]),
                           atol=1e-9, rtol=0)
        assert np.allclose(a.detections[0].results[0].pose.covariance,
                           b.detections[0].results[0].pose.covariance, rtol=1e-9, atol=0)
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert [r["instance_id"] for r in rows] == ["box_0"] * 3
    assert [r["ambiguous"] for r in rows] == ["0"] * 3     # a clear RGB-D view: no rival pose
    x = float(rows[0]["x"])
    assert abs(x - node_poses[STAMPS[0]].detections[0].results[0].pose.pose.position.x) < 1e-6


def test_bag_arguments_are_checked_first(scene, tmp_path):
    from coop_ros.cli import main
    assert main(["bag", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                 "-p", f"objects_file:={scene}/none.yaml"]) == 1
    bag_in = tmp_path / "in"
    _write_bag(bag_in, _frames(scene)[:1], "sqlite3")
    params = node_params_file(scene)
    p = subprocess.run([sys.executable, "-m", "coop_ros.cli", "bag", str(bag_in), "--out",
                        str(tmp_path / "o2"), "--params-file", str(params)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert "has no topic for image (/image)" in p.stderr, p.stderr
    assert "'/cam/color'" in p.stderr and "remap with -r NAME:=TOPIC" in p.stderr
