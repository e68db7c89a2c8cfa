"""ObjectModel: loading (PLY colours, OBJ textures, BOP PLY), units, diameter, symmetries."""
import json
import math
import warnings

import numpy as np
import pytest
import trimesh
from PIL import Image

from coop_ros.errors import InputError
from coop_ros.objects import (ObjectModel, UnitsWarning, load_models_info, models_info_entry,
                              parse_bop_symmetries)

# A 180 deg turn about z with a 10 mm shift along z (BOP layout: 16 numbers, row-major, mm).
SYM_Z180_MM = [-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 10, 0, 0, 0, 1]


def _box(extents=(0.2, 0.1, 0.05)):
    return trimesh.creation.box(extents=extents)


def _write_quad_obj(folder, with_png=True):
    """Unit quad (m) with UVs; texture 4 x 8 px: top row red, bottom row blue, rest grey."""
    (folder / "quad.obj").write_text(
        "mtllib quad.mtl\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
        "usemtl mat0\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n")
    (folder / "quad.mtl").write_text("newmtl mat0\nKd 1 1 1\nmap_Kd tex.png\n")
    img = np.full((4, 8, 3), 128, np.uint8)
    img[0] = (255, 0, 0)
    img[-1] = (0, 0, 255)
    if with_png:
        Image.fromarray(img).save(folder / "tex.png")
    return folder / "quad.obj", img


def test_unit_cube_diameter_extents_center():
    obj = ObjectModel.from_trimesh(_box((1.0, 1.0, 1.0)), units="m", name="cube")
    assert obj.diameter == pytest.approx(math.sqrt(3.0), abs=1e-9)
    assert np.allclose(obj.extents, [1, 1, 1], atol=1e-12)
    assert np.allclose(obj.center, [0, 0, 0], atol=1e-12)
    assert obj.vertices.dtype == np.float64 and obj.faces.dtype == np.int64
    assert not obj.units_suspect


def test_mm_are_scaled_to_metres():
    mesh = _box((100.0, 50.0, 20.0))
    mesh.apply_translation([10.0, 0.0, -5.0])
    obj = ObjectModel.from_trimesh(mesh, units="mm", name="box_mm")
    assert np.allclose(obj.extents, [0.1, 0.05, 0.02], atol=1e-12)
    assert np.allclose(obj.center, [0.01, 0.0, -0.005], atol=1e-12)
    assert obj.diameter == pytest.approx(math.sqrt(0.1**2 + 0.05**2 + 0.02**2), abs=1e-12)
    assert obj.units == "mm"


def test_bad_units_raise():
    with pytest.raises(InputError, match="cm"):
        ObjectModel.from_trimesh(_box(), units="cm")
    with pytest.raises(InputError, match="units"):
        ObjectModel.load("whatever.ply", units="inch")


def test_missing_and_empty_files_raise(tmp_path):
    missing = tmp_path / "nope.ply"
    with pytest.raises(InputError, match="nope.ply"):
        ObjectModel.load(missing)
    empty = tmp_path / "empty.ply"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.ply"):
        ObjectModel.load(empty)
    garbage = tmp_path / "garbage.obj"
    garbage.write_text("this is not a mesh\n")
    with pytest.raises(InputError, match="garbage.obj"):
        ObjectModel.load(garbage)


def test_ply_vertex_colours_roundtrip(tmp_path):
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=50.0)  # mm
    rng = np.random.default_rng(0)
    colors = rng.integers(0, 256, size=(len(mesh.vertices), 4), dtype=np.uint8)
    colors[:, 3] = 255
    mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=colors, process=False)
    path = tmp_path / "sphere.ply"
    mesh.export(path)
    obj = ObjectModel.load(path, units="mm")
    assert obj.name == "sphere" and obj.source_path == str(path)
    assert obj.vertex_colors.dtype == np.float32 and obj.vertex_colors.shape == (162, 3)
    assert 0.0 <= obj.vertex_colors.min() and obj.vertex_colors.max() <= 1.0
    assert np.allclose(obj.vertex_colors, colors[:, :3] / 255.0, atol=1e-6)
    assert np.allclose(obj.vertices, mesh.vertices * 1e-3, atol=1e-9)   # order kept
    assert np.array_equal(obj.faces, mesh.faces)
    assert obj.texture is None and obj.uv is None
    assert obj.diameter == pytest.approx(0.1, abs=1e-6)


def test_obj_with_texture(tmp_path):
    path, img = _write_quad_obj(tmp_path)
    obj = ObjectModel.load(path, units="m")
    assert obj.texture.shape == (4, 8, 3) and obj.texture.dtype == np.uint8
    assert np.array_equal(obj.texture, img)                       # row 0 = top of the file
    assert obj.uv.shape == (4, 2) and obj.uv.dtype == np.float32
    assert np.allclose(obj.vertices, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    assert np.allclose(obj.uv, obj.vertices[:, :2])               # vt == xy for this quad
    # OpenGL convention: v = 0 is the bottom row (blue), v = 1 the top row (red)
    h = obj.texture.shape[0]
    row = lambda v: min(int((1.0 - v) * h), h - 1)  # noqa: E731
    assert tuple(obj.texture[row(obj.uv[0, 1]), 0]) == (0, 0, 255)
    assert tuple(obj.texture[row(obj.uv[2, 1]), 0]) == (255, 0, 0)


def test_bop_style_ply_with_texture_file(tmp_path):
    # BOP layout: per-vertex texture_u / texture_v and "comment TextureFile", coordinates in mm
    verts = [(0, 0, 0, 0.0, 0.0), (100, 0, 0, 1.0, 0.0), (100, 100, 0, 1.0, 1.0),
             (0, 100, 0, 0.0, 1.0), (0, 0, 100, 0.25, 0.75)]
    header = ["ply", "format ascii 1.0", "comment TextureFile tex.png",
              f"element vertex {len(verts)}",
              "property float x", "property float y", "property float z",
              "property float texture_u", "property float texture_v", "element face 3",
              "property list uchar int vertex_indices", "end_header"]
    body = [" ".join(map(str, v)) for v in verts] + ["3 0 1 2", "3 0 2 3", "3 0 1 4"]
    path = tmp_path / "obj_000007.ply"
    path.write_text("\n".join(header + body) + "\n")
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :, 1] = np.arange(8)[:, None] * 30
    Image.fromarray(img).save(tmp_path / "tex.png")
    obj = ObjectModel.load(path, units="mm")
    assert np.allclose(obj.vertices, np.array(verts)[:, :3] * 1e-3)         # order kept
    assert np.allclose(obj.uv, np.array(verts)[:, 3:], atol=1e-7)
    assert np.array_equal(obj.texture, img)
    (tmp_path / "tex.png").unlink()
    with pytest.warns(UserWarning, match="tex.png"):
        bare = ObjectModel.load(path, units="mm")
    assert bare.texture is None and bare.uv is None and bare.vertices.shape == (5, 3)


def test_from_trimesh_texture_and_placeholder():
    mesh = _box()
    uv = np.random.default_rng(5).random((8, 2))
    img = np.random.default_rng(6).integers(0, 256, (16, 32, 4), dtype=np.uint8)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(img))
    obj = ObjectModel.from_trimesh(mesh, units="m")
    assert np.array_equal(obj.texture, img[:, :, :3]) and np.allclose(obj.uv, uv, atol=1e-7)
    # without an image trimesh reports a uniform 2x2 placeholder: it must not become a texture
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv)
    assert np.asarray(mesh.visual.material.image).shape[:2] == (2, 2)
    bare = ObjectModel.from_trimesh(mesh, units="m")
    assert bare.texture is None and bare.uv is None


def test_obj_missing_texture_warns_and_loads_untextured(tmp_path):
    path, _ = _write_quad_obj(tmp_path, with_png=False)
    with pytest.warns(UserWarning, match="tex.png"):
        obj = ObjectModel.load(path, units="m")
    assert obj.texture is None and obj.uv is None
    assert obj.vertices.shape == (4, 3) and obj.faces.shape == (2, 3)


def test_units_warning_mm_declared_metre_coordinates(tmp_path):
    path = tmp_path / "tiny.ply"
    _box((0.2, 0.1, 0.05)).export(path)            # metres written to the file
    with pytest.warns(UnitsWarning, match="looks like metres") as rec:
        obj = ObjectModel.load(path, units="mm")
    w = rec[0].message
    assert "tiny" in str(w) and "0.2291 mm" in str(w)
    assert w.likely_units == "m" and w.declared_units == "mm" and w.units_suspect
    assert w.diameter == pytest.approx(0.229129, abs=1e-6)
    assert obj.units_suspect
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # the right unit: no warning at all
        assert not ObjectModel.load(path, units="m").units_suspect


def test_units_warning_m_declared_millimetre_coordinates():
    with pytest.warns(UnitsWarning, match="looks like millimetres") as rec:
        obj = ObjectModel.from_trimesh(_box((200.0, 100.0, 50.0)), units="m", name="big")
    assert "big" in str(rec[0].message) and "229.1 m" in str(rec[0].message)
    assert rec[0].message.likely_units == "mm" and obj.units_suspect


def test_bop_symmetries_parse_to_metres():
    info = {"diameter": 120.0,
            "symmetries_discrete": [SYM_Z180_MM],
            "symmetries_continuous": [{"axis": [0, 0, 2], "offset": [0, 0, 20]}]}
    disc, cont = parse_bop_symmetries(info)
    assert len(disc) == 1 and disc[0].shape == (4, 4)
    assert np.allclose(disc[0][:3, 3], [0, 0, 0.01])
    assert np.allclose(disc[0][:3, :3], np.diag([-1, -1, 1]))
    assert np.allclose(cont[0]["axis"], [0, 0, 1]) and np.allclose(cont[0]["offset"], [0, 0, 0.02])
    with pytest.raises(InputError, match="symmetries_discrete"):
        parse_bop_symmetries({"symmetries_discrete": [[1, 0, 0]]})
    with pytest.raises(InputError, match="symmetries_continuous"):
        parse_bop_symmetries({"symmetries_continuous": [{"axis": [0, 0, 0], "offset": [0, 0, 0]}]})


def test_models_info_file_and_entry_roundtrip(tmp_path):
    info = {"1": {"diameter": 172.063, "min_x": -51.1445, "symmetries_discrete": [SYM_Z180_MM]},
            "5": {"diameter": 50.0,
                  "symmetries_continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 0]}]}}
    path = tmp_path / "models_info.json"
    path.write_text(json.dumps(info))
    loaded = load_models_info(path)
    assert sorted(loaded) == [1, 5]
    assert loaded[1]["diameter"] == 172.063 and loaded[1]["symmetries_discrete"] == [SYM_Z180_MM]
    with pytest.raises(InputError, match="nothere.json"):
        load_models_info(tmp_path / "nothere.json")

    # a 100 x 50 x 20 mm box written in mm, loaded with the entry of object 1
    mesh = _box((100.0, 50.0, 20.0))
    ply = tmp_path / "obj_000001.ply"
    mesh.export(ply)
    obj = ObjectModel.load(ply, units="mm", models_info=loaded[1])
    assert np.allclose(obj.symmetries_discrete[0][:3, 3], [0, 0, 0.01])
    # a whole models_info dict is accepted: the entry is picked from the file stem (id 1)
    obj_all = ObjectModel.load(ply, units="mm", models_info=loaded)
    assert len(obj_all.symmetries_discrete) == 1
    entry = models_info_entry(obj)
    assert entry["diameter"] == pytest.approx(math.sqrt(100**2 + 50**2 + 20**2), abs=1e-9)
    assert (entry["min_x"], entry["min_y"], entry["min_z"]) == pytest.approx((-50, -25, -10))
    assert (entry["size_x"], entry["size_y"], entry["size_z"]) == pytest.approx((100, 50, 20))
    assert np.allclose(entry["symmetries_discrete"][0], SYM_Z180_MM)
    assert "symmetries_continuous" not in entry
    json.dumps(entry)                                          # JSON-serialisable


def test_symmetry_transforms_continuous_axis():
    # axis z through (10, 0, 0) mm: every transform rotates about that line
    info = {"symmetries_continuous": [{"axis": [0, 0, 1], "offset": [10, 0, 0]}]}
    obj = ObjectModel.from_trimesh(trimesh.creation.cylinder(radius=0.05, height=0.1, sections=32),
                                   units="m", models_info=info)
    S = obj.symmetry_transforms()                              # step 0.01 -> ceil(pi / 0.01)
    assert S.shape == (315, 4, 4)
    assert np.allclose(S[0], np.eye(4), atol=1e-15)
    R = S[:, :3, :3]
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(R), 1.0)
    assert np.allclose(R @ np.array([0, 0, 1.0]), [0, 0, 1], atol=1e-12)   # about z
    on_axis = np.array([0.01, 0.0, 0.03, 1.0])                 # a point of the axis line is fixed
    assert np.allclose(S @ on_axis, on_axis, atol=1e-12)
    angles = np.degrees(np.arctan2(R[:, 1, 0], R[:, 0, 0])) % 360
    assert np.allclose(np.sort(angles), np.arange(315) * 360 / 315, atol=1e-9)
    # consecutive steps move the farthest vertex by at most max_sym_disc_step * diameter
    v = obj.vertices
    step_move = np.linalg.norm(v @ R[1].T + S[1, :3, 3] - v, axis=1).max()
    assert step_move <= 0.01 * obj.diameter
    assert obj.symmetry_transforms(0.1).shape == (32, 4, 4)   # ceil(31.4)
    with pytest.raises(InputError, match="max_sym_disc_step"):
        obj.symmetry_transforms(0.0)


def test_symmetry_transforms_discrete_and_combined():
    disc_only = ObjectModel.from_trimesh(_box(), units="m",
                                         models_info={"symmetries_discrete": [SYM_Z180_MM]})
    S = disc_only.symmetry_transforms()
    assert S.shape == (2, 4, 4) and np.allclose(S[0], np.eye(4))
    assert np.allclose(S[1][:3, 3], [0, 0, 0.01])
    assert ObjectModel.from_trimesh(_box(), units="m").symmetry_transforms().shape == (1, 4, 4)
    both = ObjectModel.from_trimesh(_box(), units="m", models_info={
        "symmetries_discrete": [SYM_Z180_MM],
        "symmetries_continuous": [{"axis": [1, 0, 0], "offset": [0, 0, 0]}]})
    S2 = both.symmetry_transforms()
    assert S2.shape == (630, 4, 4) and np.allclose(S2[0], np.eye(4))


def test_sample_surface_is_seeded_and_area_uniform():
    obj = ObjectModel.from_trimesh(_box((0.2, 0.1, 0.05)), units="m")
    a = obj.sample_surface(20000, seed=3)
    assert a.shape == (20000, 3) and a.dtype == np.float64
    assert np.array_equal(a, obj.sample_surface(20000, seed=3))
    assert not np.array_equal(a, obj.sample_surface(20000, seed=4))
    half = np.array([0.1, 0.05, 0.025])
    assert np.all(np.abs(a) <= half + 1e-12)
    on_face = np.isclose(np.abs(a), half, atol=1e-12)
    assert np.all(on_face.any(axis=1))                          # every point on a face
    # the two z faces hold 2 * 0.02 / 0.07 = 57.1 % of the area
    assert on_face[:, 2].mean() == pytest.approx(0.04 / 0.07, abs=0.02)
    with pytest.raises(InputError, match="n"):
        obj.sample_surface(0)


def test_content_hash():
    mesh = _box()
    a = ObjectModel.from_trimesh(mesh, units="m")
    b = ObjectModel.from_trimesh(mesh.copy(), units="m", name="other name")
    assert a.content_hash() == b.content_hash() and len(a.content_hash()) == 64
    colored = ObjectModel.from_trimesh(mesh, units="m",
                                       vertex_colors=np.full((8, 3), 0.5, np.float32))
    assert colored.content_hash() != a.content_hash()
    mm = ObjectModel.from_trimesh(_box((200.0, 100.0, 50.0)), units="mm")
    assert np.allclose(mm.vertices, a.vertices)
    assert mm.content_hash() != a.content_hash()                # units are part of the key


def test_constructor_validates():
    with pytest.raises(InputError, match="faces"):
        ObjectModel(name="bad", vertices=np.zeros((3, 3)), faces=np.array([[0, 1, 5]]))
    with pytest.raises(InputError, match="vertex_colors"):
        ObjectModel(name="bad", vertices=np.eye(3), faces=np.array([[0, 1, 2]]),
                    vertex_colors=np.full((3, 3), 2.0))


def test_real_ycbv_master_chef_can(shared_real):
    path = shared_real / "ycbv_s48_im1_masterchefcan" / "obj_000001.ply"
    # its header names obj_000001.png, which is not shipped: warn and load untextured
    with pytest.warns(UserWarning, match="obj_000001.png"):
        obj = ObjectModel.load(path, units="mm")
    assert obj.vertices.shape == (9951, 3) and obj.faces.shape == (15728, 3)
    assert np.allclose(obj.vertices[0], [-0.0450355, -0.0225, -0.066936], atol=1e-9)  # order kept
    assert obj.diameter == pytest.approx(0.17206, rel=0.01)       # BOP ycbv obj 1: 172.063 mm
    assert np.allclose(obj.extents, [0.102289, 0.102446, 0.140144], atol=1e-6)
    assert obj.texture is None and obj.uv is None and obj.vertex_colors is None
    assert not obj.units_suspect
    entry = models_info_entry(obj)
    assert entry["diameter"] == pytest.approx(172.063, abs=0.01)
    assert entry["min_z"] == pytest.approx(-70.072, abs=1e-3)
