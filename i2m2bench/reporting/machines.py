"""One board made on two machines: how far its numbers move and whether its marks hold.

The same unit hash on two machines names the same settings, not the same numbers (README,
Reproducibility): another CPU's kernels, another thread count or a GPU reorder floating-point
reductions, and training drifts apart. :func:`compare_boards` sets two renders of one board side
by side -- two sets of rows with the per-sample predictions behind them -- over the methods both
have (those whose latest units differ in hash, i.e. in settings or in the code that defines
them, are named: read their moves with that in mind), and, column by column (every column the standard board
marks: its plain protocols for each declared metric, and the missing-modality columns for the
primary metric), gives each machine's means and marks, computed exactly as the board computes
them (:func:`i2m2bench.reporting.significance.column_marks`) but over the compared methods only.

Two places use it:

* ``python -m i2m2bench compare FIRST SECOND`` (:func:`comparison_text`): your run of a suite
  against the committed board; exit 1 when some column's marks differ.
* A board's **Across machines** section (:func:`machines_section`), rendered when its leaderboard
  folder holds the same board made elsewhere under ``machines/<name>/`` (a leaderboard folder of
  its own: results and predictions, written by ``run --leaderboard-dir
  leaderboards/machines/<name>``): the spread of every compared cell, and for every marked
  column the **leading group on every machine** (methods marked best or tied on all of them:
  the conclusion that survived the change of machine) and the methods **at the edge** (in the
  leading group on some machines only).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from tabulate import tabulate

from i2m2bench.reporting.board import column_entries
from i2m2bench.reporting.rows import board_metrics, has_settings, machine_of, metric_rows
from i2m2bench.reporting.scores import BoardData
from i2m2bench.reporting.significance import Evidence, column_marks


@dataclass(frozen=True)
class Side:
    """One render of a board: a name (a folder, a machine), its rows and their predictions."""

    name: str
    rows: list[dict]
    evidence: Evidence
    note: str = ""  # how this machine's rows were made (a replica folder's machine.json)


@dataclass
class ColumnCheck:
    """One marked column on two machines, over the compared methods."""

    protocol: str
    metric: str
    means: tuple[dict[str, float], dict[str, float]]  # method -> mean (fraction), per side
    marks: tuple[dict[str, str] | None, dict[str, str] | None]  # None: that side cannot mark it

    @property
    def title(self) -> str:
        return f"{self.protocol} {self.metric}"

    def leading(self, side: int) -> set[str]:
        """The methods marked best or tied on ``side`` (empty when it is not marked)."""
        return set(self.marks[side] or {})

    @property
    def marked(self) -> bool:
        return self.marks[0] is not None and self.marks[1] is not None

    @property
    def agree(self) -> bool:
        """Same marks (best and tied) for every compared method on both machines."""
        return self.marked and self.marks[0] == self.marks[1]

    def moves(self) -> dict[str, float]:
        """method -> |mean on the second − mean on the first|, for methods with both."""
        a, b = self.means
        return {m: abs(b[m] - a[m]) for m in a if m in b}


@dataclass
class BoardComparison:
    """A board on two machines (:func:`compare_boards`)."""

    sides: tuple[Side, Side]
    machines: tuple[list[str], list[str]]  # the machines of each side's latest units
    compared: list[str]  # methods on both sides, board order
    other_hash: list[str] = field(default_factory=list)  # compared, but their unit hashes differ
    one_side: list[str] = field(default_factory=list)  # on one side only
    columns: list[ColumnCheck] = field(default_factory=list)

    @property
    def agreeing(self) -> int:
        return sum(c.agree for c in self.columns)

    def moves(self) -> list[float]:
        return [d for c in self.columns for d in c.moves().values()]

    def column(self, protocol: str, metric: str) -> ColumnCheck | None:
        return next((c for c in self.columns if (c.protocol, c.metric) == (protocol, metric)), None)


def _columns(data: dict[str, BoardData], metrics: list[str]) -> list[tuple[str, str]]:
    """The marked columns of the standard board: plain protocols x metrics, then the
    missing-modality protocols for the primary metric."""
    primary = data[metrics[0]]
    cols = [(p, mt) for p in primary.plain_protocols() for mt in metrics]
    return cols + [(p, metrics[0]) for p in primary.protocols("missing")]


def compare_boards(first: Side, second: Side) -> BoardComparison:
    """The board of ``first`` beside the board of ``second`` (see the module docstring).

    ``ValueError`` when either side has no rows, or rows from several settings (boards such
    as the dependency spectrum, which this comparison does not cover)."""
    for side in (first, second):
        if not side.rows:
            raise ValueError(f"{side.name}: no result rows to compare")
        if has_settings(side.rows):
            raise ValueError(f"{side.name}: a board with settings (rows with a 'setting' field) "
                             "cannot be compared machine against machine yet")
    metrics = board_metrics(first.rows) or ["accuracy"]
    data = [{mt: BoardData.of(metric_rows(s.rows, mt)) for mt in metrics} for s in (first, second)]
    units = [d[metrics[0]].units for d in data]
    compared = [m for m in data[0][metrics[0]].methods if m in units[1]]
    out = BoardComparison(
        (first, second),
        tuple(sorted({machine_of(r) for u in us.values() for r in u.rows})  # latest units only
              for us in units),
        compared,
        other_hash=[m for m in compared
                    if units[0][m].rows[0]["unit_hash"] != units[1][m].rows[0]["unit_hash"]],
        one_side=sorted(set(units[0]) ^ set(units[1])))
    for p, mt in _columns(data[0], metrics):
        means, marks = [], []
        for side, d in zip((first, second), data):
            present = [m for m in compared if m in d[mt].units and d[mt].units[m].scores.get(p)]
            entries = column_entries(d[mt].units, present, side.evidence, p, mt)
            hib = next((r["higher_is_better"] for r in side.rows
                        if r["protocol"] != "train" and r["metric"] == mt), True)
            means.append({m: e.mean for m, e in entries.items() if not e.undefined})
            competing = {m: e for m, e in entries.items() if d[mt].units[m].trained}
            marks.append(column_marks(competing, hib) if competing else {})
        if means[0] or means[1]:
            out.columns.append(ColumnCheck(p, mt, (means[0], means[1]), (marks[0], marks[1])))
    return out


def _mark(marks: dict[str, str] | None, method: str) -> str:
    if marks is None:
        return "(unmarked)"
    return {"best": "best", "tied": "tied"}.get(marks.get(method, ""), "")


def comparison_text(cmp: BoardComparison) -> str:
    """The console report of ``compare``: what was compared, then per column whether the marks
    agree, each machine's marks and every method's means (percent), and a last line counting
    the columns that agree."""
    a, b = cmp.sides
    lines = [f"first:  {a.name} ({'; '.join(cmp.machines[0])})",
             f"second: {b.name} ({'; '.join(cmp.machines[1])})",
             f"compared: {len(cmp.compared)} method(s) on both"]
    if cmp.other_hash:
        lines.append("compared, but their unit hashes differ (other settings, or other code): "
                     + ", ".join(cmp.other_hash))
    if cmp.one_side:
        lines.append("not compared, on one side only: " + ", ".join(cmp.one_side))
    for c in cmp.columns:
        state = "SAME" if c.agree else "DIFFERENT" if c.marked else "UNMARKED (no predictions)"
        lines.append(f"{c.title}: {state}")
        for tag, i in (("first", 0), ("second", 1)):
            if c.marks[i] is not None:
                best = sorted(m for m, k in c.marks[i].items() if k == "best")
                tied = sorted(m for m, k in c.marks[i].items() if k == "tied")
                lines.append(f"   {tag:6s} best={best} tied={tied}")
        for m in cmp.compared:
            va, vb = c.means[0].get(m), c.means[1].get(m)
            if va is None and vb is None:
                continue
            fa = "—" if va is None else f"{100 * va:.2f}"
            fb = "—" if vb is None else f"{100 * vb:.2f}"
            lines.append(f"      {m:28s} {fa:>7s} {_mark(c.marks[0], m):>5s}   "
                         f"{fb:>7s} {_mark(c.marks[1], m):>5s}")
    moves = cmp.moves()
    if moves:
        lines.append(f"means move by {100 * statistics.fmean(moves):.2f} points on average "
                     f"(max {100 * max(moves):.2f}) over {len(moves)} cells")
    marked = sum(c.marked for c in cmp.columns)
    lines.append(f"{cmp.agreeing} of {marked} marked columns agree")
    return "\n".join(lines) + "\n"


def _names(methods) -> str:
    return ", ".join(f"`{m}`" for m in sorted(methods)) or "—"


def machines_section(board: Side, replicas: list[Side]) -> list[str]:
    """The Markdown of a board's **Across machines** section (no lines without replicas): per
    replica, what was compared; a table of each compared cell on every machine; and per marked
    column the leading group on every machine and the methods at its edge."""
    if not replicas:
        return []
    cmps = [compare_boards(board, r) for r in replicas]
    lines = ["", "## Across machines", "",
             "The same board made on other machines, "
             "from `machines/<name>/` in this folder (results and predictions of "
             "`run --leaderboard-dir <this folder>/machines/<name>`). A unit hash names the "
             "settings, not the numbers: other floating-point kernels, thread counts or GPUs "
             "drift training apart (README, Reproducibility). Marks on each machine as in the "
             "main table, over the compared methods; compare your own run with `python -m "
             "i2m2bench compare`.", ""]
    here = "; ".join(cmps[0].machines[0])
    lines.append(f"* **this board** — {here}")
    for r, c in zip(replicas, cmps):
        forced = any("(forced:" in m for m in c.machines[1])
        note = r.note or ("**simulated** — kernels forced on another CPU (see its numerics)"
                          if forced else "")
        lines.append(f"* **`{r.name}`** — {'; '.join(c.machines[1])}"
                     + (f" ({note})" if note else "") + f": {len(c.compared)} "
                     f"method(s) compared"
                     + (f" ({_names(c.other_hash)} with another unit hash: other settings or "
                        "code)" if c.other_hash else ", every unit hash the same")
                     + (f"; on one side only: {_names(c.one_side)}" if c.one_side else ""))
        moves = c.moves()
        if moves:
            lines[-1] += (f"; means move by {100 * statistics.fmean(moves):.2f} points on average, "
                          f"{100 * max(moves):.2f} at most; marks agree in {c.agreeing} of "
                          f"{sum(k.marked for k in c.columns)} marked columns")
    lines += ["", "Each compared cell on this board / on each other machine (mean, %; *≈*/**bold** "
                  "as marked on that machine):", ""]
    columns = cmps[0].columns
    methods = [m for m in cmps[0].compared if all(m in c.compared for c in cmps)]
    body = []
    for m in methods:
        line = [f"`{m}`"]
        for j, col in enumerate(columns):
            cells = []
            for i, c in enumerate(cmps):
                other = c.column(col.protocol, col.metric)
                if i == 0:
                    cells.append(_cell(col.means[0].get(m), (col.marks[0] or {}).get(m)))
                cells.append(_cell(other.means[1].get(m) if other else None,
                                   ((other.marks[1] if other else None) or {}).get(m)))
            line.append(" / ".join(cells))
        body.append(line)
    lines.append(tabulate(body, headers=["Method", *(c.title for c in columns)],
                          tablefmt="github", disable_numparse=True))
    lines += ["", "Per marked column: the **leading group on every machine** (best or tied on "
                  "each: the conclusion that survived the change of machine) and the methods "
                  "**at the edge** (in the leading group on some machines only: read them as "
                  "\"not shown to differ\", on any machine).", ""]
    rows = []
    for col in columns:
        groups = [col.leading(0)]
        marked = col.marks[0] is not None
        for c in cmps:
            other = c.column(col.protocol, col.metric)
            marked = marked and other is not None and other.marks[1] is not None
            groups.append(other.leading(1) if other else set())
        if not marked:
            rows.append([col.title, "(not marked on every machine)", ""])
            continue
        every = set.intersection(*groups)
        edge = set.union(*groups) - every
        rows.append([col.title, _names(every), _names(edge)])
    lines.append(tabulate(rows, headers=["Column", "Leading on every machine", "At the edge"],
                          tablefmt="github", disable_numparse=True))
    return lines


def _cell(mean: float | None, mark: str | None) -> str:
    if mean is None:
        return "—"
    text = f"{100 * mean:.2f}"
    return f"**{text}**" if mark == "best" else f"*≈ {text}*" if mark == "tied" else text


__all__ = ["BoardComparison", "ColumnCheck", "Side", "compare_boards", "comparison_text",
           "machines_section"]
