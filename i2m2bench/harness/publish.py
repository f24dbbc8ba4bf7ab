"""Publishing boards from results files: read a board's rows from the store (under its lock) and
hand them to :mod:`i2m2bench.reporting`, which renders them.

A leaderboard folder holds ``results/<board>.jsonl`` (the store), the per-sample predictions of
the board's units (``predictions/<board>/[<setting>/]<method>/<unit hash>-seed<k>.npz``, copied
from each unit's run directory by :func:`publish_predictions`; format in
:mod:`i2m2bench.predictions`) and, beside them, each board's ``<board>.md`` and figures, whose
intervals and significance marks are computed from the predictions
(:mod:`i2m2bench.reporting.significance`). The runner calls :func:`publish_predictions` and
:func:`render_board_file` when a run ends;
``python -m i2m2bench leaderboard`` calls :func:`render_all`, :func:`stale_boards` (``--check``)
and :func:`export_board` (``--format csv|json``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from i2m2bench.harness.store import locked, read_rows
from i2m2bench.predictions import load_predictions, save_predictions
from i2m2bench.reporting import (board_is_stale, board_table, latest_units, summary_table, to_csv,
                                 to_json, write_board)
from i2m2bench.reporting.significance import Evidence, Key, row_key

PREDICTIONS = "predictions"

EXPORT_FORMATS = {"csv": to_csv, "json": to_json}


def results_files(out_dir: Path) -> list[Path]:
    """The results files of the leaderboard folder ``out_dir``, sorted."""
    return sorted((Path(out_dir) / "results").glob("*.jsonl"))


def board_names(out_dir: Path) -> list[str]:
    """The boards of ``out_dir`` (one per results file)."""
    return [p.stem for p in results_files(out_dir)]


def board_path(results_path: Path, out_dir: Path) -> Path:
    return Path(out_dir) / f"{Path(results_path).stem}.md"


def _component(value, what: str) -> str:
    text = str(value)
    if not text or text in (".", "..") or "/" in text or "\\" in text:
        raise ValueError(f"{what} {text!r} cannot name a folder of the published predictions")
    return text


def prediction_path(out_dir: Path, board: str, key: Key) -> Path:
    """Where the predictions of the unit ``key`` = (setting, method, unit hash, seed) of
    ``board`` are published under the leaderboard folder ``out_dir``."""
    setting, method, unit_hash, seed = key
    d = Path(out_dir) / PREDICTIONS / _component(board, "board")
    if setting is not None:
        d = d / _component(setting, "setting")
    return d / _component(method, "method") / f"{_component(unit_hash, 'unit hash')}-seed{int(seed)}.npz"


def evidence_of(out_dir: Path, board: str) -> Evidence:
    """The published predictions of ``board`` (a unit without a file has none)."""
    def load(key: Key):
        path = prediction_path(out_dir, board, key)
        return load_predictions(path) if path.is_file() else None
    return Evidence(load)


def publish_predictions(results_path: Path, out_dir: Path, sources: Mapping[Key, Path]) -> list[Path]:
    """Publish each unit's predictions (``sources``: key -> ``<run dir>/predictions.npz``) at
    its place under ``out_dir`` (temporary file + rename), keeping the protocols its rows score
    outside robustness curves -- the ones a board ranks and marks (curve points are tabled from
    the rows, and the run directory keeps every protocol) -- then remove the board's published
    files that belong to none of its latest units (superseded configurations); the files
    written."""
    results_path, board = Path(results_path), Path(results_path).stem
    with locked(results_path):
        rows = read_rows(results_path)
    ranked: dict[Key, set[str]] = {}  # unit -> the protocols its rows score outside curves
    for r in rows:
        if r.get("curve") is None and r.get("protocol"):
            ranked.setdefault(row_key(r), set()).add(r["protocol"])
    written = []
    for key, src in sorted(sources.items(), key=lambda kv: str(kv[0])):
        src = Path(src)
        if not src.is_file():
            continue
        pred = load_predictions(src)
        if key in ranked:
            pred = pred.only(ranked[key])
        dst = prediction_path(out_dir, board, key)
        save_predictions(dst, pred)
        written.append(dst)
    root = Path(out_dir) / PREDICTIONS / board
    if root.is_dir():
        keep = {prediction_path(out_dir, board, row_key(r))
                for rs in latest_units(rows, key=lambda r: (r.get("setting"), r["method"])).values()
                for r in rs}
        for path in root.rglob("*-seed*.npz"):
            if path not in keep:
                path.unlink()
    return written


def read_board_rows(results_path: Path) -> list[dict]:
    """The rows of one results file, read under its lock."""
    with locked(results_path):
        return read_rows(results_path)


def render_board_file(results_path: Path, out_dir: Path) -> Path:
    """Re-render ``<out_dir>/<board>.md`` (and its figures) from its results file; its path."""
    results_path = Path(results_path)
    with locked(results_path):  # never render rows that another run is replacing
        rows = read_rows(results_path)
        return write_board(rows, Path(out_dir), results_path.stem, where=results_path,
                           evidence=evidence_of(out_dir, results_path.stem))


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
        why = board_is_stale(read_rows(results), board_path(results, out_dir), source=results,
                             evidence=evidence_of(out_dir, results.stem))
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
