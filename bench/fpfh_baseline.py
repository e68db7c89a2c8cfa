"""The weight-free RGB-D baseline a robotics user tries first: FPFH + RANSAC + point-to-plane ICP
(open3d). Run by bench/eval_real.py inside its own virtual environment (open3d-cpu is not a
dependency of coop_ros); reads a job file, writes the poses.

    <open3d-venv>/bin/python bench/fpfh_baseline.py JOBS.npz OUT.json

JOBS.npz holds, for job i: ``scene_i`` (N, 3) observed points in the detection box [m, camera
frame], ``model_i`` (M, 3) model surface points [m, object frame]. For each job: both clouds
voxel-downsampled (5 mm), normals (radius 10 mm), FPFH (radius 25 mm), RANSAC on feature
matches (distance 7.5 mm, edge-length and distance checkers, 100k iterations) with 5 seeds,
each followed by point-to-plane ICP (5 mm); the result with the highest ICP fitness is kept.
OUT.json: ``[{"T": 4x4 list (T_cam_obj), "fitness": f, "time_s": t}, ...]``.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import open3d as o3d

VOXEL = 0.005
SEEDS = 5


def _prep(points: np.ndarray):
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    pcd = pcd.voxel_down_sample(VOXEL)
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=2 * VOXEL, max_nn=30))
    feat = o3d.pipelines.registration.compute_fpfh_feature(
        pcd, o3d.geometry.KDTreeSearchParamHybrid(radius=5 * VOXEL, max_nn=100))
    return pcd, feat


def register(model: np.ndarray, scene: np.ndarray) -> tuple[np.ndarray, float]:
    reg = o3d.pipelines.registration
    src, fs = _prep(model)
    tgt, ft = _prep(scene)
    # point-to-plane ICP needs target normals pointing at the camera
    tgt.orient_normals_towards_camera_location(np.zeros(3))
    best = (np.eye(4), -1.0)
    for seed in range(SEEDS):
        o3d.utility.random.seed(seed)
        r = reg.registration_ransac_based_on_feature_matching(
            src, tgt, fs, ft, True, 1.5 * VOXEL,
            reg.TransformationEstimationPointToPoint(False), 3,
            [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9),
             reg.CorrespondenceCheckerBasedOnDistance(1.5 * VOXEL)],
            reg.RANSACConvergenceCriteria(100000, 0.999))
        icp = reg.registration_icp(src, tgt, VOXEL, r.transformation,
                                   reg.TransformationEstimationPointToPlane())
        if icp.fitness > best[1]:
            best = (np.asarray(icp.transformation), float(icp.fitness))
    return best


def main() -> int:
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    jobs = np.load(sys.argv[1])
    n = len([k for k in jobs.files if k.startswith("scene_")])
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        T, fit = register(jobs[f"model_{i}"], jobs[f"scene_{i}"])
        out.append({"T": T.tolist(), "fitness": fit, "time_s": time.perf_counter() - t0})
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
