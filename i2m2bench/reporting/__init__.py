"""Reporting: result rows -> boards (Markdown, CSV, JSON, console), their figures, and the PoE
kernel table. Pure functions of rows; reading results files is :mod:`i2m2bench.harness.publish`'s
business. This package imports ``i2m2bench.data`` (the spectrum board's Bayes ceiling) and never
the reverse; it never imports the harness or the CLI.

Importing it registers the layouts that ship with the suite: ``standard``
(:mod:`~i2m2bench.reporting.board`) and ``dependency_spectrum``
(:mod:`~i2m2bench.reporting.spectrum`).
"""
from i2m2bench.reporting.layouts import LAYOUTS, Layout, layout_of, render_rows
from i2m2bench.reporting.rows import board_method, latest_units, protocol_kind
from i2m2bench.reporting.scores import mean_std_cell
from i2m2bench.reporting.board import StandardLayout, area_metrics, render_markdown
from i2m2bench.reporting.plots import plot_curves
from i2m2bench.reporting.spectrum import DependencySpectrumLayout
from i2m2bench.reporting.poe_kernel import render_poe_markdown
from i2m2bench.reporting.tables import board_table, to_csv, to_json
from i2m2bench.reporting.console import summary_table
from i2m2bench.reporting.files import board_is_stale, write_board

__all__ = ["LAYOUTS", "DependencySpectrumLayout", "Layout", "StandardLayout", "area_metrics",
           "board_is_stale", "board_method", "board_table", "latest_units", "layout_of", "mean_std_cell",
           "plot_curves", "protocol_kind", "render_markdown", "render_poe_markdown", "render_rows",
           "summary_table", "to_csv", "to_json", "write_board"]
