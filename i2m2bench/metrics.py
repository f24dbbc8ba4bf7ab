"""Evaluation metrics for every problem type, in one registry (``METRICS``).

A metric reads a model's combined output on a split and the split's targets (and, for NLVR2's
consistency, its sample groups), as numpy arrays (torch tensors are accepted and copied to the
CPU):

=============  ==================================================  =============================
problem        predictions (``Fusion.log_probs``)                  targets
=============  ==================================================  =============================
multiclass     (N, C) log-probabilities                            (N,) int class indices
multilabel     (N, L) Bernoulli logits (one per label)             (N, L) 0/1
soft-score     (N, C) log-probabilities (categorical PoE)          (N, C) scores in [0, 1]
=============  ==================================================  =============================

Registered metrics (``python -m i2m2bench list metrics``); every one is a fraction in [0, 1],
boards show it in percent:

* ``accuracy`` ↑ — multiclass: arg-max = target; multilabel: per-label accuracy at
  p > 0.5 (logit > 0), averaged over labels.
* ``balanced_accuracy`` ↑ — multiclass: mean recall over the classes present in the targets
  (scikit-learn's ``balanced_accuracy_score``); multilabel: its binary form at p > 0.5 per label,
  averaged over labels.
* ``auroc`` ↑ — area under the ROC curve per label (multilabel) or per class one-vs-rest
  (multiclass), scikit-learn's ``roc_auc_score``; the value is the macro mean over labels.
* ``auprc`` ↑ — average precision per label / class (scikit-learn's
  ``average_precision_score``), macro mean.
* ``vqa_score`` ↑ — soft-score: the target score of the arg-max answer, averaged (the VQA
  accuracy of Antol et al., with scores min(#annotators / 3, 1) precomputed in the targets).
* ``consistency`` ↑ — multiclass with sample groups (NLVR2's: the sentence of each group is
  paired with several images): share of groups whose samples are all answered correctly.
* ``op_sensitivity``, ``op_specificity``, ``op_balanced_accuracy`` ↑ — multilabel: per label,
  the decision ``score >= t`` at the *operating point* ``t`` chosen on the **validation**
  predictions (the reference, below) as the highest threshold whose false-negative rate there is
  below 10% (:func:`operating_points`), then applied unchanged to the split scored; sensitivity
  (recall of the positives), specificity (recall of the negatives) and their mean, macro mean
  over labels. The official FastMRI code reports the same three numbers (I2M2
  ``fastMRI/metrics/classification_metrics.py`` L16-42) but chooses the threshold on the split it
  scores, the test set itself: ``test_epoch_end`` calls ``evaluate_classifier`` with no operating
  point (``module.py`` L347), although validation stores one (L277-293) -- so its test
  sensitivity is 0.9 or more by construction; here it is a held-out number. Two smaller
  differences: the official rule compares ``1 - tpr < 0.1`` in floats on sklearn's default ROC
  (``drop_intermediate=True``), which admits a miss rate of exactly 10% and can skip a threshold;
  here the rule is exact (``10 * misses < positives``) over every distinct score, and a sample at
  the threshold is positive (``>=``; the official decides ``>``, L34).

**Reference predictions.** A metric with ``Metric.needs_reference`` reads, besides a split's
predictions and targets, a *reference* ``(pred, target)`` pair: the validation predictions of
the same checkpoint. The harness passes them for every protocol (on ``val`` itself the split is
its own reference), and :mod:`i2m2bench.reporting.verify` takes them from the unit's
``predictions.npz`` (``pred/val``), so every such score is recomputed from saved predictions.

**Per-label values.** A metric with per-label values (``Metric.per_label``: auroc, auprc, and
accuracy / balanced accuracy on multilabel tasks) is also addressable as ``<metric>/<label>``
(``auroc/Effusion``; the label's name from ``TaskSpec.labels``, else its index), e.g. in a
dataset's declared metrics or ``train.select_on``; :func:`per_label_values` gives all of them at
once.

**Adding a metric** (here or from a plugin): ``METRICS.add("name", Metric("name", fn,
higher_is_better, problems, ...), origin="package.module.fn")``; a dataset then declares it in
``TaskSpec.metric`` / ``TaskSpec.metrics``. Boards show every metric in percent, so a registered
metric should be a fraction in [0, 1].

**Undefined values.** A value that does not exist on a split — AUROC of a label whose targets
hold one class only, average precision of a label with no positive — is ``float('nan')``, never
an error and never a made-up 0.5; boards show it as "undefined" and it never wins "best". A
macro mean is over the labels where the value is defined (every method is scored on the same
targets, so on the same labels) and is undefined only when no label is.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from i2m2bench.registry import Registry
from i2m2bench.types import ProblemType, TaskSpec

PROBLEMS: tuple[ProblemType, ...] = ("multiclass", "multilabel", "soft-score")


class MetricError(ValueError):
    """A metric name, or a metric applied where it does not apply; the message says which."""


@dataclass(frozen=True)
class Metric:
    """One metric: ``fn(pred, target, problem, groups) -> float`` (nan when undefined) over numpy
    arrays shaped as in the module docstring; ``problems``: the problem types it reads;
    ``needs_groups``: it reads the split's sample groups; ``per_label(pred, target, problem)``
    (optional): its value per label / class, (L,) with nan where undefined, for the problem types
    in ``per_label_problems``."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray, str, np.ndarray | None], float]
    higher_is_better: bool
    problems: tuple[str, ...]
    needs_groups: bool = False
    per_label: Callable[[np.ndarray, np.ndarray, str], np.ndarray] | None = None
    per_label_problems: tuple[str, ...] = ()
    description: str = ""
    #: optional: (N,) per-sample values whose mean is the metric, for the problem types in
    #: ``per_sample_problems`` (bootstraps resample them instead of recomputing the metric)
    per_sample: Callable[[np.ndarray, np.ndarray, str], np.ndarray] | None = None
    per_sample_problems: tuple[str, ...] = ()
    #: optional: (G,) per-group values whose mean is the metric (``fn(pred, target, problem,
    #: groups)``; groups in ``numpy.unique`` order), for metrics that average over sample groups
    #: (consistency): bootstraps resample the groups
    per_group: Callable[[np.ndarray, np.ndarray, str, np.ndarray], np.ndarray] | None = None
    #: the metric reads reference predictions (the validation split's ``(pred, target)``), passed
    #: to ``fn`` and ``per_label`` as the keyword ``reference`` (see the module docstring)
    needs_reference: bool = False
    #: ``fn`` is the mean of ``per_label`` over the labels where it is defined
    #: (:func:`macro_mean`), so a caller holding the per-label values has the metric too
    macro: bool = False


METRICS: Registry[Metric] = Registry("metric")


# ------------------------------------------------------------------------------ helpers
def as_numpy(x) -> np.ndarray:
    """A numpy view/copy of ``x`` (a torch tensor is detached and copied to the CPU; bfloat16,
    which numpy lacks, becomes float32)."""
    if hasattr(x, "detach"):
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x)


def macro_mean(values: np.ndarray) -> float:
    """Mean over the defined (finite) values; nan when none is."""
    ok = np.isfinite(values)
    return float(values[ok].mean()) if ok.any() else math.nan


_macro = macro_mean


def _columns(pred: np.ndarray, target: np.ndarray, problem: str) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N, L), binary targets (N, L)) for per-label ranking metrics: multilabel as given;
    multiclass one-vs-rest (one-hot targets; log-probabilities rank like probabilities)."""
    if problem == "multiclass":
        onehot = np.zeros(pred.shape, dtype=np.int64)
        onehot[np.arange(len(target)), target.astype(np.int64)] = 1
        return pred, onehot
    return pred, (target > 0.5).astype(np.int64)


def _decisions(pred: np.ndarray) -> np.ndarray:
    """Multilabel decisions at p > 0.5, i.e. logit > 0."""
    return pred > 0


# ------------------------------------------------------------------------------ the metrics
def _accuracy(pred, target, problem, groups=None) -> float:
    if problem == "multiclass":
        return float(np.mean(pred.argmax(1) == target))
    return _macro(_accuracy_per_label(pred, target, problem))


def _accuracy_per_label(pred, target, problem) -> np.ndarray:
    return np.mean(_decisions(pred) == (target > 0.5), axis=0, dtype=np.float64)


def _accuracy_per_sample(pred, target, problem) -> np.ndarray:
    if problem == "multiclass":
        return (pred.argmax(1) == target).astype(np.float64)
    # multilabel: the share of labels right per sample; its mean over samples is the mean over
    # labels of the per-label accuracies (every label is scored on every sample)
    return np.mean(_decisions(pred) == (target > 0.5), axis=1, dtype=np.float64)


def _balanced_accuracy(pred, target, problem, groups=None) -> float:
    from sklearn.metrics import balanced_accuracy_score

    if problem == "multiclass":
        with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected
            warnings.simplefilter("ignore")
            return float(balanced_accuracy_score(target, pred.argmax(1)))
    return _macro(_balanced_accuracy_per_label(pred, target, problem))


def _balanced_accuracy_per_label(pred, target, problem) -> np.ndarray:
    from sklearn.metrics import balanced_accuracy_score

    y, d = (target > 0.5), _decisions(pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([balanced_accuracy_score(y[:, j], d[:, j]) for j in range(y.shape[1])],
                        dtype=np.float64)


def _auroc_per_label(pred, target, problem) -> np.ndarray:
    from sklearn.metrics import roc_auc_score

    scores, y = _columns(pred, target, problem)
    out = np.full(y.shape[1], math.nan)
    for j in range(y.shape[1]):
        if 0 < y[:, j].sum() < len(y):  # both classes present, else undefined
            out[j] = roc_auc_score(y[:, j], scores[:, j])
    return out


def _auprc_per_label(pred, target, problem) -> np.ndarray:
    from sklearn.metrics import average_precision_score

    scores, y = _columns(pred, target, problem)
    out = np.full(y.shape[1], math.nan)
    for j in range(y.shape[1]):
        if y[:, j].sum() > 0:  # no positive: undefined
            out[j] = average_precision_score(y[:, j], scores[:, j])
    return out


def _vqa_score(pred, target, problem, groups=None) -> float:
    return float(np.mean(_vqa_score_per_sample(pred, target, problem)))


def _vqa_score_per_sample(pred, target, problem) -> np.ndarray:
    best = pred.argmax(1)
    return target[np.arange(len(best)), best].astype(np.float64)


def _consistency(pred, target, problem, groups=None) -> float:
    return float(np.mean(_consistency_per_group(pred, target, problem, groups)))


def _consistency_per_group(pred, target, problem, groups=None) -> np.ndarray:
    """1.0 for each group (in ``numpy.unique`` order) whose samples are all answered right."""
    if groups is None:
        raise MetricError("consistency needs the split's sample groups (Split.groups)")
    correct = pred.argmax(1) == target
    ids, inverse = np.unique(groups, return_inverse=True)
    wrong = np.zeros(len(ids), dtype=bool)
    np.logical_or.at(wrong, inverse, ~correct)
    return (~wrong).astype(np.float64)


def _macro_of(per_label):
    return lambda pred, target, problem, groups=None: _macro(per_label(pred, target, problem))


#: The operating point's false-negative-rate bound (official: ``threshold=0.1`` of
#: ``get_operating_point``, I2M2 ``fastMRI/metrics/classification_metrics.py`` L16, L28-29).
FNR_BOUND = 0.10


def operating_points(pred, target, problem: str = "multilabel") -> np.ndarray:
    """Per label, the highest threshold ``t`` whose decisions ``score >= t`` leave a false-negative
    rate below :data:`FNR_BOUND` on (``pred``, ``target``): with ``P`` positives, at most
    ``m = ceil(P / 10) - 1`` may fall below ``t``, so ``t`` is the ``(P - m)``-th largest positive
    score. (L,) float64; nan for a label without both classes. Integer arithmetic, no float
    comparison of rates: ``10 * misses < P``."""
    scores, y = _columns(as_numpy(pred), as_numpy(target), problem)
    out = np.full(y.shape[1], math.nan)
    for j in range(y.shape[1]):
        pos = np.sort(scores[y[:, j] == 1, j])[::-1]
        p = len(pos)
        if 0 < p < len(y):
            misses = -(-p * round(FNR_BOUND * 100) // 100) - 1  # ceil(P / 10) - 1
            out[j] = float(pos[p - misses - 1])
    return out


def operating_decisions(pred, target, problem: str, reference) -> tuple[np.ndarray, np.ndarray]:
    """(decisions (N, L) bool, positives (N, L) bool) of ``pred`` at the reference's operating
    points; a label whose point is undefined decides nothing (all False)."""
    if reference is None:
        raise MetricError("the operating-point metrics choose their threshold on reference "
                          "predictions (the validation split's); none was given")
    t = operating_points(reference[0], reference[1], problem)
    scores, y = _columns(pred, target, problem)
    with np.errstate(invalid="ignore"):
        return scores >= t[None, :], y.astype(bool)


def _recall(decided: np.ndarray, member: np.ndarray) -> float:
    n = int(member.sum())
    return float((decided & member).sum() / n) if n else math.nan


def _op_per_label(kind: str):
    def per_label(pred, target, problem, reference=None) -> np.ndarray:
        d, y = operating_decisions(pred, target, problem, reference)
        points = operating_points(reference[0], reference[1], problem)
        out = np.full(y.shape[1], math.nan)
        for j in range(y.shape[1]):
            if math.isnan(points[j]):
                continue
            sens, spec = _recall(d[:, j], y[:, j]), _recall(~d[:, j], ~y[:, j])
            if kind == "sensitivity":
                out[j] = sens
            elif kind == "specificity":
                out[j] = spec
            else:  # mean recall over the classes present (sklearn's balanced accuracy)
                out[j] = _macro(np.array([sens, spec]))
        return out
    return per_label


def _op_macro(per_label):
    return lambda pred, target, problem, groups=None, reference=None: _macro(
        per_label(pred, target, problem, reference=reference))


_ORIGIN = __name__
METRICS.add("accuracy", Metric(
    "accuracy", _accuracy, True, ("multiclass", "multilabel"),
    per_label=_accuracy_per_label, per_label_problems=("multilabel",),
    per_sample=_accuracy_per_sample, per_sample_problems=("multiclass", "multilabel"),
    description="arg-max = target (multiclass); per-label accuracy at p > 0.5, mean (multilabel)"),
    origin=f"{_ORIGIN}._accuracy")
METRICS.add("balanced_accuracy", Metric(
    "balanced_accuracy", _balanced_accuracy, True, ("multiclass", "multilabel"),
    per_label=_balanced_accuracy_per_label, per_label_problems=("multilabel",),
    description="mean per-class recall (sklearn balanced_accuracy_score); per label at p > 0.5, "
                "mean (multilabel)"), origin=f"{_ORIGIN}._balanced_accuracy")
METRICS.add("auroc", Metric(
    "auroc", _macro_of(_auroc_per_label), True, ("multiclass", "multilabel"),
    per_label=_auroc_per_label, per_label_problems=("multiclass", "multilabel"), macro=True,
    description="ROC AUC per label (one-vs-rest per class), macro mean over defined labels "
                "(sklearn roc_auc_score)"), origin=f"{_ORIGIN}._auroc_per_label")
METRICS.add("auprc", Metric(
    "auprc", _macro_of(_auprc_per_label), True, ("multiclass", "multilabel"),
    per_label=_auprc_per_label, per_label_problems=("multiclass", "multilabel"), macro=True,
    description="average precision per label (one-vs-rest per class), macro mean over defined "
                "labels (sklearn average_precision_score)"), origin=f"{_ORIGIN}._auprc_per_label")
METRICS.add("vqa_score", Metric(
    "vqa_score", _vqa_score, True, ("soft-score",),
    per_sample=_vqa_score_per_sample, per_sample_problems=("soft-score",),
    description="target score of the arg-max answer, mean (VQA accuracy)"),
    origin=f"{_ORIGIN}._vqa_score")
METRICS.add("consistency", Metric(
    "consistency", _consistency, True, ("multiclass",), needs_groups=True,
    per_group=_consistency_per_group,
    description="share of sample groups answered correctly throughout (NLVR2)"),
    origin=f"{_ORIGIN}._consistency")
for _kind in ("sensitivity", "specificity", "balanced_accuracy"):
    METRICS.add(f"op_{_kind}", Metric(
        f"op_{_kind}", _op_macro(_op_per_label(_kind)), True, ("multilabel",),
        per_label=_op_per_label(_kind), per_label_problems=("multilabel",), needs_reference=True,
        macro=True,
        description=f"{_kind.replace('_', ' ')} per label at the validation operating point "
                    "(highest threshold with FNR < 10% there), macro mean"),
        origin=f"{_ORIGIN}.operating_points")


# ------------------------------------------------------------------------------ public API
def _label_names(spec_or_labels: TaskSpec | Sequence[str] | None, width: int) -> list[str]:
    labels = spec_or_labels.labels if isinstance(spec_or_labels, TaskSpec) else spec_or_labels
    return list(labels) if labels else [str(i) for i in range(width)]


def resolve(name: str) -> tuple[Metric, str | None]:
    """(the registered metric, the label or None) of ``name`` — ``auroc`` or ``auroc/<label>``.
    An unknown metric raises the registry's error (with did-you-mean); a per-label name of a
    metric without per-label values raises :class:`MetricError`."""
    base, sep, label = str(name).partition("/")
    metric = METRICS.get(base)
    if not sep:
        return metric, None
    if metric.per_label is None or not label:
        raise MetricError(f"metric {name!r}: {base!r} has no per-label values")
    return metric, label


def direction(name: str) -> bool:
    """Whether higher values of metric ``name`` are better."""
    return resolve(name)[0].higher_is_better


def check_metric(name: str, spec: TaskSpec) -> Metric:
    """The metric ``name`` if it can be computed on ``spec``'s tasks, else :class:`MetricError`
    (or the registry's ``KeyError``) saying why."""
    metric, label = resolve(name)
    if spec.problem not in metric.problems:
        raise MetricError(f"metric {name!r} does not apply to {spec.problem} tasks (it reads "
                          f"{', '.join(metric.problems)})")
    if label is not None:
        if spec.problem not in metric.per_label_problems:
            raise MetricError(f"metric {name!r}: {metric.name!r} has no per-label values on "
                              f"{spec.problem} tasks")
        labels = _label_names(spec, spec.num_classes)
        if label not in labels:
            raise MetricError(f"metric {name!r}: task {spec.name!r} has no label {label!r}; its "
                              f"labels are {', '.join(labels)}")
    return metric


def declared_metrics(spec: TaskSpec) -> tuple[str, ...]:
    """The task's metrics: its primary metric first, then the others it declares (no repeats)."""
    return tuple(dict.fromkeys((spec.metric, *spec.metrics)))


def check_spec(spec: TaskSpec) -> None:
    """Every metric ``spec`` declares exists and applies to its problem type, and an explicit
    ``higher_is_better`` agrees with the primary metric's direction (:class:`MetricError`)."""
    if spec.problem not in PROBLEMS:
        raise MetricError(f"task {spec.name!r}: problem type {spec.problem!r} is not one of "
                          f"{', '.join(PROBLEMS)}")
    for name in declared_metrics(spec):
        try:
            check_metric(name, spec)
        except (MetricError, KeyError) as exc:
            raise MetricError(f"task {spec.name!r} declares metric {name!r}: {exc}") from exc
    if spec.higher_is_better is not None and spec.higher_is_better != direction(spec.metric):
        raise MetricError(f"task {spec.name!r}: higher_is_better={spec.higher_is_better} "
                          f"contradicts its primary metric {spec.metric!r}, for which "
                          f"{'higher' if direction(spec.metric) else 'lower'} is better (leave "
                          "higher_is_better unset: it comes from the metric)")


def compute(name: str, pred, target, problem: str, groups=None,
            labels: TaskSpec | Sequence[str] | None = None, reference=None) -> float:
    """The value of metric ``name`` (``auroc`` or ``auroc/<label>``); nan when undefined.
    ``reference``: the validation ``(pred, target)``, for a metric that needs it
    (:attr:`Metric.needs_reference`; ignored by the others)."""
    metric, label = resolve(name)
    if problem not in metric.problems:
        raise MetricError(f"metric {name!r} does not apply to {problem} tasks")
    if metric.needs_groups and groups is None:
        raise MetricError(f"metric {name!r} needs the split's sample groups (Split.groups)")
    if metric.needs_reference and reference is None:
        raise MetricError(f"metric {name!r} needs reference predictions (the validation split's)")
    pred, target = as_numpy(pred), as_numpy(target)
    groups = None if groups is None else as_numpy(groups)
    extra = {"reference": reference} if metric.needs_reference else {}
    if label is None:
        return float(metric.fn(pred, target, problem, groups, **extra))
    names = _label_names(labels, pred.shape[1])
    if label not in names:
        raise MetricError(f"metric {name!r}: no label {label!r} among {', '.join(names)}")
    return float(per_label_values(metric.name, pred, target, problem, reference)[names.index(label)])


def compute_all(names: Sequence[str], pred, target, problem: str, groups=None,
                labels: TaskSpec | Sequence[str] | None = None, reference=None) -> dict[str, float]:
    """``{name: value}`` for each metric of ``names`` (arrays converted once)."""
    pred, target = as_numpy(pred), as_numpy(target)
    groups = None if groups is None else as_numpy(groups)
    if reference is not None:
        reference = (as_numpy(reference[0]), as_numpy(reference[1]))
    return {n: compute(n, pred, target, problem, groups, labels, reference) for n in names}


def per_label_values(name: str, pred, target, problem: str, reference=None) -> np.ndarray:
    """Metric ``name``'s value per label (or per class, one-vs-rest), (L,) float64, nan where
    undefined (``reference``: as for :func:`compute`)."""
    metric = METRICS.get(name)
    if metric.per_label is None or problem not in metric.per_label_problems:
        raise MetricError(f"metric {name!r} has no per-label values on {problem} tasks")
    extra = {"reference": reference} if metric.needs_reference else {}
    return np.asarray(metric.per_label(as_numpy(pred), as_numpy(target), problem, **extra),
                      dtype=np.float64)


def per_sample_values(name: str, pred, target, problem: str) -> np.ndarray | None:
    """(N,) per-sample values whose mean is metric ``name`` on ``problem`` tasks (accuracy, VQA
    score), or None when the metric is not such a mean (ranking metrics, consistency, per-label
    names)."""
    metric, label = resolve(name)
    if label is not None or metric.per_sample is None or problem not in metric.per_sample_problems:
        return None
    return np.asarray(metric.per_sample(as_numpy(pred), as_numpy(target), problem), dtype=np.float64)


def per_group_values(name: str, pred, target, problem: str, groups) -> np.ndarray | None:
    """(G,) per-group values whose mean is metric ``name`` (consistency: one per sample group,
    groups in ``numpy.unique`` order), or None when the metric is no mean over groups or the
    split has no groups."""
    metric, label = resolve(name)
    if label is not None or metric.per_group is None or groups is None:
        return None
    return np.asarray(metric.per_group(as_numpy(pred), as_numpy(target), problem, as_numpy(groups)),
                      dtype=np.float64)


def is_defined(name: str, target, problem: str, groups=None, width: int | None = None,
               labels: TaskSpec | Sequence[str] | None = None) -> bool:
    """Whether metric ``name`` has a value on a split with these targets (for AUROC/AUPRC that
    depends on the targets alone): evaluated on constant predictions."""
    target = as_numpy(target)
    c = width if width is not None else (int(target.max()) + 1 if target.ndim == 1 else target.shape[1])
    pred = np.zeros((len(target), c), dtype=np.float32)
    return math.isfinite(compute(name, pred, target, problem, groups, labels, (pred, target)))


__all__ = ["FNR_BOUND", "METRICS", "Metric", "MetricError", "as_numpy", "macro_mean", "operating_decisions",
           "operating_points", "check_metric", "check_spec", "compute",
           "compute_all", "declared_metrics", "direction", "is_defined", "per_label_values",
           "per_group_values", "per_sample_values",
           "resolve"]
