"""The suite runner: gin config -> task -> (method, seed) units -> result rows -> leaderboard.

A *unit* is one method trained with one seed. Its identity (``unit_hash``) is a hash of
everything that determines its numbers: the task (name, version, resolved options, data
checksum), the method (fusion, options, recipe, and the unit hashes of the experts it is
initialised from) and its resolved training settings. A unit whose run directory already holds
its ``metrics.json`` is skipped (resume), so pretrained experts are trained once and reused by
every method that needs them. Recipes live in ``RECIPES``; the runner never branches on a
method's or strategy's name.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gin
import torch

import i2m2bench
from i2m2bench.data import build_task
from i2m2bench.fusion.base import FUSIONS, ContractError, Fusion, build_fusion, check_outputs
from i2m2bench.harness import store
from i2m2bench.harness.seeding import resolve_device, seed_everything
from i2m2bench.harness.protocols import DEFAULT_LEVELS, Protocol, ProtocolError
from i2m2bench.harness.protocols import expand as expand_protocols
from i2m2bench.harness.training import (NaNLossError, TrainConfig, TrainResult, evaluate,
                                        train_model)
from i2m2bench.registry import Registry
from i2m2bench.types import Task


class ConfigError(Exception):
    """A gin file, binding or suite definition that cannot be used; the message says where."""


class UnitFailed(RuntimeError):
    """A unit could not finish (NaN loss, or an expert it starts from failed); others go on."""


# ------------------------------------------------------------------------------ gin surface
_LABEL = re.compile(r"[A-Za-z0-9._-]+")
# A unit's training and timing figures (rows with protocol "train"), beside its scores.
UNIT_INFO = ("train_seconds", "samples_per_s", "eval_seconds", "robustness_eval_seconds",
             "epochs_run", "best_epoch", "peak_memory_mb")


@gin.configurable("suite")
def suite_config(*, name: str = gin.REQUIRED, dataset: str = gin.REQUIRED,
                 methods: list = gin.REQUIRED, dataset_options: dict | None = None,
                 seeds: list = (0, 1, 2), protocols: list = ("test", "shift:*"),
                 sweep: dict | None = None, layout: str = "standard",
                 levels: list = DEFAULT_LEVELS, reference: str = "late_fusion") -> dict:
    """The suite: which dataset, which methods (each defined under its own gin scope), seeds.

    ``sweep`` (optional) maps setting labels to dataset-option overrides: the whole suite runs
    once per setting, all settings' rows going to one results file (each row names its
    ``setting``). ``layout`` names the leaderboard layout (``i2m2bench.leaderboard.LAYOUTS``)
    that renders the suite's rows. ``protocols`` and ``levels``: see
    :mod:`i2m2bench.harness.protocols`. ``reference``: the method whose robustness curves the
    effective-robustness metric compares against (late fusion: the most common inter-only
    baseline of the suite, and I2M2's default inter expert).
    """
    if sweep is not None and (not isinstance(sweep, dict) or not sweep
                              or not all(isinstance(v, dict) for v in sweep.values())):
        raise ConfigError(f"suite.sweep must map setting labels to dicts of dataset options; "
                          f"got {sweep!r}")
    for label in sweep or {}:  # labels become folder names under --out
        if not isinstance(label, str) or not _LABEL.fullmatch(label) or set(label) == {"."}:
            raise ConfigError(f"suite.sweep: setting label {label!r} must be letters, digits, "
                              "'.', '_' or '-' (it names a run folder)")
    return dict(name=name, dataset=dataset, methods=list(methods),
                dataset_options=dict(dataset_options or {}), seeds=[int(s) for s in seeds],
                protocols=list(protocols), sweep=dict(sweep) if sweep else None, layout=layout,
                levels=[float(v) for v in levels], reference=reference)


@gin.configurable("embedded_schedule")
def embedded_schedule(*, overrides: dict | None = None) -> dict:
    """``train.*`` settings replaced when the task resolves to embedded data (a shorter schedule).

    Bound globally or per method (``i2m2_lf/embedded_schedule.overrides = {...}``); the
    leaderboard shows the schedule each method actually used.
    """
    return dict(overrides or {})


@gin.configurable("method")
def method_config(*, fusion: str = gin.REQUIRED, label: str | None = None,
                  options: dict | None = None, recipe: str = "joint",
                  pretrain: dict | None = None, protocols: list | None = None) -> dict:
    """One method of a suite, bound under the method's scope (``i2m2_lf/method.fusion = 'i2m2'``).

    ``pretrain`` maps expert names of the fusion (see ``Fusion.experts``) to the methods of the
    suite whose trained weights initialise them (recipe ``pretrain_then_finetune``), or
    ``{'model': <method>}`` for recipe ``evaluate_only`` (the other method's weights, evaluated
    under this method's options, e.g. another missing-modality treatment). ``protocols``
    replaces ``suite.protocols`` for this method.
    """
    return dict(fusion=fusion, label=label, options=dict(options or {}), recipe=recipe,
                pretrain=dict(pretrain or {}),
                protocols=None if protocols is None else list(protocols))


def parse_gin(files: list[str | Path], bindings: list[str] = ()) -> None:
    """Parse gin files and bindings afresh; errors name the file/binding (gin adds the line)."""
    gin.clear_config()
    for f in files:
        if not Path(f).is_file():
            raise ConfigError(f"gin file {f}: not found")
        # `include 'base.gin'` resolves next to the including file, at any depth (gin itself
        # only searches its path list; ours go first so it logs no failed lookups).
        prefixes = gin.config._LOCATION_PREFIXES  # noqa: SLF001 - gin has no public accessor
        for folder in _include_folders(Path(f).resolve()):  # included files' folders first
            if folder in prefixes:
                prefixes.remove(folder)
            prefixes.insert(0, folder)
    try:
        gin.parse_config_files_and_bindings([str(Path(f).resolve()) for f in files], list(bindings))
    except Exception as exc:  # gin raises ValueError/ParseError/ImportError with the location
        where = ", ".join(str(f) for f in files)
        extra = f" or --gin-param {list(bindings)}" if bindings else ""
        raise ConfigError(f"in {where}{extra}: {type(exc).__name__}: {exc}") from exc


_INCLUDE = re.compile(r"""^\s*include\s+['"]([^'"]+)['"]""", re.M)


def _include_folders(path: Path, seen: set | None = None) -> list[str]:
    """Folders where the ``include``s of ``path`` and of the files it includes (recursively)
    resolve, outermost first (only those: a folder that resolves nothing would make gin log a
    failed lookup for every include)."""
    seen = set() if seen is None else seen
    if path in seen or not path.is_file():
        return []
    seen.add(path)
    out: list[str] = []
    for name in _INCLUDE.findall(path.read_text(encoding="utf-8", errors="replace")):
        for base in (path.parent, *map(Path, out)):
            target = (base / name).resolve()
            if target.is_file():
                folder = str(base.resolve())
                out += [folder] if folder not in out else []
                out += [f for f in _include_folders(target, seen) if f not in out]
                break
    return out


def _bound_scopes() -> set[str]:
    scopes = set()
    for (scope, _selector) in gin.config._CONFIG:  # noqa: SLF001 - gin has no public accessor
        if scope:
            scopes.add(scope.split("/")[0])
    return scopes


# -------------------------------------------------------------------------------- recipes
RecipeFn = Callable[["SuiteRun", Fusion, dict, int], None]
RECIPES: Registry[RecipeFn] = Registry("recipe")


@RECIPES.register("joint")
def _joint(run: "SuiteRun", model: Fusion, method: dict, seed: int) -> None:
    """All experts trained together from scratch on the combined loss."""


_joint.uses_pretrain = False


@RECIPES.register("pretrain_then_finetune")
def _pretrain_then_finetune(run: "SuiteRun", model: Fusion, method: dict, seed: int) -> None:
    """Initialise each expert from a trained method (I2M2's AV-MNIST recipe), then fine-tune all."""
    experts = _check_expert_map(model, method["pretrain"])
    for expert, dep in method["pretrain"].items():
        path = run.ensure_unit(dep, seed)
        try:
            state = store.load_checkpoint(path)
        except Exception as exc:  # truncated or foreign file where our checkpoint should be
            raise ConfigError(f"{path}: cannot load the checkpoint of {dep}/seed{seed} "
                              f"({type(exc).__name__}: {exc}); delete {path.parent} (or pass "
                              "--force) to retrain it") from exc
        try:
            experts[expert].load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"expert {expert!r} cannot be initialised from method {dep!r}: the "
                              f"architectures differ ({exc})") from exc


_pretrain_then_finetune.uses_pretrain = True  # recipes declare whether method.pretrain applies


@RECIPES.register("evaluate_only")
def _evaluate_only(run: "SuiteRun", model: Fusion, method: dict, seed: int) -> None:
    """No training: the whole model is another method's trained model (same seed), evaluated
    under this method's options — e.g. I2M2 with its inter expert imputed instead of dropped."""
    (dep,) = _check_whole_model_map(method["pretrain"]).values()
    path = run.ensure_unit(dep, seed)
    try:
        model.load_state_dict(store.load_checkpoint(path))
    except RuntimeError as exc:
        raise ConfigError(f"method {dep!r}'s weights do not fit this method's model: {exc}") from exc


_evaluate_only.uses_pretrain = True
_evaluate_only.trains = False
_evaluate_only.whole_model = True


def _check_whole_model_map(pretrain: dict) -> dict:
    if set(pretrain) != {"model"}:
        raise ConfigError("recipe 'evaluate_only' needs method.pretrain = {'model': <method>}; "
                          f"got {pretrain}")
    return pretrain


def _check_expert_map(model: Fusion, pretrain: dict) -> dict:
    experts = model.experts()
    missing = set(experts) - set(pretrain)
    unknown = set(pretrain) - set(experts)
    if missing or unknown:
        raise ConfigError(f"method.pretrain must map each expert {sorted(experts)} to a method; "
                          f"missing {sorted(missing)}, unknown {sorted(unknown)}")
    return experts


# --------------------------------------------------------------------------------- runner
@dataclass
class Unit:
    method: str
    seed: int
    spec: dict  # resolved method spec
    train: TrainConfig
    unit_hash: str

    @property
    def key(self) -> str:
        return f"{self.method}/seed{self.seed}"


@dataclass
class SuiteRun:
    suite: dict
    task: Task
    device: torch.device
    out: Path
    results_dir: Path
    force: bool = False
    progress: bool = True
    config_hash: str = ""
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr))
    _specs: dict = field(default_factory=dict)
    _done: dict = field(default_factory=dict)
    _active: list = field(default_factory=list)
    _means: dict = field(default_factory=dict)
    summary: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)  # commit, device, torch: taken at start
    setting: str | None = None  # label of this sweep setting (``suite.sweep``), else None

    # -- identity ------------------------------------------------------------------------
    @property
    def board(self) -> str:
        name = self.suite["name"]
        spec = self.task.spec
        return f"{name}-embedded-{spec.name}" if spec.source == "embedded" else name

    @property
    def results_path(self) -> Path:
        return self.results_dir / "results" / f"{self.board}.jsonl"

    def task_identity(self) -> dict:
        s = self.task.spec
        return {"name": s.name, "version": s.version, "source": s.source,
                "options": {k: v for k, v in self.task.options.items() if k != "data_root"}}

    def method_spec(self, name: str) -> tuple[dict, TrainConfig]:
        if name in self._specs:
            return self._specs[name]
        if name not in self.suite["methods"]:
            close = difflib.get_close_matches(name, self.suite["methods"], n=2)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ConfigError(f"unknown method {name!r}.{hint} The suite's methods are: "
                              f"{', '.join(self.suite['methods'])}")
        with gin.config_scope(name):
            try:
                spec = method_config()
                train = TrainConfig()
                overrides = embedded_schedule()
            except Exception as exc:
                raise ConfigError(f"method {name!r}: {type(exc).__name__}: {exc} (bind it as "
                                  f"{name}/method.fusion = '...' in the gin file)") from exc
        if self.task.spec.source == "embedded" and overrides:
            try:
                train = dataclasses.replace(train, **overrides)
            except TypeError as exc:
                raise ConfigError(f"{name}/embedded_schedule.overrides: {exc}") from exc
        uses = getattr(RECIPES.get(spec["recipe"]), "uses_pretrain", False)
        if bool(spec["pretrain"]) != uses:
            raise ConfigError(f"method {name!r}: recipe {spec['recipe']!r} "
                              + ("needs a method.pretrain map from experts to methods" if uses
                                 else f"takes no method.pretrain (got {spec['pretrain']})"))
        self._specs[name] = (spec, train)
        return spec, train

    def unit(self, name: str, seed: int) -> Unit:
        if name in self._active:
            raise ConfigError(f"method.pretrain dependencies form a cycle: {' -> '.join(self._active + [name])}")
        spec, train = self.method_spec(name)
        self._active.append(name)
        try:
            deps = {e: self.unit(d, seed).unit_hash for e, d in spec["pretrain"].items()}
        finally:
            self._active.pop()
        identity = {"task": self.task_identity(), "fusion": spec["fusion"], "options": spec["options"],
                    "recipe": spec["recipe"], "pretrain": deps, "train": train.as_dict(),
                    "suite_version": i2m2bench.__version__}
        return Unit(name, seed, spec, train, store.stable_hash(identity))

    def unit_dir(self, u: Unit) -> Path:
        d = self.out / self.board
        if self.setting is not None:
            d = d / self.setting
        return d / u.method / u.unit_hash / f"seed{u.seed}"

    # -- execution -------------------------------------------------------------------------
    def ensure_unit(self, name: str, seed: int) -> Path:
        """Train unit (name, seed) unless its run directory is complete; return its checkpoint."""
        u = self.unit(name, seed)
        d = self.unit_dir(u)
        if (d / "metrics.json").exists() and (d / "model.pt").exists() and not (
                self.force and u.key not in self._done):
            if u.key not in self._done:
                self._done[u.key] = d
                done = self._metrics(d)
                todo = [p for p in self._protocols(u.spec) if done and p.key not in done]
                if todo:
                    self._evaluate_more(u, d, todo, done)
                else:
                    self.log(f"[i2m2bench] {u.key}: done already ({d}); skipping")
            return d / "model.pt"
        self._train_unit(u, d)
        self._done[u.key] = d
        return d / "model.pt"

    def _train_unit(self, u: Unit, d: Path) -> None:
        spec, task = u.spec, self.task
        # Dependencies first (they consume RNG), then seed this unit.
        for dep in spec["pretrain"].values():
            try:
                self.ensure_unit(dep, u.seed)
            except UnitFailed as exc:
                self._record_failure(u, d, f"expert source {dep}/seed{u.seed} failed ({exc})")
                raise UnitFailed(f"{u.key}: expert source {dep}/seed{u.seed} failed") from exc
        gen = seed_everything(u.seed)
        model = build_fusion(spec["fusion"], task.spec, **spec["options"]).to(self.device)
        train = task.splits["train"]
        model.set_input_means(self.input_means())
        recipe = RECIPES.get(spec["recipe"])
        recipe(self, model, spec, u.seed)
        trains = getattr(recipe, "trains", True)
        if trains:
            self.log(f"[i2m2bench] {u.key}: training {spec['fusion']} ({spec['recipe']}, "
                     f"lr={u.train.lr}, epochs={u.train.epochs}, batch={u.train.batch_size}) on "
                     f"{len(train)} samples, {self.device}")
        else:
            self.log(f"[i2m2bench] {u.key}: evaluating {spec['fusion']} ({spec['recipe']}: the "
                     f"weights of {', '.join(spec['pretrain'].values())}, no training), {self.device}")
        try:
            if trains:
                res = train_model(model, train, task.splits["val"], task.spec, u.train, gen,
                                  desc=u.key, progress=self.progress)
            else:
                val = evaluate(model, task.splits["val"], task.spec, u.train.eval_batch_size)
                res = TrainResult(val, -1, 0, 0.0, 0.0, [])
        except NaNLossError as exc:
            self._record_failure(u, d, str(exc))
            raise UnitFailed(str(exc)) from exc
        metrics = {"val": res.best_val}
        t0 = time.perf_counter()
        robust_s = 0.0
        for proto in self._protocols(spec):
            t1 = time.perf_counter()
            metrics[proto.key] = self._evaluate(model, proto, u)
            if proto.robustness:
                robust_s += time.perf_counter() - t1
        eval_s = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if self.device.type == "cuda":
            peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        info = dict(zip(UNIT_INFO, (res.seconds, res.samples_per_s, eval_s, robust_s,
                                    res.epochs_run, res.best_epoch, peak_mb)))
        store.save_checkpoint(d / "model.pt", model.state_dict())
        store.write_text_atomic(d / "operative_config.gin", gin.operative_config_str())
        store.write_text_atomic(d / "unit.json", json.dumps(
            {"method": u.method, "seed": u.seed, "unit_hash": u.unit_hash, "spec": spec,
             "train": u.train.as_dict(), "task": self.task_identity(), "history": res.history},
            indent=1, default=str))
        self._append(u, metrics, info)
        store.write_text_atomic(d / "metrics.json", json.dumps({**metrics, **info}, indent=1))
        key = u.key if self.setting is None else f"{self.setting}/{u.key}"
        self.summary.append({"unit": key, **metrics, **info})
        self.log(f"[i2m2bench] {u.key}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
                 + f"; {res.samples_per_s:.0f} samples/s, {res.seconds:.1f}s train")

    @staticmethod
    def _metrics(d: Path) -> dict:
        """A complete unit's ``metrics.json`` ({} when unreadable: the unit is then skipped as it
        is; --force retrains it)."""
        try:
            return json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _evaluate_more(self, u: Unit, d: Path, todo: list[Protocol], done: dict) -> None:
        """A complete unit lacks some of the suite's protocols (added since it was trained):
        evaluate just those from its checkpoint — no retraining — and add their rows."""
        self.log(f"[i2m2bench] {u.key}: trained already ({d}); evaluating "
                 f"{len(todo)} new protocol(s)")
        model = build_fusion(u.spec["fusion"], self.task.spec, **u.spec["options"]).to(self.device)
        path = d / "model.pt"
        try:
            model.load_state_dict(store.load_checkpoint(path))
        except Exception as exc:
            raise ConfigError(f"{path}: cannot load the checkpoint of {u.key} ({type(exc).__name__}: "
                              f"{exc}); delete {d} (or pass --force) to retrain it") from exc
        t0 = time.perf_counter()
        new = {p.key: self._evaluate(model, p, u) for p in todo}
        spent = time.perf_counter() - t0
        timing = {k: done.get(k, 0.0) + spent for k in ("eval_seconds", "robustness_eval_seconds")}
        metrics = {**done, **new, **timing}
        old = [r for r in store.read_rows(self.results_path)
               if r.get("unit_hash") == u.unit_hash and r.get("seed") == u.seed]
        if old:  # keep the unit's rows (and their provenance); add the new ones, update timing
            store.upsert_unit_rows(self.results_path, [r for r in old if r["metric"] not in timing]
                                   + self._rows(u, new, timing))
        else:  # a results folder that never saw this unit: all of its rows, dated now
            self._append(u, {k: v for k, v in metrics.items() if k not in UNIT_INFO},
                         {k: v for k, v in metrics.items() if k in UNIT_INFO})
        store.write_text_atomic(d / "metrics.json", json.dumps(metrics, indent=1))
        self.log(f"[i2m2bench] {u.key}: " + ", ".join(f"{k}={v:.4f}" for k, v in new.items())
                 + f"; {spent:.1f}s")

    def _evaluate(self, model: Fusion, proto: Protocol, u: Unit) -> float:
        task = self.task
        split = task.splits["test"] if proto.split == "test" else task.shifts[proto.split]
        return evaluate(model, split, task.spec, u.train.eval_batch_size, proto.transform(task, u.seed))

    def validate(self, methods: list[str]) -> None:
        """Catch configuration errors before hours are spent: build every model once (and the
        models its experts come from), check expert maps, dependency cycles and protocols."""
        for name in methods:
            u = self.unit(name, 0)  # resolves settings and pretrain dependencies (cycles)
            for m in [name, *u.spec["pretrain"].values()]:
                spec, _ = self.method_spec(m)
                try:
                    model = build_fusion(spec["fusion"], self.task.spec, **spec["options"])
                except (KeyError, ConfigError):
                    raise
                except Exception as exc:
                    raise ConfigError(f"method {m!r}: fusion {spec['fusion']!r} with options "
                                      f"{spec['options']}: {exc}") from exc
                if m == name and spec["pretrain"]:
                    if getattr(RECIPES.get(spec["recipe"]), "whole_model", False):
                        _check_whole_model_map(spec["pretrain"])
                    else:
                        _check_expert_map(model, spec["pretrain"])
                probe = self.task.splits["train"]
                batch = probe.batch(torch.arange(min(4, len(probe)), device=self.device), self.task.spec)
                try:
                    check_outputs(spec["fusion"], model.to(self.device).eval(), batch)
                except ContractError as exc:
                    raise ConfigError(f"method {m!r}: {exc}") from exc
            self._protocols(u.spec)

    def input_means(self) -> dict[str, torch.Tensor]:
        """Per-modality training-set mean input (for mean imputation), computed once per run."""
        if not self._means:
            train = self.task.splits["train"]
            self._means = {
                m.name: (train.inputs[m.name].sum(0, dtype=torch.float64) / len(train) * m.scale).float()
                for m in self.task.spec.modalities}  # summed in float64, no float copy of the data
        return self._means

    def _protocols(self, method_spec: dict | None = None) -> list[Protocol]:
        own = (method_spec or {}).get("protocols")
        specs = self.suite["protocols"] if own is None else own
        if not specs:
            raise ConfigError("no protocols to evaluate: suite.protocols (or a method.protocols) "
                              "is empty")
        try:
            return expand_protocols(specs, self.task, self.suite.get("levels", DEFAULT_LEVELS))
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from exc

    def _record_failure(self, u: Unit, d: Path, message: str) -> None:
        """A failed unit leaves a ``failed.json`` and a ``failed`` row; it is retried next run."""
        self.log(f"[i2m2bench] {u.key}: FAILED: {message}")
        store.write_text_atomic(d / "failed.json", json.dumps({"unit": u.key, "error": message}))
        row = {**self._base_row(u), "protocol": "train", "metric": "failed", "value": 1.0,
               "higher_is_better": None, "error": message}
        store.upsert_unit_rows(self.results_path, [row])
        self.failures.append(f"{u.key}: {message}")

    def _base_row(self, u: Unit) -> dict:
        spec = self.task.spec
        return {"board": self.board, "suite": self.suite["name"], "dataset": spec.name,
                "dataset_version": spec.version, "data_source": spec.source, "method": u.method,
                "label": u.spec["label"] or u.method, "family": FUSIONS.get(u.spec["fusion"]).family,
                "fusion": u.spec["fusion"], "recipe": u.spec["recipe"], "seed": u.seed,
                "unit_hash": u.unit_hash, "config_hash": self.config_hash,
                "train": u.train.as_dict(), "n_train": len(self.task.splits["train"]),
                "layout": self.suite.get("layout", "standard"), "setting": self.setting,
                "reference_method": self.suite.get("reference"),
                "task_options": self.task_identity()["options"],
                **(self.provenance or store.provenance(self.device)), "date": store.utc_now()}

    def _rows(self, u: Unit, metrics: dict, info: dict) -> list[dict]:
        """Result rows of unit ``u``: one per scored protocol, one per training/timing figure."""
        spec = self.task.spec
        base = self._base_row(u)
        rows = [{**base, "protocol": p, "metric": spec.metric, "value": v,
                 "higher_is_better": spec.higher_is_better} for p, v in metrics.items()]
        rows += [{**base, "protocol": "train", "metric": k, "value": v, "higher_is_better": None}
                 for k, v in info.items()]
        return rows

    def _append(self, u: Unit, metrics: dict, info: dict) -> None:
        store.upsert_unit_rows(self.results_path, self._rows(u, metrics, info))


def run_suite(gin_files: list[str | Path], bindings: list[str] = (), *,
              methods: list[str] | None = None, seeds: list[int] | None = None,
              data_root: str | None = None, device: str | None = None, out: str | Path = "runs",
              results_dir: str | Path = "leaderboards", force: bool = False,
              progress: bool = True, render: bool = True) -> SuiteRun:
    """Run a suite from gin files; returns the :class:`SuiteRun` (with ``.summary``)."""
    parse_gin(gin_files, bindings)
    try:
        suite = suite_config()
    except Exception as exc:
        raise ConfigError(f"suite definition: {type(exc).__name__}: {exc}") from exc
    unknown_scopes = _bound_scopes() - set(suite["methods"])
    if unknown_scopes:
        raise ConfigError(f"bindings under scope(s) {sorted(unknown_scopes)} name no method of "
                          f"suite.methods {suite['methods']} (typo?)")
    config_hash = store.stable_hash(gin.config_str())
    dev = resolve_device(device)
    store.check_writable(Path(out), Path(results_dir) / "results")
    from i2m2bench.leaderboard import LAYOUTS, render_board_file

    LAYOUTS.get(suite["layout"])  # an unknown layout is a config error before any training
    settings = suite["sweep"] or {None: {}}
    runs = []
    for label, overrides in settings.items():
        opts = {**suite["dataset_options"], **overrides}
        if data_root is not None:
            opts["data_root"] = data_root
        if label is None:
            task = build_task(suite["dataset"], **opts)
        else:
            try:
                task = build_task(suite["dataset"], **opts)
            except (TypeError, ValueError, KeyError) as exc:
                raise ConfigError(f"suite.sweep[{label!r}] = {overrides}: {exc}") from exc
        task = Task(task.spec, {k: s.to(dev) for k, s in task.splits.items()},
                    {k: s.to(dev) for k, s in task.shifts.items()}, task.options)
        run = SuiteRun(suite, task, dev, Path(out), Path(results_dir), force=force,
                       progress=progress, config_hash=config_hash,
                       provenance=store.provenance(dev), setting=label)
        selected = suite["methods"] if not methods else methods
        run.validate(selected)  # every method, model, expert map and protocol, before training
        same = [r.setting for r, _ in runs if r.task_identity() == run.task_identity()]
        if same:
            raise ConfigError(f"suite.sweep: settings {same[0]!r} and {label!r} resolve to the same "
                              "dataset options; their units (and result rows) would coincide")
        runs.append((run, selected))
    for run, selected in runs:
        task = run.task
        where = "" if run.setting is None else f", setting {run.setting!r}"
        run.log(f"[i2m2bench] suite {suite['name']!r}{where}: dataset {task.spec.name} "
                f"v{task.spec.version} ({task.spec.source} data), {len(selected)} methods x seeds "
                f"{seeds or suite['seeds']}, device {dev}; results -> {run.results_path}")
        for seed in (seeds if seeds is not None else suite["seeds"]):
            for m in selected:
                try:
                    run.ensure_unit(m, int(seed))
                except UnitFailed:
                    continue  # recorded; the other units go on
    run = runs[0][0]
    for other, _ in runs[1:]:  # one summary for the whole sweep
        run.summary += other.summary
        run.failures += other.failures
    if render:
        path = render_board_file(run.results_path, run.results_dir)
        run.log(f"[i2m2bench] leaderboard -> {path}")
    return run
