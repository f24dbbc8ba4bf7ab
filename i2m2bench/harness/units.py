"""Units: method resolution, the dependency graph and the unit hash.

A *unit* is one method trained (or evaluated) with one seed. Its hash covers everything that
determines its numbers:

* the task (name, version, source, resolved options — the data checksum among them);
* the method (fusion, options, recipe) and, recursively, the hashes of the units its recipe
  starts from;
* its resolved training settings;
* the code that defines it (:func:`code_fingerprint`): the source files of every class in the
  built model (fusion strategy, its nested strategies, encoders — built-in or from a plugin),
  of the dataset builder and of every registered perturbation, the suite's model-side and
  evaluation code (``fusion``, ``encoders``, ``poe``, ``types``, ``perturbations``, ``metrics``,
  the training loop, recipes, protocols and seeding), and the name and version of each other distribution
  those files come from (the standard library and torch are the environment's, not hashed). Editing a plugin's ``forward`` therefore gives a new hash, and a stale unit is
  never reused;
* the official-behaviour switches that change its model (``suite.official``), with the code that
  reproduces them (:func:`i2m2bench.harness.official.code_digest`) -- only when some switch
  applies, so that a suite without switches hashes as before they existed.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.metadata
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path

from i2m2bench.data import DATASETS
from i2m2bench.fusion.base import Fusion, build_fusion
from i2m2bench.harness import official
from i2m2bench.harness.config import MethodConfig, SuiteConfig, TrainConfig, read_method
from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.ginfiles import explicit_train_settings
from i2m2bench.harness.recipes import RECIPES, Recipe
from i2m2bench.harness.store import stable_hash
from i2m2bench.perturbations import PERTURBATIONS
from i2m2bench.types import Task

_PACKAGE = Path(__file__).resolve().parents[1]  # i2m2bench/
# The suite's own model-side code: every unit's numbers depend on it.
_MODEL_SIDE = ("fusion", "encoders", "poe", "types.py", "perturbations.py", "metrics.py",
               "harness/training.py", "harness/recipes.py", "harness/protocols.py",
               "harness/seeding.py")


@dataclass(frozen=True)
class Unit:
    method: str
    seed: int
    config: MethodConfig
    train: TrainConfig
    unit_hash: str
    deps: dict = field(default_factory=dict)  # recipe slot -> Unit it starts from
    #: the official-behaviour switches of ``suite.official`` that change this unit's model
    #: (:mod:`i2m2bench.harness.official`); empty by default
    official: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.method}/seed{self.seed}"

    @property
    def recipe(self) -> Recipe:
        return RECIPES.get(self.config.recipe)

    @property
    def label(self) -> str:
        return self.config.label or self.method


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def _builtin_digest() -> str:
    files = []
    for part in _MODEL_SIDE:
        p = _PACKAGE / part
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return stable_hash({f.relative_to(_PACKAGE).as_posix(): _file_digest(str(f)) for f in files})


@functools.lru_cache(maxsize=None)
def _packages_distributions() -> dict:
    return importlib.metadata.packages_distributions()


def _distribution(module: str) -> str | None:
    top = module.split(".")[0]
    dists = _packages_distributions().get(top) or []
    if not dists:
        return None
    name = dists[0]
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def _skipped(module: str) -> bool:
    """torch and the standard library: pinned by the environment, not by the method."""
    top = module.split(".")[0]
    return top in ("torch", "builtins") or top in sys.stdlib_module_names


def _source_digest(objs: list) -> str:
    """Digest of the source of ``objs`` (classes or functions) when their module has no file
    (a notebook, ``python -c``): their own source, else their qualified names."""
    parts = []
    for obj in objs:
        try:
            parts.append(inspect.getsource(obj))
        except (OSError, TypeError):
            parts.append(f"{obj.__module__}.{obj.__qualname__}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _family_files(module: str, path: str | None) -> dict[str, str]:
    """Digests of the other modules of a dataset family package (``i2m2bench/data/<family>/``:
    ``real``, ``embedded``, ``processing`` ...) when ``module`` is the package itself (its
    ``__init__`` defines the builder, which runs the code of all of them); else none."""
    if not (path and module.startswith("i2m2bench.data.") and Path(path).name == "__init__.py"):
        return {}
    return {f"{module}.{f.stem}": _file_digest(str(f)) for f in sorted(Path(path).parent.glob("*.py"))
            if f.name != "__init__.py"}


def code_fingerprint(model: Fusion, extra: tuple = ()) -> dict:
    """What in the code defines ``model``: a digest of the suite's model-side sources, and of
    every other source file whose classes the model is built from (or that defines one of
    ``extra``: the dataset builder, perturbations), with the distributions they come from."""
    by_module: dict[str, list] = {}
    for obj in [cls for sub in model.modules() for cls in type(sub).__mro__] + list(extra):
        mod = getattr(obj, "__module__", None)
        if mod and not _skipped(mod):
            by_module.setdefault(mod, []).append(obj)
    files, dists = {}, set()
    for mod in sorted(by_module):
        m = sys.modules.get(mod)
        path = getattr(m, "__file__", None)
        files[mod] = _file_digest(path) if path and Path(path).is_file() else _source_digest(by_module[mod])
        files.update(_family_files(mod, path))
        dist = None if mod.split(".")[0] == "i2m2bench" else _distribution(mod)  # ours: suite digest
        if dist:
            dists.add(dist)
    return {"suite": _builtin_digest(), "modules": files, "distributions": sorted(dists)}


class UnitResolver:
    """Resolves the suite's methods into units (settings, dependencies, hashes) for one task."""

    def __init__(self, suite: SuiteConfig, task: Task, task_identity: dict, version: str) -> None:
        self.suite, self.task, self.task_identity, self.version = suite, task, task_identity, version
        self._methods: dict[str, tuple[MethodConfig, TrainConfig]] = {}
        self._code: dict[str, dict] = {}
        self._official: dict[str, tuple] = {}
        self._units: dict[tuple[str, int], Unit] = {}

    def method(self, name: str) -> tuple[MethodConfig, TrainConfig]:
        if name in self._methods:
            return self._methods[name]
        if name not in self.suite.methods:
            close = difflib.get_close_matches(name, self.suite.methods, n=2)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"unknown method {name!r}.{hint} The suite's methods are: "
                              f"{', '.join(self.suite.methods)}")
        method, train = read_method(name, embedded=self.task.spec.source == "embedded",
                                    explicit=explicit_train_settings(name))
        recipe = RECIPES.get(method.recipe)
        if bool(method.pretrain) != recipe.uses_pretrain:
            raise ConfigError(f"method {name!r}: recipe {method.recipe!r} "
                              + ("needs a method.pretrain map" if recipe.uses_pretrain
                                 else f"takes no method.pretrain (got {method.pretrain})"))
        for dep in method.pretrain.values():
            if dep not in self.suite.methods:
                close = difflib.get_close_matches(str(dep), self.suite.methods, n=2)
                hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
                raise ConfigError(f"{name}/method.pretrain names {dep!r}, which is not a method of "
                                  f"suite.methods {list(self.suite.methods)}.{hint}")
        self._methods[name] = (method, train)
        return method, train

    def build(self, name: str) -> Fusion:
        """A fresh (CPU) model of method ``name``; errors name the method, fusion and options."""
        method, _ = self.method(name)
        try:
            return build_fusion(method.fusion, self.task.spec, **method.options)
        except (KeyError, ConfigError):
            raise
        except Exception as exc:
            raise ConfigError(f"method {name!r}: fusion {method.fusion!r} with options "
                              f"{method.options}: {exc}") from exc

    def code(self, name: str) -> dict:
        if name not in self._code:
            extra = (DATASETS.get(self.suite.dataset),
                     *(PERTURBATIONS.get(p).fn for p in PERTURBATIONS.names()))
            self._code[name] = code_fingerprint(self.build(name), extra)
        return self._code[name]

    def switches(self, name: str) -> tuple:
        """The switches of ``suite.official`` that change method ``name``'s model."""
        if name not in self._official:
            self._official[name] = (official.applicable(self.build(name), self.suite.official)
                                    if self.suite.official else ())
        return self._official[name]

    def unit(self, name: str, seed: int, _active: tuple = ()) -> Unit:
        if name in _active:
            raise ConfigError("method.pretrain dependencies form a cycle: "
                              + " -> ".join([*_active, name]))
        if (name, seed) in self._units:
            return self._units[name, seed]
        method, train = self.method(name)
        deps = {slot: self.unit(dep, seed, (*_active, name)) for slot, dep in method.pretrain.items()}
        identity = {"task": self.task_identity, "fusion": method.fusion, "options": method.options,
                    "recipe": method.recipe, "pretrain": {s: u.unit_hash for s, u in deps.items()},
                    "train": train.as_dict(), "code": self.code(name),
                    "suite_version": self.version}
        switches = self.switches(name)
        if switches:  # none: the identity (and hash) of a suite without switches, unchanged
            identity["official"] = {"switches": list(switches), "code": official.code_digest()}
        unit = Unit(name, seed, method, train, stable_hash(identity), deps, switches)
        self._units[name, seed] = unit
        return unit

    def plan(self, methods: list[str], seeds: list[int]) -> list[Unit]:
        """Every unit to bring about, each once, dependencies before their dependents (seed
        by seed, methods in suite order)."""
        order: list[Unit] = []
        seen: set[tuple[str, int]] = set()

        def visit(u: Unit) -> None:
            if (u.method, u.seed) in seen:
                return
            for dep in u.deps.values():
                visit(dep)
            seen.add((u.method, u.seed))
            order.append(u)

        for seed in seeds:
            for m in methods:
                visit(self.unit(m, seed))
        return order
