"""Ray: the README's own form ``--gin toy_smoke.gin`` (an installed suite's name) resolves on the
workers; a unit that raises on a worker is one line naming the unit (its traceback only with
``--debug``); CPUs or GPUs per unit that no node of the cluster has are refused before anything
is submitted, instead of waiting for ever.

Each run is the CLI in a process of its own (its own local Ray), in a session of its own, killed
with everything it started after ``LIMIT`` seconds: a hang fails the test, and nothing Ray does
(a raylet that dies takes its driver with it, exit 1) can end the pytest process itself."""
import os
import re
import signal
import subprocess
import sys

import pytest

from .conftest import TOY

ray = pytest.importorskip("ray")

QUICK = ["--methods", "a_only", "--seeds", "0", "--gin-param", "train.epochs = 1"]

LIMIT = 240  # seconds one CLI run may take (a Ray start included) before it counts as hung


def cli(*args: str, cwd=None) -> tuple[int, str]:
    """``python -m i2m2bench *args`` in a new session; (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "i2m2bench", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        _, err = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.communicate()
        pytest.fail(f"python -m i2m2bench {' '.join(args)}: still running after {LIMIT} s (hung)")
    return proc.returncode, err


def one_error_line(err: str) -> str:
    """The message of a refused run: exactly one ``error:`` line, no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and 'File "' not in err and "ray::" not in err, err
    return lines[0]


@pytest.mark.slow
def test_installed_suite_name_resolves_on_the_workers(board, tmp_path):
    work = tmp_path / "elsewhere"  # no toy_smoke.gin here: the name is the installed suite's
    work.mkdir()
    code, err = cli("run", "--gin", "toy_smoke.gin", *QUICK, "--executor", "ray", "--out",
                    str(board.out), "--leaderboard-dir", str(board.path), "--no-progress", cwd=work)
    assert code == 0, err
    assert "a_only/seed0: train on a Ray worker" in err, err
    assert (board.path / "results" / "toy_smoke-embedded-toy.jsonl").exists()
    assert board.intact(), "earlier results were changed"


@pytest.mark.slow
def test_a_unit_failing_on_a_worker_is_one_line(trained):
    ckpt = trained.unit_dir("a_only") / "model.pt"  # the expert i2m2 starts from, damaged
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    board = trained.board_md.read_bytes()
    args = ["run", "--gin", str(TOY), "--seeds", "0", "--methods", "i2m2", "--out",
            str(trained.runs), "--leaderboard-dir", str(trained.lb), "--no-progress",
            "--executor", "ray"]
    code, err = cli(*args)
    assert code == 2, err
    line = one_error_line(err)
    assert re.match(r"error: unit i2m2/seed0 \(on a Ray worker\): .*model\.pt: cannot load the "
                    r"checkpoint of a_only/seed0 .*--force", line), line
    assert "(run with --debug for the traceback)" in err
    assert trained.results.read_bytes() == trained.original
    assert trained.board_md.read_bytes() == board
    assert not list(trained.runs.rglob("i2m2/*/seed0/model.pt"))
    # --debug: the error, with the worker's traceback (the cause) above it
    code, err = cli(*args, "--debug")
    assert code != 0 and code != 2, err
    cause, _, last = err.rpartition("The above exception was the direct cause")
    assert "RayTaskError" in cause and "recipes.py" in cause, err
    assert re.search(r"ConfigError: unit i2m2/seed0 \(on a Ray worker\)", last), err
    assert trained.results.read_bytes() == trained.original


def test_worker_errors_become_one_line():
    """Any error a worker raises (or a worker that dies) becomes one line naming the unit."""
    from i2m2bench.harness.errors import ConfigError
    from i2m2bench.harness.executors import WorkerFailed, worker_error

    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom'
    err = worker_error("a_only/seed0", ray.exceptions.RayTaskError(
        "_ray_unit", trace, ValueError("boom\n  on two lines")))
    assert isinstance(err, WorkerFailed)
    assert str(err) == "unit a_only/seed0 failed on a Ray worker: ValueError: boom on two lines"
    err = worker_error("s/a_only/seed0", ray.exceptions.RayTaskError(
        "_ray_unit", trace, ConfigError("gin file x.gin: not found")))
    assert isinstance(err, ConfigError)
    assert str(err) == "unit s/a_only/seed0 (on a Ray worker): gin file x.gin: not found"
    err = worker_error("a_only/seed0", ray.exceptions.WorkerCrashedError())
    assert isinstance(err, WorkerFailed) and "\n" not in str(err)
    assert str(err).startswith("unit a_only/seed0: its Ray worker failed (WorkerCrashedError: ")


@pytest.mark.parametrize("option, value, pattern", [
    ("--ray-cpus-per-unit", "1000", r"--ray-cpus-per-unit 1000: a unit needs 1000 CPUs on one "
                                    r"node, and the Ray cluster \(local\) has (\d+) CPUs; ask for "
                                    r"at most \1"),
    ("--ray-gpus-per-unit", "1", r"--ray-gpus-per-unit 1: a unit needs 1 GPU on one node, and the "
                                 r"Ray cluster \(local\) has no GPUs; leave --ray-gpus-per-unit out"),
])
def test_unsatisfiable_resources_are_refused(board, option, value, pattern, monkeypatch):
    if option == "--ray-gpus-per-unit":
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a machine with GPUs shows none to Ray
    code, err = cli("run", "--gin", str(TOY), *QUICK, "--executor", "ray", option, value,
                    "--out", str(board.out), "--leaderboard-dir", str(board.path), "--no-progress")
    assert code == 2, err
    assert re.search(pattern, one_error_line(err)), err
    assert board.intact(), "earlier results were changed"
    assert not [p for p in board.path.glob("results/*.jsonl") if p.name != "demo.jsonl"]
    assert not list(board.out.rglob("model.pt")) and not list(board.out.rglob("unit.json"))


def test_only_unfinished_tasks_are_cancelled_and_not_forced(monkeypatch):
    """The tasks of a suite that failed part-way: those that ended (the failed one included) are
    left alone, the others cancelled without force (force-cancelling a task whose reply is in
    flight ended the driver with exit 1 on CI, after the error line)."""
    from i2m2bench.harness.executors import cancel_unfinished

    asked, cancelled = [], []

    def wait(refs, num_returns, timeout, fetch_local):
        asked.append((list(refs), num_returns, timeout, fetch_local))
        return [r for r in refs if r == "ended"], [r for r in refs if r != "ended"]

    monkeypatch.setattr(ray, "wait", wait)
    monkeypatch.setattr(ray, "cancel", lambda ref, force: cancelled.append((ref, force)))
    cancel_unfinished(["ended", "running", "queued"])
    assert asked == [(["ended", "running", "queued"], 3, 0, False)]
    assert cancelled == [("running", False), ("queued", False)]
    cancel_unfinished([])  # nothing submitted: Ray is not asked
    assert len(asked) == 1
