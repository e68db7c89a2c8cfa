"""launch/coop.launch.py (launch / launch_ros are not installable here: its structure is checked
with ast), the coop_node executable and the README's node documentation."""
import ast
import os
from pathlib import Path

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
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    assert declared >= {"config", "namespace", "image", "depth", "camera_info", "detections"}
    nodes = _calls(tree, "Node")
    assert len(nodes) == 1
    node = nodes[0]
    assert _kw(node, "package").value == "coop_ros"
    assert _kw(node, "executable").value == "coop_node"
    params = _kw(node, "parameters")
    assert isinstance(params, ast.List) and len(params.elts) == 1
    assert getattr(params.elts[0], "id", None) == "config"
    assert _calls(tree, "LaunchConfiguration")[0].args[0].value == "config"
    remaps = _kw(node, "remappings")
    froms = {t.elts[0].value for t in remaps.elts}
    assert froms >= {"image", "depth", "camera_info", "detections"}
    ns = _kw(node, "namespace")
    assert ns.args[0].value == "namespace"
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {"LaunchDescription", "DeclareLaunchArgument", "LaunchConfiguration", "Node"} <= imports


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
