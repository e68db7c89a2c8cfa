"""Launch coop_node: ``ros2 launch coop_ros coop.launch.py [params_file:=FILE]
[objects_file:=FILE] [namespace:=NS] [image:=TOPIC] [depth:=TOPIC] [camera_info:=TOPIC]
[detections:=TOPIC] [rviz:=true] [log_level:=info]``.

params_file: the parameter file (default: the installed config/coop.yaml). objects_file: the
objects YAML (default: the installed config/demo_objects.yaml, the demo meshes in models/, so
the launch works as shipped; '' leaves the params file's objects alone). The topic arguments remap
the node's inputs (e.g. image:=/camera/color/image_raw); outputs are coop/poses, coop/estimates,
coop/pose/<object>, coop/markers, coop/overlay (under the namespace), /tf and /diagnostics.
rviz:=true also starts rviz2 with rviz/coop.rviz (overlay image, markers, TF).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _coop_node(context):
    """The node; objects_file is passed only when not '' (so a params file's objects stay)."""
    params = [LaunchConfiguration("params_file")]
    objects_file = LaunchConfiguration("objects_file").perform(context)
    if objects_file:
        params.append({"objects_file": objects_file})
    return [Node(
        package="coop_ros",
        executable="coop_node",
        name="coop_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=params,
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("image/compressed", [LaunchConfiguration("image"), "/compressed"]),
            ("depth", LaunchConfiguration("depth")),
            ("camera_info", LaunchConfiguration("camera_info")),
            ("detections", LaunchConfiguration("detections")),
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    share = get_package_share_directory("coop_ros")
    args = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config",
                                                                        "coop.yaml"),
                              description="coop_node parameter file (config/coop.yaml format)"),
        DeclareLaunchArgument("objects_file", default_value=os.path.join(
            share, "config", "demo_objects.yaml"), description="objects YAML "
            "({objects: [{name, class_id, mesh, units, symmetry}]}); '' = the params file's"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and of its relative topics"),
        DeclareLaunchArgument("image", default_value="image",
                              description="input sensor_msgs/Image topic"),
        DeclareLaunchArgument("depth", default_value="depth",
                              description="input depth Image topic (16UC1 mm or 32FC1 m)"),
        DeclareLaunchArgument("camera_info", default_value="camera_info",
                              description="input sensor_msgs/CameraInfo topic"),
        DeclareLaunchArgument("detections", default_value="detections",
                              description="input vision_msgs/Detection2DArray topic"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="also start rviz2 with rviz/coop.rviz"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
    ]
    rviz = Node(package="rviz2", executable="rviz2", name="coop_rviz",
                namespace=LaunchConfiguration("namespace"),
                arguments=["-d", os.path.join(share, "rviz", "coop.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")), output="screen")
    return LaunchDescription(args + [OpaqueFunction(function=_coop_node), rviz])
