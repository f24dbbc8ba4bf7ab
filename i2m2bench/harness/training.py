"""The training loop and evaluation.

Whole splits live on the device as tensors in their stored dtype; each step gathers a batch of
rows and normalises it (``Split.batch``) — no DataLoader, no per-sample Python collation.
Selection is on the validation metric (best checkpoint kept), with early stopping.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from i2m2bench.fusion.base import Fusion
from i2m2bench.harness.config import TrainConfig
from i2m2bench.types import Batch, Split, TaskSpec


class NaNLossError(RuntimeError):
    """The training loss became NaN/Inf; the message names the epoch and step."""


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.inference_mode()
def predict(model: Fusion, split: Split, spec: TaskSpec, batch_size: int = 1000,
            transform: Callable[[Batch, int], Batch] | None = None) -> torch.Tensor:
    """Combined predictions (N, C) on ``split`` with the model in eval mode (BatchNorm frozen),
    without gradients, on the split's device. ``transform(batch, start)`` (an evaluation
    protocol: availability mask, perturbation) is applied to each batch first."""
    was_training = model.training
    model.eval()
    outs = []
    device = split.target.device
    for start in range(0, len(split), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(split)), device=device)
        batch = split.batch(idx, spec)
        if transform is not None:
            batch = transform(batch, start)
        outs.append(model.log_probs(model(batch), batch))
    model.train(was_training)
    return torch.cat(outs)


def score(pred: torch.Tensor, target: torch.Tensor, spec: TaskSpec) -> float:
    """The task's primary metric (accuracy for multiclass)."""
    if spec.metric != "accuracy" or spec.problem != "multiclass":
        raise NotImplementedError(f"metric {spec.metric!r} for {spec.problem!r} tasks")
    return float((pred.argmax(1) == target).double().mean())


def evaluate(model: Fusion, split: Split, spec: TaskSpec, batch_size: int = 1000,
             transform: Callable[[Batch, int], Batch] | None = None) -> float:
    return score(predict(model, split, spec, batch_size, transform), split.target, spec)


@dataclass
class TrainResult:
    best_val: float
    best_epoch: int
    epochs_run: int
    seconds: float
    samples_per_s: float
    history: list[dict]


def train_model(model: Fusion, train: Split, val: Split, spec: TaskSpec, cfg: TrainConfig,
                generator: torch.Generator, desc: str = "", progress: bool = True,
                on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train on the combined loss; keep the best-validation weights in ``model`` at the end.

    ``on_epoch(record)`` (optional) receives each epoch's ``{"epoch", "train_loss", "val"}``
    (e.g. for TensorBoard)."""
    opt = _optimizer(model, cfg)
    device = train.target.device
    n = len(train)
    best_val, best_epoch, best_state, history = -math.inf, -1, None, []
    seen, train_time = 0, 0.0
    bar = tqdm(range(cfg.epochs), desc=desc, leave=False, disable=not progress or None)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=generator).to(device)
        total = torch.zeros((), device=device)
        for step, start in enumerate(range(0, n, cfg.batch_size)):
            batch = train.batch(order[start:start + cfg.batch_size], spec)
            loss = model.loss(model(batch), batch)
            if not torch.isfinite(loss):
                raise NaNLossError(f"{desc}: loss is {loss.item()} at epoch {epoch}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.detach() * len(batch)
        seen += n
        train_time += time.perf_counter() - t0
        val_score = evaluate(model, val, spec, cfg.eval_batch_size)
        history.append({"epoch": epoch, "train_loss": float(total) / n, "val": val_score})
        if on_epoch is not None:
            on_epoch(history[-1])
        bar.set_postfix(loss=f"{float(total) / n:.3f}", val=f"{val_score:.3f}")
        if val_score > best_val:
            best_val, best_epoch = val_score, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainResult(best_val, best_epoch, len(history), train_time,
                       seen / train_time if train_time else 0.0, history)
