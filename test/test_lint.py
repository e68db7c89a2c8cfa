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


# ----------------------------------------------------------------------------- import graph
def import_graph(root, package: str = "coop_ros") -> dict[str, set[str]]:
    """The intra-package import graph of the package under ``root``: {module: modules of the
    package it imports}, every ``import`` / ``from ... import`` counted wherever it stands
    (module level, functions, methods, branches: a function-level import is a dependency too,
    only a later one). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module
    of the package, else to ``pkg``; relative imports are resolved; names given to importlib as
    strings are not seen. A package is its ``__init__`` module."""
    import ast
    from pathlib import Path
    base = Path(root)
    files = {}
    for path in sorted((base / package).rglob("*.py")):
        parts = path.relative_to(base).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:                             # relative: from the current package
                    here = name.split(".") if is_pkg else name.split(".")[:-1]
                    here = here[:len(here) - (node.level - 1)]
                    mod = ".".join(here + ([mod] if mod else []))
                for a in node.names:
                    sub = f"{mod}.{a.name}"
                    edges.add(sub if sub in files else mod)
        graph[name] = {m for m in edges if m in files and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as [m0, m1, ..., m0], or None (iterative depth-first
    search, modules and edges visited in sorted order: the same cycle every run)."""
    state = dict.fromkeys(graph, 0)                # 0 unvisited, 1 on the stack, 2 done
    for start in sorted(graph):
        if state[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state[nxt] == 1:
                path = [n for n, _ in stack]
                return path[path.index(nxt):] + [nxt]
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
    return None


def test_the_package_has_no_import_cycle():
    """Dependencies inside coop_ros run one way: no module imports (at module or function level)
    a module that imports it back, directly or through others."""
    graph = import_graph(REPO)
    assert len(graph) > 50 and "coop_ros.bop.evaluate" in graph
    assert "coop_ros.bop.coop_adapter" in graph["coop_ros.bop.evaluate"]   # edges are seen
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_function_level_circle(tmp_path):
    """What the check is for (the circle it replaced: bop/evaluate.py imported bop/coop_adapter.py
    at module level, the adapter imported evaluate inside a function), in a throw-away package;
    relative imports and ``from pkg import module`` are followed too."""
    pkg = tmp_path / "coop_ros"
    (pkg / "bop").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bop" / "__init__.py").write_text("")
    (pkg / "bop" / "evaluate.py").write_text("from coop_ros.bop import coop_adapter\n")
    (pkg / "bop" / "coop_adapter.py").write_text(
        "def make():\n    from .evaluate import valid_gt_indices\n    return valid_gt_indices\n")
    (pkg / "bop" / "dataset.py").write_text("import numpy\n")
    cycle = find_cycle(import_graph(tmp_path))
    assert cycle == ["coop_ros.bop.coop_adapter", "coop_ros.bop.evaluate",
                     "coop_ros.bop.coop_adapter"], cycle
    (pkg / "bop" / "coop_adapter.py").write_text(
        "def make():\n    from .dataset import valid_gt_indices\n    return valid_gt_indices\n")
    assert find_cycle(import_graph(tmp_path)) is None
