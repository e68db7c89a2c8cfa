"""coop_node end to end over real DDS: a SEPARATE publisher process (python -m
coop_ros.ros.replay) sends two synthetic RGB-D frames with exact ground truth; this process hosts
the node and listens to coop/poses, coop/estimates and /tf."""
import os
import random
import subprocess
import sys
import time

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("tf2_msgs.msg")

from rclpy.parameter import Parameter  # noqa: E402

from conftest import camera_qos_params  # noqa: E402
from coop_ros.geometry.se3 import pose_errors, quat_xyzw_to_matrix  # noqa: E402

STAMP0 = 1_700_000_000_000_000_000
STAMPS = [STAMP0, STAMP0 + 100_000_000]
N_HYP = 3


def _T(pose) -> np.ndarray:
    T = np.eye(4)
    o = pose.orientation
    T[:3, :3] = quat_xyzw_to_matrix(np.array([o.x, o.y, o.z, o.w]))
    T[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    return T


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    from coop_ros.synth.scenes import generate_dataset
    root = tmp_path_factory.mktemp("ros_scene")
    generate_dataset(root / "scene", objects=["textured_box", "can"], n_scenes=1,
                     images_per_scene=2, seed=3, objects_per_image=(2, 2), distractors=(0, 1),
                     progress=False)
    (root / "objects.yaml").write_text(
        "objects:\n"
        "  - {name: textured_box, class_id: '1', mesh: scene/models/obj_000001.ply}\n"
        "  - {name: can, class_id: '2', mesh: scene/models/obj_000002.ply, "
        "symmetry: 'continuous:z'}\n")
    return root


@pytest.fixture(scope="module")
def run(scene):
    from coop_ros.bop.dataset import BopDataset
    from coop_ros.ros.node import CoopNode
    from coop_ros.ros.replay import Replayer, Spinner
    sp = Spinner()
    try:
        node = sp.add(CoopNode(context=sp.context, parameter_overrides=[
            Parameter("objects_file", value=str(scene / "objects.yaml")),
            Parameter("num_hypotheses", value=N_HYP), Parameter("time_budget", value=0.0),
            *[Parameter(k, value=v) for k, v in camera_qos_params().items()],
            Parameter("template_cache_dir", value=str(scene / "templates"))]))
        listener = sp.add(Replayer("test_listener", context=sp.context))
        sp.start()
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "coop_ros.ros.replay", "--bop", str(scene / "scene"),
             "--stamp-start-ns", str(STAMP0), "--timeout", "90", "--startup-timeout", "60",
             "--names", "1=textured_box,2=can", "--overlay-dir", str(scene / "overlays")],
            capture_output=True, text=True, timeout=300, env=dict(os.environ))
        results = {s: listener.wait_result(s, timeout=30) for s in STAMPS}
        wall = time.monotonic() - t0
        time.sleep(0.3)
        with listener.lock:
            tf = {k: list(v) for k, v in listener.tf.items()}
        yield {"proc": proc, "results": results, "tf": tf, "node": node, "wall": wall,
               "ds": BopDataset(scene / "scene")}
    finally:
        sp.stop()


def test_publisher_process_gets_every_frame_answered(run):
    p = run["proc"]
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "frames: 2 sent, 2 answered, 0 without an answer" in p.stdout
    # the overlay of every frame, and the symmetry-aware rotation error explained
    assert "overlays: 2 images in" in p.stdout, p.stdout[-2000:]
    assert "rot err: the smallest angle over the object's symmetries" in p.stdout
    assert all(r is not None for r in run["results"].values()), "no Detection3DArray in time"
    print(f"publisher process started, 2 frames sent and answered in {run['wall']:.1f} s")


def test_poses_match_ground_truth(run):
    ds = run["ds"]
    for (scene_id, im_id), stamp in zip(ds.images(), STAMPS):
        frame = ds.frame(scene_id, im_id)
        poses, est = run["results"][stamp]
        assert poses.header.frame_id == "camera_color_optical_frame"
        assert poses.header.stamp.sec * 10**9 + poses.header.stamp.nanosec == stamp
        assert len(poses.detections) == 2 and len(est.estimates) == 2
        by_id = {d.id: d for d in poses.detections}
        assert set(by_id) == {"textured_box_0", "can_0"}
        gt_box = next(g for g in frame.gt if g.obj_id == 1)
        d = by_id["textured_box_0"]
        assert d.results[0].hypothesis.class_id == "1"
        assert 0.0 < d.results[0].hypothesis.score <= 1.0
        rot, tr = pose_errors(_T(d.results[0].pose.pose), gt_box.T_cam_obj)
        # weight-free RGB-D on this synthetic frame: measured ~0.05 deg / < 1 mm
        assert rot < 2.0 and tr < 0.005, (rot, tr)
        # bbox = mesh extents (140 x 50 x 200 mm box) centred at the pose
        assert np.allclose([d.bbox.size.x, d.bbox.size.y, d.bbox.size.z], [0.14, 0.05, 0.2],
                           atol=1e-6)
        assert 1 <= len(d.results) <= N_HYP
        for e in est.estimates:
            assert e.status == 0 and e.reason == "" and e.timings.total > 0
            assert not e.ambiguous       # clear RGB-D views: no rival pose
            assert 1 <= len(e.hypotheses) <= N_HYP and e.timings.refine > 0


def test_covariance_is_spd_and_not_constant(run):
    covs = {}
    for stamp in STAMPS:
        poses, _ = run["results"][stamp]
        for d in poses.detections:
            C = np.reshape(d.results[0].pose.covariance, (6, 6))
            assert np.allclose(C, C.T, atol=1e-15)
            assert np.linalg.eigvalsh(C).min() > 0, d.id
            covs[(stamp, d.id)] = C
    a, b = covs[(STAMPS[0], "textured_box_0")], covs[(STAMPS[1], "textured_box_0")]
    c = covs[(STAMPS[0], "can_0")]
    assert not np.allclose(a, b, rtol=1e-3) and not np.allclose(a, c, rtol=1e-3)


def test_tf_with_image_stamp(run):
    for stamp in STAMPS:
        poses, _ = run["results"][stamp]
        tfs = {t.child_frame_id: t for t in run["tf"].get(stamp, [])}
        assert set(tfs) == {"coop/textured_box_0", "coop/can_0"}
        for d in poses.detections:
            t = tfs[f"coop/{d.id}"]
            assert t.header.frame_id == "camera_color_optical_frame"
            p = d.results[0].pose.pose.position
            assert np.allclose([t.transform.translation.x, t.transform.translation.y,
                                t.transform.translation.z], [p.x, p.y, p.z])


def test_diagnostics_count_frames_and_latency(run):
    st = run["node"].diagnostics_status()
    vals = {kv.key: kv.value for kv in st.values}
    assert vals["frames_processed"] == "2" and vals["backend"] == "weight-free"
    assert float(vals["processing_mean [ms]"]) > 0
    assert int(vals["received_image"]) == 2 and int(vals["received_detections"]) == 2


def test_overlay_of_every_frame_written(run, scene):
    import cv2
    files = sorted((scene / "overlays").glob("*.png"))
    assert [f.name for f in files] == ["000000_000000.png", "000000_000001.png"]
    a, b = (cv2.imread(str(f)) for f in files)
    assert a.shape == (480, 640, 3) and not np.array_equal(a, b)


def test_symmetry_aware_rotation_error():
    """A can turned 41.38 deg about its axis: raw error 41.38 deg, symmetry-aware 0."""
    from scipy.spatial.transform import Rotation

    from coop_ros.objects import ObjectModel
    from coop_ros.ros.replay import sym_rotation_error_deg
    import trimesh
    m = trimesh.creation.cylinder(radius=0.033, height=0.12, sections=64)
    can = ObjectModel(name="can", vertices=m.vertices, faces=m.faces,
                      symmetries_continuous=[{"axis": [0, 0, 1], "offset": [0, 0, 0]}])
    T_gt = np.eye(4)
    T_gt[:3, 3] = [0.05, -0.02, 0.7]
    T_gt[:3, :3] = Rotation.from_euler("xyz", [30, 10, 5], degrees=True).as_matrix()
    T_est = T_gt.copy()
    T_est[:3, :3] = T_gt[:3, :3] @ Rotation.from_euler("z", 41.38, degrees=True).as_matrix()
    raw = pose_errors(T_est, T_gt)[0]
    assert abs(raw - 41.38) < 1e-6
    assert sym_rotation_error_deg(T_est, T_gt, can.symmetry_transforms()) < 0.6
    box = ObjectModel(name="box", vertices=m.vertices, faces=m.faces)     # no symmetry
    assert abs(sym_rotation_error_deg(T_est, T_gt, box.symmetry_transforms()) - raw) < 1e-9
