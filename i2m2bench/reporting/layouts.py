"""Board layouts: how one board's rows become Markdown and figures.

Rows name their layout (``suite.layout`` in gin; ``"standard"`` by default), so
``i2m2bench leaderboard`` re-renders any board from its rows alone. The layouts that ship with
the suite (``standard``, ``dependency_spectrum``) are registered by the modules that define them,
which :mod:`i2m2bench.reporting` imports; a plugin registers its own with
``@LAYOUTS.register("name")``.
"""
from __future__ import annotations

import inspect
import io
from pathlib import Path

from i2m2bench.fileio import write_bytes_atomic
from i2m2bench.registry import Registry
from i2m2bench.reporting.significance import NO_EVIDENCE, Evidence


class Layout:
    """How one board's rows become Markdown (a pure function) and figures.

    Subclasses implement :meth:`markdown` and, if the board has figures, :meth:`figure_bytes`;
    :meth:`figures` writes them. ``evidence`` gives the per-sample predictions behind the rows
    (:mod:`i2m2bench.reporting.significance`: intervals and significance marks); a layout whose
    ``markdown`` takes the rows only is called without it.
    """

    def markdown(self, rows: list[dict], evidence: Evidence = NO_EVIDENCE) -> str:  # pragma: no cover
        raise NotImplementedError

    def figure_bytes(self, rows: list[dict], stem: str) -> dict[str, bytes]:
        """File name (starting with ``stem``) -> PNG bytes of each of the board's figures."""
        return {}

    def figures(self, rows: list[dict], out_dir: Path, stem: str) -> list[Path]:
        """Write the board's figures under ``out_dir``, each atomically; their paths."""
        paths = []
        for name, data in self.figure_bytes(rows, stem).items():
            path = Path(out_dir) / name
            write_bytes_atomic(path, data)
            paths.append(path)
        return paths


LAYOUTS: Registry[type[Layout]] = Registry("leaderboard layout", Layout)


def layout_of(rows: list[dict], where: Path | str = "") -> Layout:
    """The layout the rows name (one per board)."""
    if not rows:
        raise ValueError(f"{where}: no result rows to render")
    names = {r.get("layout", "standard") for r in rows}
    if len(names) != 1:
        raise ValueError(f"{where}: rows name several layouts {sorted(names)}")
    return LAYOUTS.get(names.pop())()


def render_rows(rows: list[dict], where: Path | str = "", evidence: Evidence = NO_EVIDENCE) -> str:
    """The Markdown of a board's rows (and the predictions behind them), in the layout the rows
    name."""
    layout = layout_of(rows, where)
    if len(inspect.signature(layout.markdown).parameters) < 2:  # a layout of rows only
        return layout.markdown(rows)
    return layout.markdown(rows, evidence)


def png_bytes(fig, **savefig_kw) -> bytes:
    """A matplotlib figure as PNG bytes (no ``Software`` metadata: same figure, same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, **savefig_kw)
    return buf.getvalue()
