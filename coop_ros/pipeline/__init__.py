"""The Co-op pipeline: crop -> coarse (templates, patch matches, PnP / Kabsch) -> refine (render,
flow + confidence, weighted LM / 3D-3D + ICP) -> select -> :class:`PoseResult`.

Public API: :class:`PoseEstimator`, :class:`PoseConfig`, :class:`Detection`,
:class:`PoseResult`, :class:`Hypothesis`.
"""
from coop_ros.pipeline.results import Detection, Hypothesis, PoseConfig, PoseResult, Reason

__all__ = ["PoseEstimator", "PoseConfig", "Detection", "PoseResult", "Hypothesis", "Reason"]


def __getattr__(name):
    if name == "PoseEstimator":
        from coop_ros.pipeline.estimator import PoseEstimator
        return PoseEstimator
    raise AttributeError(name)
