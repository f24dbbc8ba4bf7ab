"""Board files: a board's Markdown and figures written atomically from its rows, and the
staleness test of a committed board. (Reading results files is the harness's business:
:mod:`i2m2bench.harness.publish`.)"""
from __future__ import annotations

from pathlib import Path

from i2m2bench.fileio import write_text_atomic
from i2m2bench.reporting.layouts import layout_of, render_rows
from i2m2bench.reporting.significance import NO_EVIDENCE, Evidence


def write_board(rows: list[dict], out_dir: Path, stem: str, where: Path | str = "",
                evidence: Evidence = NO_EVIDENCE, extra: str = "") -> Path:
    """Write ``<out_dir>/<stem>.md`` and the board's figures (``<stem>*.png``), each through a
    temporary file and rename, in the layout the rows name; the Markdown's path. ``where``
    names the rows' origin in error messages; ``evidence``: the predictions behind the rows;
    ``extra``: Markdown appended to the layout's (sections that need more than the rows)."""
    out_dir = Path(out_dir)
    layout = layout_of(rows, where or stem)
    text = render_rows(rows, where or stem, evidence) + extra  # before any file is replaced
    layout.figures(rows, out_dir, stem)
    path = out_dir / f"{stem}.md"
    write_text_atomic(path, text)
    return path


def board_is_stale(rows: list[dict], md_path: Path, source: Path | str | None = None,
                   evidence: Evidence = NO_EVIDENCE, extra: str = "") -> str | None:
    """Why the committed board ``md_path`` is not a fresh render of ``rows`` and ``evidence``
    (plus ``extra``, as :func:`write_board` appends it) -- missing, or its text differs -- or
    None when it is. ``source`` names the rows' origin in the message."""
    md_path = Path(md_path)
    fresh = render_rows(rows, source or md_path, evidence) + extra
    if not md_path.exists():
        return f"{md_path}: missing" + (f" (results file {source} exists)" if source else "")
    if md_path.read_text(encoding="utf-8") != fresh:
        return f"{md_path}: differs from a render of {source or 'its rows'}"
    return None
