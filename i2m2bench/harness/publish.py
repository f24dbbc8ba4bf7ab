"""Publishing boards from results files: read a board's rows from the store (under its lock) and
hand them to :mod:`i2m2bench.reporting`, which renders them.

A leaderboard folder holds ``results/<board>.jsonl`` (the store) and, beside it, each board's
``<board>.md`` and figures. The runner calls :func:`render_board_file` when a run ends;
``python -m i2m2bench leaderboard`` calls :func:`render_all`, :func:`stale_boards` (``--check``)
and :func:`export_board` (``--format csv|json``).
"""
from __future__ import annotations

from pathlib import Path

from i2m2bench.harness.store import locked, read_rows
from i2m2bench.reporting import (board_is_stale, board_table, summary_table, to_csv, to_json,
                                 write_board)

EXPORT_FORMATS = {"csv": to_csv, "json": to_json}


def results_files(out_dir: Path) -> list[Path]:
    """The results files of the leaderboard folder ``out_dir``, sorted."""
    return sorted((Path(out_dir) / "results").glob("*.jsonl"))


def board_names(out_dir: Path) -> list[str]:
    """The boards of ``out_dir`` (one per results file)."""
    return [p.stem for p in results_files(out_dir)]


def board_path(results_path: Path, out_dir: Path) -> Path:
    return Path(out_dir) / f"{Path(results_path).stem}.md"


def read_board_rows(results_path: Path) -> list[dict]:
    """The rows of one results file, read under its lock."""
    with locked(results_path):
        return read_rows(results_path)


def render_board_file(results_path: Path, out_dir: Path) -> Path:
    """Re-render ``<out_dir>/<board>.md`` (and its figures) from its results file; its path."""
    results_path = Path(results_path)
    with locked(results_path):  # never render rows that another run is replacing
        rows = read_rows(results_path)
        return write_board(rows, Path(out_dir), results_path.stem, where=results_path)


def _selected(out_dir: Path, boards: list[str] | None) -> list[Path]:
    if boards is None:
        return results_files(out_dir)
    return [find_board(out_dir, b) for b in boards]


def render_all(out_dir: Path, boards: list[str] | None = None) -> list[Path]:
    """Re-render every board of the leaderboard folder ``out_dir`` (or only ``boards``)."""
    return [render_board_file(r, out_dir) for r in _selected(out_dir, boards)]


def stale_boards(out_dir: Path, boards: list[str] | None = None) -> list[str]:
    """Boards (all, or only ``boards``) whose committed Markdown differs from a fresh render or
    is missing. Reads without the lock (files are replaced atomically), so a read-only checkout
    can be checked."""
    stale = []
    for results in _selected(out_dir, boards):
        why = board_is_stale(read_rows(results), board_path(results, out_dir), source=results)
        if why:
            stale.append(why)
    return stale


def find_board(out_dir: Path, board: str | None = None) -> Path:
    """The results file of ``board`` in ``out_dir``; ``board`` may be omitted when the folder
    holds exactly one. The error lists the boards there."""
    names = board_names(out_dir)
    if board is None:
        if len(names) == 1:
            return results_files(out_dir)[0]
        if not names:
            raise FileNotFoundError(f"{Path(out_dir) / 'results'}: no results files (*.jsonl), so no boards")
        raise ValueError(f"{out_dir} holds {len(names)} boards; name one with --board: "
                         f"{', '.join(names)}")
    if board not in names:
        raise ValueError(f"{out_dir}: no board {board!r}; the boards there are: "
                         f"{', '.join(names) or '(none)'}")
    return Path(out_dir) / "results" / f"{board}.jsonl"


def export_board(out_dir: Path, board: str | None, fmt: str) -> str:
    """One board as CSV or JSON text (:func:`i2m2bench.reporting.board_table`)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {sorted(EXPORT_FORMATS)}")
    results = find_board(out_dir, board)
    rows = read_board_rows(results)
    if not rows:
        raise ValueError(f"{results}: no result rows to export")
    return EXPORT_FORMATS[fmt](board_table(rows))


def summary_of(results_path: Path) -> str:
    """The console summary (:func:`i2m2bench.reporting.summary_table`) of one results file."""
    return summary_table(read_board_rows(Path(results_path)))
