"""Compare the significance marks of one board rendered from two leaderboard folders -- e.g. the
committed run on this CPU's default kernels against a re-run of the same command with
``ATEN_CPU_CAPABILITY=avx2`` -- column by column, as the Markdown shows them.

    python scripts/compare_marks.py leaderboards /tmp/avx2/lb [--board avmnist-embedded-avdigits]

Prints, for every table column that carries marks in either folder, the methods marked best
(**bold**) and tied (*≈ italic*) in each, whether they agree, and each method's cell; exits 1 when
some column's marks differ.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def tables(md: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header, rows) of every Markdown table of a board, above its settings section."""
    out, lines = [], md.split("## Settings")[0].splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|--"):
            head = [c.strip() for c in lines[i].strip("|").split("|")]
            body, i = [], i + 2
            while i < len(lines) and lines[i].startswith("| "):
                body.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            out.append((head, body))
        else:
            i += 1
    return out


def method_of(cell: str) -> str:
    found = re.findall(r"`([^`]+)`", cell)
    return found[-1] if found else cell


def marks(md: str) -> dict[str, dict[str, tuple[str, str]]]:
    """{column: {method: (mark, cell)}} for the columns with at least one mark; mark is "best",
    "tied" or ""."""
    cols: dict[str, dict[str, tuple[str, str]]] = {}
    for head, body in tables(md):
        for j, name in enumerate(head[1:], start=1):
            column = {}
            for row in body:
                cell = row[j]
                mark = "best" if cell.startswith("**") else "tied" if cell.startswith("*≈") else ""
                column[method_of(row[0])] = (mark, cell.strip("*≈ "))
            if any(m for m, _ in column.values()):
                cols.setdefault(name, column)  # a column repeated in a later table: the first
    return cols


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    ap.add_argument("--board", default="avmnist-embedded-avdigits")
    args = ap.parse_args(argv)
    a = marks((args.first / f"{args.board}.md").read_text(encoding="utf-8"))
    b = marks((args.second / f"{args.board}.md").read_text(encoding="utf-8"))
    differ = 0
    for col in sorted(set(a) | set(b)):
        ma, mb = a.get(col, {}), b.get(col, {})
        pick = lambda m, kind: sorted(k for k, (x, _) in m.items() if x == kind)  # noqa: E731
        same = all(pick(ma, k) == pick(mb, k) for k in ("best", "tied"))
        differ += not same
        print(f"{col}: {'SAME' if same else 'DIFFERENT'}")
        for tag, m in (("first", ma), ("second", mb)):
            print(f"   {tag:6s} best={pick(m, 'best')} tied={pick(m, 'tied')}")
        for method in sorted(set(ma) | set(mb)):
            print(f"      {method:24s} {ma.get(method, ('', '—'))[1]:>18s}  {mb.get(method, ('', '—'))[1]:>18s}")
    print(f"{len(set(a) | set(b)) - differ} of {len(set(a) | set(b))} marked columns agree")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
