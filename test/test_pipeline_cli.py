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


# ----------------------------------------------------------------------------- issue 11 fixes
@pytest.fixture(scope="module")
def box_files(tmp_path_factory):
    """rgb.png, depth.png (0.1 mm units), camera.json (with width/height), the box mesh and GT
    box of one synthetic frame."""
    from coop_ros.bop.dataset import BopDataset
    from coop_ros.synth.scenes import generate_dataset
    root = tmp_path_factory.mktemp("cli_box")
    generate_dataset(root / "s", objects=["textured_box"], n_scenes=1, images_per_scene=1,
                     seed=3, objects_per_image=(1, 1), distractors=(0, 0), progress=False)
    f = BopDataset(root / "s").frame(0, 0)
    cv2.imwrite(str(root / "rgb.png"), cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "depth.png"), np.round(f.depth * 10000).astype(np.uint16))
    cam = {"cam_K": f.K.reshape(-1).tolist(), "depth_scale": 0.1, "width": f.width,
           "height": f.height}
    (root / "camera.json").write_text(json.dumps(cam))
    box = ",".join(f"{v:.1f}" for v in f.gt_info[0].bbox_visib)
    return root, box


def _args(root, box, *extra):
    return ["estimate", "--rgb", str(root / "rgb.png"), "--camera", str(root / "camera.json"),
            "--mesh", str(root / "s" / "models" / "obj_000001.ply"), "--box", box, *extra]


def test_estimate_bad_arguments_fail_before_the_pipeline_loads(box_files, tmp_path):
    """Each bad argument gives one clear line, exit 1, and torch is never imported (the
    pipeline is loaded only after every argument checked out)."""
    import subprocess
    import sys
    root, box = box_files
    cam8 = tmp_path / "cam8.json"
    cam8.write_text(json.dumps({"cam_K": [500, 0, 320, 0, 500, 240, 0, 1]}))
    camsize = tmp_path / "camsize.json"
    camsize.write_text(json.dumps({"cam_K": [500, 0, 320, 0, 500, 240, 0, 0, 1],
                                   "width": 1280, "height": 720}))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (["--camera", str(cam8)], "cam_K must be 9 numbers (row-major 3x3"),
        (["--camera", str(camsize)], "is for 1280x720 images, --rgb"),
        (["--out", str(blocker / "sub" / "o.png")], "--out"),
        (["--box", "1,2,3"], "--box must be 4 numbers"),
        (["--depth", str(root / "depth.png"), "--depth-scale", "1000"],
         "wrong depth scale?"),
    ]
    for extra, msg in cases:
        args = _args(root, box)
        for k in range(0, len(extra), 2):         # replace the option if already there
            if extra[k] in args:
                i = args.index(extra[k])
                args[i + 1] = extra[k + 1]
            else:
                args += extra[k:k + 2]
        code = ("import sys, json; from coop_ros.cli import main; rc = main(json.loads("
                "sys.argv[1])); print('RC', rc, 'torch' in sys.modules)")
        p = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True,
                           text=True, timeout=60)
        assert "RC 1 False" in p.stdout, (extra, p.stdout, p.stderr[-1000:])
        assert msg in p.stderr and "Traceback" not in p.stderr, (extra, p.stderr)


def test_top_level_help_imports_no_command():
    import subprocess
    import sys
    code = ("import sys; from coop_ros.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('MODS', sorted(m for m in ('torch', 'cv2', 'coop_ros.pipeline.cli', "
            "'coop_ros.bop.evaluate') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "bag" in p.stdout and "estimate" in p.stdout
    assert "MODS []" in p.stdout, p.stdout


def test_estimate_caches_templates_by_default(box_files, tmp_path, monkeypatch, capsys):
    root, box = box_files
    monkeypatch.setenv("COOP_ROS_CACHE", str(tmp_path / "cache"))
    rc = main(_args(root, box, "--depth", str(root / "depth.png"), "--hypotheses", "1",
                    "--out", str(tmp_path / "o" / "overlay.png")))
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["status"] == "ok", out["reason"]
    assert out["ambiguous"] is False and out["best_so_far"] is False   # a clear RGB-D view
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1
    assert (tmp_path / "o" / "overlay.png").is_file()
