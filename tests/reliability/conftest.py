"""Fixtures for the reliability suite: a leaderboard folder with earlier results to protect."""
import hashlib
from pathlib import Path

import pytest

from i2m2bench.harness.store import upsert_unit_rows
from i2m2bench.harness.publish import render_all

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "gin" / "toy_smoke.gin"


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture
def board(tmp_path, demo_rows):
    """A leaderboard folder holding earlier results (the ``demo_rows`` fixture of
    tests/conftest.py); ``board.intact()`` checks they survive."""
    folder = tmp_path / "leaderboards"
    upsert_unit_rows(folder / "results" / "demo.jsonl", demo_rows)
    render_all(folder)
    before = snapshot(folder)

    class Board:
        path = folder
        out = tmp_path / "runs"

        @staticmethod
        def intact() -> bool:
            now = snapshot(folder)
            return {k: v for k, v in now.items() if k in before} == before

    return Board


@pytest.fixture
def gin_file(tmp_path):
    """Write a gin file that includes the toy suite, plus extra lines."""
    def make(*lines: str, include: bool = True) -> str:
        path = tmp_path / "case.gin"
        head = [f"include '{TOY}'"] if include else []
        path.write_text("\n".join(head + list(lines)) + "\n")
        return str(path)

    return make
