"""The suite runner — orchestration only: gin -> task -> units -> execution -> records -> board.

Each job has its own module: the settings (``config``) and the checks of a run's arguments
(``checks``, ``devices``), gin files (``ginfiles``), what a unit is and its hash (``units``),
the plan (``planner``: resolve, validate on a probe batch, plan), bringing one unit about
(``unit_runner``: train, evaluate every protocol, re-evaluate), a unit's run folder
(``unit_files``: ``unit.json``, ``metrics.json``, predictions, checkpoint), its records and
healing (``unit_records``, ``store``), who runs the units (``executors``: in-process, torchrun
ranks, Ray) and the boards (``publish`` / ``i2m2bench.reporting``). The runner wires them: it
plans every unit first (dependencies before dependents), hands the plan to an executor, which
brings each unit about once through :meth:`SuiteRun.run_unit` and hands its
:class:`~i2m2bench.harness.unit_runner.UnitResult` to :meth:`SuiteRun.collect`, then renders the
boards. It never branches on a method's or strategy's name.

Every run checks the result store against the run directories: a complete unit whose rows are
missing or differ from its ``metrics.json`` has them written again (original dates, no
retraining), a unit whose ``metrics.json`` cannot be read is evaluated again from ``model.pt``, and
each repair is logged in one line (``SuiteRun.repairs``) and listed in the summary.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch

from i2m2bench.fileio import locked
from i2m2bench.harness import distributed, store
from i2m2bench.harness.checks import check_run_arguments, check_writable
from i2m2bench.harness.errors import ConfigError, UnitFailed
from i2m2bench.harness.executors import make_executor
from i2m2bench.harness.planner import (EVALUATE, SKIP, TRAIN, PlanItem, Planner, SuitePlan,
                                       plan_suite)
from i2m2bench.harness.unit_records import UnitRecords
from i2m2bench.harness.unit_runner import UNIT_INFO, UnitJob, UnitResult, UnitRunner
from i2m2bench.predictions import FILE as PREDICTIONS_FILE

__all__ = ["ConfigError", "UnitFailed", "PlanItem", "SuiteRun", "run_suite", "plan_runs",
           "UNIT_INFO"]


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass
class Progress:
    """``unit k/N`` lines with the elapsed time and an ETA for the whole suite."""

    total: int
    log: Callable[[str], None]
    started: float = field(default_factory=time.perf_counter)
    done: int = 0

    def begin(self, what: str) -> None:
        """Log that the next unit begins (``what`` names it and what is done)."""
        elapsed = time.perf_counter() - self.started
        eta = "—" if not self.done else _hms(elapsed / self.done * (self.total - self.done))
        self.log(f"[i2m2bench] unit {self.done + 1}/{self.total} {what} "
                 f"(elapsed {_hms(elapsed)}, ETA {eta})")

    def end(self) -> None:
        """One unit more is done."""
        self.done += 1


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


class SuiteRun:
    """One dataset setting of a suite (the whole suite when it has no sweep): its plan
    (``plan``: [:class:`PlanItem`], dependencies first) and what the run did (``summary``,
    ``failures``, ``repairs``; ``failed``: (method, seed) -> error of the units that failed).

    Executors use two methods: :meth:`run_unit` brings one planned unit about and returns a
    :class:`UnitResult`; :meth:`collect` takes it into this run (writing the records and showing
    the lines a deferred result carries)."""

    def __init__(self, planner: Planner, records: UnitRecords, *, progress: bool = True,
                 tensorboard: Path | None = None, log: Callable[[str], None] | None = None) -> None:
        self.planner, self.records = planner, records
        self.units = UnitRunner(planner, records, progress=progress, tensorboard=tensorboard)
        self.log = log or _stderr
        self.plan: list[PlanItem] = list(planner.items)
        self.summary: list = []
        self.failures: list = []
        self.repairs: list = []  # one line per repair of the result store
        self.failed: dict = {}

    # -- identity (the planner's workspace) -------------------------------------------------
    @property
    def workspace(self):
        """The setting's task and where its units and records live."""
        return self.planner.workspace

    @property
    def suite(self):
        """The suite's settings."""
        return self.workspace.suite

    @property
    def task(self):
        """The setting's task."""
        return self.workspace.task

    @property
    def device(self) -> torch.device:
        """The device units train on."""
        return self.planner.device

    @property
    def out(self) -> Path:
        """The folder of the units' run folders."""
        return self.workspace.out

    @property
    def results_dir(self) -> Path:
        """The leaderboard folder (results files under ``results/``)."""
        return self.workspace.results_dir

    @property
    def setting(self) -> str | None:
        """The label of this sweep setting (``suite.sweep``), else None."""
        return self.workspace.label

    @property
    def resolver(self):
        """The unit resolver (methods, units, hashes)."""
        return self.planner.resolver

    @property
    def board(self) -> str:
        """The board this setting's records belong to."""
        return self.workspace.board

    @property
    def results_path(self) -> Path:
        """The board's results file."""
        return self.workspace.results_path

    def unit_dir(self, u) -> Path:
        """The run folder of unit ``u``."""
        return self.workspace.unit_dir(u)

    def where(self, u) -> str:
        """How log lines name unit ``u``."""
        return self.workspace.where(u)

    def item(self, method: str, seed: int) -> PlanItem:
        """The plan item of unit (``method``, ``seed``)."""
        return next(it for it in self.plan if it.unit.method == method and it.unit.seed == seed)

    # -- the executors' interface ------------------------------------------------------------
    def run_unit(self, item: PlanItem, progress: Progress | None = None, *,
                 failed: Mapping | None = None, deferred: bool = False) -> UnitResult:
        """Bring one unit about under its lock (``<run dir>/unit.lock``): a run that shares the
        run folder with another waits while the other works on the unit, then decides again
        what the unit needs (usually nothing: the other run completed it). A complete unit's
        rows are first checked against its ``metrics.json`` (healed). ``failed``: the units that
        failed so far (default this run's); ``deferred``: the unit runs on behalf of another
        process (a Ray worker's driver), which writes its records, shows its lines and heals.

        Under torchrun (:mod:`~i2m2bench.harness.distributed`) rank 0 holds the lock and decides,
        every rank trains, and rank 0 alone evaluates and writes; the ranks meet after each unit
        (an I2M2 unit then finds its experts' checkpoints)."""
        u, main = item.unit, distributed.is_main()
        result = UnitResult(self.setting, u.method, u.seed, item.action, deferred=deferred)
        job = UnitJob(u, self.workspace.files(u), result,
                      result.log.append if deferred else self.log,
                      self.failed if failed is None else failed)
        lock = (job.files.lock(on_wait=lambda path: job.log(
            f"[i2m2bench] {self.where(u)}: another run is working on it ({path}); waiting"))
            if main else contextlib.nullcontext())
        with lock:
            result.action = distributed.broadcast(self.planner.action(u) if main else None)
            if result.action == SKIP:
                if main and not deferred:
                    self._heal(u, result, job.log)
                job.log(f"[i2m2bench] {self.where(u)}: done already ({self.unit_dir(u)}); skipping")
                return result
            self._bring_about(job, progress)
        distributed.barrier()
        return result

    def _bring_about(self, job: UnitJob, progress: Progress | None) -> None:
        """Train the unit, evaluate the protocols it lacks, or re-evaluate it (``job.result.action``)."""
        u, action, main = job.unit, job.result.action, distributed.is_main()
        metrics = job.files.read_metrics() if action == EVALUATE and main else {}
        what = ("training" if action == TRAIN else "new protocols" if metrics
                else "re-evaluating (metrics.json unreadable or not verified)")
        if progress is not None:
            progress.begin(f"{self.where(u)}: {what}")
        try:
            if action == TRAIN:
                self.units.train(job)
            elif not main:
                pass  # evaluation is rank 0's
            elif metrics:
                if not job.result.deferred:
                    self._heal(u, job.result, job.log)
                self.units.evaluate_more(job)
            else:
                self.units.reevaluate(job)
        except UnitFailed:
            pass  # recorded; the other units go on
        finally:
            if progress is not None:
                progress.end()

    def _heal(self, u, result: UnitResult, log: Callable[[str], None]) -> None:
        repair = self.records.heal(u, log)
        if repair is not None:
            result.repairs.append(repair[0])
            result.summary.append(repair[1])

    def collect(self, item: PlanItem, result: UnitResult) -> None:
        """Take one unit's result into this run: a deferred result's lines are shown and its
        records written (through this process's store; a unit another run completed meanwhile is
        healed here), the plan says what was done, and the summary, failures, repairs and
        failed units are added to."""
        if result.deferred:
            for line in result.log:
                self.log(line)
            for rec, prov, replace, label in result.records:
                self.records.write(rec, prov, replace, label, self.log)
            if result.action == SKIP:
                self._heal(item.unit, result, self.log)
        if result.action != item.action:  # another run got there first (or undid it)
            i = self.plan.index(item)
            self.plan[i] = dataclasses.replace(item, action=result.action)
        self.summary += result.summary
        self.failures += result.failures
        self.repairs += result.repairs
        if result.error is not None:
            self.failed[item.unit.method, item.unit.seed] = result.error

    def write_record(self, rec: dict, prov: dict, replace: bool, label: str) -> None:
        """Upsert one unit record into this board's results file, logging the store's notes."""
        self.records.write(rec, prov, replace, label, self.log)


def plan_runs(gin_files: list[str | Path], bindings: list[str] = (), *, device: torch.device,
              progress: bool = True, tensorboard: Path | None = None,
              log: Callable[[str], None] | None = None, **planning) -> tuple[SuitePlan, list[SuiteRun]]:
    """:func:`~i2m2bench.harness.planner.plan_suite` (``planning``: its keyword arguments), and
    one :class:`SuiteRun` per dataset setting: what :func:`run_suite` and each worker of an
    executor do before any training."""
    plan = plan_suite(gin_files, bindings, device=device, **planning)
    runs = [SuiteRun(p, UnitRecords(p.workspace, plan.config_hash, plan.provenance),
                     progress=progress, tensorboard=tensorboard, log=log) for p in plan.planners]
    return plan, runs


def _check_tensorboard(tensorboard: str | Path | None) -> Path | None:
    if tensorboard is None:
        return None
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--tensorboard needs the tensorboard package: "
                          "pip install 'i2m2bench[tensorboard]'") from exc
    return Path(tensorboard)


def _announce(plan: SuitePlan, runs: list[SuiteRun], executor: str) -> None:
    """The suite's first lines (one per setting); each results file's damaged lines, once."""
    checked: set[Path] = set()
    for run in runs:
        where = "" if run.setting is None else f", setting {run.setting!r}"
        spec = run.task.spec
        ranks = f" x {distributed.world_size()} ranks" if distributed.active() else ""
        run.log(f"[i2m2bench] suite {plan.suite.name!r}{where}: dataset {spec.name} v{spec.version} "
                f"({spec.source} data), {len(plan.methods)} methods x seeds {plan.seeds}, device "
                f"{plan.device}{ranks}, executor {executor}; results -> {run.results_path}")
        if run.results_path not in checked and distributed.is_main():  # each odd line, once
            checked.add(run.results_path)
            with locked(run.results_path):
                store.read_records(run.results_path, report=lambda m, r=run: r.log(f"[i2m2bench] {m}"))


def _merge(runs: list[SuiteRun]) -> SuiteRun:
    """The first run, with the plan, summary, failure and repair lists of the whole sweep."""
    first = runs[0]
    for other in runs[1:]:
        first.plan += other.plan
        first.summary += other.summary
        first.failures += other.failures
        first.repairs += other.repairs
    return first


def _render(runs: list[SuiteRun], first: SuiteRun) -> None:
    """Publish every board's predictions and render it."""
    from i2m2bench.harness.publish import (publish_predictions, publish_unit_cards,
                                           render_board_file)

    for results in dict.fromkeys(r.results_path for r in runs):  # one per board, in order
        folders = {(item.setting, item.unit.method, item.unit.unit_hash, item.unit.seed):
                   item.run_dir for r in runs if r.results_path == results for item in r.plan}
        publish_predictions(results, first.results_dir,
                            {key: folder / PREDICTIONS_FILE for key, folder in folders.items()})
        publish_unit_cards(results, first.results_dir, folders)
        path = render_board_file(results, first.results_dir, report=store.quiet)
        first.log(f"[i2m2bench] leaderboard -> {path}")


def run_suite(gin_files: list[str | Path], bindings: list[str] = (), *,
              methods: list[str] | None = None, seeds: list[int] | None = None,
              data_root: str | None = None, device: str | None = None, out: str | Path = "runs",
              results_dir: str | Path = "leaderboards", force: bool = False,
              progress: bool = True, render: bool = True, dry_run: bool = False,
              tensorboard: str | Path | None = None,
              log: Callable[[str], None] | None = None, executor: str = "in-process",
              ray_address: str | None = None, ray_cpus_per_unit: int = 1,
              ray_gpus_per_unit: float | None = None) -> SuiteRun:
    """Run a suite from gin files; returns the :class:`SuiteRun` (``.summary``, ``.failures``,
    ``.plan``: the units and what was done with each — ``train``, ``evaluate`` or ``skip``).

    ``dry_run``: resolve and validate everything, fill ``.plan``, train and write nothing.
    The ``i2m2bench.plugins`` entry points are loaded first, once per process
    (``I2M2BENCH_PLUGINS=0`` skips them).

    ``executor``: ``'in-process'`` (default; under torchrun, every unit data-parallel over the
    ranks, :mod:`~i2m2bench.harness.distributed`) or ``'ray'`` (units as Ray tasks on the
    cluster at ``ray_address``, a local instance without one; ``ray_cpus_per_unit`` CPUs and
    ``ray_gpus_per_unit`` GPUs each, default one GPU per unit on CUDA:
    :mod:`~i2m2bench.harness.executors`).
    """
    check_run_arguments(gin_files, methods, seeds, data_root=data_root, out=out,
                        results_dir=results_dir, device=device)
    runner = make_executor(executor, ray_address=ray_address, cpus_per_unit=ray_cpus_per_unit,
                           gpus_per_unit=ray_gpus_per_unit)
    tb = _check_tensorboard(tensorboard)
    if not dry_run:
        check_writable(Path(out), Path(results_dir) / "results")
    dev = distributed.init_from_env(runner.driver_device(device))  # no cuBLAS work yet
    if not distributed.is_main():
        log = _quiet  # rank 0 speaks for the group
    plan, runs = plan_runs(gin_files, bindings, methods=methods, seeds=seeds, data_root=data_root,
                           device=dev, out=out, results_dir=results_dir, force=force,
                           progress=progress, tensorboard=tb, log=log)
    if dry_run:
        return _merge(runs)  # one plan for the whole sweep
    bar = Progress(sum(item.action != SKIP for r in runs for item in r.plan), runs[0].log)
    _announce(plan, runs, runner.name)
    runner.execute(runs, bar, job=dict(
        gin_files=[str(f) for f in gin_files], bindings=list(bindings),
        methods=methods, seeds=seeds, device=device,
        data_root=None if data_root is None else str(Path(data_root).resolve()),
        out=str(Path(out).resolve()), results_dir=str(Path(results_dir).resolve()), force=force,
        tensorboard=None if tb is None else str(tb.resolve())),
        planner=plan_runs)
    first = _merge(runs)  # one plan, summary and failure list for the whole sweep
    if render and distributed.is_main():
        _render(runs, first)
    return first


def _quiet(_line: str) -> None:
    """The log of a rank other than 0."""
