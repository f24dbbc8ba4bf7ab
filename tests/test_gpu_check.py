"""``scripts/gpu_check.sh`` and what it relies on: ``compare --exact`` (bit-identical rows) and
``leaderboard --check`` over ``leaderboards/gpu``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from i2m2bench.harness.store import exact_differences

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_without_cuda_and_writes_nothing(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_OUT": str(tmp_path / "gpu")}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "gpu_check: no CUDA device here" in res.stderr
    assert not (tmp_path / "gpu").exists()


def _write(path: Path, units: list[dict]) -> None:
    prov = {"record": "provenance", "id": "p1", "device": "cpu", "git_commit": "x",
            "torch_version": "t", "i2m2bench_version": "v", "python_version": "3", "plugins": {},
            "numerics": {"threads": 1}}
    base = {"record": "unit", "board": "b", "suite": "s", "dataset": "d", "dataset_version": "1",
            "data_source": "embedded", "label": "L", "family": "f", "fusion": "f", "recipe": "joint",
            "trained": True, "config_hash": "c", "train": {}, "n_train": 1, "layout": "default",
            "setting": None, "reference_method": None, "task_options": {}, "metrics": ["accuracy"],
            "provenance": "p1", "date": "2026-01-01T00:00:00+00:00"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in [prov, *({**base, **u} for u in units)]) + "\n")


def _unit(method, value, seconds=1.0, epochs=3):
    return {"method": method, "seed": 0, "unit_hash": f"h{method}",
            "scores": [{"protocol": "test", "kind": "test", "metric": "accuracy", "value": value,
                        "higher_is_better": True, "curve": None, "level": None}],
            "info": {"train_seconds": seconds, "epochs_run": epochs}}


def test_exact_differences_see_one_ulp_and_ignore_timings(tmp_path):
    a, b = tmp_path / "a" / "results" / "x.jsonl", tmp_path / "b" / "results" / "x.jsonl"
    _write(a, [_unit("m", 0.5), _unit("n", float("nan"))])
    _write(b, [_unit("m", 0.5, seconds=9.0), _unit("n", float("nan"), seconds=2.0)])
    assert exact_differences(a.parent, b.parent) == []
    _write(b, [_unit("m", float.fromhex("0x1.0000000000001p-1")), _unit("n", float("nan"), epochs=4)])
    diffs = exact_differences(a.parent, b.parent)
    assert len(diffs) == 2
    assert "m/0/hm score ('test', 'accuracy'): 0.5 vs 0.5000000000000001" in diffs[0]
    assert "n/0/hn figure epochs_run: 3 vs 4" in diffs[1]
    _write(b, [_unit("m", 0.5)])
    assert exact_differences(a, b) == [f"x.jsonl: n/0/hn only in {a}"]
    res = subprocess.run([sys.executable, "-m", "i2m2bench", "compare", "--exact", str(tmp_path / "a"),
                          str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "1 difference(s)" in res.stdout


def test_exact_differences_without_the_unit_hash_match_by_method_and_seed(tmp_path):
    """A refactoring moves every unit hash; --ignore-unit-hash still compares the numbers."""
    a, b = tmp_path / "a" / "results" / "x.jsonl", tmp_path / "b" / "results" / "x.jsonl"
    _write(a, [_unit("m", 0.5), _unit("n", 0.25)])
    _write(b, [{**_unit("m", 0.5), "unit_hash": "new-m"}, {**_unit("n", 0.25), "unit_hash": "new-n"}])
    assert len(exact_differences(a.parent, b.parent)) == 4  # by hash: every unit on one side only
    assert exact_differences(a.parent, b.parent, by_hash=False) == []
    _write(b, [{**_unit("m", 0.5), "unit_hash": "new-m"}, {**_unit("n", 0.375), "unit_hash": "new-n"}])
    assert exact_differences(a.parent, b.parent, by_hash=False) == [
        "x.jsonl: n/0 score ('test', 'accuracy'): 0.25 vs 0.375"]
    # two configurations of one unit on a side: no silent pick
    _write(b, [{**_unit("m", 0.5), "unit_hash": "new-m"}, _unit("m", 0.5), _unit("n", 0.25)])
    assert exact_differences(a.parent, b.parent, by_hash=False) == [
        f"x.jsonl: m/0 has 2 configurations in {b.parent} (match by unit hash)"]
    res = subprocess.run([sys.executable, "-m", "i2m2bench", "compare", "--exact",
                          "--ignore-unit-hash", str(tmp_path / "a"), str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "1 difference(s)" in res.stdout


def test_leaderboard_check_covers_committed_gpu_figures(tmp_path):
    lb = tmp_path / "lb"
    shutil.copytree(ROOT / "leaderboards" / "bench", lb / "bench")
    run = lambda: subprocess.run([sys.executable, "-m", "i2m2bench", "leaderboard",  # noqa: E731
                                  "--leaderboard-dir", str(lb)], capture_output=True, text=True,
                                 timeout=300)
    assert run().returncode == 0
    assert "**GPU figures pending**" in (lb / "poe_kernel.md").read_text()
    shutil.copytree(lb / "bench", lb / "gpu" / "bench")  # as gpu_check.sh leaves it, rendered
    subprocess.run([sys.executable, "-m", "i2m2bench", "leaderboard", "--leaderboard-dir",
                    str(lb / "gpu")], check=True, capture_output=True, timeout=300)
    assert "On a GPU" not in (lb / "gpu" / "poe_kernel.md").read_text()
    check = [sys.executable, "-m", "i2m2bench", "leaderboard", "--check", "--leaderboard-dir", str(lb)]
    res = subprocess.run(check, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and f"stale: {lb / 'poe_kernel.md'}" in res.stderr  # still "pending"
    assert run().returncode == 0
    assert "[gpu/poe_kernel.md](gpu/poe_kernel.md)" in (lb / "poe_kernel.md").read_text()
    assert subprocess.run(check, capture_output=True, timeout=300).returncode == 0
    md = lb / "gpu" / "poe_kernel.md"
    md.write_text(md.read_text() + "edited by hand\n")
    res = subprocess.run(check, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1 and f"stale: {md}" in res.stderr
