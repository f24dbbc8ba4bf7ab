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


@pytest.fixture
def refused(capsys, board):
    """``refused(pattern, *args)``: ``python -m i2m2bench run --out <board.out> --leaderboard-dir
    <board.path> --no-progress *args`` (later arguments win, so ``args`` may replace those) is
    refused: exit code != 0, the message matches ``pattern`` (naming the culprit), no traceback,
    the earlier results intact and no result rows written. Returns the message.
    ``refused(pattern, *args, command=[...])`` runs ``command`` instead of ``run ...``."""
    import re

    from i2m2bench.cli import main

    def check(pattern: str, *args: str, command: list[str] | None = None) -> str:
        argv = command if command is not None else \
            ["run", "--out", str(board.out), "--leaderboard-dir", str(board.path), "--no-progress",
             *args]
        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0, err
        assert re.search(pattern, err, re.S), err
        assert "Traceback" not in err
        assert board.intact(), "earlier results were changed"
        written = [p for p in board.path.glob("results/*.jsonl") if p.name != "demo.jsonl"]
        assert not written, f"a refused run wrote result rows: {written}"
        return err

    return check


@pytest.fixture
def api_refused(board, monkeypatch):
    """``api_refused(exc_type, pattern, gin_files, **kwargs)``: ``run_suite(gin_files,
    out=board.out, results_dir=board.path, progress=False, **kwargs)`` raises ``exc_type``
    matching ``pattern`` before any data is loaded (building a task fails the test), with the
    earlier results intact and no result rows written."""
    import re

    from i2m2bench.harness import planner, runner

    def no_data(*a, **k):
        raise AssertionError("run_suite loaded data before refusing its arguments")

    monkeypatch.setattr(planner, "build_task", no_data)

    def check(exc_type, pattern: str, gin_files, **kwargs):
        args = {"out": board.out, "results_dir": board.path, "progress": False, **kwargs}
        try:
            runner.run_suite(gin_files, **args)
        except exc_type as exc:
            assert re.search(pattern, str(exc), re.S), str(exc)
        else:
            raise AssertionError(f"run_suite({gin_files!r}, {kwargs}) was not refused")
        assert board.intact(), "earlier results were changed"
        assert not [p for p in board.path.glob("results/*.jsonl") if p.name != "demo.jsonl"]

    return check


# ------------------------------------------------------------------------ a trained run folder
SMALL = ("a_only", "b_only", "late_fusion")  # three units of the toy suite, seed 0
BOARD = "toy_smoke-embedded-toy"


@pytest.fixture(scope="session")
def _trained_template(tmp_path_factory):
    """The toy suite's three small units, trained once per session (copied by ``trained``)."""
    import gin

    from i2m2bench.harness.runner import run_suite

    root = tmp_path_factory.mktemp("trained")
    gin.clear_config()
    run_suite([TOY], seeds=[0], methods=list(SMALL), out=root / "runs", results_dir=root / "lb",
              progress=False, log=lambda s: None)
    gin.clear_config()
    return root


@pytest.fixture
def trained(tmp_path, _trained_template):
    """A copy of a completed run (run folder + leaderboard folder) of three toy units:
    ``trained.run(*args)`` runs the same command through the CLI and returns (exit code, stdout,
    stderr); ``trained.mtimes()`` the checkpoints' modification times (unchanged: nothing was
    retrained)."""
    import shutil

    from i2m2bench.cli import main

    root = tmp_path / "t"
    shutil.copytree(_trained_template, root)

    class Trained:
        runs = root / "runs"
        lb = root / "lb"
        results = root / "lb" / "results" / f"{BOARD}.jsonl"
        board_md = root / "lb" / f"{BOARD}.md"
        original = results.read_bytes()

        @staticmethod
        def unit_dir(method: str) -> Path:
            return next(root.glob(f"runs/{BOARD}/{method}/*/seed0"))

        @staticmethod
        def mtimes() -> dict:
            return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns
                    for p in sorted(root.rglob("model.pt"))}

        @staticmethod
        def run(*extra: str, capsys=None, methods=SMALL) -> tuple[int, str, str]:
            if capsys is not None:
                capsys.readouterr()
            code = main(["run", "--gin", str(TOY), "--seeds", "0", "--methods", *methods,
                         "--out", str(root / "runs"), "--leaderboard-dir", str(root / "lb"),
                         "--no-progress", *extra])
            if capsys is None:
                return code, "", ""
            out, err = capsys.readouterr()
            return code, out, err

    return Trained
