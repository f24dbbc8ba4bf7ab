"""A board's **Official behaviour** section: how far the official code's behaviours move each
method, with significance.

The suite's defaults are the methods as published; the official I2M2 code differs in places
(``suite.official`` switches, :mod:`i2m2bench.harness.official`; docs/fidelity.md). The section
has up to two parts, each a table of methods with the suite's score, the official one and
Δ = official − suite with the 95% interval of the two-stage paired bootstrap (the seeds both
share, then the test samples, as the board's marks; :func:`~i2m2bench.reporting.stats.paired_bootstrap_stats`):

* **Scored as the official code scores** — for every metric of the board that an official
  scorer replaces (:data:`i2m2bench.metrics_official.REPLACES`: VQA-VS's min(n/3, 1) scorer,
  FastMRI's operating point chosen on the test set), the same test predictions scored both ways.
* **Trained and tested as the official code does** — when the leaderboard folder holds the
  board of the same data made with the switches on (``<suite>_official-...``, the suites of
  ``gin/official/``): each method both boards have, on the primary metric, with the switches
  that changed it and any training setting that differs. Methods no switch changes are the
  control: their Δ is what retraining alone moves (another commit or machine) -- the section
  names the machines when they differ.

Reporting reads no files: the harness hands both boards' rows and predictions
(:func:`i2m2bench.harness.publish.board_extra`).
"""
from __future__ import annotations

import statistics

from i2m2bench import metrics as M
from i2m2bench import metrics_official
from i2m2bench.reporting.rows import board_metrics, latest_units, machine_of, method_order
from i2m2bench.reporting.significance import Evidence, paired_difference, row_key, seed_evidence
from i2m2bench.reporting.stats import LEVEL, N_BOOT, Paired

PROTOCOL = "test"
#: How the section names an official scorer (else its metric description).
_SCORERS = {f"op_{k}_scored": "`op_*_scored`, the operating point (FNR < 10%) chosen on the test "
            "predictions themselves, as the official FastMRI test does (I2M2 `fastMRI/module.py` "
            "L347), not on validation" for k in ("sensitivity", "specificity", "balanced_accuracy")}
_SCORERS["vqa_vs_score"] = ("`vqa_vs_score`, VQA-VS's own min(n/3, 1) of the arg-max answer's "
                            "annotator count (PhoebusSi/VQA-VS `comput_score.py` L30-36), not "
                            "I2M2's 0.3 n table")
SUFFIX = "_official"


def official_board_name(board: str) -> str:
    """The board of the same data made by the official-behaviour suite: ``<suite>_official``
    in place of the board's suite name (``avmnist-embedded-avdigits`` ->
    ``avmnist_official-embedded-avdigits``)."""
    suite, sep, rest = board.partition("-")
    return f"{suite}{SUFFIX}{sep}{rest}"


def _test_rows(rows: list[dict], metric: str) -> dict[str, dict[int, dict]]:
    """method -> {seed: its latest unit's test row of ``metric``} (fp32 units only)."""
    out: dict[str, dict[int, dict]] = {}
    for method, unit_rows in latest_units(rows).items():
        got = {int(r["seed"]): r for r in unit_rows
               if r["protocol"] == PROTOCOL and r["metric"] == metric}
        if got and " [" not in method:
            out[method] = got
    return out


def _stats(seed_rows: dict[int, dict], seeds: list[int], evidence: Evidence, metric: str):
    out = []
    for s in seeds:
        pred = evidence.get(row_key(seed_rows[s]))
        ev = None if pred is None else seed_evidence(pred, PROTOCOL, metric)
        if ev is None:
            return None
        out.append(ev)
    return out


def compare(a_rows: dict[int, dict], a_ev: Evidence, a_metric: str, b_rows: dict[int, dict],
            b_ev: Evidence, b_metric: str) -> tuple[float, float, Paired | None] | None:
    """(mean of B, mean of A, paired Δ = A − B with its interval) over the seeds both share, from
    the predictions; None without predictions for every shared seed; the Paired None when the
    two score different test samples."""
    seeds = sorted(set(a_rows) & set(b_rows))
    if not seeds:
        return None
    sa = _stats(a_rows, seeds, a_ev, a_metric)
    sb = _stats(b_rows, seeds, b_ev, b_metric)
    if sa is None or sb is None:
        return None
    mean_a = statistics.fmean(e.stat.full() for e in sa)
    mean_b = statistics.fmean(e.stat.full() for e in sb)
    if any(x.targets != y.targets for x, y in zip(sa, sb)):
        return mean_b, mean_a, None
    return mean_b, mean_a, paired_difference([e.stat for e in sa], [e.stat for e in sb])


def delta_cell(p: Paired | None, scale: float = 100.0, digits: int = 2) -> str:
    """``+d [lo, hi]``; bold when the interval excludes 0; "not paired" without a pairing."""
    if p is None:
        return "not paired (other test samples)"
    text = f"{p.diff * scale:+.{digits}f} [{p.low * scale:+.{digits}f}, {p.high * scale:+.{digits}f}]"
    return f"**{text}**" if (p.low > 0 or p.high < 0) else text


def _families(rows: list[dict]) -> dict[str, str]:
    return {r["method"]: r.get("family") or "" for r in rows}


def _ordered(methods, rows: list[dict]) -> list[str]:
    fam = _families(rows)
    return sorted(methods, key=lambda m: method_order(fam.get(m), m))


def scoring_part(rows: list[dict], evidence: Evidence) -> list[str]:
    """The **Scored as the official code scores** table (none when no official scorer replaces a
    metric of the board)."""
    metrics = board_metrics(rows)
    pairs = [(mine, official) for official, mine in metrics_official.REPLACES.items()
             if mine in metrics]
    if not pairs:
        return []
    header = ["Method"]
    for mine, official in pairs:
        header += [f"{mine}", f"{official} (official)", "Δ"]
    said = dict.fromkeys(_SCORERS.get(o, M.METRICS.get(o).description) for _, o in pairs)
    lines = ["", "**Scored as the official code scores.** The same test predictions as above, "
             "scored by the official scorer: " + "; ".join(said) + "."]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    shown = 0
    per_metric = {m: _test_rows(rows, m) for m, _ in pairs}
    methods = _ordered(set().union(*(set(v) for v in per_metric.values())), rows)
    for method in methods:
        cells = [f"`{method}`"]
        for mine, official in pairs:
            seed_rows = per_metric[mine].get(method)
            got = None if seed_rows is None else compare(seed_rows, evidence, official, seed_rows,
                                                         evidence, mine)
            if got is None:
                cells += ["—", "—", "no predictions"]
                continue
            cells += [f"{got[0] * 100:.2f}", f"{got[1] * 100:.2f}", delta_cell(got[2])]
            shown += 1
        table.append("| " + " | ".join(cells) + " |")
    if not shown:
        return []
    note = []
    if any(o.endswith("_scored") for _, o in pairs):
        note = ["", "The `_scored` operating point is chosen on the test predictions themselves "
                "(as the official test does); its bootstrap resamples keep that threshold."]
    return lines + [""] + table + note


def _settings_differ(a: list[dict], b: list[dict]) -> list[str]:
    ta, tb = (a[0].get("train") or {}), (b[0].get("train") or {})
    return [f"{k}: {tb.get(k)!r} → {ta.get(k)!r}" for k in sorted(set(ta) | set(tb))
            if ta.get(k) != tb.get(k)]


def training_part(rows: list[dict], evidence: Evidence, official_rows: list[dict],
                  official_evidence: Evidence, official_board: str) -> list[str]:
    """The **Trained and tested as the official code does** table (none without the official
    board's rows)."""
    if not official_rows:
        return []
    metric = board_metrics(rows)[0]
    if metric not in board_metrics(official_rows):
        return ["", f"**Trained and tested as the official code does**: board `{official_board}` "
                f"does not report {metric}, this board's primary metric; not compared."]
    mine, theirs = _test_rows(rows, metric), _test_rows(official_rows, metric)
    both = _ordered(set(mine) & set(theirs), rows)
    if not both:
        return []
    switched = any(r.get("official") for r in official_rows)
    table = ["| Method | official switches on it | settings that differ | this board | official "
             "| Δ |", "|---|---|---|---|---|---|"]
    for method in both:
        a, b = theirs[method], mine[method]
        switches = sorted({s for r in a.values() for s in (r.get("official") or [])})
        differ = _settings_differ(list(a.values()), list(b.values()))
        got = compare(a, official_evidence, metric, b, evidence, metric)
        cells = (["—", "—", "no predictions"] if got is None else
                 [f"{got[0] * 100:.2f}", f"{got[1] * 100:.2f}", delta_cell(got[2])])
        starts = a[min(a)].get("recipe", "joint") != "joint"  # from other units' weights
        label = ", ".join(f"`{s}`" for s in switches) or ("none on it" if starts and switched
                                                            else "— (control)")
        if starts and switched:
            label += "; starts from other units"
        table.append(f"| `{method}` | {label} | "
                     f"{'; '.join(differ) or '—'} | " + " | ".join(cells) + " |")
    lines = ["", f"**Trained and tested as the official code does.** Board `{official_board}` "
             f"(its suite turns on `suite.official`; `gin/official/`): the same data and seeds, "
             f"{metric} on the test set. A method no switch changes is the control: its Δ is "
             "what training it again moves; one that starts from other units' weights (its "
             "recipe's experts) carries whatever a switch did to them."]
    if not switched:
        lines[-1] += (" No official-behaviour switch applies to this board's official suite: "
                      "every method is a control.")
    here = sorted({machine_of(r) for m in both for r in mine[m].values() if r.get("numerics")})
    there = sorted({machine_of(r) for m in both for r in theirs[m].values() if r.get("numerics")})
    if here and there and here != there:
        lines += ["", f"The two boards come from different machines ({'; '.join(here)} here, "
                  f"{'; '.join(there)} there): every Δ also holds the change of machine, whose "
                  "size the controls show."]
    only = sorted(set(mine) - set(theirs))
    tail = (["", f"Not run with the official switches: {', '.join(f'`{m}`' for m in only)} "
             "(not methods of the official code, or left out of its suite)."] if only else [])
    return lines + [""] + table + tail


def official_section(rows: list[dict], evidence: Evidence, official_rows: list[dict] | None = None,
                     official_evidence: Evidence | None = None,
                     official_board: str = "") -> list[str]:
    """The section's lines (empty when it has neither part)."""
    parts = scoring_part(rows, evidence)
    parts += training_part(rows, evidence, official_rows or [], official_evidence or Evidence(),
                           official_board)
    if not parts:
        return []
    return (["", "## Official behaviour", "",
             "What the official code (divyam3897/I2M2 @ 7742765) does differently here, and how "
             "far it moves each method: Δ = official − this board, in points, mean over the "
             f"seeds both share, with the {LEVEL:.0%} interval of the two-stage paired bootstrap "
             f"(seeds, then test samples; {N_BOOT} resamples); **bold**: the interval excludes 0. "
             "Each behaviour, its source and the suite's choice: docs/fidelity.md and "
             "`python -m i2m2bench list official`."] + parts)


__all__ = ["compare", "delta_cell", "official_board_name", "official_section", "scoring_part",
           "training_part"]
