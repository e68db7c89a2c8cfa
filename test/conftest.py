"""Shared fixtures. Tests that read ../shared (real frames) skip cleanly when it is absent."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# scripts/test.sh runs the suite in two pytest-xdist workers (the machine's two cores): each
# worker gets its own ROS 2 domain, so its nodes and probes never hear the other worker's topics.
# Set here, before any test module reads it (they only set a default).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw") and _WORKER[2:].isdigit():
    _base = int(os.environ.get("ROS_DOMAIN_ID", "1"))
    os.environ["ROS_DOMAIN_ID"] = str((_base - 1 + 50 * int(_WORKER[2:])) % 101 + 1)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "serial: asserts wall-clock limits; scripts/test.sh runs these tests alone, "
        "after the parallel part, so the other worker's load cannot make them fail")


#: the test files that take longest (seconds in a worker, scripts/test.sh --durations=0), the
#: longest first. They are collected first, and pytest-xdist (--dist loadfile; scripts/test.sh
#: passes --no-loadscope-reorder, so files are handed out in collection order) starts them
#: first: the two workers end together instead of one waiting while the other runs a long file
#: it got last. Only the order changes; no test depends on it.
LONGEST_FIRST = ("test_ros_node_integration.py", "test_real_frames.py", "test_train_loop.py",
                 "test_ros_node_bad_inputs.py", "test_synth_realistic.py",
                 "test_ros_node_inputs.py", "test_package_build.py", "test_ros_node_bag.py",
                 "test_ros_node_tracking.py", "test_track.py",
                 "test_pipeline_determinism.py", "test_ros_reliability.py",
                 "test_pipeline_estimator.py", "test_nets.py",
                 "test_pipeline_cli.py", "test_train_pairs.py", "test_backend_learned.py",
                 "test_train_ddp.py", "test_ros_node_shutdown.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))    # stable: files' own order


@pytest.fixture
def shared_real() -> Path:
    """../shared/real (BOP-convention real frames, mm); skips the test when absent."""
    path = SHARED / "real"
    if not path.is_dir():
        pytest.skip("../shared/real is not present")
    return path


# ----------------------------------------------------------------------------- node tests
#: QoS reliability of the node's camera inputs in tests that send images between processes:
#: the default (best effort) unless COOP_ROS_TEST_CAMERA_QOS says otherwise. scripts/test.sh sets
#: it to "reliable" for the Jazzy run: with Jazzy's Fast DDS 2.14 wheels a best-effort
#: subscription received 0 of 3 rgb8 / 16UC1 640x480 images from another process here (1 of 3
#: from a best-effort publisher), with or without the large shared-memory segment; Kilted
#: received all. In-process tests keep the default on both.
CAMERA_QOS = os.environ.get("COOP_ROS_TEST_CAMERA_QOS", "")


def camera_qos_params() -> dict:
    """{'qos.image.reliability': ..., ...} for CAMERA_QOS, or {} (the node's defaults)."""
    if not CAMERA_QOS:
        return {}
    return {f"qos.{k}.reliability": CAMERA_QOS for k in ("image", "depth", "camera_info")}
#: node parameters of the tests on the box scene: 1 hypothesis, 1 RGB-D iteration, diagnostics
#: every 0.2 s, 12 template views (these tests check what the node says and publishes, not how
#: accurate it is: the 42 views of the default cost a third more per frame; the end-to-end test
#: test_ros_node_integration.py keeps the defaults and checks the poses)
BOX_NODE_PARAMS = {"num_hypotheses": 1, "rgbd_refine_iterations": 1, "diagnostics_period": 0.2,
                   "n_templates": 12}


@pytest.fixture(scope="session")
def box_scene(tmp_path_factory) -> Path:
    """Root of the :func:`synth_box_scene` shared by the node tests of one pytest process (one
    xdist worker): the scene is generated and its template bank built once, not per module."""
    root = tmp_path_factory.mktemp("box_scene")
    synth_box_scene(root)
    return root


def synth_box_scene(root: Path) -> Path:
    """One synthetic RGB-D frame with one textured box (obj 1) under ``root / 'scene'``, and a
    node parameter file ``root / 'node.yaml'`` for it (template cache under ``root``)."""
    from coop_ros.synth.scenes import generate_dataset
    if not (root / "scene" / "dataset.json").is_file():
        generate_dataset(root / "scene", objects=["textured_box"], n_scenes=1,
                         images_per_scene=1, seed=3, objects_per_image=(1, 1),
                         distractors=(0, 0), progress=False)
    return root / "scene"


def node_params_file(root: Path, **overrides) -> Path:
    """A coop_node parameter file for the box scene of :func:`synth_box_scene`."""
    import yaml
    params = {"objects": {"names": ["box"], "box": {
        "class_id": "1", "mesh": str(root / "scene" / "models" / "obj_000001.ply")}},
        "template_cache_dir": str(root / "templates"), **BOX_NODE_PARAMS}
    for k, v in overrides.items():
        params[k] = v
    if CAMERA_QOS:
        params["qos"] = {k: {"reliability": CAMERA_QOS} for k in ("image", "depth",
                                                                  "camera_info")}
    path = root / f"node_{abs(hash(tuple(sorted(map(str, overrides.items()))))) % 10**8}.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path


def box_node_overrides(root: Path, **params) -> list:
    """rclpy Parameter overrides of a CoopNode for the box scene of :func:`synth_box_scene`
    (:data:`BOX_NODE_PARAMS`), plus ``params``."""
    from rclpy.parameter import Parameter
    base = {"objects.names": ["box"], "objects.box.class_id": "1",
            "objects.box.mesh": str(root / "scene" / "models" / "obj_000001.ply"),
            "template_cache_dir": str(root / "templates"), **BOX_NODE_PARAMS}
    base.update(params)
    return [Parameter(k, value=v) for k, v in base.items()]


# ----------------------------------------------------------------------------- ambiguous views
#: intrinsics of :func:`plain_box_frame`
PLAIN_BOX_K = ((600.0, 0.0, 320.0), (0.0, 600.0, 240.0), (0.0, 0.0, 1.0))


def plain_box_frame(renderer, seed: int = 3):
    """A uniformly coloured 120 x 60 x 30 mm box (an :class:`ObjectModel`, no symmetry declared)
    rendered at 0.6 m over a random background with ``renderer``: (obj, rgb (480, 640, 3),
    box_xywh, T (4, 4)). Its 180 deg turns about its axes look identical, so an RGB estimate
    without declared symmetries has rivals."""
    import numpy as np
    import trimesh

    from coop_ros.synth.procedural import random_background
    from coop_ros.geometry.se3 import make_pose, random_rotation
    from coop_ros.objects import ObjectModel
    from coop_ros.render.renderer import Light
    m = trimesh.creation.box(extents=(0.12, 0.06, 0.03))
    m.visual.vertex_colors = np.tile([200, 60, 40, 255], (len(m.vertices), 1))
    obj = ObjectModel.from_trimesh(m, units="m")
    renderer.add_object("plain_box_scene", obj)
    rng = np.random.default_rng(seed)
    R = random_rotation(rng)
    T = make_pose(R, np.array([0.0, 0.0, 0.6]) - R @ obj.center)
    out = renderer.render_scene([("plain_box_scene", T)], np.array(PLAIN_BOX_K), 640, 480,
                                light=Light.random(rng),
                                background=random_background(480, 640, rng))
    rows, cols = np.nonzero(out.mask[0])
    box = (int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1),
           int(rows.max() - rows.min() + 1))
    return obj, out.rgb[0], box, T
