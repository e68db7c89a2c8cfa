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
from typing import Any, Callable

import numpy as np

from coop_ros.errors import InputError

__all__ = ["ConfigError", "ObjectSpec", "NodeConfig", "Param", "TABLE", "PARAMETERS",
           "RUNTIME_PARAMETERS", "INPUTS",
           "parse_symmetry", "read_objects_file"]


class ConfigError(InputError):
    """A bad node parameter; the message names the parameter and the bad value."""


#: the node's input topics (relative names)
INPUTS = ("image", "depth", "camera_info", "detections")
#: per-object parameter suffix -> (default, description)
OBJECT_PARAMETERS: dict[str, tuple] = {
    "class_id": ("", "Detection2D class_id of this object (default: the name)"),
    "mesh": ("", "mesh file (.ply / .obj)"),
    "units": ("mm", "units of the mesh file: mm | m"),
    "symmetry": ("none", "none | continuous:<axis> | discrete:<axis>:<n> | bop:<file>:<id>"),
}
def _bad(name, why, value) -> ConfigError:
    return ConfigError(f"parameter '{name}' {why}, got {value!r}")


@dataclass(frozen=True)
class Param:
    """One node parameter of :data:`TABLE`: the one place its name, type, default, valid values,
    meaning and run-time changeability are written. The node declares it from here, validates
    it here (:meth:`validate`), and ``config/coop.yaml`` and the README's parameter table are
    generated from here (:func:`render_yaml`, :func:`render_readme_table`; a test keeps them
    current).

    kind: ``choice`` (one of ``choices``), ``int`` / ``float`` (in [lo, hi], ``lo_open``: lo
    excluded), ``bool``, ``str`` (``check``: a function returning what is wrong, or None), or
    ``names`` (a list of object names).
    """

    name: str
    default: Any
    kind: str
    doc: str
    choices: tuple = ()
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    runtime: bool = False
    check: Callable[[Any], str | None] | None = None

    def validate(self, v):
        """The value, checked (ints as int, floats as float); raises ConfigError naming the
        parameter, what it must be and the bad value."""
        if self.kind == "choice":
            if v not in self.choices:
                raise _bad(self.name, f"must be one of {list(self.choices)}", v)
            return v
        if self.kind == "int":
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or \
                    not self.lo <= v <= self.hi:
                raise _bad(self.name, f"must be an integer in [{self.lo}, {self.hi}]", v)
        elif self.kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < self.lo or v > self.hi or (self.lo_open and v <= self.lo):
                raise _bad(self.name, f"must be a number in {'(' if self.lo_open else '['}"
                           f"{self.lo}, {self.hi}]", v)
            return float(v)
        elif self.kind == "bool":
            if not isinstance(v, bool):
                raise _bad(self.name, "must be true or false", v)
        elif self.kind == "str" and not isinstance(v, str):
            raise _bad(self.name, self.check(None) if self.check else "must be a string", v)
        if self.check is not None:
            why = self.check(v)
            if why:
                raise _bad(self.name, why, v)
        return int(v) if self.kind == "int" else v

    def valid_values(self) -> str:
        """The valid values in words (README / YAML / ROS parameter descriptions)."""
        if self.kind == "choice":
            return " | ".join(map(str, self.choices))
        if self.kind in ("int", "float"):
            fmt = "{:d}" if self.kind == "int" else "{:g}"
            return f"{'(' if self.lo_open else '['}{fmt.format(self.lo)}, {fmt.format(self.hi)}]"
        return ""


def _device(v):
    ok = isinstance(v, str) and (v in ("cpu", "cuda") or (v.startswith("cuda:")
                                                            and v[5:].isdigit()))
    return None if ok else "must be 'cpu', 'cuda' or 'cuda:<i>'"


def _multiple_of_16(v):
    return None if v % 16 == 0 else "must be a multiple of 16"


def _text(what: str, no_spaces: bool = False):
    def check(v):
        if v is None or (no_spaces and any(c.isspace() for c in v)):
            return f"must be {what}"
        return None
    return check


_RT = {"runtime": True}
#: Every node parameter, in declaration order (see :class:`Param`); nested names use dots.
TABLE: tuple[Param, ...] = (
    Param("mode", "rgbd", "choice", "RGB-only or RGB-D estimation (`rgbd` needs the `depth` "
          "topic: 16UC1 mm or 32FC1 m)", choices=("rgb", "rgbd"), **_RT),
    Param("num_hypotheses", 5, "int", "coarse hypotheses refined and scored per detection",
          lo=1, hi=64, **_RT),
    Param("backend", "auto", "choice", "`weight-free`; `coop` (the learned networks: needs at "
          "least one checkpoint, a slot without one uses its weight-free implementation; a "
          "missing / corrupt / wrong-architecture file stops the node with its path and "
          "parameter name); `auto` (coop when a checkpoint is configured and loads, else "
          "weight-free; the choice and its reason are logged)",
          choices=("auto", "weight-free", "coop")),
    *(Param(f"checkpoints.{k}", "", "str", f"coop backend: {k} network checkpoint "
            "(`coop_ros-1` .pt file; '' = none)", check=_text("a file path or ''"))
      for k in ("coarse", "refiner", "selection")),
    Param("device", "cpu", "str", "`cpu`, `cuda` or `cuda:<i>` (renderer and networks)",
          check=_device),
    Param("precision", "fp32", "choice", "the coop backend's networks in fp32 or under "
          "bfloat16 autocast", choices=("fp32", "bf16")),
    Param("crop_size", 224, "int", "query / template crop side [px], a multiple of 16",
          lo=64, hi=1024, check=_multiple_of_16),
    Param("n_templates", 42, "choice", "template views", choices=(12, 42, 162, 642)),
    Param("template_cache_dir", "", "str", "template-bank cache folder (`''`: "
          "`$COOP_ROS_CACHE` or `~/.cache/coop_ros/templates`; `none`: no cache)",
          check=_text("a folder path, '' or 'none'")),
    Param("refine_iterations", 4, "int", "RGB render-and-compare iterations per hypothesis",
          lo=0, hi=50, **_RT),
    Param("rgbd_refine_iterations", 2, "int", "RGB-D refinement iterations per hypothesis",
          lo=0, hi=50, **_RT),
    Param("box_sigma", 0.016, "float", "the side error of the detection boxes the image "
          "evidence's box fit allows, as a fraction of the box's long side (Cauchy per side, so "
          "one bad side costs little; 0.016 also stayed best with box sides off by 3-8 %, see "
          "README)", lo=0.001, hi=1.0, **_RT),
    Param("tracking", False, "bool", "follow every estimated object from frame to frame "
          "(coop_ros/pipeline/track.py): a pose for every image while it is tracked, also "
          "without a detection (images wait `sync_slop` s for one); the full pipeline only for "
          "new objects and lost tracks (`coop/estimates` track_status new / tracked / lost / "
          "reinitialised, track_age); switching it off drops the tracks", **_RT),
    Param("tracking_motion", "constant_velocity", "choice", "tracking: the prediction from "
          "one frame to the next (`static_scene`: objects at rest and a moving camera, its "
          "motion from 4 or more tracked objects' detections)",
          choices=("constant_velocity", "constant_pose", "static_scene"), **_RT),
    Param("min_score", 0.0, "float", "estimates with a lower selection score are reported as "
          "failed (`low_score`)", lo=0.0, hi=1.0, **_RT),
    Param("max_detections", 20, "int", "detections estimated per frame, highest detector "
          "scores first; the rest are reported as skipped (`max_detections`); 0 = no limit",
          lo=0, hi=100000, **_RT),
    Param("time_budget", 10.0, "float", "per-frame time budget [s]: refinement stops when it "
          "is spent and the best pose so far is published (`best_so_far`); detections not "
          "started are reported as skipped (`budget_exhausted`); 0 = no limit",
          lo=0.0, hi=3600.0, **_RT),
    Param("discard_older_than_ms", 0, "int", "frames whose image stamp is older than this [ms] "
          "when the worker takes them are answered with every detection skipped "
          "(`stale_input`); 0 = off (needs synchronised clocks)", lo=0, hi=86_400_000, **_RT),
    Param("sync_slop", 0.05, "float", "approximate-time tolerance between image, detections "
          "(and depth) [s]", lo=0.0, hi=10.0, **_RT),
    Param("sync_queue_size", 10, "int", "messages kept per input while synchronising",
          lo=1, hi=1000),
    Param("frame_prefix", "coop/", "str", "TF child frames are `<frame_prefix><object>_<k>`",
          check=_text("a string without spaces", no_spaces=True), **_RT),
    Param("camera_frame", "", "str", "parent frame of the TFs (`''`: the image header's "
          "frame_id)", check=_text("a frame name or ''"), **_RT),
    Param("image_transport", "raw", "choice", "`raw` (sensor_msgs/Image on `image`) or "
          "`compressed` (sensor_msgs/CompressedImage on `image/compressed`)",
          choices=("raw", "compressed")),
    *(Param(f"qos.{k}.reliability", "best_effort", "choice", f"QoS reliability of the {k} "
            "subscription (sensor-data profile, REP-2003; `reliable` to require it)",
            choices=("best_effort", "reliable")) for k in ("image", "depth", "camera_info")),
    Param("qos.detections.reliability", "reliable", "choice", "QoS reliability of the "
          "detections subscription (`best_effort` for a best-effort detector)",
          choices=("best_effort", "reliable")),
    Param("depth_timeout", 2.0, "float", "rgbd: seconds of images without depth before the "
          "diagnostic ERROR", lo=0.0, hi=3600.0, lo_open=True, **_RT),
    Param("diagnostics_period", 1.0, "float", "period of /diagnostics [s]", lo=0.0, hi=3600.0,
          lo_open=True),
    Param("publish.tf", True, "bool", "a TF per instance on /tf", **_RT),
    Param("publish.object_poses", True, "bool", "PoseWithCovarianceStamped on "
          "coop/pose/<object>", **_RT),
    Param("publish.estimates", True, "bool", "coop_ros/ObjectPoseEstimateArray on "
          "coop/estimates", **_RT),
    Param("publish.markers", True, "bool", "visualization_msgs/MarkerArray on coop/markers",
          **_RT),
    Param("publish.overlay", True, "bool", "overlay sensor_msgs/Image on coop/overlay "
          "(rendered only while subscribed)", **_RT),
    Param("marker_type", "mesh_resource", "choice", "RViz markers: a mesh_resource (file:// "
          "URI) or a triangle_list", choices=("mesh_resource", "triangle_list"), **_RT),
    Param("objects_file", "", "str", "YAML file `{objects: [{name, class_id, mesh, units, "
          "symmetry}]}` (config/objects.example.yaml; relative mesh paths are relative to the "
          "file)", check=_text("a YAML file path or ''")),
    Param("objects.names", [], "names", "object names; per name `objects.<name>.class_id` (the "
          "detector's class_id, default: the name), `.mesh` (.ply / .obj), `.units` (mm | m; "
          "an implausible size is logged as a warning), `.symmetry` (none | continuous:<axis> "
          "| discrete:<axis>:<n> | bop:<models_info.json>:<obj_id>)"),
)
_BY_NAME = {p.name: p for p in TABLE}
#: Parameter name -> (default, description) (declaration order; derived from :data:`TABLE`)
PARAMETERS: dict[str, tuple] = {
    p.name: (p.default, (f"{p.valid_values()}: " if p.valid_values() else "") + p.doc)
    for p in TABLE}
#: parameters that may change while the node runs (the others need a restart)
RUNTIME_PARAMETERS = frozenset(p.name for p in TABLE if p.runtime)
_D = {p.name: p.default for p in TABLE}


def _group(prefix: str, suffix: str = "", values: dict | None = None) -> dict:
    """{key: value} of the parameters ``<prefix><key><suffix>`` (defaults unless ``values``)."""
    values = _D if values is None else values
    return {p.name[len(prefix):len(p.name) - len(suffix)]: values[p.name] for p in TABLE
            if p.name.startswith(prefix) and p.name.endswith(suffix)}


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

    mode: str = _D["mode"]
    num_hypotheses: int = _D["num_hypotheses"]
    backend: str = _D["backend"]
    checkpoints: dict = field(default_factory=lambda: _group("checkpoints."))
    device: str = _D["device"]
    precision: str = _D["precision"]
    crop_size: int = _D["crop_size"]
    n_templates: int = _D["n_templates"]
    template_cache_dir: str | None = None
    refine_iterations: int = _D["refine_iterations"]
    rgbd_refine_iterations: int = _D["rgbd_refine_iterations"]
    box_sigma: float = _D["box_sigma"]
    tracking: bool = _D["tracking"]
    tracking_motion: str = _D["tracking_motion"]
    min_score: float = _D["min_score"]
    max_detections: int = _D["max_detections"]
    time_budget: float = _D["time_budget"]
    discard_older_than_ms: int = _D["discard_older_than_ms"]
    sync_slop: float = _D["sync_slop"]
    sync_queue_size: int = _D["sync_queue_size"]
    frame_prefix: str = _D["frame_prefix"]
    camera_frame: str = _D["camera_frame"]
    image_transport: str = _D["image_transport"]
    qos: dict = field(default_factory=lambda: _group("qos.", ".reliability"))
    depth_timeout: float = _D["depth_timeout"]
    diagnostics_period: float = _D["diagnostics_period"]
    publish: dict = field(default_factory=lambda: _group("publish."))
    marker_type: str = _D["marker_type"]
    objects: list = field(default_factory=list)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_flat(cls, p: dict) -> "NodeConfig":
        """From a flat parameter dict (missing keys take the defaults); raises ConfigError."""
        def get(name):
            return p.get(name, PARAMETERS[name][0])

        known = set(PARAMETERS)
        for k in p:
            if k not in known and not k.startswith("objects."):
                raise ConfigError(f"unknown parameter '{k}' (known: {sorted(known)})")
        v = {prm.name: prm.validate(get(prm.name)) for prm in TABLE if prm.kind != "names"}
        cache = v["template_cache_dir"]
        if cache.lower() == "none":
            cache = None
        elif cache == "":
            cache = os.environ.get("COOP_ROS_CACHE") or str(
                Path.home() / ".cache" / "coop_ros" / "templates")
        else:
            cache = str(Path(cache).expanduser())
        plain = {f.name for f in fields(cls)} - {"checkpoints", "qos", "publish", "objects",
                                                 "template_cache_dir"}
        cfg = cls(**{k: v[k] for k in plain}, template_cache_dir=cache,
                  checkpoints=_group("checkpoints.", values=v), qos=_group("qos.", ".reliability",
                                                                            values=v),
                  publish=_group("publish.", values=v))
        objects = []
        of = v["objects_file"]
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
                    box_sigma=self.box_sigma, device=self.device, precision=self.precision)

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


# ----------------------------------------------------------------------------- generated files

YAML_HEADER = """\
# coop_node parameters (python -m coop_ros.ros.node --ros-args --params-file config/coop.yaml,
# or ros2 launch coop_ros coop.launch.py config:=...). Every value is validated at start; a bad
# one stops the node with a message naming it. (*) = may be changed while the node runs
# (ros2 param set /coop_node <name> <value>); the others need a restart.
# Generated from coop_ros/ros/params.py (TABLE): python -m coop_ros.ros.params --write
/**:
  ros__parameters:
"""
YAML_OBJECTS = """\
    # ... and/or one block per object (ROS parameters cannot hold a list of dicts):
    # objects:
    #   names: [cereal_box, soup_can]
    #   cereal_box:
    #     class_id: "1"        # the vision_msgs class_id of the detector for this object
    #     mesh: /data/models/obj_000001.ply
    #     units: mm            # mm | m (a size implausible for the units is logged as a warning)
    #     symmetry: none       # none | continuous:<axis> | discrete:<axis>:<n> | bop:<models_info.json>:<id>
    #   soup_can:
    #     class_id: "2"
    #     mesh: /data/models/obj_000002.ply
    #     units: mm
    #     symmetry: continuous:z
"""
README_BEGIN = "<!-- parameters: generated from coop_ros/ros/params.py (TABLE) -->"
README_END = "<!-- parameters: end -->"


def _yaml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def render_yaml() -> str:
    """config/coop.yaml: every parameter of :data:`TABLE` (but ``objects.names``) with its
    default and, as a comment, its valid values and meaning; (*) marks run-time parameters."""
    import textwrap
    lines = [YAML_HEADER.rstrip("\n")]
    open_groups: list[str] = []
    col = 31
    for prm in TABLE:
        if prm.kind == "names":
            continue
        *groups, key = prm.name.split(".")
        while open_groups and open_groups != groups[:len(open_groups)]:
            open_groups.pop()
        for g in groups[len(open_groups):]:
            lines.append(" " * (4 + 2 * len(open_groups)) + f"{g}:")
            open_groups.append(g)
        head = " " * (4 + 2 * len(groups)) + f"{key}: {_yaml_value(prm.default)}"
        vals = prm.valid_values()
        text = ("(*) " if prm.runtime else "") + (f"{vals}: " if vals else "") + \
            prm.doc.replace("`", "")
        first_width = 100 - max(len(head) + 1, col) - 2
        wrapped = textwrap.wrap(text, width=first_width, break_on_hyphens=False) or [""]
        rest = textwrap.wrap(" ".join(wrapped[1:]), width=100 - col - 6, break_on_hyphens=False)
        lines.append(f"{head.ljust(col - 1)} # {wrapped[0]}")
        lines += [" " * col + f"#     {w}" for w in rest]
    return "\n".join(lines) + "\n" + YAML_OBJECTS


def _md_default(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"`{v}`" if v else '`""`'
    if isinstance(v, list):
        return "—"
    return str(v)


def render_readme_table() -> str:
    """The README's parameter table (between :data:`README_BEGIN` and :data:`README_END`)."""
    rows = [README_BEGIN, "", "| parameter | default | valid values | meaning |", "|---|---|---|---|"]
    for prm in TABLE:
        vals = prm.valid_values().replace(" | ", ", ")
        rows.append(f"| `{prm.name}`{' (*)' if prm.runtime else ''} | {_md_default(prm.default)} "
                    f"| {vals} | {prm.doc} |")
    return "\n".join(rows + ["", README_END])


def _readme_with_table(readme: str) -> str:
    i, j = readme.index(README_BEGIN), readme.index(README_END) + len(README_END)
    return readme[:i] + render_readme_table() + readme[j:]


def main(argv=None) -> int:
    """``python -m coop_ros.ros.params [--write]``: check (or rewrite) config/coop.yaml and the
    README's parameter table against :data:`TABLE`; exit 1 when they differ (without --write)."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--write", action="store_true", help="rewrite the generated files")
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2]))
    args = ap.parse_args(argv)
    root = Path(args.root)
    files = {root / "config" / "coop.yaml": render_yaml()}
    readme = root / "README.md"
    files[readme] = _readme_with_table(readme.read_text())
    stale = [p for p, text in files.items() if p.read_text() != text]
    if args.write:
        for p in stale:
            p.write_text(files[p])
            print(f"wrote {p}")
        return 0
    for p in stale:
        print(f"{p} is not what coop_ros/ros/params.py (TABLE) generates: run "
              "python -m coop_ros.ros.params --write")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
