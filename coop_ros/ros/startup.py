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

__all__ = ["resolve_backend", "load_objects", "CKPT_ARCH", "LARGE_MESH_FACES"]

CKPT_ARCH = {"coarse": "coarse", "refiner": "refiner", "selection": "selection"}
#: meshes from this file size [MiB] / face count on get progress lines while loading / registering
LARGE_MESH_MB = 20.0
LARGE_MESH_FACES = 200_000


def _check_checkpoints(cfg: NodeConfig) -> dict:
    """{slot: path} of the configured checkpoints of the coop backend, each one read and its
    architecture checked; raises ConfigError naming the missing / corrupt file (or saying that
    none is configured, or that the learned backend is not available)."""
    from pathlib import Path
    paths = {k: cfg.checkpoints.get(k, "") for k in CKPT_ARCH}
    if not any(paths.values()):
        raise ConfigError("backend 'coop' needs at least one checkpoint: parameters "
                          "'checkpoints.coarse', 'checkpoints.refiner', 'checkpoints.selection' "
                          "are all empty")
    from coop_ros.nets.checkpoint import read_checkpoint
    out = {}
    for k, path in paths.items():
        if not path:
            continue
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"backend 'coop': checkpoint file not found: {p} "
                              f"(parameter 'checkpoints.{k}')")
        try:
            payload = read_checkpoint(p)
        except Exception as e:  # InputError from the reader, or anything torch raises
            raise ConfigError(f"backend 'coop': corrupt or unreadable checkpoint {p} "
                              f"(parameter 'checkpoints.{k}'): {e}") from None
        arch = payload["config"].get("arch")
        if arch != CKPT_ARCH[k]:
            raise ConfigError(f"backend 'coop': checkpoint {p} (parameter 'checkpoints.{k}') "
                              f"holds a {arch!r} network, expected {CKPT_ARCH[k]!r}")
        out[k] = str(p)
    from coop_ros.backends import available_backends
    if "coop" not in available_backends():
        raise ConfigError("backend 'coop' (the learned networks) is not available in this build "
                          f"of coop_ros (available: {available_backends()}); use backend "
                          "'weight-free' or 'auto'")
    return out


def resolve_backend(cfg: NodeConfig, log=None) -> tuple[str, dict]:
    """(backend name, {slot: checkpoint path}) the node uses: 'weight-free'; 'coop' (checkpoints
    checked; slots without one use the weight-free implementation); for 'auto' coop when a
    checkpoint is configured and loads, else weight-free -- the choice and its reason are logged.
    Raises ConfigError for backend 'coop' with a missing / corrupt checkpoint."""
    def say(level, msg):
        if log:
            getattr(log, level)(msg)
    if cfg.backend == "weight-free":
        say("info", "backend: weight-free (classical estimators, no checkpoint)")
        return "weight-free", {}
    if cfg.backend == "auto" and not any(cfg.checkpoints.values()):
        say("info", "backend auto -> using backend 'weight-free' (no checkpoint configured: "
                    "parameters checkpoints.coarse / refiner / selection are empty)")
        return "weight-free", {}
    try:
        ckpts = _check_checkpoints(cfg)
    except ConfigError as e:
        if cfg.backend == "coop":
            raise
        say("warning", f"backend auto -> using backend 'weight-free' ({e})")
        return "weight-free", {}
    slots = ", ".join(f"{k}: {ckpts.get(k, 'weight-free (no checkpoint)')}" for k in CKPT_ARCH)
    say("info", f"backend {'auto -> using backend ' if cfg.backend == 'auto' else ''}"
                f"'coop' ({slots})")
    return "coop", ckpts


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
