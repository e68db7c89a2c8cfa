"""launch/coop.launch.py (launch / launch_ros are not installable here: its structure is checked
with ast), the coop_node executable and the README's node documentation."""
import ast
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _kw(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_launch_file_structure():
    tree = ast.parse((REPO / "launch" / "coop.launch.py").read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description"
               for n in tree.body)
    args = {c.args[0].value: c for c in _calls(tree, "DeclareLaunchArgument")}
    assert set(args) >= {"params_file", "objects_file", "namespace", "image", "depth",
                         "camera_info", "detections", "rviz", "log_level"}
    # the defaults are the shipped files: the launch works as shipped
    for name, parts in (("params_file", ["config", "coop.yaml"]),
                        ("objects_file", ["config", "demo_objects.yaml"])):
        default = _kw(args[name], "default_value")
        assert [a.value for a in default.args[1:]] == parts, name
        assert (REPO.joinpath(*parts)).is_file()
    nodes = {_kw(n, "package").value: n for n in _calls(tree, "Node")}
    assert set(nodes) == {"coop_ros", "rviz2"}
    node = nodes["coop_ros"]
    assert _kw(node, "executable").value == "coop_node"
    params = _kw(node, "parameters")
    assert getattr(params, "id", None) == "params"
    remaps = _kw(node, "remappings")
    froms = {t.elts[0].value for t in remaps.elts}
    assert froms >= {"image", "depth", "camera_info", "detections"}
    assert _kw(node, "namespace").args[0].value == "namespace"
    # objects_file is passed only when not empty
    src = (REPO / "launch" / "coop.launch.py").read_text()
    assert 'LaunchConfiguration("objects_file").perform(context)' in src
    assert 'params.append({"objects_file": objects_file})' in src
    rviz = nodes["rviz2"]
    assert _kw(rviz, "executable").value == "rviz2"
    assert [a.value for a in _kw(rviz, "arguments").elts[1].args[1:]] == ["rviz", "coop.rviz"]
    cond = _kw(rviz, "condition")
    assert cond.func.id == "IfCondition" and cond.args[0].args[0].value == "rviz"
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {"LaunchDescription", "DeclareLaunchArgument", "LaunchConfiguration", "Node",
            "IfCondition", "OpaqueFunction"} <= imports
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert "launch config models rviz rosdep" in cmake      # all installed to share/coop_ros


def _read_bop_ply(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(header lines, vertex records (structured array of the header's properties), faces
    (F, 3) int) of a binary little-endian PLY as coop_ros writes it (BOP: mm)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    n_vert = n_face = 0
    fields = []
    for line in header:
        w = line.split()
        if w[:2] == ["element", "vertex"]:
            n_vert = int(w[2])
        elif w[:2] == ["element", "face"]:
            n_face = int(w[2])
        elif w[0] == "property" and w[1] != "list":
            fields.append((w[2], {"float": "<f4", "uchar": "u1"}[w[1]]))
    vert = np.frombuffer(data, np.dtype(fields), count=n_vert, offset=end)
    face = np.frombuffer(data, np.dtype([("n", "u1"), ("i", "<i4", (3,))]), count=n_face,
                         offset=end + vert.nbytes)
    assert end + vert.nbytes + face.nbytes == len(data) and (face["n"] == 3).all(), path
    return header, vert, face["i"]


#: float fields of a written PLY compared with a tolerance: the rounding of another CPU / BLAS
#: may change their last bits (area-weighted vertex normals differed on another x86-64 machine),
#: a real change of the mesh moves them by orders of magnitude more
PLY_ATOL = {"x": 1e-3, "y": 1e-3, "z": 1e-3,                   # positions [mm]: 1 um
            "nx": 1e-4, "ny": 1e-4, "nz": 1e-4,                 # unit normals
            "texture_u": 1e-6, "texture_v": 1e-6}               # uv (a texel is ~6e-4)


def test_shipped_demo_objects_load_and_match_the_demo_scene(tmp_path):
    """config/demo_objects.yaml (the launch's default) validates and its meshes are the ones
    `coop-ros synth --objects textured_box,can --seed 3` writes (the demo's scene): the same
    header and faces, the float fields within :data:`PLY_ATOL`, every texel and 99 % of the
    vertex colours within one level."""
    import cv2

    from coop_ros.synth.scenes import generate_dataset
    from coop_ros.ros.params import NodeConfig
    cfg = NodeConfig.from_flat({"objects_file": str(REPO / "config" / "demo_objects.yaml")})
    assert [(o.name, o.class_id) for o in cfg.objects] == [("textured_box", "1"), ("can", "2")]
    generate_dataset(tmp_path / "s", objects=["textured_box", "can"], n_scenes=1,
                     images_per_scene=1, seed=3, objects_per_image=(2, 2), distractors=(0, 0),
                     progress=False)
    n_textures = 0
    for o in cfg.objects:
        shipped = Path(o.mesh)
        assert shipped.is_file(), shipped
        h0, v0, f0 = _read_bop_ply(shipped)
        h1, v1, f1 = _read_bop_ply(tmp_path / "s" / "models" / shipped.name)
        assert h0 == h1 and len(v0) == len(v1) > 1000
        assert np.array_equal(f0, f1)
        for name in v0.dtype.names:
            if name in PLY_ATOL:
                err = np.abs(v0[name].astype(np.float64) - v1[name]).max()
                assert err <= PLY_ATOL[name], (shipped.name, name, err)
            else:      # vertex colours (uchar, texture samples: a uv on a texel border may flip)
                off = np.abs(v0[name].astype(int) - v1[name]) > 1
                assert off.mean() <= 0.01, (shipped.name, name, off.sum())
        for t in (line.split()[-1] for line in h0 if line.startswith("comment TextureFile")):
            a = cv2.imread(str(shipped.parent / t), cv2.IMREAD_UNCHANGED).astype(int)
            b = cv2.imread(str(tmp_path / "s" / "models" / t), cv2.IMREAD_UNCHANGED).astype(int)
            assert a.shape == b.shape and np.abs(a - b).max() <= 1, t   # a level of rounding
            n_textures += 1
    assert n_textures == 2                     # the box's print and the can's label compared


def test_rviz_config_shows_the_node_outputs():
    import yaml
    cfg = yaml.safe_load((REPO / "rviz" / "coop.rviz").read_text())
    displays = {d["Class"]: d for d in cfg["Visualization Manager"]["Displays"]}
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"] == "/coop/overlay"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "/coop/markers"
    assert displays["rviz_default_plugins/TF"]["Enabled"] is True
    # the node publishes reliable: the displays subscribe with a compatible QoS
    for k in ("rviz_default_plugins/Image", "rviz_default_plugins/MarkerArray"):
        assert displays[k]["Topic"]["Reliability Policy"] in ("Reliable", "Best Effort")
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == \
        "camera_color_optical_frame"


def test_node_executable_and_readme():
    exe = REPO / "scripts" / "coop_node"
    assert exe.is_file() and os.access(exe, os.X_OK)
    assert "from coop_ros.ros.node import main" in exe.read_text()
    readme = (REPO / "README.md").read_text()
    first_cmd = next(line for line in readme.splitlines() if line.startswith("bash "))
    assert first_cmd.split("#")[0].strip() == "bash scripts/demo.sh"
    assert "## ROS 2 node" in readme and "ros2 launch coop_ros coop.launch.py" in readme
    from coop_ros.ros.params import PARAMETERS
    for name in PARAMETERS:
        assert f"`{name}`" in readme, f"parameter {name} is not documented in the README"


def test_package_xml_declares_ros_dependencies():
    xml = (REPO / "package.xml").read_text()
    for dep in ("rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "geometry_msgs",
                "sensor_msgs", "vision_msgs", "visualization_msgs", "diagnostic_msgs",
                "tf2_msgs", "launch", "launch_ros", "ament_index_python"):
        assert f"depend>{dep}</" in xml, dep


#: rosdep keys of rosdistro's rosdep/python.yaml used here (checked against ros/rosdistro)
UPSTREAM_KEYS = {"python3-numpy", "python3-scipy", "python3-opencv", "python3-yaml",
                 "python3-tqdm", "python3-pil", "python3-trimesh-pip"}
#: requirement (PyPI name, lower case) -> rosdep key
KEY_OF = {"numpy": "python3-numpy", "scipy": "python3-scipy",
          "opencv-python-headless": "python3-opencv", "pyyaml": "python3-yaml",
          "tqdm": "python3-tqdm", "pillow": "python3-pil", "trimesh": "python3-trimesh-pip",
          "torch": "python3-torch-pip", "moderngl": "python3-moderngl-pip",
          "glcontext": "python3-glcontext-pip", "roma": "python3-roma-pip",
          "rosbags": "python3-rosbags-pip",
          "fast-simplification": "python3-fast-simplification-pip"}


def _pins():
    pins = {}
    for f in ("core.txt", "dev.txt"):
        for line in (REPO / "requirements" / f).read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                name, ver = line.split("==")
                pins[name.lower()] = ver
    return pins


def test_package_xml_lists_every_runtime_python_dependency_with_its_pin():
    import xml.etree.ElementTree as ET

    import yaml
    root = ET.parse(REPO / "package.xml").getroot()
    deps = {e.text: e.attrib for e in root.iter("exec_depend")}
    own = yaml.safe_load((REPO / "rosdep" / "coop_ros.yaml").read_text())
    pins = _pins()
    core = [line.split("==")[0].lower() for line in
            (REPO / "requirements" / "core.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")]
    for req in core + ["rosbags"]:
        key = KEY_OF[req]                       # every runtime requirement has a key ...
        assert key in deps, f"{req}: package.xml lacks {key}"
        assert key in UPSTREAM_KEYS or key in own, f"{key} is defined nowhere"
        if key.endswith("-pip"):                # ... and a pip key carries the pin
            assert deps[key].get("version_eq") == pins[req], (key, deps[key], pins[req])
        if key in own:
            assert own[key]["ubuntu"]["pip"]["packages"] == [req]
    assert "python3-pytorch-pip" not in deps     # rosdistro's EOL key (torch + torchvision)
    for key in ("libegl1", "libgl1-mesa-dri"):
        assert key in deps and own[key]["ubuntu"] == [key]
