"""Data-parallel training (torchrun / DDP, Gloo on CPU) against one process with the same global
batch: the same loss at every step, the same weights, rows written once."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import i2m2bench
from i2m2bench.data.common.disk import save_split
from i2m2bench.harness import distributed
from i2m2bench.harness.config import TrainConfig
from i2m2bench.harness.seeding import seed_everything
from i2m2bench.harness.training import train_model
from i2m2bench.types import shard_bounds, shard_rows

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"inter": "late_fusion", "inter_options": {"operator": "concat", "width": 32, "hidden": 64},
           "intra_options": {"width": 32, "hidden": 32}}  # I2M2 of the spectrum smoke: no BN, no dropout


# ------------------------------------------------------------------------------ sharding
@pytest.mark.parametrize("n,world", [(64, 2), (63, 2), (10, 3), (7, 4), (1, 2), (5, 1)])
def test_shards_partition_every_batch(n, world):
    index = torch.arange(100, 100 + n)
    parts = [shard_rows(index, (r, world)) for r in range(world)]
    sizes = [shard_bounds(n, r, world)[1] - shard_bounds(n, r, world)[0] for r in range(world)]
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
    real = [p for p, size in zip(parts, sizes) if size]
    assert torch.equal(torch.cat(real), index)  # contiguous, in order, each row once
    for p, size in zip(parts, sizes):  # an empty share gets the first row as a stand-in
        assert len(p) == (size or 1) and (size or torch.equal(p, index[:1]))
    assert shard_rows(index, None) is index


def test_disk_and_memory_splits_shard_alike(tmp_path):
    task = i2m2bench.build_task("dependency_spectrum", n_train=50, n_eval=20, classes=4, dim=8)
    mem = task.splits["train"]
    disk = save_split(mem, tmp_path / "train")
    order = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    for shard in [(0, 3), (2, 3)]:
        a = list(mem.batches(task.spec, 16, order, shard))
        b = list(disk.batches(task.spec, 16, order, shard))
        assert len(a) == len(b) == 4
        for x, y in zip(a, b):
            assert torch.equal(x.target, y.target)
            assert all(torch.equal(x.inputs[m], y.inputs[m]) for m in x.inputs)


# ------------------------------------------------------------------------------ DDP vs one process
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(n_train: int, batch: int, epochs: int = 2):
    """(per-step losses, final weights) of I2M2 trained on the spectrum task from seed 0."""
    torch.set_num_threads(1)
    task = i2m2bench.build_task("dependency_spectrum", n_train=n_train, n_eval=64, classes=4, dim=16,
                                inter_share=0.5)
    gen = seed_everything(0)
    model = i2m2bench.build_fusion("i2m2", task.spec, **OPTIONS)
    cfg = TrainConfig(lr=0.003, optimizer="adam", epochs=epochs, batch_size=batch, patience=None)
    steps = []
    train_model(model, task.splits["train"], task.splits["val"], task.spec, cfg, gen, progress=False,
                on_step=lambda e, s, loss: steps.append(loss))
    return steps, {k: v.clone() for k, v in model.state_dict().items()}


def _rank_main(rank: int, world: int, port: int, n_train: int, batch: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        steps, state = _train(n_train, batch)
        assert distributed.world_size() == world and distributed.rank() == rank
        torch.save({"steps": steps, "state": state}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("n_train,batch", [(250, 64), (257, 64)])  # short last batch; a 1-row one
def test_two_gloo_ranks_match_one_process_step_by_step(tmp_path, n_train, batch):
    mp.spawn(_rank_main, args=(2, _free_port(), n_train, batch, str(tmp_path)), nprocs=2, join=True)
    one_steps, one_state = _train(n_train, batch)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert len(one_steps) == 2 * -(-n_train // batch)
    for got in ranks:
        assert len(got["steps"]) == len(one_steps)
        np.testing.assert_allclose(got["steps"], one_steps, rtol=0, atol=1e-5)
        for k, v in one_state.items():
            torch.testing.assert_close(got["state"][k], v, rtol=1e-4, atol=1e-5)
    # and the two ranks hold the same weights (DDP's averaged gradients, the same optimiser steps)
    for k in one_state:
        torch.testing.assert_close(ranks[0]["state"][k], ranks[1]["state"][k], rtol=0, atol=1e-7)


# ------------------------------------------------------------------------------ torchrun, end to end
def _suite_run(tmp_path: Path, name: str, torchrun: bool) -> Path:
    out = tmp_path / name
    args = ["-m", "i2m2bench", "run", "--gin", str(ROOT / "gin" / "dependency_spectrum_smoke.gin"),
            "--methods", "a_only", "b_only", "late_fusion", "i2m2_lf",
            "--gin-param", "suite.sweep = {'p0.50': {'inter_share': 0.5}}",
            "--out", str(out / "runs"), "--leaderboard-dir", str(out / "lb"), "--no-progress"]
    if torchrun:
        args = ["-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-port", str(_free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def _records(path: Path) -> tuple[list[dict], dict]:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    return ([r for r in lines if r.get("record") == "unit"],
            {r["id"]: r for r in lines if r.get("record") == "provenance"})


def test_torchrun_two_ranks_writes_each_row_once_with_the_weights_of_one_process(tmp_path):
    ddp, one = _suite_run(tmp_path, "ddp", True), _suite_run(tmp_path, "one", False)
    results = "lb/results/dependency_spectrum_smoke.jsonl"
    ddp_units, ddp_prov = _records(ddp / results)
    one_units, _ = _records(one / results)
    keys = [(r["method"], r["seed"], r["unit_hash"]) for r in ddp_units]
    assert len(keys) == len(set(keys)) == 4  # rank 0 alone wrote, once per unit
    assert sorted(keys) == sorted((r["method"], r["seed"], r["unit_hash"]) for r in one_units)
    assert {p["numerics"].get("world_size") for p in ddp_prov.values()} == {2}
    for ckpt in sorted((one / "runs").rglob("model.pt")):
        twin = ddp / "runs" / ckpt.relative_to(one / "runs")
        a, b = torch.load(ckpt, weights_only=True), torch.load(twin, weights_only=True)
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)
        h1 = json.loads((ckpt.parent / "unit.json").read_text())["history"]
        h2 = json.loads((twin.parent / "unit.json").read_text())["history"]
        np.testing.assert_allclose([h["train_loss"] for h in h2], [h["train_loss"] for h in h1],
                                   rtol=0, atol=1e-5)
    assert (ddp / "lb" / "dependency_spectrum_smoke.md").exists()


def test_world_size_without_torchrun_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="RANK, MASTER_ADDR, MASTER_PORT is not set: start the run "
                                           "with torchrun"):
        distributed.init_from_env(torch.device("cpu"))
    assert not dist.is_initialized()
