"""Messages without a path, and read-only operations (issue 30): a full disk during ``prepare
mimic``, a truncated ``mimic.npz``, a torn ``progress.json`` and ``--batch-size 0``/``-1`` of the
VL prepares each fail with one line naming the file or option, changing nothing already written
and leaving no partial folder; ``leaderboard --format csv`` and ``compare`` take no write lock
(a read-only leaderboard folder works); ``leaderboard --output`` never overwrites a record or
prediction of a leaderboard folder."""
import errno
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from i2m2bench.cli import main

from .conftest import snapshot


def _cli(capsys, *argv):
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, *words):
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err  # one line (the backbone may warn before it)
    first = lines[0]
    for w in words:
        assert re.search(w, first), (w, err)
    return first


def _tree(folder: Path) -> dict:
    """Every path under ``folder`` (files with their digest, lock and temporary files too)."""
    return {**{p.relative_to(folder).as_posix(): None for p in folder.rglob("*")},
            **snapshot(folder)}


# ------------------------------------------------------------------------------------- MIMIC
def _mimic_root(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    n = 30
    arrays = {"ep_tdata": rng.normal(5, 2, (n, 24, 12)), "adm_features_all": rng.normal(60, 10, (n, 5)),
              "adm_labels_all": (rng.random((n, 6)) < 0.2).astype(np.float64),
              "y_icd9": (rng.random((n, 20)) < 0.3).astype(np.int64)}
    folder = tmp_path / "data" / "mimic"
    folder.mkdir(parents=True)
    with open(folder / "im.pk", "wb") as f:
        pickle.dump(arrays, f, protocol=4)
    return folder


def test_full_disk_during_prepare_mimic_names_the_file(tmp_path, capsys, monkeypatch):
    folder = _mimic_root(tmp_path)
    before = _tree(folder)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    code, _, err = _cli(capsys, "prepare", "mimic", "--data-root", str(folder.parent))
    _one_line_error(code, err, re.escape(str(folder / "mimic.npz")), "No space left on device")
    assert _tree(folder) == before  # no mimic.npz, no temporary file


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_mimic_npz_names_the_file(tmp_path, capsys, cut):
    folder = _mimic_root(tmp_path)
    assert main(["prepare", "mimic", "--data-root", str(folder.parent)]) == 0
    npz = folder / "mimic.npz"
    data = npz.read_bytes()
    npz.write_bytes(data[:int(len(data) * cut)])
    before = _tree(folder)
    for argv in (["verify", "mimic", "--data-root", str(folder.parent)],):
        code, _, err = _cli(capsys, *argv)
        _one_line_error(code, err, re.escape(str(npz)), "prepare mimic")
    assert _tree(folder) == before


# ---------------------------------------------------------------------------- VL extraction
@pytest.fixture(scope="module")
def vl_backbone(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.vl_fixtures import tiny_backbone

    return tiny_backbone(tmp_path_factory.mktemp("backbone") / "flava")


def _vqa_root(tmp_path) -> Path:
    from tests.vl_fixtures import vqa_vs_root

    return vqa_vs_root(tmp_path / "data")


@pytest.mark.parametrize("torn", ['{"rows": 5', "", '{"rows": -3}', '{"rows": "x"}', "[]"])
def test_torn_progress_json_names_the_file(tmp_path, capsys, monkeypatch, vl_backbone, torn):
    """An interrupted prepare keeps its partial folder; a torn record of a split's progress in
    it is refused by name on the resume, and nothing is changed."""
    from i2m2bench.data.common import vl_features as vf

    root = _vqa_root(tmp_path)
    real_extract = vf.extract

    def train_only(backbone, items, out, **kw):  # interrupted once train is extracted
        if out.name != "train":
            raise KeyboardInterrupt
        return real_extract(backbone, items, out, **kw)

    monkeypatch.setattr(vf, "extract", train_only)
    args = ("prepare", "vqa-vs", "--data-root", str(root), "--backbone", str(vl_backbone),
            "--device", "cpu", "--no-progress")
    code, _, err = _cli(capsys, *args)
    assert code == 130 and "the prepared folder is as it was" in err
    monkeypatch.setattr(vf, "extract", real_extract)
    partial = root / "vqa_vs" / ".features.partial"
    assert (partial / "train" / "ids.npy").is_file() and not (root / "vqa_vs" / "features").exists()
    (partial / "val").mkdir()
    (partial / "val" / "progress.json").write_text(torn)
    before = _tree(root)
    code, _, err = _cli(capsys, *args)
    _one_line_error(code, err, re.escape(str(partial / "val" / "progress.json")))
    assert _tree(root) == before


@pytest.mark.parametrize("family", ["vqa-vs", "nlvr2"])
@pytest.mark.parametrize("size", ["0", "-1"])
def test_batch_size_below_one_is_refused_naming_the_option(tmp_path, capsys, vl_backbone, family,
                                                           size):
    from tests.vl_fixtures import nlvr2_root

    root = _vqa_root(tmp_path) if family == "vqa-vs" else nlvr2_root(tmp_path / "data")
    before = _tree(root)
    code, _, err = _cli(capsys, "prepare", family, "--data-root", str(root), "--backbone",
                        str(vl_backbone), "--device", "cpu", "--no-progress", "--batch-size", size)
    _one_line_error(code, err, "--batch-size", re.escape(size))
    assert _tree(root) == before  # no features folder


# ------------------------------------------------------------------------ read-only operations
@pytest.fixture
def read_only(board, monkeypatch):
    """The board's folder as if read-only: any lock or open-for-write of a file fails (as root,
    chmod would not stop writes); its lock files removed, so that a new one shows."""
    import os

    from i2m2bench import fileio
    from i2m2bench.harness import publish
    from i2m2bench.harness.store import records

    for p in board.path.rglob("*.lock"):
        p.unlink()

    def no_lock(path, *a, **k):
        raise PermissionError(errno.EROFS, "Read-only file system", str(path) + ".lock")

    for mod in (fileio, publish, records):
        monkeypatch.setattr(mod, "locked", no_lock, raising=False)
    real_open = os.open

    def guarded(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and \
                str(Path(path).resolve()).startswith(str(board.path.resolve())):
            raise PermissionError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", guarded)
    before = _tree(board.path)
    return lambda: _tree(board.path) == before


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_of_a_read_only_board_takes_no_lock(board, read_only, capsys, fmt):
    code, out, err = _cli(capsys, "leaderboard", "--leaderboard-dir", str(board.path), "--format", fmt)
    assert code == 0, err
    assert "late_fusion" in out or out.strip(), err
    assert read_only(), "the export wrote into the leaderboard folder (a lock file?)"


def test_compare_of_read_only_boards_takes_no_lock(board, read_only, capsys, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(board.path, other)
    code, out, err = _cli(capsys, "compare", str(board.path), str(other))
    assert code == 0, err + out
    assert "Traceback" not in err
    assert read_only(), "compare wrote into the leaderboard folder (a lock file?)"


# ---------------------------------------------------------------------- --output of an export
@pytest.mark.parametrize("target", ["results/demo.jsonl", "results/new.jsonl", "predictions/x.npz",
                                    "machines/m1/results/demo.jsonl", "elsewhere/results/demo.jsonl"])
def test_output_never_overwrites_a_record(board, capsys, tmp_path, target):
    if target.startswith("elsewhere"):
        shutil.copytree(board.path / "results", tmp_path / "elsewhere" / "results")
        path = tmp_path / target
    else:
        path = board.path / target
    path.parent.mkdir(parents=True, exist_ok=True)
    others = _tree(tmp_path / "elsewhere") if target.startswith("elsewhere") else None
    before = _tree(board.path)
    code, _, err = _cli(capsys, "leaderboard", "--leaderboard-dir", str(board.path), "--format",
                        "csv", "--output", str(path))
    _one_line_error(code, err, "--output", re.escape(str(path)))
    assert _tree(board.path) == before
    if others is not None:
        assert _tree(tmp_path / "elsewhere") == others


def test_output_elsewhere_still_written(board, capsys, tmp_path):
    path = tmp_path / "table.csv"
    code, _, err = _cli(capsys, "leaderboard", "--leaderboard-dir", str(board.path), "--format",
                        "csv", "--output", str(path))
    assert code == 0, err
    assert path.read_text().strip()
