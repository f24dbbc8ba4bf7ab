"""The standard board: one table of methods x plain protocols (test, shift sets, val), then the
robustness sections (missing modalities, curve areas, one table and figure per curve).

For every method the rows of its most recent configuration (``unit_hash``) are used; each
cell shows a 95% interval (:mod:`i2m2bench.reporting.significance`: Student-t over seeds, or a
bootstrap over test samples for one seed), with ↑/↓ for the metric's direction; in the main table
and the missing-modality table the leader of each column is marked best only when its lead is
significant by a paired bootstrap on the saved predictions, else the leaders are marked tied.
The main table has a column per plain protocol and declared metric (primary first); the
robustness sections use the primary metric. A metric that is undefined on a split (nan, e.g.
AUROC of a label with one class only) shows as "undefined" and never wins "best". Rows are grouped by their structured fields
(:mod:`i2m2bench.reporting.rows`): plain protocols by ``protocol``, curve points by
(``curve``, ``level``); no protocol string is parsed.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from tabulate import tabulate

from i2m2bench.reporting.layouts import LAYOUTS, Layout
from i2m2bench.reporting.plots import curve_figures, plot_curves  # noqa: F401  (re-exported)
from i2m2bench.reporting.rows import FAMILY_ORDER, latest_units  # noqa: F401  (re-exported)
from i2m2bench.reporting.rows import board_metrics, machine_of, machines_note, metric_rows
from i2m2bench.reporting.scores import BoardData, UnitScores, curve_slug, is_undefined
from i2m2bench.reporting.significance import (CELLS_NOTE, MARKS_NOTE, NO_EVIDENCE, Entry,
                                              Evidence, column_cells, entry, interval_text)

TRAIN_INFO = ("samples_per_s", "train_seconds", "epochs_run")
#: ``train.*`` settings the Schedule column always names.
SCHEDULE_ALWAYS = ("optimizer", "lr", "weight_decay", "batch_size", "epochs", "patience", "grad_clip")
#: ``train.*`` settings it names only when a unit's differs from the default (rows that record
#: none ran with the default), so boards made before a setting existed render as they did.
#: ``eval_batch_size`` is in the unit hash (as every ``train.*`` setting) but not shown: it
#: batches the evaluation of a trained model, it trains nothing
#: (``tests/reliability/test_aliasing.py`` checks every ``train.*`` setting is one of the three).
SCHEDULE_NOT_SHOWN = ("eval_batch_size",)
SHOWN_WHEN_SET = (("loss", "auto"), ("select_on", None), ("class_weights", None), ("sampler", None),
                  ("betas", None),
                  ("momentum", 0.0), ("precision", "fp32"))
SHIFT_MEAN = "shift mean"


def shift_mean(u: UnitScores, shifts: list[str]) -> dict[int, float]:
    """{seed: mean of the unit's scores on ``shifts``} over the seeds scored on all of them."""
    seeds = set.intersection(*(set(u.scores.get(p, {})) for p in shifts)) if shifts else set()
    return {k: statistics.fmean(u.scores[p][k] for p in shifts) for k in sorted(seeds)}


# ------------------------------------------------------------------------------ robustness
def area_metrics(clean: float, points: dict[float, float], ref_clean: float | None = None,
                 ref_points: dict[float, float] | None = None) -> tuple[float, float | None]:
    """Relative and effective robustness of one curve (one seed).

    The names follow Taori et al., "Measuring Robustness to Natural Distribution Shifts in Image
    Classification" (NeurIPS 2020); the definitions here are on curve areas, as this suite's
    robustness protocols specify.

    The curve is ``clean`` at level 0 followed by ``points`` {level: score}; its area is the
    trapezoid rule over [0, L] (L = the largest level), divided by L.

    * relative robustness = area / (clean × 1): 1 means no degradation;
    * effective robustness = area − area of the reference curve (late fusion) shifted to the
      same clean score, i.e. mean of (score(l) − [ref(l) − ref(0) + clean]) over [0, L]:
      0 means degrading exactly like the reference, > 0 more gracefully. Needs the reference's
      points at the same levels (else None).
    """
    levels = sorted(points)
    if not levels or levels[0] <= 0:
        raise ValueError(f"curve levels must be > 0 (level 0 is the clean score); got {levels}")
    xs = [0.0, *levels]

    def area(c, pts):
        ys = [c, *(pts[x] for x in levels)]
        return sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(levels))) / xs[-1]

    own = area(clean, points)
    rel = own / clean if clean else float("nan")
    if ref_points is None or ref_clean is None or set(ref_points) != set(points):
        return rel, None
    return rel, own - (area(ref_clean, ref_points) - ref_clean + clean)


# ------------------------------------------------------------------------------ Markdown
def column_entries(units: dict[str, UnitScores], methods: list[str], evidence: Evidence, protocol: str,
             metric: str, values=lambda u, p: u.scores.get(p, {})) -> dict[str, Entry]:
    """Each method's :class:`Entry` in the column (``protocol``, ``metric``)."""
    out = {}
    for m in methods:
        u = units[m]
        r0 = u.rows[0]
        out[m] = entry(values(u, protocol),
                       lambda seed, r0=r0: (r0.get("setting"), r0["method"], r0["unit_hash"], seed),
                       evidence, protocol, metric)
    return out


def contributed_methods(data: BoardData) -> set[str]:
    """The board's methods added with ``leaderboard add`` (their rows say ``contributed``)."""
    return {m for m, u in data.units.items() if any(r.get("contributed") for r in u.rows)}


def _unmarked_note(count: int, board: str) -> list[str]:
    if not count:
        return []
    return [f"{count} ranked column(s) carry no marks: the per-sample predictions of some method "
            f"there are not published beside the results (`predictions/{board}/`), or cover "
            "other test samples (re-run the suite to publish them), or the column's metric is "
            "average precision or consistency, not yet resampled.", ""]


@dataclass
class BoardView:
    """What every part of one board reads: its rows per metric, directions and columns."""
    rows: list[dict]
    metrics: list[str]
    per_metric: dict[str, BoardData]
    direction: dict[str, bool]
    shifts: list[str]
    columns: list[tuple[str, str]]

    @classmethod
    def of(cls, rows: list[dict]) -> "BoardView":
        metrics = board_metrics(rows) or ["metric"]
        per_metric = {mt: BoardData.of(metric_rows(rows, mt)) for mt in metrics}
        direction = {mt: next((r["higher_is_better"] for r in rows
                               if r["protocol"] != "train" and r["metric"] == mt), True)
                     for mt in metrics}
        data = per_metric[metrics[0]]
        protocols = data.plain_protocols()
        shifts = [p for p in protocols if data.kinds[p] == "shift"]
        if len(shifts) >= 2:  # several shift sets (VQA-VS's nine): their mean after the last one
            at = protocols.index(shifts[-1]) + 1
            protocols = [*protocols[:at], SHIFT_MEAN, *protocols[at:]]
        columns = [(p, mt) for p in protocols for mt in metrics]
        return cls(rows, metrics, per_metric, direction, shifts, columns)

    @property
    def data(self) -> BoardData:
        """The primary metric's data: robustness sections, settings."""
        return self.per_metric[self.metrics[0]]

    @property
    def first(self) -> dict:
        return next(iter(self.rows))

    def values(self, m: str, p: str, mt: str):
        units = self.per_metric[mt].units
        return list(shift_mean(units[m], self.shifts).values()) if p == SHIFT_MEAN else units[m].score(p)


def main_cells(view: BoardView, evidence: Evidence) -> tuple[dict, int]:
    """The cells of the main table per (protocol, metric), and how many columns carry no marks."""
    cells, unmarked = {}, 0
    units = view.data.units
    untrained = {m for m in view.data.methods if not units[m].ranked}
    for p, mt in view.columns:
        mt_units = view.per_metric[mt].units
        if p == SHIFT_MEAN:  # per seed, the mean over the shift sets; intervals only, no marks
            cells[p, mt], _ = column_cells(
                column_entries(mt_units, view.data.methods, evidence, p, mt,
                               values=lambda u, _p: shift_mean(u, view.shifts)),
                view.direction[mt], ranked=False)
            continue
        cells[p, mt], ok = column_cells(column_entries(mt_units, view.data.methods, evidence, p, mt),
                                        view.direction[mt], unranked=untrained,
                                        contributed=contributed_methods(view.data))
        unmarked += not ok
    return cells, unmarked


def _main_table(view: BoardView, evidence: Evidence) -> tuple[str, int, bool]:
    """(the main table, columns without marks, whether some cell is undefined)."""
    cells, unmarked = main_cells(view, evidence)
    headers = ["Method", "Fusion", "Recipe", "Seeds"]
    headers += [f"{p} {mt} (%) {'↑' if view.direction[mt] else '↓'}" for p, mt in view.columns]
    headers += ["train samples/s", "train s", "epochs run"]
    body, undefined = [], False
    for m in view.data.methods:
        u = view.data.units[m]
        r0 = u.rows[0]
        failed = {r["seed"] for r in u.rows if r["metric"] == "failed"}
        seeds = {r["seed"] for r in u.rows} - failed
        count = f"{len(seeds)} ({len(failed)} failed)" if failed else str(len(seeds))
        line = [f"{r0['label']} (`{m}`)" + (" — contributed" if r0.get("contributed") else ""),
                r0.get("fusion", ""), r0["recipe"], count]
        for p, mt in view.columns:
            undefined = undefined or is_undefined(view.values(m, p, mt))
            line.append(cells[p, mt][m])
        for k in TRAIN_INFO:
            v = u.figure(k) if u.trained else None  # an evaluate-only unit trained nothing
            line.append(f"{statistics.fmean(v):.0f}" if v else "—")
        body.append(line)
    table = tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
    return table, unmarked, undefined


def _preamble(view: BoardView, undefined: bool) -> list[str]:
    first, shifts = view.first, view.shifts
    title_data = first["dataset"] + (" (EMBEDDED data)" if first["data_source"] == "embedded" else "")
    lines = [f"# Leaderboard: `{first['suite']}` suite on {title_data}", ""]
    if first["data_source"] == "embedded":
        lines += [f"> **Embedded data.** These numbers are on `{first['dataset']}` "
                  f"v{first['dataset_version']}, the stand-in that ships with the package, not on "
                  "the real dataset, with the (possibly shortened) schedules listed under Settings; "
                  "they are not comparable with published results.", ""]
    lines += [f"Generated by `python -m i2m2bench leaderboard` from "
              f"`results/{first['board']}.jsonl` and the per-sample predictions in "
              f"`predictions/{first['board']}/`. Do not edit by hand.", "",
              CELLS_NOTE + " " + MARKS_NOTE, ""]
    if len(shifts) >= 2:
        lines += [f"`{SHIFT_MEAN}`: per seed, the mean of the {len(shifts)} shift-set scores "
                  f"({', '.join(f'`{p}`' for p in shifts)}), then over seeds as every cell; no "
                  "marks (each shift set's own column carries them).", ""]
    if undefined:
        lines += ["\"undefined\": the metric has no value on that split for at least one seed "
                  "(e.g. AUROC or average precision of a label whose targets hold one class only); "
                  "such a cell never counts as best.", ""]
    return lines


def schedule_text(t: dict, trained: bool, recipe: str) -> str:
    """A unit's schedule as the Settings column shows it (``t``: its ``train`` settings)."""
    chosen = "".join(f" {k}={t[k]}" for k, default in SHOWN_WHEN_SET
                     if t.get(k, default) != default)  # only when not the default
    if not trained:
        return f"— (no training: recipe `{recipe}`)"
    return (f"{t['optimizer']} lr={t['lr']:g} wd={t['weight_decay']:g} "
            f"batch={t['batch_size']} epochs≤{t['epochs']} "
            f"patience={'none' if t['patience'] is None else t['patience']} "
            f"clip={t['grad_clip']}{chosen}")


def _settings(view: BoardView) -> list[str]:
    """The settings and provenance table, one row per method."""
    units = view.data.units
    prov = []
    for m in view.data.methods:
        rs = units[m].rows
        prov.append([
            f"`{m}`", f"`{rs[0]['unit_hash']}`",
            schedule_text(rs[0]["train"], units[m].trained, rs[0]["recipe"]),
            ", ".join(sorted({r["git_commit"] for r in rs})),
            ", ".join(sorted({machine_of(r) for r in rs})),
            ", ".join(sorted({r["torch_version"] for r in rs})),
            max(r["date"] for r in rs)[:10],
        ])
    return ["", "## Settings and provenance", "",
            tabulate(prov, headers=["Method", "Unit hash", "Schedule", "Commit", "Device",
                                    "torch", "Date"], tablefmt="github", disable_numparse=True)]


#: Where the PoE's share is measured at a dataset's real size, when its board is at another.
FULL_SIZE_SHARE = {
    "vqa_vs": "At VQA-VS's real size (3,129 answers, batch 512, 768-d features, heads 768 → 1536) "
              "the share is measured in [poe_kernel.md](poe_kernel.md#the-poes-share-of-an-i2m2-"
              "training-step-at-vqa-size) (`python -m i2m2bench bench`).",
}


def _contributed_note(view: BoardView) -> list[str]:
    """Who and what produced each contributed method (``leaderboard add``)."""
    units, out = view.data.units, []
    for m in sorted(contributed_methods(view.data)):
        rows = units[m].rows
        plugins = sorted({f"{k} {v}" for r in rows for k, v in (r.get("plugins") or {}).items()
                          if k != "i2m2bench"})
        added = max(str(r.get("contributed")) for r in rows)[:10]
        out.append(f"- `{m}`: added {added}; plugin(s) {', '.join(plugins) or 'none'}; "
                   f"i2m2bench {', '.join(sorted({str(r.get('git_commit')) for r in rows}))} on "
                   f"{', '.join(sorted({machine_of(r) for r in rows}))}.")
    if not out:
        return []
    return ["", "**Contributed results** (`python -m i2m2bench leaderboard add`, "
                "[how](../docs/contributing-results.md)):"
                " run by their contributors on their machines with the suite's settings and "
                "seeds; marked only when their per-sample predictions came along.", "", *out]


def _footer(view: BoardView) -> list[str]:
    """Machines, peak memory, the PoE's share of a step and the robustness protocols' time."""
    units = view.data.units
    every = [r for u in units.values() for r in u.rows]
    lines = machines_note(every)
    lines += _contributed_note(view)
    peaks = [r["value"] for r in every if r["metric"] == "peak_memory_mb"]
    if peaks:
        lines += ["", f"Peak memory of the training process (CPU: resident set; CUDA: allocated), "
                      f"max over units: {max(peaks):.0f} MB."]
    shares = {m: statistics.fmean(v) for m in view.data.methods if (v := units[m].figure("poe_share"))}
    if shares:
        lines += ["", "Share of a training step spent in the product of experts (combining the "
                      "experts and the loss on the combination, forward and backward; measured "
                      "after training on one training batch), mean over seeds: "
                      + ", ".join(f"`{m}` {100 * v:.1f}%" for m, v in shares.items()) + "."]
        datasets = {r.get("dataset") for r in every}
        for d in sorted(datasets & set(FULL_SIZE_SHARE)):
            lines += ["", FULL_SIZE_SHARE[d]]
    robust = sum(r["value"] for r in every if r["metric"] == "robustness_eval_seconds")
    rest = sum(r["value"] for r in every
               if r["metric"] in ("train_seconds", "eval_seconds")) - robust
    if robust and rest > 0:
        lines += ["", f"Time of the robustness protocols, summed over units: {robust:.0f} s, "
                      f"{100 * robust / rest:.1f}% on top of the units' training and test/shift "
                      f"evaluation ({rest:.0f} s; per-epoch validation and start-up are not in "
                      "that sum, so the share of the run's wall time is smaller)."]
    return lines


def render_markdown(rows: list[dict], evidence: Evidence = NO_EVIDENCE) -> str:
    """The leaderboard of one board's rows (pure: same rows and predictions, same text)."""
    if not rows:
        raise ValueError("no result rows to render")
    view = BoardView.of(rows)
    table, unmarked, undefined = _main_table(view, evidence)
    lines = _preamble(view, undefined)
    lines.append(table)
    data = view.data
    hib = view.direction[view.metrics[0]]
    robust, robust_unmarked = robustness_sections(data, hib, view.metrics[0], view.first["board"],
                                                  evidence)
    lines += robust
    if unmarked + robust_unmarked:
        lines += [""] + _unmarked_note(unmarked + robust_unmarked, view.first["board"])[:-1]
    lines += _settings(view)
    lines += _footer(view)
    lines.append("")
    return "\n".join(lines)


def curve_areas(data: BoardData, ref: str) -> dict[tuple[str, str], tuple[list, list]]:
    """(method, curve) -> (relative robustness per seed, effective robustness per seed)."""
    units = data.units
    areas = {}
    for m in data.methods:
        for c, levels in data.curves.items():
            rel, eff = [], []
            for seed, clean in units[m].scores.get("test", {}).items():
                pts = units[m].curve_of_seed(c, seed)
                if set(pts) != levels:
                    continue
                rpts = units[ref].curve_of_seed(c, seed) if ref in units else None
                rclean = units[ref].scores.get("test", {}).get(seed) if ref in units else None
                r_, e_ = area_metrics(clean, pts, rclean, rpts)
                rel.append(r_)
                if e_ is not None:
                    eff.append(e_)
            areas[m, c] = (rel, eff)
    return areas


def seed_interval(values: list[float] | dict[int, float] | None, scale: float, digits: int) -> str:
    """An unranked cell from per-seed values alone (no predictions: Student-t over seeds)."""
    if not values:
        return "—"
    vals = values if isinstance(values, dict) else dict(enumerate(values))
    return interval_text(Entry(vals), scale, digits)


def robustness_sections(data: BoardData, hib: bool, metric: str, board: str,
                        evidence: Evidence = NO_EVIDENCE) -> tuple[list[str], int]:
    """Missing-modality table, curve-area table and one table + plot per curve (if any rows);
    and how many ranked columns could not be marked (no predictions)."""
    units, methods, curves = data.units, data.methods, data.curves
    missing = data.protocols("missing")
    if not missing and not curves:
        return [], 0
    arrow = "↑" if hib else "↓"
    unmarked = 0
    out = ["", "## Robustness", "",
           "Every method is evaluated the same way after training (`suite.protocols`); missing "
           "inputs reach a model only as the availability mask, and each strategy handles them its "
           "own way (PoE models drop the absent modality's experts, inter-only models impute).",
           ""]
    if missing:
        out += ["### Missing modalities", "",
                f"{metric} (%) {arrow} with the modality absent for every test sample; "
                "`test` repeated for reference. Intervals and marks as in the main table.", ""]
        cols = ["test", *missing]
        shown = [m for m in methods if any(units[m].score(p) for p in missing)]
        cells = {}
        for p in cols:
            cells[p], ok = column_cells(column_entries(units, shown, evidence, p, metric), hib,
                                        unranked={m for m in shown if not units[m].ranked},
                                        contributed=contributed_methods(data))
            unmarked += not ok
        body = [[f"`{m}`", *(cells[p][m] for p in cols)] for m in shown]
        out.append(tabulate(body, headers=["Method", *cols], tablefmt="github", disable_numparse=True))
    if curves:
        ref = next((r["reference_method"] for u in units.values() for r in u.rows
                    if r.get("reference_method")), "late_fusion")
        areas = curve_areas(data, ref)
        out += ["", "### Robustness curves: areas", "",
                "Per curve (level 0 = the clean test score): **RR**, relative robustness = "
                "normalised area under the curve / clean score (1 = no degradation); **ER**, "
                f"effective robustness = mean gap (points of {metric} %) to the curve of "
                f"`{ref}` shifted to the method's clean score (0 = degrades like `{ref}`, > 0 "
                "more gracefully). Both per seed from this board's raw curves, then mean ± the "
                "half-width of the 95% Student-t interval over seeds (one seed: the value alone) "
                "(names after Taori et al., NeurIPS 2020). ER compares the shape of the curves, "
                "not their level: a method starting from a lower clean score whose curve ends "
                "near chance, like the reference's, scores a high ER; a method that never reads "
                "the perturbed modality keeps RR = 1. Read ER together with RR and the curve "
                "tables.",
                ""]
        heads, body = ["Method"], []
        for c in sorted(curves):
            heads += [f"{c} RR {arrow}", f"{c} ER {arrow}"]
        for m in methods:
            line = [f"`{m}`"]
            for c in sorted(curves):
                rel, eff = areas[m, c]
                line += [seed_interval(rel, 1.0, 3), seed_interval(eff, 100.0, 2)]
            if any(x != "—" for x in line[1:]):
                body.append(line)
        out.append(tabulate(body, headers=heads, tablefmt="github", disable_numparse=True))
        for c in sorted(curves):
            levels = sorted(curves[c])
            out += ["", f"#### Curve `{c}`", "",
                    f"![{c}]({board}-{curve_slug(c)}.png)", "",
                    f"{metric} (%) {arrow} per level; intervals as in the main table, no marks.", ""]
            protos = ["test", *(data.point_protocol(c, lv) for lv in levels)]
            cols = [column_cells(column_entries(units, methods, evidence, p, metric), hib, ranked=False)[0]
                    if p is not None else {} for p in protos]
            body = []
            for m in methods:
                u = units[m]
                if any(u.point(c, lv) for lv in levels):
                    body.append([f"`{m}`", *(col.get(m, "—") for col in cols)])
            out.append(tabulate(body, headers=["Method", "level 0 (test)", *(f"{lv:g}" for lv in levels)],
                                tablefmt="github", disable_numparse=True))
    return out, unmarked


@LAYOUTS.register("standard")
class StandardLayout(Layout):
    """The standard board (:func:`render_markdown`) and one figure per robustness curve."""

    def markdown(self, rows: list[dict], evidence: Evidence = NO_EVIDENCE) -> str:
        return render_markdown(rows, evidence)

    def figure_bytes(self, rows: list[dict], stem: str) -> dict[str, bytes]:
        return curve_figures(rows, stem)
