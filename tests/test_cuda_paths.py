"""The CUDA code paths: deterministic set-up, ``train.precision``, splits placed on the GPU or
streamed from pinned host memory. What can run on the CPU runs here; the rest needs CUDA and
skips cleanly without it (``scripts/gpu_check.sh`` runs it on a GPU)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import i2m2bench
from i2m2bench.harness.config import SettingError, TrainConfig
from i2m2bench.harness.runner import run_suite
from i2m2bench.harness.seeding import deterministic_setup
from i2m2bench.types import HostSplit, Split, place_split

ROOT = Path(__file__).resolve().parents[1]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SPECTRUM = ROOT / "gin" / "dependency_spectrum_smoke.gin"
ONE_SETTING = ["suite.sweep = {'p0.50': {'inter_share': 0.5}}"]


def _task():
    return i2m2bench.build_task("dependency_spectrum", n_train=60, n_eval=20, classes=4, dim=8)


def _batches_equal(a, b, spec):
    order = torch.randperm(len(a), generator=torch.Generator().manual_seed(0))
    for x, y in zip(a.batches(spec, 16, order), b.batches(spec, 16, order), strict=True):
        assert torch.equal(x.target.cpu(), y.target.cpu())
        assert all(torch.equal(x.inputs[m].cpu(), y.inputs[m].cpu()) for m in x.inputs)


def test_deterministic_setup_fixes_cublas_before_cuda_work(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    deterministic_setup()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's choice is kept
    deterministic_setup()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_host_split_gives_the_batches_of_the_split_it_holds():
    task = _task()
    split = task.splits["train"]
    host = HostSplit(split, "cpu")
    _batches_equal(split, host, task.spec)
    m = task.spec.modalities[0].name
    assert torch.equal(host.mean(m), split.mean(m))
    assert type(place_split(host, "cpu")) is Split  # back to an ordinary split off the GPU


def test_place_split_keeps_cpu_splits_in_memory():
    split = _task().splits["train"]
    assert type(place_split(split, "cpu")) is Split


def test_precision_is_checked_and_recorded(tmp_path):
    with pytest.raises(SettingError, match="train.precision must be one of 'fp32', 'bf16'; got 'fp16'"):
        TrainConfig(precision="fp16")
    kw = dict(methods=["a_only", "late_fusion"], out=tmp_path / "runs", progress=False,
              log=lambda s: None)
    run_suite([SPECTRUM], ONE_SETTING + ["train.precision = 'bf16'"], results_dir=tmp_path / "a", **kw)
    run_suite([SPECTRUM], ONE_SETTING + ["train.precision = 'bf16'"], results_dir=tmp_path / "b",
              force=True, **kw)
    run_suite([SPECTRUM], ONE_SETTING, results_dir=tmp_path / "c", **kw)

    def units(d):
        lines = (tmp_path / d / "results" / "dependency_spectrum_smoke.jsonl").read_text().splitlines()
        return {r["method"]: r for r in map(json.loads, lines) if r.get("record") == "unit"}

    a, b, c = units("a"), units("b"), units("c")
    assert {r["train"]["precision"] for r in a.values()} == {"bf16"}
    assert {r["train"]["precision"] for r in c.values()} == {"fp32"}
    assert a["late_fusion"]["unit_hash"] != c["late_fusion"]["unit_hash"]  # its own unit
    # bf16 autocast is deterministic too: a forced retrain repeats every score bit for bit
    assert [s["value"] for s in a["late_fusion"]["scores"]] == [s["value"] for s in b["late_fusion"]["scores"]]
    # and it really ran in bfloat16: the numbers moved
    assert a["late_fusion"]["scores"] != c["late_fusion"]["scores"]


# ------------------------------------------------------------------------------ on a GPU
@cuda
def test_large_splits_stream_from_pinned_memory_small_ones_move():
    task = _task()
    split = task.splits["train"]
    small = place_split(split, "cuda", free_bytes=1 << 40)
    big = place_split(split, "cuda", free_bytes=16)
    assert type(small) is Split and small.inputs["a"].is_cuda
    assert type(big) is HostSplit and big.inputs["a"].is_pinned() and big.target.is_cuda
    _batches_equal(small, big, task.spec)


@cuda
def test_cuda_reruns_are_bit_identical_and_name_the_gpu(tmp_path):
    kw = dict(out=tmp_path / "runs", progress=False, device="cuda", log=lambda s: None)
    run_suite([SPECTRUM], ONE_SETTING, results_dir=tmp_path / "a", **kw)
    run_suite([SPECTRUM], ONE_SETTING, results_dir=tmp_path / "b", force=True, **kw)

    def read(d):
        lines = [json.loads(x) for x in (tmp_path / d / "results" / "dependency_spectrum_smoke.jsonl")
                 .read_text().splitlines()]
        prov = [r for r in lines if r.get("record") == "provenance"]
        return {r["method"]: r["scores"] for r in lines if r.get("record") == "unit"}, prov

    (a, prov), (b, _) = read("a"), read("b")
    assert a == b and len(a) >= 10
    gpu = torch.cuda.get_device_name()
    assert all(p["device"] == f"cuda:{gpu}" and p["numerics"]["gpu"] == gpu for p in prov)
