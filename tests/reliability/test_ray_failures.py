"""Ray: the README's own form ``--gin toy_smoke.gin`` (an installed suite's name) resolves on the
workers; a unit that raises on a worker is one line naming the unit (its traceback only with
``--debug``); CPUs or GPUs per unit that no node of the cluster has are refused before anything
is submitted, instead of waiting for ever. Each run is guarded by a timeout (a hang fails)."""
import os
import re
import signal
import threading

import pytest

from i2m2bench.harness.errors import ConfigError

from .conftest import TOY

ray = pytest.importorskip("ray")

QUICK = ["--methods", "a_only", "--seeds", "0", "--gin-param", "train.epochs = 1"]


LIMIT = 60  # seconds a run of this module may take before it counts as hung


@pytest.fixture
def no_hang():
    """A run still going after LIMIT seconds is interrupted (Ctrl-C: the CLI stops, exit 130,
    which fails the test's checks) instead of waiting for ever: ``ray.get`` answers SIGINT."""
    timer = threading.Timer(LIMIT, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs and no GPU (whatever the machine has), shared by this module."""
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def one_error_line(err: str) -> str:
    """The message of a refused run: exactly one ``error:`` line, no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and 'File "' not in err and "ray::" not in err, err
    return lines[0]


@pytest.mark.slow
def test_installed_suite_name_resolves_on_the_workers(local_ray, no_hang, board, capsys,
                                                      monkeypatch, tmp_path):
    from i2m2bench.cli import main

    work = tmp_path / "elsewhere"  # no toy_smoke.gin here: the name is the installed suite's
    work.mkdir()
    monkeypatch.chdir(work)
    code = main(["run", "--gin", "toy_smoke.gin", *QUICK, "--executor", "ray", "--out",
                 str(board.out), "--leaderboard-dir", str(board.path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "a_only/seed0: train on a Ray worker" in err, err
    assert (board.path / "results" / "toy_smoke-embedded-toy.jsonl").exists()
    assert board.intact(), "earlier results were changed"


@pytest.mark.slow
def test_a_unit_failing_on_a_worker_is_one_line(local_ray, no_hang, trained, capsys):
    ckpt = trained.unit_dir("a_only") / "model.pt"  # the expert i2m2 starts from, damaged
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    board = trained.board_md.read_bytes()
    code, _, err = trained.run("--executor", "ray", capsys=capsys, methods=("i2m2",))
    assert code == 2, err
    line = one_error_line(err)
    assert re.match(r"error: unit i2m2/seed0 \(on a Ray worker\): .*model\.pt: cannot load the "
                    r"checkpoint of a_only/seed0 .*--force", line), line
    assert "(run with --debug for the traceback)" in err
    assert trained.results.read_bytes() == trained.original
    assert trained.board_md.read_bytes() == board
    assert not list(trained.runs.rglob("i2m2/*/seed0/model.pt"))
    # --debug: the error, with the worker's traceback as its cause
    with pytest.raises(ConfigError, match=r"^unit i2m2/seed0 \(on a Ray worker\)") as info:
        trained.run("--executor", "ray", "--debug", methods=("i2m2",))
    assert isinstance(info.value.__cause__, ray.exceptions.RayTaskError)
    assert "recipes.py" in str(info.value.__cause__)
    assert trained.results.read_bytes() == trained.original


def test_worker_errors_become_one_line():
    """Any error a worker raises (or a worker that dies) becomes one line naming the unit."""
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
                                    r"node, and the Ray cluster \(local\) has 2 CPUs; ask for at most 2"),
    ("--ray-gpus-per-unit", "1", r"--ray-gpus-per-unit 1: a unit needs 1 GPU on one node, and the "
                                 r"Ray cluster \(local\) has no GPUs; leave --ray-gpus-per-unit out"),
])
def test_unsatisfiable_resources_are_refused(local_ray, no_hang, refused, board, option, value,
                                             pattern):
    err = refused(pattern, "--gin", str(TOY), *QUICK, "--executor", "ray", option, value)
    assert re.search(pattern, one_error_line(err))
    assert not list(board.out.rglob("model.pt")) and not list(board.out.rglob("unit.json"))
