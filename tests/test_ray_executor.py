"""``run --executor ray`` on a local Ray instance (``ray.init(num_cpus=2)``): the AV-MNIST and
dependency-spectrum smoke suites give the same rows as the in-process run (timings aside),
resume after the driver is killed, and an unreachable address is a clear error."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from i2m2bench.harness.errors import ConfigError
from i2m2bench.harness.executors import check_reachable, make_executor
from i2m2bench.harness.runner import run_suite
from i2m2bench.harness.store import TIMING_FIGURES

ray = pytest.importorskip("ray")  # installed by the dev extra: CI runs these

ROOT = Path(__file__).resolve().parents[1]
SUITES = {"avmnist_smoke.gin": "avmnist_smoke-embedded-avdigits.jsonl",
          "dependency_spectrum_smoke.gin": "dependency_spectrum_smoke.jsonl"}


def rows(path: Path) -> dict:
    """Unit records by (setting, method, seed), with their provenance's numerics inlined, their
    dates and timing figures left out."""
    out, prov = {}, {}
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r.get("record") == "provenance":
            prov[r["id"]] = r
            continue
        r = dict(r)
        r["numerics"] = prov[r.pop("provenance")]["numerics"]
        r.pop("date")
        r["info"] = {k: v for k, v in r["info"].items() if k not in TIMING_FIGURES}
        out[r.get("setting"), r["method"], r["seed"]] = r
    return out


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """Each smoke suite in this process with one torch thread (a Ray unit's CPU share)."""
    out = tmp_path_factory.mktemp("inproc")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for gin in SUITES:
            run_suite([ROOT / "gin" / gin], out=out / "runs", results_dir=out / "lb", progress=False,
                      log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("gin", list(SUITES))
def test_ray_rows_equal_the_in_process_rows(local_ray, in_process, tmp_path, gin):
    lines = []
    run = run_suite([ROOT / "gin" / gin], out=tmp_path / "runs", results_dir=tmp_path / "lb",
                    progress=False, executor="ray", log=lines.append)
    assert not run.failures
    assert any("on a Ray worker" in line for line in lines)
    got, want = rows(tmp_path / "lb" / "results" / SUITES[gin]), rows(in_process / "lb" / "results" / SUITES[gin])
    assert got.keys() == want.keys() and len(got) >= 12
    for key in want:
        assert got[key] == want[key], key
    assert (tmp_path / "lb" / SUITES[gin].replace(".jsonl", ".md")).exists()
    # every unit was trained by a worker; the I2M2 units after their experts (one run before
    # them would have found no expert checkpoint and failed: ``run.failures`` is empty above)
    assert all(item.action == "train" for item in run.plan)


def test_resume_after_the_driver_is_killed(in_process, tmp_path):
    out, gin = tmp_path, "dependency_spectrum_smoke.gin"
    cmd = [sys.executable, "-m", "i2m2bench", "run", "--gin", str(ROOT / "gin" / gin), "--executor",
           "ray", "--out", str(out / "runs"), "--leaderboard-dir", str(out / "lb"), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    results = out / "lb" / "results" / SUITES[gin]
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:  # until the driver has written some rows, not all
            if results.exists() and len(rows(results)) >= 3:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no rows within 300 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray instance it started
        proc.wait()
    done_before = len(list((out / "runs").rglob("metrics.json")))
    assert 3 <= done_before < 30
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("done already") >= done_before - 2  # a unit mid-write may be redone
    assert rows(results) == rows(in_process / "lb" / "results" / SUITES[gin])


def test_unreachable_address_is_a_clear_error():
    res = subprocess.run([sys.executable, "-m", "i2m2bench", "run", "--gin",
                          str(ROOT / "gin" / "dependency_spectrum_smoke.gin"), "--executor", "ray",
                          "--ray-address", "127.0.0.1:1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "--ray-address 127.0.0.1:1: nothing answers at 127.0.0.1:1" in res.stderr
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        check_reachable("no-port-here")


def test_executor_options_are_checked():
    with pytest.raises(ConfigError, match="expected one of in-process, ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--ray-address applies to --executor ray"):
        make_executor("in-process", ray_address="127.0.0.1:6379")
    with pytest.raises(ConfigError, match="--ray-cpus-per-unit must be a whole number >= 1"):
        make_executor("ray", cpus_per_unit=0)


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'i2m2bench\[ray\]'"):
        make_executor("ray")
