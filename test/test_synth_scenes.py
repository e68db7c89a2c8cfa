"""Built-in procedural objects and the synthetic BOP dataset generator
(coop_ros.synth.procedural, coop_ros.synth.scenes): sizes, texture vs low texture, and a small
generated dataset checked against re-renders from its own files (masks, BOP gt_info, depth,
targets, determinism)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from coop_ros.bop.writer import gt_info_bop, write_ply
from coop_ros.errors import InputError
from coop_ros.geometry.se3 import make_pose, random_rotation
from coop_ros.objects import ObjectModel, load_models_info
from coop_ros.synth import procedural as P
from coop_ros.synth.scenes import generate_dataset

W, H = 320, 240
ARGS = dict(n_scenes=1, images_per_scene=3, width=W, height=H, progress=False, keep_inside=0.3)


@pytest.fixture(scope="module")
def renderer():
    from coop_ros.render.renderer import Renderer

    r = Renderer(W, H)
    yield r
    r.release()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    summary = generate_dataset(out, seed=0, **ARGS)
    return out, summary


def _json(path: Path):
    return json.loads(path.read_text())


def _read_mask(path: Path) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert m is not None and m.dtype == np.uint8 and m.shape == (H, W), path
    assert set(np.unique(m)) <= {0, 255}
    return m > 0


def _instances(root: Path):
    """(scene_dir, im_id, gt_idx, gt entry, gt_info entry, K, depth_scale) for every instance."""
    for sdir in sorted((root / "test").iterdir()):
        cams, gts, infos = (_json(sdir / f) for f in
                            ("scene_camera.json", "scene_gt.json", "scene_gt_info.json"))
        assert sorted(cams) == sorted(gts) == sorted(infos)
        for im in sorted(gts, key=int):
            assert len(gts[im]) == len(infos[im])
            K = np.array(cams[im]["cam_K"], dtype=np.float64).reshape(3, 3)
            for g, (gt, info) in enumerate(zip(gts[im], infos[im])):
                yield sdir, int(im), g, gt, info, K, float(cams[im]["depth_scale"])


def _pose(gt: dict) -> np.ndarray:
    return make_pose(np.array(gt["cam_R_m2c"]).reshape(3, 3), np.array(gt["cam_t_m2c"]) / 1000.0)


def _models(root: Path) -> dict[int, ObjectModel]:
    info = load_models_info(root / "models" / "models_info.json")
    return {i: ObjectModel.load(root / "models" / f"obj_{i:06d}.ply", units="mm",
                                models_info=info[i]) for i in info}


def _albedo_gradient_energy(renderer, obj: ObjectModel, key: str, n_views: int = 4) -> float:
    """Mean squared Sobel gradient of the unshaded colour (ambient 1, diffuse 0) inside the
    eroded silhouette, over random views at 0.45 m: texture only, no shading / shape edges."""
    from coop_ros.render.renderer import Light

    renderer.add_object(key, obj)
    K = np.array([[400.0, 0, W / 2], [0, 400.0, H / 2], [0, 0, 1]])
    Rs = random_rotation(np.random.default_rng(7), n_views)
    out = renderer.render(key, np.stack([make_pose(R, [0, 0, 0.45]) for R in Rs]), K,
                          light=Light(ambient=1.0, diffuse=0.0))
    energies = []
    for b in range(n_views):
        g = cv2.cvtColor(out.rgb[b], cv2.COLOR_RGB2GRAY).astype(np.float32)
        e = cv2.Sobel(g, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(g, cv2.CV_32F, 0, 1) ** 2
        inner = cv2.erode(out.mask[b].astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        energies.append(float(e[inner].mean()))
    return float(np.mean(energies))


# ============================================================================================
# procedural objects
# ============================================================================================
def test_procedural_objects_have_declared_sizes_and_symmetries():
    objs = P.procedural_objects(seed=0)
    assert list(objs) == ["textured_box", "can", "mug", "industrial_part"]
    box, can, mug, part = objs.values()
    np.testing.assert_allclose(box.extents, P.BOX_SIZE, atol=1e-9)
    assert box.diameter == pytest.approx(np.linalg.norm(P.BOX_SIZE), abs=1e-9)     # 0.2492 m
    np.testing.assert_allclose(can.extents, [0.066, 0.066, 0.10], atol=1e-9)
    assert can.diameter == pytest.approx(np.hypot(0.066, 0.10), abs=1e-9)           # 0.1198 m
    np.testing.assert_allclose(part.extents, P.BRACKET_SIZE, atol=1e-9)             # 12x5x6.6 cm
    assert mug.extents[1] == pytest.approx(2 * P.MUG_RADIUS, abs=1e-9)
    assert mug.extents[2] == pytest.approx(P.MUG_HEIGHT, abs=1e-9)
    assert 2 * P.MUG_RADIUS + 0.02 < mug.extents[0] < 2 * P.MUG_RADIUS + 0.05       # the handle
    for o in objs.values():                                   # realistic 5-25 cm objects, centred
        assert 0.05 <= o.extents.max() <= 0.25 and 0.1 <= o.diameter <= 0.26
        np.testing.assert_allclose(o.center, 0.0, atol=1e-9)
        assert len(o.faces) >= 1500                           # dense enough for smooth shading
        # closed, outward-oriented surfaces: positive signed volume after merging duplicates
        import trimesh
        assert trimesh.Trimesh(o.vertices, o.faces).volume > 0
    assert box.as_trimesh().volume == pytest.approx(0.14 * 0.05 * 0.20, rel=1e-9)
    # BOP convention for cans: geometric continuous symmetry about z; nothing else is symmetric
    assert len(can.symmetries_continuous) == 1
    np.testing.assert_allclose(can.symmetries_continuous[0]["axis"], [0, 0, 1])
    np.testing.assert_allclose(can.symmetries_continuous[0]["offset"], [0, 0, 0])
    for o in (box, mug, part):
        assert o.symmetries_continuous == [] and o.symmetries_discrete == []
    # textured objects carry uv + texture (~4 px/mm), the others vertex colours
    assert box.texture.shape == (1200, 1520, 3) and can.texture is not None
    assert mug.vertex_colors is not None and part.vertex_colors is not None
    assert np.ptp(part.vertex_colors, axis=0).max() == 0.0     # one plain colour


def test_procedural_objects_are_deterministic_per_seed():
    a, b, c = P.textured_box(seed=3), P.textured_box(seed=3), P.textured_box(seed=4)
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != c.content_hash()
    np.testing.assert_array_equal(a.vertices, c.vertices)     # the seed changes the print only
    assert np.abs(a.texture.astype(int) - c.texture.astype(int)).mean() > 20
    with pytest.raises(InputError, match="unknown procedural object 'teapot'"):
        P.make_object("teapot")
    with pytest.raises(InputError, match="size"):
        P.textured_box(size=(0.1, -0.05, 0.2))


def test_industrial_part_is_low_texture_and_box_can_are_textured(renderer):
    e = {n: _albedo_gradient_energy(renderer, P.make_object(n, 0), f"tex_{n}")
         for n in P.PROCEDURAL}
    assert e["industrial_part"] < 1.0                         # uniform colour: ~0 (measured 0.0)
    assert e["textured_box"] > 2000                           # measured ~1e4
    assert e["can"] > 1000                                    # measured ~5e3
    assert e["textured_box"] > 1000 * max(e["industrial_part"], 1.0)


def test_random_textures_and_backgrounds():
    rng = np.random.default_rng(0)
    bg = P.random_background(120, 160, rng)
    assert bg.shape == (120, 160, 3) and bg.dtype == np.uint8
    assert bg.reshape(-1, 3).std(axis=0).mean() > 10          # not flat
    np.testing.assert_array_equal(bg, P.random_background(120, 160, np.random.default_rng(0)))
    assert not np.array_equal(bg, P.random_background(120, 160, np.random.default_rng(1)))
    for kind in ("stripes", "checker", "noise", "text", "blocks", "plain"):
        t = P.random_texture(64, 96, np.random.default_rng(1), kind)
        assert t.shape == (64, 96, 3) and t.dtype == np.uint8
    with pytest.raises(InputError, match="kind"):
        P.random_texture(64, 64, rng, "marble")
    prim = P.random_primitive(np.random.default_rng(2))
    assert 0.03 <= prim.extents.max() <= 0.15 + 1e-9


# ============================================================================================
# the generated dataset
# ============================================================================================
def test_dataset_layout(dataset):
    root, summary = dataset
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    n_inst = sum(1 for _ in _instances(root))
    assert summary.n_images == 3 and summary.n_instances == n_inst >= 3
    expected = {"dataset.json", "test_targets_bop19.json", "models/models_info.json",
                "test/000000/scene_camera.json", "test/000000/scene_gt.json",
                "test/000000/scene_gt_info.json"}
    expected |= {f"models/obj_{i:06d}.ply" for i in (1, 2, 3, 4)}
    expected |= {"models/obj_000001.png", "models/obj_000002.png"}     # textured box and can
    expected |= {f"test/000000/{k}/{i:06d}.png" for k in ("rgb", "depth") for i in range(3)}
    for _, im, g, *_ in _instances(root):
        expected |= {f"test/000000/{k}/{im:06d}_{g:06d}.png" for k in ("mask", "mask_visib")}
    assert set(names) == expected
    rgb = cv2.imread(str(root / "test/000000/rgb/000000.png"), cv2.IMREAD_UNCHANGED)
    depth = cv2.imread(str(root / "test/000000/depth/000000.png"), cv2.IMREAD_UNCHANGED)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert depth.shape == (H, W) and depth.dtype == np.uint16
    assert (depth > 0).mean() == 1.0           # the background plane gives depth everywhere
    cam = _json(root / "test/000000/scene_camera.json")["0"]
    assert cam == {"cam_K": [300.0, 0.0, 160.0, 0.0, 300.0, 120.0, 0.0, 0.0, 1.0],
                   "depth_scale": 0.1}
    meta = _json(root / "dataset.json")
    assert meta["config"]["seed"] == 0 and meta["config"]["width"] == W
    assert meta["objects"] == {"1": "procedural:textured_box", "2": "procedural:can",
                               "3": "procedural:mug", "4": "procedural:industrial_part"}
    info = load_models_info(root / "models/models_info.json")
    assert info[1]["diameter"] == pytest.approx(1000 * np.linalg.norm(P.BOX_SIZE), abs=1e-3)
    assert info[1]["size_x"] == pytest.approx(140.0, abs=1e-3)
    assert info[2]["symmetries_continuous"] == [{"axis": [0.0, 0.0, 1.0], "offset": [0.0, 0.0, 0.0]}]
    assert "symmetries_continuous" not in info[4]


def test_masks_equal_rerender_from_written_files(dataset, renderer):
    """Pixel-exact: every mask equals the object (loaded from models/) rendered alone at the pose
    read back from scene_gt.json; px_count_all / bbox_obj equal a BOP 3x-canvas re-render."""
    root, _ = dataset
    models = _models(root)
    n_truncated = 0
    for sdir, im, g, gt, info, K, _ in _instances(root):
        key = f"file_obj_{gt['obj_id']}"
        renderer.add_object(key, models[gt["obj_id"]])
        T = _pose(gt)
        mask = _read_mask(sdir / "mask" / f"{im:06d}_{g:06d}.png")
        re = renderer.render(key, T, K, W, H).mask[0]
        assert (re != mask).sum() == 0
        K3 = K.copy()
        K3[:2, 2] += (W, H)
        big = renderer.render(key, T, K3, 3 * W, 3 * H).mask[0]
        assert info["px_count_all"] == big.sum() >= mask.sum()
        ys, xs = big.nonzero()
        assert info["bbox_obj"] == [xs.min() - W, ys.min() - H, xs.max() - xs.min(),
                                    ys.max() - ys.min()]
        if big.sum() > mask.sum():                 # truncated: bbox_obj reaches outside, BOP-style
            n_truncated += 1
            x, y, w, h = info["bbox_obj"]
            assert x < 0 or y < 0 or x + w > W - 1 or y + h > H - 1
    assert n_truncated >= 1                         # seed 0 with keep_inside=0.3 has truncation


def test_gt_info_agrees_with_saved_masks_and_depth(dataset, renderer):
    root, summary = dataset
    models = _models(root)
    fracts, abs_err = [], []
    for sdir, im, g, gt, info, K, depth_scale in _instances(root):
        mask = _read_mask(sdir / "mask" / f"{im:06d}_{g:06d}.png")
        visib = _read_mask(sdir / "mask_visib" / f"{im:06d}_{g:06d}.png")
        depth_mm = cv2.imread(str(sdir / "depth" / f"{im:06d}.png"),
                              cv2.IMREAD_UNCHANGED).astype(np.float64) * depth_scale
        assert not (visib & ~mask).any()                                   # visib subset of mask
        assert visib.sum() == info["px_count_visib"]
        assert info["visib_fract"] == pytest.approx(info["px_count_visib"] / info["px_count_all"],
                                                    abs=1e-12)
        assert info["px_count_valid"] == ((depth_mm > 0) & mask).sum()
        if info["px_count_visib"] > 0:
            ys, xs = visib.nonzero()
            assert info["bbox_visib"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        # BOP bop19 visibility recomputed from the saved depth and a re-render: identical
        key = f"file_obj_{gt['obj_id']}"
        renderer.add_object(key, models[gt["obj_id"]])
        d_gt = renderer.render(key, _pose(gt), K, W, H).depth[0].astype(np.float64) * 1000.0
        ref, ref_visib = gt_info_bop(d_gt, depth_mm, K, 15.0, info["px_count_all"], info["bbox_obj"])
        assert ref == info and np.array_equal(ref_visib, visib)
        # depth png at the visible object pixels = rendered depth + N(0, 1 mm) noise
        err = depth_mm[visib] - d_gt[visib]
        abs_err.append(np.abs(err))
        fracts.append(info["visib_fract"])
    err = np.concatenate(abs_err)
    assert err.mean() < 2.0                                   # measured 0.80 mm
    assert 0.6 < err.mean() < 1.0                             # = 1 mm * sqrt(2/pi): noise applied
    assert np.array_equal(np.array(fracts), summary.visib_fract)
    assert min(fracts) >= 0.5                                 # "mild" occlusion keeps >= 0.5


def test_targets_list_instances_above_visibility_threshold(dataset):
    root, summary = dataset
    counts: dict[tuple, int] = {}
    for sdir, im, _g, gt, info, *_ in _instances(root):
        if info["visib_fract"] >= 0.1:
            k = (int(sdir.name), im, gt["obj_id"])
            counts[k] = counts.get(k, 0) + 1
    targets = _json(root / "test_targets_bop19.json")
    assert [(t["scene_id"], t["im_id"], t["obj_id"]) for t in targets] == sorted(counts)
    assert all(t["inst_count"] == counts[(t["scene_id"], t["im_id"], t["obj_id"])] for t in targets)
    assert summary.n_targets == sum(counts.values())


def test_bop_reader_reads_the_dataset(dataset):
    from coop_ros.bop.dataset import BopDataset

    root, _ = dataset
    ds = BopDataset(root)
    assert ds.images() == [(0, 0), (0, 1), (0, 2)]
    fr = ds.frame(0, 0)
    gts = _json(root / "test/000000/scene_gt.json")["0"]
    assert len(fr.gt) == len(gts)
    for g, gt in zip(fr.gt, gts):
        assert g.obj_id == gt["obj_id"]
        np.testing.assert_allclose(g.T_cam_obj, _pose(gt), atol=1e-12)
    raw = cv2.imread(str(root / "test/000000/depth/000000.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(fr.depth, raw * 1e-4, atol=1e-7)          # metres (scale 0.1 mm)
    assert ds.diameter(2) == pytest.approx(np.hypot(0.066, 0.10), abs=1e-6)
    assert len(ds.object(2).symmetries_continuous) == 1


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_identical_files_different_seed_different(dataset, tmp_path):
    root, _ = dataset
    generate_dataset(tmp_path / "again", seed=0, **ARGS)
    a, b = _hashes(root), _hashes(tmp_path / "again")
    assert a == b and len(a) > 20
    generate_dataset(tmp_path / "other", seed=1, **{**ARGS, "images_per_scene": 1})
    c = _hashes(tmp_path / "other")
    for f in ("test/000000/rgb/000000.png", "test/000000/depth/000000.png",
              "test/000000/scene_gt.json"):
        assert c[f] != a[f]
    assert c["models/obj_000001.png"] == a["models/obj_000001.png"]     # same objects (object_seed)


def test_bad_arguments_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="occlusion"):
        generate_dataset(tmp_path / "x", occlusion="total", **ARGS)
    with pytest.raises(InputError, match="unknown procedural object 'teapot'"):
        generate_dataset(tmp_path / "x", objects=["teapot"], **ARGS)
    with pytest.raises(InputError, match="objects_per_image"):
        generate_dataset(tmp_path / "x", objects_per_image=(0, 2), **ARGS)
    with pytest.raises(InputError, match="principal point"):
        generate_dataset(tmp_path / "x", K=np.array([[300.0, 0, 900], [0, 300, 120], [0, 0, 1]]),
                         **ARGS)
    with pytest.raises(InputError, match="unknown option"):
        generate_dataset(tmp_path / "x", fog=True, **ARGS)


def test_cli_synth_with_a_user_mesh(tmp_path, capsys):
    from coop_ros.cli import main

    part = P.industrial_part(seed=0)
    write_ply(tmp_path / "part.ply", part)
    out = tmp_path / "cli"
    rc = main(["synth", "--out", str(out), "--objects", "can", "--mesh", str(tmp_path / "part.ply"),
               "--units", "mm", "--scenes", "1", "--images", "1", "--seed", "5", "--width", "160",
               "--height", "120", "--background", "image", "--quiet"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    meta = _json(out / "dataset.json")
    assert meta["objects"] == {"1": "procedural:can", "2": "mesh:part.ply"}
    assert meta["config"]["background"] == "image"
    info = load_models_info(out / "models/models_info.json")
    assert info[2]["size_x"] == pytest.approx(120.0, abs=1e-3)
    assert cv2.imread(str(out / "test/000000/rgb/000000.png")).shape == (120, 160, 3)
    # 2D background image: no depth off the objects; every target pixel has depth
    depth = cv2.imread(str(out / "test/000000/depth/000000.png"), cv2.IMREAD_UNCHANGED)
    assert 0.0 < (depth > 0).mean() < 1.0
    infos = _json(out / "test/000000/scene_gt_info.json")["0"]
    for g, inf in enumerate(infos):
        m = cv2.imread(str(out / f"test/000000/mask/000000_{g:06d}.png"), cv2.IMREAD_UNCHANGED) > 0
        assert inf["px_count_valid"] == m.sum() > 0
