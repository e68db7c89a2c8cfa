"""Which backend runs: the requested name (``weight-free`` | ``coop`` | ``auto``) and the
configured checkpoints give the backend and its checked checkpoints. One policy for the node's
start-up (:mod:`coop_ros.ros.startup`) and ``get_backend("auto")`` (the learned backend).

* ``weight-free``: the classical estimators; checkpoints are ignored.
* ``coop``: at least one checkpoint; each configured file must exist, be a ``coop_ros-1``
  checkpoint and hold the slot's architecture, else InputError naming the file and its
  setting. A slot without a checkpoint uses its weight-free implementation
  (:func:`coop_ros.backends.learned.make_backend`).
* ``auto``: ``coop`` when a checkpoint is configured and every configured one passes those
  checks; else ``weight-free``, with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from coop_ros.errors import InputError

__all__ = ["CKPT_ARCH", "BackendChoice", "check_checkpoints", "choose_backend"]

#: checkpoint slot -> the network architecture its file must hold
CKPT_ARCH = {"coarse": "coarse", "refiner": "refiner", "selection": "selection"}


@dataclass
class BackendChoice:
    """name: "weight-free" or "coop"; checkpoints: {slot: path} checked (coop only); why:
    "requested", "no_checkpoint" (auto without a checkpoint), "checkpoint_failed" (auto with
    one that failed the checks: ``detail`` says how) or "checkpoints" (coop)."""

    name: str
    why: str
    checkpoints: dict = field(default_factory=dict)
    detail: str = ""


def check_checkpoints(paths: dict, setting: Callable[[str], str]) -> dict:
    """{slot: path} of the configured checkpoints (``paths``: {slot: path or ''/None}), each one
    read and its architecture checked. ``setting(slot)`` names where the path was set (a
    parameter, a config field) in the messages. Raises InputError naming the missing / corrupt
    / wrong file, or saying that none is configured or that the learned backend is missing."""
    paths = {k: paths.get(k) or "" for k in CKPT_ARCH}
    if not any(paths.values()):
        raise InputError("backend 'coop' needs at least one checkpoint: "
                         f"{setting('')} are all empty")
    from coop_ros.nets.checkpoint import read_checkpoint
    out = {}
    for k, path in paths.items():
        if not path:
            continue
        p = Path(path).expanduser()
        if not p.is_file():
            raise InputError(f"backend 'coop': checkpoint file not found: {p} ({setting(k)})")
        try:
            payload = read_checkpoint(p)
        except Exception as e:  # InputError from the reader, or anything torch raises
            raise InputError(f"backend 'coop': corrupt or unreadable checkpoint {p} "
                             f"({setting(k)}): {e}") from None
        arch = payload["config"].get("arch")
        if arch != CKPT_ARCH[k]:
            raise InputError(f"backend 'coop': checkpoint {p} ({setting(k)}) holds a {arch!r} "
                             f"network, expected {CKPT_ARCH[k]!r}")
        out[k] = str(p)
    from coop_ros.backends import available_backends
    if "coop" not in available_backends():
        raise InputError("backend 'coop' (the learned networks) is not available in this build "
                         f"of coop_ros (available: {available_backends()}); use backend "
                         "'weight-free' or 'auto'")
    return out


def choose_backend(requested: str, paths: dict, setting: Callable[[str], str]) -> BackendChoice:
    """The backend for ``requested`` ("weight-free" | "coop" | "auto") and the configured
    checkpoints ``paths`` (module docstring). Raises InputError for "coop" when the checkpoints
    fail :func:`check_checkpoints`, or for an unknown name."""
    if requested == "weight-free":
        return BackendChoice("weight-free", "requested")
    if requested not in ("coop", "auto"):
        raise InputError(f"unknown backend {requested!r}: weight-free, coop or auto")
    if requested == "auto" and not any(paths.get(k) for k in CKPT_ARCH):
        return BackendChoice("weight-free", "no_checkpoint")
    try:
        ckpts = check_checkpoints(paths, setting)
    except InputError as e:
        if requested == "coop":
            raise
        return BackendChoice("weight-free", "checkpoint_failed", detail=str(e))
    return BackendChoice("coop", "checkpoints", ckpts)
