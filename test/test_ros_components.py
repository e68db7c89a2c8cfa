"""coop_ros.ros without a running node: approximate-time sync, the one-slot frame buffer, the
parameter record, message conversions and the generated message packages."""
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from coop_ros.ros.params import ConfigError, NodeConfig, parse_symmetry
from coop_ros.ros.sync import ApproximateSync, LatestSlot

REPO = Path(__file__).resolve().parents[1]
MS = 1_000_000


# ----------------------------------------------------------------------------- sync
def test_sync_matches_within_slop_and_drops_older():
    s = ApproximateSync(["image", "det", "depth"], slop_s=0.02, queue_size=5)
    assert s.add("image", 100 * MS, "i1") is None
    assert s.add("det", 105 * MS, "d1") is None
    out = s.add("depth", 115 * MS, "z1")
    assert out == {"image": "i1", "det": "d1", "depth": "z1"}
    assert s.matched == 1 and s.pending() == {"image": 0, "det": 0, "depth": 0}
    # outside the slop: no match
    s.add("image", 200 * MS, "i2")
    s.add("det", 200 * MS, "d2")
    assert s.add("depth", 230 * MS, "z2") is None
    # a newer complete frame wins; the incomplete older image is dropped and counted
    s.add("image", 300 * MS, "i3")
    s.add("det", 301 * MS, "d3")
    out = s.add("depth", 299 * MS, "z3")
    assert out == {"image": "i3", "det": "d3", "depth": "z3"}
    assert s.dropped["image"] == 1 and s.dropped["det"] == 1 and s.dropped["depth"] == 1
    assert s.pending() == {"image": 0, "det": 0, "depth": 0}


def test_sync_picks_closest_and_bounds_queues():
    s = ApproximateSync(["image", "det"], slop_s=0.05, queue_size=3)
    for k in range(10):                       # detections only: the queue stays bounded
        s.add("det", k * 10 * MS, f"d{k}")
    assert s.pending()["det"] == 3 and s.dropped["det"] == 7
    out = s.add("image", 82 * MS, "img")     # closest det is 80 ms
    assert out == {"image": "img", "det": "d8"}
    assert s.pending()["det"] == 1            # d9 (newer) kept


def test_sync_zero_slop_exact_and_bad_arguments():
    s = ApproximateSync(["a", "b"], slop_s=0.0)
    assert s.add("a", 5, 1) is None
    assert s.add("b", 6, 2) is None
    assert s.add("b", 5, 3) == {"a": 1, "b": 3}
    for kw in ({"names": []}, {"names": ["a", "a"]}, {"names": ["a"], "slop_s": -1},
               {"names": ["a"], "queue_size": 0}):
        with pytest.raises(ValueError):
            ApproximateSync(**kw)


def test_latest_slot_drops_stale_and_wakes_worker():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.dropped == 2 and slot.get(timeout=0.1) == 3
    assert slot.get(timeout=0.05) is None
    got = []
    t = threading.Thread(target=lambda: got.append(slot.get(timeout=5)))
    t.start()
    slot.put("x")
    t.join(2)
    assert got == ["x"]
    slot.close()
    assert slot.get(timeout=5) is None and slot.closed


def test_sync_records_input_wait_of_a_late_input():
    """Arrival pattern measured with Fast DDS's 512 KiB shared-memory segment at 1 Hz: the depth
    of frame 0 arrives with frame 1's, so both frames complete in one burst, in stamp order."""
    s = ApproximateSync(["image", "det", "depth"], slop_s=0.05, queue_size=10)
    S = 1000 * MS
    assert s.add("image", 0, "i0", t=0.015) is None
    assert s.add("det", 0, "d0", t=0.005) is None            # frame 0 waits for its depth
    assert s.add("image", S, "i1", t=1.016) is None
    assert s.add("det", S, "d1", t=1.006) is None
    assert s.add("depth", 0, "z0", t=1.030) == {"image": "i0", "det": "d0", "depth": "z0"}
    assert s.add("depth", S, "z1", t=1.031) == {"image": "i1", "det": "d1", "depth": "z1"}
    assert [w for w, _ in s.waits] == pytest.approx([1.025, 0.025])
    assert s.max_wait() == (pytest.approx(1.025), "depth")
    # the burst fills the worker's slot twice before it takes one: one frame dropped as stale
    slot = LatestSlot()
    slot.put("frame 0")
    slot.put("frame 1")
    assert slot.dropped == 1 and slot.get(timeout=0) == "frame 1"
    # without arrival times nothing is recorded; the window keeps the last 100 sets
    s2 = ApproximateSync(["a", "b"], slop_s=0.0)
    s2.add("a", 1, "x")
    assert s2.add("b", 1, "y") == {"a": "x", "b": "y"} and s2.max_wait() is None
    for k in range(150):
        s2.add("a", 10 + k, k, t=float(k))
        s2.add("b", 10 + k, k, t=k + (0.5 if k < 50 else 0.001 * (k % 3)))
    assert len(s2.waits) == 100 and s2.max_wait() == (pytest.approx(0.002), "b")


def test_fastdds_shm_profile_set_up(tmp_path):
    """dds.ensure_shm_segment: writes the profile and points Fast DDS at it, unless the user
    configured Fast DDS, chose another middleware or opted out."""
    from coop_ros.ros.dds import ensure_shm_segment, profile_xml
    env = {}
    ok, note = ensure_shm_segment(env, cwd=tmp_path, directory=tmp_path)
    path = Path(env["FASTDDS_DEFAULT_PROFILES_FILE"])
    assert ok and path.parent == tmp_path and "16 MiB" in note
    text = path.read_text()
    assert text == profile_xml(16 * 1024 * 1024)
    assert "<segment_size>16777216</segment_size>" in text
    assert "<useBuiltinTransports>false</useBuiltinTransports>" in text
    assert "<type>UDPv4</type>" in text              # other hosts are still reached
    env = {"COOP_ROS_SHM_SEGMENT_MB": "2.5", "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    assert ensure_shm_segment(env, cwd=tmp_path, directory=tmp_path)[0]
    assert f"<segment_size>{int(2.5 * 1024 * 1024)}<" in \
        Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).read_text()
    for env, word in (({"COOP_ROS_SHM_SEGMENT_MB": "0"}, "defaults"),
                      ({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}, "rmw_cyclonedds_cpp"),
                      ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, "FASTDDS_BUILTIN"),
                      ({"FASTRTPS_DEFAULT_PROFILES_FILE": "/x.xml"}, "/x.xml"),
                      ({"FASTDDS_DEFAULT_PROFILES_FILE": "/y.xml"}, "/y.xml")):
        before = dict(env)
        ok, note = ensure_shm_segment(env, cwd=tmp_path, directory=tmp_path)
        assert not ok and word in note and env == before
    (tmp_path / "DEFAULT_FASTDDS_PROFILES.xml").write_text("<dds/>")
    env = {}
    ok, note = ensure_shm_segment(env, cwd=tmp_path, directory=tmp_path)
    assert not ok and "DEFAULT_FASTDDS_PROFILES.xml" in note and env == {}
    for bad in ("-1", "abc", "nan"):
        with pytest.raises(ValueError, match="COOP_ROS_SHM_SEGMENT_MB"):
            ensure_shm_segment({"COOP_ROS_SHM_SEGMENT_MB": bad}, directory=tmp_path)


# ----------------------------------------------------------------------------- parameters
def _flat(**kw):
    d = {"objects.names": ["box"], "objects.box.mesh": "/m/box.ply", "objects.box.class_id": 3}
    d.update(kw)
    return d


def test_config_defaults_objects_and_symmetry(tmp_path):
    cfg = NodeConfig.from_flat(_flat(**{"objects.box.symmetry": "discrete:z:4"}))
    assert cfg.mode == "rgbd" and cfg.backend == "auto" and cfg.num_hypotheses == 5
    o = cfg.objects[0]
    assert (o.name, o.class_id, o.units) == ("box", "3", "mm")
    assert len(o.symmetry["symmetries_discrete"]) == 3
    T = np.asarray(o.symmetry["symmetries_discrete"][0]).reshape(4, 4)
    assert np.allclose(T[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-9)
    assert parse_symmetry("continuous:z") == {
        "symmetries_continuous": [{"axis": [0.0, 0.0, 1.0], "offset": [0.0, 0.0, 0.0]}]}
    assert parse_symmetry("none") is None
    # objects file: relative mesh paths are relative to the file
    f = tmp_path / "objs.yaml"
    f.write_text("objects:\n  - {name: can, class_id: 7, mesh: m/can.ply, units: m}\n")
    cfg = NodeConfig.from_flat({"objects_file": str(f)})
    assert cfg.objects[0].mesh == str(tmp_path / "m" / "can.ply")
    assert cfg.objects[0].class_id == "7" and cfg.objects[0].units == "m"


@pytest.mark.parametrize("changes, words", [
    ({"num_hypotheses": 0}, ["num_hypotheses", "got 0"]),
    ({"mode": "depth"}, ["mode", "'depth'"]),
    ({"backend": "magic"}, ["backend", "'magic'"]),
    ({"device": "gpu"}, ["device", "'gpu'"]),
    ({"precision": "fp16"}, ["precision", "'fp16'"]),
    ({"crop_size": 100}, ["crop_size", "multiple of 16", "100"]),
    ({"min_score": 1.5}, ["min_score", "1.5"]),
    ({"sync_slop": -0.1}, ["sync_slop", "-0.1"]),
    ({"publish.tf": "yes"}, ["publish.tf", "'yes'"]),
    ({"objects.box.units": "cm"}, ["objects.box.units", "'cm'"]),
    ({"objects.box.symmetry": "spiral"}, ["objects.box.symmetry", "'spiral'"]),
    ({"objects.box.mesh": ""}, ["objects.box.mesh"]),
    ({"objects.names": ["bad name"]}, ["objects.names", "'bad name'"]),
    ({"objects.names": []}, ["no objects configured"]),
    ({"frobnicate": 1}, ["unknown parameter 'frobnicate'"]),
])
def test_config_errors_name_the_bad_value(changes, words):
    with pytest.raises(ConfigError) as e:
        NodeConfig.from_flat(_flat(**changes))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_config_runtime_updates():
    cfg = NodeConfig.from_flat(_flat())
    new = cfg.updated({"num_hypotheses": 2, "min_score": 0.3, "publish.markers": False})
    assert (new.num_hypotheses, new.min_score, new.publish["markers"]) == (2, 0.3, False)
    assert new.objects == cfg.objects and cfg.num_hypotheses == 5
    with pytest.raises(ConfigError, match="'backend' cannot change while the node runs"):
        cfg.updated({"backend": "weight-free"})
    with pytest.raises(ConfigError, match="'num_hypotheses'.*got 99"):
        cfg.updated({"num_hypotheses": 99})


def test_shipped_config_validates():
    import yaml
    data = yaml.safe_load((REPO / "config" / "coop.yaml").read_text())
    params = data["/**"]["ros__parameters"]

    def flatten(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flatten(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v
    flat = dict(flatten(params))
    from coop_ros.ros.params import PARAMETERS
    assert set(flat) - {"objects.names"} <= set(PARAMETERS)
    assert set(PARAMETERS) - {"objects.names"} <= set(flat), "config/coop.yaml misses parameters"
    cfg = NodeConfig.from_flat(dict(flat, **{"objects_file": str(REPO / "config" /
                                                               "objects.example.yaml")}))
    assert [o.name for o in cfg.objects] == ["cereal_box", "soup_can"]


def test_yaml_and_readme_parameter_table_are_generated_from_the_table(tmp_path):
    """config/coop.yaml and the README's parameter table are what params.TABLE generates; a
    hand edit of either is reported."""
    import shutil

    from coop_ros.ros.params import main
    assert main(["--root", str(REPO)]) == 0, "run: python -m coop_ros.ros.params --write"
    (tmp_path / "config").mkdir()
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    yaml_text = (REPO / "config" / "coop.yaml").read_text()
    (tmp_path / "config" / "coop.yaml").write_text(yaml_text.replace("num_hypotheses: 5",
                                                                     "num_hypotheses: 6"))
    assert main(["--root", str(tmp_path)]) == 1
    assert main(["--root", str(tmp_path), "--write"]) == 0
    assert (tmp_path / "config" / "coop.yaml").read_text() == yaml_text
    assert main(["--root", str(tmp_path)]) == 0


# ----------------------------------------------------------------------------- conversions
def test_image_and_depth_conversions():
    from std_msgs.msg import Header

    from coop_ros.errors import InputError
    from coop_ros.ros import conversions as conv
    from coop_ros.ros.replay import make_camera_info, make_depth, make_detections, make_image
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    h = Header(frame_id="cam")
    for enc in ("rgb8", "bgr8"):
        assert np.array_equal(conv.image_to_rgb(make_image(rgb, h, enc)), rgb)
    mono = conv.image_to_rgb(make_image(rgb, h, "mono8"))
    assert mono.shape == (5, 7, 3) and np.array_equal(mono[..., 0], mono[..., 2])
    bad = make_image(rgb, h)
    bad.encoding = "yuv422"
    with pytest.raises(InputError, match="unsupported encoding 'yuv422'"):
        conv.image_to_rgb(bad)
    d = rng.uniform(0.3, 2.0, (5, 7)).astype(np.float32)
    d[0, 0] = 0
    d16 = conv.depth_to_m(make_depth(d, h, "16UC1"))
    assert np.abs(d16 - d).max() <= 0.0005 + 1e-6
    d32 = d.copy()
    d32[1, 1] = np.nan
    out = conv.depth_to_m(make_depth(d32, h, "32FC1"))
    assert out[1, 1] == 0 and np.allclose(out[2:], d[2:])
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    K2, size = conv.camera_info_to_K(make_camera_info(K, 640, 480, h))
    assert np.allclose(K2, K) and size == (640, 480)
    dets = conv.detections_from_msg(make_detections([("3", (10, 20, 30, 40), 0.7)], h))
    assert dets[0]["class_id"] == "3" and np.allclose(dets[0]["box_xywh"], [10, 20, 30, 40])


def test_pose_with_covariance_roundtrip():
    from coop_ros.geometry.se3 import quat_xyzw_to_matrix, random_rotation
    from coop_ros.ros.conversions import pose_with_covariance
    T = np.eye(4)
    T[:3, :3] = random_rotation(np.random.default_rng(1))
    T[:3, 3] = [0.1, -0.2, 0.8]
    A = np.random.default_rng(2).normal(size=(6, 6))
    cov = A @ A.T
    m = pose_with_covariance(T, cov)
    q = m.pose.orientation
    assert np.allclose(quat_xyzw_to_matrix(np.array([q.x, q.y, q.z, q.w])), T[:3, :3], atol=1e-9)
    assert np.allclose(np.reshape(m.covariance, (6, 6)), cov)
    assert np.allclose(np.reshape(pose_with_covariance(T, None).covariance, (6, 6)), -np.eye(6))


def test_ambiguous_estimate_is_flagged_in_the_message(tmp_path):
    """A frame whose estimate has a rival pose (a plain box, symmetries not declared, RGB, 5
    hypotheses): ObjectPoseEstimate.ambiguous is set, the published covariance says the
    orientation is not determined, and the overlay label says so. (The flag cleared by declared
    symmetries: test_pipeline_select; false on clear views: test_ros_node_integration.)"""
    from std_msgs.msg import Header

    from conftest import PLAIN_BOX_K, plain_box_frame
    from coop_ros.pipeline import PoseConfig
    from coop_ros.pipeline.estimator import PoseEstimator
    from coop_ros.pipeline.refine import ROTATION_VARIANCE_UNDETERMINED
    from coop_ros.ros.frame import FrameProcessor
    from coop_ros.ros.replay import make_camera_info, make_detections, make_image
    cfg = NodeConfig.from_flat(_flat(mode="rgb", num_hypotheses=5))
    est = PoseEstimator(PoseConfig(template_cache_dir=str(tmp_path)))
    try:
        obj, rgb, box, _ = plain_box_frame(est.renderer)
        est.add_object("box", obj)
        h = Header(frame_id="cam")
        frame = {"image": make_image(rgb, h), "detections": make_detections([("3", box, 0.9)], h)}
        info = make_camera_info(np.array(PLAIN_BOX_K), 640, 480, h)
        out = FrameProcessor(est, {"box": obj}, cfg.objects).process(frame, info, cfg)
    finally:
        est.release()
    e = out.estimates.estimates[0]
    assert e.status == 0 and e.ambiguous
    C = np.reshape(e.pose.covariance, (6, 6))
    assert np.all(np.diag(C)[3:] >= ROTATION_VARIANCE_UNDETERMINED - 1e-6)
    assert out.overlay_items[0]["label"].endswith("(ambiguous)")


# ----------------------------------------------------------------------------- messages
# RIHS01 hashes of the upstream packages as published by real ROS 2 (Jazzy) nodes / golden tests
UPSTREAM_HASHES = {
    "tf2_msgs/msg/TFMessage":
        "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
    "tf2_msgs/msg/TF2Error":
        "RIHS01_db2485e7d6a0ec75bf087e058ee45df682acc3a621ca7780503d10aac141809a",
    "vision_msgs/msg/Detection3DArray":
        "RIHS01_793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",
}


@pytest.mark.parametrize("type_name", sorted(UPSTREAM_HASHES))
def test_generated_messages_match_upstream_type_hash(type_name):
    desc = Path(sys.prefix) / "share" / f"{type_name}.json"
    if not desc.is_file():
        pytest.skip(f"{desc} not generated here (a ROS install provides the package)")
    hashes = {h["type_name"]: h["hash_string"] for h in json.loads(desc.read_text())["type_hashes"]}
    assert hashes[type_name] == UPSTREAM_HASHES[type_name]


def test_vision_msgs_field_layout():
    import vision_msgs.msg as vm
    assert vm.Detection2D.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "results": "sequence<vision_msgs/ObjectHypothesisWithPose>",
        "bbox": "vision_msgs/BoundingBox2D", "id": "string"}
    assert vm.Detection3D.get_fields_and_field_types()["bbox"] == "vision_msgs/BoundingBox3D"
    assert vm.BoundingBox2D.get_fields_and_field_types() == {
        "center": "vision_msgs/Pose2D", "size_x": "double", "size_y": "double"}
    assert vm.Pose2D.get_fields_and_field_types() == {"position": "vision_msgs/Point2D",
                                                      "theta": "double"}
    assert vm.ObjectHypothesis.get_fields_and_field_types() == {"class_id": "string",
                                                                "score": "double"}


def test_compressed_image():
    import cv2
    from sensor_msgs.msg import CompressedImage

    from coop_ros.errors import InputError
    from coop_ros.ros.conversions import compressed_to_rgb
    rgb = np.random.default_rng(3).integers(0, 255, (6, 9, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    m = CompressedImage(format="png", data=png.tobytes())
    assert np.array_equal(compressed_to_rgb(m), rgb)
    with pytest.raises(InputError, match="cannot decode"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"garbage"))


def test_mesh_markers(tmp_path):
    import trimesh
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from coop_ros.objects import ObjectModel
    from coop_ros.ros.markers import mesh_markers
    obj = ObjectModel.from_trimesh(trimesh.creation.box((0.1, 0.2, 0.3)), units="m", name="b")
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.1, 0.7]
    item = {"instance_id": "b_0", "name": "b", "T": T, "obj": obj,
            "mesh": str(tmp_path / "b.ply"), "units": "mm", "color": (0, 255, 0)}
    arr = mesh_markers(Header(frame_id="cam"), [item], "mesh_resource")
    assert arr.markers[0].action == Marker.DELETEALL
    m = arr.markers[1]
    assert m.type == Marker.MESH_RESOURCE and m.mesh_resource == (tmp_path / "b.ply").as_uri()
    assert m.scale.x == pytest.approx(1e-3) and m.pose.position.z == pytest.approx(0.7)
    assert arr.markers[2].type == Marker.TEXT_VIEW_FACING and arr.markers[2].text == "b_0"
    tri = mesh_markers(Header(frame_id="cam"), [item], "triangle_list").markers[1]
    assert tri.type == Marker.TRIANGLE_LIST and len(tri.points) == 3 * len(obj.faces)


# ----------------------------------------------------------------------------- issue 11
def test_sync_records_unmatchable_images_with_the_nearest_stamp():
    """Detections stamped 200 ms after their image (slop 50 ms): every image is recorded once
    as unmatchable, with the detection stamp nearest to it; nothing matches."""
    s = ApproximateSync(["image", "det"], slop_s=0.05, queue_size=10)
    S = 1000 * MS
    for k in range(5):
        assert s.add("image", k * S, f"i{k}", t=float(k)) is None
        assert s.add("det", k * S + 200 * MS, f"d{k}", t=k + 0.1) is None
    assert s.matched == 0 and s.unmatchable == 5
    m = s.mismatches[0]
    assert (m.pivot, m.pivot_stamp, m.stream, m.nearest_stamp) == ("image", 0, "det", 200 * MS)
    assert m.offset_ms == 200.0 and m.t == 0.1
    # a detector at half the camera rate is no mismatch: the images it skips fall out when the
    # next one matches
    s = ApproximateSync(["image", "det"], slop_s=0.02, queue_size=10)
    for k in range(6):
        s.add("image", k * 100 * MS, k)
        if k % 2 == 0:
            s.add("det", k * 100 * MS, f"d{k}")
    assert s.matched == 3 and s.unmatchable == 0


def test_camera_info_cache_stops_waiting_for_stamps_that_never_match():
    from coop_ros.ros.sync import CameraInfoCache
    c = CameraInfoCache(give_up_after=2)
    slop = 50 * MS
    assert c.worth_waiting(1000 * MS, slop)              # nothing yet: may come
    c.add(700 * MS, "ci0")                                # stamped 300 ms before the image
    assert c.lookup(1000 * MS, slop) == ("ci0", False)
    assert c.worth_waiting(1000 * MS, slop)              # older than the image: may still come
    for k in range(2):
        c.served(1000 * MS + k, False)
    assert c.unmatched_streak == 2 and c.last_offset_ns == -300 * MS - 1
    assert not c.worth_waiting(2000 * MS, slop)          # given up: no wait per frame
    c.add(2000 * MS, "ci1")
    assert c.lookup(2000 * MS, slop) == ("ci1", True)
    c.served(2000 * MS, True)
    assert c.unmatched_streak == 0 and c.nearest(1990 * MS) == "ci1"
    c.add(3000 * MS, "ci2")
    assert not c.worth_waiting(2500 * MS, slop)           # a newer one exists already


def test_sanity_checks_name_the_likely_cause():
    from coop_ros.pipeline.sanity import (box_scale_problem, depth_unit_problem,
                                          intrinsics_problem)
    d = np.full((480, 640), 0.9, np.float32)
    assert depth_unit_problem(d, "16UC1") is None and depth_unit_problem(d, "32FC1") is None
    lvl, msg = depth_unit_problem(np.round(d) / 1000.0, "16UC1")   # 0.9 m stored as "1" mm
    assert lvl == "error" and msg.startswith("depth median 1 in 16UC1 (millimetres): metres "
                                             "sent as millimetres?")
    lvl, msg = depth_unit_problem(d * 1000, "32FC1")
    assert lvl == "error" and "depth median 900 in 32FC1 (metres): millimetres sent as" in msg
    lvl, msg = depth_unit_problem(np.full((4, 4), 0.2, np.float32), "16UC1")
    assert lvl == "warning" and "8-bit image sent as depth?" in msg
    K = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    assert intrinsics_problem(K, 640, 480) is None
    lvl, msg = intrinsics_problem(K * [[0.1], [0.1], [1]], 640, 480)
    assert lvl == "error" and "159 x 152 deg field of view" in msg and "x0.1?" in msg
    # a 0.2 m object 160x120 px at 0.9 m fits; at 9 m (depth x10) it cannot
    box = (200, 200, 160, 120)
    assert box_scale_problem(box, d, K, 0.2) is None
    lvl, msg = box_scale_problem(box, d * 10, K, 0.2)
    assert lvl == "error" and "is 15.0x the 13 px a 200 mm object can span" in msg
    assert box_scale_problem(box, d, K * [[0.1], [0.1], [1]], 0.2)[0] == "error"
    assert box_scale_problem(box, np.zeros_like(d), K, 0.2) is None      # no depth: no verdict


def test_new_node_parameters_validate():
    base = {"objects.names": ["a"], "objects.a.mesh": "a.ply"}
    cfg = NodeConfig.from_flat(base)
    assert (cfg.max_detections, cfg.time_budget, cfg.discard_older_than_ms) == (20, 10.0, 0)
    assert cfg.qos == {"image": "best_effort", "depth": "best_effort",
                       "camera_info": "best_effort", "detections": "reliable"}
    for name, bad in (("max_detections", -1), ("time_budget", -0.5),
                      ("discard_older_than_ms", 1.5), ("qos.image.reliability", "fast")):
        with pytest.raises(ConfigError, match=f"'{name}'"):
            NodeConfig.from_flat(dict(base, **{name: bad}))
    new = cfg.updated({"time_budget": 2.5, "max_detections": 5})
    assert (new.time_budget, new.max_detections) == (2.5, 5)
    with pytest.raises(ConfigError, match="restart"):
        cfg.updated({"qos.image.reliability": "reliable"})


def test_fastdds_profile_is_private_to_this_user(tmp_path):
    """Issue 25, finding 7: the profile was written to a predictable name in the world-writable
    temp directory and reused when its content matched, so another user could plant or block
    it. Now: $XDG_RUNTIME_DIR when it is a private directory, else a fresh 0600 file created
    with O_EXCL (mkstemp) under a random name, removed at exit."""
    import os
    import stat

    from coop_ros.ros import dds
    size = 16 * 1024 * 1024
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    # what another user could plant at the old predictable name: never used
    planted = shared / f"coop_ros_fastdds_shm_{size}_{os.getuid()}.xml"
    planted.write_text(dds.profile_xml(size))
    paths = []
    for _ in range(2):
        env = {}
        assert dds.ensure_shm_segment(env, cwd=tmp_path, directory=shared)[0]
        p = Path(env["FASTDDS_DEFAULT_PROFILES_FILE"])
        st = os.lstat(p)
        assert p.parent == shared and p != planted and not p.is_symlink()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
        assert p.read_text() == dds.profile_xml(size)
        paths.append(p)
    assert paths[0] != paths[1]                       # a new random name per process
    # the receiving port holds a 4096x3072 image's 576 fragments (finding 4; 512 by default)
    assert "<port_queue_capacity>4096</port_queue_capacity>" in paths[0].read_text()
    dds.cleanup()
    assert not paths[0].exists() and not paths[1].exists() and planted.exists()
    # a private XDG_RUNTIME_DIR is used (and reused); a group / world accessible one is not
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(run)}
    assert dds.ensure_shm_segment(env, cwd=tmp_path, directory=shared)[0]
    p = Path(env["FASTDDS_DEFAULT_PROFILES_FILE"])
    assert p.parent == run and p.read_text() == dds.profile_xml(size)
    env2 = {"XDG_RUNTIME_DIR": str(run)}
    dds.ensure_shm_segment(env2, cwd=tmp_path, directory=shared)
    assert env2["FASTDDS_DEFAULT_PROFILES_FILE"] == str(p)
    run.chmod(0o777)
    env = {"XDG_RUNTIME_DIR": str(run)}
    assert dds.ensure_shm_segment(env, cwd=tmp_path, directory=shared)[0]
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).parent == shared
    link = tmp_path / "link"
    link.symlink_to(run)
    run.chmod(0o700)
    env = {"XDG_RUNTIME_DIR": str(link)}
    dds.ensure_shm_segment(env, cwd=tmp_path, directory=shared)
    assert Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]).parent == shared
    dds.cleanup()


def test_overload_turns_diagnostics_warn_or_error_with_the_numbers():
    """Issue 25, finding 6 (the rules; the node under a real burst: test_ros_node_reliability):
    frames dropped unprocessed, latency against the frame period and detections skipped by
    the time budget, over the window, each with its numbers."""
    from coop_ros.ros.diagnostics import overload_problems
    # the burst, scaled to one 10 s window: 300 frames, 298 dropped, 10 s latency at
    # 30 Hz, 70 % of the detections skipped by the budget
    probs = overload_problems(10.0, 300, 298, 24, 17, [9.8, 10.2], 1 / 30)
    levels = [lv for lv, _ in probs]
    text = "; ".join(t for _, t in probs)
    assert max(levels) == 2 and len(probs) == 3, probs
    assert "overloaded: 99% of the matched frames dropped unprocessed in the last 10 s (298 of "\
        "300" in text
    assert "answer latency 10000 ms" in text and "300.0 frame periods of 33 ms" in text
    assert "71% of the detections skipped by the time budget" in text and "(17 of 24" in text
    # a node that keeps up: nothing to say
    assert overload_problems(10.0, 50, 0, 50, 0, [0.05] * 50, 0.2) == []
    # moderate: WARN only (half the frames dropped, 4 periods late, 20 % budget skips)
    probs = overload_problems(10.0, 100, 50, 100, 20, [0.4] * 50, 0.1)
    assert [lv for lv, _ in probs] == [1, 1, 1], probs
    # too few frames / detections to judge a ratio
    assert overload_problems(10.0, 3, 3, 2, 2, [], None) == []


def test_camera_info_and_detection_conversions_name_the_bad_field():
    """Issue 25, findings 1 and 5: a NaN cx was reported as "fx, fy must be > 0"; a NaN / inf
    box passed conversion and raised later."""
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    from coop_ros.errors import InputError
    from coop_ros.ros.conversions import camera_info_to_K, detections_from_msg
    from coop_ros.ros.replay import make_detections
    ci = CameraInfo(width=640, height=480)
    ci.k = [500.0, 0.0, float("nan"), 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    with pytest.raises(InputError, match=r"K has non-finite entries: cx nan") as e:
        camera_info_to_K(ci)
    assert "fx, fy must be" not in str(e.value)
    ci.k = [0.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    with pytest.raises(InputError, match=r"fx 0, fy 500 \(both must be > 0"):
        camera_info_to_K(ci)
    arr = make_detections([("1", (10, 20, 30, 40)), ("1", (float("nan"), 20, 30, 40)),
                           ("1", (10, 20, 30, float("inf"))), ("1", (10, 20, 30, 40),
                                                               float("nan"))], Header())
    d = detections_from_msg(arr)
    assert [x["problem"] == "" for x in d] == [True, False, False, False]
    assert "bbox.center.position.x nan" in d[1]["problem"]
    assert "bbox.center.position.y inf, bbox.size_y inf" in d[2]["problem"]
    assert "results[].hypothesis.score [nan]" in d[3]["problem"]
    np.testing.assert_allclose(d[0]["box_xywh"], [10, 20, 30, 40])
