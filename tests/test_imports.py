"""The import structure of ``lib/cdp``: no circle, and the light commands need no Spark.

The import graph is read from the source with ``ast`` (nothing is imported), so a circle is
found even where it would not fail at import time.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib"

# Circles through imports inside functions that are accepted for now, each with its reason
# (none today: keep it that way).
KNOWN_LAZY_CIRCLES: list[set[str]] = []


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package)."""
    found = {}
    for path in sorted((LIB / "cdp").rglob("*.py")):
        parts = list(path.relative_to(LIB).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(body: list[ast.stmt], *, lazy: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of ``body``: at module level (in ``if``/``try``/``with`` blocks
    too), and with ``lazy`` also those inside functions; never those under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not lazy:
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            found += _imports(node.orelse, lazy=lazy)
            continue
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(node, name, None)
            if isinstance(block, list):
                found += _imports([n for n in block if isinstance(n, ast.AST)], lazy=lazy)  # type: ignore[misc]
    return found


def import_graph(*, lazy: bool) -> dict[str, set[str]]:
    """cdp module -> the cdp modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        deps: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _imports(tree.body, lazy=lazy):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    deps.add(f"{base}.{alias.name}")
                elif base in modules:
                    deps.add(base)
        deps.discard(name)
        graph[name] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_imports() -> None:
    graph = import_graph(lazy=False)
    assert "cdp.stage" in graph["cdp.pipeline"] and "cdp.tables" in graph["cdp.pipeline"]
    assert "cdp.runner" not in graph["cdp.entry"]  # imported inside run_stages only
    assert "cdp.runner" in import_graph(lazy=True)["cdp.entry"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_circle_among_module_level_imports() -> None:
    assert circles(import_graph(lazy=False)) == []


def test_no_import_circle_through_imports_inside_functions() -> None:
    """Deferring an import hides a circle from Python, not from a reader: the stages do not
    import the CLI, the graph imports no stage."""
    found = circles(import_graph(lazy=True))
    assert [c for c in found if c not in KNOWN_LAZY_CIRCLES] == []


def test_the_stage_graph_imports_no_stage_and_no_cli() -> None:
    graph = import_graph(lazy=True)
    assert graph["cdp.stage"] == set()
    assert graph["cdp.pipeline"] == {"cdp.stage", "cdp.tables"}
    assert graph["cdp.tables"] == set()


HIDE_PYSPARK = '''\
import importlib.abc
import sys


class _NoSpark(importlib.abc.MetaPathFinder):
    """Acts as if pyspark (and what only comes with it) were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyspark", "py4j", "delta"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoSpark())
'''


@pytest.fixture()
def no_spark_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import pyspark (a sitecustomize on PYTHONPATH)."""
    (tmp_path / "sitecustomize.py").write_text(HIDE_PYSPARK)
    path = os.pathsep.join([str(tmp_path), str(LIB), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def _python(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )


def test_config_version_and_stages_need_no_pyspark(no_spark_env: dict[str, str]) -> None:
    hidden = _python(no_spark_env, "-c", "import pyspark")
    assert hidden.returncode != 0 and "pyspark" in hidden.stderr
    config = _python(
        no_spark_env,
        "-c",
        "import sys, cdp.config, cdp.cli, cdp.pipeline, cdp.tables, cdp.entry\n"
        "print(sorted(m for m in sys.modules if m.startswith('pyspark')))",
    )
    assert config.returncode == 0, config.stderr[-3000:]
    assert config.stdout.strip() == "[]"
    from cdp import __version__
    from cdp.pipeline import STAGES

    version = _python(no_spark_env, "-m", "cdp.cli", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"cdp {__version__}"
    stages = _python(no_spark_env, "-m", "cdp.cli", "stages")
    assert stages.returncode == 0, stages.stderr[-3000:]
    assert [line.split()[0] for line in stages.stdout.splitlines()] == [s.name for s in STAGES]


def test_missing_pyspark_names_the_local_extra(no_spark_env: dict[str, str]) -> None:
    """The message fires for a real missing pyspark (the import no longer fails before main)."""
    out = _python(no_spark_env, "-m", "cdp.cli", "run", "ingest", "--env", "test")
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("cdp: error: pyspark is not installed") and "cdp-spark[local]" in last
