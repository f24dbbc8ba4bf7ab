"""Faults: a killed suite resumes to exactly the rows of a clean run; concurrent suites share one
results file; a NaN loss fails only its unit; a full disk leaves earlier results intact; the
same seed twice gives the same rows."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from i2m2bench.fileio import locked
from i2m2bench.harness import store
from i2m2bench.harness.runner import run_suite
from i2m2bench.harness.store import read_rows

from .conftest import ROOT, TOY

SCORED = ("val", "test", "shift:noisier")


def _default_sigint():
    # A shell that starts a job in the background (`cmd &`) makes it ignore SIGINT, and Python
    # keeps an inherited SIG_IGN: restore the default so that the CLI sees Ctrl-C as a user would.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "i2m2bench", *args, "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint, **kw)


def scored(folder):
    rows = read_rows(next((folder / "results").glob("*.jsonl")))
    return sorted((r["method"], r["seed"], r["protocol"], r["unit_hash"], r["value"]) for r in rows
                  if r["protocol"] in SCORED)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_then_rerun_gives_the_rows_of_a_clean_run(tmp_path, sig):
    clean = cli("run", "--gin", str(TOY), "--out", str(tmp_path / "c_runs"),
                "--leaderboard-dir", str(tmp_path / "c_lb"))
    assert clean.wait(timeout=600) == 0, clean.stderr.read()

    # The toy suite trains a unit in well under a second, so a kill timed by polling can come
    # after the last unit (it once did on a slow CI machine). Hold the lock of the I2M2 unit of
    # seed 0 (its folder is the clean run's, under the victim's --out): the victim completes
    # the units before it, then waits there, and the signal lands mid-suite every time.
    gate = next((tmp_path / "c_runs").rglob("i2m2/*/seed0")).relative_to(tmp_path / "c_runs")
    (tmp_path / "runs" / gate).mkdir(parents=True)
    with locked(tmp_path / "runs" / gate / "unit"):
        victim = cli("run", "--gin", str(TOY), "--out", str(tmp_path / "runs"),
                     "--leaderboard-dir", str(tmp_path / "lb"))
        deadline = time.time() + 300
        while (len(list((tmp_path / "runs").rglob("metrics.json"))) < 3
               and time.time() < deadline and victim.poll() is None):
            time.sleep(0.05)
        victim.send_signal(sig)
        assert victim.wait(timeout=60) != 0, victim.stderr.read()
    done_before = len(list((tmp_path / "runs").rglob("metrics.json")))
    assert 3 <= done_before < 12, "the kill must land mid-suite"
    rows_file = tmp_path / "lb" / "results" / "toy_smoke-embedded-toy.jsonl"
    assert all(json.loads(line) for line in rows_file.read_text().splitlines())  # no torn row

    again = cli("run", "--gin", str(TOY), "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb"))
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert err.count("done already") >= done_before  # completed units were skipped
    assert scored(tmp_path / "lb") == scored(tmp_path / "c_lb")


@pytest.mark.slow
def test_two_suites_write_one_results_file_concurrently(tmp_path):
    lb = str(tmp_path / "lb")
    a = cli("run", "--gin", str(TOY), "--methods", "a_only", "b_only", "intra_only",
            "--out", str(tmp_path / "ra"), "--leaderboard-dir", lb)
    b = cli("run", "--gin", str(TOY), "--methods", "late_fusion", "early_fusion",
            "--out", str(tmp_path / "rb"), "--leaderboard-dir", lb)
    assert a.wait(timeout=600) == 0 and b.wait(timeout=600) == 0, a.stderr.read() + b.stderr.read()
    rows = read_rows(tmp_path / "lb" / "results" / "toy_smoke-embedded-toy.jsonl")
    units = {(r["method"], r["seed"]) for r in rows}
    assert units == {(m, s) for m in ("a_only", "b_only", "intra_only", "late_fusion", "early_fusion")
                     for s in (0, 1)}
    check = subprocess.run([sys.executable, "-m", "i2m2bench", "leaderboard", "--check",
                            "--leaderboard-dir", lb], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr  # the board reflects every row


def test_nan_loss_fails_its_unit_and_the_others_go_on(tmp_path, capsys):
    from i2m2bench.cli import main

    code = main(["run", "--gin", str(TOY), "--seeds", "0", "--out", str(tmp_path / "runs"),
                 "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress",
                 "--gin-param", "a_only/train.lr = 1e30", "--gin-param", "a_only/train.grad_clip = None"])
    err = capsys.readouterr().err
    assert code == 3
    assert "a_only/seed0: FAILED: a_only/seed0: loss is" in err and "at epoch 0, step" in err
    assert "i2m2/seed0: FAILED: expert source a_only/seed0 failed" in err
    rows = read_rows(tmp_path / "lb" / "results" / "toy_smoke-embedded-toy.jsonl")
    failed = {r["method"] for r in rows if r["metric"] == "failed"}
    ok = {r["method"] for r in rows if r["protocol"] == "test"}
    assert failed == {"a_only", "i2m2"} and ok == {"b_only", "intra_only", "late_fusion", "early_fusion"}
    assert (next((tmp_path / "runs").rglob("a_only/*/seed0/failed.json"))).exists()
    md = (tmp_path / "lb" / "toy_smoke-embedded-toy.md").read_text()
    assert "| 0 (1 failed)" in md


def test_full_disk_while_writing_results_keeps_the_old_file(tmp_path, monkeypatch, make_row):
    path = tmp_path / "results" / "x.jsonl"
    store.upsert_unit_rows(path, [make_row("alpha", 0, "test", 0.5)])
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        store.upsert_unit_rows(path, [make_row("alpha", 0, "test", 0.6)])
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".tmp"] == []


@pytest.mark.slow
def test_smoke_suite_twice_row_by_row(tmp_path):
    smoke = ROOT / "gin" / "avmnist_smoke.gin"
    runs = [run_suite([smoke], out=tmp_path / f"r{i}", results_dir=tmp_path / f"lb{i}", progress=False)
            for i in range(2)]
    rows = [sorted((r["method"], r["seed"], r["protocol"], r["unit_hash"], r["value"])
                   for r in read_rows(run.results_path) if r["protocol"] != "train") for run in runs]
    # 12 trained methods and the ensemble x (val, test, shift:dialects, missing:image,
    # missing:audio, missing_rate at 6 rates, perturb:audio:snr at 6 levels) + the evaluate_only
    # method x (val, 2 missing, missing_rate at 6 rates)
    assert rows[0] == rows[1] and len(rows[0]) == 13 * 17 + 9


def test_corrupt_expert_checkpoint_is_named(tmp_path, capsys):
    from i2m2bench.cli import main

    args = ["run", "--gin", str(TOY), "--seeds", "0", "--out", str(tmp_path / "runs"),
            "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress"]
    assert main(args + ["--methods", "a_only", "b_only", "late_fusion"]) == 0
    ckpt = next((tmp_path / "runs").rglob("a_only/*/seed0/model.pt"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    before = (tmp_path / "lb" / "results" / "toy_smoke-embedded-toy.jsonl").read_bytes()
    capsys.readouterr()
    assert main(args + ["--methods", "i2m2"]) == 2
    err = capsys.readouterr().err
    assert "a_only/" in err and "cannot load the checkpoint of a_only/seed0" in err and "--force" in err
    assert (tmp_path / "lb" / "results" / "toy_smoke-embedded-toy.jsonl").read_bytes() == before
