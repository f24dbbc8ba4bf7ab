"""The import graph of ``i2m2bench``, read with ``ast`` (nothing is imported): no cycle, and the
layers of the architecture page (docs/architecture.md), lowest first::

    types, registry, fileio, numerics, poe  <  data, encoders, fusion, metrics, perturbations,
    predictions  <  reporting, bench, testing  <  harness, contrib  <  cli, __main__

An import goes to the same layer or a lower one, never upward; nothing imports the CLI but
``__main__``. ``from i2m2bench import NAME`` counts as an import of the module that defines NAME
(the package ``__init__`` re-exports lazily, see ``_EXPORTS`` there).

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


def lazy_exports(root: Path, package: str) -> dict[str, str]:
    """The root package's ``_EXPORTS`` (public name -> defining module), read with ``ast``."""
    init = root / package / "__init__.py"
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if (isinstance(node, (ast.Assign, ast.AnnAssign)) and
                any(isinstance(t, ast.Name) and t.id == "_EXPORTS"
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))):
            return ast.literal_eval(node.value)
    return {}


def imports_of(name: str, path: Path, modules: dict[str, Path], package: str,
               exports: dict[str, str] | None = None):
    """(target module, line) of every import of ``package``'s modules in one file, and the
    imports that name no module of the package (stale imports). ``from package import NAME``
    goes to ``exports[NAME]`` (the module that defines a lazily re-exported name)."""
    exports = exports or {}
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
                elif base == package and alias.name in exports:
                    add(exports[alias.name], node.lineno)
                else:
                    from_base = True
            if from_base:
                add(base, node.lineno)
    return [(t, ln) for t, ln in edges if t != name], unresolved


def import_graph(root: Path = ROOT, package: str = PACKAGE):
    """(graph: module -> {imported module: first line}, files, stale imports)."""
    modules = modules_of(root, package)
    exports = lazy_exports(root, package)
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    stale = []
    for name, path in modules.items():
        edges, unresolved = imports_of(name, path, modules, package, exports)
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


# ------------------------------------------------------------------------------ the layers
#: rank of each top-level part of the package (lowest first); every module must be covered
LAYERS = {
    0: ("i2m2bench._version", "i2m2bench.types", "i2m2bench.registry", "i2m2bench.fileio",
        "i2m2bench.numerics", "i2m2bench.poe"),
    1: ("i2m2bench.data", "i2m2bench.encoders", "i2m2bench.fusion", "i2m2bench.metrics", "i2m2bench.metrics_official",
        "i2m2bench.perturbations", "i2m2bench.predictions"),
    2: ("i2m2bench.reporting", "i2m2bench.bench", "i2m2bench.testing"),
    3: ("i2m2bench.harness", "i2m2bench.contrib"),
    4: ("i2m2bench.cli", "i2m2bench.__main__"),
}


def rank_of(module: str) -> int | None:
    """The layer of a module (the root package ``i2m2bench`` itself is 0: it imports nothing
    eagerly but ``_version``); None for a module no layer names."""
    if module == PACKAGE:
        return 0
    for rank, parts in LAYERS.items():
        if any(_in(module, p) for p in parts):
            return rank
    return None


def test_every_module_has_a_layer(graph):
    _, modules, _ = graph
    missing = [m for m in modules if rank_of(m) is None]
    assert not missing, f"modules in no layer (add them to LAYERS): {missing}"


def test_no_import_goes_to_a_higher_layer(graph):
    g, modules, _ = graph
    bad = [f"  {m} (layer {rank_of(m)}) -> {t} (layer {rank_of(t)}) at "
           f"{modules[m].relative_to(ROOT)}:{ln}"
           for m, ts in sorted(g.items()) for t, ln in sorted(ts.items())
           if rank_of(t) is not None and rank_of(m) is not None and rank_of(t) > rank_of(m)]
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


def test_the_layer_check_sees_lazy_and_package_level_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text('_EXPORTS = {"run": "pkg.high"}\n')
    (pkg / "low" / "__init__.py").write_text("def f():\n    from pkg import run\n")
    (pkg / "high.py").write_text("def run():\n    pass\n")
    g, _, _ = import_graph(tmp_path, "pkg")
    assert g["pkg.low"] == {"pkg.high": 2}


def test_nothing_imports_the_cli_but_main(graph):
    g, _, _ = graph
    bad = [(m, ln) for m, ts in g.items() for t, ln in ts.items()
           if _in(t, "i2m2bench.cli") and m != "i2m2bench.__main__"]
    assert not bad, bad
