"""Any board as a table for analysis: one record per method (per setting and method on boards
with settings), one column per protocol and metric, mean and std as separate columns.

The numbers are the board's (latest unit per method; a later row of the same seed wins) as raw
fractions, as stored (not percent); a metric undefined on a split for a seed makes its mean and
std nan (CSV ``nan``, JSON ``null``). ``std`` is the sample standard deviation over seeds, None
with one seed. :func:`to_csv` and :func:`to_json` serialise a table for ``pandas.read_csv`` /
``pandas.read_json``.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics

from i2m2bench.reporting.rows import (board_method, board_metrics, column_order, has_settings, latest_units,
                                      method_order, unit_key)

#: The columns that identify a record, before the value columns.
KEY_COLUMNS = ("method", "label", "family", "fusion", "recipe", "seeds")


def value_column(protocol: str, metric: str, stat: str) -> str:
    """The name of a value column: ``<protocol>/<metric>/<stat>`` (stat: ``mean`` or ``std``)."""
    return f"{protocol}/{metric}/{stat}"


def grid(rows: list[dict], scored_only: bool = False) -> tuple[bool, list[tuple[str, str]], list[tuple]]:
    """What the board's tables share: (boards with settings?, the (protocol, metric) columns —
    by protocol kind, curve and level, declared metrics in order, ``val`` last — and one entry
    ``(rows, {column: {seed: value}}, failed seeds)`` per latest unit, in board order).
    ``scored_only`` leaves out the training figures (protocol ``train``)."""
    settings = has_settings(rows)
    units = latest_units(rows, unit_key(rows))
    order: dict[tuple[str, str], tuple] = {}
    for rs in units.values():
        for r in rs:
            if not (scored_only and r["protocol"] == "train"):
                order.setdefault((r["protocol"], r["metric"]), column_order(r))
    rank = {m: i for i, m in enumerate(board_metrics(rows))}  # declared order, primary first
    columns = sorted(order, key=lambda c: (*order[c][:-1], rank.get(c[1], len(rank)), order[c][-1]))

    def sort_key(k):
        r0 = units[k][0]
        return (str(r0.get("setting")) if settings else "", method_order(r0["family"], r0["method"]))

    entries = []
    for k in sorted(units, key=sort_key):
        rs = units[k]
        per: dict[tuple[str, str], dict[int, float]] = {}
        for r in rs:
            per.setdefault((r["protocol"], r["metric"]), {})[r["seed"]] = r["value"]
        entries.append((rs, per, {r["seed"] for r in rs if r["metric"] == "failed"}))
    return settings, columns, entries


def board_table(rows: list[dict]) -> list[dict]:
    """One dict per method (or per (setting, method)), all with the same keys in the same order:
    ``setting`` (boards with settings only), :data:`KEY_COLUMNS`, then for every (protocol,
    metric) of the board — scores by protocol kind, curve and level (``val`` last), then the
    training figures under protocol ``train`` — ``<protocol>/<metric>/mean`` and ``.../std``
    (None where the method has no value). ``seeds`` counts the seeds that did not fail."""
    if not rows:
        raise ValueError("no result rows to export")
    settings, columns, entries = grid(rows)
    table = []
    for rs, per, failed in entries:
        r0 = rs[0]
        rec = {"setting": r0.get("setting")} if settings else {}
        rec.update(method=board_method(r0), label=r0.get("label"), family=r0.get("family"),
                   fusion=r0.get("fusion"), recipe=r0.get("recipe"),
                   seeds=len({r["seed"] for r in rs} - failed))
        for protocol, metric in columns:
            vals = [v for _, v in sorted(per.get((protocol, metric), {}).items())]
            undefined = any(v != v for v in vals)  # nan: the metric has no value for a seed
            rec[value_column(protocol, metric, "mean")] = (
                math.nan if undefined else statistics.fmean(vals)) if vals else None
            rec[value_column(protocol, metric, "std")] = (
                math.nan if undefined else statistics.stdev(vals)) if len(vals) > 1 else None
        table.append(rec)
    return table


def to_csv(table: list[dict]) -> str:
    """The table as CSV (header row; empty cell for None; floats at full precision)."""
    buf = io.StringIO()
    fields = list(table[0]) if table else list(KEY_COLUMNS)
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    return buf.getvalue()


def to_json(table: list[dict]) -> str:
    """The table as a JSON array of records (``pandas.read_json(text, orient="records")``); an
    undefined value (nan: a metric with no value on the split) is ``null``, as JSON has no nan."""
    clean = [{k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()}
             for rec in table]
    return json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
