"""The training loop and evaluation.

The loop draws whole index batches from a split (``DataSplit.batches``) and never knows its
kind: an in-memory split gathers them on the device (``Split.batch``, no DataLoader), an on-disk
one streams them through a DataLoader (``i2m2bench.data.common.disk.DiskSplit``); neither collates
per-sample Python objects.
Selection is on a validation metric (``train.select_on``, default the task's primary metric; best
checkpoint kept), with early stopping. Evaluation computes every metric the task declares from the
registry in :mod:`i2m2bench.metrics` and returns the predictions beside the values.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from i2m2bench.fusion.base import Fusion, resolve_loss
from i2m2bench.harness import distributed
from i2m2bench.harness.config import TrainConfig
from i2m2bench.harness.errors import ConfigError
from i2m2bench.metrics import (MetricError, check_spec, compute_all, declared_metrics, direction,
                               is_defined, resolve)
from i2m2bench.types import Batch, DataSplit, Task, TaskSpec, shard_bounds


class NaNLossError(RuntimeError):
    """The training loss became NaN/Inf; the message names the epoch and step."""


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "rmsprop": torch.optim.RMSprop}[cfg.optimizer]
    extra = {"betas": tuple(cfg.betas)} if cfg.betas is not None else {}
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)


def autocast(device: torch.device, precision: str = "fp32"):
    """The autocast context of ``train.precision``: ``'bf16'`` runs eligible ops (matmuls,
    convolutions) in bfloat16 on ``device`` (CUDA or CPU), the rest -- and the PoE kernels, which
    accumulate in float32 -- as PyTorch's autocast lists decide; ``'fp32'`` changes nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.inference_mode()
def predict(model: Fusion, split: DataSplit, spec: TaskSpec, batch_size: int = 1000,
            transform: Callable[[Batch, int], Batch] | None = None,
            precision: str = "fp32") -> torch.Tensor:
    """Combined predictions (N, C), float32, on ``split`` with the model in eval mode
    (BatchNorm frozen), without gradients, on the split's device, under ``precision``
    (:func:`autocast`). ``transform(batch, start)`` (an evaluation protocol: availability mask,
    perturbation) is applied to each batch first."""
    was_training = model.training
    model.eval()
    outs = []
    with autocast(split.device, precision):
        for k, batch in enumerate(split.batches(spec, batch_size)):  # rows 0..N-1 in turn
            if transform is not None:
                batch = transform(batch, k * batch_size)
            outs.append(model.log_probs(model(batch), batch).float())
    model.train(was_training)
    return torch.cat(outs)


def scores(pred: torch.Tensor, split: DataSplit, spec: TaskSpec,
           metrics: Sequence[str] | None = None, reference=None) -> dict[str, float]:
    """``{metric: value}`` of predictions ``pred`` (from :func:`predict`) on ``split``, for
    ``metrics`` (default: every metric the task declares, primary first); nan where undefined
    (:mod:`i2m2bench.metrics`). ``reference``: the validation ``(pred, target)`` that metrics
    with an operating point read; None: ``split`` is the validation split, its own reference."""
    names = declared_metrics(spec) if metrics is None else tuple(metrics)
    ref = (pred, split.target) if reference is None else reference
    return compute_all(names, pred, split.target, spec.problem, getattr(split, "groups", None), spec,
                       ref)


def evaluate(model: Fusion, split: DataSplit, spec: TaskSpec, batch_size: int = 1000,
             transform: Callable[[Batch, int], Batch] | None = None,
             metrics: Sequence[str] | None = None,
             precision: str = "fp32", reference=None) -> tuple[dict[str, float], torch.Tensor]:
    """(``{metric: value}``, the predictions they were computed from) of ``model`` on ``split``
    (see :func:`predict` and :func:`scores`)."""
    pred = predict(model, split, spec, batch_size, transform, precision)
    return scores(pred, split, spec, metrics, reference), pred


def selection_metric(spec: TaskSpec, cfg: TrainConfig) -> str:
    """The validation metric that selects the checkpoint: ``train.select_on``, else the task's
    primary metric."""
    return cfg.select_on or spec.metric


def check_task_metrics(task: Task) -> None:
    """The task's declared metrics exist and apply to it, and the splits carry the sample groups
    that any of them reads (:class:`ConfigError` naming the task, metric or split)."""
    spec = task.spec
    try:
        check_spec(spec)
    except (MetricError, KeyError) as exc:
        raise ConfigError(str(exc)) from exc
    grouped = [m for m in declared_metrics(spec) if resolve(m)[0].needs_groups]
    if grouped:
        for name, split in {**task.splits, **task.shifts}.items():
            if name != "train" and getattr(split, "groups", None) is None:
                raise ConfigError(f"task {spec.name!r} declares metric {grouped[0]!r}, which reads "
                                  f"sample groups, but its split {name!r} has none (Split.groups)")


def balanced_class_weights(target: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    """(L, 2) float32 weights of class 0 and 1 per label of a multilabel task: N / (2 N_c) over
    the training targets (scikit-learn's ``compute_class_weight("balanced")`` per label), so that
    each class of each label weighs as much in the loss. The official FastMRI code weights its
    four cross-entropies with a precomputed file (``loss_fn_weights_knee_tr.p``, I2M2
    ``fastMRI/classifier.py`` L203) that is not public; this heuristic is the suite's choice.
    ``ValueError`` for another problem type, or a label with one class only in the targets."""
    if spec.problem != "multilabel":
        raise ValueError(f"class weights apply to multilabel tasks; task {spec.name!r} is {spec.problem}")
    t = target.detach().to("cpu", torch.float64)
    n = t.shape[0]
    pos = t.sum(0)
    counts = torch.stack([n - pos, pos], dim=1)  # (L, 2)
    empty = [spec.labels[i] if i < len(spec.labels) else str(i)
             for i in range(counts.shape[0]) if bool((counts[i] == 0).any())]
    if empty:
        raise ValueError(f"label(s) {', '.join(empty)} hold one class only in the {n} training "
                         "targets, so a class weight N / (2 N_c) is undefined")
    return (n / (2 * counts)).to(torch.float32)


def positive_count_weights(target: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    """(N,) float64 sampling weights of a multilabel task's training samples: 1 / (the number of
    training samples with the same number of positive labels), so that every positive-label
    count is drawn equally often (``train.sampler = 'positive_count'``). The official FastMRI
    data module's ``get_sampler_weights`` (mri-robustness ``src/data/knee_data.py`` L155-175)
    means the same, but looks each weight up by the count itself in a list indexed by the
    counts *present* (``weight[t]``), which goes wrong when a count is missing (say, 0, 1 and 3
    positives but no 2); here each count gets its own weight. ``ValueError`` for another
    problem type."""
    if spec.problem != "multilabel":
        raise ValueError(f"the positive-count sampler applies to multilabel tasks; task "
                         f"{spec.name!r} is {spec.problem}")
    count = (target.detach().to("cpu") > 0.5).sum(1)
    _, inverse, per = torch.unique(count, return_inverse=True, return_counts=True)
    return 1.0 / per[inverse].to(torch.float64)


def check_train_settings(cfg: TrainConfig, task: Task, method: str) -> None:
    """``<method>/train.loss`` applies to the task's problem type, ``<method>/train.class_weights``
    to its labels (:func:`balanced_class_weights`), and ``<method>/train.select_on`` names a
    metric the task declares that is defined on its validation split; else a
    :class:`ConfigError` naming the binding."""
    spec = task.spec
    try:
        resolve_loss(cfg.loss, spec.problem)
    except ValueError as exc:
        raise ConfigError(f"{method}/train.loss = {cfg.loss!r}: {exc}") from exc
    if cfg.class_weights is not None:
        try:
            balanced_class_weights(task.splits["train"].target, spec)
        except ValueError as exc:
            raise ConfigError(f"{method}/train.class_weights = {cfg.class_weights!r}: {exc}") from exc
    if cfg.sampler is not None and spec.problem != "multilabel":
        raise ConfigError(f"{method}/train.sampler = {cfg.sampler!r}: the positive-count sampler "
                          f"applies to multilabel tasks; task {spec.name!r} is {spec.problem}")
    declared = declared_metrics(spec)
    if cfg.select_on is not None and cfg.select_on not in declared:
        raise ConfigError(f"{method}/train.select_on = {cfg.select_on!r}: task {spec.name!r} declares "
                          f"the metrics {', '.join(declared)}; select on one of them (or leave it "
                          f"unset: the primary metric {spec.metric!r})")
    select = selection_metric(spec, cfg)
    val = task.splits["val"]
    if not is_defined(select, val.target, spec.problem, getattr(val, "groups", None),
                      spec.num_classes, spec):
        where = f"{method}/train.select_on = {select!r}" if cfg.select_on else \
            f"{method}: the primary metric {select!r} (train.select_on)"
        raise ConfigError(f"{where} is undefined on the validation split of task {spec.name!r} "
                          "(e.g. AUROC with no label that has both classes); select on another "
                          "declared metric")


def poe_share(model: Fusion, split: DataSplit, spec: TaskSpec, batch_size: int,
              reps: int = 5, precision: str = "fp32") -> float | None:
    """The share of a training step (forward, loss, backward) spent combining the experts and
    computing the loss on the combination -- the product of experts' own forward and backward --
    measured on the first ``batch_size`` training rows, ``reps`` times each, in eval mode (no
    running statistic moves) with gradients cleared afterwards: the weights are unchanged. None
    for a single-expert model (it has no product)."""
    if model.combine != "poe":
        return None
    was_training = model.training
    model.eval()
    batch = split.batch(torch.arange(min(batch_size, len(split))), spec)

    cuda = batch.target.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)  # GPU work is asynchronous

    def timed(fn) -> float:
        fn()  # warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        return (time.perf_counter() - t0) / reps

    def step():
        with autocast(batch.target.device, precision):
            loss = model.loss(model(batch), batch)
        loss.backward()

    def product():
        with autocast(batch.target.device, precision):
            logits = {k: z.detach().requires_grad_() for k, z in model(batch).items()}
            sync()
            t0 = time.perf_counter()
            loss = model.loss(logits, batch)
        loss.backward()
        sync()
        product.seconds += time.perf_counter() - t0

    product.seconds = 0.0
    total = timed(step)
    timed(product)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return product.seconds / (reps + 1) / total if total > 0 else None


@dataclass
class TrainResult:
    """``best_val``: the selection metric's value at ``best_epoch``; ``val_scores``: every
    declared metric there; ``val_pred``: the validation predictions they come from."""

    best_val: float
    best_epoch: int
    epochs_run: int
    seconds: float
    samples_per_s: float
    history: list[dict]
    val_scores: dict[str, float] = field(default_factory=dict)
    val_pred: torch.Tensor | None = None


def _train_epoch(model: Fusion, net: torch.nn.Module, opt: torch.optim.Optimizer, train: DataSplit,
                 spec: TaskSpec, cfg: TrainConfig, generator: torch.Generator, epoch: int, desc: str,
                 on_step: Callable[[int, int, float], None] | None,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """One epoch of :func:`train_model` (``net``: ``model``, or its DDP wrapper); the sum over
    global batches of each batch's loss times its rows. ``weights``: draw the epoch's N samples
    with replacement by these weights (``train.sampler``) instead of one permutation."""
    model.train()
    device, n = train.target.device, len(train)
    world, rank = distributed.world_size(), distributed.rank()
    shard = (rank, world) if world > 1 else None
    order = (torch.randperm(n, generator=generator) if weights is None
             else torch.multinomial(weights, n, replacement=True, generator=generator))
    total = torch.zeros((), device=device)
    for step, batch in enumerate(train.batches(spec, cfg.batch_size, order, shard)):
        rows = min(cfg.batch_size, n - step * cfg.batch_size)  # the global batch
        with autocast(device, cfg.precision):
            loss = model.loss(net(batch), batch)
        if shard is not None:
            start, stop = shard_bounds(rows, rank, world)
            share = (stop - start) / rows  # 0 for a stand-in row (shard_rows)
            local = loss.detach().float() * share
            loss = loss * (share * world)
            value = distributed.all_sum(local)
        else:
            value = loss.detach().float()
        if not torch.isfinite(value):
            raise NaNLossError(f"{desc}: loss is {value.item()} at epoch {epoch}, step {step}")
        if on_step is not None:
            on_step(epoch, step, float(value))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        total += value * rows
    return total


def train_model(model: Fusion, train: DataSplit, val: DataSplit, spec: TaskSpec, cfg: TrainConfig,
                generator: torch.Generator, desc: str = "", progress: bool = True,
                on_epoch: Callable[[dict], None] | None = None,
                on_step: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Train on the combined loss (``train.loss``); keep the best-validation weights in ``model``
    at the end, best by ``train.select_on`` (default: the task's primary metric) in the metric's
    direction; an undefined (nan) value never counts as an improvement.

    ``on_epoch(record)`` (optional) receives each epoch's ``{"epoch", "train_loss", "val"}``
    (``val``: the selection metric; e.g. for TensorBoard); ``on_step(epoch, step, loss)`` each
    step's loss on the whole (global) batch.

    Data-parallel (under torchrun, :mod:`i2m2bench.harness.distributed`): every rank draws the
    same permutation, takes its contiguous part of each global batch of ``train.batch_size``
    rows, and weighs its mean loss by its share of the batch (``n_rank * world / n``), so that
    DDP's average of the ranks' gradients is the gradient of the global batch's mean loss -- the
    single-process step up to floating-point reduction order. (A loss that is not a mean over
    samples, i.e. multilabel ``train.class_weights``, normalises its weights within each rank's
    part.) The logged loss is the global batch's, summed over ranks; every rank validates the
    same weights on the whole validation split, and rank 0's value decides."""
    opt = _optimizer(model, cfg)
    model.loss_kind = cfg.loss  # read by Fusion.loss
    model.class_weights = (balanced_class_weights(train.target, spec).to(train.target.device)
                           if cfg.class_weights == "balanced" else None)
    weights = positive_count_weights(train.target, spec) if cfg.sampler == "positive_count" else None
    select = selection_metric(spec, cfg)
    higher = direction(select)
    device = train.target.device
    n = len(train)
    net = distributed.wrap(model, device)  # DDP (SyncBatchNorm on CUDA); ``model`` when alone
    best_val, best_epoch, best_state, history = (-math.inf if higher else math.inf), -1, None, []
    best_pred = val_pred = None
    seen, train_time = 0, 0.0
    bar = tqdm(range(cfg.epochs), desc=desc, leave=False,
               disable=not progress or not distributed.is_main() or None)
    for epoch in bar:
        t0 = time.perf_counter()
        total = _train_epoch(model, net, opt, train, spec, cfg, generator, epoch, desc, on_step,
                             weights)
        seen += n
        train_time += time.perf_counter() - t0
        values, val_pred = evaluate(model, val, spec, cfg.eval_batch_size, metrics=(select,),
                                    precision=cfg.precision)
        val_score = distributed.broadcast(values[select])
        history.append({"epoch": epoch, "train_loss": float(total) / n, "val": val_score})
        if on_epoch is not None:
            on_epoch(history[-1])
        bar.set_postfix(loss=f"{float(total) / n:.3f}", val=f"{val_score:.3f}")
        if (val_score > best_val) if higher else (val_score < best_val):
            best_val, best_epoch, best_pred = val_score, epoch, val_pred
            best_state = copy.deepcopy(model.state_dict())
        elif cfg.patience is not None and epoch - best_epoch >= cfg.patience:
            break  # ``patience`` epochs in a row without improvement (None: never stop early)
    if best_state is not None:
        model.load_state_dict(best_state)
    final = best_pred if best_pred is not None else val_pred  # the weights the model ends with
    return TrainResult(best_val, best_epoch, len(history), train_time,
                       seen / train_time if train_time else 0.0, history,
                       scores(final, val, spec) if final is not None else {}, final)
