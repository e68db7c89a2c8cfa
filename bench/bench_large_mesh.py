"""Loading and registering a scanned-size mesh: time per step and peak memory.

    .venv/bin/python bench/bench_large_mesh.py [--faces 2000000] [--keep /tmp/scan.ply]

Makes a bumpy sphere of about --faces faces (trimesh uv_sphere, millimetres), writes it as PLY,
then in this process: ObjectModel.load (incl. the diameter), PoseEstimator.add_object without a
template cache (42 templates rendered on the CPU renderer, the backend's features, the upload),
and prints a table with the seconds of each step and the peak RSS.
"""
import argparse
import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=2_000_000)
    ap.add_argument("--keep", default=None, help="write the mesh here (default: a temp file)")
    args = ap.parse_args()
    import trimesh

    from coop_ros.objects import ObjectModel
    from coop_ros.pipeline.estimator import PoseConfig, PoseEstimator
    n = int(math.ceil(math.sqrt(args.faces / 4))) + 1
    m = trimesh.creation.uv_sphere(radius=60.0, count=[n, n])
    v = m.vertices * (1 + 0.01 * np.random.default_rng(0).standard_normal((len(m.vertices), 1)))
    path = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "scan.ply"
    trimesh.Trimesh(v, m.faces, process=False).export(path)
    rows = []
    t = time.perf_counter()
    obj = ObjectModel.load(path, units="mm")
    rows.append(("load + diameter", time.perf_counter() - t))
    est = PoseEstimator(PoseConfig(template_cache_dir=None))
    t = time.perf_counter()
    est.add_object("scan", obj)
    rows.append(("add_object (42 templates, no cache)", time.perf_counter() - t))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"mesh: {len(obj.faces)} faces, {len(obj.vertices)} vertices, "
          f"{path.stat().st_size / 2**20:.0f} MB PLY, diameter {obj.diameter * 1000:.1f} mm")
    print(f"{'step':<40} {'seconds':>8}")
    for name, dt in rows:
        print(f"{name:<40} {dt:8.1f}")
    print(f"{'total':<40} {sum(r[1] for r in rows):8.1f}")
    print(f"peak RSS: {rss:.0f} MB")
    est.release()


if __name__ == "__main__":
    main()
