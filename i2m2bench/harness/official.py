"""Official-behaviour switches: what the official I2M2 code does where the suite deliberately
does otherwise, each runnable on request (``suite.official``), each off by default.

The suite's defaults are the methods as published; the official code (divyam3897/I2M2 @
7742765) differs in places that move its numbers (docs/fidelity.md). Each switch reproduces one
such behaviour, named for what the official code does:

* ``lrtf_factors_untrained`` — the low-rank tensor fusion's modality factors never train: the
  official ``LowRankTensorFusion`` keeps them in a plain Python list, so they are no parameters
  of the model (``avmnist_and_mimic/common_fusions.py`` L305-317). Here: the factors of every
  :class:`~i2m2bench.fusion.late.LowRankTensorFusion` in the model are frozen at their
  initialisation (no gradient, no weight decay), in every method that contains one (LRTF late
  fusion and I2M2 with an LRTF inter expert). The CUDA variant of the bug (rank weights and bias
  also unregistered after ``.to(device)``) is not reproduced.
* ``intra_mixture_test`` — intra-only trains and validates as the product of its experts but is
  *tested* as their mixture, log of the mean of the experts' softmaxes
  (``avmnist_and_mimic/training_structures/intra_modality.py`` L244 against L89-93, L134-138).
  Here: every evaluation protocol of an intra-only model (not its validation, which selects the
  checkpoint) combines the experts present as a mixture; a multilabel task's Bernoulli experts
  are mixed by the mean of their sigmoids.
* ``unimodal_train_mode_eval`` — the official unimodal loop never calls ``.eval()``
  (``avmnist_and_mimic/training_structures/unimodal.py`` L35-80, L151-175): validation and test
  run BatchNorm on each evaluation batch's statistics (updating its running statistics with
  them) and any dropout active. Here: a unimodal model is put back in training mode before every
  forward pass, evaluation included; the evaluation batch then matters (the official loaders'
  is 40, ``train.eval_batch_size``).
* ``vqa_vs_scorer`` — VQA-VS scored by its own scorer, min(n / 3, 1)
  (:mod:`i2m2bench.metrics_official`): ``vqa_score`` is replaced by ``vqa_vs_score``.
* ``operating_point_on_scored_split`` — FastMRI's operating-point metrics with the threshold
  chosen on the split scored, as the official test does (:mod:`i2m2bench.metrics_official`).

The first three change a model (``prepare``: when it is built, before training; ``testing``:
around its evaluation protocols); the last two change what is scored (``metrics``: the suite's
metric -> the official scorer that replaces it in the task's declared metrics). A switch enters a
unit's hash only where it applies (:func:`applicable`), with the digest of this module and of
:mod:`i2m2bench.metrics_official`, so switches off leave every unit hash as it was.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from i2m2bench import metrics_official
from i2m2bench.fusion.base import Fusion
from i2m2bench.fusion.intra_only import IntraOnly
from i2m2bench.fusion.late import LowRankTensorFusion
from i2m2bench.fusion.unimodal import Unimodal
from i2m2bench.harness.errors import ConfigError
from i2m2bench.metrics import declared_metrics
from i2m2bench.registry import Registry
from i2m2bench.types import Batch, ExpertLogits, TaskSpec

@dataclass(frozen=True)
class Behaviour:
    """One official behaviour: what the official code does (``description``, ``cite``), which
    datasets' official code does it (``datasets``: what ``gin/official/<dataset>.gin`` turns
    on), and how it is reproduced: ``prepare(model)`` when a model is built, ``testing(model)``
    -> a ``log_probs`` replacement for its evaluation protocols, ``metrics`` (suite metric ->
    official scorer). ``applies(model)``: whether it changes that model."""

    description: str
    cite: str
    datasets: tuple[str, ...]
    applies: Callable[[Fusion], bool]
    prepare: Callable[[Fusion], None] | None = None
    testing: Callable[[Fusion], Callable] | None = None
    metrics: Mapping[str, str] = field(default_factory=dict)


OFFICIAL: Registry[Behaviour] = Registry("official behaviour")


# -- lrtf_factors_untrained ---------------------------------------------------------------
def _lrtf(model: Fusion) -> list[LowRankTensorFusion]:
    return [m for m in model.modules() if isinstance(m, LowRankTensorFusion)]


def _freeze_factors(model: Fusion) -> None:
    for fuse in _lrtf(model):
        for factor in fuse.factors:
            factor.requires_grad_(False)  # the optimiser takes trainable parameters only


# -- intra_mixture_test -------------------------------------------------------------------
def mixture_log_probs(model: Fusion, logits: ExpertLogits, batch: Batch) -> torch.Tensor:
    """The experts' mixture: log of the mean of their distributions over the experts present
    (multiclass, soft-score: softmax; multilabel: Bernoulli logits of the mean sigmoid)."""
    zs = torch.stack([z.float() for z in logits.values()])  # (K, B, C)
    mask = model.availability_mask(logits, batch)  # (B, K) or None
    k = zs.shape[0]
    w = (torch.ones(zs.shape[1], k, device=zs.device) if mask is None else mask.float())  # (B, K)
    w = w / w.sum(1, keepdim=True).clamp_min(1.0)
    logw = torch.log(w).T[:, :, None]  # (K, B, 1); -inf for an absent expert
    if model.spec.problem == "multilabel":
        lp = torch.logsumexp(logw + F.logsigmoid(zs), 0)  # log mean p
        lq = torch.logsumexp(logw + F.logsigmoid(-zs), 0)  # log mean (1 - p)
        return lp - lq
    return torch.logsumexp(logw + F.log_softmax(zs, dim=-1), 0)


def _mixture(model: Fusion) -> Callable:
    return mixture_log_probs


# -- unimodal_train_mode_eval -------------------------------------------------------------
def _train_mode_always(model: Fusion) -> None:
    def to_train(module, args):
        if not module.training:
            module.train(True)
    model.register_forward_pre_hook(to_train)


#: FastMRI's official operating-point scorers (i2m2bench.metrics_official)
_SCORED = tuple(m for m in metrics_official.REPLACES if m.endswith("_scored"))


def _replacing(*scorers: str) -> dict[str, str]:
    """suite metric -> official scorer, for ``scorers`` (:data:`metrics_official.REPLACES`)."""
    return {metrics_official.REPLACES[s]: s for s in scorers}


def _has_metric(*names: str) -> Callable[[Fusion], bool]:
    return lambda model: bool(set(names) & set(declared_metrics(model.spec)))


OFFICIAL.add("lrtf_factors_untrained", Behaviour(
    "the low-rank tensor fusion's modality factors sit in a plain list: never trained",
    "avmnist_and_mimic/common_fusions.py L305-317", ("avmnist",),
    lambda model: bool(_lrtf(model)), prepare=_freeze_factors), origin=f"{__name__}._freeze_factors")
OFFICIAL.add("intra_mixture_test", Behaviour(
    "intra-only trained and validated as a product of experts, tested as their mixture",
    "avmnist_and_mimic/training_structures/intra_modality.py L244 (L89-93, L134-138)",
    ("avmnist", "mimic"), lambda model: isinstance(model, IntraOnly), testing=_mixture),
    origin=f"{__name__}.mixture_log_probs")
OFFICIAL.add("unimodal_train_mode_eval", Behaviour(
    "the unimodal loop never calls eval(): BatchNorm on batch statistics (and dropout) at "
    "validation and test", "avmnist_and_mimic/training_structures/unimodal.py L35-80, L151-175",
    ("avmnist", "mimic"), lambda model: type(model) is Unimodal, prepare=_train_mode_always),
    origin=f"{__name__}._train_mode_always")
OFFICIAL.add("vqa_vs_scorer", Behaviour(
    "VQA-VS scored by its own scorer, min(n/3, 1), not I2M2's 0.3 n table",
    "PhoebusSi/VQA-VS comput_score.py L30-36; I2M2 vqa_nlvr/fiber/utils/write_vqa.py L13-23",
    ("vqa_vs",), _has_metric("vqa_score", "vqa_vs_score"), metrics=_replacing("vqa_vs_score")),
    origin=f"{metrics_official.__name__}.vqa_vs_scores")
OFFICIAL.add("operating_point_on_scored_split", Behaviour(
    "FastMRI's operating point (FNR < 10%) chosen on the test predictions it scores",
    "fastMRI/module.py L347; fastMRI/metrics/classification_metrics.py L16-42", ("fastmri",),
    _has_metric(*_replacing(*_SCORED), *_SCORED), metrics=_replacing(*_SCORED)),
    origin=f"{metrics_official.__name__}._scored_per_label")


def check_switches(names) -> tuple[str, ...]:
    """``suite.official`` as a tuple of known switch names (a ConfigError naming the binding)."""
    names = tuple(names or ())
    for n in names:
        if not isinstance(n, str) or n not in OFFICIAL:
            raise ConfigError(f"suite.official: {n!r} is not an official-behaviour switch; known: "
                              f"{', '.join(OFFICIAL.names())} (`python -m i2m2bench list official`)")
    if len(set(names)) != len(names):
        raise ConfigError(f"suite.official names a switch twice: {list(names)}")
    return names


def scored_spec(spec: TaskSpec, switches) -> TaskSpec:
    """``spec`` with the metrics the scoring switches replace swapped for the official scorers
    (the primary metric too); unchanged without such switches. A scoring switch on a task that
    declares none of the metrics it replaces is a ConfigError."""
    mapping: dict[str, str] = {}
    for name in switches:
        b = OFFICIAL.get(name)
        if b.metrics:
            declared = declared_metrics(spec)
            if not set(b.metrics) & {m.partition("/")[0] for m in declared}:
                raise ConfigError(f"suite.official: {name!r} replaces {', '.join(b.metrics)}, which "
                                  f"task {spec.name!r} does not declare ({', '.join(declared)})")
            mapping.update(b.metrics)
    if not mapping:
        return spec

    def swap(m: str) -> str:
        base, sep, label = m.partition("/")
        return mapping.get(base, base) + sep + label

    return dataclasses.replace(spec, metric=swap(spec.metric),
                               metrics=tuple(swap(m) for m in spec.metrics))


def applicable(model: Fusion, switches) -> tuple[str, ...]:
    """The switches of ``switches`` that change ``model`` (in their given order)."""
    return tuple(s for s in switches if OFFICIAL.get(s).applies(model))


def prepare(model: Fusion, switches) -> Fusion:
    """Apply the build-time behaviours of ``switches`` to a freshly built ``model``."""
    for s in switches:
        b = OFFICIAL.get(s)
        if b.prepare is not None and b.applies(model):
            b.prepare(model)
    return model


@contextlib.contextmanager
def testing(model: Fusion, switches):
    """Within: ``model`` combines its experts as the test-time behaviours of ``switches`` say
    (at most one may replace ``log_probs``); restored on exit."""
    fns = [OFFICIAL.get(s).testing(model) for s in switches
           if OFFICIAL.get(s).testing is not None and OFFICIAL.get(s).applies(model)]
    if len(fns) > 1:
        raise ConfigError(f"suite.official: {len(fns)} switches replace the test-time "
                          "combination of one model; at most one can")
    if not fns:
        yield model
        return
    model.log_probs = types.MethodType(fns[0], model)
    try:
        yield model
    finally:
        del model.log_probs


@functools.lru_cache(maxsize=None)
def code_digest() -> str:
    """sha256 over this module's source and :mod:`i2m2bench.metrics_official`'s: part of the
    hash of every unit a switch applies to."""
    h = hashlib.sha256()
    for path in (Path(__file__), Path(metrics_official.__file__)):
        h.update(path.read_bytes())
    return h.hexdigest()


__all__ = ["OFFICIAL", "Behaviour", "applicable", "check_switches", "code_digest",
           "mixture_log_probs", "prepare", "scored_spec", "testing"]
