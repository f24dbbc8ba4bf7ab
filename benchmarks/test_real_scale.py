"""The full-scale rehearsal: every dataset from files in its official format, at the real
dataset's size (``scripts/make_full_scale.py``), through ``prepare`` and one training epoch of
I2M2, each run as a user runs it (``python -m i2m2bench`` in a child process measured from
outside: :func:`test_training_throughput.run_measured`).

Per dataset, in one run: the files written; the **input read bandwidth** (every input file read
once with plain 8 MiB reads, in the cache state ``prepare`` then meets); **prepare** (wall time,
peak resident set, the ratio of its time, less the start-up of ``python -m i2m2bench list`` measured
beside it, to reading its input bytes at that bandwidth); **one
epoch of I2M2** (``--methods <i2m2> --gin-param train.epochs=1``, the test protocol only: the
experts it starts from are trained for one epoch too) with its peak resident set, and the I2M2
unit's training step rate beside a **bare loop** stepping the same model (built by the suite's
planner from the same gin files), with the same optimiser and batch size, on batches already in
memory: the ratio isolates the data path (200 steps; FastMRI's 30, each 16 slices through three
ResNets).

The vision-language datasets' features come in as ``--own-features`` (random float16, the
official FIBER width 768: 2 x 768 = 1536 for NLVR2's pairs), so ``prepare`` is measured without a
backbone; the backbone's own cost is measured apart, per item, by extracting with the tiny random
FLAVA of the tests (``I2M2BENCH_BENCH_BACKBONE_ITEMS`` items, default 512), so that a GPU user
can scale it. FastMRI: ``I2M2BENCH_BENCH_FASTMRI_GIB`` GiB of volumes (default 10) and its
ResNets at stem width 8 (the official 64 is GPU work; the 3 GB memory note of
``test_fastmri_memory.py``), extrapolated linearly to the full training set.

Not run by CI (tens of minutes; up to about 15 GB of temporary files, each dataset's deleted after
its measurement). ``I2M2BENCH_BENCH_REAL_SCALE`` scales every count (default 1, the real size;
``I2M2BENCH_BENCH_QUICK=1``: 0.002). Results: ``leaderboards/bench/real_scale.json`` and
``leaderboards/real_scale.md`` (quick: under the temp folder; ``I2M2BENCH_BENCH_OUT=<folder>``:
there).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import QUICK, _cpu_name

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "scripts"))
import make_full_scale as mfs  # noqa: E402
from real_scale_page import render  # noqa: E402
from test_training_throughput import ROOT, run_measured  # noqa: E402

SCALE = 0.002 if QUICK else float(os.environ.get("I2M2BENCH_BENCH_REAL_SCALE", "1"))
FASTMRI_GIB = 0.02 if QUICK else float(os.environ.get("I2M2BENCH_BENCH_FASTMRI_GIB", "10"))
BACKBONE_ITEMS = 64 if QUICK else int(os.environ.get("I2M2BENCH_BENCH_BACKBONE_ITEMS", "512"))
FEATURE_WIDTH = 768  # FIBER's (the official heads read 2 x 768 for NLVR2's pairs)
BARE_STEPS = 20 if QUICK else 200
FASTMRI_BARE_STEPS = 30  # a FastMRI step is 16 slices through three ResNets: 30 steps are plenty
OUT = Path(os.environ.get("I2M2BENCH_BENCH_OUT")
           or (Path(tempfile.gettempdir()) if QUICK else ROOT / "leaderboards"))
NET8 = {"encoder": "preact_resnet18_gn", "width": 8, "hidden": 0}  # FastMRI's, stem width 8
RUNS = {  # dataset -> (gin file, the I2M2 method, prepare family or None, extra bindings)
    "avmnist": ("gin/avmnist.gin", "i2m2_lf", None, []),
    "mimic": ("gin/mimic.gin", "i2m2", "mimic", ["suite.sweep = {'mortality': {'task': 'mortality'}}"]),
    "fastmri": ("gin/fastmri.gin", "i2m2", "fastmri", [
        "i2m2/method.options = {'inter': 'early_fusion', 'inter_options': %s, 'intra_options': %s}"
        % ((NET8,) * 2)]),
    "vqa_vs": ("gin/vqa_vs.gin", "i2m2", "vqa-vs", []),
    "nlvr2": ("gin/nlvr2.gin", "i2m2", "nlvr2", []),
}


def code_version() -> str:
    """The commit the figures were measured at, ``+dirty`` when i2m2bench/, gin/, scripts/ or
    benchmarks/ differ from it."""
    import subprocess

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "i2m2bench", "gin", "scripts",
                            "benchmarks"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")


def read_bandwidth(root: Path, folder: str) -> dict:
    """Bytes of every file under ``root/folder`` and the rate of reading them once."""
    total, t0 = 0, time.perf_counter()
    for path in sorted((root / folder).rglob("*")):
        if path.is_file():
            with open(path, "rb", buffering=0) as fh:
                while chunk := fh.read(8 << 20):
                    total += len(chunk)
    wall = time.perf_counter() - t0
    return {"bytes": total, "seconds": wall, "mb_per_s": total / 2**20 / wall}


def own_features(root: Path, name: str) -> dict:
    """Random float16 features of every prepared split in the documented layout
    (``<dataset>/features/<split>/{ids,image,text,joint}.npy``), ids read from the files written."""
    base = root / name
    rng = np.random.default_rng(0)
    rows = {}
    if name == "vqa_vs":
        for split, stem in (("train", "Training"), ("val", "Val"), ("test", "IID-Test")):
            qs = json.loads((base / stem / f"{stem}-Ques.json").read_text())
            rows[split] = np.array([q["question_id"] for q in qs], np.int64)
    else:
        for split in ("train", "dev", "test1"):
            with open(base / "data" / f"{split}.json") as fh:
                n = sum(1 for line in fh if line.strip())
            rows[{"dev": "val", "test1": "test"}.get(split, split)] = np.arange(n, dtype=np.int64)
    pair = 2 if name == "nlvr2" else 1
    for split, ids in rows.items():
        d = base / "features" / split
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "ids.npy", ids)
        shapes = {"image": (len(ids), pair, FEATURE_WIDTH) if pair == 2 else (len(ids), FEATURE_WIDTH),
                  "text": (len(ids), FEATURE_WIDTH), "joint": (len(ids), pair * FEATURE_WIDTH)}
        for f, shape in shapes.items():
            arr = np.lib.format.open_memmap(d / f"{f}.npy", "w+", np.float16, shape)
            for s in range(0, len(ids), 65536):
                arr[s:s + 65536] = rng.standard_normal((min(len(ids), s + 65536) - s, *shape[1:]),
                                                       np.float32)
            arr.flush()
            del arr
    return {split: len(ids) for split, ids in rows.items()}


def backbone_cost(tmp: Path, name: str) -> dict:
    """Seconds per item of the tiny random FLAVA over ``BACKBONE_ITEMS`` items of ``name``'s
    layout (one image per VQA-VS question, two per NLVR2 example), on this machine's CPU."""
    from i2m2bench.data.common import vl_features as vf
    from vl_fixtures import tiny_backbone

    backbone = tiny_backbone(tmp / "backbone")
    pics = [tmp / "pics" / f"{i}.jpg" for i in range(8)]
    pics[0].parent.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(pics):
        p.write_bytes(mfs._image_bytes(i, "JPEG"))
    per = 2 if name == "nlvr2" else 1
    items = [vf.Item(i, tuple(pics[(i + k) % 8] for k in range(per)), "how many dogs are there")
             for i in range(BACKBONE_ITEMS)]
    t0 = time.perf_counter()
    vf.extract(str(backbone), items, tmp / "extracted", batch_size=32, progress=False)
    wall = time.perf_counter() - t0
    return {"items": BACKBONE_ITEMS, "images_per_item": per, "seconds": wall,
            "ms_per_item": 1000 * wall / BACKBONE_ITEMS, "torch_threads": torch.get_num_threads()}


def bare_rate(gin_file: str, bindings: list[str], data_root: Path, method: str) -> dict:
    """Samples/s of a bare loop stepping ``method``'s model on batches already in memory."""
    from i2m2bench.harness.runner import plan_runs
    from i2m2bench.harness.training import _optimizer

    _, runs = plan_runs([ROOT / gin_file], bindings, device=torch.device("cpu"), progress=False,
                        methods=[method], seeds=[0], data_root=str(data_root),
                        out=data_root / "bare_runs", results_dir=data_root / "bare_lb")
    planner = runs[0].planner.resolver
    _, cfg = planner.method(method)
    task = runs[0].task
    train = task.splits["train"]
    steps = min(BARE_STEPS, FASTMRI_BARE_STEPS) if task.spec.name == "fastmri" else BARE_STEPS
    n = min(len(train), (steps + 5) * cfg.batch_size)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n]
    batches = list(train.batches(task.spec, cfg.batch_size, order))
    torch.manual_seed(0)
    model = planner.build(method).train()
    opt = _optimizer(model, cfg)

    def step(b):
        loss = model.loss(model(b), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    for b in batches[:5]:
        step(b)
    t0, rows = time.perf_counter(), 0
    for i in range(steps):
        b = batches[5 + i % max(1, len(batches) - 5)] if len(batches) > 5 else batches[i % len(batches)]
        step(b)
        rows += len(b.target)
    return {"samples_per_s": rows / (time.perf_counter() - t0), "steps": steps,
            "batch_size": cfg.batch_size}


def _bare_main(argv: list[str]) -> None:
    """``python -m test_real_scale bare GIN BINDINGS_JSON DATA_ROOT METHOD OUT``: the bare loop
    in a process of its own (its memory measured like the epoch's), its figures to ``OUT``."""
    gin_file, bindings, data_root, method, out = argv
    Path(out).write_text(json.dumps(bare_rate(gin_file, json.loads(bindings), Path(data_root), method)))


def unit_rate(runs: Path, method: str) -> dict:
    (path,) = [p for p in runs.rglob("metrics.json") if f"/{method}/" in str(p)]
    info = json.loads(path.read_text())["info"]
    return {k: info[k] for k in ("samples_per_s", "train_seconds", "eval_seconds") if k in info}


@pytest.mark.parametrize("name", list(RUNS))
def test_real_scale(name, benchmark):
    gin_file, method, family, bindings = RUNS[name]
    tmp = Path(tempfile.mkdtemp(prefix=f"i2m2bench-real-{name}-", dir=os.environ.get("I2M2BENCH_BENCH_TMP")))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("I2M2BENCH_DATA", None)
    py, root = sys.executable, tmp / "data"
    result: dict = {"machine": _cpu_name(), "cpus": len(os.sched_getaffinity(0)), "scale": SCALE,
                    "code": code_version()}

    def measure():
        t0 = time.perf_counter()
        if name == "fastmri":
            written = mfs.fastmri(root, FASTMRI_GIB, slices=4 if QUICK else mfs.FASTMRI_SLICES)
        else:
            written = mfs.write(name, root, SCALE)
        if name in ("vqa_vs", "nlvr2"):
            written["own_feature_rows"] = own_features(root, name)
        result["written"] = {**written, "seconds": time.perf_counter() - t0}
        folders = {"vqa_vs": ["vqa_vs", "coco"]}.get(name, [name])
        reads = [read_bandwidth(root, f) for f in folders]
        total = sum(r["bytes"] for r in reads)
        result["read"] = {"bytes": total, "seconds": sum(r["seconds"] for r in reads),
                          "mb_per_s": total / 2**20 / sum(r["seconds"] for r in reads)}
        if family is not None:
            cmd = [py, "-m", "i2m2bench", "prepare", family, "--data-root", str(root)]
            if name in ("vqa_vs", "nlvr2"):
                cmd += ["--own-features", "--no-progress"]
            result["startup"] = run_measured([py, "-m", "i2m2bench", "list"], env, tmp / "startup.log")
            result["prepare"] = pr = run_measured(cmd, env, tmp / "prepare.log")
            pr["x_read_time"] = (pr["wall_s"] - result["startup"]["wall_s"]) / result["read"]["seconds"]
        params = ["train.epochs = 1", "suite.protocols = ['test']", *bindings]
        if name == "avmnist":
            params.append("suite.dataset_options = {'source': 'real', 'split_sizes': %s}"
                          % (tuple(written["split_sizes"]),))
        cmd = [py, "-m", "i2m2bench", "run", "--gin", gin_file, "--methods", method, "--seeds",
               "0", "--data-root", str(root), "--out", str(tmp / "runs"), "--leaderboard-dir",
               str(tmp / "lb"), "--no-progress"]
        for p in params:
            cmd += ["--gin-param", p]
        result["epoch"] = {**run_measured(cmd, env, tmp / "run.log", cwd=ROOT),
                           **unit_rate(tmp / "runs", method)}
        result["command"] = " ".join(["python" if c == py else c for c in cmd]).replace(str(tmp), "$TMP")
        result["bare"] = bare = run_measured(
            [py, "-m", "test_real_scale", "bare", gin_file, json.dumps(params), str(root), method,
             str(tmp / "bare.json")], {**env, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"},
            tmp / "bare.log", cwd=ROOT)
        bare.update(json.loads((tmp / "bare.json").read_text()))
        result["epoch"]["x_bare"] = result["epoch"]["samples_per_s"] / result["bare"]["samples_per_s"]
        if name in ("vqa_vs", "nlvr2"):
            result["backbone"] = backbone_cost(tmp, name)

    try:
        benchmark.pedantic(measure, rounds=1, iterations=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record(name, result)
    assert result["epoch"]["peak_rss_mb"] > 0


def record(name: str, result: dict) -> None:
    """Merge ``result`` into ``bench/real_scale.json`` and render ``real_scale.md``."""
    path = OUT / "bench" / "real_scale.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = result
    path.write_text(json.dumps(data, indent=2) + "\n")
    (OUT / "real_scale.md").write_text(render(data))


if __name__ == "__main__" and sys.argv[1:2] == ["bare"]:
    _bare_main(sys.argv[2:])
