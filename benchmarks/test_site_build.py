"""What the leaderboard website costs to build (``python -m i2m2bench site``,
i2m2bench/harness/site.py) beside re-rendering the Markdown boards of the same records
(``python -m i2m2bench leaderboard``), side by side in one run. Both compute every board's
intervals and significance marks from the published predictions, which is most of the time; the
site adds the method, unit and curve pages. The issue's target: the committed folder in under a
minute on 2 cores.

    python -m pytest benchmarks/test_site_build.py --benchmark-only \
        --benchmark-columns=median,rounds --benchmark-sort=name

``I2M2BENCH_BENCH_QUICK=1``: one small board (NLVR2) instead of the committed folder (checks the
code, not the machine).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import QUICK
from i2m2bench.harness.publish import render_all
from i2m2bench.harness.site import build_site

ROOT = Path(__file__).resolve().parents[1]
QUICK_BOARD = "nlvr2-embedded-nlvr2"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A copy of the committed leaderboard folder (quick: its NLVR2 board alone)."""
    out = tmp_path_factory.mktemp("lb") / "leaderboards"
    if not QUICK:
        return Path(shutil.copytree(ROOT / "leaderboards", out))
    (out / "results").mkdir(parents=True)
    shutil.copy(ROOT / "leaderboards" / "results" / f"{QUICK_BOARD}.jsonl", out / "results")
    shutil.copytree(ROOT / "leaderboards" / "predictions" / QUICK_BOARD,
                    out / "predictions" / QUICK_BOARD)
    return out


def test_building_the_website(benchmark, folder, tmp_path):
    written = benchmark.pedantic(build_site, args=(folder, tmp_path / "site"), rounds=2,
                                 iterations=1)
    assert (tmp_path / "site" / "index.html") in written
    benchmark.group = "leaderboard website vs Markdown boards, same records"
    benchmark.extra_info.update({"files": len(written), "quick": QUICK})


def test_rendering_the_markdown_boards(benchmark, folder):
    boards = [QUICK_BOARD] if QUICK else None
    written = benchmark.pedantic(render_all, args=(folder, boards), rounds=2, iterations=1)
    assert written
    benchmark.group = "leaderboard website vs Markdown boards, same records"
    benchmark.extra_info.update({"files": len(written), "quick": QUICK})
