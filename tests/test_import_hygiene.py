"""Import hygiene: no import circles, and none hidden behind a function-level import.

Every module under ``actors``, ``protocols`` and ``apps`` is parsed with :mod:`ast` (not
imported), and every import statement is collected with where it runs: at module level,
inside a function (a lazy import), or under ``if TYPE_CHECKING:``. ``from pkg import
name`` counts as importing the submodule ``pkg.name`` when there is one, else ``pkg``.

Cross-package circles through lazy imports are allowed, and some are deliberate: the
runtime starts the supervisor actor by importing it in ``actors.runtime.system``, and the
supervisor actor imports the role actors (router, pool, account) when it creates them,
because those import the runtime at module level. Inside one package there are none.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("actors", "protocols", "apps")

MODULE, FUNCTION, TYPE_CHECKING = "module level", "in a function", "under TYPE_CHECKING"

# The only function-level imports allowed between modules of one package (besides a
# package's PEP 562 ``__getattr__``): a kind whose module needs the optional ``http``
# extra (aiohttp) is imported when it is first built, so that an engine that never uses
# the kind never loads aiohttp (test_openai_provider and test_cloud_api check that).
OPTIONAL_EXTRA_KINDS = {
    ("actors.pool.kinds", "actors.pool.openai"),
    ("actors.account.kinds", "actors.account.cloud_api"),
}


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` (both module names)."""

    source: str
    target: str
    line: int
    where: str  # MODULE, FUNCTION or TYPE_CHECKING
    function: str = ""  # the enclosing function's name, when in one

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line}, {self.where})"


@cache
def modules() -> Mapping[str, Path]:
    """Every module of the project by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for top in TOP_LEVEL:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def package_of(name: str) -> str:
    """The package a module belongs to; a package's ``__init__`` belongs to itself."""
    return name if is_package(name) else name.rpartition(".")[0]


def _known(name: str) -> str | None:
    """The project module ``name`` refers to: itself, or its nearest project ancestor."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, source: str, package: str) -> None:
        self.source = source
        self.package = package
        self.where = MODULE
        self.function = ""
        self.found: list[Import] = []

    def _add(self, target: str | None, line: int) -> None:
        if target is not None and target != self.source:
            self.found.append(Import(self.source, target, line, self.where, self.function))

    def _nested(self, node: ast.AST, where: str, function: str) -> None:
        saved = self.where, self.function
        self.where, self.function = where, function
        self.generic_visit(node)
        self.where, self.function = saved

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._nested(node, FUNCTION, self.function or node.name)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._nested(node, FUNCTION, self.function or node.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._nested(node, FUNCTION, self.function or "<lambda>")

    def visit_If(self, node: ast.If) -> None:
        if self.where == MODULE and _is_type_checking(node.test):
            self.visit(node.test)
            for child in node.body:
                self._nested(ast.Module(body=[child], type_ignores=[]), TYPE_CHECKING, "")
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(_known(alias.name), node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        for alias in node.names:
            submodule = f"{module}.{alias.name}"
            self._add(submodule if submodule in modules() else _known(module), node.lineno)


def collect(name: str, package: str, code: str) -> list[Import]:
    """The project modules that ``code`` (module ``name`` of ``package``) imports."""
    collector = _Collector(name, package)
    collector.visit(ast.parse(code, name))
    return collector.found


@cache
def imports_of(name: str) -> tuple[Import, ...]:
    """Every project module that module ``name`` imports, with where the import runs."""
    return tuple(collect(name, package_of(name), modules()[name].read_text(encoding="utf-8")))


def _ancestors(name: str) -> Iterator[str]:
    while "." in name:
        name = name.rpartition(".")[0]
        yield name


def find_cycle(edges: Mapping[str, list[Import]]) -> list[Import] | None:
    """One circle of ``edges`` (source -> its imports) as its list of edges, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[Import] = []

    def visit(node: str) -> list[Import] | None:
        state[node] = 1
        for edge in edges.get(node, []):
            seen = state.get(edge.target, 0)
            if seen == 1:
                start = next((i for i, e in enumerate(path) if e.source == edge.target), None)
                return [edge] if start is None else [*path[start:], edge]
            if seen == 0:
                path.append(edge)
                found = visit(edge.target)
                if found is not None:
                    return found
                path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if state.get(node, 0) == 0:
            found = visit(node)
            if found is not None:
                return found
    return None


def show(cycle: list[Import]) -> str:
    return "import circle:\n  " + "\n  ".join(str(edge) for edge in cycle)


# -- the collector itself ----------------------------------------------------------------------


_SAMPLE = """
from typing import TYPE_CHECKING
import actors.pool.core
from actors.pool import kinds, PoolCore
from . import providers
from .. import errors
if TYPE_CHECKING:
    from actors.pool.openai import OpenAIProvider
else:
    import json
def build():
    from actors.account import transports
class Sample:
    import protocols
"""


def test_the_collector_sees_every_import_and_where_it_runs() -> None:
    found = {
        (i.target, i.where, i.function) for i in collect("actors.pool.x", "actors.pool", _SAMPLE)
    }
    assert found == {
        ("actors.pool.core", MODULE, ""),
        ("actors.pool.kinds", MODULE, ""),  # a submodule by ``from package import name``
        ("actors.pool", MODULE, ""),  # ``PoolCore`` is a name of the package's __init__
        ("actors.pool.providers", MODULE, ""),
        ("actors.errors", MODULE, ""),
        ("actors.pool.openai", TYPE_CHECKING, ""),
        ("actors.account.transports", FUNCTION, "build"),
        ("protocols", MODULE, ""),  # a class body runs at import time
    }


def test_the_cycle_finder_finds_a_circle_and_names_its_edges() -> None:
    a_b, b_c, c_a = (
        Import("a", "b", 1, MODULE),
        Import("b", "c", 2, FUNCTION),
        Import("c", "a", 3, MODULE),
    )
    cycle = find_cycle({"a": [a_b], "b": [b_c], "c": [c_a]})
    assert cycle == [a_b, b_c, c_a]
    assert "b -> c (line 2, in a function)" in show(cycle)
    assert find_cycle({"a": [a_b], "b": [b_c]}) is None
    assert find_cycle(
        {"a": [Import("a", "a.x", 1, MODULE)], "a.x": [Import("a.x", "a", 1, MODULE)]}
    )


# -- the rules ---------------------------------------------------------------------------------


def _same_package_edges() -> dict[str, list[Import]]:
    """Imports between modules of one package, wherever they run.

    A package's ``__init__`` belongs to the package, so ``from actors.pool import X`` in
    ``actors/pool/core.py`` is an edge back to the ``__init__`` that imports the core: a
    circle, flagged like any other.
    """
    edges: dict[str, list[Import]] = {}
    for name in modules():
        for edge in imports_of(name):
            if package_of(edge.target) == package_of(name):
                edges.setdefault(name, []).append(edge)
    return edges


def test_no_package_has_an_import_circle_among_its_own_modules() -> None:
    cycle = find_cycle(_same_package_edges())
    assert cycle is None, show(cycle)


def test_modules_of_one_package_import_each_other_at_module_level() -> None:
    # A lazy import between siblings is how a circle hides; TYPE_CHECKING imports run
    # never, and the test above already refuses a circle through them.
    lazy = [
        edge
        for edges in _same_package_edges().values()
        for edge in edges
        if edge.where == FUNCTION
        and (edge.source, edge.target) not in OPTIONAL_EXTRA_KINDS
        # PEP 562: a package's __getattr__ loading one of its submodules on first use.
        and not (is_package(edge.source) and edge.function == "__getattr__")
        # An entry point checks what is installed before importing the rest; nothing
        # imports a __main__, so it cannot close a circle.
        and not edge.source.endswith(".__main__")
    ]
    assert not lazy, "imports that should be at module level:\n  " + "\n  ".join(map(str, lazy))


def test_the_allowed_lazy_imports_still_exist() -> None:
    # An entry left in the allowlist after its import is gone would quietly allow a new one.
    lazy = {(e.source, e.target) for e in _module_imports(FUNCTION)}
    assert lazy >= OPTIONAL_EXTRA_KINDS


def _module_imports(*where: str) -> list[Import]:
    return [edge for name in modules() for edge in imports_of(name) if edge.where in where]


def test_no_import_circle_runs_at_import_time_anywhere_in_the_project() -> None:
    # Importing ``a.b.c`` runs ``a`` and ``a.b`` first: those count too, except the
    # importer's own ancestors, which are always already being imported.
    edges: dict[str, list[Import]] = {}
    for edge in _module_imports(MODULE):
        edges.setdefault(edge.source, []).append(edge)
        own = {edge.source, *_ancestors(edge.source)}
        for parent in _ancestors(edge.target):
            if parent not in own and parent in modules():
                edges[edge.source].append(Import(edge.source, parent, edge.line, MODULE))
    cycle = find_cycle(edges)
    assert cycle is None, show(cycle)


@pytest.mark.parametrize("top", ["actors", "apps"])
def test_the_subpackages_are_layered_at_import_time(top: str) -> None:
    """No circle between subpackages (``actors.pool`` -> ``actors.runtime`` ...) at import time."""

    def subpackage(name: str) -> str | None:
        parts = name.split(".")
        head = ".".join(parts[:2])
        return head if parts[0] == top and len(parts) > 1 and is_package(head) else None

    edges: dict[str, list[Import]] = {}
    for edge in _module_imports(MODULE):
        source, target = subpackage(edge.source), subpackage(edge.target)
        if source and target and source != target:
            via = f"via {edge.source} -> {edge.target}"
            edges.setdefault(source, []).append(Import(source, target, edge.line, via))
    cycle = find_cycle(edges)
    assert cycle is None, show(cycle)
