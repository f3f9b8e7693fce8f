"""The layout's one rule: imports go one way, core <- analyses <- lab (<- notebooks), no cycles.

Read from the source with ast, so every import counts: module level, inside functions, and
under TYPE_CHECKING (a cycle hidden there is still a cycle for a reader).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the project modules it imports (any import statement anywhere in the file)."""
    files = [p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))]
    modules = {module_name(p, root) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        name = module_name(path, root)
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for target in targets:
                # the longest project module that the target names (a symbol's module, or itself)
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def layer_of(module: str) -> str:
    if module.startswith("dcclib.lab"):
        return "lab"
    if module.startswith("dcclib.analyses"):
        return "analyses"
    if module.startswith("data_prep"):
        return "data_prep"
    return "core"


# which layers each layer may import
ALLOWED = {
    "core": {"core"},
    "analyses": {"core", "analyses"},
    "lab": {"core", "analyses", "lab"},
    "data_prep": {"core", "data_prep"},
}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} ({layer_of(m)}) imports {t} ({layer_of(t)})"
        for m, targets in graph.items()
        for t in targets
        if layer_of(t) not in ALLOWED[layer_of(m)]
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None. The package `dcclib` itself (it holds
    only the version) is a leaf: `import dcclib` for dcclib.__version__ is no cycle."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t) :] + [t]
            if state.get(t) is None:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if state.get(m) is None:
            found = visit(m)
            if found:
                return found
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT, ("dcclib", "data_prep"))


def test_the_three_layers_exist(graph):
    layers = {layer_of(m) for m in graph}
    assert {"core", "analyses", "lab", "data_prep"} <= layers
    assert "dcclib.condense" in graph and "dcclib.lab.experiments" in graph
    assert "dcclib.analyses.kernel_velocity" in graph


def test_imports_go_one_way(graph):
    assert layer_violations(graph) == []


def test_no_import_cycle(graph):
    assert find_cycle(graph) is None


def test_the_package_root_imports_nothing_of_the_project(graph):
    assert graph["dcclib"] == set()


def test_the_checks_catch_a_violation_and_a_cycle(tmp_path):
    """The checks themselves: a core module importing lab, and a hidden cycle, are found."""
    pkg = tmp_path / "dcclib"
    (pkg / "lab").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "lab" / "__init__.py").write_text("")
    (pkg / "core_a.py").write_text("def f():\n    from dcclib.lab.views import show\n")
    (pkg / "lab" / "views.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from dcclib.lab import cells\n"
    )
    (pkg / "lab" / "cells.py").write_text("from .views import x\n")
    g = import_graph(tmp_path, ("dcclib",))
    assert layer_violations(g) == ["dcclib.core_a (core) imports dcclib.lab.views (lab)"]
    cycle = find_cycle(g)
    assert cycle is not None and set(cycle) == {"dcclib.lab.views", "dcclib.lab.cells"}


def public_functions_without_hints(root: Path, packages: tuple[str, ...]) -> list[str]:
    """Module-level functions and methods of public classes whose name does not start with `_`
    (dunders included) that lack a parameter or return annotation."""

    def visit(node: ast.AST, where: str, owner: str | None, gaps: list[str]) -> None:
        for n in ast.iter_child_nodes(node):
            if isinstance(n, ast.ClassDef) and not n.name.startswith("_"):
                visit(n, where, n.name, gaps)
            if not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if n.name.startswith("_") and not n.name.endswith("__"):
                continue
            a = n.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            bare = [p.arg for p in params if p and p.annotation is None and p.arg not in ("self", "cls")]
            if bare or (n.returns is None and n.name != "__init__"):
                gaps.append(f"{where}:{n.lineno} {owner + '.' if owner else ''}{n.name}")

    gaps: list[str] = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            visit(ast.parse(path.read_text()), str(path.relative_to(root)), None, gaps)
    return gaps


def test_every_public_function_has_type_hints():
    assert public_functions_without_hints(ROOT, ("dcclib", "data_prep")) == []


def test_the_hint_check_finds_a_gap(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "def ok(x: int) -> int:\n    return x\n\ndef bad(x):\n    return x\n\n"
        "class C:\n    def m(self, y: int):\n        return y\n"
    )
    assert public_functions_without_hints(tmp_path, ("pkg",)) == ["pkg/m.py:4 bad", "pkg/m.py:8 C.m"]
