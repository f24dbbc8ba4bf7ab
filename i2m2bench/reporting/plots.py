"""Figures of the standard board: one PNG per robustness curve (mean score against level, ± std
band, one line per method), from the rows' structured ``curve``/``level`` fields."""
from __future__ import annotations

import statistics
from pathlib import Path

from i2m2bench.fileio import write_bytes_atomic
from i2m2bench.reporting.layouts import png_bytes
from i2m2bench.reporting.rows import board_metrics, curve_subject, metric_rows
from i2m2bench.reporting.scores import BoardData, curve_slug


def xlabel(curve: str, row: dict) -> str:
    if curve == "missing_rate":
        return ("missing rate p (each modality drawn absent w.p. p; a sample left with none gets "
                "one back)")
    return f"level of {curve_subject(row)}"


def curve_figures(rows: list[dict], stem: str) -> dict[str, bytes]:
    """``<stem>-<curve>.png`` -> PNG bytes, one per curve of the board's latest units, on the
    board's primary metric (pure)."""
    metrics = board_metrics(rows)
    if metrics:
        rows = metric_rows(rows, metrics[0])
    data = BoardData.of(rows)
    if not data.curves:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units, methods = data.units, data.methods
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: one per method
    markers = "os^vDP*Xph<>"
    out = {}
    for c, levels in sorted(data.curves.items()):
        fig, ax = plt.subplots(figsize=(7.2, 4.6))
        xs = [0.0, *sorted(levels)]
        for i, m in enumerate(methods):
            u = units[m]
            per_level = [u.score("test") or [], *(u.point(c, lv) or [] for lv in xs[1:])]
            if not all(per_level[1:]) or not per_level[0]:
                continue
            mean = [100 * statistics.fmean(v) for v in per_level]
            std = [100 * statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_level]
            style = "--" if u.family in ("unimodal", "intra") else "-"
            line, = ax.plot(xs, mean, style, marker=markers[i % len(markers)], ms=4, label=m,
                            color=colors[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20])
            ax.fill_between(xs, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)],
                            color=line.get_color(), alpha=0.12, lw=0)
        on_curve = next(r for u in units.values() for r in u.rows if r.get("curve") == c)
        ax.set_xlabel(xlabel(c, on_curve), fontsize=8)
        ax.set_ylabel(f"{metrics[0] if metrics else rows[0]['metric']} (%)")
        ax.set_title(f"{stem}: {c}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="best")
        fig.tight_layout()
        out[f"{stem}-{curve_slug(c)}.png"] = png_bytes(fig, dpi=110)
        plt.close(fig)
    return out


def plot_curves(rows: list[dict], out_dir: Path, stem: str) -> list[Path]:
    """Write :func:`curve_figures` under ``out_dir``, each through a temporary file and rename."""
    paths = []
    for name, data in curve_figures(rows, stem).items():
        path = Path(out_dir) / name
        write_bytes_atomic(path, data)
        paths.append(path)
    return paths

