"""Visualisation of the node's results in RViz: mesh markers (the overlay image is drawn by
:func:`coop_ros.render.overlay.draw_results`).

``mesh_markers`` builds a visualization_msgs/MarkerArray (a DELETEALL, then one mesh marker per
estimated instance: MESH_RESOURCE with a file:// URI of the mesh, scaled by its units, or a
TRIANGLE_LIST of the mesh's faces in metres) plus a text label.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["mesh_markers", "instance_color"]

_PALETTE = np.array([[0, 255, 0], [255, 160, 0], [0, 200, 255], [255, 0, 255], [255, 255, 0],
                     [0, 255, 160], [160, 120, 255], [255, 90, 90]], dtype=np.uint8)


def instance_color(k: int) -> tuple[int, int, int]:
    """RGB uint8 colour of the k-th instance of a frame."""
    return tuple(int(v) for v in _PALETTE[k % len(_PALETTE)])


def _triangles(obj, max_faces: int) -> np.ndarray:
    F = obj.faces
    if len(F) > max_faces:
        F = F[np.linspace(0, len(F) - 1, max_faces).astype(np.int64)]
    return obj.vertices[F.reshape(-1)]


def mesh_markers(header, items, marker_type: str = "mesh_resource", ns: str = "coop",
                 max_faces: int = 4000):
    """MarkerArray of estimated instances.

    Args:
        header: std_msgs/Header (the image's).
        items: list of dicts {instance_id, name, T (4, 4) m, obj (ObjectModel), mesh (path),
            units ("mm" | "m"), color (r, g, b) uint8}.
        marker_type: "mesh_resource" or "triangle_list".
    """
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray

    from coop_ros.ros.conversions import pose_msg

    arr = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.ns = ns
    clear.action = Marker.DELETEALL
    arr.markers.append(clear)
    for k, it in enumerate(items):
        r, g, b = (c / 255.0 for c in it["color"])
        m = Marker()
        m.header = header
        m.ns = ns
        m.id = 2 * k
        m.action = Marker.ADD
        m.pose = pose_msg(it["T"])
        m.color = ColorRGBA(r=float(r), g=float(g), b=float(b), a=0.8)
        if marker_type == "mesh_resource":
            m.type = Marker.MESH_RESOURCE
            m.mesh_resource = Path(it["mesh"]).resolve().as_uri()
            s = 1e-3 if it["units"] == "mm" else 1.0
            m.scale.x = m.scale.y = m.scale.z = s
            m.mesh_use_embedded_materials = True
        else:
            m.type = Marker.TRIANGLE_LIST
            m.scale.x = m.scale.y = m.scale.z = 1.0
            m.points = [Point(x=float(x), y=float(y), z=float(z))
                        for x, y, z in _triangles(it["obj"], max_faces)]
        arr.markers.append(m)
        t = Marker()
        t.header = header
        t.ns = ns
        t.id = 2 * k + 1
        t.action = Marker.ADD
        t.type = Marker.TEXT_VIEW_FACING
        t.pose = pose_msg(it["T"])
        t.scale.z = 0.03
        t.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        t.text = it["instance_id"]
        arr.markers.append(t)
    return arr
