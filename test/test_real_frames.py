"""The weight-free pipeline on real camera frames (../shared/real; skipped when absent).

Real photos are what users have: LM-O's low-texture objects under Kinect light, heavy occlusion;
the LINEMOD cat and the YCB-Video gelatin box with their depth. GT visible boxes are the
detections. The thresholds leave room below what was measured here (quoted beside each), so a
change that breaks real frames fails, and seeded noise does not.
"""
import warnings

import numpy as np
import pytest

from coop_ros.bop import metrics
from coop_ros.geometry.se3 import matrix_to_rotvec, perturb_pose, pose_errors
from coop_ros.pipeline.estimator import Detection, PoseConfig, PoseEstimator

RGBD = ("lm_s6_im0_cat_rgbd", "ycbvideo_v0000_f000001_gelatin_rgbd")
#: LM-O dev images evaluated here (scene 2): the first and the median of the 96, 16 targets
LMO_IMAGES = (17, 642)


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    return PoseEstimator(PoseConfig(template_cache_dir=str(tmp_path_factory.mktemp("tpl"))))


def _recall(T, Tg, obj, K, d, width):
    """BOP recall of one pose, mean of the MSSD and the MSPD recalls (metrics.recall_*)."""
    syms = obj.symmetry_transforms(0.01)
    ms = metrics.mssd(T[:3, :3], T[:3, 3], Tg[:3, :3], Tg[:3, 3], obj.vertices, syms)
    mp = metrics.mspd(T[:3, :3], T[:3, 3], Tg[:3, :3], Tg[:3, 3], K, obj.vertices, syms)
    return 0.5 * (metrics.recall_mssd(ms, d) + metrics.recall_mspd(mp, width))


def _rgbd_case(shared_real, case):
    from coop_ros.bop.dataset import BopDataset, compute_gt_info
    if not (shared_real / case).is_dir():
        pytest.skip(f"{case} missing")
    ds = BopDataset(shared_real / case)
    (s, i), = ds.images()
    fr = ds.frame(s, i)
    info = compute_gt_info(fr, ds)
    tg = ds.targets()[0]
    j = next(k for k, g in enumerate(fr.gt) if g.obj_id == tg.obj_id)
    return ds, fr, fr.gt[j], info[j].detection_box()


@pytest.mark.parametrize("case", RGBD)
def test_real_rgbd_frames_give_the_right_pose(shared_real, estimator, case):
    """Measured (1 hypothesis): cat 3.1 deg / 0.8 mm, gelatin 0.9 deg / 1.1 mm (the issue asks
    for MSSD < 0.1 diameter); NEES 11.5 and 7.3."""
    ds, fr, g, box = _rgbd_case(shared_real, case)
    if not estimator.has_object(g.obj_id):
        estimator.add_object(g.obj_id, ds.object(g.obj_id))
    r = estimator.estimate(fr.rgb, fr.K, [Detection(g.obj_id, tuple(map(float, box)))],
                           depth=fr.depth, mode="rgbd", num_hypotheses=1)[0]
    assert r.ok, r.reason
    rot, tr = pose_errors(r.T_cam_obj, g.T_cam_obj)
    obj = ds.object(g.obj_id)
    mssd = metrics.mssd(r.T_cam_obj[:3, :3], r.T_cam_obj[:3, 3], g.T_cam_obj[:3, :3],
                        g.T_cam_obj[:3, 3], obj.vertices, obj.symmetry_transforms(0.01))
    assert mssd < 0.05 * ds.diameter(g.obj_id), (case, rot, tr, mssd)
    assert rot < 5.0 and tr < 0.005, (case, rot, tr)
    # the covariance has the scale of the error: NEES e^T C^-1 e of one pose, chi-square(6) if
    # calibrated (99.9 % below 22.5); it was 1e-3 before the recalibration (sd 30-80 mm, ~90 deg)
    T = r.T_cam_obj
    e = np.concatenate([T[:3, 3] - g.T_cam_obj[:3, 3],
                        matrix_to_rotvec(T[:3, :3] @ g.T_cam_obj[:3, :3].T)])
    nees = float(e @ np.linalg.solve(r.covariance, e))
    assert 0.1 < nees < 100.0, (case, nees, np.sqrt(np.diag(r.covariance)))


def test_real_rgbd_refinement_keeps_a_near_truth_pose(shared_real, estimator):
    """refine_pose from GT + 5 deg / 10 mm (a tracker's last pose): measured 1.5-2.1 deg / <2 mm on
    the cat (its evidence peaks ~1.7 deg from the GT), 0.3-0.8 deg / 0.4-1.2 mm on the gelatin
    box. Before ICP also ran from the start pose, one of these four gelatin starts ended 8.9 mm
    off: a Kabsch step had raised the evidence on the way into a worse basin."""
    rng = np.random.default_rng(0)
    limits = {"lm_s6_im0_cat_rgbd": (3.0, 0.005),
              "ycbvideo_v0000_f000001_gelatin_rgbd": (1.5, 0.002)}
    for case in RGBD:
        ds, fr, g, box = _rgbd_case(shared_real, case)
        if not estimator.has_object(g.obj_id):
            estimator.add_object(g.obj_id, ds.object(g.obj_id))
        for _ in range(4):
            T0 = perturb_pose(g.T_cam_obj, 5.0, 0.010, rng)
            r = estimator.refine_pose(fr.rgb, fr.K, Detection(g.obj_id, tuple(map(float, box))),
                                      T0, depth=fr.depth, mode="rgbd")
            rot, tr = pose_errors(r.T_cam_obj, g.T_cam_obj)
            assert rot < limits[case][0] and tr < limits[case][1], (case, rot, tr)


def test_real_lmo_rgb_refinement_improves_on_coarse(shared_real, estimator):
    """RGB only, two real LM-O images, heavy occlusion. Refinement is judged by image evidence,
    so no hypothesis leaves it with less evidence than its coarse pose had, and over these
    targets the refined recall is not below the coarse one (measured, 1 hypothesis: coarse
    0.300, refined 0.338)."""
    from coop_ros.bop.dataset import BopDataset, valid_gt_indices
    path = shared_real / "lmo_rgb_dev"
    if not path.is_dir():
        pytest.skip("lmo_rgb_dev missing")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # BOP's GT rotations, orthonormal to ~1e-3
        ds = BopDataset(path)
        targets = ds.targets()
        coarse, refined = [], []
        for im in LMO_IMAGES:
            fr = ds.frame(2, im)
            for tg in (t for t in targets if t.im_id == im):
                if not estimator.has_object(tg.obj_id):
                    estimator.add_object(tg.obj_id, ds.object(tg.obj_id))
                obj, d = ds.object(tg.obj_id), ds.diameter(tg.obj_id)
                for gi in valid_gt_indices(fr, tg):
                    box = fr.gt_info[gi].detection_box()
                    r = estimator.estimate(fr.rgb, fr.K, [Detection(tg.obj_id, box)], mode="rgb",
                                           num_hypotheses=1)[0]
                    assert r.ok, r.reason
                    h, = r.hypotheses
                    assert h.score >= h.score_coarse - 1e-6, (im, tg.obj_id)
                    Tg = fr.gt[gi].T_cam_obj
                    coarse.append(_recall(h.T_coarse, Tg, obj, fr.K, d, fr.rgb.shape[1]))
                    refined.append(_recall(r.T_cam_obj, Tg, obj, fr.K, d, fr.rgb.shape[1]))
    assert len(refined) >= 12
    assert np.mean(refined) >= np.mean(coarse), (np.mean(coarse), np.mean(refined))
    assert np.mean(refined) > 0.25, np.mean(refined)


def test_eval_coop_refine_improves_on_its_perturbed_start(shared_real, tmp_path):
    """``coop-ros eval --estimator coop-refine --start perturbed`` refines the very poses that
    ``--estimator perturbed`` scores (same seed): on the real LINEMOD cat (RGB-D) the start
    scores AR 0.747, the refined pose 1.000 (measured)."""
    import json

    from coop_ros.cli import main
    case = shared_real / "lm_s6_im0_cat_rgbd"
    if not case.is_dir():
        pytest.skip("lm_s6_im0_cat_rgbd missing")
    ar = {}
    for est in ("perturbed", "coop-refine"):
        rep = tmp_path / f"{est}.json"
        assert main(["eval", "--bop", str(case), "--estimator", est, "--start", "perturbed",
                     "--mode", "rgbd", "--template-cache", str(tmp_path / "tpl"), "--quiet",
                     "--report", str(rep)]) == 0
        ar[est] = json.loads(rep.read_text())["summary"]["ar"]
    assert ar["perturbed"] < 0.85 and ar["coop-refine"] > 0.95, ar
