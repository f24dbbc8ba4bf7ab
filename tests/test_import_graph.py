"""The import graph of ``i2m2bench``, read with ``ast`` (nothing is imported): no cycle, and the
layering of docs/DESIGN.md — cli -> harness -> (fusion, encoders, data, metrics, reporting) ->
poe, types, registry; ``data`` never imports ``reporting``; ``reporting`` never imports the
harness or the CLI; nothing imports the CLI but ``__main__``.

Every import statement counts, wherever it is (module level, inside functions, under ``if``):
``import a.b``, ``from a.b import c`` (an edge to ``a.b.c`` when ``c`` is a submodule, else to
``a.b``) and relative ``from . import x`` forms. An import of a package is an import of its
``__init__``; the parent packages that Python initialises on the way are not counted (else every
submodule of a package that imports its submodules would close a cycle).
"""
from __future__ import annotations

import ast
from collections import defaultdict, deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "i2m2bench"


# ------------------------------------------------------------------------------ the graph
def modules_of(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``root/package``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path], package: str):
    """(target module, line) of every import of ``package``'s modules in one file, and the
    imports that name no module of the package (stale imports)."""
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    edges, unresolved = [], []

    def add(target: str, line: int):
        if target == package or target.startswith(package + "."):
            if target in modules:
                edges.append((target, line))
            else:
                unresolved.append((target, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_pkg else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if not (base == package or base.startswith(package + ".")):
                continue
            from_base = False
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if alias.name != "*" and sub in modules:
                    add(sub, node.lineno)
                else:
                    from_base = True
            if from_base:
                add(base, node.lineno)
    return [(t, ln) for t, ln in edges if t != name], unresolved


def import_graph(root: Path = ROOT, package: str = PACKAGE):
    """(graph: module -> {imported module: first line}, files, stale imports)."""
    modules = modules_of(root, package)
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    stale = []
    for name, path in modules.items():
        edges, unresolved = imports_of(name, path, modules, package)
        for target, line in edges:
            graph[name].setdefault(target, line)
        stale += [(name, t, ln) for t, ln in unresolved]
    return graph, modules, stale


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (sorted)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def a_cycle(graph, component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a component (breadth-first, inside it)."""
    start, members = component[0], set(component)
    prev, queue = {start: None}, deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return component


def describe(graph, modules, cycle: list[str]) -> str:
    """``a -> b (file:line)`` for each import of a cycle."""
    hops = []
    for a, b in zip(cycle, cycle[1:]):
        where = modules[a].relative_to(ROOT) if modules[a].is_relative_to(ROOT) else modules[a]
        hops.append(f"{a} -> {b} ({where}:{graph[a][b]})")
    return "\n      ".join(hops)


def cycle_report(graph, modules, components) -> str:
    parts = []
    for comp in components:
        parts.append(f"  cycle among {len(comp)} modules {comp}; e.g.\n      "
                     + describe(graph, modules, a_cycle(graph, comp)))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def _in(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# ------------------------------------------------------------------------------ the walker itself
def test_the_walker_finds_every_kind_of_import_and_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")  # inside a function
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")  # relative, a submodule
    (pkg / "sub" / "b.py").write_text("from ..c import X\n")  # relative, a name of a module
    (pkg / "c.py").write_text("import os\nif True:\n    import pkg.a\nX = 1\n")
    (pkg / "d.py").write_text("from pkg import sub\nfrom pkg.gone import Y\n")
    g, modules, stale = import_graph(tmp_path, "pkg")
    assert g["pkg.a"] == {"pkg.sub.b": 2}
    assert g["pkg.sub"] == {"pkg.sub.b": 1} and g["pkg.sub.b"] == {"pkg.c": 1}
    assert g["pkg.c"] == {"pkg.a": 3} and g["pkg.d"] == {"pkg.sub": 1}
    assert stale == [("pkg.d", "pkg.gone", 2)]
    comps = strongly_connected(g)
    assert comps == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert a_cycle(g, comps[0]) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]


# ------------------------------------------------------------------------------ the package
def test_no_import_cycle(graph):
    g, modules, _ = graph
    comps = strongly_connected(g)
    assert not comps, "import cycles in i2m2bench:\n" + cycle_report(g, modules, comps)


def test_reporting_publish_and_bench_are_on_no_cycle(graph):
    g, modules, _ = graph
    mine = [c for c in strongly_connected(g)
            if any(_in(m, "i2m2bench.reporting", "i2m2bench.harness.publish", "i2m2bench.bench")
                   for m in c)]
    assert not mine, cycle_report(g, modules, mine)


def test_every_import_names_an_existing_module(graph):
    _, _, stale = graph
    assert not stale, "imports of modules that do not exist:\n" + "\n".join(
        f"  {m} line {ln}: {t}" for m, t, ln in stale)


def test_data_never_imports_reporting(graph):
    g, _, _ = graph
    bad = [(m, t, ln) for m, ts in g.items() if _in(m, "i2m2bench.data")
           for t, ln in ts.items() if _in(t, "i2m2bench.reporting")]
    assert not bad, bad


def test_reporting_never_imports_the_harness_or_the_cli(graph):
    g, _, _ = graph
    bad = [(m, t, ln) for m, ts in g.items() if _in(m, "i2m2bench.reporting")
           for t, ln in ts.items() if _in(t, "i2m2bench.harness", "i2m2bench.cli")]
    assert not bad, bad


def test_nothing_imports_the_cli_but_main(graph):
    g, _, _ = graph
    bad = [(m, ln) for m, ts in g.items() for t, ln in ts.items()
           if _in(t, "i2m2bench.cli") and m != "i2m2bench.__main__"]
    assert not bad, bad
