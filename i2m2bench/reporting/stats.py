"""Statistics behind a board's cells and marks: 95% intervals and paired significance tests.

* **Interval of a cell.** Over seeds: the Student-t interval of the mean,
  mean ± t(0.975, n−1) · s / √n (n ≥ 2 seeds). With one seed there is no spread over seeds, so the
  interval is a percentile bootstrap over the test samples (:func:`bootstrap_interval`).
* **"Best" marks.** The leader's lead over the runner-up counts only when a paired bootstrap over
  test samples, pooled over seeds (:func:`paired_bootstrap`), puts the 95% interval of the
  difference above zero; otherwise the leader and every method whose difference to it is not
  significant are *tied* (:func:`mark_leaders`).

Every resampling draws from ``numpy.random.default_rng(seed)`` with a fixed seed, so a board is
a pure function of its inputs. Nothing here reads files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

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


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) indices drawn with replacement (the same draws for every caller with ``seed``)."""
    if n < 1:
        raise ValueError("bootstrap over an empty test set")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, *, n_boot: int = N_BOOT,
                       seed: int = SEED, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of ``statistic(idx)`` over bootstrap resamples of ``n`` test samples
    (``statistic`` evaluates the metric on the samples ``idx``). Undefined resamples (NaN, e.g.
    a label with one class) are left out; all undefined gives (nan, nan)."""
    vals = np.array([statistic(idx) for idx in _resamples(n, n_boot, seed)], dtype=float)
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a))


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
    """Paired bootstrap over test samples, pooled over seeds.

    ``preds_a[i]``, ``preds_b[i]``, ``targets[i]``: seed i's predictions of each method on the
    same test set (same samples, same order) and its targets. Each resample draws one set of
    sample indices and applies it to every seed; the statistic is the difference of the metric,
    averaged over seeds (``metric(pred, target, idx)``). The difference is signed so that > 0
    means A is better (``higher_is_better`` False flips it).
    """
    if not (len(preds_a) == len(preds_b) == len(targets)) or not targets:
        raise ValueError("paired_bootstrap needs the same (non-zero) number of seeds for A, B and targets")
    n = len(targets[0])
    if any(len(t) != n for t in targets) or any(len(p) != n for p in [*preds_a, *preds_b]):
        raise ValueError("paired_bootstrap: every seed must score the same test samples")
    sign = 1.0 if higher_is_better else -1.0
    full = np.arange(n)

    def diff(idx: np.ndarray) -> float:
        ds = [metric(a, t, idx) - metric(b, t, idx) for a, b, t in zip(preds_a, preds_b, targets)]
        return sign * float(np.mean(ds))

    vals = np.array([diff(idx) for idx in _resamples(n, n_boot, seed)], dtype=float)
    vals = vals[np.isfinite(vals)]
    a = (1 - level) / 2
    if not len(vals):
        return Paired(diff(full), math.nan, math.nan)
    return Paired(diff(full), float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a)))


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
