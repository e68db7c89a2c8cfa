"""The lint gate: ruff (pinned in requirements/dev.txt) with the rule set of pyproject.toml --
pyflakes (unused imports / variables, undefined names), syntax errors, bugbear, and rclpy
imported only under coop_ros/ros/."""
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip("ruff")
#: what the gate reads: the package, the benchmarks, the scripts, the tests, the launch file
PATHS = ["coop_ros", "bench", "scripts", "test", "launch"]


def _ruff(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                           "--output-format", "concise", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_code_base_passes_the_lint_gate():
    r = _ruff(*PATHS)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_gate_finds_what_it_is_for(tmp_path):
    """The rule set is live: a file in the core with an unused import, a mutable default and an
    rclpy import gets each reported; the same rclpy import under coop_ros/ros/ does not."""
    core = tmp_path / "coop_ros" / "geometry"
    ros = tmp_path / "coop_ros" / "ros"
    core.mkdir(parents=True)
    ros.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    bad = "import os\nimport rclpy\n\n\ndef f(x=[]):\n    return x, rclpy\n"
    (core / "bad.py").write_text(bad)
    (ros / "ok.py").write_text("import rclpy\n\nprint(rclpy)\n")
    r = _ruff("coop_ros", cwd=tmp_path)
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    codes = {line.split()[1] for line in out.splitlines() if line.startswith("coop_ros/")}
    assert codes == {"F401", "B006", "TID251"}, out
    assert "coop_ros/ros/ok.py" not in out, out


def _imports(path) -> set[str]:
    """Modules a file imports (absolute names, function-level imports included)."""
    import ast
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_layers_the_backend_split_keeps():
    """The interfaces (backends/base.py) import no implementation, and the pipeline imports the
    weight-free implementation nowhere (it talks to the interfaces and coop_ros.imaging)."""
    impl = ("coop_ros.backends.weightfree", "coop_ros.backends.learned")
    bad = []
    for path in sorted((REPO / "coop_ros").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        mods = _imports(path)
        if rel == "coop_ros/backends/base.py":
            bad += [(rel, m) for m in mods if m.startswith(impl)]
        if rel.startswith("coop_ros/pipeline/"):
            bad += [(rel, m) for m in mods if m.startswith(impl[0])]
    assert not bad, bad
