"""The statistics behind a board's cells and marks, from its rows and their saved predictions.

Every table cell of a board shows a 95% interval and, in the columns that rank methods, a mark:

* **Interval.** With two or more seeds: mean ± the half-width of the Student-t interval of the
  mean over seeds. With one seed: the value and, in brackets, the 95% percentile-bootstrap
  interval over the test samples (needs that seed's saved predictions; without them the value
  stands alone).
* **Marks.** The leader (best mean) is **best** only when its lead over the runner-up is
  significant by a two-stage paired bootstrap -- the seeds both methods share, drawn with
  replacement, then the test samples -- so that the spread between training runs counts as well
  as the finite test set; otherwise the leader and every method not significantly behind it are
  *tied* (:func:`i2m2bench.reporting.stats.mark_leaders`). A column gets marks only when every
  method with a value there has its predictions for it, on the same test samples (equal targets
  and groups), and its metric can be resampled: every built-in metric can (a mean of per-sample
  values -- accuracy, VQA score; a mean over sample groups -- consistency, whose resamples draw
  groups; AUROC, average precision and balanced accuracy, vectorised); a plugin's other metric
  gets none (see :data:`RESAMPLE_OTHER_METRICS`), and the board says so.

The predictions come from an :class:`Evidence`: a lookup of a unit's per-sample predictions
(:class:`i2m2bench.predictions.Predictions`) by (setting, method, unit hash, seed), which the
harness backs with the files it publishes beside the results (``predictions/<board>/``).
Reporting reads no files itself.
"""
from __future__ import annotations

import hashlib
import math
import statistics
import warnings
from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping

import numpy as np

from i2m2bench import metrics as M
from i2m2bench import metrics_official  # noqa: F401  (registers the official scorers)
from i2m2bench.predictions import Predictions
from i2m2bench.reporting.scores import UNDEFINED
from i2m2bench.reporting.stats import (LEVEL, N_BOOT, Paired, SampleStat, bootstrap_interval,
                                       mark_leaders, paired_bootstrap_stats, resampled_auroc,
                                       resampled_average_precision,
                                       resampled_balanced_accuracy, resampled_recall,
                                       t_interval)

#: Whether boards resample a metric that has none of the vectorised forms of
#: :func:`seed_evidence` (a metric registered by a plugin, say) by recomputing it on every
#: resample: 2,000 metric calls per seed and comparison, minutes per board, so off -- such a
#: column gets intervals over seeds but no marks, and the board says so. Every built-in metric
#: has a vectorised form.
RESAMPLE_OTHER_METRICS = False

#: (setting, method, unit hash, seed): what identifies one unit's predictions on a board.
Key = tuple[Hashable, str, str, int]

#: How the board headers explain cells and marks.
CELLS_NOTE = (f"Each cell: mean over seeds ± half-width of the {LEVEL:.0%} Student-t interval of "
              f"the mean (one seed: the value and its {LEVEL:.0%} percentile-bootstrap interval "
              f"over the test samples, {N_BOOT} resamples, in brackets).")
MARKS_NOTE = (f"**Bold**: best — the leader's lead over the runner-up is significant (two-stage "
              f"paired bootstrap: the seeds both share, drawn with replacement, then the test "
              f"samples; {N_BOOT} resamples, {LEVEL:.0%} interval of the difference above 0). "
              "*≈ Italic*: tied for best — the leader, when its lead is not significant, and "
              "every method not significantly behind it.")


class Evidence:
    """Per-sample predictions behind a board, looked up by :data:`Key`; ``load(key)`` returns a
    unit's :class:`Predictions` or None (loaded once, cached). ``Evidence()`` has none."""

    def __init__(self, load: Callable[[Key], Predictions | None] | None = None) -> None:
        self._load = load
        self._cache: dict[Key, Predictions | None] = {}

    def get(self, key: Key) -> Predictions | None:
        if self._load is None:
            return None
        if key not in self._cache:
            self._cache[key] = self._load(key)
        return self._cache[key]


NO_EVIDENCE = Evidence()


def row_key(row: Mapping) -> Key:
    return row.get("setting"), row["method"], row["unit_hash"], int(row["seed"])


@dataclass(frozen=True)
class SeedEvidence:
    """One seed's metric on one protocol, resample-ready, and a fingerprint of its targets."""

    stat: SampleStat
    targets: str


#: Evidence already built, by (predictions, protocol, metric): a board shows some columns twice
#: (``test`` in the main table and again in the missing-modality table), and the same evidence
#: object lets :func:`column_marks` reuse its resampled values (:data:`_RESAMPLED`). Each entry
#: holds its predictions alive, so their identity names them; at most :data:`_MEMO_SIZE`.
_EVIDENCE: dict = {}
_RESAMPLED: dict = {}  # resampled values by evidence (stats.resampled_values' memo)
_MEMO_SIZE = 4096


def seed_evidence(pred: Predictions, protocol: str, metric: str) -> SeedEvidence | None:
    """:func:`build_seed_evidence`, built once per (predictions, protocol, metric)."""
    key = (id(pred), protocol, metric, RESAMPLE_OTHER_METRICS)
    hit = _EVIDENCE.get(key)
    if hit is not None and hit[0] is pred:
        return hit[1]
    ev = build_seed_evidence(pred, protocol, metric)
    if len(_EVIDENCE) >= _MEMO_SIZE:
        _EVIDENCE.clear()
        _RESAMPLED.clear()
    _EVIDENCE[key] = (pred, ev)
    return ev


def build_seed_evidence(pred: Predictions, protocol: str, metric: str) -> SeedEvidence | None:
    """The resample-ready metric ``metric`` of ``pred`` on ``protocol`` (None when the file has
    no predictions for it, or the metric cannot be resampled; see
    :data:`RESAMPLE_OTHER_METRICS`).

    What a resample draws: test samples, except for a metric that averages over sample groups
    (consistency), whose resamples draw whole groups (NLVR2: sentences)."""
    if protocol not in pred.pred:
        return None
    p = pred.pred[protocol]
    split = pred.split[protocol]
    target, groups = pred.target[split], pred.groups.get(split)
    digest = hashlib.sha256(np.ascontiguousarray(target).tobytes() + str(target.dtype).encode())
    if groups is not None:
        digest.update(np.ascontiguousarray(groups).tobytes())
    fingerprint = digest.hexdigest()
    values = M.per_sample_values(metric, p, target, pred.problem)
    if values is None:
        values = M.per_group_values(metric, p, target, pred.problem, groups)
    if values is not None:
        return SeedEvidence(SampleStat(len(values), values=values), fingerprint)
    batch = _vectorised_batch(metric, p, target, pred)
    if batch is not None:
        return SeedEvidence(SampleStat(len(target), batch=batch), fingerprint)
    if not RESAMPLE_OTHER_METRICS:
        return None
    labels = pred.labels or None

    def fn(idx: np.ndarray) -> float:
        return M.compute(metric, p[idx], target[idx], pred.problem,
                         None if groups is None else groups[idx], labels, pred.reference())

    return SeedEvidence(SampleStat(len(target), fn=fn), fingerprint)


#: Per-label ranking metrics resampled vectorised, and when a label is defined on a split.
_RANKING = {"auroc": (resampled_auroc, lambda y: 0 < y.sum() < len(y)),
            "auprc": (resampled_average_precision, lambda y: y.sum() > 0)}


def _vectorised_batch(metric: str, p: np.ndarray, target: np.ndarray, pred: Predictions):
    """``batch(idx)`` -> (k,) values of ``metric`` on the k resamples ``idx`` (k, n), computed
    at once: AUROC / average precision (macro over the labels defined on the whole split, or
    one ``<metric>/<label>``) and balanced accuracy; None for another metric."""
    base, _, label = metric.partition("/")
    if pred.problem not in ("multiclass", "multilabel"):
        return None
    if pred.problem == "multiclass":
        y = np.zeros(p.shape, dtype=bool)
        y[np.arange(len(target)), np.asarray(target, dtype=np.int64)] = True
    else:
        y = np.asarray(target) > 0.5
    names = list(pred.labels) if pred.labels else [str(i) for i in range(p.shape[1])]
    if label and label not in names:
        return None
    cols = [names.index(label)] if label else list(range(p.shape[1]))
    if base in _OPERATING_POINT and pred.problem == "multilabel":
        return _operating_point_batch(base, p, target, pred, cols)
    if base.endswith(_SCORED) and base[:-len(_SCORED)] in _OPERATING_POINT \
            and pred.problem == "multilabel":  # the official choice: the split scored itself
        return _operating_point_batch(base[:-len(_SCORED)], p, target, pred, cols, (p, target))
    if base == "balanced_accuracy":
        if pred.problem == "multiclass":
            if label:
                return None
            truth = np.asarray(target, dtype=np.int64)
            return lambda idx: resampled_balanced_accuracy(p.argmax(1) == truth, truth, idx)
        per_label = [((p[:, j] > 0) == y[:, j], y[:, j]) for j in cols]
        return lambda idx: _nanmean_rows([resampled_balanced_accuracy(c, t, idx)
                                          for c, t in per_label])
    if base not in _RANKING:
        return None
    resample, defined = _RANKING[base]
    full = [j for j in cols if defined(y[:, j])]
    scores = np.asarray(p, dtype=np.float64)
    return lambda idx: _nanmean_rows([_label_resampled(resample, base, p, scores, y, j, idx)
                                      for j in full], len(idx))


#: The last per-label resampled values of each (predictions, metric, label): a board's macro
#: column (``auroc``) and its per-label columns (``auroc/<label>``) resample the same labels on
#: the same shared resamples, so each is computed once. Kept only for the read-only resamples
#: that :func:`~i2m2bench.reporting.stats` shares between callers (the entry holds them alive,
#: so their identity names them); at most :data:`_LABEL_MEMO_SIZE` entries.
_LABEL_MEMO: dict = {}
_LABEL_MEMO_SIZE = 4096


def _label_resampled(resample, base: str, p: np.ndarray, scores: np.ndarray, y: np.ndarray,
                     j: int, idx: np.ndarray) -> np.ndarray:
    if idx.flags.writeable:  # resamples nobody shares: nothing to gain
        return resample(scores[:, j], y[:, j], idx)
    key = (id(p), base, j)
    hit = _LABEL_MEMO.get(key)
    if hit is not None and hit[0] is p and hit[1] is idx:
        return hit[2]
    values = resample(scores[:, j], y[:, j], idx)
    if len(_LABEL_MEMO) >= _LABEL_MEMO_SIZE:
        _LABEL_MEMO.clear()
    _LABEL_MEMO[key] = (p, idx, values)
    return values


#: The operating-point metrics (:func:`i2m2bench.metrics.operating_points`): the threshold comes
#: from the validation predictions and stays fixed while the test samples are resampled.
_OPERATING_POINT = ("op_sensitivity", "op_specificity", "op_balanced_accuracy")
_SCORED = "_scored"  # i2m2bench.metrics_official: the operating point chosen on the split scored


def _operating_point_batch(base: str, p: np.ndarray, target: np.ndarray, pred: Predictions,
                           cols: list[int], reference=None):
    reference = pred.reference() if reference is None else reference
    if reference is None:
        return None
    points = M.operating_points(reference[0], reference[1], pred.problem)
    decided, y = M.operating_decisions(p, target, pred.problem, reference)
    keep = [j for j in cols if np.isfinite(points[j])]
    if base == "op_balanced_accuracy":
        parts = [(decided[:, j] == y[:, j], y[:, j]) for j in keep]
        return lambda idx: _nanmean_rows([resampled_balanced_accuracy(c, t, idx) for c, t in parts],
                                         len(idx))
    positive = base == "op_sensitivity"
    parts = [(decided[:, j] if positive else ~decided[:, j], y[:, j] if positive else ~y[:, j])
             for j in keep]
    return lambda idx: _nanmean_rows([resampled_recall(d, m, idx) for d, m in parts], len(idx))


def _nanmean_rows(per_label: list[np.ndarray], k: int = 0) -> np.ndarray:
    """Mean over labels of (k,) per-label values, ignoring undefined (nan) ones; nan where none
    is defined."""
    if not per_label:
        return np.full(k, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(per_label), axis=0)


@dataclass
class Entry:
    """One method's values in one column: per seed, and the predictions behind them (if any)."""

    values: dict[int, float]
    evidence: dict[int, SeedEvidence] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def undefined(self) -> bool:
        return any(v != v for v in self.values.values())

    @property
    def complete(self) -> bool:
        """Predictions for every seed."""
        return set(self.evidence) >= set(self.values)


def entry(values: Mapping[int, float], rows_key: Callable[[int], Key] | None, evidence: Evidence,
          protocol: str, metric: str) -> Entry:
    """An :class:`Entry` of ``values`` ({seed: value}); ``rows_key(seed)`` names the unit whose
    predictions back each seed (None: no predictions)."""
    e = Entry(dict(values))
    if rows_key is None:
        return e
    for seed in e.values:
        pred = evidence.get(rows_key(seed))
        ev = None if pred is None else seed_evidence(pred, protocol, metric)
        if ev is not None:
            e.evidence[seed] = ev
    return e


def interval_text(e: Entry | None, scale: float, digits: int) -> str:
    """A cell's text without its mark: "—" (no value), "undefined", "m ± h" over seeds, or one
    seed's "m [lo, hi]" (bootstrap over test samples; "m" alone without predictions)."""
    if e is None or not e.values:
        return "—"
    if e.undefined:
        return UNDEFINED
    mean, half = t_interval(list(e.values.values()))
    if half is not None:
        return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"
    (seed, _), = e.values.items()
    ev = e.evidence.get(seed)
    if ev is None:
        return f"{mean * scale:.{digits}f}"
    lo, hi = bootstrap_interval(ev.stat)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


def marked(text: str, mark: str | None) -> str:
    if mark == "best":
        return f"**{text}**"
    if mark == "tied":
        return f"*≈ {text}*"
    return text


def column_marks(entries: Mapping[str, Entry], higher_is_better: bool) -> dict[str, str] | None:
    """``{method: "best" | "tied"}`` of one column, or None when the column cannot be marked:
    some method with a value lacks predictions, or two methods share no seed with predictions on
    the same test samples."""
    scored = {m: e for m, e in entries.items() if e.values and not e.undefined}
    if not scored:
        return {}
    if not all(e.complete for e in scored.values()):
        return None
    cache: dict[tuple[str, str], object] = {}
    memo = _RESAMPLED  # each method's resampled values, computed once for the board

    def compare(a: str, b: str):
        if (a, b) not in cache:
            ea, eb = scored[a], scored[b]
            seeds = sorted(set(ea.evidence) & set(eb.evidence))
            if not seeds or any(ea.evidence[s].targets != eb.evidence[s].targets for s in seeds):
                raise _Incomparable
            cache[a, b] = paired_bootstrap_stats([ea.evidence[s].stat for s in seeds],
                                                 [eb.evidence[s].stat for s in seeds],
                                                 higher_is_better=higher_is_better, memo=memo)
        return cache[a, b]

    try:
        return mark_leaders({m: e.mean for m, e in scored.items()}, compare, higher_is_better)
    except _Incomparable:
        return None


def paired_difference(a: list[SampleStat], b: list[SampleStat]) -> Paired:
    """The two-stage paired bootstrap of ``a`` − ``b`` (seed by seed, the same test samples;
    :func:`~i2m2bench.reporting.stats.paired_bootstrap_stats`), sharing the resampled values the
    board's marks computed for the same evidence (its Official behaviour section compares a
    column's evidence again)."""
    return paired_bootstrap_stats(a, b, memo=_RESAMPLED)


class _Incomparable(Exception):
    """Two methods' predictions do not cover the same test samples."""


def column_cells(entries: Mapping[str, Entry], higher_is_better: bool, scale: float = 100.0,
                 digits: int = 2, ranked: bool = True,
                 unranked: frozenset | set = frozenset(),
                 contributed: frozenset | set = frozenset()) -> tuple[dict[str, str], bool]:
    """({method: cell text}, whether the column is marked) of one column; ``ranked`` False:
    intervals only (curve points, areas); methods in ``unranked`` (evaluate-only units, which
    trained nothing) get an interval but never take part in the marks; methods in
    ``contributed`` (added with ``leaderboard add``) take part only when their per-sample
    predictions came along for every seed, so a contribution without them leaves the other
    methods' marks as they were."""
    competing = {m: e for m, e in entries.items()
                 if m not in unranked and not (m in contributed and not e.complete)}
    marks = column_marks(competing, higher_is_better) if ranked else {}
    cells = {m: marked(interval_text(e, scale, digits), (marks or {}).get(m))
             for m, e in entries.items()}
    return cells, marks is not None


__all__ = ["CELLS_NOTE", "MARKS_NOTE", "NO_EVIDENCE", "Entry", "Evidence", "Key", "SeedEvidence",
           "column_cells", "column_marks", "entry", "interval_text", "marked", "row_key",
           "seed_evidence"]
