"""Backends: the slots Co-op fills with networks (coarse matcher, flow estimator, hypothesis
scorer) behind the interfaces of :mod:`coop_ros.backends.base`.

``get_backend("weight-free")`` gives the classical implementations
(:mod:`coop_ros.backends.weightfree`); the learned CroCo-based backend registers itself under
``"coop"`` with :func:`register_backend`.
"""
from coop_ros.backends.base import (NO_MATCH, PATCH, Backend, CoarseMatcher, CoarseMatches,
                                    FlowEstimator, FlowField, HypothesisScorer, ImageCrop,
                                    available_backends, get_backend, register_backend)

__all__ = ["NO_MATCH", "PATCH", "Backend", "CoarseMatcher", "CoarseMatches", "FlowEstimator",
           "FlowField", "HypothesisScorer", "ImageCrop", "available_backends", "get_backend",
           "register_backend"]
