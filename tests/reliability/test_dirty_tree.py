"""Boards from uncommitted code (issue 30): a run into the published leaderboards/ of a checkout
whose code (i2m2bench/, gin/) differs from its commit is refused up front, naming the files and
--allow-dirty; with --allow-dirty the board says which rows came from uncommitted code. Each test
uses a temporary git repository standing in for the suite's checkout (``suite_checkout`` is
monkeypatched); the real repository is never touched."""
import importlib
import subprocess

import pytest

from i2m2bench.cli import main
from i2m2bench.harness.publish import render_all
from i2m2bench.harness.store import upsert_unit_rows
from tests.reliability.conftest import TOY, snapshot

provenance = importlib.import_module("i2m2bench.harness.store.provenance")  # the module; the
# package re-exports a function of the same name


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path, board, monkeypatch):
    """tmp_path as a git checkout of the suite (code under i2m2bench/ and gin/, docs, a tracked
    file in leaderboards/), committed and clean; the ``board`` folder is its leaderboards/."""
    for rel in ("i2m2bench/core.py", "i2m2bench/gin/suite.gin", "docs/index.md",
                "leaderboards/README.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("v1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "i2m2bench", "docs", "leaderboards/README.md")
    git(tmp_path, "commit", "-q", "-m", "one")
    monkeypatch.setattr(provenance, "suite_checkout", lambda: tmp_path, raising=False)
    assert board.path == tmp_path / "leaderboards"
    return tmp_path


def test_dirty_code_refuses_the_published_folder(checkout, refused):
    (checkout / "i2m2bench" / "core.py").write_text("v2\n")
    err = refused(r"leaderboards: the published leaderboards; .* uncommitted changes to "
                  r"i2m2bench/core.py, .*--allow-dirty", "--gin", str(TOY), "--methods", "a_only",
                  "--seeds", "0")
    assert len([l for l in err.splitlines() if l.startswith("error:")]) == 1


def test_staged_gin_change_and_many_files_named_a_few(checkout, refused):
    (checkout / "i2m2bench" / "gin" / "suite.gin").write_text("v2\n")
    git(checkout, "add", "i2m2bench/gin/suite.gin")  # staged counts too
    for k in range(4):
        (checkout / "i2m2bench" / f"new{k}.py").write_text("x\n")
        git(checkout, "add", f"i2m2bench/new{k}.py")
    refused(r"uncommitted changes to i2m2bench/gin/suite.gin, i2m2bench/new0.py, "
            r"i2m2bench/new1.py and 2 more.*--allow-dirty", "--gin", str(TOY), "--methods",
            "a_only", "--seeds", "0")


def test_replica_folder_inside_published_is_published(checkout, board, capsys):
    (checkout / "i2m2bench" / "core.py").write_text("v2\n")
    replica = board.path / "machines" / "h100"
    code = main(["run", "--gin", str(TOY), "--methods", "a_only", "--seeds", "0", "--out",
                 str(board.out), "--leaderboard-dir", str(replica), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "machines/h100: the published leaderboards" in err, err
    assert "Traceback" not in err and not replica.exists() and board.intact()


def test_git_that_cannot_tell_is_refused(checkout, refused):
    (checkout / ".git").rename(checkout / "git-moved")
    (checkout / ".git").write_text("gitdir: /nonexistent\n")  # a broken work tree
    refused(r"git cannot tell whether the code in .* matches its commit.*--allow-dirty",
            "--gin", str(TOY), "--methods", "a_only", "--seeds", "0")


def test_clean_code_or_scratch_folder_or_install_is_not_refused(checkout, tmp_path, monkeypatch):
    (checkout / "docs" / "index.md").write_text("v2\n")  # no row comes from these
    (checkout / "leaderboards" / "README.md").write_text("v2\n")
    assert provenance.dirty_files(checkout) == []
    assert not provenance.git_commit().endswith("+dirty")
    assert provenance.dirty_tree_problem(checkout / "leaderboards") is None
    (checkout / "i2m2bench" / "core.py").write_text("v2\n")
    assert provenance.git_commit().endswith("+dirty")
    assert provenance.dirty_tree_problem(tmp_path / "scratch") is None  # tests, CI, your runs
    assert provenance.dirty_tree_problem(checkout / "leaderboards")
    monkeypatch.setattr(provenance, "suite_checkout", lambda: None)  # an installed package
    assert provenance.dirty_tree_problem(checkout / "leaderboards") is None


def test_allow_dirty_runs_and_the_board_says_so(checkout, board, capsys):
    (checkout / "i2m2bench" / "core.py").write_text("v2\n")
    code = main(["run", "--gin", str(TOY), "--methods", "a_only", "--seeds", "0", "--out",
                 str(board.out), "--leaderboard-dir", str(board.path), "--no-progress",
                 "--allow-dirty"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert board.intact()
    md = (board.path / "toy_smoke-embedded-toy.md").read_text()
    assert "**From uncommitted code:** the rows of every one of the 1 methods on this board" in md
    assert "+dirty)" in md
    assert "From uncommitted code" not in (board.path / "demo.md").read_text()


def test_line_only_when_shown_rows_are_dirty(tmp_path, demo_rows):
    folder = tmp_path / "lb"
    upsert_unit_rows(folder / "results" / "demo.jsonl", demo_rows)
    render_all(folder)
    assert "From uncommitted code" not in (folder / "demo.md").read_text()
    before = snapshot(folder)
    render_all(folder)
    assert snapshot(folder) == before  # a clean board renders as before
    m = demo_rows[0]["method"]
    dirty = [{**r, "git_commit": "abc+dirty"} for r in demo_rows if r["method"] == m]
    folder2 = tmp_path / "lb2"
    upsert_unit_rows(folder2 / "results" / "demo.jsonl",
                     dirty + [r for r in demo_rows if r["method"] != m])
    render_all(folder2)
    text = (folder2 / "demo.md").read_text()
    n = len({r["method"] for r in demo_rows})
    assert f"**From uncommitted code:** the rows of 1 of the {n} methods on this board (`{m}`) " \
        "were run from code that differed from its commit (abc+dirty)" in text


def test_bench_into_the_published_folder_from_uncommitted_code_is_refused(checkout, board,
                                                                          capsys, monkeypatch):
    """`bench` publishes figures too: from a tree whose code or benchmarks/ differ from the
    commit, it is refused before anything is measured, naming the files and --allow-dirty."""
    import i2m2bench.bench as bench

    def measured(*a, **k):
        raise AssertionError("bench measured before refusing")

    monkeypatch.setattr(bench, "run_benchmarks", measured)
    (checkout / "benchmarks").mkdir()
    (checkout / "benchmarks" / "test_x.py").write_text("v1\n")
    git(checkout, "add", "benchmarks")
    git(checkout, "commit", "-q", "-m", "bench")
    (checkout / "benchmarks" / "test_x.py").write_text("v2\n")
    before = snapshot(board.path)
    code = main(["bench", "--leaderboard-dir", str(board.path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "the published leaderboards; " in err and "uncommitted changes to benchmarks/test_x.py" \
        in err and "its figures would come from code that is in no commit" in err, err
    assert "--allow-dirty (each figure then records its commit as +dirty)" in err
    assert snapshot(board.path) == before
    monkeypatch.setattr(bench, "run_benchmarks", lambda out, **k: out / "poe_kernel.md")
    assert main(["bench", "--leaderboard-dir", str(board.path), "--allow-dirty"]) == 0
