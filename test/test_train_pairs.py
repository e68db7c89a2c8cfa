"""Training pairs: the ground truth is geometrically exact (checked against independent renders),
augmentation is deterministic, configs validate with messages naming the field."""
import numpy as np
import pytest
import torch

from coop_ros.errors import InputError
from coop_ros.geometry.camera import make_crop
from coop_ros.train.augment import augment_rgb
from coop_ros.train.config import AugmentConfig, DataConfig, PairConfig, TrainConfig, load_config
from coop_ros.train.pairs import (PairDataset, SceneSource, coarse_pair, refiner_pair,
                                  selection_pair, symmetric_errors)

torch.set_num_threads(1)
S = 96


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from coop_ros.synth.scenes import generate_dataset
    d = tmp_path_factory.mktemp("pairs")
    generate_dataset(d / "ds", ["textured_box", "mug"], n_scenes=1, images_per_scene=3,
                     width=320, height=240, objects_per_image=(1, 2), distractors=(0, 1),
                     occlusion="mild", progress=False, distance_m=(0.5, 0.7))
    src = SceneSource([d / "ds"], DataConfig(train=["x"], crop_size=S,
                                             template_cache=str(d / "tpl")))
    yield src
    src.release()


def test_coarse_labels_point_at_the_same_object_point(source):
    pc = PairConfig(box_jitter=0.0, near_template_prob=1.0)
    rng = np.random.default_rng(0)
    n_checked = 0
    for inst in source.instances[:4]:
        p = coarse_pair(source, inst, rng, pc)
        cls, off = p["cls"].numpy(), p["offset"].numpy()
        K = (S // 16) ** 2
        assert cls.shape == (K,) and cls.min() >= 0 and cls.max() <= K
        m = cls < K
        assert m.sum() > 3
        # template pixel decoded exactly as the pipeline does
        j = cls[m]
        G = S // 16
        uv = np.stack([((j % G) + 0.5 + off[m, 0]) * 16 - 0.5,
                       ((j // G) + 0.5 + off[m, 1]) * 16 - 0.5], 1)
        bank = source.bank(inst.ds, inst.obj_id)
        t = int(p["template_index"])
        Xt = bank.xyz[t][np.rint(uv[:, 1]).astype(int), np.rint(uv[:, 0]).astype(int)]
        # query side: independent render of the object at its GT pose in the query crop
        fr = source.frame(inst)
        obj, key = source.object(inst.ds, inst.obj_id)
        crop = make_crop(fr.gt_info[inst.gt_idx].bbox_visib, size=S, margin=0.2,
                         image_size=(fr.width, fr.height))
        ren = source.renderer.render(key, fr.gt[inst.gt_idx].T_cam_obj,
                                     crop.intrinsics(fr.K), width=S, height=S)
        r, c = np.divmod(np.nonzero(m)[0], G)
        Xq = ren.xyz[0][16 * r + 8, 16 * c + 8]
        err = np.linalg.norm(Xt - Xq, axis=1) / obj.diameter
        assert np.median(err) < 0.03, err
        n_checked += m.sum()
    assert n_checked > 20


def test_refiner_flow_targets_are_exact(source):
    pc = PairConfig(refine_rot_deg=10.0)
    rng = np.random.default_rng(1)
    for inst in source.instances[:3]:
        p = refiner_pair(source, inst, rng, pc)
        valid = p["flow_valid"].numpy()
        assert valid.sum() > 50
        assert (valid <= p["render_mask"].numpy()).all()
        v, u = np.nonzero(valid)
        tgt = np.stack([u, v], 1) + p["flow"].numpy()[v, u]
        # re-render at GT in the same crop: the target pixel shows the same object point
        obj, key = source.object(inst.ds, inst.obj_id)
        ren = source.renderer.render(key, p["T_gt"].numpy(), p["K"].numpy(), width=S, height=S)
        ti = np.clip(np.rint(tgt).astype(int), 0, S - 1)
        X_gt = ren.xyz[0][ti[:, 1], ti[:, 0]]
        X_r = p["xyz"].numpy()[v, u]
        err = np.linalg.norm(X_gt - X_r, axis=1) / obj.diameter
        assert np.median(err) < 0.02
        assert p["T_init"].shape == (4, 4) and p["points"].shape[1] == 3


def test_selection_labels_follow_the_thresholds(source):
    pc = PairConfig()
    rng = np.random.default_rng(2)
    labels = []
    for i in range(12):
        inst = source.instances[i % len(source.instances)]
        p = selection_pair(source, inst, rng, pc)
        lab = bool(p["label"])
        assert lab == (float(p["rot_err"]) < pc.pos_rot_deg and float(p["trans_err"]) < pc.pos_trans)
        labels.append(lab)
    assert 0 < sum(labels) < len(labels)


def test_symmetric_errors_use_symmetries():
    from coop_ros.geometry.se3 import rotvec_to_matrix
    T = np.eye(4)
    T[:3, 3] = [0, 0, 0.5]
    T2 = T.copy()
    T2[:3, :3] = rotvec_to_matrix(np.array([0, 0, np.pi / 2]))
    syms = np.stack([np.eye(4), np.eye(4)])
    syms[1, :3, :3] = rotvec_to_matrix(np.array([0, 0, np.pi / 2]))
    assert symmetric_errors(T2, T, syms[:1])[0] == pytest.approx(90, abs=1e-6)
    assert symmetric_errors(T2, T, syms)[0] == pytest.approx(0, abs=1e-4)


def test_pair_dataset_is_deterministic(source):
    ds = PairDataset(source, "coarse", PairConfig(), AugmentConfig(), seed=3)
    a, b = ds[1], ds[1]
    assert torch.equal(a["query"], b["query"]) and torch.equal(a["cls"], b["cls"])
    ds.set_epoch(1)
    c = ds[1]
    assert not torch.equal(a["query"], c["query"]) or not torch.equal(a["cls"], c["cls"])


def test_augment_is_deterministic_and_keeps_shape():
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    cfg = AugmentConfig(blur_p=1, sharpness_p=1, contrast_p=1, brightness_p=1, color_p=1)
    a = augment_rgb(rgb, np.random.default_rng(5), cfg)
    b = augment_rgb(rgb, np.random.default_rng(5), cfg)
    assert a.shape == rgb.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, rgb)
    np.testing.assert_array_equal(augment_rgb(rgb, np.random.default_rng(5),
                                              AugmentConfig(enabled=False)), rgb)


def test_config_validation_names_the_field(tmp_path):
    with pytest.raises(InputError, match="data.train"):
        TrainConfig().validate()
    with pytest.raises(InputError, match="optim.bogus"):
        TrainConfig.from_dict({"data": {"train": ["x"]}, "optim": {"bogus": 1}})
    with pytest.raises(InputError, match="task"):
        TrainConfig.from_dict({"task": "segmenter", "data": {"train": ["x"]}})
    p = tmp_path / "c.yaml"
    p.write_text("task: refiner\ndata: {train: [a]}\noptim: {lr: 1.0e-4, betas: [0.9, 0.99]}\n")
    cfg = load_config(p, {"steps": 7})
    assert cfg.task == "refiner" and cfg.steps == 7 and cfg.optim.betas == (0.9, 0.99)
    assert TrainConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_train_configs_validate():
    """Every config/train_*.yaml loads: no unknown key, every value in range."""
    from pathlib import Path

    from coop_ros.train.config import load_config

    files = sorted((Path(__file__).resolve().parents[1] / "config").glob("train_*.yaml"))
    assert len(files) >= 11
    tasks = {load_config(f).task for f in files}
    assert tasks == {"coarse", "refiner", "selection"}


def test_dotted_overrides(tmp_path):
    from coop_ros.train.config import load_config, parse_set

    p = tmp_path / "c.yaml"
    p.write_text("task: coarse\nmodel: {backbone: large, key_dim: 256}\ndata: {train: [a]}\n")
    sets = parse_set(["model.backbone=tiny", "batch_size=2", "data.val=[b, c]",
                      "max_minutes=0.5"])
    cfg = load_config(p, sets)
    assert cfg.model == {"backbone": "tiny", "key_dim": 256}
    assert cfg.batch_size == 2 and cfg.data.val == ["b", "c"] and cfg.max_minutes == 0.5
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_set(["batch_size"])
    with pytest.raises(InputError, match="data.bogus"):
        load_config(p, {"data.bogus": 1})


def test_mesh_pool_objects(tmp_path):
    """Mesh files become training objects: centred, scaled to 6-16 cm, subdivided, coloured;
    the draw from a glob is seeded; bad files are named."""
    import trimesh

    from coop_ros.synth.procedural import textured_mesh
    from coop_ros.train.shapes import make_objects, pick_meshes

    for k in range(5):   # a pool of OBJ files in arbitrary units (here: cm-sized numbers)
        m = trimesh.creation.box(extents=[6.0 + k, 8.0, 2.0])
        m.apply_translation([10.0 * k, 3.0, -2.0])
        (tmp_path / f"{k:03d}").mkdir()
        m.export(tmp_path / f"{k:03d}" / f"{k:03d}.obj")
    glob = str(tmp_path / "*" / "*.obj")
    a, b = pick_meshes(glob, 3, seed=4), pick_meshes(glob, 3, seed=4)
    assert a == b and len(set(a)) == 3
    with pytest.raises(InputError, match="matches 5 file"):
        pick_meshes(glob, 6, seed=0)
    objs = make_objects((), 0, shape_seed=4, meshes=a)
    assert [o.name for o in objs.values()] == [f"mesh_{p.split('/')[-1][:-4]}" for p in a]
    for o in objs.values():
        ext = np.ptp(o.vertices, axis=0)
        assert 0.06 <= ext.max() <= 0.16 + 1e-9
        np.testing.assert_allclose(o.vertices.max(0) + o.vertices.min(0), 0, atol=1e-9)
        assert len(o.vertices) > 100                       # subdivided: 8 corners -> many
        assert o.vertex_colors is not None and o.vertex_colors.shape == o.vertices.shape
    o1 = textured_mesh(a[0], np.random.default_rng(1))
    o2 = textured_mesh(a[0], np.random.default_rng(1))
    np.testing.assert_array_equal(o1.vertex_colors, o2.vertex_colors)
    with pytest.raises(InputError, match="does not exist"):
        textured_mesh(tmp_path / "nope.obj", np.random.default_rng(0))
    (tmp_path / "bad.obj").write_text("not a mesh\n")
    with pytest.raises(InputError, match="bad.obj"):
        textured_mesh(tmp_path / "bad.obj", np.random.default_rng(0))


def test_pairs_from_realistic_scenes_and_the_preset_check(tmp_path, source):
    """data.preset: realistic samples pairs from realistic folders and refuses other ones."""
    from coop_ros.train.shapes import make_shapes_dataset

    make_shapes_dataset(tmp_path / "real", names=("mug",), n_primitives=1, images=2, width=320,
                        height=240, progress=False, preset="realistic")
    cfg = DataConfig(train=["x"], crop_size=S, template_cache=str(tmp_path / "tpl"),
                     min_visib_fract=0.2, preset="realistic")
    src = SceneSource([tmp_path / "real"], cfg)
    try:
        assert len(src.instances) >= 2
        matched = 0
        for inst in src.instances:
            pair = coarse_pair(src, inst, np.random.default_rng(0), PairConfig(), None)
            assert pair["query"].shape[-2:] == (S, S)
            matched += int((pair["cls"] < (S // 16) ** 2).any())   # patches match the template
        # an occluded instance in clutter may have none (5 of these 8 have some)
        assert matched >= 2
    finally:
        src.release()
    with pytest.raises(InputError, match="holds 'default' scenes"):
        SceneSource([source.datasets[0].root], cfg)
    with pytest.raises(InputError, match="data.preset"):
        TrainConfig(data=DataConfig(train=["x"], preset="photoreal")).validate()
