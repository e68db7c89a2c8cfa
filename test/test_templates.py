"""Template bank: views, framing, 2D-3D consistency, disk cache, CLI."""
import numpy as np
import pytest
import trimesh

import coop_ros.render.templates as tpl
from coop_ros.cli import main as cli_main
from coop_ros.geometry.camera import project
from coop_ros.geometry.viewpoints import viewpoint_directions
from coop_ros.objects import ObjectModel
from coop_ros.render import Renderer
from coop_ros.render.templates import (FORMAT_VERSION, TemplateBank, TemplateCacheWarning,
                                       build_template_bank, template_camera)

SIZE = 96   # small templates keep the tests fast; the default 224 is benchmarked in bench/


def _ball(offset=(0.01, -0.02, 0.03)):
    """Coloured icosphere of radius 5 cm whose centre is off the origin (tests the centring)."""
    m = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    V = np.asarray(m.vertices) + offset
    colors = (0.5 + 0.5 * np.asarray(m.vertices) / 0.05).astype(np.float32)
    return ObjectModel(name="ball", vertices=V, faces=np.asarray(m.faces), vertex_colors=colors)


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(SIZE, SIZE)
    yield r
    r.release()


def test_template_camera_formula():
    K, d = template_camera(0.2, size=224)
    assert K[0, 0] == K[1, 1] == 448.0 and K[0, 2] == K[1, 2] == 111.5
    assert d == pytest.approx(0.5)                       # 2 * D / 0.8
    assert 0.2 * K[0, 0] / d == pytest.approx(0.8 * 224)
    with pytest.raises(tpl.InputError, match="diameter"):
        template_camera(0.0)


def test_bank_views_framing_and_correspondences(renderer, tmp_path):
    obj = _ball()
    keys_before = renderer.keys()
    bank = build_template_bank(obj, renderer, n_views=42, size=SIZE, cache_dir=tmp_path)
    assert renderer.keys() == keys_before            # the caller's renderer is left as it was
    assert len(bank) == bank.n_views == 42 and bank.level == 0 and bank.size == SIZE
    assert bank.poses.shape == (42, 4, 4) and bank.rgb.shape == (42, SIZE, SIZE, 3)
    assert bank.depth.dtype == np.float32 and bank.xyz.dtype == np.float32
    assert bank.mask.dtype == bool and bank.mask.any(axis=(1, 2)).all()
    # cameras on the 42 icosphere directions around the bbox centre, centre on the optical axis
    c = obj.center
    eyes = np.stack([-(T[:3, :3].T @ T[:3, 3]) for T in bank.poses]) - c
    assert np.allclose(eyes / np.linalg.norm(eyes, axis=1, keepdims=True),
                       viewpoint_directions(42), atol=1e-9)
    assert np.allclose(np.linalg.norm(eyes, axis=1), bank.distance)
    for T in bank.poses:
        uv, z = project(bank.K, T, c[None])
        assert np.allclose(uv, (SIZE - 1) / 2, atol=1e-9) and z[0] == pytest.approx(bank.distance)
    # the object fills 60-95 % of the template width (a sphere: 0.8 / sqrt(1 - 0.2^2) = 0.816)
    width = np.array([max(m.any(0).sum(), m.any(1).sum()) for m in bank.mask]) / SIZE
    assert width.min() >= 0.6 and width.max() <= 0.95
    assert np.all(np.abs(width - 0.816) < 0.03)
    # every template pixel's 3D point projects back onto that pixel
    for i in (0, 17, 41):
        uv_pix, X = bank.points(i)
        uv_proj, z = project(bank.K, bank.poses[i], X)
        assert np.abs(uv_proj - uv_pix).max() < 1e-2
        assert np.abs(z - bank.depth[i][bank.mask[i]]).max() < 1e-5


def test_cache_hit_does_not_render(renderer, tmp_path, monkeypatch):
    obj = _ball()
    first = build_template_bank(obj, renderer, n_views=12, size=SIZE, cache_dir=tmp_path)
    assert not first.from_cache
    files = list(tmp_path.glob("ball_*.npz"))
    assert len(files) == 1 and str(files[0]) == first.cache_path
    key = tpl.cache_key(obj.content_hash(), first.params)
    assert files[0].name == f"ball_{key[:16]}.npz"

    class Spy:
        calls = 0

        def __getattr__(self, name):
            Spy.calls += 1
            raise AssertionError(f"renderer.{name} used on a cache hit")

    def no_renderer(*a, **k):
        raise AssertionError("a Renderer was created on a cache hit")

    monkeypatch.setattr(tpl, "Renderer", no_renderer)
    for r in (Spy(), None):
        again = build_template_bank(obj, r, n_views=12, size=SIZE, cache_dir=tmp_path)
        assert again.from_cache and Spy.calls == 0
        for name in ("poses", "K", "rgb", "depth", "mask", "xyz"):
            a, b = getattr(first, name), getattr(again, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        assert again.params == first.params and again.obj_name == "ball"
    # another object, parameter or size is another file (a miss)
    monkeypatch.undo()
    other = build_template_bank(_ball(offset=(0, 0, 0)), renderer, n_views=12, size=SIZE,
                                cache_dir=tmp_path)
    assert not other.from_cache and other.cache_path != first.cache_path
    assert len(list(tmp_path.glob("ball_*.npz"))) == 2


def test_corrupt_or_old_cache_is_rebuilt_with_warning(renderer, tmp_path):
    obj = _ball()
    good = build_template_bank(obj, renderer, n_views=12, size=SIZE, cache_dir=tmp_path)
    path = tmp_path / good.cache_path.split("/")[-1]
    path.write_bytes(b"not a zip file at all")
    with pytest.warns(TemplateCacheWarning, match="unreadable"):
        rebuilt = build_template_bank(obj, renderer, n_views=12, size=SIZE, cache_dir=tmp_path)
    assert not rebuilt.from_cache and np.array_equal(rebuilt.rgb, good.rgb)
    assert TemplateBank.load(path).n_views == 12               # the file was rewritten
    # a file of another format version is rebuilt too
    data = dict(np.load(path))
    data["meta"] = np.array(str(data["meta"]).replace(f'"format_version": {FORMAT_VERSION}',
                                                      '"format_version": 0'))
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **data)
    with pytest.warns(TemplateCacheWarning, match="format version 0"):
        again = build_template_bank(obj, renderer, n_views=12, size=SIZE, cache_dir=tmp_path)
    assert not again.from_cache and np.array_equal(again.xyz, good.xyz)
    # truncated file (interrupted write by another process)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.warns(TemplateCacheWarning):
        build_template_bank(obj, renderer, n_views=12, size=SIZE, cache_dir=tmp_path)
    assert build_template_bank(obj, renderer, n_views=12, size=SIZE,
                               cache_dir=tmp_path).from_cache


def test_bad_view_count(renderer, tmp_path):
    with pytest.raises(tpl.InputError, match="n_views must be one of"):
        build_template_bank(_ball(), renderer, n_views=40, size=SIZE, cache_dir=tmp_path)


def test_cli_templates(tmp_path, capsys):
    mesh = tmp_path / "cube.ply"
    trimesh.creation.box(extents=(60.0, 40.0, 30.0)).export(mesh)     # millimetres
    out = tmp_path / "cache"
    rc = cli_main(["templates", "--mesh", str(mesh), "--units", "mm", "--out", str(out),
                   "--views", "12", "--size", "64", "--no-progress"])
    assert rc == 0
    files = list(out.glob("cube_*.npz"))
    assert len(files) == 1
    printed = capsys.readouterr().out
    assert str(files[0]) in printed and "rendered 12 templates" in printed
    bank = TemplateBank.load(files[0])
    assert bank.rgb.shape == (12, 64, 64, 3)
    assert bank.distance == pytest.approx(2.0 * np.linalg.norm([0.06, 0.04, 0.03]) / 0.8)
    rc = cli_main(["templates", "--mesh", str(mesh), "--out", str(out), "--views", "12",
                   "--size", "64", "--no-progress"])
    assert rc == 0 and "loaded cached 12 templates" in capsys.readouterr().out
