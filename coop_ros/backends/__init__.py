"""Backends: the slots Co-op fills with networks (coarse matcher, flow estimator, hypothesis
scorer) behind the interfaces of :mod:`coop_ros.backends.base`, and the registry of their
implementations.

``get_backend("weight-free")`` gives the classical implementations
(:mod:`coop_ros.backends.weightfree`), ``get_backend("coop")`` the learned CroCo-based ones
(:mod:`coop_ros.backends.learned`; ``"auto"``: per slot the network when its checkpoint is found,
else the weight-free implementation). Both are imported only when first asked for; other
implementations register a factory with :func:`register_backend`.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from coop_ros.backends.base import (NO_MATCH, PATCH, Backend, CoarseMatcher, CoarseMatches,
                                    FlowEstimator, FlowField, HypothesisScorer, ImageCrop)
from coop_ros.errors import InputError

__all__ = ["NO_MATCH", "PATCH", "Backend", "CoarseMatcher", "CoarseMatches", "FlowEstimator",
           "FlowField", "HypothesisScorer", "ImageCrop", "available_backends", "get_backend",
           "register_backend"]

#: the built-in backends: name -> module that registers it when imported
BUILTIN = {"weight-free": "coop_ros.backends.weightfree", "coop": "coop_ros.backends.learned",
           "auto": "coop_ros.backends.learned"}
_BACKENDS: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    """Register a factory ``factory(config) -> Backend`` under ``name``."""
    _BACKENDS[name] = factory


def _ensure_builtin() -> None:
    for name, module in BUILTIN.items():
        if name not in _BACKENDS:
            importlib.import_module(module)


def available_backends() -> list[str]:
    """Names :func:`get_backend` accepts."""
    _ensure_builtin()
    return sorted(_BACKENDS)


def get_backend(name: str, config: Any = None) -> Backend:
    """Build the backend registered as ``name`` ("weight-free", "coop", "auto", or one registered
    with :func:`register_backend`). Raises InputError listing the available names."""
    if name not in _BACKENDS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _BACKENDS:
        raise InputError(f"unknown backend {name!r}; available: {available_backends()}")
    return _BACKENDS[name](config)
