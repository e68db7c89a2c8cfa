"""``coop-ros bag``: the node's pipeline over a recorded rosbag2, outputs to a new bag and a CSV.

    coop-ros bag recording/ --out estimates_bag/ --params-file config/coop.yaml \\
        -p objects_file:=objects.yaml -r image:=/camera/color/image_raw \\
        -r depth:=/camera/aligned_depth_to_color/image_raw \\
        -r camera_info:=/camera/color/camera_info -r detections:=/detector/detections

Same parameters and topic names as ``coop_node`` (a parameter file, ``-p name:=value``,
``-r name:=topic`` remaps of the relative input names, ``--namespace``). Reads sqlite3 and mcap
bags (the ``rosbags`` library, no ROS install needed to read or write; the messages are
(de)serialised with rclpy's own serialisation, so they are byte-for-byte what the node publishes).
Inputs are matched exactly as in the node (approximate time, ``sync_slop``); every matched frame
is processed (offline nothing is dropped for being late); camera_info is the one with the image's
stamp, else the one nearest to it. Writes, under the node's output names, ``coop/poses``,
``coop/estimates``, ``/tf``, ``coop/pose/<object>`` and ``coop/markers`` (as the ``publish.*``
parameters say) with the input image's record time, and one CSV row per detection.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import os
import sys
import time
from pathlib import Path

from coop_ros.errors import InputError

__all__ = ["configure_parser", "run", "read_params", "resolve", "msgdef_typestore"]

INPUT_NAMES = ("image", "depth", "camera_info", "detections")
CSV_FIELDS = ["stamp", "frame_id", "instance_id", "class_id", "object", "status", "reason",
              "score", "best_so_far", "ambiguous", "x", "y", "z", "qx", "qy", "qz", "qw", "total_s"]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="input rosbag2 (folder with metadata.yaml, or a .db3 / .mcap file)")
    p.add_argument("--out", required=True, help="output bag folder (must not exist)")
    p.add_argument("--csv", default=None, help="CSV of the estimates (default: <out>.csv)")
    p.add_argument("--params-file", default=None,
                   help="coop_node parameter file (config/coop.yaml format)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="a node parameter, as --ros-args -p (repeatable)")
    p.add_argument("-r", "--remap", action="append", default=[], metavar="NAME:=TOPIC",
                   help="input topic remap, as --ros-args -r (image, depth, camera_info, "
                        "detections; repeatable)")
    p.add_argument("--namespace", default="/", help="node namespace (relative names resolve "
                                                    "under it, as for the node)")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default=None,
                   help="storage of the output bag (default: the input's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------- parameters

def _flatten(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def read_params(params_file: str | None, overrides: list[str], node_name: str = "coop_node"
                ) -> dict:
    """Flat node parameters from a ROS parameter file (``/**`` or ``<node_name>`` sections,
    ``ros__parameters``) and ``name:=value`` overrides (values parsed as YAML, as ROS does).
    Raises InputError naming a bad file or override."""
    import yaml
    flat: dict = {}
    if params_file:
        try:
            data = yaml.safe_load(Path(params_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"--params-file {params_file}: {e}") from None
        if not isinstance(data, dict):
            raise InputError(f"--params-file {params_file}: not a ROS parameter file")
        for section in ("/**", node_name, f"/{node_name}"):
            sec = data.get(section)
            if isinstance(sec, dict) and isinstance(sec.get("ros__parameters"), dict):
                flat.update(_flatten(sec["ros__parameters"]))
    for item in overrides:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise InputError(f"-p {item!r}: expected NAME:=VALUE")
        flat[name] = yaml.safe_load(value) if value != "" else ""
    return flat


def resolve(name: str, namespace: str, remaps: dict) -> str:
    """Fully qualified topic of a relative node topic name after remapping (as rcl does for the
    node: a remap names the relative name on its left)."""
    target = remaps.get(name, name)
    if target.startswith("/"):
        return target
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{target}"


# ----------------------------------------------------------------------------- message types

def _msg_dirs(pkg: str) -> list[Path]:
    roots = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    roots.append(sys.prefix)
    return [Path(r) / "share" / pkg / "msg" for r in roots if (Path(r) / "share" / pkg /
                                                                "msg").is_dir()]


def msgdef_typestore(packages=("vision_msgs", "coop_ros")):
    """A rosbags typestore of this ROS distribution (ROS_DISTRO, else the latest) with the
    message packages rosbags does not ship registered from their installed .msg files (for the
    message definitions and type hashes the bag records)."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg
    distro = os.environ.get("ROS_DISTRO", "").upper()
    store = getattr(Stores, f"ROS2_{distro}", Stores.LATEST) if distro else Stores.LATEST
    ts = get_typestore(store)
    types = {}
    for pkg in packages:
        dirs = _msg_dirs(pkg)
        if not dirs:
            raise InputError(f"message definitions of {pkg} not found (share/{pkg}/msg under "
                             "AMENT_PREFIX_PATH or this Python's prefix): source the workspace")
        for f in sorted(dirs[0].glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(), f"{pkg}/msg/{f.stem}"))
    ts.register(types)
    return ts


def _msg_class(msgtype: str):
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


# ----------------------------------------------------------------------------- run

def _open_reader(path: Path):
    from rosbags.rosbag2 import Reader
    if not path.exists():
        raise InputError(f"bag not found: {path}")
    if path.is_file():          # a storage file: its folder is the bag
        path = path.parent
    try:
        reader = Reader(path)
        reader.open()
    except Exception as e:  # noqa: BLE001 -- rosbags raises its own error types
        raise InputError(f"cannot read bag {path}: {type(e).__name__}: {e}") from None
    return reader


def run(args: argparse.Namespace) -> int:
    # ---- arguments first: nothing heavy is imported before they are checked
    src = Path(args.bag)
    out = Path(args.out)
    if out.exists():
        raise InputError(f"--out {out} exists; the output bag must be a new folder")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise InputError(f"--out {out}: folder {out.parent} does not exist or is not writable")
    csv_path = Path(args.csv) if args.csv else out.with_suffix(".csv")
    if not csv_path.parent.is_dir() or not os.access(csv_path.parent, os.W_OK):
        raise InputError(f"--csv {csv_path}: folder {csv_path.parent} is not writable")
    remaps = {}
    for item in args.remap:
        k, sep, v = item.partition(":=")
        if not sep or k not in INPUT_NAMES + ("image/compressed",):
            raise InputError(f"-r {item!r}: expected NAME:=TOPIC with NAME one of "
                             f"{list(INPUT_NAMES)}")
        remaps[k] = v
    from coop_ros.ros.params import NodeConfig
    cfg = NodeConfig.from_flat(read_params(args.params_file, args.param))
    reader = _open_reader(src)
    image_rel = "image/compressed" if cfg.image_transport == "compressed" else "image"
    topics = {"image": resolve(image_rel, args.namespace, remaps),
              "detections": resolve("detections", args.namespace, remaps),
              "camera_info": resolve("camera_info", args.namespace, remaps)}
    if cfg.mode == "rgbd":
        topics["depth"] = resolve("depth", args.namespace, remaps)
    conns = {c.topic: c for c in reader.connections}
    missing = [f"{k} ({t})" for k, t in topics.items() if t not in conns]
    if missing:
        reader.close()
        raise InputError(f"bag {src} has no topic for {', '.join(missing)}; its topics: "
                         f"{sorted(conns)} (remap with -r NAME:=TOPIC)")

    # ---- the pipeline (heavy imports from here)
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    from coop_ros.pipeline.estimator import PoseEstimator
    from coop_ros.pipeline.results import PoseConfig
    from coop_ros.ros import conversions as conv
    from coop_ros.ros.frame import FrameProcessor
    from coop_ros.ros.markers import mesh_markers
    from coop_ros.ros.startup import load_objects, resolve_backend
    from coop_ros.ros.sync import ApproximateSync, CameraInfoCache

    class _Log:   # start-up messages of the shared helpers -> stderr
        def info(self, m, **kw):
            print(f"[bag] {m}", file=sys.stderr)
        warning = error = info
    models = load_objects(cfg, _Log())
    backend, ckpts = resolve_backend(cfg, _Log())
    est = PoseEstimator(PoseConfig(**cfg.pose_config_kwargs(backend),
                                   **{f"{k}_ckpt": v for k, v in ckpts.items()}))
    for name, obj in models.items():
        est.add_object(name, obj)
    proc = FrameProcessor(est, models, cfg.objects, topics["camera_info"])
    classes = {k: _msg_class(conns[t].msgtype) for k, t in topics.items()}

    # camera_info first: offline, the one nearest to each image stamp is known in advance
    infos = CameraInfoCache(maxlen=10**6)
    for _, _, raw in reader.messages(connections=[conns[topics["camera_info"]]]):
        m = deserialize_message(raw, classes["camera_info"])
        infos.add(conv.stamp_ns(m.header), m)

    ts = msgdef_typestore()
    bag_dir = src.parent if src.is_file() else src
    storage = args.storage or ("mcap" if any(bag_dir.glob("*.mcap")) else "sqlite3")
    writer = Writer(out, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap"
                    else StoragePlugin.SQLITE3)
    writer.open()
    ns = "/" + args.namespace.strip("/") if args.namespace.strip("/") else ""
    wconns: dict = {}

    def write(topic, msg, t_ns):
        name = topic if topic.startswith("/") else f"{ns}/{topic}"
        if name not in wconns:
            wconns[name] = writer.add_connection(name, msg.__class__.__module__.split(".")[0]
                                                 + "/msg/" + type(msg).__name__, typestore=ts)
        writer.write(wconns[name], t_ns, serialize_message(msg))

    sync = ApproximateSync(["image", "detections"] + (["depth"] if cfg.mode == "rgbd" else []),
                           slop_s=cfg.sync_slop, queue_size=cfg.sync_queue_size)
    by_topic = {t: k for k, t in topics.items() if k != "camera_info"}
    n_images = conns[topics["image"]].msgcount
    counts = {"frames": 0, "ok": 0, "failed": 0, "skipped": 0}
    t_start = time.monotonic()
    bar = tqdm(total=n_images, unit="image", desc="coop-ros bag", disable=args.no_progress,
               file=sys.stderr)
    with open(csv_path, "w", newline="") as fcsv:
        rows = csv.DictWriter(fcsv, fieldnames=CSV_FIELDS)
        rows.writeheader()
        try:
            for conn, t_log, raw in reader.messages(
                    connections=[conns[t] for t in by_topic]):
                role = by_topic[conn.topic]
                msg = deserialize_message(raw, classes[role])
                if role == "image":
                    bar.update(1)
                frame = sync.add(role, conv.stamp_ns(msg.header), msg, t_log * 1e-9)
                if frame is None:
                    continue
                stamp = conv.stamp_ns(frame["image"].header)
                ci = infos.nearest(stamp)
                t0 = time.monotonic()
                fo = proc.process(frame, ci, cfg, now_ns=t_log,
                                  deadline=t0 + cfg.time_budget if cfg.time_budget > 0 else None)
                counts["frames"] += 1
                if cfg.publish["tf"] and fo.tf is not None:
                    write("/tf", fo.tf, t_log)
                if cfg.publish["object_poses"]:
                    for name, ps in fo.object_poses:
                        write(f"coop/pose/{name}", ps, t_log)
                if cfg.publish["estimates"]:
                    write("coop/estimates", fo.estimates, t_log)
                if cfg.publish["markers"]:
                    write("coop/markers", mesh_markers(fo.header, fo.marker_items,
                                                       cfg.marker_type), t_log)
                write("coop/poses", fo.poses, t_log)
                for e in fo.estimates.estimates:
                    status = ("ok", "failed", "skipped")[e.status]
                    counts[status] += 1
                    p = e.pose.pose
                    ok = e.status == 0
                    rows.writerow({
                        "stamp": f"{stamp // 10**9}.{stamp % 10**9:09d}",
                        "frame_id": fo.header.frame_id, "instance_id": e.instance_id,
                        "class_id": e.class_id, "object": e.object_name, "status": status,
                        "reason": e.reason, "score": f"{e.score:.4f}",
                        "best_so_far": int(e.best_so_far),
                        "ambiguous": int(e.ambiguous),
                        **{k: (f"{v:.6f}" if ok else "") for k, v in zip(
                            ("x", "y", "z", "qx", "qy", "qz", "qw"),
                            (p.position.x, p.position.y, p.position.z, p.orientation.x,
                             p.orientation.y, p.orientation.z, p.orientation.w))},
                        "total_s": f"{e.timings.total:.3f}"})
                for n in fo.notes:
                    bar.write(f"[bag] {n.level}: {n.text}")
        finally:
            bar.close()
            writer.close()
            reader.close()
            est.release()
    dt = time.monotonic() - t_start
    print(f"coop-ros bag: {n_images} images, {counts['frames']} frames matched and processed in "
          f"{dt:.1f} s; estimates: {counts['ok']} ok, {counts['failed']} failed, "
          f"{counts['skipped']} skipped; unmatched images {sync.unmatchable}")
    print(f"output bag: {out} ({storage}), CSV: {csv_path}")
    return 0 if counts["frames"] else 1
