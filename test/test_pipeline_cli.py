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
    box = ",".join(f"{v:.1f}" for v in f.gt_info[0].detection_box())
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


# ----------------------------------------------------------------------------- issue 25
def _cat_args(case, tmp_path, *extra):
    return ["estimate", "--rgb", str(case / "rgb.png"), "--depth", str(case / "depth.png"),
            "--camera", str(case / "camera.json"), "--mesh", str(case / "obj_000006.ply"),
            "--units", "mm", "--box", "331,131,64,62", "--hypotheses", "1", "--coarse-only",
            "--template-cache", str(tmp_path / "tpl"), *extra]


def _set(args, flag, value):
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def test_estimate_refuses_what_the_measurements_contradict(shared_real, tmp_path, capsys):
    """Issue 25, finding 3, on the real LINEMOD cat (truth z = 1.05 m): the CLI runs the node's
    input checks and every pose passes the plausibility gate. Before: focal x0.1 -> ok, z 0.058
    m; --depth-scale 10 / 0.1 -> ok, z 10.5 m / 0.12 m; mesh units swapped -> ok, z 1052 m /
    0.001 m (exit 0 each time)."""
    import trimesh
    case = shared_real / "lm_s6_im0_cat_rgbd"
    if not (case / "depth.png").is_file():
        pytest.skip("real LINEMOD cat frame missing")
    base = _cat_args(case, tmp_path)

    def run(args):
        rc = main(args)
        cap = capsys.readouterr()
        out = json.loads(cap.out[cap.out.index("{"):]) if "{" in cap.out else None
        return rc, out, cap.err
    # the input checks, before the pipeline
    cam = json.loads((case / "camera.json").read_text())
    k = np.array(cam["cam_K"])
    k[[0, 4]] *= 0.1
    (tmp_path / "f01.json").write_text(json.dumps(dict(cam, cam_K=k.tolist())))
    rc, out, err = run(_set(base, "--camera", str(tmp_path / "f01.json")))
    assert rc == 1 and out is None and "field of view" in err and "x0.1?" in err, err
    rc, out, err = run(base + ["--depth-scale", "10"])
    assert rc == 1 and out is None and "depth scale too large (x10?)" in err, err
    # the gate: a pose fitted to depth x 0.1 contradicts the box
    rc, out, err = run(base + ["--depth-scale", "0.1"])
    assert rc == 1 and out["status"] == "failed", out
    assert out["reason"].startswith("implausible_pose: box:") and out["T_cam_obj"] is None
    # mesh in mm declared as metres: warned, and the 1000x pose is refused
    rc, out, err = run(_set(base, "--units", "m"))
    assert "--units m" in err and "wrong --units?" in err, err
    assert rc == 1 and out["reason"].startswith("implausible_pose"), out
    # mesh in metres declared as millimetres: the object 1000x too near
    m = trimesh.load(case / "obj_000006.ply")
    m.apply_scale(0.001)
    m.export(tmp_path / "cat_m.ply")
    rc, out, err = run(_set(base, "--mesh", str(tmp_path / "cat_m.ply")))
    assert "--units mm" in err and rc == 1 and out is None, err
    assert "the mesh too small (units mm for a mesh in metres?)" in err, err   # RGB-D: no pose
    # (in RGB that pose, ~1 mm from the camera, fails the gate's front check:
    # test_estimate_box_far_larger_than_the_image_is_answered, test_pipeline_gate.py)


def test_estimate_inputs_parsed_with_messages(box_files, tmp_path, capsys):
    """Issue 25, finding 5: wrong types in the camera file, bad --depth-scale values, a box
    starting with a negative number, a non-finite principal point and a box far larger than the
    image: one line naming the file / flag and field, exit 1, no traceback."""
    root, box = box_files
    cam = json.loads((root / "camera.json").read_text())
    cases = [({"depth_scale": "abc"}, "'depth_scale' must be a finite number > 0, got 'abc'"),
             ({"depth_scale": None}, "'depth_scale' must be a finite number > 0, got None"),
             ({"depth_scale": 0}, "'depth_scale' must be a finite number > 0, got 0"),
             ({"cam_K": "oops"}, "cam_K must be 9 numbers"),
             ({"cam_K": [500, 0, "a", 0, 500, 240, 0, 0, 1]}, "'cam_K[2]' must be a finite"),
             ({"cam_K": [500, 0, float("nan"), 0, 500, 240, 0, 0, 1]},
              "'cam_K[2]' must be a finite number, got nan"),
             ({"width": "640"}, "width / height must be integers")]
    for i, (change, msg) in enumerate(cases):
        p = tmp_path / f"cam{i}.json"
        p.write_text(json.dumps(dict(cam, **change)))
        with pytest.raises(InputError, match=None) as e:
            read_camera(p)
        assert str(p) in str(e.value) and msg in str(e.value), (change, str(e.value))
    fx = tmp_path / "fx.json"
    fx.write_text(json.dumps({"fx": "a", "fy": 500, "cx": 320, "cy": 240}))
    with pytest.raises(InputError, match="'fx' must be a finite number, got 'a'"):
        read_camera(fx)
    args = _args(root, box, "--depth", str(root / "depth.png"))
    for v in ("nan", "0", "-1", "inf"):
        assert main(args + ["--depth-scale", v]) == 1
        err = capsys.readouterr().err
        assert "--depth-scale must be a finite number > 0" in err and "Traceback" not in err
    # a box starting with a negative number needs no '=' (parsed: the next check speaks)
    assert main(_set(args, "--box", "-30,10,50,60") + ["--depth-scale", "-1"]) == 1
    err = capsys.readouterr().err
    assert "--depth-scale must be" in err and "expected one argument" not in err, err
    assert main(_set(args, "--box", "-30,nan,50,60")) == 1
    assert "--box must be finite" in capsys.readouterr().err


def test_estimate_box_far_larger_than_the_image_is_answered(box_files, tmp_path, capsys):
    """Issue 25, finding 5: the box (-1e5, -1e5, 2e5, 2e5) raised IndexError in the evidence
    (add.reduceat over no pixel); now the estimate runs and its pose is refused (RGB: before,
    the node answered ok, score 0, 0.46 mm from the camera)."""
    root, _ = box_files
    rc = main(_args(root, "-100000,-100000,200000,200000", "--hypotheses", "1",
                    "--coarse-only", "--template-cache", str(tmp_path / "tpl")))
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert rc == 1 and out["status"] == "failed" and "Traceback" not in cap.err
    assert out["reason"].startswith("implausible_pose: front:"), out["reason"]


def test_eval_bad_cam_k_names_the_file_and_field(box_files, tmp_path, capsys):
    """Issue 25, finding 5: coop-ros eval on a scene_camera.json whose cam_K is "oops" (a
    traceback before)."""
    import shutil
    root, _ = box_files
    ds = tmp_path / "ds"
    shutil.copytree(root / "s", ds)
    p = next(ds.rglob("scene_camera.json"))
    cams = json.loads(p.read_text())
    first = next(iter(cams))
    cams[first]["cam_K"] = "oops"
    p.write_text(json.dumps(cams))
    rc = main(["eval", "--bop", str(ds), "--estimator", "coop", "--mode", "rgb",
               "--hypotheses", "1", "--no-vsd", "--template-cache", str(tmp_path / "tpl")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert f"{p}[{first}]: cam_K must be 9 numbers (row-major 3x3), got 'oops'" in err, err


def test_eval_runs_the_node_input_checks(box_files, tmp_path, capsys):
    """Issue 25, finding 3: coop-ros eval skipped the node's input checks; a focal length x0.1
    now refuses the frame (bad_input naming the field of view) instead of estimating it."""
    import shutil
    root, _ = box_files
    ds = tmp_path / "ds"
    shutil.copytree(root / "s", ds)
    p = next(ds.rglob("scene_camera.json"))
    cams = json.loads(p.read_text())
    for c in cams.values():
        c["cam_K"][0] *= 0.1
        c["cam_K"][4] *= 0.1
    p.write_text(json.dumps(cams))
    rc = main(["eval", "--bop", str(ds), "--estimator", "coop", "--mode", "rgbd",
               "--hypotheses", "1", "--coarse-only", "--no-vsd", "--quiet",
               "--template-cache", str(tmp_path / "tpl")])
    out = capsys.readouterr().out
    assert rc == 0 and "without an estimate (1 of 1" in out, out[-1500:]
    assert "bad_input: camera_info fx" in out and "field of view" in out, out[-1500:]
