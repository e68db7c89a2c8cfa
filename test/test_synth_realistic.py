"""The realistic preset of the synthetic generator (coop_ros.synth.realistic via generate_dataset):
determinism, GT consistency (masks, visib_fract against the rendered scene), the table-top layout,
depth holes on fully visible flat faces, the appearance mismatch, and the CLI."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from coop_ros.geometry.se3 import make_pose
from coop_ros.objects import ObjectModel, load_models_info
from coop_ros.render.sensors import HOLE_REASONS
from coop_ros.synth import procedural as P
from coop_ros.synth.realistic import KINECT_K, scene_appearance, stable_poses
from coop_ros.synth.scenes import generate_dataset

W, H = 320, 240
OBJS = ["textured_box", "can", "mug", "industrial_part"]
ARGS = dict(n_scenes=1, images_per_scene=2, width=W, height=H, progress=False,
            objects_per_image=(4, 4), distractors=(3, 5), preset="realistic")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("realistic") / "ds"
    generate_dataset(out, OBJS, seed=3, **ARGS)
    return out


def _json(p: Path):
    return json.loads(p.read_text())


def _hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_realistic_dataset_files_and_gt_consistency(dataset):
    from coop_ros.render.renderer import Renderer

    root = dataset
    meta = _json(root / "dataset.json")
    assert meta["config"]["preset"] == "realistic"
    assert meta["realism"]["depth_sensor"]["baseline_m"] == 0.075
    sdir = root / "test" / "000000"
    realism = _json(sdir / "scene_realism.json")
    assert set(realism["appearance"]) == {"1", "2", "3", "4"} and "0" in realism
    cam = _json(sdir / "scene_camera.json")["0"]
    K = np.array(cam["cam_K"]).reshape(3, 3)
    np.testing.assert_allclose(K, np.array(KINECT_K) * [[0.5], [0.5], [1.0]])   # scaled Kinect
    info = load_models_info(root / "models" / "models_info.json")
    models = {i: ObjectModel.load(root / "models" / f"obj_{i:06d}.ply", units="mm",
                                  models_info=info[i]) for i in info}
    gts, infos = _json(sdir / "scene_gt.json"), _json(sdir / "scene_gt_info.json")
    n = 0
    with Renderer(W, H) as r:
        for i in models:
            r.add_object(f"o{i}", models[i])
        for im in gts:
            depth = cv2.imread(str(sdir / "depth" / f"{int(im):06d}.png"), cv2.IMREAD_UNCHANGED)
            assert depth.dtype == np.uint16 and 0.005 < (depth == 0).mean() < 0.6   # holes, not all
            for g, (gt, inf) in enumerate(zip(gts[im], infos[im])):
                T = make_pose(np.array(gt["cam_R_m2c"]).reshape(3, 3),
                              np.array(gt["cam_t_m2c"]) / 1000.0)
                mask = cv2.imread(str(sdir / "mask" / f"{int(im):06d}_{g:06d}.png"), 0) > 0
                visib = cv2.imread(str(sdir / "mask_visib" / f"{int(im):06d}_{g:06d}.png"), 0) > 0
                assert np.array_equal(r.render(f"o{gt['obj_id']}", T, K).mask[0], mask)
                assert mask.any() and not (visib & ~mask).any()
                assert inf["px_count_visib"] == visib.sum()
                assert inf["px_count_valid"] == ((depth > 0) & mask).sum()
                assert inf["visib_fract"] == pytest.approx(visib.sum() / inf["px_count_all"])
                if visib.any():
                    ys, xs = visib.nonzero()
                    assert inf["bbox_visib"] == [xs.min(), ys.min(), xs.max() - xs.min(),
                                                 ys.max() - ys.min()]
                n += 1
    assert n >= 4


def test_realistic_preset_is_deterministic(dataset, tmp_path):
    generate_dataset(tmp_path / "again", OBJS, seed=3, **ARGS)
    a, b = _hashes(dataset), _hashes(tmp_path / "again")
    assert a == b and len(a) > 20
    generate_dataset(tmp_path / "other", OBJS, seed=4, **{**ARGS, "images_per_scene": 1})
    c = _hashes(tmp_path / "other")
    assert c["test/000000/rgb/000000.png"] != a["test/000000/rgb/000000.png"]


@pytest.fixture(scope="module")
def scene_images():
    """Two views of one table scene through the generator's own state (not written to disk)."""
    from coop_ros.render.renderer import Renderer
    from coop_ros.synth.scenes import SynthConfig, _RealisticScenes

    cfg = SynthConfig(width=W, height=H, preset="realistic", objects_per_image=(4, 4),
                      distractors=(2, 4), seed=5).validated()
    models = {i + 1: P.make_object(n, 0) for i, n in enumerate(OBJS)}
    pool = {f"__dis_{k}__": P.random_primitive(np.random.default_rng(k)) for k in range(4)}
    r = Renderer(W, H)
    for i, o in models.items():
        r.add_object(f"obj_{i:06d}", o)
    for k, o in pool.items():
        r.add_object(k, o)
    rs = _RealisticScenes(r, cfg, np.asarray(cfg.K), models, pool)
    out = [rs.image(np.random.default_rng([5, im]), 0, im) for im in range(3)]
    yield rs, out
    r.release()


def test_layout_rests_on_the_table_without_overlap_and_views_the_cluster(scene_images):
    rs, images = scene_images
    scene = rs.scene
    grid_total = 0
    from coop_ros.synth.realistic import _Footprints
    for p in scene.placed:
        obj = rs.models[p.obj_id] if p.obj_id else rs.pool[p.key]
        V = obj.vertices @ p.T_world[:3, :3].T + p.T_world[:3, 3]
        assert abs(V[:, 2].min()) < 1e-9                       # resting on the table top
        fp = _Footprints()
        fp.add(V[:, :2])
        grid_total += int(fp.grid.sum())
    union = _Footprints()
    for p in scene.placed:
        obj = rs.models[p.obj_id] if p.obj_id else rs.pool[p.key]
        union.add((obj.vertices @ p.T_world[:3, :3].T + p.T_world[:3, 3])[:, :2])
    # convex footprints are disjoint (rasterised polygons may share their outline cells)
    assert union.grid.sum() >= 0.97 * grid_total
    for out in images:
        assert len(out["targets"]) >= 1
        for it in out["targets"]:
            assert 0.2 < np.linalg.norm(it.T[:3, 3]) < 1.9


def test_visible_masks_match_the_rendered_scene(scene_images):
    _, images = scene_images
    checked = 0
    for out in images:
        for g, item in enumerate(out["target_items"]):
            v = out["masks_visib"][g]
            lab = out["labels"] == item
            if lab.sum() < 50:
                continue
            iou = (v & lab).sum() / (v | lab).sum()
            assert iou > 0.95            # bop19 with 15 mm also counts contacts as visible
            checked += 1
    assert checked >= 2


def test_depth_holes_on_fully_visible_flat_faces_have_a_physical_reason(scene_images):
    _, images = scene_images
    flat_px = holes = 0
    allowed = (HOLE_REASONS["shadow"] | HOLE_REASONS["dark"] | HOLE_REASONS["specular"]
               | HOLE_REASONS["grazing"] | HOLE_REASONS["range"])
    for out in images:
        for g, info in enumerate(out["infos"]):
            if info["visib_fract"] < 0.99:
                continue
            m = out["masks"][g]
            # 5 px inside the silhouette: beyond the lateral noise of its edge (3 x 0.8 px + 1)
            inner = cv2.erode(m.astype(np.uint8), np.ones((11, 11), np.uint8)) > 0
            n = out["normal"]
            mean = cv2.blur(n, (5, 5))
            mean /= np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-9)
            flat = inner & ((n * mean).sum(-1) > np.cos(np.radians(3.0)))
            hole = flat & (out["depth_png"] == 0)
            r = out["hole_reasons"][hole]
            # an edge reason needs a depth jump (> 2 cm) in the clean depth within 5 px: the
            # object's own self-occlusion edges, beyond the silhouette's lateral noise
            zc = out["depth_clean"].astype(np.float32)
            k = np.ones((11, 11), np.uint8)
            jump = (cv2.dilate(zc, k) - (-cv2.dilate(-np.where(zc > 0, zc, 1e3), k))) > 0.02
            edge_ok = jump[hole]
            assert (r > 0).all()
            assert not (r & ~np.uint8(allowed | HOLE_REASONS["edge"])).any()
            assert edge_ok[(r & HOLE_REASONS["edge"]) > 0].all()
            flat_px += int(flat.sum())
            holes += int(hole.sum())
    assert flat_px >= 300
    assert holes <= 0.2 * flat_px          # mostly measured: holes only where physics says


def test_scene_appearance_differs_like_a_photo_but_keeps_the_geometry():
    mug, box = P.mug(seed=0), P.textured_box(seed=0)
    for obj in (mug, box):
        a, pa = scene_appearance(obj, np.random.default_rng(1))
        b, _ = scene_appearance(obj, np.random.default_rng(1))
        assert np.array_equal(a.vertices, obj.vertices) and np.array_equal(a.faces, obj.faces)
        if obj.texture is not None:
            d = np.abs(a.texture.astype(float) - obj.texture.astype(float)).mean() / 255
            assert np.array_equal(a.texture, b.texture)
        else:
            d = np.abs(a.vertex_colors - obj.vertex_colors).mean()
            assert np.array_equal(a.vertex_colors, b.vertex_colors)
        assert 0.01 < d < 0.3, (obj.name, d, pa)
        assert abs(pa["hue_deg"]) <= 20 and 1.15 <= pa["saturation"] <= 1.7


def test_table_clutter_and_marker_board():
    """The table's desk clutter has the edge density of real table tops (LM-O dev: 18 % Canny
    pixels around the targets; the plain procedural background has a few per cent), the marker
    board is off-white paper with a ring of black-bordered markers; both are deterministic."""
    from coop_ros.synth.realistic import _desaturated_background, desk_clutter, marker_board

    def edges(img):
        return (cv2.Canny(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 50, 150) > 0).mean()
    desk = desk_clutter(512, np.random.default_rng(3))
    assert np.array_equal(desk, desk_clutter(512, np.random.default_rng(3)))
    plain = _desaturated_background(512, 512, np.random.default_rng(3))
    assert edges(desk) > 0.08 and edges(desk) > 3 * edges(plain)
    board = marker_board(512, np.random.default_rng(4))
    assert np.array_equal(board, marker_board(512, np.random.default_rng(4)))
    grey = board.mean(-1)
    ring = np.ones((512, 512), bool)
    ring[80:-80, 80:-80] = False
    dark = grey < 60
    assert 0.25 < dark[ring].mean() < 0.75           # the markers' black in the ring
    assert np.median(grey[~ring]) > 190 or board[~ring].std() > 20   # paper, or a print


def test_stable_poses_rest_on_a_face():
    box = P.textured_box(seed=0)                       # 14 x 5 x 20 cm
    Ts, p = stable_poses(box)
    assert p.sum() == pytest.approx(1.0) and len(Ts) >= 4
    heights = sorted({round(float((box.vertices @ T[:3, :3].T + T[:3, 3])[:, 2].max()), 3)
                      for T in Ts})
    assert set(heights) <= {0.05, 0.14, 0.2}           # lying on one of its faces
    V = box.vertices @ Ts[0][:3, :3].T + Ts[0][:3, 3]
    assert V[:, 2].min() == pytest.approx(0.0, abs=1e-9)


def test_cli_synth_preset_realistic(tmp_path, capsys):
    from coop_ros.cli import main

    import trimesh

    (tmp_path / "pool").mkdir()
    trimesh.creation.torus(0.04, 0.01).export(tmp_path / "pool" / "ring.obj")
    out = tmp_path / "cli"
    rc = main(["synth", "--out", str(out), "--objects", "can,mug", "--images", "1", "--seed", "2",
               "--width", "160", "--height", "120", "--preset", "realistic", "--quiet",
               "--distractor-meshes", str(tmp_path / "pool" / "*.obj")])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    meta = _json(out / "dataset.json")
    assert meta["config"]["preset"] == "realistic" and meta["config"]["distractors"] == [10, 18]
    assert "mesh_ring" in meta["distractor_pool"]          # a mesh pool joins the distractors
    assert (out / "test/000000/scene_realism.json").is_file()
