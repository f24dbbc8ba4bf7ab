"""Published scores against their evidence: every score a board shows is recomputed from the
unit's saved predictions.

A unit's rows are written from the metrics the runner computed on its predictions, and the
predictions are published beside the rows (:mod:`i2m2bench.predictions`), so each shown row
whose protocol is in its unit's prediction file (every protocol but ``train``, whose figures are
timings and memory, and the robustness curves' points, which keep only their rows) can be
recomputed with :func:`i2m2bench.metrics.compute` and must come out equal. Nothing is trusted
that the predictions do not confirm: a results row edited by hand, prediction files swapped
between units or methods, a file truncated or replaced, a protocol or a file missing for a unit
whose board has predictions -- each is one problem naming the results file, the unit, the
protocol and what differs. ``leaderboard --check`` and ``compare`` fail on any
(:func:`i2m2bench.harness.publish.stale_boards`, :func:`~i2m2bench.harness.publish.compare_folders`).

Equality is to 1e-9 relative (1e-12 absolute): the metrics are NumPy reductions in float64 over
the float32 predictions, the same on any CPU; a change too small for that tolerance is far below
the boards' two decimals. A board none of whose units has a prediction file (a folder made
before predictions were published) is reported as unverified, not as wrong: its significance
marks are absent too, which the rendered board shows.
"""
from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from i2m2bench import metrics
from i2m2bench.reporting.rows import board_method, latest_units
from i2m2bench.reporting.significance import Evidence, Key, row_key

#: Protocols whose rows are not scores of the predictions (timings, memory, the PoE's share).
NOT_PREDICTED = ("train",)
REL_TOL, ABS_TOL = 1e-9, 1e-12


@dataclass
class Verification:
    """What :func:`verify_board` found: scores recomputed and equal, and every problem."""
    verified: int = 0
    problems: list[str] = field(default_factory=list)
    unverified: bool = False  # no unit of the board has predictions
    unverified_boards: list[str] = field(default_factory=list)  # over several boards


def recompute(pred, protocol: str, metric: str, cache: dict | None = None) -> float:
    """Metric ``metric`` of ``protocol`` from a unit's :class:`~i2m2bench.predictions.Predictions`
    (``KeyError`` for a protocol it lacks, :class:`~i2m2bench.metrics.MetricError` for a metric
    that does not apply, or that needs the validation predictions the file lacks). ``cache``
    (one dict per unit): a board's ``<metric>/<label>`` columns read the per-label values of
    ``<metric>`` computed once per protocol, and a metric that is their macro mean
    (``Metric.macro``) reads them too -- the same numbers :func:`~i2m2bench.metrics.compute`
    gives."""
    split = pred.split[protocol]
    base, sep, label = str(metric).partition("/")

    def per_label() -> np.ndarray:
        if (protocol, base) not in cache:
            cache[protocol, base] = metrics.per_label_values(
                base, pred.pred[protocol], pred.target[split], pred.problem, pred.reference())
        return cache[protocol, base]

    if cache is not None and base in metrics.METRICS.names():
        m = metrics.METRICS.get(base)
        if sep:
            names = list(pred.labels) if pred.labels else [str(i) for i in range(pred.pred[protocol].shape[1])]
            if label in names:
                return float(per_label()[names.index(label)])
        elif m.macro and pred.problem in m.per_label_problems and pred.problem in m.problems:
            return metrics.macro_mean(per_label())  # what m.fn computes
    return metrics.compute(metric, pred.pred[protocol], pred.target[split], pred.problem,
                           pred.groups.get(split), pred.labels, pred.reference())


def agrees(stored, value) -> bool:
    """Whether a stored score and its recomputed value are the same number (see the module
    docstring for the tolerance)."""
    if not isinstance(stored, (int, float)) or isinstance(stored, bool) or value is None:
        return False
    if math.isnan(value) or math.isnan(stored):
        return math.isnan(value) and math.isnan(stored)
    return math.isclose(value, stored, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def scores_problem(scores: list[dict], pred, source: str) -> str | None:
    """Why the scores of a ``metrics.json`` (``{protocol, metric, value}`` each) are not what
    the unit's predictions (read from ``source``) give, or None: the first that differs, or a
    protocol the predictions lack."""
    for s in scores:
        try:
            value = recompute(pred, s["protocol"], s["metric"])
        except KeyError:
            return f"{source} holds no predictions for its {s['protocol']!r} score"
        except (metrics.MetricError, ValueError, IndexError) as exc:
            return f"its {s['protocol']} {s['metric']} cannot be recomputed from {source} ({exc})"
        if not agrees(s.get("value"), value):
            return (f"its {s['protocol']} {s['metric']} is {s.get('value')!r} but {source} gives "
                    f"{value!r}")
    return None


def shown_rows(rows: list[dict]) -> list[dict]:
    """The rows a board shows: each (setting, method) key's latest unit."""
    latest = latest_units(rows, key=lambda r: (r.get("setting"), board_method(r)))
    return [r for rs in latest.values() for r in rs]


def _unit(r: dict) -> str:
    setting = f"{r['setting']}/" if r.get("setting") is not None else ""
    return f"{setting}{r['method']}/seed{r['seed']} (unit {r['unit_hash']})"


def _load(evidence: Evidence, key: Key, where: Callable[[Key], str]) -> tuple[object, str | None]:
    try:
        return evidence.get(key), None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        text = str(exc)
        return None, text if text.startswith(where(key)) else \
            f"{where(key)}: cannot read the predictions ({type(exc).__name__}: {exc})"


def verify_board(source: str, rows: list[dict], evidence: Evidence,
                 where: Callable[[Key], str]) -> Verification:
    """Recompute every shown score of one board (``rows`` of the results file ``source``) from
    ``evidence``; ``where(key)`` names a unit's prediction file in messages."""
    out = Verification()
    checked = [r for r in shown_rows(rows)
               if r.get("curve") is None and r.get("protocol") not in NOT_PREDICTED]
    loaded: dict[Key, object] = {}
    caches: dict[Key, dict] = {}  # per unit: per-label values (recompute)
    unreadable: set[Key] = set()
    for r in checked:
        key = row_key(r)
        if key not in loaded:
            loaded[key], problem = _load(evidence, key, where)
            if problem:
                unreadable.add(key)
                out.problems.append(f"{source}: {_unit(r)}: {problem}")
    if checked and not any(loaded.values()) and not unreadable:
        out.unverified = True
        return out
    for r in checked:
        key = row_key(r)
        pred = loaded[key]
        what = f"{source}: {_unit(r)} {r['protocol']} {r['metric']}"
        if pred is None:
            if key not in unreadable:
                out.problems.append(f"{what}: no predictions at {where(key)} (other units of "
                                    "this board have theirs)")
            continue
        proto = r["protocol"]
        if proto not in pred.pred:
            out.problems.append(f"{what}: {where(row_key(r))} holds no predictions for {proto!r} "
                                f"(it has {', '.join(sorted(pred.pred)) or 'none'})")
            continue
        try:
            value = recompute(pred, proto, r["metric"], caches.setdefault(key, {}))
        except (metrics.MetricError, KeyError, ValueError, IndexError) as exc:
            out.problems.append(f"{what}: cannot recompute it from {where(row_key(r))} "
                                f"({type(exc).__name__}: {exc})")
            continue
        if not agrees(r["value"], value):
            out.problems.append(f"{what}: the row says {r['value']!r}, its predictions "
                                f"({where(row_key(r))}) give {value!r}")
            continue
        out.verified += 1
    return out


__all__ = ["Verification", "verify_board", "shown_rows", "recompute", "agrees", "scores_problem",
           "NOT_PREDICTED"]
