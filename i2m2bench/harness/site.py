"""The leaderboard website: ``python -m i2m2bench site --out DIR`` writes a static,
self-contained site built from the result records of a leaderboard folder (never from its
Markdown), with no CDN and nothing fetched at view time.

Pages (all relative links, so the folder can be served from anywhere or opened as files):

* ``index.html`` -- every board: dataset, data source, methods, seeds, dates, machines, commits;
* ``boards/<board>.html`` -- the main table (means, intervals and significance marks, computed
  by the same code as the Markdown board, :mod:`i2m2bench.reporting.board`), the
  missing-modality table, each robustness curve drawn as SVG from the records, the *Across
  machines* view (replica folders, :mod:`i2m2bench.reporting.machines`), and the board's units;
  a board with settings (the dependency spectrum) gets one table and one figure over its
  settings instead;
* ``methods/<method>.html`` -- one method on every board and protocol, with its mark and rank;
* ``units/<board>/<unit>.html`` -- one unit: its scores, settings, data options, numerics,
  commit and plugins, and, where the run published its unit card (``units/`` of the
  leaderboard folder), its operative gin config and training-history curve;
* ``poe.html`` -- the PoE kernel's benchmark records (``bench/poe_kernel.json``).

Tables are plain HTML tables with header cells and captions; marks are shown by weight and a
glyph as well as colour (``▲`` best, ``≈`` tied). The script (:mod:`site_assets`) adds column
sorting, point tooltips and a theme switch; without it every number is still on the page.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from i2m2bench.fileio import write_text_atomic
from i2m2bench.reporting.board import (
    SHIFT_MEAN, BoardView, StandardLayout, column_entries, contributed_methods, curve_areas,
    main_cells, schedule_text, seed_interval)
from i2m2bench.reporting.layouts import layout_of
from i2m2bench.reporting.machines import Side, compare_boards
from i2m2bench.reporting.rows import machine_of
from i2m2bench.reporting.significance import column_cells
from i2m2bench.reporting.site_assets import CSS, JS
from i2m2bench.reporting.site_html import (Cell, card_path, esc, line_chart, mark_cell,
                                           page, poe_page, slug, table, text_cell, unit_html)


# ----------------------------------------------------------------------------- the records
@dataclass
class BoardSite:
    """One board as the site shows it: its rows, main cells and where its pages go."""

    name: str
    rows: list[dict]
    results: Path
    evidence: object
    view: BoardView | None = None
    cells: dict = field(default_factory=dict)  # (protocol, metric) -> {method: cell text}

    @property
    def first(self) -> dict:
        return self.rows[0]

    @property
    def standard(self) -> bool:
        return self.view is not None

    def mean(self, method: str, protocol: str, metric: str) -> float | None:
        """The mean over seeds in percent (a cell's sort key); None without a value or when a
        seed's is undefined (the cell says "undefined", and sorts last)."""
        vals = self.view.values(method, protocol, metric) or []
        if not vals or any(v != v for v in vals):
            return None
        return 100 * statistics.fmean(vals)


def _unit_rows(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r.get("setting"), r["method"], r["unit_hash"], r["seed"]), []).append(r)
    return out


def unit_page(board: str, key: tuple) -> str:
    setting, method, unit_hash, seed = key
    return f"units/{slug(board)}/{slug(method, setting, unit_hash, f'seed{seed}')}.html"


def load_boards(lb_dir: Path) -> list[BoardSite]:
    from i2m2bench.harness.publish import evidence_of, read_board_rows, results_files
    from i2m2bench.harness.store.records import quiet

    boards = []
    for results in results_files(lb_dir):
        rows = read_board_rows(results, report=quiet)
        if not rows:
            continue
        b = BoardSite(results.stem, rows, results, evidence_of(lb_dir, results.stem))
        if isinstance(layout_of(rows, results), StandardLayout):  # one setting at most
            b.view = BoardView.of(rows)
            b.cells, _ = main_cells(b.view, b.evidence)
        boards.append(b)
    return boards


# ----------------------------------------------------------------------------- pages
def _summary(b: BoardSite) -> dict[str, str]:
    rows = b.rows
    return {
        "dataset": b.first["dataset"],
        "source": b.first["data_source"],
        "suite": b.first["suite"],
        "methods": str(len({r["method"] for r in rows})),
        "seeds": ", ".join(str(s) for s in sorted({r["seed"] for r in rows})),
        "dates": " – ".join(sorted({min(r["date"] for r in rows)[:10],
                                    max(r["date"] for r in rows)[:10]})),
        "machines": "; ".join(sorted({machine_of(r) for r in rows})),
        "commits": ", ".join(sorted({str(r.get("git_commit")) for r in rows})),
    }


def index_page(boards: list[BoardSite], has_poe: bool) -> str:
    rows = []
    for b in boards:
        s = _summary(b)
        source = esc(s["source"]) + (' <span class="badge">EMBEDDED</span>'
                                     if s["source"] == "embedded" else "")
        rows.append([Cell(f'<a href="boards/{slug(b.name)}.html">{esc(b.name)}</a>'),
                     text_cell(s["dataset"]), Cell(source), text_cell(s["suite"]),
                     Cell(esc(s["methods"]), float(s["methods"]), "num"), text_cell(s["seeds"]),
                     text_cell(s["dates"]), text_cell(s["machines"]), text_cell(s["commits"])])
    body = ["<p>Every board of this leaderboard folder, built by <code>python -m i2m2bench "
            "site</code> from its result records and the per-sample predictions beside them. "
            "Boards on <strong>EMBEDDED</strong> data are on the stand-in datasets that ship with "
            "the package, not on the real datasets, and are not comparable with published "
            "results.</p>",
            table("Boards", ["Board", "Dataset", "Data source", "Suite", "Methods", "Seeds",
                             "Dates", "Machines", "Commits"], rows, tid="boards"),
            '<p><a href="methods/index.html">Every method on every dataset</a>'
            + (' · <a href="poe.html">PoE kernel benchmarks</a>' if has_poe else "") + "</p>"]
    return page("Leaderboards", "\n".join(body), 0)


def _method_label(b: BoardSite, m: str) -> Cell:
    r0 = b.view.data.units[m].rows[0]
    badge = ' <span class="badge">contributed</span>' if m in contributed_methods(b.view.data) else ""
    return Cell(f'<a href="../methods/{slug(m)}.html">{esc(r0["label"])}</a> '
                f"<code>{esc(m)}</code>{badge}", None)


def _column_title(p: str, mt: str, hib: bool) -> str:
    return f"{p} {mt} (%) {'↑' if hib else '↓'}"


def _main_table(b: BoardSite) -> str:
    v = b.view
    heads = ["Method", "Fusion", "Recipe", "Seeds"] + [
        _column_title(p, mt, v.direction[mt]) for p, mt in v.columns]
    rows = []
    for m in v.data.methods:
        r0 = v.data.units[m].rows[0]
        seeds = sorted({r["seed"] for r in v.data.units[m].rows})
        line = [_method_label(b, m), text_cell(r0.get("fusion", "")), text_cell(r0["recipe"]),
                Cell(esc(len(seeds)), float(len(seeds)), "num")]
        line += [mark_cell(b.cells[p, mt][m], b.mean(m, p, mt)) for p, mt in v.columns]
        rows.append(line)
    return table("Main table: mean over seeds ± half-width of the 95% Student-t interval (one "
                 "seed: the value and its 95% bootstrap interval over test samples); ▲ bold: "
                 "best, ≈ italic: tied for best (paired bootstrap on the per-sample predictions). "
                 "Click a column header to sort.", heads, rows, tid="main")


def _missing_table(b: BoardSite) -> str:
    data, mt = b.view.data, b.view.metrics[0]
    missing = data.protocols("missing")
    if not missing:
        return ""
    hib = b.view.direction[mt]
    shown = [m for m in data.methods if any(data.units[m].score(p) for p in missing)]
    cols = ["test", *missing]
    cells = {p: column_cells(column_entries(data.units, shown, b.evidence, p, mt), hib,
                             unranked={m for m in shown if not data.units[m].ranked},
                             contributed=contributed_methods(data))[0] for p in cols}
    rows = [[_method_label(b, m), *(mark_cell(cells[p][m], b.mean(m, p, mt)) for p in cols)]
            for m in shown]
    return ("<h2>Missing modalities</h2>"
            + table(f"{mt} (%) with the modality absent for every test sample; test repeated "
                    "for reference; marks as in the main table", ["Method", *cols], rows,
                    tid="missing"))


def _curves(b: BoardSite) -> str:
    from i2m2bench.reporting.plots import xlabel

    data, mt = b.view.data, b.view.metrics[0]
    out = []
    for c in sorted(data.curves):
        levels = sorted(data.curves[c])
        series, rows = {}, []
        for m in data.methods:
            u = data.units[m]
            pts = []
            test = u.score("test")
            if test:
                pts.append((0.0, 100 * statistics.fmean(test)))
            for lv in levels:
                vals = u.point(c, lv)
                if vals:
                    pts.append((float(lv), 100 * statistics.fmean(vals)))
            if len(pts) > 1:
                series[m] = pts
                rows.append([text_cell(m)] + [Cell(f"{y:.2f}", y, "num") for _, y in pts])
        if not series:
            continue
        title = f"Curve {c}: {mt} (%), mean over seeds, level 0 = clean test"
        out.append(f"<h3>Curve <code>{esc(c)}</code></h3>")
        out.append(line_chart(title, xlabel(c, b.first), f"{mt} (%)", series))
        out.append(table(f"The points of curve {c} ({mt} %, mean over seeds)",
                         ["Method", "level 0 (test)", *(f"{lv:g}" for lv in levels)], rows))
    return ("<h2>Robustness curves</h2>" + "".join(out)) if out else ""


def _areas(b: BoardSite) -> str:
    """Relative (RR) and effective (ER) robustness per curve, per seed then over seeds, as the
    Markdown board computes them (:func:`~i2m2bench.reporting.board.curve_areas`)."""
    data = b.view.data
    if not data.curves:
        return ""
    ref = next((r["reference_method"] for r in b.rows if r.get("reference_method")), "late_fusion")
    areas, curves = curve_areas(data, ref), sorted(data.curves)
    rows = []
    for m in data.methods:
        line = [text_cell(m)]
        for c in curves:
            rel, eff = areas[m, c]
            line += [Cell(esc(seed_interval(rel, 1.0, 3)), statistics.fmean(rel) if rel else None,
                          "num"),
                     Cell(esc(seed_interval(eff, 100.0, 2)),
                          100 * statistics.fmean(eff) if eff else None, "num")]
        rows.append(line)
    heads = ["Method"] + [f"{c} {k}" for c in curves for k in ("RR", "ER")]
    return table(f"Robustness curves: areas. RR, relative robustness = normalised area under the "
                 f"curve / clean score (1 = no degradation); ER, effective robustness = mean gap "
                 f"(points) to the curve of {ref} shifted to the method's clean score; mean ± "
                 "95% Student-t half-width over seeds (names after Taori et al., NeurIPS 2020)",
                 heads, rows, tid="areas")


def _settings_table(b: BoardSite) -> str:
    """The settings and provenance of each method, as the Markdown board's table."""
    rows = []
    for m in b.view.data.methods:
        u = b.view.data.units[m]
        rs = u.rows
        rows.append([text_cell(m), text_cell(", ".join(sorted({r["unit_hash"] for r in rs}))),
                     text_cell(schedule_text(rs[0]["train"], u.trained, rs[0]["recipe"])),
                     text_cell(", ".join(sorted({str(r["git_commit"]) for r in rs}))),
                     text_cell("; ".join(sorted({machine_of(r) for r in rs}))),
                     text_cell(", ".join(sorted({str(r["torch_version"]) for r in rs}))),
                     text_cell(max(r["date"] for r in rs)[:10])])
    peaks = [r["value"] for r in b.rows if r["metric"] == "peak_memory_mb"]
    note = (f"<p>Peak memory of the training process (CPU: resident set; CUDA: allocated), max "
            f"over units: {max(peaks):.0f} MB.</p>" if peaks else "")
    return ("<h2>Settings and provenance</h2>" + table(
        "Each method's unit hash, schedule, commit, machine, torch and date",
        ["Method", "Unit hash", "Schedule", "Commit", "Device", "torch", "Date"], rows,
        tid="settings") + note)


def _machines(b: BoardSite, lb_dir: Path) -> str:
    from i2m2bench.harness.publish import replicas_of
    from i2m2bench.harness.store.records import quiet

    replicas = replicas_of(lb_dir, b.name, report=quiet)
    if not replicas:
        return ""
    here = Side("this board", b.rows, b.evidence)
    out = ["<h2>Across machines</h2>",
           "<p>The same board re-run on other machines (replica folders "
           "<code>machines/&lt;name&gt;/</code>): per marked column, whether the significance "
           "marks agree, and how far the means moved.</p>"]
    for rep in replicas:
        cmp = compare_boards(here, rep)
        rows = []
        for col in cmp.columns:
            moves = col.moves()
            agree = "yes" if col.agree else ("no" if col.marked else "unmarked")
            rows.append([text_cell(col.title), text_cell(agree),
                         Cell(f"{100 * max(moves.values()):.2f}" if moves else "—",
                              100 * max(moves.values()) if moves else None, "num"),
                         text_cell(", ".join(sorted(col.leading(0))) or "—"),
                         text_cell(", ".join(sorted(col.leading(1))) or "—")])
        out.append(f"<h3>{esc(rep.name)}</h3><p class='muted'>{esc(rep.note)} Machines here: "
                   f"{esc('; '.join(cmp.machines[0]))}; there: {esc('; '.join(cmp.machines[1]))}. "
                   f"{cmp.agreeing} of {len(cmp.columns)} columns agree.</p>")
        out.append(table(f"This board vs {rep.name}", ["Column", "Marks agree",
                                                        "Largest move (points)", "Leaders here",
                                                        "Leaders there"], rows))
    return "".join(out)


def _units_table(b: BoardSite) -> str:
    rows = []
    for key, rs in sorted(_unit_rows(b.rows).items(), key=lambda kv: str(kv[0])):
        setting, method, unit_hash, seed = key
        rows.append([Cell(f'<a href="../{unit_page(b.name, key)}">{esc(method)}</a>'),
                     text_cell(setting if setting is not None else "—"), text_cell(unit_hash),
                     Cell(esc(seed), float(seed), "num"),
                     text_cell(", ".join(sorted({str(r.get("git_commit")) for r in rs}))),
                     text_cell("; ".join(sorted({machine_of(r) for r in rs}))),
                     text_cell(max(r["date"] for r in rs)[:19])])
    return "<h2>Units</h2>" + table("Every unit of the board (method, setting, seed): open one for "
                                    "its settings, numerics and history",
                                    ["Method", "Setting", "Unit hash", "Seed", "Commit",
                                     "Machine", "Date"], rows, tid="units")


def _settings_board(b: BoardSite) -> str:
    """A board with settings (the dependency spectrum): test score per setting and method."""
    test = [r for r in b.rows if r.get("protocol") == "test"]
    metric = test[0]["metric"] if test else "score"
    per: dict[str, dict[str, list[float]]] = {}
    xval: dict[str, float] = {}
    for r in test:
        if r["metric"] != metric:
            continue
        per.setdefault(r["method"], {}).setdefault(r["setting"], []).append(r["value"])
        share = (r.get("task_options") or {}).get("inter_share")
        xval[r["setting"]] = float(share) if isinstance(share, (int, float)) else float(
            len(xval))
    settings = sorted(xval, key=lambda s: xval[s])
    rows, series = [], {}
    for m, by in per.items():
        means = {s: 100 * statistics.fmean(v) for s, v in by.items() if v}
        series[m] = [(xval[s], means[s]) for s in settings if s in means]
        rows.append([text_cell(m)] + [Cell(f"{means[s]:.2f}" if s in means else "—",
                                           means.get(s), "num") for s in settings])
    xlabel = "share of the label carried by the inter-modality dependency (inter_share)"
    return (line_chart(f"Test {metric} (%) per setting, mean over seeds", xlabel,
                       f"{metric} (%)", series)
            + table(f"Test {metric} (%) per setting, mean over seeds", ["Method", *settings],
                    rows, tid="main"))


def board_page(b: BoardSite, lb_dir: Path) -> str:
    s = _summary(b)
    body = []
    if s["source"] == "embedded":
        body.append('<p class="notice"><strong>Embedded data.</strong> These numbers are on the '
                    f"stand-in <code>{esc(s['dataset'])}</code> that ships with the package, not on "
                    "the real dataset, with shortened schedules; they are not comparable with "
                    "published results.</p>")
    body.append("<p>" + " · ".join(f"<strong>{esc(k)}</strong>: {esc(v)}" for k, v in s.items())
                + f" · records: <code>results/{esc(b.name)}.jsonl</code></p>")
    if b.standard:
        body += [_main_table(b), _missing_table(b), _curves(b), _areas(b), _settings_table(b),
                 _machines(b, lb_dir)]
    else:
        body.append(_settings_board(b))
    body.append(_units_table(b))
    return page(f"Board {b.name}", "\n".join(x for x in body if x), 1)


def method_pages(boards: list[BoardSite]) -> dict[str, str]:
    """method -> its page: every board and plain protocol it was scored on."""
    per: dict[str, list[list[Cell]]] = {}
    for b in boards:
        if not b.standard:
            continue
        v = b.view
        for p, mt in v.columns:
            means = {m: b.mean(m, p, mt) for m in v.data.methods}
            ranked = sorted((x for x in means.values() if x is not None),
                            reverse=v.direction[mt])
            for m in v.data.methods:
                mean = means[m]
                rank = ranked.index(mean) + 1 if mean is not None else None
                per.setdefault(m, []).append([
                    Cell(f'<a href="../boards/{slug(b.name)}.html">{esc(b.name)}</a>'),
                    text_cell(b.first["dataset"]), text_cell(b.first["data_source"]),
                    text_cell(p if p != SHIFT_MEAN else "mean over shift sets"),
                    text_cell(f"{mt} {'↑' if v.direction[mt] else '↓'}"),
                    mark_cell(b.cells[p, mt][m], mean),
                    Cell(f"{rank} of {len(ranked)}" if rank else "—", rank, "num")])
    pages = {}
    for m, rows in per.items():
        pages[m] = page(f"Method {m}", table(
            f"{m} on every board and protocol: its cell as on the board (▲ best, ≈ tied) and its "
            "rank by mean among the board's methods", ["Board", "Dataset", "Data source",
                                                      "Protocol", "Metric", "Score (%)", "Rank"],
            rows, tid="method"), 1)
    links = [[Cell(f'<a href="{slug(m)}.html">{esc(m)}</a>'),
              Cell(esc(len({r[0].html for r in rows})), float(len({r[0].html for r in rows})),
                   "num")] for m, rows in sorted(per.items())]
    pages[""] = page("Methods", table("Every method, and on how many boards it is scored",
                                      ["Method", "Boards"], links, tid="methods"), 1)
    return pages


def build_site(lb_dir: Path, out: Path) -> list[Path]:
    """Write the site of the leaderboard folder ``lb_dir`` into ``out``; the files written."""
    lb_dir, out = Path(lb_dir), Path(out)
    if not (lb_dir / "results").is_dir():
        raise FileNotFoundError(f"{lb_dir}: no results/ folder here; name the leaderboard folder "
                                "(the one that holds results/*.jsonl) with --leaderboard-dir")
    boards = load_boards(lb_dir)
    files: dict[str, str] = {"assets/site.css": CSS, "assets/site.js": JS}
    poe = poe_page(lb_dir)
    if poe:
        files["poe.html"] = poe
    files["index.html"] = index_page(boards, poe is not None)
    for b in boards:
        files[f"boards/{slug(b.name)}.html"] = board_page(b, lb_dir)
        for key, rows in _unit_rows(b.rows).items():
            card = card_path(lb_dir, b.name, key)
            files[unit_page(b.name, key)] = unit_html(
                b.name, key, rows, json.loads(card.read_text()) if card.is_file() else None)
    for m, text in method_pages(boards).items():
        files[f"methods/{slug(m) if m else 'index'}.html"] = text
    written = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
        written.append(path)
    return written


__all__ = ["build_site", "card_path", "line_chart", "load_boards"]
