"""The package's import structure, read from the source (AST), not by importing it.

Two rules hold for every module of ``exec_analytics``:

- **No import cycles.** Every ``import`` counts: at module level, under ``if TYPE_CHECKING:`` and inside
  functions (an import moved into a function to dodge a cycle still couples the two modules both ways).
- **No reach-ins to private names across modules.** A module never imports a name ``_x`` from another
  module of the package (``from .m import _x``, ``from . import _x``), never reads ``m._x`` through a module
  it imported, and never imports from a private module (``analysis/_groups.py``) of a package it is not part
  of: a private module is shared by its own package only.

Reach-ins through objects (``obj._attr``) cannot be told apart from legitimate access by the AST alone in
general; the simulator, which has no such access at all, is held to the stricter rule that it touches private
attributes only on ``self`` and ``cls``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "exec_analytics"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Known violations, if any must ever be tolerated: each entry must still occur (a fixed one fails the test
# until it is removed here), so the lists can only shrink. Both are empty.
ALLOWED_CYCLES: set[frozenset[str]] = set()
ALLOWED_PRIVATE_IMPORTS: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    """One import statement's target as seen from ``importer``."""

    importer: str
    module: str  # the package module that is imported (or that the names are imported from)
    name: str | None  # the name imported from ``module`` (``from module import name``), if any
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    """Every import of a package module in ``path``, wherever it sits in the file."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield Import(module, alias.name, None, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:  # ``from . import workload``: the submodule itself
                    yield Import(module, sub, None, node.lineno)
                    if _is_private(alias.name):
                        yield Import(module, target, alias.name, node.lineno)
                else:
                    yield Import(module, target, alias.name, node.lineno)


def _attribute_reach_ins(module: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    """``m._x`` where ``m`` is bound to a package module by an import of this file."""
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}
    for imp in _imports(module, path, known):
        if imp.name is None:
            aliases[imp.module.rsplit(".", 1)[-1]] = imp.module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in known:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _is_private(node.attr)
            and aliases[node.value.id] != module
        ):
            yield Import(module, aliases[node.value.id], node.attr, node.lineno)


def _graph() -> dict[str, set[str]]:
    known = _modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for imp in _imports(module, path, known):
            target = imp.module
            while target not in known:  # ``import exec_analytics.x.y`` where y is a name: the module x
                target = target.rsplit(".", 1)[0]
            if target != module:
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                members = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    members.add(m)
                    if m == node:
                        break
                if len(members) > 1:
                    out.append(frozenset(members))
    return out


def _private_violations() -> set[tuple[str, str]]:
    """(importer, "module:name") pairs that reach a private name of another module."""
    known = _modules()
    found: set[tuple[str, str]] = set()
    for module, path in known.items():
        for imp in [*_imports(module, path, known), *_attribute_reach_ins(module, path, known)]:
            if imp.name is not None and _is_private(imp.name) and imp.module != module:
                found.add((module, f"{imp.module}:{imp.name}"))
            # a private module is shared by the package that contains it, and no one else
            parts = imp.module.split(".")
            for i, part in enumerate(parts):
                owner = ".".join(parts[:i])
                if _is_private(part) and module != owner and not module.startswith(owner + "."):
                    found.add((module, imp.module))
    return found


# --- the checker itself, on small synthetic graphs and sources -------------------------------------------


def test_cycle_finder_on_known_graphs() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set(), "g": {"g"}}
    assert sorted(_cycles(graph), key=sorted) == [frozenset("abc"), frozenset("de")]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_reader_sees_function_level_type_checking_and_relative_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .server import SimulatorServer\n"
        "def f():\n    from ..filters import _private\n    from . import query\n"
        "import exec_analytics.rids as r\n"
        "x = r._hidden\n"
    )
    known = {
        "exec_analytics.simulator.m": src,
        "exec_analytics.simulator.query": src,
        "exec_analytics.rids": src,
    }
    got = {(i.module, i.name) for i in _imports("exec_analytics.simulator.m", src, known)}
    assert got == {
        ("exec_analytics.simulator.server", "SimulatorServer"),
        ("exec_analytics.filters", "_private"),
        ("exec_analytics.simulator.query", None),
        ("exec_analytics.rids", None),
    }
    reach = {(i.module, i.name) for i in _attribute_reach_ins("exec_analytics.simulator.m", src, known)}
    assert reach == {("exec_analytics.rids", "_hidden")}


# --- the package -----------------------------------------------------------------------------------------


def test_the_package_has_no_import_cycles() -> None:
    cycles = set(_cycles(_graph()))
    new = cycles - ALLOWED_CYCLES
    assert not new, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in new)
    fixed = ALLOWED_CYCLES - cycles
    assert not fixed, f"these cycles are gone: remove them from ALLOWED_CYCLES: {fixed}"


def test_no_module_imports_a_private_name_of_another() -> None:
    found = _private_violations()
    new = found - ALLOWED_PRIVATE_IMPORTS
    assert not new, f"private names reached across modules: {sorted(new)}"
    fixed = ALLOWED_PRIVATE_IMPORTS - found
    assert not fixed, f"these are fixed: remove them from ALLOWED_PRIVATE_IMPORTS: {sorted(fixed)}"


@pytest.mark.parametrize("path", sorted((ROOT / "simulator").glob("*.py")), ids=lambda p: p.name)
def test_the_simulator_touches_private_attributes_only_on_self(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    bad = [
        f"{path.name}:{node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and _is_private(node.attr)
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert not bad, bad


def test_the_simulator_takes_no_rule_of_the_api_from_the_client() -> None:
    """What the API accepts is the simulator's own (spec.py): a client bug must not become a simulator bug.

    Outside its package the simulator uses only time arithmetic, and ``to_utc`` for its Python arguments
    (``SimClock(now)``, ``ground_truth(start, end)``), never for a request.
    """
    known = _modules()
    allowed = {("exec_analytics.timeutil", n) for n in ("epoch_ms", "from_epoch_ms", "to_utc")}
    outside = {
        (imp.module, imp.name)
        for module, path in known.items()
        if module.startswith(f"{PACKAGE}.simulator")
        for imp in _imports(module, path, known)
        if not imp.module.startswith(f"{PACKAGE}.simulator")
    }
    assert outside <= allowed, sorted(outside - allowed, key=str)
