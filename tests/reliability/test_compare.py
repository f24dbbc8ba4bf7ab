"""``compare --exact`` never says "bit-identical" about nothing: a side that does not exist,
holds no results folder, or holds results files without a unit record is refused, naming it,
with a non-zero exit code and nothing written. (Before, two missing folders or two empty results
files printed "bit-identical" and exited 0, and ``scripts/gpu_check.sh`` trusts that exit code.)
"""
import shutil

import pytest

from tests.reliability.conftest import snapshot


@pytest.fixture
def empty_sides(tmp_path):
    """(a folder with an empty results file, one with an empty results folder, a missing one)."""
    (tmp_path / "empty_file" / "results").mkdir(parents=True)
    (tmp_path / "empty_file" / "results" / "demo.jsonl").write_text("")
    (tmp_path / "empty_dir" / "results").mkdir(parents=True)
    return tmp_path / "empty_file", tmp_path / "empty_dir", tmp_path / "missing"


@pytest.mark.parametrize("first,second,named", [
    ("missing", "missing", "FIRST"), ("empty_file", "empty_file", "FIRST"),
    ("empty_dir", "empty_file", "FIRST"), ("board", "missing", "SECOND"),
    ("board", "empty_file", "SECOND"), ("empty_dir", "board", "FIRST"),
])
@pytest.mark.parametrize("ignore_hash", [False, True])
def test_exact_comparison_of_nothing_is_refused(first, second, named, ignore_hash, refused, board,
                                                empty_sides, tmp_path):
    sides = {"empty_file": empty_sides[0], "empty_dir": empty_sides[1], "missing": empty_sides[2],
             "board": board.path}
    before = snapshot(tmp_path)
    command = ["compare", "--exact", *(["--ignore-unit-hash"] if ignore_hash else []),
               str(sides[first]), str(sides[second])]
    err = refused(rf"{named} .*: no result rows to compare", command=command)
    culprit = sides[first] if named == "FIRST" else sides[second]
    assert str(culprit) in err
    assert snapshot(tmp_path) == before  # nothing written anywhere (no lock file left either)


def test_exact_comparison_counts_what_it_compared(board, tmp_path, capsys):
    from i2m2bench.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(board.path, copy)
    assert main(["compare", "--exact", str(board.path), str(copy)]) == 0
    out = capsys.readouterr().out
    n = sum(1 for line in (board.path / "results" / "demo.jsonl").read_text().splitlines()
            if '"record": "unit"' in line or '"record":"unit"' in line)
    assert n > 0 and f"of the {n} unit record(s) agrees" in out
    assert board.intact()


def test_ignore_unit_hash_needs_exact(refused, board):
    refused(r"--ignore-unit-hash only applies to --exact",
            command=["compare", "--ignore-unit-hash", str(board.path), str(board.path)])
