"""Fast DDS shared-memory set-up for camera-sized messages (no rclpy import).

Why: Fast DDS (the default ROS 2 middleware) sends to subscribers on the same host through a
shared-memory segment owned by the *publishing* process, 512 KiB by default, cut into 64 KiB
fragments. A 640x480 depth image (600 KiB) followed by its rgb8 image (900 KiB) does not fit:
the image's fragments overwrite the depth's before the subscriber has read them, the reliable
reader then waits for the repair -- which comes with the writer's next sample or its heartbeat
(3 s) -- and holds every later sample of that topic back until then. Measured with a trivial
subscriber at 1 Hz: depth delivered p50 1028 ms / max 3040 ms after publication (image and
detections: ~20 ms); with a 16 MiB segment in the publisher: depth p50 9 ms / max 17 ms. The
segment of the *subscriber* makes no difference.

:func:`ensure_shm_segment` points Fast DDS at a profile with a larger segment (SHM + UDPv4, like
the built-in transports otherwise) for the calling process; the profile lives where only this
user can write: ``$XDG_RUNTIME_DIR`` when it is a private directory, else a new 0600 file made
with ``mkstemp`` in the temp directory and removed at exit (a fixed name in the world-writable
/tmp could be planted or blocked by another user). It must run before the process's
first ``rclpy.init``; the node (its own outputs: ``coop/overlay`` is a full image) and the
replay / test / soak publishers call it. It leaves Fast DDS alone when the user configured it
(``FASTDDS_DEFAULT_PROFILES_FILE``, ``FASTRTPS_DEFAULT_PROFILES_FILE``,
``FASTDDS_BUILTIN_TRANSPORTS``, a ``DEFAULT_FASTDDS_PROFILES.xml`` in the working directory),
when another middleware is selected (``RMW_IMPLEMENTATION``), or when
``COOP_ROS_SHM_SEGMENT_MB=0``. A camera driver in another process needs the same: export
``FASTDDS_DEFAULT_PROFILES_FILE`` (``python -m coop_ros.ros.dds`` prints a profile) for it.
"""
from __future__ import annotations

import atexit
import contextlib
import math
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["profile_xml", "ensure_shm_segment", "cleanup", "private_dir", "DEFAULT_SEGMENT_MB",
           "SEGMENT_ENV"]

DEFAULT_SEGMENT_MB = 16
SEGMENT_ENV = "COOP_ROS_SHM_SEGMENT_MB"
USER_CONFIG_ENV = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE",
                   "FASTDDS_BUILTIN_TRANSPORTS")
FASTDDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


#: SHM port queue of a receiving participant [messages]: a sample arrives as 64 KiB fragments,
#: and with the default 512 a best-effort sample of more than 32 MiB (a 4096x3072 rgb8 image is
#: 37.7 MB, 576 fragments) never completes -- it is dropped without a trace. 4096 cells: 256 MiB.
PORT_QUEUE_CAPACITY = 4096


def profile_xml(segment_bytes: int, port_queue_capacity: int = PORT_QUEUE_CAPACITY) -> str:
    """A Fast DDS XML profile: default participant with SHM (``segment_bytes``,
    ``port_queue_capacity`` messages in its receiving port) + UDPv4."""
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<!-- coop_ros: Fast DDS shared-memory segment large enough for camera images (the default 512 KiB
     delays images / depth larger than ~0.5 MB by up to the next frame or 3 s; a best-effort
     image larger than the publisher's segment is lost), and a receiving port queue that holds
     the fragments of a large image (the default 512 x 64 KiB loses best-effort samples
     > 32 MiB). -->
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>coop_ros_shm</transport_id>
        <type>SHM</type>
        <segment_size>{int(segment_bytes)}</segment_size>
        <port_queue_capacity>{int(port_queue_capacity)}</port_queue_capacity>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>coop_ros_udp</transport_id>
        <type>UDPv4</type>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="coop_ros_large_shm" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>coop_ros_shm</transport_id>
          <transport_id>coop_ros_udp</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


#: profile files this process created in a shared temp directory (removed by :func:`cleanup`)
_CREATED: list[str] = []


def private_dir(environ=None) -> Path | None:
    """``$XDG_RUNTIME_DIR`` when it is a private per-user directory (a real directory, not a
    symbolic link, owned by this user, no access for group / others: what the XDG base
    directory spec promises), else None."""
    env = os.environ if environ is None else environ
    raw = env.get("XDG_RUNTIME_DIR", "").strip()
    if not raw or not os.path.isabs(raw) or not hasattr(os, "getuid"):
        return None
    try:
        st = os.lstat(raw)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return Path(raw)


def _write_private(folder: Path, name: str, text: str) -> Path:
    """``folder / name`` holding ``text`` (in a private folder: reused when it already holds
    it, else written to a fresh mkstemp file and renamed over it, atomically)."""
    path = folder / name
    try:
        if path.is_file() and not path.is_symlink() and path.read_text() == text:
            return path
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def _write_unique(folder: Path, text: str) -> Path:
    """A new file in ``folder`` holding ``text``, created by ``mkstemp`` (O_CREAT | O_EXCL,
    mode 0600, a random name: nobody can plant or block it), removed at exit."""
    fd, tmp = tempfile.mkstemp(prefix="coop_ros_fastdds_shm_", suffix=".xml", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    _CREATED.append(tmp)
    if len(_CREATED) == 1:
        atexit.register(cleanup)
    return Path(tmp)


def cleanup() -> None:
    """Remove the profile files this process created in a shared temp directory (registered
    with ``atexit``; ``coop_node`` calls it itself before its ``os._exit``)."""
    while _CREATED:
        with contextlib.suppress(OSError):
            os.unlink(_CREATED.pop())


def ensure_shm_segment(environ=None, cwd=None, directory=None) -> tuple[bool, str]:
    """Make this process's Fast DDS participants use a larger shared-memory segment (see the
    module docstring) by setting ``FASTDDS_DEFAULT_PROFILES_FILE`` in ``environ`` (default
    ``os.environ``) to a profile this process controls: in ``$XDG_RUNTIME_DIR`` when that is a
    private per-user directory (:func:`private_dir`; the file is reused by later processes),
    else a new 0600 file created with ``mkstemp`` (O_EXCL, random name) in ``directory``
    (default: the temp directory), removed at exit. Never a predictable name in a
    world-writable folder, where another user could plant a profile or block the name.

    Returns (applied, a line for the log saying what was done or why nothing was).
    Raises ValueError for a ``COOP_ROS_SHM_SEGMENT_MB`` that is not a number >= 0."""
    env = os.environ if environ is None else environ
    raw = env.get(SEGMENT_ENV, "").strip()
    try:
        mb = float(raw) if raw else float(DEFAULT_SEGMENT_MB)
    except ValueError:
        mb = -1.0
    if not (mb >= 0) or not math.isfinite(mb):
        raise ValueError(f"{SEGMENT_ENV} must be a size in MiB >= 0 (0: leave Fast DDS at its "
                         f"defaults), got {raw!r}")
    if mb == 0:
        return False, f"Fast DDS left at its defaults ({SEGMENT_ENV}=0)"
    rmw = env.get("RMW_IMPLEMENTATION", "").strip()
    if rmw not in FASTDDS_RMWS:
        return False, f"middleware {rmw}: Fast DDS shared-memory set-up not needed"
    for k in USER_CONFIG_ENV:
        if env.get(k, "").strip():
            return False, f"Fast DDS configured by the user ({k}={env[k]}); left as it is"
    local = Path(cwd or os.getcwd()) / "DEFAULT_FASTDDS_PROFILES.xml"
    if local.is_file():
        return False, f"Fast DDS configured by the user ({local}); left as it is"
    size = int(mb * 1024 * 1024)
    text = profile_xml(size)
    private = private_dir(env)
    if private is not None:
        path = _write_private(private, f"coop_ros_fastdds_shm_{size}.xml", text)
    else:
        path = _write_unique(Path(directory or tempfile.gettempdir()), text)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(path)
    return True, (f"Fast DDS shared-memory segment {mb:g} MiB for this process's publishers "
                  f"(profile {path}; {SEGMENT_ENV}=0 keeps the 512 KiB default)")


if __name__ == "__main__":   # python -m coop_ros.ros.dds [MiB] > profile.xml
    import sys
    mb = float(sys.argv[1]) if len(sys.argv) > 1 else float(DEFAULT_SEGMENT_MB)
    sys.stdout.write(profile_xml(int(mb * 1024 * 1024)))
