"""VSD and the BOP19 evaluation (``coop-ros eval``): numbers known analytically on the tiny BOP
fixture of test_bop_dataset.py, and the real YCB-V frame."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from coop_ros.bop import evaluate as ev
from coop_ros.bop.dataset import BopDataset, Estimate, read_results_csv, valid_gt_indices
from coop_ros.bop.vsd import (depth_im_to_dist_im, estimate_visib_mask_est,
                              estimate_visib_mask_gt, vsd, vsd_from_depths)
from coop_ros.cli import main
from coop_ros.errors import InputError
from coop_ros.geometry.se3 import rotvec_to_matrix
from test_bop_dataset import BOX_EXTENTS, W, make_bop_fixture

BOX_D = float(np.linalg.norm(BOX_EXTENTS))   # 0.12329 m
CYL_D = 0.1                                  # sqrt(0.06^2 + 0.08^2) m
TH = np.arange(1, 11) * 0.05                 # BOP19 MSSD thresholds (fractions of the diameter)


@pytest.fixture(scope="module")
def bop_root(tmp_path_factory):
    return make_bop_fixture(tmp_path_factory.mktemp("bopeval") / "tiny")


@pytest.fixture(scope="module")
def ds(bop_root):
    return BopDataset(bop_root)


@pytest.fixture(scope="module")
def renderer(ds):
    from coop_ros.render.renderer import Renderer
    r = Renderer(W, 240)
    for oid in (1, 2):
        r.add_object(f"obj_{oid:06d}", ds.object(oid))
    yield r
    r.release()


def _shift(T, d):
    out = T.copy()
    out[:3, 3] += d
    return out


# --------------------------------------------------------------------------- VSD

def test_vsd_from_depths_hand_computed():
    """One row of 4 pixels, K with a huge focal length so that distance == depth (to 1e-11)."""
    Kh = np.array([[1e6, 0, 0], [0, 1e6, 0], [0, 0, 1.0]])
    test = np.array([[0.5, 0.5, 0.0, 0.4]])     # pixel 2: no depth; pixel 3: an occluder
    gt = np.array([[0.5, 0.5, 0.5, 0.5]])
    est = np.array([[0.5, 0.5225, 0.0, 0.5]])
    np.testing.assert_allclose(depth_im_to_dist_im(test, Kh), test, rtol=1e-11)
    vg = estimate_visib_mask_gt(test, gt, 0.015)
    np.testing.assert_array_equal(vg, [[True, True, True, False]])        # missing depth: visible
    ve = estimate_visib_mask_est(test, est, vg, 0.015)
    # pixel 1 is 22.5 mm behind the scene (> delta) but visible because the GT is visible there
    np.testing.assert_array_equal(ve, [[True, True, False, False]])
    e = vsd_from_depths(test, est, gt, Kh, diameter=0.1)
    # union 3 px, 1 px in only one mask; pixel 1 differs by 0.225 d: cost 1 for tau <= 0.20
    np.testing.assert_allclose(e, [2 / 3] * 4 + [1 / 3] * 6, rtol=1e-12)
    np.testing.assert_array_equal(vsd_from_depths(test, gt * 0, gt * 0, Kh, 0.1), np.ones(10))
    # a pixel where the estimate is in front of the scene is visible for the estimate
    ve2 = estimate_visib_mask_est(np.array([[0.5]]), np.array([[0.3]]), np.array([[False]]), 0.015)
    assert ve2.tolist() == [[True]]
    with pytest.raises(InputError, match="diameter"):
        vsd_from_depths(test, est, gt, Kh, diameter=0.0)


def test_vsd_rendered_gt_far_and_symmetry(ds, renderer):
    f = ds.frame(1, 1)
    (o1, T_box), (o2, T_cyl) = f.gt
    assert (o1, o2) == (1, 2)
    kb, kc = "obj_000001", "obj_000002"
    np.testing.assert_array_equal(vsd(f.depth, f.K, T_box, T_box, renderer, kb, BOX_D), 0.0)
    np.testing.assert_array_equal(vsd(f.depth, f.K, T_cyl, T_cyl, renderer, kc, CYL_D), 0.0)
    # 0.2 m along the optical axis (> 0.5 d): every pixel of the union costs 1
    np.testing.assert_array_equal(vsd(f.depth, f.K, _shift(T_box, [0, 0, 0.2]), T_box, renderer,
                                      kb, BOX_D), 1.0)
    # 0.5 m sideways: no overlap at all, with or without BOP's sphere shortcut
    far = _shift(T_box, [0.5, 0, 0])
    np.testing.assert_array_equal(vsd(f.depth, f.K, far, T_box, renderer, kb, BOX_D), 1.0)
    np.testing.assert_array_equal(vsd(f.depth, f.K, far, T_box, renderer, kb, BOX_D,
                                      skip_if_no_overlap=False), 1.0)
    # 5 mm along z on the box's fronto-parallel face: dist difference ~0.041 d -> only the
    # silhouette change costs, identical for all tau; 10 mm (0.081 d) fails tau = 0.05 only
    e5 = vsd(f.depth, f.K, _shift(T_box, [0, 0, 0.005]), T_box, renderer, kb, BOX_D)
    e10 = vsd(f.depth, f.K, _shift(T_box, [0, 0, 0.010]), T_box, renderer, kb, BOX_D)
    assert 0 < e5[0] < 0.06 and np.ptp(e5) == 0
    assert e10[0] > 0.95 and 0 < e10[1] < 0.06 and np.ptp(e10[1:]) == 0
    # VSD is symmetry invariant without a min over symmetries: a rotation of the 32-sided
    # cylinder about its axis by 2 pi / 32 renders the same surface (0 here; the rotated vertices
    # differ in their last bits, so another CPU's rasteriser may flip a few edge pixels of the
    # ~3000-pixel union: <= 0.002); the same rotation of the box costs > 0.1
    Rz = rotvec_to_matrix(np.array([0, 0, 2 * np.pi / 32]))
    Tc, Tb = T_cyl.copy(), T_box.copy()
    Tc[:3, :3] = T_cyl[:3, :3] @ Rz
    Tb[:3, :3] = T_box[:3, :3] @ Rz
    assert vsd(f.depth, f.K, Tc, T_cyl, renderer, kc, CYL_D).max() <= 0.002
    assert vsd(f.depth, f.K, Tb, T_box, renderer, kb, BOX_D).min() > 0.1


# --------------------------------------------------------------------------- evaluate

def test_gt_estimator_cli_gives_ar_one_and_results_round_trip(bop_root, tmp_path, capsys):
    out, rep = tmp_path / "res.csv", tmp_path / "rep.json"
    assert main(["eval", "--bop", str(bop_root), "--estimator", "gt", "--out", str(out),
                 "--report", str(rep), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| AR_VSD | AR_MSSD | AR_MSPD | AR |" in table
    assert "| 6 | 3 | 1.000 | 1.000 | 1.000 | 1.000 |" in table
    s = json.loads(rep.read_text())["summary"]
    assert (s["ar_vsd"], s["ar_mssd"], s["ar_mspd"], s["ar"]) == (1.0, 1.0, 1.0, 1.0)
    assert s["n_targets"] == 6 and s["n_images"] == 3 and s["mean_time_per_image"] >= 0
    per = json.loads(rep.read_text())["targets"]
    assert len(per) == 6 and all(t["mssd_m"] == 0 and t["vsd"] == [0.0] * 10 for t in per)
    ests = read_results_csv(out)
    assert [(e.scene_id, e.im_id, e.obj_id) for e in ests] == \
        [(1, 1, 1), (1, 1, 2), (1, 2, 1), (1, 2, 2), (2, 3, 1), (2, 3, 2)]
    # evaluating the written CSV gives the same
    rep2 = tmp_path / "rep2.json"
    assert main(["eval", "--bop", str(bop_root), "--results", str(out), "--report", str(rep2),
                 "--quiet"]) == 0
    assert json.loads(rep2.read_text())["summary"]["ar"] == 1.0


def test_pure_translation_gives_analytic_ar_mssd(bop_root, tmp_path, capsys):
    """A translation by d gives MSSD = d exactly (also for the symmetric cylinder): recall =
    fraction of thresholds with d < th * diameter.
    12 mm: box 0.097 d -> 9/10, cylinder 0.12 d -> 8/10."""
    rep = tmp_path / "rep.json"
    assert main(["eval", "--bop", str(bop_root), "--estimator", "perturbed", "--rot-deg", "0",
                 "--trans-mm", "12", "--seed", "4", "--report", str(rep), "--quiet"]) == 0
    r = json.loads(rep.read_text())
    for t in r["targets"]:
        assert t["mssd_m"] == pytest.approx(0.012, abs=1e-12)
    expected = np.mean([np.mean(0.012 < TH * (BOX_D if t["obj_id"] == 1 else CYL_D))
                        for t in r["targets"]])
    assert expected == pytest.approx(0.85, abs=1e-12)
    assert r["summary"]["ar_mssd"] == pytest.approx(0.85, abs=1e-12)
    assert r["recalls"]["mssd"] == pytest.approx([0, 0.5] + [1] * 8, abs=1e-12)


def test_lateral_translation_mspd_matches_px_thresholds(ds):
    """Box of scene 1 image 1 is axis-aligned at z = 0.5 m (front face 0.48 m): a shift of
    12.6 mm along camera x moves every vertex by fx * dx / z, at most 400 * 0.0126 / 0.48 = 10.5 px.
    Thresholds for a 320 px wide image: 2.5, 5, ..., 25 px -> 6 of 10 above 10.5 px."""
    def lateral(frame, targets):
        return [Estimate(frame.scene_id, frame.im_id, t.obj_id, 1.0,
                         _shift(frame.gt[valid_gt_indices(frame, t)[0]].T_cam_obj,
                                [0.0126, 0, 0])) for t in targets]
    rep = ev.evaluate(ds, lateral, max_targets=1, progress=False)
    assert rep.n_targets == 1 and rep.targets[0].obj_id == 1
    assert rep.targets[0].mspd_px == pytest.approx(10.5, rel=1e-12)
    assert rep.ar_mspd == pytest.approx(0.6, abs=1e-12)
    assert rep.ar_mssd == pytest.approx(0.8, abs=1e-12)      # 0.0126 / 0.1233 = 0.102 d
    # VSD: a lateral shift keeps the front face's depths; mostly the silhouette change costs
    v = np.asarray(rep.targets[0].vsd)
    assert np.all(np.diff(v) <= 0) and 0.15 < v[-1] <= v[0] < 0.3
    # AR_VSD = mean over the 10 x 10 (tau, theta) grid of [e(tau) < theta]
    assert rep.ar_vsd == pytest.approx(np.mean(v[:, None] < TH[None, :]), abs=1e-12)
    assert rep.ar_vsd == pytest.approx(0.6, abs=1e-12)        # theta in 0.25..0.5 for all tau
    assert rep.ar == pytest.approx((rep.ar_vsd + 0.6 + 0.8) / 3, abs=1e-12)


def test_ar_decreases_monotonically_with_perturbation(ds):
    ars = [ev.evaluate(ds, ev.gt_estimator, progress=False)]
    for rot, trans in ((3.0, 0.006), (10.0, 0.02), (25.0, 0.05)):
        ars.append(ev.evaluate(ds, ev.perturbed_estimator(rot, trans, seed=1), progress=False))
    a = [r.ar for r in ars]
    assert a[0] == 1.0 and a[0] > a[1] > a[2] > a[3]
    for name in ("ar_vsd", "ar_mssd", "ar_mspd"):
        v = [getattr(r, name) for r in ars]
        assert v[0] == 1.0 and v[0] >= v[1] >= v[2] >= v[3]
    assert ars[3].ar < 0.5


def test_missing_and_low_score_estimates(ds):
    def drop_one(frame, targets):
        return [e for e in ev.gt_estimator(frame, targets)
                if (e.scene_id, e.im_id, e.obj_id) != (1, 2, 2)]
    r = ev.evaluate(ds, drop_one, progress=False)
    assert r.n_targets == 6 and r.n_estimates == 5
    for v in (r.ar_vsd, r.ar_mssd, r.ar_mspd, r.ar):
        assert v == pytest.approx(5 / 6, abs=1e-12)
    miss = [t for t in r.targets if not t.has_estimate]
    assert len(miss) == 1 and miss[0].mssd_m == np.inf and miss[0].recall_mssd == 0

    def two(score_wrong, score_right):
        def est(frame, targets):
            out = ev.gt_estimator(frame, targets)
            first = out[0]
            out.append(Estimate(first.scene_id, first.im_id, first.obj_id, score_wrong,
                                _shift(first.T_cam_obj, [0.3, 0, 0])))
            out[0].score = score_right
            return out
        return est
    # inst_count 1: only the highest-scoring estimate counts
    r = ev.evaluate(ds, two(0.9, 0.5), max_targets=2, progress=False, compute_vsd=False)
    assert r.ar_mssd == pytest.approx(0.5) and r.ar_vsd is None
    assert r.ar == pytest.approx(0.5) and "MSSD, AR_MSPD" in r.ar_definition
    r = ev.evaluate(ds, two(0.5, 0.9), max_targets=2, progress=False, compute_vsd=False)
    assert r.ar == 1.0


def test_oracle_figures_score_the_best_hypothesis_and_coarse_pose(ds):
    """An estimate whose chosen pose is 0.3 m off but whose hypotheses hold the GT: AR 0 and the
    best-of-hypotheses oracle 1; coarse poses shifted by 12 mm give the analytic MSSD recall
    (box 9/10, cylinder 8/10); visibility bins partition the targets."""
    def est(frame, targets):
        out = []
        for e in ev.gt_estimator(frame, targets):
            T = e.T_cam_obj
            far = _shift(T, [0.3, 0, 0])
            out.append(Estimate(e.scene_id, e.im_id, e.obj_id, 1.0, far,
                                hypotheses=[far, T, _shift(T, [0, 0.2, 0])],
                                coarse_poses=[_shift(T, [0.012, 0, 0]), far]))
        return out
    r = ev.evaluate(ds, est, progress=False)
    assert r.ar == 0.0 and r.ar_best_of_hypotheses == pytest.approx(1.0, abs=1e-12)
    expected = np.mean([np.mean(0.012 < TH * (BOX_D if t.obj_id == 1 else CYL_D))
                        for t in r.targets])
    assert r.ar_mssd_best_coarse == pytest.approx(expected, abs=1e-12)
    bins = r.by_visibility()
    assert [b["bin"] for b in bins] == ["< 0.5", "0.5-0.8", ">= 0.8"]
    known = [t for t in r.targets if t.visib_fract is not None]
    assert sum(b["n"] for b in bins) == len(known) > 0
    assert all(b["ar_best_of_hypotheses"] == pytest.approx(1.0) for b in bins if b["n"])
    assert "best of the hypotheses" in r.markdown() and "visib_fract" in r.markdown()
    # estimates without hypotheses: no oracle figures
    plain = ev.evaluate(ds, ev.gt_estimator, progress=False, compute_vsd=False)
    assert plain.ar_best_of_hypotheses is None and plain.ar_mssd_best_coarse is None


def test_greedy_matching_of_several_instances(bop_root, tmp_path):
    root = tmp_path / "multi"
    shutil.copytree(bop_root, root)
    d = root / "test" / "000001"
    gt = json.loads((d / "scene_gt.json").read_text())
    info = json.loads((d / "scene_gt_info.json").read_text())
    second = dict(gt["1"][0])
    second["cam_t_m2c"] = [x + dx for x, dx in zip(second["cam_t_m2c"], (150.0, 0, 0))]
    gt["1"].append(second)
    info["1"].append(dict(info["1"][0], visib_fract=0.5))
    (d / "scene_gt.json").write_text(json.dumps(gt))
    (d / "scene_gt_info.json").write_text(json.dumps(info))
    tg = json.loads((root / "test_targets_bop19.json").read_text())
    tg[0]["inst_count"] = 2
    (root / "test_targets_bop19.json").write_text(json.dumps(tg))
    ds = BopDataset(root)
    A, B = ds.frame(1, 1).gt[0].T_cam_obj, ds.frame(1, 1).gt[2].T_cam_obj

    def est(frame, targets):  # best score: exactly B; second: A shifted by 12 mm; third: junk
        return [Estimate(1, 1, 1, 0.9, B.copy()), Estimate(1, 1, 1, 0.8, _shift(A, [0, 0.012, 0])),
                Estimate(1, 1, 1, 0.1, A.copy())]
    r = ev.evaluate(ds, est, max_targets=1, progress=False, compute_vsd=False)
    assert r.n_targets == 2 and r.n_estimates == 2           # top inst_count = 2 estimates only
    assert [t.gt_idx for t in r.targets] == [0, 2]
    assert r.ar_mssd == pytest.approx((9 + 10) / 20, abs=1e-12)
    with pytest.raises(InputError, match="has no GT pose"):
        valid_gt_indices(ds.frame(1, 1), ev.Target(1, 1, 5, 1))


def test_registry_and_plugin_hooks():
    assert {"gt", "perturbed"} <= set(ev.ESTIMATORS)
    with pytest.raises(InputError, match="unknown estimator 'nope'; known: .*gt"):
        ev.get_estimator("nope")
    spec = ev.get_estimator("coop_ros.bop.evaluate:perturbed_estimator")
    assert spec.factory is ev.perturbed_estimator
    calls = []
    ev.register_estimator("_test_est", lambda args, ds: calls.append(args.test_opt),
                          add_args=lambda g: g.add_argument("--test-opt", type=int, default=7))
    try:
        import argparse
        p = argparse.ArgumentParser()
        ev.configure_parser(p)
        args = p.parse_args(["--bop", "x", "--estimator", "_test_est", "--test-opt", "3"])
        ev.get_estimator(args.estimator).factory(args, None)
        assert calls == [3] and args.rot_deg == 5.0 and args.trans_mm == 10.0
        with pytest.raises(InputError, match="already registered"):
            ev.register_estimator("_test_est", lambda a, d: None)
    finally:
        ev.ESTIMATORS.pop("_test_est")


def test_real_ycbv_gt_gives_ar_one(shared_real):
    ds = BopDataset(shared_real / "ycbv_s48_im1_masterchefcan")
    with pytest.warns(UserWarning, match="texture"):
        r = ev.evaluate(ds, ev.gt_estimator, progress=False)
    assert r.n_targets == 1 and r.ar_mssd == 1.0 and r.ar_mspd == 1.0 and r.ar == 1.0
    assert r.ar_vsd is None and "no depth" in r.ar_definition     # RGB-only frame
    r = ev.evaluate(ds, ev.perturbed_estimator(0.0, 0.012), progress=False)
    d = ds.diameter(1)
    assert r.targets[0].mssd_m == pytest.approx(0.012, abs=1e-12)
    assert r.ar_mssd == pytest.approx(np.mean(0.012 < TH * d), abs=1e-12)


def test_targets_without_estimate_or_mesh_are_reported(bop_root, tmp_path):
    """A target without an estimate is listed with the estimator's reason; a target whose
    object has no mesh is skipped with a message, not fatal; AR per object."""
    import shutil
    from coop_ros.bop.dataset import NoEstimate
    root = tmp_path / "nomesh"
    shutil.copytree(bop_root, root)
    (root / "models" / "obj_000002.ply").unlink()
    ds = BopDataset(root)

    def est(frame, targets):
        out = []
        for t in targets:
            out.append(NoEstimate(frame.scene_id, frame.im_id, t.obj_id, "low_score: 0.1 < 0.2"))
        return out
    rep = ev.evaluate(ds, est, progress=False, compute_vsd=False)
    assert {t.obj_id for t in rep.targets} == {1}
    assert len(rep.skipped) == 3 and all("object 2: no mesh" in s for s in rep.skipped)
    assert all(t.reason == "low_score: 0.1 < 0.2" for t in rep.targets)
    md = rep.markdown(per_object=True)
    assert "Skipped (3)" in md and "low_score: 0.1 < 0.2" in md and "| 1 | 3 |" in md
    rep2 = ev.evaluate(ds, ev.gt_estimator, progress=False, compute_vsd=False)
    assert rep2.per_object()[1]["ar"] == 1.0 and rep2.ar == 1.0


def test_perturbed_gt_pose_stays_a_valid_pose_from_a_nearly_orthonormal_gt():
    """BOP GT rotations are orthonormal to ~1e-4 only (kept as written within check_pose's
    tolerance); rotated by the perturbation such a rotation left it (LM-O dev scene 2 image 428
    object 11 stopped bench/eval_real.py's judge section). The perturbed pose is a valid pose
    and 5 deg (to 0.02 deg) / exactly 10 mm from the GT's rotation projected onto SO(3)."""
    from types import SimpleNamespace
    from coop_ros.bop.coop_adapter import perturbed_gt_pose
    from coop_ros.geometry.se3 import check_pose, orthonormalized, perturb_pose, rotation_angle_deg
    # R R^T = I + E, E = 0.9e-4 [[1, 1, 0], [1, 1, 0], [0, 0, 0]]: max entry 0.9e-4, but an
    # eigenvalue 1.8e-4 that a rotation can turn onto the diagonal
    w, V = np.linalg.eigh(np.eye(3) + 0.9e-4 * np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 0]]))
    R = V @ np.diag(np.sqrt(w)) @ V.T
    T = np.eye(4)
    T[:3, :3] = R @ np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    T[:3, 3] = [0.05, -0.02, 0.9]
    check_pose(T)                                    # accepted as written
    frame = SimpleNamespace(scene_id=2, im_id=428, gt=[SimpleNamespace(T_cam_obj=T)])
    raw_bad = 0
    for seed in range(50):
        P = perturbed_gt_pose(frame, 0, 5.0, 0.010, seed)
        check_pose(P)
        assert abs(rotation_angle_deg(P[:3, :3], orthonormalized(T)[:3, :3]) - 5.0) < 0.02
        assert abs(np.linalg.norm(P[:3, 3] - T[:3, 3]) - 0.010) < 1e-9
        Q = perturb_pose(T, 5.0, 0.010, np.random.default_rng([seed, 2, 428, 0]))
        raw_bad += int(np.abs(Q[:3, :3] @ Q[:3, :3].T - np.eye(3)).max() > 1e-4)
    assert raw_bad > 0      # the unprojected rotation does leave the tolerance: the test can fail
