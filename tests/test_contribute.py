"""Contributed results (``leaderboard add``): the example plugin's run of the AV-MNIST smoke suite
is merged into a copy of the board and marked; a run with other data, other seeds or a missing
protocol is refused with every difference named, and nothing is written."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from i2m2bench.harness.contribute import NotComparable, add_results, differences
from i2m2bench.harness.store.records import read_records
from i2m2bench.harness.site import build_site

from reliability.conftest import snapshot  # tests/ is on the path (rootless conftest)

ROOT = Path(__file__).resolve().parents[1]
BOARD = "avmnist_smoke-embedded-avdigits"
PUBLISHED = ["image_only", "audio_only", "late_fusion", "i2m2_lf"]


def _cli(*args, site=None, cwd=ROOT):
    env = {**os.environ, **({"PYTHONPATH": str(site)} if site else {})}
    return subprocess.run([sys.executable, "-m", "i2m2bench", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def runs(plugin_site, tmp_path_factory):
    """(a published AV-MNIST smoke board, the plugin's run of the same suite): both folders as
    ``run --leaderboard-dir`` writes them."""
    tmp = tmp_path_factory.mktemp("contrib")
    board = _cli("run", "--gin", "gin/avmnist_smoke.gin", "--methods", *PUBLISHED, "--out",
                 str(tmp / "runs"), "--leaderboard-dir", str(tmp / "board"), "--no-progress")
    assert board.returncode == 0, board.stderr
    mine = _cli("run", "--gin", "examples/plugin/gin/avmnist_smoke_film.gin", "--out",
                str(tmp / "runs2"), "--leaderboard-dir", str(tmp / "mine"), "--no-progress",
                site=plugin_site)
    assert mine.returncode == 0, mine.stderr
    return tmp / "board", tmp / "mine"


def _copy(folder: Path, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(folder, tmp_path / name))


def _main_rows(md: str) -> dict[str, list[str]]:
    """{method: its cells in the main table} (the first table of the board)."""
    out = {}
    for line in md.split("## Robustness")[0].splitlines():
        if line.startswith("| ") and "(`" in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            method = cells[0].split("(`")[-1].split("`)")[0]
            out[method] = cells[1:]
    return out


def _edit_records(folder: Path, change) -> None:
    """Rewrite the contribution's results file with ``change(record)`` applied to its film units."""
    path = folder / "results" / f"{BOARD}.jsonl"
    lines = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("record") == "unit" and rec["method"] in ("film", "i2m2_film"):
            change(rec)
        lines.append(json.dumps(rec, sort_keys=True))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow
def test_the_plugin_run_is_added_marked_and_verified(runs, tmp_path, plugin_site):
    board, mine = _copy(runs[0], tmp_path, "board"), runs[1]
    before = _main_rows((board / f"{BOARD}.md").read_text())
    res = _cli("leaderboard", "add", str(mine), "--leaderboard-dir", str(board), site=plugin_site)
    assert res.returncode == 0, res.stderr
    assert "added film, i2m2_film (2 units)" in res.stdout
    assert "left as they are on the board: audio_only, image_only" in res.stdout
    md = (board / f"{BOARD}.md").read_text()
    after = _main_rows(md)
    assert set(after) == {*PUBLISHED, "film", "i2m2_film"}
    assert "FiLM (plugin) (`film`) — contributed" in md
    assert "`film`: added " in md and "i2m2bench-example-plugin 0.1.0" in md
    _, units = read_records(board / "results" / f"{BOARD}.jsonl")
    contributed = {u["method"] for u in units if u.get("contributed")}
    assert contributed == {"film", "i2m2_film"}  # the board's own image_only was not replaced
    assert len([u for u in units if u["method"] == "image_only"]) == 1
    assert list((board / "predictions" / BOARD / "film").rglob("*.npz"))
    assert len(list((board / "units" / BOARD).glob("film-*-seed0.json"))) == 1  # its unit card
    check = _cli("leaderboard", "--check", "--leaderboard-dir", str(board))
    assert check.returncode == 0, check.stderr  # the contribution's scores recompute too
    build_site(board, tmp_path / "site")  # and it shows on the website, marked
    page = (tmp_path / "site" / "boards" / f"{BOARD}.html").read_text()
    assert page.count('<span class="badge">contributed</span>') == 2 * 2  # main + missing tables
    assert (tmp_path / "site" / "methods" / "film.html").is_file()
    again = _cli("leaderboard", "add", str(mine), "--leaderboard-dir", str(board), site=plugin_site)
    assert again.returncode == 1 and "nothing to add" in again.stderr


@pytest.mark.slow
def test_without_predictions_the_others_keep_their_marks(runs, tmp_path, plugin_site):
    board, mine = _copy(runs[0], tmp_path, "board"), _copy(runs[1], tmp_path, "mine")
    shutil.rmtree(mine / "predictions")
    before = _main_rows((board / f"{BOARD}.md").read_text())
    res = _cli("leaderboard", "add", str(mine), "--leaderboard-dir", str(board))
    assert res.returncode == 0, res.stderr
    assert "no per-sample predictions for film, i2m2_film" in res.stdout
    after = _main_rows((board / f"{BOARD}.md").read_text())
    for m in PUBLISHED:  # marks and intervals of the published methods are unchanged
        assert after[m][3:] == before[m][3:], m
    for m in ("film", "i2m2_film"):  # a contribution without predictions is never marked
        assert not any(c.startswith(("**", "*≈")) for c in after[m][3:]), after[m]


@pytest.mark.slow
@pytest.mark.parametrize("change,named", [
    (lambda r: r["task_options"].update(sha256="0" * 64),
     "data checksum task_options.sha256 is '" + "0" * 64),
    (lambda r: r.update(seed=1), "lacks seed(s) [0] and has seed(s) [1] the board does not"),
    (lambda r: r.update(scores=[s for s in r["scores"] if s["protocol"] != "missing:audio"]),
     "seed 0 lacks protocol(s) missing:audio"),
    (lambda r: r.update(dataset_version="2"), "dataset_version is '2', the board's is '1'"),
], ids=["data-checksum", "seeds", "protocol", "dataset-version"])
def test_an_incomparable_run_is_refused_naming_the_difference(runs, tmp_path, change, named):
    board, mine = _copy(runs[0], tmp_path, "board"), _copy(runs[1], tmp_path, "mine")
    _edit_records(mine, change)
    shutil.rmtree(mine / "predictions")  # the refusal comes from the rows alone
    intact = snapshot(board)
    res = _cli("leaderboard", "add", str(mine), "--leaderboard-dir", str(board))
    assert res.returncode == 1
    assert "not added; nothing was written" in res.stderr
    assert f"{BOARD}: method 'film': {named}" in res.stderr, res.stderr
    assert f"{BOARD}: method 'i2m2_film': {named}" in res.stderr, res.stderr
    assert snapshot(board) == intact


@pytest.mark.slow
def test_predictions_that_do_not_give_the_scores_are_refused(runs, tmp_path):
    board, mine = _copy(runs[0], tmp_path, "board"), _copy(runs[1], tmp_path, "mine")
    _edit_records(mine, lambda r: [s.update(value=0.999) for s in r["scores"]
                                   if s["protocol"] == "test"])
    intact = snapshot(board)
    with pytest.raises(NotComparable, match=r"film/seed0: its test accuracy is 0\.999 but .* gives"):
        add_results(mine, board)
    assert snapshot(board) == intact


def _unit(**kw):
    rec = {"record": "unit", "method": "mine", "seed": 0, "unit_hash": "h", "provenance": "p",
           "suite": "s", "layout": "standard", "dataset": "d", "dataset_version": "1",
           "data_source": "embedded", "setting": None, "metrics": ["accuracy"], "trained": True,
           "task_options": {"sha256": "abc"}, "info": {},
           "scores": [{"protocol": p, "metric": "accuracy", "value": 0.5} for p in ("val", "test")]}
    rec.update(kw)
    return rec


def test_differences_name_each_field_and_accept_an_equal_run():
    board = [_unit(method="lf", seed=0), _unit(method="lf", seed=1)]
    provs = {"p": {"numerics": {"cpu": "x"}, "git_commit": "abc"}}
    assert differences("b", board, provs, [_unit(seed=0), _unit(seed=1)]) == []
    got = differences("b", board, {"p": {"git_commit": "abc+dirty"}},
                      [_unit(seed=0, suite="other", info={"failed": 1.0}, error="boom")])
    assert got == [
        "b: method 'mine': suite is 'other', the board's is 's'",
        "b: method 'mine': seed 0 failed (boom); re-run it before adding",
        "b: method 'mine': seed 0 was run without numerics in its provenance (CPU capability, "
        "threads, device, torch); re-run it with this version",
        "b: method 'mine': seed 0 was run from an uncommitted tree (abc+dirty)",
        "b: method 'mine': lacks seed(s) [1] (the board's seeds are [0, 1])",
    ]


def test_a_source_without_results_or_board_is_named(tmp_path):
    (tmp_path / "board" / "results").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no results/\\*.jsonl here"):
        add_results(tmp_path / "empty", tmp_path / "board")
    (tmp_path / "mine" / "results").mkdir(parents=True)
    (tmp_path / "mine" / "results" / "x.jsonl").write_text("")
    with pytest.raises(NotComparable, match="there is no published board 'x'"):
        add_results(tmp_path / "mine", tmp_path / "board")
