"""The console summary printed when a run ends: the board's numbers without opening a file."""
from __future__ import annotations

from tabulate import tabulate

from i2m2bench.reporting.rows import board_method, board_metrics
from i2m2bench.reporting.scores import mean_std_cell
from i2m2bench.reporting.tables import grid

#: With more metrics than this, the summary shows the others on ``test`` only (a terminal is
#: narrow; the board and ``leaderboard --format csv`` have every column).
WIDE = 2


def summary_table(rows: list[dict]) -> str:
    """Method × protocol, ``mean ± std`` (percent, two decimals, like the board's cells) over the
    seeds of each method's latest unit; scored protocols only, ``val`` last. A plain-text table
    (tabulate ``simple``) under a one-line title; one line per (setting, method) on boards with
    settings. With more than :data:`WIDE` metrics (per-label AUROC, say), every protocol shows the
    primary metric and the others appear for ``test`` only."""
    scored = [r for r in rows if r["protocol"] != "train"]
    if not scored:
        return "no scores to summarise"
    settings, columns, entries = grid(rows, scored_only=True)
    metrics = sorted({m for _, m in columns})
    narrowed = len(metrics) > WIDE
    if narrowed:
        primary = board_metrics(rows)[0]
        columns = [(p, m) for p, m in columns if m == primary or p == "test"]
    one_metric = len(metrics) == 1
    headers = (["Setting"] if settings else []) + ["Method", "Seeds"]
    headers += [p if one_metric else f"{p} {m}" for p, m in columns]
    body = []
    for rs, per, failed in entries:
        seeds = {r["seed"] for r in rs} - failed
        line = [str(rs[0].get("setting"))] if settings else []
        line += [board_method(rs[0]), f"{len(seeds)} ({len(failed)} failed)" if failed else str(len(seeds))]
        for c in columns:
            vals = [v for _, v in sorted(per.get(c, {}).items())]
            line.append(mean_std_cell(vals, 100.0, 2))
        body.append(line)
    first = scored[0]
    title = (f"{first.get('board', '')}: {' / '.join(metrics)} (%), mean ± sample std over seeds "
             "(latest unit per method)" + (f"; besides {primary}, on test only (the board has "
                                           "every column)" if narrowed else ""))
    return title + "\n" + tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)
