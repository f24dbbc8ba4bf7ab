"""Runs that share their work: two processes running the same suite on the same folders both
finish with the same rows (a unit is trained under its lock; the other run waits, then finds it
complete); temporary files never collide; a checkpoint write that fails on a full disk leaves
no partial file, says which file and why in one line, and the rerun trains the unit again."""
import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from i2m2bench import fileio
from i2m2bench.cli import main
from i2m2bench.harness import checkpoints, store
from i2m2bench.harness.store import read_records, read_rows

from .conftest import BOARD, ROOT, SMALL, TOY


def cli(*args):
    return subprocess.Popen([sys.executable, "-m", "i2m2bench", *args, "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def table(out):
    """The board table a run prints at its end (without the line counting its own work)."""
    return [line for line in out.splitlines() if "unit(s)" not in line and "nothing to train" not in line]


# ------------------------------------------------------------------------------ two runs at once
@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(3))
def test_two_runs_of_the_same_suite_at_once_end_with_the_same_rows(tmp_path, attempt):
    args = ["run", "--gin", str(TOY), "--seeds", "0", "--methods", *SMALL, "i2m2",
            "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb")]
    a, b = cli(*args), cli(*args)
    (out_a, err_a), (out_b, err_b) = a.communicate(timeout=600), b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    assert "Traceback" not in err_a + err_b
    results = tmp_path / "lb" / "results" / f"{BOARD}.jsonl"
    _, units = read_records(results)
    keys = [(u["method"], u["seed"]) for u in units]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 4  # each unit once
    assert table(out_a) == table(out_b)  # both runs end showing the same rows
    # every unit was trained by one of them; the other waited for it and skipped it
    for m in (*SMALL, "i2m2"):
        trainings = (err_a + err_b).count(f"] {m}/seed0: training ")
        assert trainings + (err_a + err_b).count(f"{m}/seed0: done already") == 2 and trainings >= 1
    assert [p for p in tmp_path.rglob("*.tmp")] == []  # no temporary file left behind
    if attempt:
        return  # the checks below once are enough
    again = cli(*args)
    out, err = again.communicate(timeout=600)
    # the rows agree with every run directory (nothing to re-emit) and nothing is left to train
    assert again.returncode == 0 and "nothing to train" in out and "re-emitted" not in err
    assert table(out) == table(out_a)
    check = subprocess.run([sys.executable, "-m", "i2m2bench", "leaderboard", "--check",
                            "--leaderboard-dir", str(tmp_path / "lb")], cwd=ROOT, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stderr


def test_a_run_waits_for_a_unit_another_run_is_training(trained):
    """The plan says train (no metrics.json yet); the unit's lock is held by "another run" that
    completes it meanwhile: this run waits, decides again, and skips it."""
    d = trained.unit_dir("a_only")
    metrics = (d / "metrics.json").read_bytes()
    (d / "metrics.json").unlink()
    before = trained.mtimes()
    with fileio.locked(d / "unit"):
        proc = cli("run", "--gin", str(TOY), "--seeds", "0", "--methods", "a_only",
                   "--out", str(trained.runs), "--leaderboard-dir", str(trained.lb))
        seen = []
        deadline = time.time() + 120
        while time.time() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if "waiting" in line or not line:
                break
        assert "a_only/seed0: another run is working on it" in seen[-1], "".join(seen)
        assert f"{d / 'unit.lock'}" in seen[-1]
        (d / "metrics.json").write_bytes(metrics)  # the other run completes the unit
    out, err = proc.communicate(timeout=300)
    err = "".join(seen) + err
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "a_only/seed0: done already" in err and "training" not in err
    assert trained.mtimes() == before
    assert trained.results.read_bytes() == trained.original


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    target = tmp_path / "unit"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from i2m2bench.fileio import locked\n"
        f"with locked(Path({str(target)!r})):\n    print('held', flush=True); time.sleep(600)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    waited = []
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    t0 = time.time()
    with fileio.locked(target, on_wait=waited.append):
        pass
    assert time.time() - t0 < 5 and waited == [] and (tmp_path / "unit.lock").exists()


# ------------------------------------------------------------------------------ temporary files
def test_temporary_files_have_unique_names_with_the_pid(tmp_path):
    target = tmp_path / "model.pt"
    names = set()
    for _ in range(20):
        fd, tmp = fileio._temp_beside(target)
        os.close(fd)
        names.add(os.path.basename(tmp))
    assert len(names) == 20
    assert all(n.startswith(f".model.pt.{os.getpid()}.") and n.endswith(".tmp") for n in names)
    assert all(fileio.is_temporary(tmp_path / n) for n in names)


def test_many_writers_of_one_file_never_collide(tmp_path):
    target = tmp_path / "model.pt"
    code = ("import sys; from pathlib import Path; from i2m2bench.harness.checkpoints import save_checkpoint\n"
            "import torch\n"
            f"for i in range(30):\n"
            f"    save_checkpoint(Path({str(target)!r}), {{'w': torch.full((100,), float(sys.argv[1]))}})")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(k)], cwd=ROOT, stderr=subprocess.PIPE,
                              text=True) for k in range(4)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    state = checkpoints.load_checkpoint(target)
    assert float(state["w"][0]) in (0.0, 1.0, 2.0, 3.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


# ------------------------------------------------------------------------------ a full disk
def _fail_when_writing(monkeypatch, fragment):
    """``os.fsync`` fails with ENOSPC for temporary files whose path holds ``fragment`` (the data
    is then written but cannot be made durable: a partial file exists until it is removed)."""
    real = os.fsync

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if fragment in name:
            assert os.path.getsize(name) > 0  # a partial file is on disk at this point
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_checkpoint_write_on_a_full_disk_leaves_no_partial_file_and_the_rerun_resumes(
        trained, capsys, monkeypatch):
    _fail_when_writing(monkeypatch, "/i2m2/")
    before = trained.mtimes()
    code, out, err = trained.run(capsys=capsys, methods=(*SMALL, "i2m2"))
    assert code == 2
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    d = next(trained.runs.glob(f"{BOARD}/i2m2/*/seed0"))
    assert errors[0] == (f"error: {d / 'model.pt'}: cannot write the checkpoint (No space left on "
                         "device); nothing was written; rerun the same command once there is room: "
                         "the unit is trained again")
    assert not (d / "model.pt").exists() and not (d / "metrics.json").exists()
    assert [p.name for p in d.iterdir() if p.name.endswith(".tmp")] == []
    assert trained.results.read_bytes() == trained.original  # nothing written is lost
    assert trained.mtimes() == before

    monkeypatch.undo()
    code, out, err = trained.run(capsys=capsys, methods=(*SMALL, "i2m2"))
    assert code == 0 and "Traceback" not in err
    assert "i2m2/seed0: training i2m2" in err and err.count("done already") == 3
    assert (d / "model.pt").exists() and (d / "metrics.json").exists()
    rows = read_rows(trained.results)
    assert {r["method"] for r in rows} == {*SMALL, "i2m2"}


def test_a_results_write_on_a_full_disk_names_the_file(tmp_path, monkeypatch, make_row):
    path = tmp_path / "results" / "x.jsonl"
    store.upsert_unit_rows(path, [make_row("alpha", 0, "test", 0.5)])
    before = path.read_bytes()
    _fail_when_writing(monkeypatch, "x.jsonl")
    with pytest.raises(fileio.WriteError) as exc:
        store.upsert_unit_rows(path, [make_row("beta", 0, "test", 0.6)])
    assert exc.value.errno == errno.ENOSPC
    assert str(exc.value) == (f"{path}: cannot write the results file (No space left on device); "
                              "the old file is left as it was")
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".tmp"] == []


def test_temporary_files_of_a_killed_run_are_removed_when_the_unit_is_trained_again(trained, capsys):
    d = trained.unit_dir("b_only")
    leftover = d / f".model.pt.{os.getpid() + 1}.abcd1234.tmp"
    leftover.write_bytes(b"partial")
    (d / "metrics.json").unlink()  # the killed run never completed it
    code, out, err = trained.run(capsys=capsys, methods=("b_only",))
    assert code == 0 and "b_only/seed0: training" in err
    assert not leftover.exists()
    assert trained.results.read_bytes() != b""
    assert {r["method"] for r in read_rows(trained.results)} == set(SMALL)
