"""Renderer: geometry (depth, xyz), pixel-centre convention, colours, scenes, real YCB-V frame."""
import json
import warnings

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from coop_ros.errors import InputError, RenderError
from coop_ros.geometry.camera import backproject_depth, project
from coop_ros.geometry.se3 import invert, make_pose, rotvec_to_matrix, transform_points
from coop_ros.render import Light, Renderer
from coop_ros.render.renderer import EGL_PACKAGES


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(224, 224, device="cpu")
    yield r
    r.release()


def _K(fx, fy, cx, cy):
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _closest_points_on_triangles(p, a, b, c):
    """Ericson's closest point on triangle (a, b, c) to p, vectorised over rows."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    bp = p - b
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    cp = p - c
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = 1.0 / (va + vb + vc)
        out = a + ab * (vb * denom)[:, None] + ac * (vc * denom)[:, None]
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        out = np.where(((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0))[:, None],
                       b + (c - b) * t[:, None], out)
        out = np.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0))[:, None],
                       a + ac * (d2 / (d2 - d6))[:, None], out)
        out = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, out)
        out = np.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0))[:, None],
                       a + ab * (d1 / (d1 - d3))[:, None], out)
        out = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, out)
        out = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, out)
    return out


def _distance_to_mesh(points, V, F, k=16):
    """Exact distance from each point to the nearest of the k triangles with the nearest
    centroids (exact for points near a fine mesh; trimesh's closest_point needs rtree)."""
    tri = V[F]
    _, idx = cKDTree(tri.mean(axis=1)).query(points, k=k)
    best = np.full(len(points), np.inf)
    for j in range(k):
        t = tri[idx[:, j]]
        q = _closest_points_on_triangles(points, t[:, 0], t[:, 1], t[:, 2])
        best = np.minimum(best, np.linalg.norm(points - q, axis=1))
    return best


def _torus():
    m = trimesh.creation.torus(0.08, 0.03, major_sections=128, minor_sections=80)
    return np.asarray(m.vertices), np.asarray(m.faces)


TILT = make_pose(rotvec_to_matrix(np.array([0.9, -0.4, 0.3])), [0.02, -0.015, 1.0])


def test_depth_lies_on_mesh_and_xyz_matches(renderer):
    V, F = _torus()
    assert len(F) == 20480
    renderer.add_mesh("torus", V, F)
    K = _K(700.0, 690.0, 160.3, 118.7)   # non-square image, off-centre principal point
    out = renderer.render("torus", TILT, K, width=320, height=240)
    assert out.rgb.shape == (1, 240, 320, 3) and out.rgb.dtype == np.uint8
    assert out.depth.shape == (1, 240, 320) and out.depth.dtype == np.float32
    assert out.xyz.shape == (1, 240, 320, 3) and out.xyz.dtype == np.float32
    assert out.labels is None
    mask = out.mask[0]
    assert np.array_equal(mask, out.depth[0] > 0)
    assert mask.sum() > 5000
    assert np.all(out.xyz[0][~mask] == 0) and np.all(out.rgb[0][~mask] == 0)
    assert 0.87 < out.depth[0][mask].min() and out.depth[0].max() < 1.13

    pts_cam, valid = backproject_depth(out.depth[0], K)
    assert np.array_equal(valid, mask)
    X = transform_points(invert(TILT), pts_cam[mask])          # back into the object frame
    rng = np.random.default_rng(0)
    sub = rng.choice(len(X), 3000, replace=False)
    d = _distance_to_mesh(X[sub], V, F)
    assert d.mean() < 0.5e-3, f"mean distance to the mesh {d.mean() * 1e3:.4f} mm"
    assert np.percentile(d, 99) < 1e-3
    e = np.linalg.norm(X - out.xyz[0][mask], axis=1)
    assert e.mean() < 1e-3, f"xyz vs back-projected depth: mean {e.mean() * 1e3:.4f} mm"
    assert np.percentile(e, 99) < 1e-3


def test_depth_in_a_region_equals_the_full_render(renderer):
    """render_depth(region=...) renders and reads only a window (the synthetic GT's speed-up):
    inside it the same floats as the full-frame render, outside 0; a window that cuts the
    object keeps only its part; an empty window gives zeros."""
    V, F = _torus()
    renderer.add_mesh("torus_r", V, F)
    K = _K(700.0, 690.0, 160.3, 118.7)
    full = renderer.render_depth("torus_r", TILT, K, 320, 240)
    ys, xs = np.nonzero(full)
    box = (xs.min() - 2, ys.min() - 2, xs.max() + 3, ys.max() + 3)
    part = renderer.render_depth("torus_r", TILT, K, 320, 240, region=box)
    assert part.dtype == np.float32 and np.array_equal(part, full)
    cut = renderer.render_depth("torus_r", TILT, K, 320, 240, region=(0, 0, 160, 240))
    assert np.array_equal(cut[:, :160], full[:, :160]) and not cut[:, 160:].any()
    assert full[:, 160:].any()
    assert not renderer.render_depth("torus_r", TILT, K, 320, 240, region=(400, 0, 500, 9)).any()
    after = renderer.render_depth("torus_r", TILT, K, 320, 240)   # the scissor is reset
    assert np.array_equal(after, full)


def test_pixel_centre_convention(renderer):
    """A sub-pixel triangle around the 3D point K projects to (u, v) covers exactly that pixel;
    a quad whose edges lie on pixel borders (half-integers) covers exactly the enclosed pixels."""
    K = _K(500.0, 520.0, 63.7, 41.2)
    W, H = 128, 96
    T = np.eye(4)
    rng = np.random.default_rng(3)
    for _ in range(5):
        u, v = int(rng.integers(2, W - 2)), int(rng.integers(2, H - 2))
        z = float(rng.uniform(0.5, 2.0))
        # triangle around (u, v) of radius 0.3 px, built in the camera frame
        corners = np.array([[u - 0.3, v - 0.3], [u + 0.3, v - 0.25], [u, v + 0.3]])
        Xc = np.column_stack([(corners[:, 0] - K[0, 2]) / K[0, 0] * z,
                              (corners[:, 1] - K[1, 2]) / K[1, 1] * z, np.full(3, z)])
        renderer.add_mesh("tri", Xc, np.array([[0, 1, 2]]))
        out = renderer.render("tri", T, K, width=W, height=H)
        rows, cols = np.nonzero(out.mask[0])
        assert rows.tolist() == [v] and cols.tolist() == [u]
        assert abs(out.depth[0, v, u] - z) < 1e-6 * z
    # quad spanning pixel columns 10..29 and rows 5..16: edges at 9.5 / 29.5 and 4.5 / 16.5
    z = 1.0
    uv = np.array([[9.5 + 1e-3, 4.5 + 1e-3], [29.5 - 1e-3, 4.5 + 1e-3],
                   [29.5 - 1e-3, 16.5 - 1e-3], [9.5 + 1e-3, 16.5 - 1e-3]])
    Xc = np.column_stack([(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1],
                          np.ones(4)]) * z
    renderer.add_mesh("quad", Xc, np.array([[0, 1, 2], [0, 2, 3]]))
    m = renderer.render("quad", T, K, width=W, height=H).mask[0]
    rows, cols = np.nonzero(m)
    assert m.sum() == 20 * 12
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (10, 29, 5, 16)
    # the same quad as an object mesh at a tilted pose: coop_ros.geometry.camera.project
    # puts its corners at the same pixels, and the renderer covers the same pixels
    X_obj = transform_points(invert(TILT), Xc)
    uvp, _ = project(K, TILT, X_obj)
    assert np.allclose(uvp, uv, atol=1e-9)
    renderer.add_mesh("quad_obj", X_obj, np.array([[0, 1, 2], [0, 2, 3]]))
    m2 = renderer.render("quad_obj", TILT, K, width=W, height=H).mask[0]
    assert np.array_equal(m, m2)


def _quad(size=0.1, z=0.5):
    """Square facing the camera (normal -z), centred on the optical axis at depth z; vertex 0
    is the top-left corner in the image (x < 0, y < 0), uv (0, 1)."""
    h = size / 2
    V = np.array([[-h, -h, z], [h, -h, z], [h, h, z], [-h, h, z]])
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float32)   # v up
    F = np.array([[0, 1, 2], [0, 2, 3]])
    return V, F, uv


def test_vertex_colours_and_lighting(renderer):
    V, F, _ = _quad()
    K = _K(400.0, 400.0, 111.5, 111.5)
    red = np.tile([1.0, 0.0, 0.0], (4, 1))
    renderer.add_mesh("red", V, F, vertex_colors=red)
    out = renderer.render("red", np.eye(4), K)
    assert out.rgb[0, 111, 111].tolist() == [255, 0, 0]            # 0.35 + 0.65 * 1
    half = renderer.render("red", np.eye(4), K, light=Light(ambient=0.5, diffuse=0.0))
    assert half.rgb[0, 111, 111, 0] in (127, 128) and half.rgb[0, 111, 111, 1:].tolist() == [0, 0]
    # light travelling at 60 deg from the normal: 0.35 + 0.65 * cos(60) = 0.675 -> 172
    tilted = Light(direction=(np.sin(np.pi / 3), 0.0, np.cos(np.pi / 3)))
    assert renderer.render("red", np.eye(4), K, light=tilted).rgb[0, 111, 111, 0] in (172, 173)
    renderer.add_mesh("grey", V, F)                      # no colours: default grey 0.7
    g = renderer.render("grey", np.eye(4), K).rgb[0, 111, 111]
    assert g[0] == g[1] == g[2] and g[0] in (178, 179)


def test_texture_orientation(renderer):
    """Texture quadrants: top-left red, top-right green, bottom-left blue, bottom-right white
    (row 0 = top of the image file); UVs in OpenGL convention (v up)."""
    V, F, uv = _quad()
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[:32, :32] = (255, 0, 0)
    tex[:32, 32:] = (0, 255, 0)
    tex[32:, :32] = (0, 0, 255)
    tex[32:, 32:] = (255, 255, 255)
    renderer.add_mesh("tex", V, F, uv=uv, texture=tex)
    K = _K(400.0, 400.0, 111.5, 111.5)
    img = renderer.render("tex", np.eye(4), K).rgb[0]
    # the quad spans 0.1 m * 400 / 0.5 = 80 px around the centre: quadrant centres +/- 20 px
    assert img[91, 91].tolist() == [255, 0, 0]
    assert img[91, 131].tolist() == [0, 255, 0]
    assert img[131, 91].tolist() == [0, 0, 255]
    assert img[131, 131].tolist() == [255, 255, 255]
    with pytest.raises(InputError, match="without uv"):
        renderer.add_mesh("bad", V, F, texture=tex)


def test_render_scene_occlusion_labels_background(renderer):
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.05)
    box = trimesh.creation.box(extents=(0.2, 0.2, 0.05))
    renderer.add_mesh("sphere", sphere.vertices, sphere.faces,
                      vertex_colors=np.tile([0.0, 1.0, 0.0], (len(sphere.vertices), 1)))
    renderer.add_mesh("box", box.vertices, box.faces)
    K = _K(300.0, 300.0, 111.5, 111.5)
    T_near = make_pose(np.eye(3), [0.0, 0.0, 0.8])
    T_far = make_pose(np.eye(3), [0.02, 0.0, 1.2])
    bg = np.full((224, 224, 3), 7, np.uint8)
    out = renderer.render_scene([("box", T_far), ("sphere", T_near)], K, background=bg)
    assert out.labels.shape == (1, 224, 224) and out.labels.dtype == np.int16
    lab, depth = out.labels[0], out.depth[0]
    d_far = renderer.render("box", T_far, K).depth[0]
    d_near = renderer.render("sphere", T_near, K).depth[0]
    assert np.array_equal(lab == 1, d_near > 0)          # the sphere is in front everywhere
    assert np.array_equal(lab == 0, (d_far > 0) & (d_near == 0))
    assert np.array_equal(lab == -1, ~out.mask[0])
    both = np.where(d_near > 0, d_near, d_far)
    assert np.array_equal(depth, both)                   # z-buffer: min of the two depths
    assert abs(depth[111, 111] - 0.75) < 1e-3       # icosphere facet: 0.15 mm inside the sphere
    assert abs(d_far[111, 111] - 1.175) < 1e-6
    assert np.all(out.rgb[0][~out.mask[0]] == 7)
    assert out.rgb[0, 111, 111].tolist() == [0, 255, 0]
    # xyz is in the frame of the visible item
    z = float(depth[111, 111])
    expected = [(111 - 111.5) / 300.0 * z, (111 - 111.5) / 300.0 * z, z - 0.8]
    assert np.abs(out.xyz[0, 111, 111] - expected).max() < 1e-6


def test_batch_equals_single_and_culling_is_exact(renderer):
    V, F = _torus()
    K = _K(300.0, 300.0, 111.5, 111.5)
    rng = np.random.default_rng(1)
    Ts = np.stack([make_pose(rotvec_to_matrix(rng.normal(size=3)), [0, 0, 0.6]) for _ in range(4)])
    renderer.add_mesh("t_out", V, F)                       # closed, outward: culled
    renderer.add_mesh("t_in", V, F[:, ::-1])                # closed, inward: culled other way
    renderer.add_mesh("t_open", V, np.concatenate([F, F[:1]]))  # duplicate face: not closed
    F_seam = F.copy()
    F_seam[::2] += len(V)                                   # every other face uses a vertex copy
    renderer.add_mesh("t_seam", np.concatenate([V, V]), F_seam)  # like UV seams: same shading
    batch = renderer.render("t_out", Ts, K)
    assert batch.rgb.shape == (4, 224, 224, 3)
    for b in range(4):
        one = renderer.render("t_out", Ts[b], K)
        assert np.array_equal(one.depth[0], batch.depth[b])
        assert np.array_equal(one.rgb[0], batch.rgb[b])
    for key in ("t_in", "t_open", "t_seam"):
        other = renderer.render(key, Ts, K)
        assert np.array_equal(other.mask, batch.mask)
        assert np.abs(other.depth - batch.depth).max() < 1e-5   # float32 interpolation order
        assert np.abs(other.rgb.astype(int) - batch.rgb).max() <= 1


def test_bad_inputs_name_the_problem(renderer):
    V, F, _ = _quad()
    renderer.add_mesh("q", V, F)
    K = _K(400.0, 400.0, 111.5, 111.5)
    with pytest.raises(InputError, match="no mesh uploaded under key 'nope'"):
        renderer.render("nope", np.eye(4), K)
    with pytest.raises(InputError, match="K"):
        renderer.render("q", np.eye(4), np.eye(2))
    with pytest.raises(InputError, match="T_cam_obj"):
        renderer.render("q", np.eye(3), K)
    with pytest.raises(InputError, match="faces index vertices"):
        renderer.add_mesh("bad", V, np.array([[0, 1, 9]]))
    with pytest.raises(InputError, match="background"):
        renderer.render_scene([("q", np.eye(4))], K, background=np.zeros((10, 10, 3), np.uint8))


def test_missing_egl_names_the_packages(monkeypatch):
    monkeypatch.setenv("GLCONTEXT_LINUX_LIBEGL", "/nonexistent/libEGL.so.1")
    with pytest.raises(RenderError) as err:
        Renderer(32, 32)
    assert EGL_PACKAGES in str(err.value)
    assert "libegl1 libegl-mesa0 libgl1-mesa-dri" in str(err.value)


def test_ycbv_can_pixel_count(renderer, shared_real):
    from coop_ros.objects import ObjectModel

    d = shared_real / "ycbv_s48_im1_masterchefcan"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the PLY names a texture file that is absent
        obj = ObjectModel.load(d / "obj_000001.ply", units="mm")
    K = np.array(json.loads((d / "scene_camera.json").read_text())["1"]["cam_K"]).reshape(3, 3)
    gts = json.loads((d / "scene_gt.json").read_text())["1"]
    infos = json.loads((d / "scene_gt_info.json").read_text())["1"]
    i = next(j for j, g in enumerate(gts) if g["obj_id"] == 1)
    T = make_pose(np.reshape(gts[i]["cam_R_m2c"], (3, 3)), np.array(gts[i]["cam_t_m2c"]) / 1e3)
    renderer.add_object("ycbv1", obj)
    out = renderer.render("ycbv1", T, K, width=640, height=480)
    n = int(out.mask.sum())
    assert abs(n - infos[i]["px_count_all"]) <= 0.01 * infos[i]["px_count_all"]   # 23236
    # depth of the visible surface is ~ cam_t_z - can radius (51 mm) at its centre
    assert 0.80 < out.depth[0][out.mask[0]].min() < 0.83


def test_device_selection(renderer):
    from coop_ros.render.renderer import _egl_devices, _is_software

    assert "llvmpipe" in renderer.gl_renderer or "softpipe" in renderer.gl_renderer
    with pytest.raises(InputError, match="device must be"):
        Renderer(32, 32, device="gpu")
    hardware = [n for n in _egl_devices().values() if not _is_software(n)]
    if not hardware:
        with pytest.raises(RenderError, match="found 0 hardware EGL device"):
            Renderer(32, 32, device="cuda")
        return
    # a GPU is there: its rendering agrees with llvmpipe's
    V, F = _torus()
    K = _K(300.0, 300.0, 111.5, 111.5)
    with Renderer(224, 224, device="cuda:0") as gpu:
        gpu.add_mesh("torus", V, F)
        renderer.add_mesh("torus", V, F)
        a, b = gpu.render("torus", TILT, K), renderer.render("torus", TILT, K)
    assert (a.mask ^ b.mask).sum() <= 0.002 * b.mask.sum()
    both = a.mask & b.mask
    assert np.abs(a.depth[both] - b.depth[both]).max() < 1e-4
