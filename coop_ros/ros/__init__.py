"""ROS 2 interface of coop_ros: the only package that imports rclpy.

node.py (coop_node), conversions.py (messages <-> numpy), sync.py (approximate-time sync and the
one-slot frame buffer, no ROS), params.py (validated node parameters, no ROS), markers.py (RViz
markers, overlay), replay.py (publishes a BOP scene to the node and scores its answers).
Importing this package does not import rclpy; its modules node.py / replay.py do.
"""
