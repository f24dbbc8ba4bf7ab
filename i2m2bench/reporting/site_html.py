"""The HTML pieces of the leaderboard website (:mod:`i2m2bench.harness.site`): escaping, tables
with captions and header cells, the page frame, SVG line charts, and where a unit card lives."""
from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

CARDS = "units"  # <leaderboard dir>/units/<board>/<unit>.json: operative config + history
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22"]


# ----------------------------------------------------------------------------- HTML pieces
def esc(x) -> str:
    return html.escape(str(x), quote=True)


def slug(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(p) for p in parts if p is not None))


@dataclass
class Cell:
    """One table cell: its HTML, its sort value (None: sorts by text) and CSS class."""

    html: str
    sort: float | None = None
    cls: str = ""


def text_cell(text) -> Cell:
    return Cell(esc(text))


def mark_cell(text: str, mean: float | None) -> Cell:
    """A board cell (``**x**`` best, ``*≈ x*`` tied, as :func:`significance.marked` writes it)
    as HTML, sorting by ``mean``."""
    if text.startswith("**") and text.endswith("**"):
        body = f'<strong class="best">{esc(text[2:-2])} ▲</strong>'
    elif text.startswith("*≈ ") and text.endswith("*"):
        body = f'<em class="tied">≈ {esc(text[3:-1])}</em>'
    else:
        body = esc(text)
    return Cell(body, mean, "num")


def table(caption: str, headers: list[str], rows: list[list[Cell]], *, sortable: bool = True,
          row_headers: bool = True, tid: str = "") -> str:
    """A table with a caption, column header cells and (``row_headers``) the first cell of each
    row as its row header; ``sortable``: the script sorts it by any column."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            tag = "th" if (i == 0 and row_headers) else "td"
            attrs = (' scope="row"' if tag == "th" else "") + (
                f' class="{c.cls}"' if c.cls else "") + (
                f' data-sort="{c.sort!r}"' if c.sort is not None and math.isfinite(c.sort) else
                (' data-sort=""' if c.cls == "num" else ""))
            cells.append(f"<{tag}{attrs}>{c.html}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = ' class="sortable"' if sortable else ""
    ident = f' id="{esc(tid)}"' if tid else ""
    return (f'<div class="table-wrap"><table{cls}{ident}><caption>{esc(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def page(title: str, body: str, depth: int) -> str:
    up = "../" * depth
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · i2m2bench</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{up}assets/site.css">
</head>
<body>
<header class="top"><a href="{up}index.html">i2m2bench leaderboards</a>
<a href="{up}methods/index.html">Methods</a><a href="{up}poe.html">PoE kernel</a>
<button class="theme" type="button" hidden>Light / dark</button></header>
<main>
<h1>{esc(title)}</h1>
{body}
</main>
<script src="{up}assets/site.js"></script>
</body>
</html>
"""


def line_chart(title: str, xlabel: str, ylabel: str, series: dict[str, list[tuple[float, float]]],
               fmt=lambda y: f"{y:.2f}") -> str:
    """An SVG line chart of ``series`` (name -> [(x, y)]), each line labelled at its end (colour is
    never the only signal), each point a focusable circle whose value the tooltip (and, without
    the script, its ``<title>``) shows."""
    pts = [p for s in series.values() for p in s if math.isfinite(p[1])]
    if not pts:
        return ""
    w, h, left, right, top, bottom = 720, 360, 60, 170, 20, 45
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    pad = (y1 - y0) * 0.08 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def sx(x):
        return left + (x - x0) / (x1 - x0) * (w - left - right)

    def sy(y):
        return top + (y1 - y) / (y1 - y0) * (h - top - bottom)

    out = [f'<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           f'aria-label="{esc(title)}">']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        out.append(f'<line class="grid" x1="{left}" x2="{w - right}" y1="{sy(yv):.1f}" '
                   f'y2="{sy(yv):.1f}"/><text x="{left - 6}" y="{sy(yv) + 4:.1f}" '
                   f'text-anchor="end">{esc(fmt(yv))}</text>')
    for xv in sorted(set(xs)):
        out.append(f'<text x="{sx(xv):.1f}" y="{h - bottom + 16}" text-anchor="middle">'
                   f"{esc(f'{xv:g}')}</text>")
    out.append(f'<line class="axis" x1="{left}" x2="{w - right}" y1="{h - bottom}" '
               f'y2="{h - bottom}"/><line class="axis" x1="{left}" x2="{left}" y1="{top}" '
               f'y2="{h - bottom}"/>')
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 8}" text-anchor="middle">'
               f"{esc(xlabel)}</text>")
    out.append(f'<text transform="translate(14 {(top + h - bottom) / 2}) rotate(-90)" '
               f'text-anchor="middle">{esc(ylabel)}</text>')
    for i, (name, s) in enumerate(series.items()):
        s = [p for p in sorted(s) if math.isfinite(p[1])]
        if not s:
            continue
        colour = PALETTE[i % len(PALETTE)]
        dash = "" if i < len(PALETTE) else ' stroke-dasharray="6 3"'
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        out.append(f'<g><polyline fill="none" stroke="{colour}" stroke-width="2"{dash} '
                   f'points="{path}"/>')
        for x, y in s:
            label = f"{name} at {x:g}: {fmt(y)}"
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{colour}" '
                       f'tabindex="0" data-label="{esc(label)}"><title>{esc(label)}</title>'
                       "</circle>")
        lx, ly = s[-1]
        out.append(f'<text x="{sx(lx) + 8:.1f}" y="{sy(ly) + 4:.1f}">{esc(name)}</text></g>')
    out.append("</svg>")
    return (f'<figure><figcaption>{esc(title)}</figcaption>{"".join(out)}</figure>')



def card_path(lb_dir: Path, board: str, key: tuple) -> Path:
    """Where a run publishes a unit's card (operative config, history) in the leaderboard folder."""
    setting, method, unit_hash, seed = key
    return Path(lb_dir) / CARDS / slug(board) / f"{slug(method, setting, unit_hash, f'seed{seed}')}.json"


def unit_html(board: str, key: tuple, rows: list[dict], card: dict | None) -> str:
    setting, method, unit_hash, seed = key
    r0 = rows[0]
    scores = [[text_cell(r["protocol"]), text_cell(r["metric"]),
               Cell(f"{r['value']:.6g}" if isinstance(r["value"], (int, float)) else esc(r["value"]),
                    r["value"] if isinstance(r["value"], (int, float)) else None, "num")]
              for r in rows]
    facts = {"board": board, "method": method, "label": r0.get("label"), "setting": setting,
             "seed": seed, "unit hash": unit_hash, "config hash": r0.get("config_hash"),
             "fusion": r0.get("fusion"), "recipe": r0.get("recipe"),
             "commit": ", ".join(sorted({str(r.get("git_commit")) for r in rows})),
             "device": r0.get("device"), "torch": r0.get("torch_version"),
             "python": r0.get("python_version"), "date": max(r["date"] for r in rows),
             "contributed": r0.get("contributed") or "no"}
    body = [f'<p><a href="../../boards/{slug(board)}.html">Back to the board</a></p>',
            table("Unit", ["Field", "Value"],
                  [[text_cell(k), text_cell(v)] for k, v in facts.items()], sortable=False)]
    for title, obj in (("Numerics", r0.get("numerics")), ("Plugins", r0.get("plugins")),
                       ("Training settings", r0.get("train")),
                       ("Data options (task_options; the data checksum among them)",
                        r0.get("task_options"))):
        if isinstance(obj, dict) and obj:
            body.append(table(title, ["Field", "Value"],
                              [[text_cell(k), text_cell(json.dumps(v))] for k, v in obj.items()],
                              sortable=False))
    body.append(table("Scores and training figures of this unit", ["Protocol", "Metric", "Value"],
                      scores))
    if card:
        hist = card.get("history") or []
        series = {"validation": [(float(h["epoch"]), float(h["val"])) for h in hist
                                 if isinstance(h.get("val"), (int, float))],
                  "training loss": [(float(h["epoch"]), float(h["train_loss"])) for h in hist
                                    if isinstance(h.get("train_loss"), (int, float))]}
        for name, s in series.items():
            if s:
                body.append(line_chart(f"Training history: {name} per epoch", "epoch", name,
                                       {name: s}, fmt=lambda y: f"{y:.4g}"))
        body.append("<h2>Operative gin config</h2><pre>"
                    + esc(card.get("operative_config", "")) + "</pre>")
    else:
        body.append("<p class='muted'>No unit card was published for this unit (its run predates "
                    "unit cards, or the leaderboard folder does not hold "
                    f"<code>{CARDS}/</code>): the operative gin config and the training history "
                    "are in the run folder that trained it (<code>operative_config.gin</code>, "
                    "<code>unit.json</code>).</p>")
    return page(f"Unit {method} seed {seed} ({board})", "\n".join(body), 2)


def poe_page(lb_dir: Path) -> str | None:
    path = Path(lb_dir) / "bench" / "poe_kernel.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    rows = []
    for bm in data.get("benchmarks", []):
        ex, st = bm.get("extra_info", {}), bm.get("stats", {})
        med = st.get("median")
        rows.append([text_cell(bm.get("group", "")), text_cell(ex.get("backend", "")),
                     text_cell(ex.get("mode", "")),
                     Cell(f"{1e3 * med:.4g}" if med else "—", 1e3 * med if med else None, "num"),
                     Cell(f"{ex['gbps']:.3g}" if "gbps" in ex else "—", ex.get("gbps"), "num"),
                     Cell(f"{100 * ex['frac_roofline']:.1f}" if "frac_roofline" in ex else "—",
                          ex.get("frac_roofline"), "num"),
                     text_cell(ex.get("commit", (data.get("commit_info") or {}).get("id", ""))[:12])])
    mi = data.get("machine_info", {})
    body = (f"<p>Records of <code>bench/poe_kernel.json</code> (pytest-benchmark), measured "
            f"{esc(data.get('datetime', ''))} on {esc(mi.get('cpu', {}).get('brand_raw', mi.get('processor', '')))}"
            ". The Markdown table with the targets and the roofline is "
            "<code>poe_kernel.md</code>.</p>"
            + table("Every PoE kernel timing: median time, achieved bandwidth and share of the "
                    "memory roofline", ["Benchmark", "Backend", "Mode", "Median (ms)", "GB/s",
                                        "Roofline (%)", "Commit"], rows, tid="poe"))
    return page("PoE kernel benchmarks", body, 0)
