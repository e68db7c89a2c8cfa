"""Geometry core: SE(3), camera + crop, viewpoints, PnP and rigid solvers. No ROS, metres."""
