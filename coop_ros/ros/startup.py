"""What the node (and ``coop-ros bag``) does once at start-up, without ROS: load the configured
meshes (progress lines for large ones, unit warnings naming the parameter) and choose the backend
(checkpoints read and their architectures checked; ``auto`` falls back to weight-free with the
reason logged). Errors are :class:`coop_ros.ros.params.ConfigError` naming the parameter.
"""
from __future__ import annotations

import os
import time
import warnings

from coop_ros.errors import InputError
from coop_ros.ros.params import ConfigError, NodeConfig

__all__ = ["resolve_backend", "load_objects", "LARGE_MESH_FACES"]

#: meshes from this file size [MiB] / face count on get progress lines while loading / registering
LARGE_MESH_MB = 20.0
LARGE_MESH_FACES = 200_000


def _setting(slot: str) -> str:
    """Where a checkpoint path is set, for the messages of :mod:`coop_ros.backends.policy`."""
    if not slot:
        return "parameters 'checkpoints.coarse', 'checkpoints.refiner', 'checkpoints.selection'"
    return f"parameter 'checkpoints.{slot}'"


def resolve_backend(cfg: NodeConfig, log=None) -> tuple[str, dict]:
    """(backend name, {slot: checkpoint path}) the node uses, by the policy of
    :func:`coop_ros.backends.policy.choose_backend`; the choice and its reason are logged.
    Raises ConfigError for backend 'coop' with a missing / corrupt checkpoint."""
    from coop_ros.backends.policy import CKPT_ARCH, choose_backend

    def say(level, msg):
        if log:
            getattr(log, level)(msg)
    try:
        ch = choose_backend(cfg.backend, cfg.checkpoints, _setting)
    except InputError as e:
        raise ConfigError(str(e)) from None
    if ch.why == "requested":
        say("info", "backend: weight-free (classical estimators, no checkpoint)")
    elif ch.why == "no_checkpoint":
        say("info", "backend auto -> using backend 'weight-free' (no checkpoint configured: "
                    "parameters checkpoints.coarse / refiner / selection are empty)")
    elif ch.why == "checkpoint_failed":
        say("warning", f"backend auto -> using backend 'weight-free' ({ch.detail})")
    else:
        slots = ", ".join(f"{k}: {ch.checkpoints.get(k, 'weight-free (no checkpoint)')}"
                          for k in CKPT_ARCH)
        say("info", f"backend {'auto -> using backend ' if cfg.backend == 'auto' else ''}"
                    f"'coop' ({slots})")
    return ch.name, ch.checkpoints


def load_objects(cfg: NodeConfig, log=None) -> dict:
    """{name: ObjectModel} of the configured objects. A missing / unreadable mesh raises
    ConfigError naming the object and the file; an implausible size for the declared units logs
    a warning (and is kept: the user may know better)."""
    from coop_ros.objects import ObjectModel, UnitsWarning
    out = {}
    for spec in cfg.objects:
        try:
            mb = os.path.getsize(spec.mesh) / 2**20
        except OSError:
            mb = 0.0
        t0 = time.monotonic()
        if mb >= LARGE_MESH_MB and log:
            log.info(f"object '{spec.name}': loading {spec.mesh} ({mb:.0f} MB) ...")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                obj = ObjectModel.load(spec.mesh, units=spec.units, name=spec.name,
                                       models_info=spec.symmetry)
            except InputError as e:
                raise ConfigError(f"object '{spec.name}' (parameter 'objects.{spec.name}.mesh'): "
                                  f"{e}") from None
        if mb >= LARGE_MESH_MB and log:
            log.info(f"object '{spec.name}': {len(obj.vertices)} vertices, {len(obj.faces)} "
                     f"faces, diameter {obj.diameter * 1000:.0f} mm, loaded in "
                     f"{time.monotonic() - t0:.1f} s")
        for w in caught:
            if issubclass(w.category, UnitsWarning) and log:
                log.warning(f"object '{spec.name}': mesh {spec.mesh} declared in "
                            f"'{spec.units}' looks wrong: {w.message} (check parameter "
                            f"'objects.{spec.name}.units')")
            elif log:
                log.warning(f"object '{spec.name}': {w.message}")
        out[spec.name] = obj
    return out
