"""``coop-ros estimate``: camera files, JSON output and overlay; the real RGB-D frame (skipped
when ../shared/real is absent)."""
import json

import cv2
import numpy as np
import pytest

from coop_ros.cli import main
from coop_ros.errors import InputError
from coop_ros.pipeline.cli import read_camera


def test_read_camera_formats(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"cam_K": [500, 0, 320, 0, 501, 240, 0, 0, 1], "depth_scale": 0.1,
                             "width": 640, "height": 480}))
    K, s, size = read_camera(p)
    assert K[1, 1] == 501 and s == 0.1 and size == (640, 480)
    p.write_text(json.dumps({"7": {"cam_K": [500, 0, 320, 0, 501, 240, 0, 0, 1],
                                   "depth_scale": 1.0}}))
    K, s, size = read_camera(p)
    assert K[0, 2] == 320 and s == 1.0 and size is None
    p.write_text(json.dumps({"fx": 400, "fy": 410, "cx": 300, "cy": 200, "width": 600,
                             "height": 400}))
    K, s, size = read_camera(p)
    np.testing.assert_allclose(K, [[400, 0, 300], [0, 410, 200], [0, 0, 1]])
    p.write_text(json.dumps({"f": 1}))
    with pytest.raises(InputError, match="cam_K"):
        read_camera(p)


def test_estimate_real_rgbd_sits_on_the_can(shared_real, tmp_path, capsys):
    case = shared_real / "ycbvideo_posecnn_demo2_noGT"
    if not (case / "depth.png").is_file():
        pytest.skip("real RGB-D frame missing")
    out = tmp_path / "overlay.png"
    rc = main(["estimate", "--rgb", str(case / "rgb.png"), "--depth", str(case / "depth.png"),
               "--camera", str(case / "camera.json"), "--mesh", str(case / "obj_000001.ply"),
               "--units", "mm", "--box", "303,150,110,172", "--mode", "rgbd", "--hypotheses", "2",
               "--template-cache", str(tmp_path / "tpl"), "--out", str(out)])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["status"] == "ok"
    T = np.array(d["T_cam_obj"])
    K, _, _ = read_camera(case / "camera.json")
    uv = K @ T[:3, 3]
    uv = uv[:2] / uv[2]
    # the can's centre projects inside the hand-drawn box, at the measured ~0.96-1.0 m depth
    assert 303 < uv[0] < 413 and 150 < uv[1] < 322
    assert 0.93 < T[2, 3] < 1.06
    C = np.array(d["covariance"])
    assert np.allclose(C, C.T) and np.linalg.eigvalsh(C).min() > 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (480, 640, 3)
