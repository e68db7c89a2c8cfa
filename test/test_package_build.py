"""The package builds the two ways the README promises: colcon (ament_cmake, with msg/) and pip."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
SOURCES = ["CMakeLists.txt", "package.xml", "setup.py", "pyproject.toml", "MANIFEST.in", "msg",
           "coop_ros", "resource", "requirements", "config", "launch", "scripts"]


def _copy_sources(dst: Path) -> None:
    dst.mkdir(parents=True)
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dst / name)


@pytest.mark.skipif(shutil.which("colcon", path=str(VENV / "bin")) is None, reason="colcon not installed")
def test_colcon_build_installs_core_and_messages(tmp_path):
    ws = tmp_path / "ws"
    _copy_sources(ws / "src" / "coop_ros")
    env = dict(os.environ, CMAKE_PREFIX_PATH=str(VENV), AMENT_PREFIX_PATH=str(VENV),
               PATH=f"{VENV / 'bin'}:{os.environ['PATH']}")
    r = subprocess.run([str(VENV / "bin" / "colcon"), "build", "--cmake-args",
                        f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
                       cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    site = ws / "install" / "coop_ros" / "lib" / "python3.11" / "site-packages"
    assert (site / "coop_ros" / "geometry" / "se3.py").is_file()
    assert (ws / "install" / "coop_ros" / "share" / "coop_ros" / "package.xml").is_file()
    # The installed package (not the source tree) provides both the core and the messages.
    code = ("import coop_ros, coop_ros.msg as m, coop_ros.geometry.se3;"
            "assert coop_ros.__file__.startswith(%r), coop_ros.__file__;"
            "e = m.ObjectPoseEstimate(object_name='can', status=m.ObjectPoseEstimate.STATUS_FAILED);"
            "print(e.status, len(m.ObjectPoseEstimateArray().estimates))") % str(site)
    env_run = dict(env, PYTHONPATH=f"{site}")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env_run,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["1", "0"]


def test_pip_wheel_has_core_and_cli(tmp_path):
    src = tmp_path / "src"
    _copy_sources(src)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    wheels = list((tmp_path / "dist").glob("coop_ros-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as z:
        names = set(z.namelist())
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        entry_points = z.read(entry).decode()
        requires = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "coop_ros/geometry/se3.py" in names and "coop_ros/cli.py" in names
    assert "coop-ros = coop_ros.cli:main" in entry_points
    assert "Requires-Dist: torch==2.13.0" in requires
    assert not any("rclpy" in line for line in requires.splitlines() if line.startswith("Requires-Dist"))
