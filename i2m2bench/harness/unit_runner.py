"""The unit runner: trains one unit (its recipe), evaluates every protocol, evaluates protocols
added later, or re-evaluates a unit whose ``metrics.json`` cannot be read — and writes its files
(:mod:`~i2m2bench.harness.unit_files`) and records (:mod:`~i2m2bench.harness.unit_records`).

What bringing a unit about did is a :class:`UnitResult`: its action, summary lines, failures,
repairs and error, and — for a unit run on behalf of another process (a Ray worker) — the records
and log lines it leaves for that process to write and show. The runner decides nothing about
which units to run and never branches on a method's or strategy's name.

Under torchrun every rank trains; rank 0 alone evaluates and writes
(:mod:`~i2m2bench.harness.distributed`).
"""
from __future__ import annotations

import contextlib
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import gin
import torch

from i2m2bench.fusion.base import Fusion
from i2m2bench.harness import distributed, official
from i2m2bench.harness.errors import ConfigError, UnitFailed
from i2m2bench.harness.planner import Planner
from i2m2bench.harness.protocols import Protocol
from i2m2bench.harness.recipes import Checkpoint
from i2m2bench.harness.seeding import seed_everything
from i2m2bench.harness.store import added_meta, metrics_meta, unit_view, view_difference
from i2m2bench.harness.training import (NaNLossError, TrainResult, evaluate, poe_share, predict,
                                        selection_metric, train_model)
from i2m2bench.harness.unit_files import UnitFiles
from i2m2bench.harness.unit_records import UnitRecords
from i2m2bench.harness.units import Unit
from i2m2bench.metrics import as_numpy, declared_metrics, direction, resolve
from i2m2bench.predictions import Predictions

# A unit's training and timing figures (rows with protocol "train"), beside its scores.
UNIT_INFO = ("train_seconds", "samples_per_s", "eval_seconds", "robustness_eval_seconds",
             "epochs_run", "best_epoch", "peak_memory_mb", "poe_share")


@dataclass
class UnitResult:
    """What bringing one unit about did. ``action``: ``train``, ``evaluate`` or ``skip``;
    ``summary``, ``failures``, ``repairs``: its entries for the run's lists; ``error``: why it
    failed (None when it did not). ``deferred``: it ran on behalf of another process, which
    writes ``records`` ((record, provenance, replace, label) each) and shows ``log``."""

    setting: str | None
    method: str
    seed: int
    action: str
    deferred: bool = False
    summary: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    repairs: list = field(default_factory=list)
    records: list = field(default_factory=list)
    log: list = field(default_factory=list)
    error: str | None = None


@dataclass
class UnitJob:
    """One unit being brought about: its files, where its lines go (``log``), its result, and
    the units that failed so far (``failed``: (method, seed) -> error)."""

    unit: Unit
    files: UnitFiles
    result: UnitResult
    log: Callable[[str], None]
    failed: Mapping = field(default_factory=dict)


class UnitRunner:
    """Trains and evaluates the units of one setting (``planner``'s) on its device, writing
    their files and records (``records``). ``progress``: per-epoch progress bars;
    ``tensorboard``: a folder for TensorBoard logs (or None)."""

    def __init__(self, planner: Planner, records: UnitRecords, *, progress: bool = True,
                 tensorboard: Path | None = None) -> None:
        self.planner, self.records = planner, records
        self.workspace, self.device = planner.workspace, planner.device
        self.progress, self.tensorboard = progress, tensorboard
        self._means: dict = {}

    # -- records and failures --------------------------------------------------------------
    def store(self, job: UnitJob, scores: list[dict], info: dict, *, replace: bool,
              error: str | None = None) -> tuple[dict, dict]:
        """Store one record of the unit, dated now (or leave it in the result when deferred);
        (record, provenance)."""
        rec, prov = self.records.make(job.unit, scores, info, error)
        where = self.workspace.where(job.unit)
        if job.result.deferred:
            job.result.records.append((rec, prov, replace, where))
        else:
            self.records.write(rec, prov, replace, where, job.log)
        return rec, prov

    def fail(self, job: UnitJob, message: str) -> None:
        """A failed unit leaves a ``failed.json`` and a ``failed`` record; retried next run.
        Raises :class:`UnitFailed`."""
        where = self.workspace.where(job.unit)
        job.log(f"[i2m2bench] {where}: FAILED: {message}")
        if distributed.is_main():
            job.files.write_failure(job.unit.key, message)
            self.store(job, [], {"failed": 1.0}, replace=True, error=message)
        job.result.error = message
        job.result.failures.append(f"{where}: {message}")
        raise UnitFailed(message)

    def _report(self, job: UnitJob, values: dict, extra: dict, tail: str,
                repaired: str | None = None) -> None:
        """The unit's summary entry and its one log line of scores."""
        where = self.workspace.where(job.unit)
        entry = {"unit": where, **({"repaired": repaired} if repaired else {}), **values, **extra}
        job.result.summary.append(entry)
        job.log(f"[i2m2bench] {where}: " + ", ".join(f"{k}={v:.4f}" for k, v in values.items())
                + tail)

    # -- models ----------------------------------------------------------------------------
    def build(self, u: Unit) -> Fusion:
        """A fresh model of unit ``u`` on the device."""
        return official.prepare(self.planner.resolver.build(u.method), u.official).to(self.device)

    def input_means(self) -> dict[str, torch.Tensor]:
        """Per-modality training-set mean model input (for mean imputation), computed once per
        run; for a tokens modality the padding id everywhere (``DataSplit.input_mean``)."""
        if not self._means:
            task = self.workspace.task
            train = task.splits["train"]
            self._means = {m.name: train.input_mean(m)  # float64 sums, no float copy
                           for m in task.spec.modalities}
        return self._means

    def _checkpoints(self, job: UnitJob) -> dict[str, Checkpoint]:
        u = job.unit
        for dep in u.deps.values():
            if (dep.method, dep.seed) in job.failed:
                self.fail(job, f"expert source {dep.key} failed "
                               f"({job.failed[dep.method, dep.seed]})")
        return {slot: Checkpoint(dep.method, dep.seed, self.workspace.unit_dir(dep) / "model.pt")
                for slot, dep in u.deps.items()}

    # -- training --------------------------------------------------------------------------
    def train(self, job: UnitJob) -> None:
        """Train the unit (its recipe); on rank 0, evaluate every protocol and write its
        checkpoint, predictions, ``operative_config.gin``, ``unit.json``, record and — last —
        ``metrics.json``."""
        u, main = job.unit, distributed.is_main()
        if main:
            job.files.clear_for_training()  # the lock is ours
        checkpoints = self._checkpoints(job)
        gen = seed_everything(u.seed)
        model = self.build(u)
        model.set_input_means(self.input_means())
        u.recipe.init(model, checkpoints)
        self._announce(job, checkpoints)
        try:
            res = self._fit(job, model, gen)
        except NaNLossError as exc:
            self.fail(job, str(exc))
        if main:  # rank 0 evaluates and writes
            self._finish_training(job, model, res)

    def _announce(self, job: UnitJob, checkpoints: dict[str, Checkpoint]) -> None:
        u, where = job.unit, self.workspace.where(job.unit)
        if u.recipe.trains:
            job.log(f"[i2m2bench] {where}: training {u.config.fusion} ({u.config.recipe}, "
                    f"lr={u.train.lr}, epochs={u.train.epochs}, batch={u.train.batch_size}) on "
                    f"{len(self.workspace.task.splits['train'])} samples, {self.device}")
        else:
            job.log(f"[i2m2bench] {where}: evaluating {u.config.fusion} ({u.config.recipe}: "
                    f"the weights of {', '.join(c.method for c in checkpoints.values())}, no "
                    f"training), {self.device}")

    def _fit(self, job: UnitJob, model: Fusion, gen: torch.Generator) -> TrainResult:
        """Train (or, for a recipe that does not train, validate) the model."""
        u, task = job.unit, self.workspace.task
        with self.tensorboard_writer(u) as on_epoch:
            if u.recipe.trains:
                return train_model(model, task.splits["train"], task.splits["val"], task.spec,
                                   u.train, gen, desc=u.key, progress=self.progress,
                                   on_epoch=on_epoch)
            val, pred = evaluate(model, task.splits["val"], task.spec, u.train.eval_batch_size,
                                 precision=u.train.precision)
            return TrainResult(val[selection_metric(task.spec, u.train)], -1, 0, 0.0, 0.0, [],
                               val, pred)

    def _finish_training(self, job: UnitJob, model: Fusion, res: TrainResult) -> None:
        u, task, files = job.unit, self.workspace.task, job.files
        t0 = time.perf_counter()
        scores, preds, robust_s = self.evaluate_all(model, u, res.val_scores, res.val_pred)
        eval_s = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if self.device.type == "cuda":
            peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        share = (poe_share(model, task.splits["train"], task.spec, u.train.batch_size,
                           precision=u.train.precision) if u.recipe.trains and res.seconds else None)
        info = dict(zip(UNIT_INFO, (res.seconds, res.samples_per_s, eval_s, robust_s,
                                    res.epochs_run, res.best_epoch, peak_mb, share)))
        info = {k: v for k, v in info.items() if v is not None}
        digest = files.save_checkpoint(model.state_dict())
        self.save_predictions(job, preds, fresh=True)
        files.write_operative_config(gin.operative_config_str())
        files.write_unit_json(
            {"method": u.method, "seed": u.seed, "unit_hash": u.unit_hash,
             "spec": {"fusion": u.config.fusion, "label": u.config.label, "options": u.config.options,
                      "recipe": u.config.recipe, "pretrain": u.config.pretrain,
                      "protocols": u.config.protocols},
             "train": u.train.as_dict(), "task": self.workspace.task_identity(),
             "history": res.history, "checkpoint_sha256": digest})
        stored = self.store(job, scores, info, replace=True)
        files.write_metrics(scores, info, metrics_meta([stored]))
        self._report(job, self.records.summary_values(scores), info,
                     f"; {res.samples_per_s:.0f} samples/s, {res.seconds:.1f}s train")

    @contextlib.contextmanager
    def tensorboard_writer(self, u: Unit):
        """``on_epoch`` callback writing loss and validation metric per epoch (or None)."""
        if self.tensorboard is None:
            yield None
            return
        from torch.utils.tensorboard import SummaryWriter

        folder = self.tensorboard / self.workspace.board
        if self.workspace.label is not None:
            folder = folder / self.workspace.label
        writer = SummaryWriter(log_dir=str(folder / u.method / f"seed{u.seed}"))
        metric = selection_metric(self.workspace.task.spec, u.train)

        def on_epoch(rec: dict) -> None:
            writer.add_scalar("train/loss", rec["train_loss"], rec["epoch"])
            writer.add_scalar(f"val/{metric}", rec["val"], rec["epoch"])

        try:
            yield on_epoch
        finally:
            writer.close()

    # -- evaluation ------------------------------------------------------------------------
    def evaluate_more(self, job: UnitJob) -> None:
        """A complete unit lacks some of the suite's protocols (added since it was trained):
        evaluate just those from its checkpoint — no retraining — and store them as a record of
        their own."""
        u, files = job.unit, job.files
        done = files.read_metrics()
        have = {s["protocol"] for s in done["scores"]}
        todo = [p for p in self.planner.protocols(u) if p.key not in have]
        job.log(f"[i2m2bench] {self.workspace.where(u)}: trained already ({files.folder}); "
                f"evaluating {len(todo)} new protocol(s)")
        model = self.build(u)
        try:
            model.load_state_dict(files.load_checkpoint())
        except Exception as exc:
            raise ConfigError(f"{files.checkpoint_path}: cannot load the checkpoint of {u.key} "
                              f"({type(exc).__name__}: {exc}); delete {files.folder} (or pass "
                              "--force) to retrain it") from exc
        t0 = time.perf_counter()
        new, preds = [], {}
        val_pred = None
        if any(resolve(m)[0].needs_reference for m in declared_metrics(self.workspace.task.spec)):
            val_pred = predict(model, self.workspace.task.splits["val"], self.workspace.task.spec,
                               u.train.eval_batch_size, precision=u.train.precision)
        for p in todo:
            values, pred = self.evaluate_protocol(model, p, u, val_pred)
            new += self.score_all(p, values)
            preds[p.key] = (p, pred)
        spent = time.perf_counter() - t0
        self.save_predictions(job, preds, fresh=False)
        timing = {k: done["info"].get(k, 0.0) + spent for k in ("eval_seconds", "robustness_eval_seconds")}
        info = {**done["info"], **timing}
        have = self.records.stored(u)
        if have:  # keep the unit's records; add the new scores
            stored = self.store(job, new, timing, replace=False)
            meta = ({k: done[k] for k in ("date", "provenance", "config_hash", "added") if k in done}
                    if isinstance(done.get("date"), str) and isinstance(done.get("provenance"), dict)
                    else metrics_meta(have))
            meta["added"] = [*meta.get("added", []), added_meta(*stored)]
        else:  # a results folder that never saw this unit: all of it, dated now
            meta = metrics_meta([self.store(job, done["scores"] + new, info, replace=True)])
        files.write_metrics(done["scores"] + new, info, meta)
        self._report(job, self.records.summary_values(new), timing, f"; {spent:.1f}s")

    def reevaluate(self, job: UnitJob) -> None:
        """A unit whose ``metrics.json`` cannot be read: evaluate the selected checkpoint again
        (``model.pt``: ``val`` and every protocol; no retraining) and write ``metrics.json`` anew.
        When the stored rows say the same, they are kept (with their dates); otherwise they are
        replaced by the new scores, dated now. A checkpoint that cannot be loaded either is
        trained again."""
        u, files, where = job.unit, job.files, self.workspace.where(job.unit)
        _, problem = files.metrics_problem()
        path = files.checkpoint_path
        job.log(f"[i2m2bench] {files.metrics_path}: unreadable or not verified ({problem}); "
                f"re-evaluating {where} from {path} (no retraining)")
        model = self.build(u)
        try:
            model.load_state_dict(files.load_checkpoint())
        except Exception as exc:  # noqa: BLE001 - a damaged checkpoint of this very unit
            if distributed.active():  # the other ranks are not training with this one
                raise ConfigError(f"{path}: cannot load the checkpoint of {where} "
                                  f"({type(exc).__name__}: {exc}), nor {files.metrics_path}; "
                                  f"delete {files.folder} to retrain it") from exc
            job.log(f"[i2m2bench] {path}: cannot load it either ({type(exc).__name__}: {exc}); "
                    f"training {where} again")
            return self.train(job)
        task = self.workspace.task
        t0 = time.perf_counter()
        values, pred = evaluate(model, task.splits["val"], task.spec, u.train.eval_batch_size,
                                precision=u.train.precision)
        scores, preds, robust_s = self.evaluate_all(model, u, values, pred)
        spent = time.perf_counter() - t0
        have = self.records.stored(u)
        view = unit_view([r for r, _ in have])
        new_view = ({(sc["protocol"], sc["metric"]): sc["value"] for sc in scores}, view[1])
        if have and view_difference(view, new_view) is None:
            info, meta = view[1], metrics_meta(have)  # the rows say the same: keep them
            outcome = "its stored rows agree and are kept"
        else:
            info = dict(view[1]) if have else self.figures_of(job)
            info.update(eval_seconds=spent, robustness_eval_seconds=robust_s)
            info.pop("failed", None)
            meta = metrics_meta([self.store(job, scores, info, replace=True)])
            outcome = ("its stored rows differed and were replaced" if have else
                       "its rows were missing and are written") + ", dated now"
        self.save_predictions(job, preds, fresh=True)
        files.write_metrics(scores, info, meta)
        line = f"{files.metrics_path}: rewritten from a new evaluation of {path} ({outcome})"
        job.log(f"[i2m2bench] {line}")
        job.result.repairs.append(line)
        self._report(job, self.records.summary_values(scores), {"eval_seconds": spent},
                     f"; {spent:.1f}s", repaired="re-evaluated (metrics.json unreadable)")

    def figures_of(self, job: UnitJob) -> dict:
        """Training figures recovered from ``unit.json`` (epochs run, best epoch) when neither
        ``metrics.json`` nor the results file holds them; timings are lost."""
        try:
            vals = [float(h["val"]) for h in job.files.history()]
        except (ValueError, KeyError, TypeError):  # TypeError: no history (None)
            return {}
        higher = direction(selection_metric(self.workspace.task.spec, job.unit.train))
        best, best_epoch = (-math.inf if higher else math.inf), -1
        for epoch, v in enumerate(vals):
            if (v > best) if higher else (v < best):
                best, best_epoch = v, epoch
        return {"epochs_run": len(vals), "best_epoch": best_epoch}

    def evaluate_all(self, model: Fusion, u: Unit, val_scores: dict, val_pred):
        """(scores, predictions, seconds spent on robustness protocols) of the validation scores
        given and every protocol of ``u``, evaluated now."""
        scores, preds, robust_s = self.score_all("val", val_scores), {"val": ("val", val_pred)}, 0.0
        for proto in self.planner.protocols(u):
            t1 = time.perf_counter()
            values, pred = self.evaluate_protocol(model, proto, u, val_pred)
            scores += self.score_all(proto, values)
            preds[proto.key] = (proto, pred)
            if proto.robustness:
                robust_s += time.perf_counter() - t1
        return scores, preds, robust_s

    def split_of(self, proto: Protocol | str):
        """(split key, split) that a protocol reads: ``"val"``, ``"test"`` or ``"shift:<set>"``."""
        task = self.workspace.task
        if isinstance(proto, str):  # "val"
            return proto, task.splits[proto]
        if proto.split == "test":
            return "test", task.splits["test"]
        return f"shift:{proto.split}", task.shifts[proto.split]

    def evaluate_protocol(self, model: Fusion, proto: Protocol, u: Unit,
                          val_pred=None) -> tuple[dict[str, float], torch.Tensor]:
        """({metric: value} for every declared metric, the predictions) of one protocol;
        ``val_pred``: the checkpoint's validation predictions, the reference of operating-point
        metrics (:mod:`i2m2bench.metrics`)."""
        task = self.workspace.task
        _, split = self.split_of(proto)
        ref = None if val_pred is None else (val_pred, task.splits["val"].target)
        if ref is None and any(resolve(m)[0].needs_reference for m in declared_metrics(task.spec)):
            raise ConfigError(f"{u.key}: {proto.key} needs the validation predictions for its "
                              "operating-point metrics, and none were given")
        with official.testing(model, u.official):  # a test-time official behaviour, if on
            return evaluate(model, split, task.spec, u.train.eval_batch_size,
                            proto.transform(task, u.seed), precision=u.train.precision,
                            reference=ref)

    @staticmethod
    def score(proto: Protocol | str, metric: str, value: float) -> dict:
        """One stored score of ``metric`` under ``proto`` (a protocol, or ``"val"``)."""
        if isinstance(proto, str):  # "val": the validation score that selected the checkpoint
            key, kind, curve, level = proto, proto, None, None
        else:
            key, kind, curve, level = proto.key, proto.kind, proto.curve, proto.level
        return {"protocol": key, "kind": kind, "metric": metric, "value": value,
                "higher_is_better": direction(metric), "curve": curve, "level": level}

    def score_all(self, proto: Protocol | str, values: dict[str, float]) -> list[dict]:
        """One stored score per declared metric (primary first) of one protocol."""
        return [self.score(proto, m, v) for m, v in values.items()]

    def save_predictions(self, job: UnitJob, preds: dict, *, fresh: bool) -> None:
        """Write the unit's per-sample predictions (``predictions.npz``, format in
        :mod:`i2m2bench.predictions`): protocol key -> (protocol or ``"val"``, predictions; None
        when there are none, e.g. a training that never validated). ``fresh``: a new training
        (replace the file); else add these protocols to what the file holds."""
        spec = self.workspace.task.spec
        new = Predictions(spec.problem, declared_metrics(spec), tuple(spec.labels))
        for key, (proto, pred) in preds.items():
            if pred is None:
                continue
            split_key, split = self.split_of(proto)
            groups = getattr(split, "groups", None)
            new.add(key, split_key, as_numpy(pred.float()), as_numpy(split.target),
                    None if groups is None else as_numpy(groups))
        job.files.save_predictions(new, fresh=fresh, log=job.log)


__all__ = ["UNIT_INFO", "UnitJob", "UnitResult", "UnitRunner"]
