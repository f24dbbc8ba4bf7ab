"""The shape of the package, read with ``ast``: sizes of modules and functions, no module reading
another's private names, and each low layer importable on its own (checked in a fresh
interpreter). The layers themselves are checked in ``test_import_graph.py``.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "i2m2bench"

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
MAX_RUNNER_LINES = 400
#: generated tables and data, exempt from the size limits (module path -> why)
SIZE_EXEMPT: dict[str, str] = {}


def package_files(root: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------------------ sizes
def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length in lines) of every function longer than ``limit``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []

    def walk(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    if length > limit:
                        out.append((name, child.lineno, length))
                walk(child, name + ".")
            else:
                walk(child, prefix)

    walk(tree)
    return out


def test_no_module_over_the_limit():
    big = [(rel(p), n) for p in package_files()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
           and rel(p) not in SIZE_EXEMPT]
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_runner_only_orchestrates():
    n = len((PACKAGE / "harness" / "runner.py").read_text(encoding="utf-8").splitlines())
    assert n <= MAX_RUNNER_LINES, f"harness/runner.py has {n} lines (at most {MAX_RUNNER_LINES})"


def test_no_function_over_the_limit():
    long = [f"{rel(p)}:{line} {name} ({n} lines)" for p in package_files()
            if rel(p) not in SIZE_EXEMPT for name, line, n in long_functions(p)]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n  " + "\n  ".join(long)


def test_the_size_check_measures_nested_functions_and_methods(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(85))
    f = tmp_path / "m.py"
    f.write_text(f"class A:\n    def short(self):\n        pass\n\n    def long(self):\n"
                 + "\n".join("    " + ln for ln in body.splitlines()) + "\n\ndef ok():\n    pass\n")
    assert long_functions(f) == [("A.long", 5, 86)]


# ------------------------------------------------------------------------------ private names
def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_definitions(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, module and class attributes, and
    attributes it assigns on ``self``/``cls``."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
    return {n for n in out if _private(n)}


def _is_own(value: ast.AST) -> bool:
    """``self``, ``cls``, ``super()`` and ``type(self)``: the object's own attributes."""
    if isinstance(value, ast.Name):
        return value.id in ("self", "cls")
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
        return value.func.id == "super" or (value.func.id == "type" and len(value.args) == 1
                                            and _is_own(value.args[0]))
    return False


def private_reads(root: Path = PACKAGE, top: str = "i2m2bench") -> list[str]:
    """``file:line obj._name`` for every read of a private name that another module of the
    package defines (and this one does not), and every ``from top... import _name``."""
    trees = {p: ast.parse(p.read_text(encoding="utf-8")) for p in package_files(root)}
    defined = {p: private_definitions(t) for p, t in trees.items()}
    out = []
    for path, tree in trees.items():
        elsewhere = set().union(*(d for q, d in defined.items() if q != path)) - defined[path]
        where = path.relative_to(root.parent).as_posix()
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr in elsewhere
                    and not _is_own(node.value)):
                out.append(f"{where}:{node.lineno} {ast.unparse(node)}")
            elif (isinstance(node, ast.ImportFrom) and node.module
                  and (node.module == top or node.module.startswith(top + "."))):
                out += [f"{where}:{node.lineno} from {node.module} import {a.name}"
                        for a in node.names if _private(a.name)]
    return sorted(out)


def test_no_module_reads_another_modules_private_names():
    bad = private_reads()
    assert not bad, "private names read outside their module:\n  " + "\n  ".join(bad)


def test_the_private_check_finds_reads_and_imports_but_not_own_attributes(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("class Run:\n    def __init__(self):\n        self._log = []\n"
                              "    def add(self, other):\n        return self._log + other._log\n"
                              "def _helper():\n    pass\n")
    (pkg / "b.py").write_text("from pkg.a import _helper\n\ndef f(run):\n"
                              "    run._log.append(1)\n    return run._other, super()._log\n")
    assert private_reads(pkg, "pkg") == ["pkg/b.py:1 from pkg.a import _helper",
                                         "pkg/b.py:4 run._log"]


# ------------------------------------------------------------------------------ layers import alone
def loaded_after(statement: str) -> dict:
    code = ("import json, sys\n" + statement + "\n"
            "print(json.dumps({'mods': sorted(m for m in sys.modules if m.startswith('i2m2bench')),"
            " 'gin': 'gin' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _under(mods: list[str], *parts: str) -> list[str]:
    return [m for m in mods if any(m == f"i2m2bench.{p}" or m.startswith(f"i2m2bench.{p}.")
                                   for p in parts)]


def test_importing_the_poe_kernel_loads_no_harness_and_no_gin():
    got = loaded_after("import i2m2bench.poe")
    assert not got["gin"]
    assert _under(got["mods"], "harness", "data", "reporting", "cli", "fusion") == []


@pytest.mark.parametrize("module", ["i2m2bench.types", "i2m2bench.registry", "i2m2bench.fileio"])
def test_the_lowest_layer_imports_alone(module):
    got = loaded_after(f"import {module}")
    assert _under(got["mods"], "harness", "data", "reporting", "cli", "fusion", "encoders") == []


def test_the_middle_layer_loads_no_reporting_or_harness():
    got = loaded_after("import i2m2bench.data, i2m2bench.fusion, i2m2bench.encoders, "
                       "i2m2bench.metrics, i2m2bench.perturbations")
    assert _under(got["mods"], "harness", "reporting", "cli") == []


def test_the_package_api_loads_on_first_use():
    got = loaded_after("import i2m2bench\nassert i2m2bench.build_task and i2m2bench.FUSIONS")
    assert _under(got["mods"], "harness", "cli") == []
    got = loaded_after("from i2m2bench import run_suite, RECIPES, __version__")
    assert "i2m2bench.harness.runner" in got["mods"]
