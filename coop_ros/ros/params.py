"""Parameters of ``coop_node``: a typed record, validated once, with errors that name the bad value.

No ROS import (unit-testable): the node reads its ROS parameters into a flat dict
``{"num_hypotheses": 5, "publish.tf": True, "objects.names": [...], "objects.can.mesh": ...}``
and calls :meth:`NodeConfig.from_flat`.

Objects (ROS parameters cannot hold a list of dicts) are given either as

    objects.names: [can, box]
    objects.can.class_id: "2"          # the Detection2D class_id that means this object
    objects.can.mesh: /data/obj_000002.ply
    objects.can.units: mm              # mm | m
    objects.can.symmetry: "continuous:z"

or as ``objects_file: /path/objects.yaml`` holding ``{objects: [{name, class_id, mesh, units,
symmetry}, ...]}`` (relative mesh paths there are relative to that file). Both may be combined;
names must be unique.

Symmetry strings: ``none`` (or empty); ``continuous:<axis>`` (axis ``x``, ``y``, ``z`` or
``a,b,c``, through the mesh origin); ``discrete:<axis>:<n>`` (n-fold about the axis);
``bop:<models_info.json>:<obj_id>`` (a BOP models_info entry).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from coop_ros.errors import InputError

__all__ = ["ConfigError", "ObjectSpec", "NodeConfig", "PARAMETERS", "RUNTIME_PARAMETERS", "INPUTS",
           "parse_symmetry", "read_objects_file"]


class ConfigError(InputError):
    """A bad node parameter; the message names the parameter and the bad value."""


#: Parameter name -> (default, description). Order = declaration order; nested names use dots.
PARAMETERS: dict[str, tuple] = {
    "mode": ("rgbd", "rgb | rgbd: RGB-only or RGB-D estimation (rgbd needs the depth topic)"),
    "num_hypotheses": (5, "coarse hypotheses refined and scored per detection [1, 64]"),
    "backend": ("auto", "auto | weight-free | coop (coop needs the checkpoints)"),
    "checkpoints.coarse": ("", "coop backend: coarse network checkpoint (.pt)"),
    "checkpoints.refiner": ("", "coop backend: refiner network checkpoint (.pt)"),
    "checkpoints.selection": ("", "coop backend: selection network checkpoint (.pt)"),
    "device": ("cpu", "cpu | cuda | cuda:<i> (renderer and networks)"),
    "precision": ("fp32", "fp32 | bf16: the coop backend's networks under bfloat16 autocast"),
    "crop_size": (224, "side of the query / template crop [px], multiple of 16, >= 64"),
    "n_templates": (42, "template views: 12, 42, 162 or 642"),
    "template_cache_dir": ("", "template-bank cache folder ('' = $COOP_ROS_CACHE or "
                               "~/.cache/coop_ros/templates, 'none' = no cache)"),
    "refine_iterations": (4, "RGB render-and-compare iterations per hypothesis [0, 50]"),
    "rgbd_refine_iterations": (2, "RGB-D refinement iterations per hypothesis [0, 50]"),
    "min_score": (0.0, "results with a lower selection score are reported as failed [0, 1]"),
    "max_detections": (20, "detections estimated per frame, highest detector scores first; the "
                           "rest are reported as skipped (0 = no limit)"),
    "time_budget": (10.0, "per-frame time budget [s]: refinement stops when it is spent and the "
                          "best pose so far is published (marked best_so_far), detections not "
                          "started are reported as skipped (0 = no limit)"),
    "discard_older_than_ms": (0, "frames whose image stamp is older than this [ms] when the "
                                 "worker takes them are answered with every detection skipped "
                                 "(stale_input) (0 = off)"),
    "sync_slop": (0.05, "approximate-time synchronisation tolerance [s]"),
    "sync_queue_size": (10, "messages kept per input stream while synchronising"),
    "frame_prefix": ("coop/", "TF child frames are <frame_prefix><object>_<k>"),
    "camera_frame": ("", "parent frame of the TFs ('' = the image header's frame_id)"),
    "image_transport": ("raw", "raw (sensor_msgs/Image on 'image') | compressed "
                               "(sensor_msgs/CompressedImage on 'image/compressed')"),
    "qos.image.reliability": ("best_effort", "QoS reliability of the image subscription: "
                                             "best_effort (sensor data, REP-2003) | reliable"),
    "qos.depth.reliability": ("best_effort", "QoS reliability of the depth subscription"),
    "qos.camera_info.reliability": ("best_effort", "QoS reliability of the camera_info "
                                                   "subscription"),
    "qos.detections.reliability": ("reliable", "QoS reliability of the detections "
                                               "subscription"),
    "depth_timeout": (2.0, "rgbd: seconds of images without depth before a diagnostic error"),
    "diagnostics_period": (1.0, "period of /diagnostics [s]"),
    "publish.tf": (True, "TF per instance on /tf"),
    "publish.object_poses": (True, "PoseWithCovarianceStamped on coop/pose/<object>"),
    "publish.estimates": (True, "coop_ros/ObjectPoseEstimateArray on coop/estimates"),
    "publish.markers": (True, "visualization_msgs/MarkerArray on coop/markers"),
    "publish.overlay": (True, "overlay sensor_msgs/Image on coop/overlay (renders: costs time)"),
    "marker_type": ("mesh_resource", "mesh_resource (file:// URI) | triangle_list"),
    "objects_file": ("", "YAML file with {objects: [{name, class_id, mesh, units, symmetry}]}"),
    "objects.names": ([], "object names; each has objects.<name>.class_id / mesh / units / "
                          "symmetry"),
}
#: the node's input topics (relative names)
INPUTS = ("image", "depth", "camera_info", "detections")
#: per-object parameter suffix -> (default, description)
OBJECT_PARAMETERS: dict[str, tuple] = {
    "class_id": ("", "Detection2D class_id of this object (default: the name)"),
    "mesh": ("", "mesh file (.ply / .obj)"),
    "units": ("mm", "units of the mesh file: mm | m"),
    "symmetry": ("none", "none | continuous:<axis> | discrete:<axis>:<n> | bop:<file>:<id>"),
}
#: parameters that may change while the node runs (the others need a restart)
RUNTIME_PARAMETERS = frozenset({
    "mode", "num_hypotheses", "refine_iterations", "rgbd_refine_iterations", "min_score",
    "max_detections", "time_budget", "discard_older_than_ms", "sync_slop", "frame_prefix", "camera_frame", "depth_timeout", "marker_type",
    "publish.tf", "publish.object_poses", "publish.estimates", "publish.markers",
    "publish.overlay"})


def _bad(name, why, value) -> ConfigError:
    return ConfigError(f"parameter '{name}' {why}, got {value!r}")


_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


def _axis(text: str, where: str) -> np.ndarray:
    text = text.strip().lower()
    if text in _AXES:
        return np.asarray(_AXES[text])
    try:
        a = np.asarray([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise _bad(where, "axis must be x, y, z or 'a,b,c'", text) from None
    if a.shape != (3,) or not np.all(np.isfinite(a)) or np.linalg.norm(a) < 1e-9:
        raise _bad(where, "axis must be 3 finite numbers, not all zero", text)
    return a / np.linalg.norm(a)


def parse_symmetry(text: str, where: str = "symmetry") -> dict | None:
    """A symmetry string (module docstring) -> BOP models_info entry dict (mm) or None."""
    s = (text or "").strip()
    if s.lower() in ("", "none"):
        return None
    kind, _, rest = s.partition(":")
    kind = kind.lower()
    if kind == "continuous":
        return {"symmetries_continuous": [{"axis": _axis(rest, where).tolist(),
                                           "offset": [0.0, 0.0, 0.0]}]}
    if kind == "discrete":
        ax, _, n = rest.rpartition(":")
        try:
            n = int(n)
        except ValueError:
            raise _bad(where, "must be discrete:<axis>:<n> with an integer n >= 2", s) from None
        if n < 2 or n > 360:
            raise _bad(where, "must be discrete:<axis>:<n> with 2 <= n <= 360", s)
        a = _axis(ax, where)
        from scipy.spatial.transform import Rotation
        out = []
        for k in range(1, n):
            T = np.eye(4)
            T[:3, :3] = Rotation.from_rotvec(a * 2 * math.pi * k / n).as_matrix()
            out.append(T.reshape(-1).tolist())
        return {"symmetries_discrete": out}
    if kind == "bop":
        path, _, oid = rest.rpartition(":")
        try:
            oid = int(oid)
        except ValueError:
            raise _bad(where, "must be bop:<models_info.json>:<obj_id>", s) from None
        p = Path(path).expanduser()
        try:
            info = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise _bad(where, f"models_info file cannot be read ({e})", s) from None
        entry = info.get(str(oid)) if isinstance(info, dict) else None
        if not isinstance(entry, dict):
            raise _bad(where, f"models_info {p} has no entry for object {oid}", s)
        return {k: entry[k] for k in ("symmetries_discrete", "symmetries_continuous")
                if k in entry}
    raise _bad(where, "must be none, continuous:<axis>, discrete:<axis>:<n> or "
               "bop:<file>:<id>", s)


@dataclass
class ObjectSpec:
    """One object the node estimates: name (TF / topic name), class_id (Detection2D class_id),
    mesh path, units ("mm" | "m"), symmetry (BOP models_info entry dict or None)."""

    name: str
    class_id: str
    mesh: str
    units: str = "mm"
    symmetry: dict | None = None
    symmetry_text: str = "none"


def _check_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not name or not all(c.isalnum() or c == "_" for c in name):
        raise _bad(where, "must be a non-empty name of letters, digits and '_' (it becomes a "
                   "topic and TF frame name)", name)
    return name


def _object_spec(name, class_id, mesh, units, symmetry, where: str, base: Path | None
                 ) -> ObjectSpec:
    _check_name(name, f"{where}.name" if base else "objects.names")
    class_id = str(class_id) if class_id not in (None, "") else name
    if not isinstance(mesh, str) or not mesh:
        raise _bad(f"{where}.mesh", "must be a mesh file path (.ply / .obj)", mesh)
    p = Path(mesh).expanduser()
    if base is not None and not p.is_absolute():
        p = base / p
    if units not in ("mm", "m"):
        raise _bad(f"{where}.units", "must be 'mm' or 'm'", units)
    sym = parse_symmetry(str(symmetry or ""), f"{where}.symmetry")
    return ObjectSpec(name=name, class_id=class_id, mesh=str(p), units=units, symmetry=sym,
                      symmetry_text=str(symmetry or "none"))


def read_objects_file(path) -> list[ObjectSpec]:
    """Objects of an objects YAML file ``{objects: [{name, class_id, mesh, units, symmetry}]}``."""
    import yaml
    p = Path(path).expanduser()
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise _bad("objects_file", f"cannot be read ({e})", str(path)) from None
    items = data.get("objects") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise _bad("objects_file", "must hold 'objects: [{name, class_id, mesh, units, "
                   "symmetry}, ...]'", str(path))
    out = []
    for i, it in enumerate(items):
        where = f"objects_file[{i}]"
        if not isinstance(it, dict):
            raise _bad(where, "must be a mapping", it)
        unknown = set(it) - {"name", "class_id", "mesh", "units", "symmetry"}
        if unknown:
            raise _bad(where, f"has unknown keys {sorted(unknown)}", it)
        out.append(_object_spec(it.get("name"), it.get("class_id"), it.get("mesh"),
                                it.get("units", "mm"), it.get("symmetry", "none"), where,
                                p.parent))
    return out


@dataclass
class NodeConfig:
    """Validated node parameters (names as in :data:`PARAMETERS`, dots -> attributes)."""

    mode: str = "rgbd"
    num_hypotheses: int = 5
    backend: str = "auto"
    checkpoints: dict = field(default_factory=lambda: {"coarse": "", "refiner": "",
                                                       "selection": ""})
    device: str = "cpu"
    precision: str = "fp32"
    crop_size: int = 224
    n_templates: int = 42
    template_cache_dir: str | None = None
    refine_iterations: int = 4
    rgbd_refine_iterations: int = 2
    min_score: float = 0.0
    max_detections: int = 20
    time_budget: float = 10.0
    discard_older_than_ms: int = 0
    sync_slop: float = 0.05
    sync_queue_size: int = 10
    frame_prefix: str = "coop/"
    camera_frame: str = ""
    image_transport: str = "raw"
    qos: dict = field(default_factory=lambda: {"image": "best_effort", "depth": "best_effort",
                                               "camera_info": "best_effort",
                                               "detections": "reliable"})
    depth_timeout: float = 2.0
    diagnostics_period: float = 1.0
    publish: dict = field(default_factory=lambda: {"tf": True, "object_poses": True,
                                                   "estimates": True, "markers": True,
                                                   "overlay": True})
    marker_type: str = "mesh_resource"
    objects: list = field(default_factory=list)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_flat(cls, p: dict) -> "NodeConfig":
        """From a flat parameter dict (missing keys take the defaults); raises ConfigError."""
        def get(name):
            return p.get(name, PARAMETERS[name][0])

        def integer(name, lo, hi):
            v = get(name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise _bad(name, f"must be an integer in [{lo}, {hi}]", v)
            return int(v)

        def number(name, lo, hi, lo_open=False):
            v = get(name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < lo or v > hi or (lo_open and v <= lo):
                raise _bad(name, f"must be a number in {'(' if lo_open else '['}{lo}, {hi}]", v)
            return float(v)

        def choice(name, options):
            v = get(name)
            if v not in options:
                raise _bad(name, f"must be one of {list(options)}", v)
            return v

        def boolean(name):
            v = get(name)
            if not isinstance(v, bool):
                raise _bad(name, "must be true or false", v)
            return v

        known = set(PARAMETERS)
        for k in p:
            if k not in known and not k.startswith("objects."):
                raise ConfigError(f"unknown parameter '{k}' (known: {sorted(known)})")
        device = get("device")
        if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or (
                device.startswith("cuda:") and device[5:].isdigit())):
            raise _bad("device", "must be 'cpu', 'cuda' or 'cuda:<i>'", device)
        crop = integer("crop_size", 64, 1024)
        if crop % 16:
            raise _bad("crop_size", "must be a multiple of 16", crop)
        n_t = get("n_templates")
        if n_t not in (12, 42, 162, 642):
            raise _bad("n_templates", "must be one of 12, 42, 162, 642", n_t)
        cache = get("template_cache_dir")
        if not isinstance(cache, str):
            raise _bad("template_cache_dir", "must be a folder path, '' or 'none'", cache)
        if cache.lower() == "none":
            cache = None
        elif cache == "":
            cache = os.environ.get("COOP_ROS_CACHE") or str(
                Path.home() / ".cache" / "coop_ros" / "templates")
        else:
            cache = str(Path(cache).expanduser())
        ckpts = {}
        for k in ("coarse", "refiner", "selection"):
            v = get(f"checkpoints.{k}")
            if not isinstance(v, str):
                raise _bad(f"checkpoints.{k}", "must be a file path or ''", v)
            ckpts[k] = v
        prefix = get("frame_prefix")
        if not isinstance(prefix, str) or any(c.isspace() for c in prefix):
            raise _bad("frame_prefix", "must be a string without spaces", prefix)
        cam = get("camera_frame")
        if not isinstance(cam, str):
            raise _bad("camera_frame", "must be a frame name or ''", cam)
        cfg = cls(
            mode=choice("mode", ("rgb", "rgbd")),
            num_hypotheses=integer("num_hypotheses", 1, 64),
            backend=choice("backend", ("auto", "weight-free", "coop")),
            checkpoints=ckpts, device=device, precision=choice("precision", ("fp32", "bf16")),
            crop_size=crop, n_templates=n_t,
            template_cache_dir=cache,
            refine_iterations=integer("refine_iterations", 0, 50),
            rgbd_refine_iterations=integer("rgbd_refine_iterations", 0, 50),
            min_score=number("min_score", 0.0, 1.0),
            max_detections=integer("max_detections", 0, 100000),
            time_budget=number("time_budget", 0.0, 3600.0),
            discard_older_than_ms=integer("discard_older_than_ms", 0, 86_400_000),
            sync_slop=number("sync_slop", 0.0, 10.0),
            sync_queue_size=integer("sync_queue_size", 1, 1000),
            frame_prefix=prefix, camera_frame=cam,
            image_transport=choice("image_transport", ("raw", "compressed")),
            qos={k: choice(f"qos.{k}.reliability", ("best_effort", "reliable"))
                 for k in INPUTS},
            depth_timeout=number("depth_timeout", 0.0, 3600.0, lo_open=True),
            diagnostics_period=number("diagnostics_period", 0.0, 3600.0, lo_open=True),
            publish={k: boolean(f"publish.{k}") for k in
                     ("tf", "object_poses", "estimates", "markers", "overlay")},
            marker_type=choice("marker_type", ("mesh_resource", "triangle_list")),
        )
        objects = []
        of = get("objects_file")
        if not isinstance(of, str):
            raise _bad("objects_file", "must be a YAML file path or ''", of)
        if of:
            objects += read_objects_file(of)
        names = get("objects.names")
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise _bad("objects.names", "must be a list of object names", names)
        for n in names:
            where = f"objects.{n}"
            _check_name(n, "objects.names")
            objects.append(_object_spec(
                n, p.get(f"{where}.class_id", ""), p.get(f"{where}.mesh", ""),
                p.get(f"{where}.units", "mm"), p.get(f"{where}.symmetry", "none"), where, None))
        if not objects:
            raise ConfigError("no objects configured: set 'objects.names' (+ objects.<name>.mesh "
                              "...) or 'objects_file'")
        seen, seen_cls = set(), {}
        for o in objects:
            if o.name in seen:
                raise _bad("objects.names", "has a duplicate object name", o.name)
            if o.class_id in seen_cls:
                raise _bad(f"objects.{o.name}.class_id", f"is already used by object "
                           f"'{seen_cls[o.class_id]}'", o.class_id)
            seen.add(o.name)
            seen_cls[o.class_id] = o.name
        cfg.objects = objects
        return cfg

    def pose_config_kwargs(self, backend: str) -> dict:
        """Keyword arguments of :class:`coop_ros.pipeline.results.PoseConfig`."""
        return dict(backend=backend, crop_size=self.crop_size, n_templates=self.n_templates,
                    template_cache_dir=self.template_cache_dir,
                    refine_iterations=self.refine_iterations,
                    rgbd_refine_iterations=self.rgbd_refine_iterations,
                    min_score=self.min_score, num_hypotheses=self.num_hypotheses,
                    device=self.device, precision=self.precision)

    def updated(self, changes: dict) -> "NodeConfig":
        """A copy with run-time parameter ``changes`` (flat names) applied and validated; raises
        ConfigError for a parameter that needs a restart or a bad value."""
        for k in changes:
            if k not in RUNTIME_PARAMETERS:
                raise ConfigError(f"parameter '{k}' cannot change while the node runs "
                                  f"(restart the node); run-time parameters: "
                                  f"{sorted(RUNTIME_PARAMETERS)}")
        flat = self.to_flat()
        flat.update(changes)
        # re-validate only the plain parameters, keep the (already validated) objects
        plain = {k: v for k, v in flat.items() if k in PARAMETERS
                 and k not in ("objects.names", "objects_file")}
        probe = _validate_plain(plain)
        new = replace(probe, objects=self.objects, template_cache_dir=self.template_cache_dir)
        return new

    def to_flat(self) -> dict:
        """Flat parameter dict (inverse of :meth:`from_flat` for the plain parameters)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("checkpoints", "publish"):
                out.update({f"{f.name}.{k}": x for k, x in v.items()})
            elif f.name == "qos":
                out.update({f"qos.{k}.reliability": x for k, x in v.items()})
            elif f.name == "objects":
                continue
            elif f.name == "template_cache_dir":
                out[f.name] = "none" if v is None else v
            else:
                out[f.name] = v
        return out


def _validate_plain(plain: dict) -> NodeConfig:
    """Validate the plain parameters alone (objects given as a placeholder)."""
    tmp = dict(plain)
    tmp["objects.names"] = ["_"]
    tmp["objects._.mesh"] = "_"
    return NodeConfig.from_flat(tmp)
