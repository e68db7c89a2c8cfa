"""BOP reader and results CSV: exact numbers on a tiny BOP dataset written here (rendered with the
Renderer), and the real one-frame YCB-V folder in ../shared/real.

``make_bop_fixture`` is also used by test_bop_eval.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from coop_ros.bop.dataset import (BopDataset, Estimate, GtPose, Target, read_results_csv,
                                  write_results_csv)
from coop_ros.errors import InputError
from coop_ros.geometry.se3 import make_pose, random_rotation, rotvec_to_matrix

W, H = 320, 240
K = np.array([[400.0, 0.0, 160.0], [0.0, 400.0, 120.0], [0.0, 0.0, 1.0]])
DEPTH_SCALE = 0.1                      # mm per raw unit (as YCB-V)
BOX_EXTENTS = (0.10, 0.06, 0.04)       # m
CYL_RADIUS, CYL_HEIGHT, CYL_SECTIONS = 0.03, 0.08, 32


def _meshes() -> dict[int, trimesh.Trimesh]:
    """obj 1: box, obj 2: cylinder about z (continuous symmetry), in metres, centred."""
    return {1: trimesh.creation.box(extents=BOX_EXTENTS),
            2: trimesh.creation.cylinder(radius=CYL_RADIUS, height=CYL_HEIGHT,
                                         sections=CYL_SECTIONS)}


def _diameter_m(mesh: trimesh.Trimesh) -> float:
    v = np.asarray(mesh.vertices)
    return float(np.linalg.norm(v[:, None] - v[None], axis=2).max())


# scene -> im -> list of (obj_id, T_cam_obj in metres); box of scene 1 image 1 is axis-aligned
SCENE_POSES = {
    1: {1: [(1, make_pose(np.eye(3), [-0.06, 0.01, 0.50])),
            (2, make_pose(rotvec_to_matrix(np.array([1.2, 0.3, 0.0])), [0.07, -0.02, 0.55]))],
        2: [(1, make_pose(rotvec_to_matrix(np.array([0.4, -0.7, 0.2])), [0.00, 0.00, 0.45])),
            (2, make_pose(rotvec_to_matrix(np.array([-1.3, 0.2, 0.5])), [0.03, 0.03, 0.60]))]},
    2: {3: [(2, make_pose(rotvec_to_matrix(np.array([1.57, 0.0, 0.0])), [-0.02, 0.0, 0.50])),
            (1, make_pose(rotvec_to_matrix(np.array([0.2, 0.9, -0.4])), [0.05, 0.02, 0.52]))]},
}
WALL_Z = 0.80  # a background wall, so that the scene depth has no holes behind the objects


def make_bop_fixture(root: Path, jpg_scene: int | None = 2) -> Path:
    """Write a tiny BOP dataset under ``root`` (models/, test/<scene>/..., targets) and return it.

    Ground truth in mm as BOP; depth uint16 png with depth_scale 0.1; scene 2's rgb as jpg."""
    from coop_ros.objects import ObjectModel
    from coop_ros.render.renderer import Renderer

    root = Path(root)
    meshes = _meshes()
    (root / "models").mkdir(parents=True)
    info = {}
    for oid, m in meshes.items():
        mm = m.copy()
        mm.apply_scale(1000.0)
        mm.export(root / "models" / f"obj_{oid:06d}.ply")
        lo, hi = mm.bounds
        info[str(oid)] = {"diameter": _diameter_m(m) * 1000.0, "min_x": lo[0], "min_y": lo[1],
                          "min_z": lo[2], "size_x": hi[0] - lo[0], "size_y": hi[1] - lo[1],
                          "size_z": hi[2] - lo[2]}
    info["2"]["symmetries_continuous"] = [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]
    (root / "models" / "models_info.json").write_text(json.dumps(info))

    wall = trimesh.creation.box(extents=(3.0, 3.0, 0.01))
    targets = []
    with Renderer(W, H) as r:
        for oid, m in meshes.items():
            r.add_object(f"o{oid}", ObjectModel.from_trimesh(m, units="m", name=f"o{oid}"))
        r.add_object("wall", ObjectModel.from_trimesh(wall, units="m", name="wall"))
        T_wall = make_pose(np.eye(3), [0, 0, WALL_Z + 0.005])
        for scene_id, ims in SCENE_POSES.items():
            d = root / "test" / f"{scene_id:06d}"
            for sub in ("rgb", "depth", "mask", "mask_visib"):
                (d / sub).mkdir(parents=True)
            cam, gt, gt_info = {}, {}, {}
            for im_id, insts in ims.items():
                items = [(f"o{oid}", T) for oid, T in insts] + [("wall", T_wall)]
                sc = r.render_scene(items, K, W, H)
                ext = ".jpg" if scene_id == jpg_scene else ".png"
                cv2.imwrite(str(d / "rgb" / f"{im_id:06d}{ext}"),
                            cv2.cvtColor(sc.rgb[0], cv2.COLOR_RGB2BGR))
                raw = np.round(sc.depth[0].astype(np.float64) * 1000.0 / DEPTH_SCALE)
                cv2.imwrite(str(d / "depth" / f"{im_id:06d}.png"), raw.astype(np.uint16))
                cam[str(im_id)] = {"cam_K": K.reshape(-1).tolist(), "depth_scale": DEPTH_SCALE}
                gt[str(im_id)], gt_info[str(im_id)] = [], []
                for i, (oid, T) in enumerate(insts):
                    full = r.render(f"o{oid}", T, K, W, H).mask[0]
                    visib = sc.labels[0] == i
                    cv2.imwrite(str(d / "mask" / f"{im_id:06d}_{i:06d}.png"),
                                full.astype(np.uint8) * 255)
                    cv2.imwrite(str(d / "mask_visib" / f"{im_id:06d}_{i:06d}.png"),
                                visib.astype(np.uint8) * 255)
                    ys, xs = np.nonzero(full)
                    yv, xv = np.nonzero(visib)
                    gt[str(im_id)].append({"cam_R_m2c": T[:3, :3].reshape(-1).tolist(),
                                           "cam_t_m2c": (T[:3, 3] * 1000.0).tolist(),
                                           "obj_id": oid})
                    gt_info[str(im_id)].append({
                        "bbox_obj": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()),
                                     int(ys.max() - ys.min())],
                        "bbox_visib": [int(xv.min()), int(yv.min()), int(xv.max() - xv.min()),
                                       int(yv.max() - yv.min())],
                        "px_count_all": int(full.sum()), "px_count_valid": int(full.sum()),
                        "px_count_visib": int(visib.sum()),
                        "visib_fract": float(visib.sum() / full.sum())})
                    targets.append({"scene_id": scene_id, "im_id": im_id, "obj_id": oid,
                                    "inst_count": 1})
            (d / "scene_camera.json").write_text(json.dumps(cam))
            (d / "scene_gt.json").write_text(json.dumps(gt))
            (d / "scene_gt_info.json").write_text(json.dumps(gt_info))
    (root / "test_targets_bop19.json").write_text(json.dumps(targets))
    return root


@pytest.fixture(scope="module")
def bop_root(tmp_path_factory) -> Path:
    return make_bop_fixture(tmp_path_factory.mktemp("bop") / "tiny")


# --------------------------------------------------------------------------- reader

def test_lists_scenes_images_and_targets(bop_root):
    ds = BopDataset(bop_root)
    assert ds.layout == "bop"
    assert ds.scene_ids == [1, 2]
    assert ds.images() == [(1, 1), (1, 2), (2, 3)]
    assert ds.targets() == [Target(1, 1, 1, 1), Target(1, 1, 2, 1), Target(1, 2, 1, 1),
                            Target(1, 2, 2, 1), Target(2, 3, 1, 1), Target(2, 3, 2, 1)]


def test_frame_reads_fixture_exactly(bop_root):
    ds = BopDataset(bop_root)
    f = ds.frame(1, 1)
    d = bop_root / "test" / "000001"
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    bgr = cv2.imread(str(d / "rgb" / "000001.png"))
    np.testing.assert_array_equal(f.rgb, bgr[..., ::-1])
    # depth: raw uint16 * 0.1 mm -> metres
    raw = cv2.imread(str(d / "depth" / "000001.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    assert f.depth.dtype == np.float32 and f.depth_scale == DEPTH_SCALE
    np.testing.assert_allclose(f.depth, raw.astype(np.float64) * 1e-4, rtol=1e-7, atol=0)
    # the wall is at 0.80 m, the axis-aligned box's front face at 0.50 - 0.02 = 0.48 m
    assert f.depth[5, 5] == pytest.approx(WALL_Z, abs=1e-4)
    u, v = np.round(K[:2, :2] @ [-0.06 / 0.48, 0.01 / 0.48] + K[:2, 2]).astype(int)
    assert f.depth[v, u] == pytest.approx(0.48, abs=1e-4)
    np.testing.assert_array_equal(f.K, K)
    assert len(f.gt) == 2 and all(isinstance(g, GtPose) for g in f.gt)
    for (oid, T), g in zip(SCENE_POSES[1][1], f.gt):
        assert g.obj_id == oid
        np.testing.assert_allclose(g.T_cam_obj, T, rtol=0, atol=1e-12)   # mm -> m
    assert f.gt_indices(2) == [1]
    # gt_info and masks as written
    info = json.loads((d / "scene_gt_info.json").read_text())["1"]
    for gi, e in zip(f.gt_info, info):
        np.testing.assert_array_equal(gi.bbox_obj, e["bbox_obj"])
        np.testing.assert_array_equal(gi.bbox_visib, e["bbox_visib"])
        assert gi.visib_fract == e["visib_fract"]
        assert gi.px_count_all == e["px_count_all"] and gi.px_count_visib == e["px_count_visib"]
    for i in range(2):
        assert int(f.mask_visib(i).sum()) == info[i]["px_count_visib"]
        assert int(f.mask(i).sum()) == info[i]["px_count_all"]
    assert info[0]["px_count_all"] > 1000


def test_jpg_rgb_and_objects(bop_root):
    ds = BopDataset(bop_root)
    f = ds.frame(2, 3)
    assert f.rgb_path.suffix == ".jpg" and f.rgb.shape == (H, W, 3)
    assert f.depth is not None and f.depth.max() == pytest.approx(WALL_Z, abs=2e-4)
    box, cyl = ds.object(1), ds.object(2)
    assert ds.object(1) is box                                       # cached
    np.testing.assert_allclose(box.extents, BOX_EXTENTS, atol=1e-9)  # mm file -> metres
    assert ds.diameter(1) == pytest.approx(np.linalg.norm(BOX_EXTENTS), abs=1e-9)
    # continuous symmetry from models_info: ceil(pi / 0.01) = 315 rotations
    assert cyl.symmetry_transforms(0.01).shape == (315, 4, 4)
    assert box.symmetry_transforms(0.01).shape == (1, 4, 4)


def test_targets_default_to_all_gt_instances(tmp_path, bop_root):
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(bop_root, root)
    (root / "test_targets_bop19.json").unlink()
    gt = json.loads((root / "test" / "000001" / "scene_gt.json").read_text())
    gt["1"].append(dict(gt["1"][0]))                                 # a second instance of obj 1
    (root / "test" / "000001" / "scene_gt.json").write_text(json.dumps(gt))
    (root / "test" / "000001" / "scene_gt_info.json").unlink()
    ts = BopDataset(root).targets()
    assert ts[:2] == [Target(1, 1, 1, 2), Target(1, 1, 2, 1)] and len(ts) == 6


def test_missing_files_raise_input_error_naming_the_path(tmp_path, bop_root):
    import shutil
    with pytest.raises(InputError, match="missing dataset folder"):
        BopDataset(tmp_path / "nope")
    with pytest.raises(InputError, match=r"missing split folder: .*val"):
        BopDataset(bop_root, split="val")
    root = tmp_path / "copy"
    shutil.copytree(bop_root, root)
    (root / "test" / "000001" / "rgb" / "000002.png").unlink()
    ds = BopDataset(root)
    with pytest.raises(InputError, match=r"missing file: .*000001/rgb/000002\.png"):
        ds.frame(1, 2)
    (root / "models" / "obj_000002.ply").unlink()
    with pytest.raises(InputError, match=r"obj_000002\.ply"):
        ds.object(2)
    with pytest.raises(InputError, match="image 7 not in"):
        ds.frame(1, 7)
    (root / "test" / "000002" / "scene_camera.json").unlink()
    with pytest.raises(InputError, match=r"missing file: .*000002/scene_camera\.json"):
        BopDataset(root).frame(2, 3)


# --------------------------------------------------------------------------- results CSV

def test_results_csv_round_trip_mm_m(tmp_path):
    rng = np.random.default_rng(3)
    ests = []
    for i in range(20):
        T = make_pose(random_rotation(rng), rng.uniform(-0.5, 1.5, 3))
        ests.append(Estimate(48, i, 1 + i % 3, float(rng.uniform()), T,
                             -1.0 if i % 2 else float(rng.uniform(0, 5))))
    path = write_results_csv(tmp_path / "res.csv", ests)
    lines = path.read_text().splitlines()
    assert lines[0] == "scene_id,im_id,obj_id,score,R,t,time" and len(lines) == 21
    f = lines[1].split(",")
    assert len(f) == 7 and len(f[4].split()) == 9 and len(f[5].split()) == 3
    # t is written in millimetres
    np.testing.assert_allclose([float(x) for x in f[5].split()], ests[0].T_cam_obj[:3, 3] * 1000,
                               rtol=1e-15)
    back = read_results_csv(path)
    assert len(back) == 20
    for a, b in zip(ests, back):
        assert (a.scene_id, a.im_id, a.obj_id, a.score, a.time_s) == \
            (b.scene_id, b.im_id, b.obj_id, b.score, b.time_s)
        np.testing.assert_allclose(b.T_cam_obj, a.T_cam_obj, rtol=0, atol=1e-9)
    bad = tmp_path / "bad.csv"
    bad.write_text("scene_id,im_id,obj_id,score,R,t,time\n1,2,3,0.5,1 0 0 0 1 0 0 0,0 0 1,-1\n")
    with pytest.raises(InputError, match=r"bad\.csv:2: R needs 9"):
        read_results_csv(bad)
    with pytest.raises(InputError, match="missing file"):
        read_results_csv(tmp_path / "none.csv")


# --------------------------------------------------------------------------- real YCB-V frame

def test_real_ycbv_flat_frame(shared_real):
    root = shared_real / "ycbv_s48_im1_masterchefcan"
    ds = BopDataset(root)
    assert ds.layout == "flat" and ds.scene_ids == [48] and ds.images() == [(48, 1)]
    assert ds.targets() == [Target(48, 1, 1, 1)]
    f = ds.frame(48, 1)
    assert f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8
    assert f.depth is None and f.depth_scale == 0.1
    np.testing.assert_allclose(f.K, [[1066.778, 0, 312.9869], [0, 1067.487, 241.3109], [0, 0, 1]])
    assert [g.obj_id for g in f.gt] == [1, 6, 14, 19, 20]
    np.testing.assert_allclose(f.gt[0].T_cam_obj[:3, 3],
                               [-0.031677025422232273, -0.017368816807616497, 0.865056765056294],
                               rtol=0, atol=1e-15)
    assert f.gt[0].T_cam_obj[0, 1] == -0.7872002747152219
    assert f.gt_info[0].px_count_all == 23236
    np.testing.assert_array_equal(f.gt_info[0].bbox_obj, [206, 126, 132, 194])
    with pytest.warns(UserWarning, match="texture"):
        can = ds.object(1)
    np.testing.assert_allclose(can.extents, [0.1023, 0.1024, 0.1401], atol=2e-4)


# --------------------------------------------------------------------------- real data as published

def _copy_with_rotation_error(src: Path, dst: Path, eps: float) -> Path:
    """The fixture dataset with every GT rotation of scene 1 off orthonormal by ``eps``."""
    import shutil
    shutil.copytree(src, dst)
    p = dst / "test" / "000001" / "scene_gt.json"
    gt = json.loads(p.read_text())
    for entries in gt.values():
        for e in entries:
            R = np.asarray(e["cam_R_m2c"]).reshape(3, 3) @ np.diag([1 + eps, 1.0, 1.0])
            e["cam_R_m2c"] = R.ravel().tolist()
    p.write_text(json.dumps(gt))
    return dst


def test_gt_rotations_re_orthonormalised_within_tolerance(tmp_path):
    import warnings
    src = make_bop_fixture(tmp_path / "src")
    clean = BopDataset(src).frame(1, 1).gt[0].T_cam_obj
    ds = BopDataset(_copy_with_rotation_error(src, tmp_path / "ok", 1e-3))   # |RR^T - I| ~ 2e-3
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        T = ds.frame(1, 1).gt[0].T_cam_obj
    msgs = [str(x.message) for x in w if "re-orthonormalised" in str(x.message)]
    assert len(msgs) == 1 and "4 of 4 GT rotations" in msgs[0] and "2.0e-03" in msgs[0]
    R = T[:3, :3]
    assert np.abs(R @ R.T - np.eye(3)).max() < 1e-12 and np.linalg.det(R) > 0
    assert np.abs(R - clean[:3, :3]).max() < 2e-3             # the nearest rotation
    bad = BopDataset(_copy_with_rotation_error(src, tmp_path / "bad", 2.5e-2))  # ~5e-2
    with pytest.raises(InputError, match=r"scene_gt\.json\[1\]\[0\]: cam_R_m2c is not a rotation"):
        bad.frame(1, 1)


def test_flat_folder_targets_units_and_computed_gt_info(shared_real):
    from coop_ros.bop.dataset import compute_gt_info
    ds = BopDataset(shared_real / "ycbvideo_v0000_f000001_gelatin_rgbd")
    assert ds.targets() == [Target(0, 1, 8, 1)]          # targets.json: the box only
    assert ds.mesh_units(8) == "m" and 0.10 < ds.object(8).diameter < 0.13   # metres read as m
    assert ds.has_model(8) and not ds.has_model(14)
    f = ds.frame(0, 1)
    assert not f.gt_info and f.depth is not None
    info = compute_gt_info(f, ds)
    assert [i.visib_fract for i in info[1:]] == [-1.0, -1.0]        # no mesh: unknown
    assert np.abs(info[0].bbox_visib - [186, 132, 138, 190]).max() <= 2   # SOURCE.md's box
    assert info[0].visib_fract > 0.95
