"""Statistics behind a board's cells and marks: 95% intervals and paired significance tests.

* **Interval of a cell.** Over seeds: the Student-t interval of the mean,
  mean ± t(0.975, n−1) · s / √n (n ≥ 2 seeds). With one seed there is no spread over seeds, so the
  interval is a percentile bootstrap over the test samples (:func:`bootstrap_interval`).
* **"Best" marks.** The leader's lead over the runner-up counts only when a two-stage paired
  bootstrap -- seeds, then test samples (:func:`paired_bootstrap_stats`) -- puts the 95% interval
  of the difference above zero; otherwise the leader and every method whose difference to it is
  not significant are *tied* (:func:`mark_leaders`).
* **Resampling metrics that are not a mean over samples** without recomputing them 2,000 times:
  AUROC, average precision and balanced accuracy are evaluated on all resamples of a chunk at
  once from how often each resample draws each sample (:func:`resampled_auroc`,
  :func:`resampled_average_precision`, :func:`resampled_balanced_accuracy`; each equal to
  scikit-learn's on the resampled rows).

Every resampling draws from ``numpy.random.default_rng(seed)`` with a fixed seed, so a board is
a pure function of its inputs. Nothing here reads files.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
from scipy import stats as _st

LEVEL = 0.95
N_BOOT = 2000
SEED = 0


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float | None]:
    """(mean, half-width of the Student-t interval); half-width None for fewer than 2 values."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("t_interval of no values")
    mean = math.fsum(xs) / len(xs)
    if len(xs) < 2:
        return mean, None
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return mean, float(_st.t.ppf(0.5 + level / 2, len(xs) - 1)) * sd / math.sqrt(len(xs))


#: Resample indices are drawn in chunks of at most this many (rows x samples), so that a large
#: test set (VQA-VS, FastMRI) never holds all 2,000 x N indices at once.
CHUNK = 1 << 22


_LAST_RESAMPLES: dict = {}  # the last small set of resamples drawn, by (n, n_boot, seed)


def _resamples(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray] | list[np.ndarray]:
    """Bootstrap resamples of ``n`` samples, ``n_boot`` in all, as chunks of (k, n) indices drawn
    with replacement from ``numpy.random.default_rng(seed)`` (the same draws for every caller
    with ``seed`` and ``n``). When they fit in one chunk (:data:`CHUNK` indices) the last set
    drawn is kept and handed out again (read-only): a board compares many pairs of methods on
    the same test set."""
    if n < 1:
        raise ValueError("bootstrap over an empty test set")
    if n * n_boot <= CHUNK:
        key = (n, n_boot, seed)
        if key not in _LAST_RESAMPLES:
            chunks = list(_draw(n, n_boot, seed))
            for c in chunks:
                c.setflags(write=False)
            _LAST_RESAMPLES.clear()
            _LAST_RESAMPLES[key] = chunks
        return _LAST_RESAMPLES[key]
    return _draw(n, n_boot, seed)


def _draw(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    step, done = max(1, CHUNK // n), 0
    while done < n_boot:
        k = min(step, n_boot - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


@dataclass(frozen=True)
class SampleStat:
    """A metric of one seed's predictions on ``n`` test samples, evaluable on any resample.

    Either the metric is the mean of per-sample values (``values``, (n,): accuracy, VQA score),
    and a resample's value is the mean of the resampled values (vectorised), or ``fn(idx)``
    computes it on the samples ``idx`` (ranking metrics: AUROC, average precision; group
    consistency)."""

    n: int
    values: np.ndarray | None = None
    fn: Callable[[np.ndarray], float] | None = None
    batch: Callable[[np.ndarray], np.ndarray] | None = None  # (k, n) resamples -> (k,) values
    #: ``values`` as int8 when they are all integers in [-127, 127] (correct or not, and paired
    #: differences of those): resampled as exact integer sums, one byte a sample
    small: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.values, self.fn, self.batch)) != 1:
            raise ValueError("SampleStat needs exactly one of values, fn and batch")
        if self.values is not None and len(self.values) != self.n:
            raise ValueError(f"SampleStat: {len(self.values)} values for {self.n} samples")
        if self.values is not None:
            v = np.asarray(self.values, dtype=np.float64)
            if np.all((v == np.round(v)) & (np.abs(v) <= 127)):
                object.__setattr__(self, "small", v.astype(np.int8))

    def full(self) -> float:
        """The metric on the whole test set."""
        if self.values is not None:
            return float(np.mean(self.values, dtype=np.float64))
        if self.batch is not None:
            return float(self.batch(np.arange(self.n)[None, :])[0])
        return float(self.fn(np.arange(self.n)))

    def on(self, idx: np.ndarray) -> np.ndarray:
        """(k,) values of the metric on the k resamples ``idx`` (k, n)."""
        if self.small is not None:  # the exact sum, so the same float64 as the mean below
            return self.small[idx].sum(axis=1, dtype=np.int64) / self.n
        if self.values is not None:
            return np.asarray(self.values, dtype=np.float64)[idx].mean(axis=1)
        if self.batch is not None:
            return np.asarray(self.batch(idx), dtype=np.float64)
        return np.array([self.fn(i) for i in idx], dtype=np.float64)


def _group_counts(scores: np.ndarray, positive: np.ndarray,
                  idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positives, negatives) drawn by each of the k resamples ``idx`` (k, n) in each tie group
    of ``scores`` (one group per distinct score), groups in ascending score order: two (k, G)
    float64 arrays of exact counts, from one ``bincount`` over (resample, group, class)."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    first = np.r_[True, s[1:] != s[:-1]]  # the first sorted position of each tie group
    groups = int(first.sum())
    code = np.empty(len(scores), np.int64)  # 2 x the sample's group + 1 when it is positive
    code[order] = 2 * (np.cumsum(first) - 1)
    code += positive.astype(bool)
    k = idx.shape[0]
    flat = (np.arange(k)[:, None] * (2 * groups) + code[idx]).ravel()
    counts = np.bincount(flat, minlength=k * 2 * groups).reshape(k, groups, 2)
    return counts[:, :, 1], counts[:, :, 0]


def resampled_auroc(scores: np.ndarray, positive: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ROC AUC of one label on each of the k resamples ``idx`` (k, n) at once: the Mann-Whitney
    statistic with each sample weighted by how often the resample draws it, ties counted one
    half -- what ``sklearn.metrics.roc_auc_score`` gives on the resampled rows. nan where a
    resample holds one class only."""
    pos, neg = _group_counts(scores, positive, idx)  # int64 counts
    below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower than each group
    # twice the Mann-Whitney count, in exact integers (ties count one half each)
    num = (pos * (2 * below + neg)).sum(axis=1) / 2.0
    p_, n_ = pos.sum(axis=1).astype(np.float64), neg.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((p_ > 0) & (n_ > 0), num / (p_ * n_), np.nan)


def resampled_average_precision(scores: np.ndarray, positive: np.ndarray,
                                idx: np.ndarray) -> np.ndarray:
    """Average precision of one label on each of the k resamples ``idx`` (k, n) at once:
    sum over the distinct scores t, from the highest down, of (recall(t) - recall(previous t)) *
    precision(t), counting every sample with score >= t as predicted positive and each sample as
    often as the resample draws it -- what ``sklearn.metrics.average_precision_score`` gives on
    the resampled rows. nan where a resample holds no positive."""
    pos, neg = _group_counts(scores, positive, idx)
    tp = np.cumsum(pos[:, ::-1], axis=1)[:, ::-1]  # positives scored >= each group's score
    fp = np.cumsum(neg[:, ::-1], axis=1)[:, ::-1]
    p_ = pos.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        return np.where(p_ > 0, (pos * precision).sum(axis=1) / p_, np.nan)


def resampled_balanced_accuracy(correct: np.ndarray, cls: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Balanced accuracy (mean recall over the classes present) on each of the k resamples
    ``idx`` (k, n) at once, from each sample's true class ``cls`` (n,) and whether it was
    answered right ``correct`` (n,) -- what ``sklearn.metrics.balanced_accuracy_score`` gives on
    the resampled rows."""
    classes, inverse = np.unique(cls, return_inverse=True)
    k, c = idx.shape[0], len(classes)
    # per resample and class: draws, and draws answered right (integer counts, exact in float64)
    cell = (np.arange(k)[:, None] * c + inverse[idx]).ravel()
    total = np.bincount(cell, minlength=k * c).reshape(k, c).astype(np.float64)
    right = np.bincount(cell, weights=np.asarray(correct, bool)[idx].ravel().astype(np.float64),
                        minlength=k * c).reshape(k, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(total > 0, right / total, np.nan)
    present = total > 0
    return np.where(present.any(axis=1), np.nansum(recall, axis=1) / np.maximum(present.sum(axis=1), 1), np.nan)


def resampled_recall(decided: np.ndarray, member: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Recall of one class -- the share of its samples (``member``, (n,) bool) that were
    ``decided`` (n,) bool -- on each of the k resamples ``idx`` (k, n) at once; nan on a resample
    without a member."""
    member = np.asarray(member, bool)
    hit = member & np.asarray(decided, bool)
    total = member[idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hit[idx].sum(axis=1) / np.maximum(total, 1), np.nan)


def _percentile(vals: np.ndarray, level: float) -> tuple[float, float]:
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


def bootstrap_interval(statistic: Callable[[np.ndarray], float] | SampleStat, n: int | None = None,
                       *, n_boot: int = N_BOOT, seed: int = SEED,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of a metric over bootstrap resamples of the test samples: either a
    :class:`SampleStat`, or ``statistic(idx)`` (the metric on the samples ``idx``) with the number
    ``n`` of samples. Undefined resamples (NaN, e.g. a label with one class) are left out; all
    undefined gives (nan, nan)."""
    stat = statistic if isinstance(statistic, SampleStat) else SampleStat(int(n), fn=statistic)
    return _percentile(resampled_values(stat, n_boot, seed), level)


@dataclass(frozen=True)
class Paired:
    """A paired comparison of methods A and B on the same test samples."""

    diff: float  # metric(A) − metric(B) on the full test set (mean over seeds)
    low: float  # percentile interval of the difference over resamples
    high: float

    @property
    def significant(self) -> bool:
        """A is ahead of B: the whole interval of the difference lies above zero."""
        return self.low > 0


def paired_bootstrap(metric: Callable[[np.ndarray, np.ndarray, np.ndarray], float],
                     preds_a: Sequence[np.ndarray], preds_b: Sequence[np.ndarray],
                     targets: Sequence[np.ndarray], *, higher_is_better: bool = True,
                     n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL) -> Paired:
    """Two-stage paired bootstrap (seeds, then test samples) of ``metric(pred, target, idx)``.

    ``preds_a[i]``, ``preds_b[i]``, ``targets[i]``: seed i's predictions of each method on the
    same test set (same samples, same order) and its targets. See :func:`paired_bootstrap_stats`.
    """
    if not (len(preds_a) == len(preds_b) == len(targets)) or not targets:
        raise ValueError("paired_bootstrap needs the same (non-zero) number of seeds for A, B and targets")
    n = len(targets[0])
    if any(len(t) != n for t in targets) or any(len(p) != n for p in [*preds_a, *preds_b]):
        raise ValueError("paired_bootstrap: every seed must score the same test samples")

    def stat(p, t):
        return SampleStat(n, fn=lambda idx: metric(p, t, idx))

    return paired_bootstrap_stats([stat(p, t) for p, t in zip(preds_a, targets)],
                                  [stat(p, t) for p, t in zip(preds_b, targets)],
                                  higher_is_better=higher_is_better, n_boot=n_boot, seed=seed,
                                  level=level)


def resampled_values(stat: SampleStat, n_boot: int = N_BOOT, seed: int = SEED,
                     memo: dict | None = None) -> np.ndarray:
    """(n_boot,) values of ``stat`` on the test-sample resamples of :func:`_resamples` (``n``,
    ``n_boot``, ``seed``), in draw order; kept in ``memo`` (by the stat's identity, the stat
    held alive beside its values) so that a method compared with several others is resampled
    once per column, not once per comparison."""
    key = (id(stat), n_boot, seed)
    if memo is not None and key in memo:
        return memo[key][1]
    values = np.concatenate([stat.on(idx) for idx in _resamples(stat.n, n_boot, seed)])
    if memo is not None:
        memo[key] = (stat, values)
    return values


def paired_bootstrap_stats(a: Sequence[SampleStat], b: Sequence[SampleStat], *,
                           higher_is_better: bool = True, n_boot: int = N_BOOT, seed: int = SEED,
                           level: float = LEVEL, memo: dict | None = None) -> Paired:
    """Two-stage paired bootstrap over seeds and test samples: ``a[i]`` and ``b[i]`` are seed i's
    metric of methods A and B on the same test samples.

    Each resample draws the seeds with replacement (as many as there are; stage one) and one set
    of test-sample indices with replacement (stage two), applied to both methods and every drawn
    seed; the statistic is the difference of the metric, averaged over the drawn seeds. Stage one
    carries the spread between training runs into the interval -- a lead that one seed reverses
    is not significant -- so that a mark does not hinge on the floating-point noise of one
    machine (another machine re-draws that noise as another seed would; Bouthillier et al.,
    "Accounting for variance in machine learning benchmarks", MLSys 2021). With one seed it is
    the plain paired bootstrap over test samples. The difference is signed so that > 0 means A
    is better (``higher_is_better`` False flips it). Two per-sample-mean metrics are compared
    through their per-sample differences (one gather per resample); other metrics through each
    seed's resampled values (:func:`resampled_values`, shared through ``memo``)."""
    if len(a) != len(b) or not a:
        raise ValueError("paired_bootstrap needs the same (non-zero) number of seeds for A and B")
    n = a[0].n
    if any(s.n != n for s in [*a, *b]):
        raise ValueError("paired_bootstrap: every seed must score the same test samples")
    sign = 1.0 if higher_is_better else -1.0
    if all(s.values is not None for s in [*a, *b]):
        pairs = [SampleStat(n, values=np.asarray(x.values, np.float64) - np.asarray(y.values, np.float64))
                 for x, y in zip(a, b)]
    else:
        pairs = None
    n_seeds = len(a)
    seed_rng = np.random.default_rng([seed, 1])  # stage one; stage two draws as _resamples(seed)

    if pairs is None:
        resampled = [(resampled_values(x, n_boot, seed, memo), resampled_values(y, n_boot, seed, memo))
                     for x, y in zip(a, b)]
    done = 0

    def diff(idx: np.ndarray) -> np.ndarray:  # (k, n) -> (k,)
        nonlocal done
        if pairs is not None:
            per_seed = np.stack([d.on(idx) for d in pairs])
        else:  # this chunk's rows of every seed's resampled values
            span = slice(done, done + len(idx))
            per_seed = np.stack([x[span] - y[span] for x, y in resampled])  # (seeds, k)
        done += len(idx)
        if n_seeds == 1:
            return sign * per_seed[0]
        drawn = seed_rng.integers(0, n_seeds, size=(len(idx), n_seeds))  # (k, seeds drawn)
        with warnings.catch_warnings():  # a resample whose drawn seeds are all undefined: nan
            warnings.simplefilter("ignore", RuntimeWarning)
            return sign * np.nanmean(per_seed[drawn, np.arange(len(idx))[:, None]], axis=1)

    full = sign * float(np.mean([x.full() - y.full() for x, y in zip(a, b)]))
    low, high = _percentile(np.concatenate([diff(idx) for idx in _resamples(n, n_boot, seed)]), level)
    return Paired(full, low, high)


def mark_leaders(means: Mapping[str, float], compare: Callable[[str, str], Paired],
                 higher_is_better: bool = True) -> dict[str, str]:
    """``{method: "best" | "tied"}`` for the methods that earn a mark (others are absent).

    The leader (best mean; undefined means never lead) is ``best`` when its lead over the
    runner-up is significant (``compare(leader, runner_up).significant``). Otherwise the leader
    and every method whose paired difference to the leader is not significant are ``tied``.
    ``compare(a, b)`` must return A − B signed so that > 0 means A is better."""
    ranked = sorted((m for m, v in means.items() if v is not None and math.isfinite(v)),
                    key=lambda m: (-means[m] if higher_is_better else means[m], m))
    if not ranked:
        return {}
    leader = ranked[0]
    if len(ranked) == 1:
        return {leader: "best"}
    if compare(leader, ranked[1]).significant:
        return {leader: "best"}
    return {leader: "tied", **{m: "tied" for m in ranked[1:] if not compare(leader, m).significant}}
