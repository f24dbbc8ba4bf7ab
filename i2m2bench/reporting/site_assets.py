"""The leaderboard website's stylesheet and script (:mod:`i2m2bench.reporting.site`), shipped as
text so that the site needs nothing outside the package and nothing from the network.

The script only adds to pages that are complete without it: sorting a table by a click on a
column header (numbers by the ``data-sort`` value of each cell, text otherwise; a second click
reverses), a tooltip that shows a curve point's value on hover or keyboard focus (the same text
is the point's SVG ``<title>`` without the script), and a light/dark switch (the default follows
the reader's system setting).
"""

CSS = """\
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1b1b1f; --muted: #5b5b66; --line: #d5d5dc;
  --head: #f1f1f5; --link: #0b57d0; --best: #0b6b2e; --tied: #6b4e00; --accent: #b3261e; }
:root[data-theme="dark"] { --bg: #16161a; --fg: #ececf1; --muted: #a9a9b5; --line: #3a3a44;
  --head: #22222a; --link: #8ab4f8; --best: #7ee2a1; --tied: #f2cc6b; --accent: #f28b82; }
@media (prefers-color-scheme: dark) { :root:not([data-theme="light"]) { --bg: #16161a;
  --fg: #ececf1; --muted: #a9a9b5; --line: #3a3a44; --head: #22222a; --link: #8ab4f8;
  --best: #7ee2a1; --tied: #f2cc6b; --accent: #f28b82; } }
body { background: var(--bg); color: var(--fg); font: 15px/1.5 system-ui, sans-serif; margin: 0; }
header.top { border-bottom: 1px solid var(--line); padding: .5rem 1.5rem; display: flex;
  gap: 1.5rem; align-items: center; flex-wrap: wrap; }
header.top a { color: var(--fg); text-decoration: none; font-weight: 600; }
main { padding: 1rem 1.5rem 3rem; max-width: 110rem; }
a { color: var(--link); }
.muted, figcaption, caption { color: var(--muted); }
.notice { border-left: 4px solid var(--accent); padding: .25rem .75rem; background: var(--head); }
.table-wrap { overflow-x: auto; margin: .5rem 0 1.5rem; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
caption { text-align: left; padding: .25rem 0; caption-side: top; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; text-align: left;
  vertical-align: top; }
thead th { background: var(--head); position: sticky; top: 0; }
th[data-sortable] { cursor: pointer; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.num { text-align: right; white-space: nowrap; }
.best { color: var(--best); font-weight: 700; }
.tied { color: var(--tied); font-style: italic; }
.badge { font-size: .75rem; border: 1px solid var(--accent); color: var(--accent);
  border-radius: .5rem; padding: 0 .35rem; margin-left: .35rem; white-space: nowrap; }
figure { margin: 1rem 0 2rem; }
svg.chart { background: var(--bg); max-width: 100%; height: auto; }
svg.chart text { fill: var(--fg); font-size: 12px; }
svg.chart .axis { stroke: var(--muted); }
svg.chart .grid { stroke: var(--line); }
svg.chart circle { cursor: crosshair; }
svg.chart circle:focus { outline: 2px solid var(--link); }
.tooltip { position: absolute; pointer-events: none; background: var(--head); color: var(--fg);
  border: 1px solid var(--line); padding: .15rem .4rem; border-radius: .25rem; font-size: 13px; }
pre { background: var(--head); padding: .75rem; overflow-x: auto; font-size: 13px; }
button.theme { margin-left: auto; background: var(--head); color: var(--fg);
  border: 1px solid var(--line); border-radius: .25rem; padding: .15rem .6rem; cursor: pointer; }
"""

JS = """\
(function () {
  "use strict";
  var root = document.documentElement;
  var saved = null;
  try { saved = localStorage.getItem("i2m2bench-theme"); } catch (e) { saved = null; }
  if (saved) { root.setAttribute("data-theme", saved); }

  function sortValue(cell) {
    var v = cell.getAttribute("data-sort");
    if (v === null) { return cell.textContent.trim().toLowerCase(); }
    var n = parseFloat(v);
    return isNaN(n) ? null : n;
  }

  function compare(a, b, dir) {
    if (a === b) { return 0; }
    if (a === null) { return 1; }   // cells without a value go last, either way
    if (b === null) { return -1; }
    if (typeof a === "number" && typeof b === "number") { return dir * (a - b); }
    return dir * String(a).localeCompare(String(b));
  }

  function sortBy(table, index, header) {
    var body = table.tBodies[0];
    var dir = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) {
      return { row: row, key: sortValue(row.cells[index]), i: i };
    });
    keyed.sort(function (x, y) { return compare(x.key, y.key, dir) || x.i - y.i; });
    keyed.forEach(function (k) { body.appendChild(k.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.setAttribute("data-sortable", "");
      th.setAttribute("tabindex", "0");
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, index, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, index, th); }
      });
    });
  });

  var tip = document.createElement("div");
  tip.className = "tooltip";
  tip.id = "tooltip";
  tip.setAttribute("role", "status");
  tip.hidden = true;
  document.body.appendChild(tip);
  function show(point) {
    var box = point.getBoundingClientRect();
    tip.textContent = point.getAttribute("data-label");
    tip.hidden = false;
    tip.style.left = (window.scrollX + box.right + 6) + "px";
    tip.style.top = (window.scrollY + box.top - 28) + "px";
  }
  function hide() { tip.hidden = true; }
  Array.prototype.forEach.call(document.querySelectorAll("svg.chart circle[data-label]"),
    function (point) {
      point.addEventListener("mouseenter", function () { show(point); });
      point.addEventListener("focus", function () { show(point); });
      point.addEventListener("mouseleave", hide);
      point.addEventListener("blur", hide);
    });

  var button = document.querySelector("button.theme");
  if (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var dark = root.getAttribute("data-theme") === "dark" ||
        (!root.getAttribute("data-theme") &&
         window.matchMedia("(prefers-color-scheme: dark)").matches);
      var next = dark ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { localStorage.setItem("i2m2bench-theme", next); } catch (e) { /* private mode */ }
    });
  }
}());
"""
