"""The node's ROS parameters: declared from the one table of :mod:`coop_ros.ros.params`
(``PARAMETERS``, ``OBJECT_PARAMETERS``: name -> (default, description)), read back into a flat
dict that :meth:`coop_ros.ros.params.NodeConfig.from_flat` validates, and run-time changes
validated the same way before they are taken (a rejected change names the parameter and why).

:class:`NodeParameters` is a part of :class:`coop_ros.ros.node.CoopNode` (it uses the node's
``cfg``, ``_lock``, ``_sync`` / ``_make_sync`` and ``_estimator``).
"""
from __future__ import annotations

from dataclasses import replace

from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from coop_ros.ros.params import OBJECT_PARAMETERS, PARAMETERS, ConfigError, NodeConfig

__all__ = ["NodeParameters"]


class NodeParameters:
    """Declaration, reading and run-time changes of the node's parameters (module docstring)."""

    def _declare(self) -> None:
        for name, (default, desc) in PARAMETERS.items():
            if name == "objects.names":
                self.declare_parameter(name, Parameter.Type.STRING_ARRAY, ParameterDescriptor(
                    description=desc, type=ParameterType.PARAMETER_STRING_ARRAY))
            else:
                self.declare_parameter(name, default, ParameterDescriptor(
                    description=desc, dynamic_typing=True))
        for n in self._object_names():
            for suffix, (default, desc) in OBJECT_PARAMETERS.items():
                self.declare_parameter(f"objects.{n}.{suffix}", default, ParameterDescriptor(
                    description=desc, dynamic_typing=True))

    def _object_names(self) -> list:
        try:
            v = self.get_parameter("objects.names").value
        except ParameterUninitializedException:
            return []
        return list(v or [])

    def _read_flat(self) -> dict:
        flat = {}
        for name in PARAMETERS:
            if name == "objects.names":
                flat[name] = self._object_names()
            else:
                flat[name] = self.get_parameter(name).value
        for n in flat["objects.names"]:
            for suffix in OBJECT_PARAMETERS:
                flat[f"objects.{n}.{suffix}"] = self.get_parameter(f"objects.{n}.{suffix}").value
        return flat

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        try:
            new = self.cfg.updated(changes)
        except ConfigError as e:
            self.get_logger().warning(f"parameter change rejected: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        with self._lock:
            rebuild = (new.sync_slop != self.cfg.sync_slop or new.mode != self.cfg.mode)
            self.cfg = new
            if rebuild:
                self._sync = self._make_sync()
        self.get_logger().info(f"parameters changed: {changes}")
        return SetParametersResult(successful=True)

    def _sync_estimator_config(self, cfg: NodeConfig) -> None:
        est = self._estimator
        pc = est.config
        if (pc.refine_iterations, pc.rgbd_refine_iterations, pc.min_score, pc.box_sigma) != (
                cfg.refine_iterations, cfg.rgbd_refine_iterations, cfg.min_score, cfg.box_sigma):
            est.config = replace(pc, refine_iterations=cfg.refine_iterations,
                                 rgbd_refine_iterations=cfg.rgbd_refine_iterations,
                                 min_score=cfg.min_score, box_sigma=cfg.box_sigma).validate()
