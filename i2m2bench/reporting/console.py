"""The console summary printed when a run ends: the board's numbers without opening a file."""
from __future__ import annotations

from tabulate import tabulate

from i2m2bench.reporting.rows import (board_metrics, column_order, has_settings, latest_units,
                                      method_order, unit_key)
from i2m2bench.reporting.scores import mean_std_cell


def summary_table(rows: list[dict]) -> str:
    """Method × protocol, ``mean ± std`` (percent, two decimals, like the board's cells) over the
    seeds of each method's latest unit; scored protocols only, ``val`` last. A plain-text table
    (tabulate ``simple``) under a one-line title; one line per (setting, method) on boards with
    settings."""
    scored = [r for r in rows if r["protocol"] != "train"]
    if not scored:
        return "no scores to summarise"
    settings = has_settings(rows)
    units = latest_units(rows, unit_key(rows))
    order: dict[tuple[str, str], tuple] = {}
    for rs in units.values():
        for r in rs:
            if r["protocol"] != "train":
                order.setdefault((r["protocol"], r["metric"]), column_order(r))
    rank = {m: i for i, m in enumerate(board_metrics(rows))}  # declared order, primary first
    columns = sorted(order, key=lambda c: (*order[c][:-1], rank.get(c[1], len(rank)), order[c][-1]))
    metrics = sorted({m for _, m in columns})
    one_metric = len(metrics) == 1
    headers = (["Setting"] if settings else []) + ["Method", "Seeds"]
    headers += [p if one_metric else f"{p} {m}" for p, m in columns]

    def sort_key(k):
        r0 = units[k][0]
        return (str(r0.get("setting")) if settings else "", method_order(r0["family"], r0["method"]))

    body = []
    for k in sorted(units, key=sort_key):
        rs = units[k]
        per: dict[tuple[str, str], dict[int, float]] = {}
        for r in rs:
            per.setdefault((r["protocol"], r["metric"]), {})[r["seed"]] = r["value"]
        failed = {r["seed"] for r in rs if r["metric"] == "failed"}
        seeds = {r["seed"] for r in rs} - failed
        line = [str(rs[0].get("setting"))] if settings else []
        line += [rs[0]["method"], f"{len(seeds)} ({len(failed)} failed)" if failed else str(len(seeds))]
        for c in columns:
            vals = [v for _, v in sorted(per.get(c, {}).items())]
            line.append(mean_std_cell(vals, 100.0, 2))
        body.append(line)
    first = scored[0]
    title = (f"{first.get('board', '')}: {' / '.join(metrics)} (%), mean ± sample std over seeds "
             "(latest unit per method)")
    return title + "\n" + tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)
