"""The planner: gin -> suite -> one task per dataset setting -> methods resolved and validated on
a probe batch -> a plan of units, dependencies first, each with what a run does with it
(``train``, ``evaluate`` the protocols it lacks, or ``skip``).

:func:`plan_suite` is what :func:`i2m2bench.harness.runner.run_suite` and each worker of an
executor do before any training. A :class:`Workspace` says where a setting's units and records
live; a :class:`Planner` resolves, validates and plans the units of one setting.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import gin
import torch

from i2m2bench._version import __version__
from i2m2bench.data import accepts_data_root, build_task
from i2m2bench.data.base import resolve_data_root
from i2m2bench.fusion.base import ContractError, check_outputs
from i2m2bench.harness import official
from i2m2bench.harness.config import SuiteConfig, read_suite
from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.ginfiles import check_scopes, parse_gin
from i2m2bench.harness.protocols import Protocol, ProtocolError
from i2m2bench.harness.protocols import expand as expand_protocols
from i2m2bench.harness.recipes import RECIPES
from i2m2bench.harness.seeding import deterministic_setup
from i2m2bench.harness.store import provenance, stable_hash
from i2m2bench.harness.training import check_task_metrics, check_train_settings
from i2m2bench.harness.unit_files import UnitFiles
from i2m2bench.harness.units import Unit, UnitResolver
from i2m2bench.registry import load_plugins
from i2m2bench.types import Task, place_split

TRAIN, EVALUATE, SKIP = "train", "evaluate", "skip"


@dataclass(frozen=True)
class PlanItem:
    """What a run does with one unit: ``train``, ``evaluate`` (protocols it lacks) or ``skip``."""

    setting: str | None
    unit: Unit
    action: str
    run_dir: Path


@dataclass(frozen=True)
class Workspace:
    """One dataset setting of a suite (the whole suite when it has no sweep): its task, and
    where its units' folders (``out``) and its records (``results_dir``) live. ``label``: the
    setting's label in ``suite.sweep``, else None."""

    suite: SuiteConfig
    task: Task
    out: Path
    results_dir: Path
    label: str | None = None

    @property
    def board(self) -> str:
        """The board this setting's records belong to."""
        spec = self.task.spec
        name = self.suite.name
        if self.label is not None and self.suite.boards == "per_setting":
            name = f"{name}-{self.label}"
        return f"{name}-embedded-{spec.name}" if spec.source == "embedded" else name

    @property
    def results_path(self) -> Path:
        """The board's results file."""
        return self.results_dir / "results" / f"{self.board}.jsonl"

    def task_identity(self) -> dict:
        """What identifies the task in unit hashes and records (the data root aside)."""
        s = self.task.spec
        return {"name": s.name, "version": s.version, "source": s.source,
                "options": {k: v for k, v in self.task.options.items() if k != "data_root"}}

    def unit_dir(self, u: Unit) -> Path:
        """The run folder of unit ``u``."""
        d = self.out / self.board
        if self.label is not None:
            d = d / self.label
        return d / u.method / u.unit_hash / f"seed{u.seed}"

    def files(self, u: Unit) -> UnitFiles:
        """The files of unit ``u``'s run folder."""
        return UnitFiles(self.unit_dir(u))

    def where(self, u: Unit) -> str:
        """How log lines name unit ``u`` (``<setting>/<method>/seed<seed>`` in a sweep)."""
        return u.key if self.label is None else f"{self.label}/{u.key}"


class Planner:
    """Resolves, validates and plans the units of one setting (:class:`Workspace`) on ``device``.
    ``force``: train every unit again."""

    def __init__(self, workspace: Workspace, device: torch.device, force: bool = False) -> None:
        self.workspace, self.device, self.force = workspace, device, force
        self.resolver = UnitResolver(workspace.suite, workspace.task, workspace.task_identity(),
                                     __version__)
        self.items: list[PlanItem] = []

    def protocols(self, u: Unit) -> list[Protocol]:
        """The evaluation protocols of unit ``u`` (the method's, else the suite's)."""
        suite = self.workspace.suite
        specs = suite.protocols if u.config.protocols is None else u.config.protocols
        if not specs:
            raise ConfigError("no protocols to evaluate: suite.protocols (or a method.protocols) "
                              "is empty")
        try:
            return expand_protocols(list(specs), self.workspace.task, suite.levels)
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from exc

    def validate(self, methods: list[str]) -> None:
        """Catch configuration errors before hours are spent: build every model (and the models
        its recipe starts from), check pretrain maps, dependency cycles and protocols, and run
        each model on a probe batch of real samples (the fusion contract), and the task's
        metrics and each method's ``train.loss`` and ``train.select_on``."""
        task = self.workspace.task
        check_task_metrics(task)
        probe_split = task.splits["train"]
        probe = probe_split.batch(torch.arange(min(4, len(probe_split)), device=self.device),
                                  task.spec)
        checked = set()
        for name in methods:
            u = self.resolver.unit(name, 0)  # settings, dependencies, cycles
            for m in [name, *u.config.pretrain.values()]:
                if m in checked:
                    continue
                checked.add(m)
                cfg, train_cfg = self.resolver.method(m)
                check_train_settings(train_cfg, task, m)
                model = self.resolver.build(m)
                RECIPES.get(cfg.recipe).check_map(cfg.recipe, model, cfg.pretrain)
                try:
                    check_outputs(cfg.fusion, model.to(self.device).eval(), probe)
                except ContractError as exc:
                    raise ConfigError(f"method {m!r}: {exc}") from exc
            self.protocols(u)

    def action(self, u: Unit) -> str:
        """``train`` a unit without a checkpoint and ``metrics.json`` (or with --force);
        ``evaluate`` one whose ``metrics.json`` lacks some protocols or cannot be read (all its
        protocols are then evaluated again from ``model.pt``); else ``skip``."""
        files = self.workspace.files(u)
        if self.force or not files.complete():
            return TRAIN
        done = files.scores()
        if not done or any(p.key not in done for p in self.protocols(u)):
            return EVALUATE
        return SKIP

    def plan(self, methods: list[str], seeds: list[int]) -> list[PlanItem]:
        """Every unit of ``methods`` x ``seeds`` (dependencies first) with its action; kept in
        :attr:`items`."""
        ws = self.workspace
        self.items = [PlanItem(ws.label, u, self.action(u), ws.unit_dir(u))
                      for u in self.resolver.plan(methods, seeds)]
        return self.items


@dataclass
class SuitePlan:
    """A parsed, validated and planned suite: one :class:`Planner` per dataset setting (its
    :attr:`Planner.items` filled), the operative config's hash and the run's provenance."""

    suite: SuiteConfig
    planners: list
    methods: list
    seeds: list
    device: torch.device
    config_hash: str
    provenance: dict


def build_setting_task(suite: SuiteConfig, label: str | None, options: dict,
                       data_root: str | None) -> Task:
    """The task of one setting (``options``: its dataset options), the data root passed only to
    builders that read files; a sweep setting's error names the setting."""
    opts = dict(options)
    reads_files = accepts_data_root(suite.dataset)
    if data_root is not None and reads_files:
        opts["data_root"] = data_root  # only builders that read files declare it
    if suite.embedded_options:
        source = opts.get("source", "auto")
        embedded = (not reads_files or source == "embedded"
                    or (source == "auto" and resolve_data_root(data_root) is None))
        if embedded:  # defaults for the embedded data: a dataset option given explicitly wins
            opts = {**suite.embedded_options, **opts}
        else:
            print(f"[i2m2bench] {suite.name}: real data: suite.embedded_options "
                  f"{dict(suite.embedded_options)} not applied (they size the embedded data)",
                  file=sys.stderr)
    try:
        return build_task(suite.dataset, **opts)
    except (TypeError, ValueError, KeyError) as exc:
        if label is None:
            raise
        raise ConfigError(f"suite.sweep[{label!r}] = {suite.sweep[label]}: {exc}") from exc


def plan_suite(gin_files: list[str | Path], bindings: list[str] = (), *,
               methods: list[str] | None = None, seeds: list[int] | None = None,
               data_root: str | None = None, device: torch.device, out: str | Path = "runs",
               results_dir: str | Path = "leaderboards", force: bool = False) -> SuitePlan:
    """Parse the gin files, build every setting's task on ``device``, validate every method on a
    probe batch and plan every unit. The ``i2m2bench.plugins`` entry points are loaded first."""
    deterministic_setup()  # before any CUDA work: cuBLAS reads its workspace setting once
    load_plugins()
    parse_gin(gin_files, bindings)
    suite = read_suite()
    check_scopes(list(suite.methods))
    official.check_switches(suite.official)
    config_hash = stable_hash(gin.config_str())
    from i2m2bench.reporting import LAYOUTS

    LAYOUTS.get(suite.layout)  # an unknown layout is a config error before any training
    selected = list(suite.methods) if not methods else list(methods)
    seed_list = [int(s) for s in (seeds if seeds is not None else suite.seeds)]
    prov = provenance(device)
    planners: list[Planner] = []
    for label, options in suite.settings().items():
        task = build_setting_task(suite, label, options, data_root)
        task = Task(official.scored_spec(task.spec, suite.official),
                    {k: place_split(s, device) for k, s in task.splits.items()},
                    {k: place_split(s, device) for k, s in task.shifts.items()}, task.options)
        planner = Planner(Workspace(suite, task, Path(out), Path(results_dir), label), device, force)
        planner.validate(selected)  # every method, model, expert map and protocol, before training
        same = [p.workspace.label for p in planners
                if p.workspace.task_identity() == planner.workspace.task_identity()]
        if same:
            raise ConfigError(f"suite.sweep: settings {same[0]!r} and {label!r} resolve to the same "
                              "dataset options; their units (and result rows) would coincide")
        planner.plan(selected, seed_list)
        planners.append(planner)
    return SuitePlan(suite, planners, selected, seed_list, device, config_hash, prov)


__all__ = ["EVALUATE", "SKIP", "TRAIN", "PlanItem", "Planner", "SuitePlan", "Workspace",
           "build_setting_task", "plan_suite"]
