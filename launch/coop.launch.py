"""Launch coop_node: ``ros2 launch coop_ros coop.launch.py [config:=FILE] [namespace:=NS]
[image:=TOPIC] [depth:=TOPIC] [camera_info:=TOPIC] [detections:=TOPIC] [log_level:=info]``.

config: the parameter file (default: the installed config/coop.yaml). The topic arguments remap
the node's inputs (e.g. image:=/camera/color/image_raw); outputs are coop/poses, coop/estimates,
coop/pose/<object>, coop/markers, coop/overlay (under the namespace), /tf and /diagnostics.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_config = os.path.join(get_package_share_directory("coop_ros"), "config", "coop.yaml")
    config = LaunchConfiguration("config")
    args = [
        DeclareLaunchArgument("config", default_value=default_config,
                              description="coop_node parameter file (config/coop.yaml format)"),
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
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
    ]
    node = Node(
        package="coop_ros",
        executable="coop_node",
        name="coop_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[config],
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
    )
    return LaunchDescription(args + [node])
