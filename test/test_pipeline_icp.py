"""RGB-D ICP on a flat face seen head-on (a can from above): point-to-plane pairs cannot see the
face slide along itself; the silhouette terms (rendered contour <-> observed depth edges) and
normals from smoothed depth must pull the slide back."""
import numpy as np
import pytest

from coop_ros.geometry.se3 import make_pose, rotvec_to_matrix
from coop_ros.pipeline.icp import icp_point_to_plane
from coop_ros.pipeline.views import QueryImage, RenderTarget

K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])


@pytest.fixture(scope="module")
def can_from_above():
    from coop_ros.synth.procedural import make_object
    from coop_ros.render.renderer import Renderer
    obj = make_object("can", seed=0)
    ren = Renderer(224, 224, device="cpu")
    ren.add_object("can", obj)
    # axis 6 deg off the line of sight, top cap towards the camera, 0.45 m away
    R = rotvec_to_matrix(np.array([np.pi, 0, 0])) @ rotvec_to_matrix(np.radians([6.0, 3.0, 20.0]))
    T = make_pose(R, np.array([0.02, -0.01, 0.45]))
    out = ren.render_scene([("can", T)], K, 640, 480)
    rng = np.random.default_rng(0)
    depth = out.depth[0] + (out.depth[0] == 0) * 0.55            # a table 10 cm below the top
    depth = (depth + rng.normal(0, 0.001, depth.shape)).astype(np.float32)   # 1 mm noise
    yield obj, ren, QueryImage(out.rgb[0], K, depth), T
    ren.release()


def _slide_err_mm(T, Tg, obj):
    c = lambda A: A[:3, :3] @ obj.center + A[:3, 3]  # noqa: E731
    return float(np.linalg.norm((c(T) - c(Tg))[:2]) * 1e3)


def test_icp_recovers_a_slide_of_a_flat_face(can_from_above):
    obj, ren, q, Tg = can_from_above
    for d in ([2e-3, -2e-3, 0.0], [-2.5e-3, 0.0, 1e-3]):
        T0 = Tg.copy()
        T0[:3, 3] += d
        target = RenderTarget(ren, "can", obj, 224)
        T, cov, n, _ = icp_point_to_plane(T0, q, target, 10)
        Tp, *_ = icp_point_to_plane(T0, q, target, 10, contour=False,
                                     smooth_normals=False)
        e0, e, ep = (_slide_err_mm(A, Tg, obj) for A in (T0, T, Tp))
        print(f"\nslide {e0:.2f} mm -> ICP {e:.2f} mm (point-to-plane only: {ep:.2f} mm)")
        assert e < 0.3 * e0 and e < 0.8
        assert ep > 0.6 * e0          # the degeneracy the silhouette terms remove
        assert cov.shape == (6, 6) and np.linalg.eigvalsh(cov).min() > 0
