"""The suite runner — orchestration only: gin -> task -> units -> execution -> records -> board.

Everything else has its own module: the settings (``config``), gin files (``ginfiles``), what a
unit is and its hash (``units``), how a model gets its weights (``recipes``), the training loop
(``training``), evaluation protocols (``protocols``), the result store (``store``) and the
boards (``publish`` / ``i2m2bench.reporting``). The runner resolves every unit first (a plan,
dependencies before dependents), validates every method on a probe batch, then brings each unit
about once: trains it, evaluates the protocols it lacks, or skips it. It never branches on a
method's or strategy's name.

A unit's run folder (``<out>/<board>[/<setting>]/<method>/<unit hash>/seed<seed>/``) holds its
checkpoint ``model.pt``, ``operative_config.gin``, ``unit.json`` (settings and training history),
``metrics.json`` (its scores: one per declared metric per protocol, plus ``val``, its figures, and
the date, provenance and config hash of its stored records; written last, it marks the unit
complete and is the truth the result store heals from), ``unit.lock`` (held while a run works on
the unit: runs sharing the folder wait for each other) and ``predictions.npz``: the per-sample
predictions of every protocol and of the selected checkpoint on ``val``, with the targets (and
sample groups) of each split read — format in :mod:`i2m2bench.predictions` — so that any metric can be recomputed and methods
compared pairwise without retraining. Evaluating new protocols later rewrites it with all of them.

Every run checks the result store against the run directories: a complete unit whose rows are
missing or differ from its ``metrics.json`` has them written again (original dates, no
retraining), a unit whose ``metrics.json`` cannot be read is evaluated again from ``model.pt``, and
each repair is logged in one line (``SuiteRun.repairs``) and listed in the summary.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gin
import torch

from i2m2bench._version import __version__
from i2m2bench.data import accepts_data_root, build_task
from i2m2bench.fusion.base import FUSIONS, ContractError, Fusion, check_outputs
from i2m2bench.harness import distributed, store
from i2m2bench.harness.config import SuiteConfig, check_run_arguments, read_suite
from i2m2bench.harness.errors import ConfigError, UnitFailed
from i2m2bench.harness.executors import make_executor
from i2m2bench.harness.ginfiles import check_scopes, parse_gin
from i2m2bench.harness.protocols import Protocol, ProtocolError
from i2m2bench.harness.protocols import expand as expand_protocols
from i2m2bench.harness.recipes import RECIPES, Checkpoint
from i2m2bench.harness.seeding import deterministic_setup, seed_everything
from i2m2bench.harness.training import (NaNLossError, TrainResult, check_task_metrics, poe_share,
                                        check_train_settings, evaluate, selection_metric,
                                        train_model)
from i2m2bench.harness.units import Unit, UnitResolver
from i2m2bench.metrics import as_numpy, declared_metrics, direction
from i2m2bench.predictions import FILE as PREDICTIONS_FILE
from i2m2bench.predictions import Predictions, load_predictions, save_predictions
from i2m2bench.registry import load_plugins
from i2m2bench.types import Task, place_split

__all__ = ["ConfigError", "UnitFailed", "PlanItem", "SuiteRun", "run_suite", "UNIT_INFO"]

# A unit's training and timing figures (rows with protocol "train"), beside its scores.
UNIT_INFO = ("train_seconds", "samples_per_s", "eval_seconds", "robustness_eval_seconds",
             "epochs_run", "best_epoch", "peak_memory_mb", "poe_share")
TRAIN, EVALUATE, SKIP = "train", "evaluate", "skip"


@dataclass(frozen=True)
class PlanItem:
    """What a run does with one unit: ``train``, ``evaluate`` (protocols it lacks) or ``skip``."""

    setting: str | None
    unit: Unit
    action: str
    run_dir: Path


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
        elapsed = time.perf_counter() - self.started
        eta = "—" if not self.done else _hms(elapsed / self.done * (self.total - self.done))
        self.log(f"[i2m2bench] unit {self.done + 1}/{self.total} {what} "
                 f"(elapsed {_hms(elapsed)}, ETA {eta})")

    def end(self) -> None:
        self.done += 1


@dataclass
class SuiteRun:
    """One dataset setting of a suite (the whole suite when it has no sweep)."""

    suite: SuiteConfig
    task: Task
    device: torch.device
    out: Path
    results_dir: Path
    force: bool = False
    progress: bool = True
    config_hash: str = ""
    log: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr))
    provenance: dict = field(default_factory=dict)
    setting: str | None = None  # label of this sweep setting (``suite.sweep``), else None
    tensorboard: Path | None = None
    summary: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    plan: list = field(default_factory=list)  # [PlanItem], dependencies first
    repairs: list = field(default_factory=list)  # one line per repair of the result store
    # None: records are written to the store as they are made; a list: they are collected there
    # (rec, prov, replace, label) for a driver to write (i2m2bench.harness.executors)
    pending: list | None = None
    _failed: dict = field(default_factory=dict)
    _means: dict = field(default_factory=dict)
    resolver: UnitResolver = field(init=False)

    def __post_init__(self) -> None:
        self.resolver = UnitResolver(self.suite, self.task, self.task_identity(), __version__)

    # -- identity ------------------------------------------------------------------------
    @property
    def board(self) -> str:
        spec = self.task.spec
        name = self.suite.name
        if self.setting is not None and self.suite.boards == "per_setting":
            name = f"{name}-{self.setting}"
        return f"{name}-embedded-{spec.name}" if spec.source == "embedded" else name

    @property
    def results_path(self) -> Path:
        return self.results_dir / "results" / f"{self.board}.jsonl"

    def task_identity(self) -> dict:
        s = self.task.spec
        return {"name": s.name, "version": s.version, "source": s.source,
                "options": {k: v for k, v in self.task.options.items() if k != "data_root"}}

    def unit_dir(self, u: Unit) -> Path:
        d = self.out / self.board
        if self.setting is not None:
            d = d / self.setting
        return d / u.method / u.unit_hash / f"seed{u.seed}"

    def where(self, u: Unit) -> str:
        return u.key if self.setting is None else f"{self.setting}/{u.key}"

    # -- planning ------------------------------------------------------------------------
    def protocols(self, u: Unit) -> list[Protocol]:
        specs = self.suite.protocols if u.config.protocols is None else u.config.protocols
        if not specs:
            raise ConfigError("no protocols to evaluate: suite.protocols (or a method.protocols) "
                              "is empty")
        try:
            return expand_protocols(list(specs), self.task, self.suite.levels)
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from exc

    def validate(self, methods: list[str]) -> None:
        """Catch configuration errors before hours are spent: build every model (and the models
        its recipe starts from), check pretrain maps, dependency cycles and protocols, and run
        each model on a probe batch of real samples (the fusion contract), and the task's
        metrics and each method's ``train.loss`` and ``train.select_on``."""
        check_task_metrics(self.task)
        probe_split = self.task.splits["train"]
        probe = probe_split.batch(torch.arange(min(4, len(probe_split)), device=self.device),
                                  self.task.spec)
        checked = set()
        for name in methods:
            u = self.resolver.unit(name, 0)  # settings, dependencies, cycles
            for m in [name, *u.config.pretrain.values()]:
                if m in checked:
                    continue
                checked.add(m)
                cfg, train_cfg = self.resolver.method(m)
                check_train_settings(train_cfg, self.task, m)
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
        d = self.unit_dir(u)
        if self.force or not ((d / "metrics.json").exists() and (d / "model.pt").exists()):
            return TRAIN
        done = self._scores(d)
        if not done or any(p.key not in done for p in self.protocols(u)):
            return EVALUATE
        return SKIP

    def make_plan(self, methods: list[str], seeds: list[int]) -> list[PlanItem]:
        self.plan = [PlanItem(self.setting, u, self.action(u), self.unit_dir(u))
                     for u in self.resolver.plan(methods, seeds)]
        return self.plan

    # -- execution -------------------------------------------------------------------------
    def execute(self, progress: Progress) -> None:
        """Bring each unit of the plan about in turn (:meth:`run_item`)."""
        for item in list(self.plan):
            self.run_item(item, progress)

    def run_item(self, item: PlanItem, progress: Progress | None = None) -> str:
        """Bring one unit about under its lock (``<run dir>/unit.lock``) and return what was done
        (``train``, ``evaluate`` or ``skip``): a run that shares the run folder with another
        waits while the other works on the unit, then decides again what the unit needs (usually
        nothing: the other run completed it). A complete unit's rows are first checked against
        its ``metrics.json`` (:meth:`_heal`).

        Under torchrun (:mod:`~i2m2bench.harness.distributed`) rank 0 holds the lock and decides,
        every rank trains, and rank 0 alone evaluates and writes; the ranks meet after each unit
        (an I2M2 unit then finds its experts' checkpoints)."""
        u, main = item.unit, distributed.is_main()
        lock = (store.locked(self.unit_dir(u) / "unit", on_wait=lambda path: self.log(
            f"[i2m2bench] {self.where(u)}: another run is working on it ({path}); waiting"))
            if main else contextlib.nullcontext())
        with lock:
            action = distributed.broadcast(self.action(u) if main else None)
            if action != item.action:  # another run got there first (or undid it)
                i = next(k for k, it in enumerate(self.plan) if it.unit == u)
                self.plan[i] = dataclasses.replace(item, action=action)
            if action == SKIP:
                if main:
                    self._heal(u)
                self.log(f"[i2m2bench] {self.where(u)}: done already ({self.unit_dir(u)}); skipping")
                return action
            metrics = self._read_metrics(self.unit_dir(u)) if action == EVALUATE and main else {}
            what = ("training" if action == TRAIN else "new protocols" if metrics
                    else "re-evaluating (metrics.json unreadable)")
            if progress is not None:
                progress.begin(f"{self.where(u)}: {what}")
            try:
                if action == TRAIN:
                    self._train_unit(u)
                elif not main:
                    pass  # evaluation is rank 0's
                elif metrics:
                    self._heal(u)
                    self._evaluate_more(u)
                else:
                    self._reevaluate(u)
            except UnitFailed:
                pass  # recorded; the other units go on
            finally:
                if progress is not None:
                    progress.end()
        distributed.barrier()
        return action

    def _checkpoints(self, u: Unit) -> dict[str, Checkpoint]:
        for slot, dep in u.deps.items():
            if (dep.method, dep.seed) in self._failed:
                self._record_failure(u, f"expert source {dep.key} failed "
                                        f"({self._failed[dep.method, dep.seed]})")
        return {slot: Checkpoint(dep.method, dep.seed, self.unit_dir(dep) / "model.pt")
                for slot, dep in u.deps.items()}

    def _build(self, u: Unit) -> Fusion:
        return self.resolver.build(u.method).to(self.device)

    def _train_unit(self, u: Unit) -> None:
        task, d, main = self.task, self.unit_dir(u), distributed.is_main()
        # A (re)training starts incomplete: an earlier run's metrics or failure no longer stand
        # (else a failed --force retrain would leave the old metrics.json, and the unit skipped).
        for stale in ("metrics.json", "failed.json") if main else ():
            (d / stale).unlink(missing_ok=True)
        for tmp in d.glob(".*.tmp") if main else ():  # left by a run killed mid-write (the lock is ours)
            if store.is_temporary(tmp):
                tmp.unlink(missing_ok=True)
        checkpoints = self._checkpoints(u)
        gen = seed_everything(u.seed)
        model = self._build(u)
        model.set_input_means(self.input_means())
        recipe = u.recipe
        recipe.init(model, checkpoints)
        train = task.splits["train"]
        if recipe.trains:
            self.log(f"[i2m2bench] {self.where(u)}: training {u.config.fusion} ({u.config.recipe}, "
                     f"lr={u.train.lr}, epochs={u.train.epochs}, batch={u.train.batch_size}) on "
                     f"{len(train)} samples, {self.device}")
        else:
            self.log(f"[i2m2bench] {self.where(u)}: evaluating {u.config.fusion} ({u.config.recipe}: "
                     f"the weights of {', '.join(c.method for c in checkpoints.values())}, no "
                     f"training), {self.device}")
        try:
            with self._tensorboard(u) as on_epoch:
                if recipe.trains:
                    res = train_model(model, train, task.splits["val"], task.spec, u.train, gen,
                                      desc=u.key, progress=self.progress, on_epoch=on_epoch)
                else:
                    val, pred = evaluate(model, task.splits["val"], task.spec, u.train.eval_batch_size,
                                         precision=u.train.precision)
                    res = TrainResult(val[selection_metric(task.spec, u.train)], -1, 0, 0.0, 0.0,
                                      [], val, pred)
        except NaNLossError as exc:
            self._record_failure(u, str(exc))
        if not main:
            return  # rank 0 evaluates and writes
        t0 = time.perf_counter()
        scores, preds, robust_s = self._evaluate_all(model, u, res.val_scores, res.val_pred)
        eval_s = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if self.device.type == "cuda":
            peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        share = (poe_share(model, train, task.spec, u.train.batch_size,
                           precision=u.train.precision) if recipe.trains and res.seconds else None)
        info = dict(zip(UNIT_INFO, (res.seconds, res.samples_per_s, eval_s, robust_s,
                                    res.epochs_run, res.best_epoch, peak_mb, share)))
        info = {k: v for k, v in info.items() if v is not None}
        store.save_checkpoint(d / "model.pt", model.state_dict())
        self._save_predictions(u, preds, fresh=True)
        store.write_text_atomic(d / "operative_config.gin", gin.operative_config_str())
        store.write_text_atomic(d / "unit.json", json.dumps(
            {"method": u.method, "seed": u.seed, "unit_hash": u.unit_hash,
             "spec": {"fusion": u.config.fusion, "label": u.config.label, "options": u.config.options,
                      "recipe": u.config.recipe, "pretrain": u.config.pretrain,
                      "protocols": u.config.protocols},
             "train": u.train.as_dict(), "task": self.task_identity(), "history": res.history},
            indent=1, default=str))
        stored = self._store(u, scores, info, replace=True)
        self._write_metrics(u, scores, info, store.metrics_meta([stored]))
        values = self._summary_values(scores)
        self.summary.append({"unit": self.where(u), **values, **info})
        self.log(f"[i2m2bench] {self.where(u)}: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items())
                 + f"; {res.samples_per_s:.0f} samples/s, {res.seconds:.1f}s train")

    @staticmethod
    def _metrics_problem(d: Path) -> tuple[dict, str | None]:
        """(a unit's ``metrics.json``, None), or ({}, why it cannot be read)."""
        path = d / "metrics.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            return {}, exc.strerror or str(exc)
        except ValueError as exc:
            return {}, f"not JSON: {exc}"
        if not isinstance(data, dict) or not isinstance(data.get("scores"), list) \
                or not isinstance(data.get("info"), dict):
            return {}, "no scores list and info object"
        problem = store.unit_record_problem({"unit_hash": "", "method": "", "provenance": "", "seed": 0,
                                             "scores": data["scores"], "info": data["info"]})
        if problem:
            return {}, problem.replace("a unit record whose ", "")
        return data, None

    @classmethod
    def _read_metrics(cls, d: Path) -> dict:
        """A complete unit's ``metrics.json`` ({} when unreadable: the unit is then re-evaluated
        from its checkpoint)."""
        return cls._metrics_problem(d)[0]

    def _write_metrics(self, u: Unit, scores: list[dict], info: dict, meta: dict) -> None:
        """Write ``metrics.json`` (last: it marks the unit complete): scores, figures, and the date
        and provenance of the unit's records (:func:`store.metrics_meta`), so that a lost or
        damaged results file is rebuilt from run directories with the rows' original dates."""
        store.write_text_atomic(self.unit_dir(u) / "metrics.json", json.dumps(
            {"scores": scores, "info": info, **meta}, indent=1))

    def _heal(self, u: Unit) -> None:
        """Make a complete unit's stored rows agree with its ``metrics.json`` (the truth of a
        complete unit): rows missing (a deleted or rebuilt results file, a torn line) or damaged
        (cut, or scores that differ) are written again from it -- with their original dates and
        provenance, no retraining -- and the repair is logged in one line and listed in the
        summary. A ``metrics.json`` written before it kept dates gets them from the unit's stored
        rows when those agree; when they do not, the rows written again are dated by its
        modification time and given this run's provenance (the log line says so)."""
        d = self.unit_dir(u)
        metrics = self._read_metrics(d)
        if not metrics or self.pending is not None:  # a worker: its driver heals
            return
        mtime = _dt.datetime.fromtimestamp((d / "metrics.json").stat().st_mtime, _dt.timezone.utc)
        records = store.records_from_metrics(self._base(u), metrics, prov=self.provenance,
                                             date=mtime.isoformat(timespec="seconds"))
        remark = ""
        if not isinstance(metrics.get("date"), str) or not isinstance(metrics.get("provenance"), dict):
            have = store.unit_records(self.results_path, u.unit_hash, u.seed)
            if have and store.view_difference(store.unit_view([r for r, _ in have]),
                                              store.unit_view([r for r, _ in records])) is None:
                extra = {k: v for k, v in metrics.items() if k not in ("scores", "info")}
                self._write_metrics(u, metrics["scores"], metrics["info"],
                                    {**extra, **store.metrics_meta(have)})  # dates, for a rebuild
                return
            remark = ("; dated by the modification time of metrics.json and given this run's "
                      "provenance: metrics.json predates recorded dates")
        sync = store.sync_unit(self.results_path, records, label=self.where(u))
        if sync.repaired is None:
            return
        line = (f"{self.results_path}: re-emitted the rows of {self.where(u)} from "
                f"{d / 'metrics.json'} ({sync.repaired}{remark})")
        self.log(f"[i2m2bench] {line}")
        for note in sync.notes:
            self.log(f"[i2m2bench] {note}")
        self.repairs.append(line)
        self.summary.append({"unit": self.where(u), "repaired": f"rows re-emitted ({sync.repaired})",
                             **self._summary_values(metrics["scores"])})

    def _scores(self, d: Path) -> dict[str, dict]:
        return {s["protocol"]: s for s in self._read_metrics(d).get("scores", [])}

    def _evaluate_more(self, u: Unit) -> None:
        """A complete unit lacks some of the suite's protocols (added since it was trained):
        evaluate just those from its checkpoint — no retraining — and store them as a record of
        their own."""
        d = self.unit_dir(u)
        done = self._read_metrics(d)
        have = {s["protocol"] for s in done["scores"]}
        todo = [p for p in self.protocols(u) if p.key not in have]
        self.log(f"[i2m2bench] {self.where(u)}: trained already ({d}); evaluating "
                 f"{len(todo)} new protocol(s)")
        model = self._build(u)
        path = d / "model.pt"
        try:
            model.load_state_dict(store.load_checkpoint(path))
        except Exception as exc:
            raise ConfigError(f"{path}: cannot load the checkpoint of {u.key} ({type(exc).__name__}: "
                              f"{exc}); delete {d} (or pass --force) to retrain it") from exc
        t0 = time.perf_counter()
        new, preds = [], {}
        for p in todo:
            values, pred = self._evaluate(model, p, u)
            new += self._score_all(p, values)
            preds[p.key] = (p, pred)
        spent = time.perf_counter() - t0
        self._save_predictions(u, preds, fresh=False)
        timing = {k: done["info"].get(k, 0.0) + spent for k in ("eval_seconds", "robustness_eval_seconds")}
        info = {**done["info"], **timing}
        have = store.unit_records(self.results_path, u.unit_hash, u.seed)
        if have:  # keep the unit's records; add the new scores
            stored = self._store(u, new, timing, replace=False)
            meta = ({k: done[k] for k in ("date", "provenance", "config_hash", "added") if k in done}
                    if isinstance(done.get("date"), str) and isinstance(done.get("provenance"), dict)
                    else store.metrics_meta(have))
            meta["added"] = [*meta.get("added", []), store.added_meta(*stored)]
        else:  # a results folder that never saw this unit: all of it, dated now
            meta = store.metrics_meta([self._store(u, done["scores"] + new, info, replace=True)])
        self._write_metrics(u, done["scores"] + new, info, meta)
        values = self._summary_values(new)
        self.summary.append({"unit": self.where(u), **values, **timing})
        self.log(f"[i2m2bench] {self.where(u)}: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items())
                 + f"; {spent:.1f}s")

    def _reevaluate(self, u: Unit) -> None:
        """A unit whose ``metrics.json`` cannot be read: evaluate the selected checkpoint again
        (``model.pt``: ``val`` and every protocol; no retraining) and write ``metrics.json`` anew.
        When the stored rows say the same, they are kept (with their dates); otherwise they are
        replaced by the new scores, dated now. A checkpoint that cannot be loaded either is
        trained again."""
        d = self.unit_dir(u)
        _, problem = self._metrics_problem(d)
        path = d / "model.pt"
        self.log(f"[i2m2bench] {d / 'metrics.json'}: unreadable ({problem}); re-evaluating "
                 f"{self.where(u)} from {path} (no retraining)")
        model = self._build(u)
        try:
            model.load_state_dict(store.load_checkpoint(path))
        except Exception as exc:  # noqa: BLE001 - a damaged checkpoint of this very unit
            if distributed.active():  # the other ranks are not training with this one
                raise ConfigError(f"{path}: cannot load the checkpoint of {self.where(u)} "
                                  f"({type(exc).__name__}: {exc}), nor {d / 'metrics.json'}; "
                                  f"delete {d} to retrain it") from exc
            self.log(f"[i2m2bench] {path}: cannot load it either ({type(exc).__name__}: {exc}); "
                     f"training {self.where(u)} again")
            return self._train_unit(u)
        task = self.task
        t0 = time.perf_counter()
        values, pred = evaluate(model, task.splits["val"], task.spec, u.train.eval_batch_size,
                                precision=u.train.precision)
        scores, preds, robust_s = self._evaluate_all(model, u, values, pred)
        spent = time.perf_counter() - t0
        have = store.unit_records(self.results_path, u.unit_hash, u.seed)
        view = store.unit_view([r for r, _ in have])
        new_view = ({(sc["protocol"], sc["metric"]): sc["value"] for sc in scores}, view[1])
        if have and store.view_difference(view, new_view) is None:
            info, meta = view[1], store.metrics_meta(have)  # the rows say the same: keep them
            outcome = "its stored rows agree and are kept"
        else:
            info = dict(view[1]) if have else self._figures_of(u)
            info.update(eval_seconds=spent, robustness_eval_seconds=robust_s)
            info.pop("failed", None)
            meta = store.metrics_meta([self._store(u, scores, info, replace=True)])
            outcome = ("its stored rows differed and were replaced" if have else
                       "its rows were missing and are written") + ", dated now"
        self._save_predictions(u, preds, fresh=True)
        self._write_metrics(u, scores, info, meta)
        line = f"{d / 'metrics.json'}: rewritten from a new evaluation of {path} ({outcome})"
        self.log(f"[i2m2bench] {line}")
        self.repairs.append(line)
        values = self._summary_values(scores)
        self.summary.append({"unit": self.where(u), "repaired": "re-evaluated (metrics.json unreadable)",
                             **values, "eval_seconds": spent})
        self.log(f"[i2m2bench] {self.where(u)}: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items())
                 + f"; {spent:.1f}s")

    def _figures_of(self, u: Unit) -> dict:
        """Training figures recovered from ``unit.json`` (epochs run, best epoch) when neither
        ``metrics.json`` nor the results file holds them; timings are lost."""
        try:
            history = json.loads((self.unit_dir(u) / "unit.json").read_text(encoding="utf-8"))["history"]
            vals = [float(h["val"]) for h in history]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        higher = direction(selection_metric(self.task.spec, u.train))
        best, best_epoch = (-math.inf if higher else math.inf), -1
        for epoch, v in enumerate(vals):
            if (v > best) if higher else (v < best):
                best, best_epoch = v, epoch
        return {"epochs_run": len(vals), "best_epoch": best_epoch}

    def _evaluate_all(self, model: Fusion, u: Unit, val_scores: dict, val_pred):
        """(scores, predictions, seconds spent on robustness protocols) of the validation scores
        given and every protocol of ``u``, evaluated now."""
        scores, preds, robust_s = self._score_all("val", val_scores), {"val": ("val", val_pred)}, 0.0
        for proto in self.protocols(u):
            t1 = time.perf_counter()
            values, pred = self._evaluate(model, proto, u)
            scores += self._score_all(proto, values)
            preds[proto.key] = (proto, pred)
            if proto.robustness:
                robust_s += time.perf_counter() - t1
        return scores, preds, robust_s

    def _split_of(self, proto: Protocol | str):
        """(split key, split) that a protocol reads: ``"val"``, ``"test"`` or ``"shift:<set>"``."""
        task = self.task
        if isinstance(proto, str):  # "val"
            return proto, task.splits[proto]
        if proto.split == "test":
            return "test", task.splits["test"]
        return f"shift:{proto.split}", task.shifts[proto.split]

    def _evaluate(self, model: Fusion, proto: Protocol, u: Unit) -> tuple[dict[str, float], torch.Tensor]:
        """({metric: value} for every declared metric, the predictions) of one protocol."""
        task = self.task
        _, split = self._split_of(proto)
        return evaluate(model, split, task.spec, u.train.eval_batch_size, proto.transform(task, u.seed),
                        precision=u.train.precision)

    def _score(self, proto: Protocol | str, metric: str, value: float) -> dict:
        if isinstance(proto, str):  # "val": the validation score that selected the checkpoint
            key, kind, curve, level = proto, proto, None, None
        else:
            key, kind, curve, level = proto.key, proto.kind, proto.curve, proto.level
        return {"protocol": key, "kind": kind, "metric": metric, "value": value,
                "higher_is_better": direction(metric), "curve": curve, "level": level}

    def _score_all(self, proto: Protocol | str, values: dict[str, float]) -> list[dict]:
        """One stored score per declared metric (primary first) of one protocol."""
        return [self._score(proto, m, v) for m, v in values.items()]

    def _summary_values(self, scores: list[dict]) -> dict[str, float]:
        """Summary/log keys: the protocol for the primary metric, ``<protocol> <metric>`` else."""
        primary = self.task.spec.metric
        return {sc["protocol"] if sc["metric"] == primary else f"{sc['protocol']} {sc['metric']}":
                sc["value"] for sc in scores}

    def _save_predictions(self, u: Unit, preds: dict, *, fresh: bool) -> None:
        """Write the unit's per-sample predictions (``predictions.npz``, format in
        :mod:`i2m2bench.predictions`): protocol key -> (protocol or ``"val"``, predictions; None
        when there are none, e.g. a training that never validated). ``fresh``: a new training
        (replace the file); else add these protocols to what the file holds."""
        spec = self.task.spec
        new = Predictions(spec.problem, declared_metrics(spec), tuple(spec.labels))
        for key, (proto, pred) in preds.items():
            if pred is None:
                continue
            split_key, split = self._split_of(proto)
            groups = getattr(split, "groups", None)
            new.add(key, split_key, as_numpy(pred.float()), as_numpy(split.target),
                    None if groups is None else as_numpy(groups))
        path = self.unit_dir(u) / PREDICTIONS_FILE
        if not fresh and path.exists():
            try:
                new = load_predictions(path).merged(new)
            except (OSError, ValueError, KeyError) as exc:
                self.log(f"[i2m2bench] {path}: unreadable ({type(exc).__name__}: {exc}); rewriting "
                         "it with the new protocols only")
        save_predictions(path, new)

    @contextlib.contextmanager
    def _tensorboard(self, u: Unit):
        """``on_epoch`` callback writing loss and validation metric per epoch (or None)."""
        if self.tensorboard is None:
            yield None
            return
        from torch.utils.tensorboard import SummaryWriter

        folder = self.tensorboard / self.board
        if self.setting is not None:
            folder = folder / self.setting
        writer = SummaryWriter(log_dir=str(folder / u.method / f"seed{u.seed}"))
        metric = selection_metric(self.task.spec, u.train)

        def on_epoch(rec: dict) -> None:
            writer.add_scalar("train/loss", rec["train_loss"], rec["epoch"])
            writer.add_scalar(f"val/{metric}", rec["val"], rec["epoch"])

        try:
            yield on_epoch
        finally:
            writer.close()

    def input_means(self) -> dict[str, torch.Tensor]:
        """Per-modality training-set mean model input (for mean imputation), computed once per
        run; for a tokens modality the padding id everywhere (``DataSplit.input_mean``)."""
        if not self._means:
            train = self.task.splits["train"]
            self._means = {m.name: train.input_mean(m)  # float64 sums, no float copy
                           for m in self.task.spec.modalities}
        return self._means

    # -- records ---------------------------------------------------------------------------
    def _record_failure(self, u: Unit, message: str) -> None:
        """A failed unit leaves a ``failed.json`` and a ``failed`` record; retried next run."""
        self.log(f"[i2m2bench] {self.where(u)}: FAILED: {message}")
        if distributed.is_main():
            store.write_text_atomic(self.unit_dir(u) / "failed.json",
                                    json.dumps({"unit": u.key, "error": message}))
            self._store(u, [], {"failed": 1.0}, replace=True, error=message)
        self._failed[u.method, u.seed] = message
        self.failures.append(f"{self.where(u)}: {message}")
        raise UnitFailed(message)

    def _base(self, u: Unit) -> dict:
        spec = self.task.spec
        return {"board": self.board, "suite": self.suite.name, "dataset": spec.name,
                "dataset_version": spec.version, "data_source": spec.source, "method": u.method,
                "label": u.label, "family": FUSIONS.get(u.config.fusion).family,
                "fusion": u.config.fusion, "recipe": u.config.recipe,
                "trained": RECIPES.get(u.config.recipe).trains, "seed": u.seed,
                "unit_hash": u.unit_hash, "config_hash": self.config_hash,
                "train": u.train.as_dict(), "n_train": len(self.task.splits["train"]),
                "layout": self.suite.layout, "setting": self.setting,
                "reference_method": self.suite.reference,
                "task_options": self.task_identity()["options"],
                "metrics": list(declared_metrics(spec))}  # primary first: the board's order

    def _store(self, u: Unit, scores: list[dict], info: dict, *, replace: bool,
               error: str | None = None) -> tuple[dict, dict]:
        """Store one record of the unit, dated now; (record, provenance). The store's notes (rows
        made with other numerics replaced, torn lines dropped) are logged."""
        rec, prov = store.make_record(self._base(u), self.provenance, scores, info,
                                      store.utc_now(), error)
        if self.pending is not None:  # a worker of another executor: the driver writes it
            self.pending.append((rec, prov, replace, self.where(u)))
        else:
            self.write_record(rec, prov, replace, self.where(u))
        return rec, prov

    def write_record(self, rec: dict, prov: dict, replace: bool, label: str) -> None:
        """Upsert one unit record into this board's results file, logging the store's notes
        (rows made with other numerics replaced, torn lines dropped)."""
        for note in store.upsert_unit(self.results_path, rec, prov, replace=replace, label=label):
            self.log(f"[i2m2bench] {note}")


def _build_task(suite: SuiteConfig, label: str | None, options: dict, data_root: str | None) -> Task:
    opts = dict(options)
    if data_root is not None and accepts_data_root(suite.dataset):
        opts["data_root"] = data_root  # only builders that read files declare it
    try:
        return build_task(suite.dataset, **opts)
    except (TypeError, ValueError, KeyError) as exc:
        if label is None:
            raise
        raise ConfigError(f"suite.sweep[{label!r}] = {suite.sweep[label]}: {exc}") from exc


@dataclass
class SuitePlan:
    """A parsed, validated and planned suite: one :class:`SuiteRun` per dataset setting."""

    suite: SuiteConfig
    runs: list
    methods: list
    seeds: list
    device: torch.device


def plan_suite(gin_files: list[str | Path], bindings: list[str] = (), *,
               methods: list[str] | None = None, seeds: list[int] | None = None,
               data_root: str | None = None, device: torch.device, out: str | Path = "runs",
               results_dir: str | Path = "leaderboards", force: bool = False,
               progress: bool = True, tensorboard: Path | None = None,
               log: Callable[[str], None] | None = None) -> SuitePlan:
    """Parse the gin files, build every setting's task on ``device``, validate every method on a
    probe batch and plan every unit (what :func:`run_suite` and each worker of an executor do
    before any training). The ``i2m2bench.plugins`` entry points are loaded first."""
    deterministic_setup()  # before any CUDA work: cuBLAS reads its workspace setting once
    load_plugins()
    parse_gin(gin_files, bindings)
    suite = read_suite()
    check_scopes(list(suite.methods))
    config_hash = store.stable_hash(gin.config_str())
    from i2m2bench.reporting import LAYOUTS

    LAYOUTS.get(suite.layout)  # an unknown layout is a config error before any training
    selected = list(suite.methods) if not methods else list(methods)
    seed_list = [int(s) for s in (seeds if seeds is not None else suite.seeds)]
    prov = store.provenance(device)
    runs: list[SuiteRun] = []
    for label, options in suite.settings().items():
        task = _build_task(suite, label, options, data_root)
        task = Task(task.spec, {k: place_split(s, device) for k, s in task.splits.items()},
                    {k: place_split(s, device) for k, s in task.shifts.items()}, task.options)
        run = SuiteRun(suite, task, device, Path(out), Path(results_dir), force=force,
                       progress=progress, config_hash=config_hash, provenance=prov,
                       setting=label, tensorboard=tensorboard, **({"log": log} if log else {}))
        run.validate(selected)  # every method, model, expert map and protocol, before training
        same = [r.setting for r in runs if r.task_identity() == run.task_identity()]
        if same:
            raise ConfigError(f"suite.sweep: settings {same[0]!r} and {label!r} resolve to the same "
                              "dataset options; their units (and result rows) would coincide")
        run.make_plan(selected, seed_list)
        runs.append(run)
    return SuitePlan(suite, runs, selected, seed_list, device)


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
    tb = Path(tensorboard) if tensorboard is not None else None
    if tb is not None:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError as exc:
            raise ConfigError("--tensorboard needs the tensorboard package: "
                              "pip install 'i2m2bench[tensorboard]'") from exc
    if not dry_run:
        store.check_writable(Path(out), Path(results_dir) / "results")
    dev = distributed.init_from_env(runner.driver_device(device))  # no cuBLAS work yet
    if not distributed.is_main():
        log = _quiet  # rank 0 speaks for the group
    plan = plan_suite(gin_files, bindings, methods=methods, seeds=seeds, data_root=data_root,
                      device=dev, out=out, results_dir=results_dir, force=force, progress=progress,
                      tensorboard=tb, log=log)
    runs, suite, selected, seed_list = plan.runs, plan.suite, plan.methods, plan.seeds
    first = runs[0]
    if dry_run:
        for other in runs[1:]:  # one plan for the whole sweep
            first.plan += other.plan
        return first
    todo = sum(item.action != SKIP for r in runs for item in r.plan)
    bar = Progress(todo, first.log)
    checked: set[Path] = set()
    for run in runs:
        where = "" if run.setting is None else f", setting {run.setting!r}"
        spec = run.task.spec
        ranks = f" x {distributed.world_size()} ranks" if distributed.active() else ""
        run.log(f"[i2m2bench] suite {suite.name!r}{where}: dataset {spec.name} v{spec.version} "
                f"({spec.source} data), {len(selected)} methods x seeds {seed_list}, device {dev}"
                f"{ranks}, executor {runner.name}; results -> {run.results_path}")
        if run.results_path not in checked and distributed.is_main():  # each odd line, once
            checked.add(run.results_path)
            with store.locked(run.results_path):
                store.read_records(run.results_path, report=lambda m, r=run: r.log(f"[i2m2bench] {m}"))
    runner.execute(runs, bar, job=dict(
        gin_files=[str(Path(f).resolve()) for f in gin_files], bindings=list(bindings),
        methods=methods, seeds=seeds, device=device,
        data_root=None if data_root is None else str(Path(data_root).resolve()),
        out=str(Path(out).resolve()), results_dir=str(Path(results_dir).resolve()), force=force,
        tensorboard=None if tb is None else str(tb.resolve())),
        planner=plan_suite)
    for other in runs[1:]:  # one plan, summary and failure list for the whole sweep
        first.plan += other.plan
        first.summary += other.summary
        first.failures += other.failures
        first.repairs += other.repairs
    if render and distributed.is_main():
        from i2m2bench.harness.publish import publish_predictions, render_board_file

        for results in dict.fromkeys(r.results_path for r in runs):  # one per board, in order
            publish_predictions(results, first.results_dir,
                                {(item.setting, item.unit.method, item.unit.unit_hash, item.unit.seed):
                                 item.run_dir / PREDICTIONS_FILE
                                 for r in runs if r.results_path == results for item in r.plan})
            path = render_board_file(results, first.results_dir, report=store.quiet)
            first.log(f"[i2m2bench] leaderboard -> {path}")
    return first


def _quiet(_line: str) -> None:
    """The log of a rank other than 0."""
