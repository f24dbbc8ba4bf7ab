"""Drop the result records of superseded configurations made from uncommitted code.

A board shows, per method, only its latest unit (``latest_units``); the records of older
configurations stay in the results file as history. Those recorded from a ``+dirty`` commit
trace to no code anyone can check out, so this removes them -- and only them: a ``+dirty``
record that a board still shows is reported, never dropped (rerun its suite from a clean
checkout instead). Run it, then ``python -m i2m2bench leaderboard`` to re-render (the boards do
not change: they never showed these records).

    python scripts/drop_superseded_dirty.py [LEADERBOARD_DIR]   # default: leaderboards
"""
from __future__ import annotations

import sys
from pathlib import Path

from i2m2bench.fileio import locked
from i2m2bench.harness.store import read_records, rows_of, write_records
from i2m2bench.reporting.rows import board_method, latest_units


def drop(path: Path) -> tuple[int, list[str]]:
    """(records dropped, shown +dirty units kept) for one results file."""
    with locked(path):
        foreign: list = []
        provs, units = read_records(path, foreign=foreign)
        rows = [row for u in units for row in rows_of(u, provs[u["provenance"]])]
        # per sweep setting too (the spectrum board keys by setting and method): when in doubt, shown
        by_setting = latest_units(rows, key=lambda r: (r.get("setting"), board_method(r)))
        shown = {(r["unit_hash"], r["seed"]) for rs in by_setting.values() for r in rs}
        dirty = lambda u: str(provs[u["provenance"]].get("git_commit", "")).endswith("+dirty")  # noqa: E731
        kept_dirty = sorted({f"{path.name}: {u['method']}" for u in units
                             if dirty(u) and (u["unit_hash"], u["seed"]) in shown})
        keep = [u for u in units if not dirty(u) or (u["unit_hash"], u["seed"]) in shown]
        if len(keep) < len(units):
            used = {u["provenance"] for u in keep}
            write_records(path, {k: v for k, v in provs.items() if k in used}, keep, foreign)
    return len(units) - len(keep), kept_dirty


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "leaderboards")
    files = sorted((folder / "results").glob("*.jsonl"))
    if not files:
        print(f"{folder}/results: no results files", file=sys.stderr)
        return 2
    shown_dirty = []
    for path in files:
        n, kept = drop(path)
        shown_dirty += kept
        if n:
            print(f"{path}: dropped {n} superseded record(s) from uncommitted code")
    for line in shown_dirty:
        print(f"{line}: shown on the board and from uncommitted code: rerun its suite", file=sys.stderr)
    return 1 if shown_dirty else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
