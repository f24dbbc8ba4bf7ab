"""Training throughput and memory of the harness on data that live on disk.

Two measurements, each run as the user runs the suite (``python -m i2m2bench run`` in a child
process, whose memory is measured from outside):

* ``test_avmnist_full_size``: full-size AV-MNIST in MultiBench's layout (60,000 + 10,000 rows,
  images (N, 784), spectrograms (N, 112, 112); random integer values 0..255 stored as float32 —
  ``I2M2BENCH_BENCH_AVMNIST_DTYPE=uint8`` stores uint8) written to a temporary folder; one epoch
  of late fusion (concat, width 6, batch 40, the suite's settings), evaluated on ``test``. Beside
  it, in the same run, a bare PyTorch loop steps the same model (``build_fusion('late_fusion',
  spec, operator='concat', width=6)``, SGD as the suite trains it) on ready float tensors; the
  figure is the ratio of the harness's training step rate (the ``samples_per_s`` of its record) to
  the bare loop's. ``I2M2BENCH_BENCH_BASELINE=<checkout>`` also runs the same command with
  another checkout's code (e.g. ``git archive`` of the previous commit): today's figures beside.
* ``test_disk_10gb[side]``: 10 GiB of synthetic data on disk (``bench_disk_dataset``: two
  (N, 1, side, side) uint8 modalities; side 128 — N = 327,680 — and 64 — N = 1,310,720;
  ``I2M2BENCH_BENCH_DISK_SIDES``) trained for one epoch and evaluated through the harness, against
  the same suite on in-memory splits of the same data's first GiB (trained for as many steps):
  the ratio of their step rates. The small rows of side 64 (4 KB per modality) show the cost of
  one read per row; the larger ones, what streaming costs a model of that size.

Memory is reported three ways: ``peak_rss_mb`` — the largest resident set of any one process of
the run (the main process's own high-water mark, ``VmHWM``, written by ``hwm.py`` at its exit, or
a DataLoader worker's sampled resident set), which is what the ≤ 2 GB target is read against
(``ru_maxrss_mb``, ``wait4``'s figure, is kept beside it: on Linux it starts from the benchmark
process's own resident set at the fork, so it is an upper bound only; figures recorded before
``hwm.py`` existed, with no ``peak_rss_from``, are that upper bound); ``peak_tree_pss_mb`` — the peak sum of the proportional set sizes
of the whole process tree (shared pages counted once; sampled every 0.5 s); ``peak_tree_rss_mb``
— the peak sum of their resident sets (shared pages counted in every process).

Not run by CI (minutes; several GB of temporary files, deleted afterwards). Results go to
``leaderboards/bench/training_throughput.json`` and ``leaderboards/training_throughput.md``
(``I2M2BENCH_BENCH_OUT=<folder>``: there instead; ``scripts/gpu_check.sh`` uses ``leaderboards/gpu``)
(``I2M2BENCH_BENCH_QUICK=1``: tiny sizes, to check the code; written under the temp folder).
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import QUICK, _cpu_name, device, sync

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_disk_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEV = device()
TMP_PARENT = os.environ.get("I2M2BENCH_BENCH_TMP")  # default: the system temp folder
AVMNIST_DTYPE = os.environ.get("I2M2BENCH_BENCH_AVMNIST_DTYPE", "float32")
BASELINE = os.environ.get("I2M2BENCH_BENCH_BASELINE")
AVMNIST_ROWS = (600, 100, 200) if QUICK else (55_000, 5_000, 10_000)
DISK_BYTES = (64 << 20) if QUICK else (10 << 30)
MEMORY_BYTES = (32 << 20) if QUICK else (1 << 30)
N_EVAL = 200 if QUICK else 5_000
DISK_SIDES = [int(x) for x in os.environ.get("I2M2BENCH_BENCH_DISK_SIDES", "128,64").split(",")]
BARE_STEPS = 30 if QUICK else 400
RESULTS: dict = {}


# ------------------------------------------------------------------------------ measuring
def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return out


def _rss_pss_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def run_measured(cmd: list[str], env: dict, log: Path, cwd: Path = ROOT) -> dict:
    """Run ``cmd``; its wall time, exit status and memory (see the module docstring). A
    ``python -m MODULE`` command runs under ``hwm.py``, which reports its own peak resident set."""
    peak = {"pss": 0, "rss": 0, "procs": 0, "single": 0}
    load_before = os.getloadavg()[0]
    done = threading.Event()
    hwm = log.with_suffix(".hwm")
    hwm.unlink(missing_ok=True)
    if len(cmd) > 2 and cmd[0] == sys.executable and cmd[1] == "-m":
        cmd = [cmd[0], str(Path(__file__).resolve().parent / "hwm.py"), str(hwm), *cmd[1:]]
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)

        def sample():
            while not done.wait(0.5):
                pids = _tree(proc.pid)
                mem = [_rss_pss_kb(p) for p in pids]
                peak["rss"] = max(peak["rss"], sum(r for r, _ in mem))
                peak["pss"] = max(peak["pss"], sum(p for _, p in mem))
                peak["single"] = max([peak["single"], *(r for r, _ in mem)])
                peak["procs"] = max(peak["procs"], len(pids))

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        th.join()
    rc = os.waitstatus_to_exitcode(status)
    assert rc == 0, f"{' '.join(cmd)} exited {rc}:\n{log.read_text()[-3000:]}"
    own = int(hwm.read_text()) if hwm.exists() else None
    return {"wall_s": wall,
            "peak_rss_mb": (max(own, peak["single"]) if own is not None else usage.ru_maxrss) / 1024,
            "peak_rss_from": "VmHWM" if own is not None else "ru_maxrss",
            "ru_maxrss_mb": usage.ru_maxrss / 1024,
            "peak_tree_pss_mb": peak["pss"] / 1024, "peak_tree_rss_mb": peak["rss"] / 1024,
            "processes": peak["procs"], "load_avg_1min": [load_before, os.getloadavg()[0]]}


def unit_info(out: Path) -> dict:
    """The trained unit's ``metrics.json`` (info: samples_per_s, train_seconds, ...; scores)."""
    (path,) = list(out.rglob("metrics.json"))
    data = json.loads(path.read_text())
    return {**data["info"], **{f"score_{s['protocol']}": s["value"] for s in data["scores"]}}


def _env(code_root: Path = ROOT) -> dict:
    path = [str(code_root), str(ROOT / "benchmarks")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path + [os.environ.get("PYTHONPATH", "")])}
    env.pop("I2M2BENCH_DATA", None)
    return env


def _cmd(gin: str, data_root: Path, out: Path, params: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "i2m2bench", "run", "--gin", gin, "--seeds", "0",
           "--data-root", str(data_root), "--out", str(out / "runs"),
           "--leaderboard-dir", str(out / "lb"), "--device", str(DEV)]
    for p in params:
        cmd += ["--gin-param", p]
    return cmd


def _shown(cmd: list[str]) -> str:
    """The command as one would type it (temp paths shortened)."""
    parts = ["python" if c == sys.executable else c for c in cmd]
    return " ".join(f'"{p}"' if " " in p else p for p in parts)


@pytest.fixture(scope="module")
def tmp_root():
    d = Path(tempfile.mkdtemp(prefix="i2m2bench-bench-", dir=TMP_PARENT))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _machine() -> dict:
    with open("/proc/meminfo") as fh:
        total = int(fh.readline().split()[1]) / 2**20
    return {"device": torch.cuda.get_device_name(DEV) if DEV.type == "cuda" else _cpu_name(),
            "device_type": DEV.type, "cpus": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "memory_gib": round(total, 1),
            "torch": torch.__version__, "python": platform.python_version(), "quick": QUICK}


# ------------------------------------------------------------------------------ AV-MNIST
def write_avmnist(root: Path, rows=AVMNIST_ROWS, dtype=AVMNIST_DTYPE, seed=0) -> int:
    """MultiBench's layout under ``root/avmnist`` with random integer values 0..255; bytes written."""
    d = root / "avmnist"
    (d / "image").mkdir(parents=True)
    (d / "audio").mkdir()
    rng = np.random.default_rng(seed)
    total = 0
    for split, n in (("train", rows[0] + rows[1]), ("test", rows[2])):
        for m, shape in (("image", (784,)), ("audio", (112, 112))):
            w = bench_disk_dataset.NpyWriter(d / m / f"{split}_data.npy", (n, *shape), dtype)
            for s in range(0, n, 2048):
                w.write(rng.integers(0, 256, (min(n, s + 2048) - s, *shape), dtype=np.uint8))
            w.close()
            total += (d / m / f"{split}_data.npy").stat().st_size
        np.save(d / f"{split}_labels.npy", rng.integers(0, 10, n).astype(np.int64))
    return total


def bare_loop(data_dir: Path, steps: int, batch_size: int = 40, pool: int = 50,
              deterministic: bool = True) -> float:
    """Samples/s of a bare PyTorch loop stepping the suite's late-fusion model (SGD lr 0.1,
    weight decay 1e-4, gradient clip 8, as ``avmnist.gin`` trains it) on ready float batches;
    ``deterministic``: under the harness's torch settings (``seed_everything``: deterministic
    algorithms), else torch's defaults."""
    from i2m2bench.harness.seeding import seed_everything
    import i2m2bench
    from i2m2bench.data.avmnist.processing import DIGITS, MODALITIES
    from i2m2bench.types import Batch, TaskSpec

    spec = TaskSpec("avmnist", "bench", MODALITIES, "multiclass", 10, DIGITS)
    rows = min(pool * batch_size, AVMNIST_ROWS[0]) // batch_size * batch_size
    img = np.load(data_dir / "image" / "train_data.npy", mmap_mode="r")[:rows]
    aud = np.load(data_dir / "audio" / "train_data.npy", mmap_mode="r")[:rows]
    y = torch.from_numpy(np.load(data_dir / "train_labels.npy")[:rows])
    x = {"image": torch.tensor(np.asarray(img, np.float32)).reshape(rows, 1, 28, 28).mul_(1 / 255),
         "audio": torch.tensor(np.asarray(aud, np.float32)).reshape(rows, 1, 112, 112).mul_(1 / 255)}
    batches = [Batch({m: v[i:i + batch_size].to(DEV) for m, v in x.items()},
                     y[i:i + batch_size].to(DEV)) for i in range(0, rows, batch_size)]
    torch.use_deterministic_algorithms(False)
    if deterministic:
        seed_everything(0)
    torch.manual_seed(0)
    model = i2m2bench.build_fusion("late_fusion", spec, operator="concat", width=6).to(DEV).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.0, weight_decay=1e-4)

    def step(b):
        loss = model.loss(model(b), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 8.0)
        opt.step()

    for b in batches[:5]:  # warm-up
        step(b)
    sync(DEV)
    t0 = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    sync(DEV)
    rate = steps * batch_size / (time.perf_counter() - t0)
    torch.use_deterministic_algorithms(False)
    return rate


MULTIBENCH_WORKERS = 8  # MultiBench's default (datasets/avmnist/get_data.py, get_dataloader)


def multibench_loop(data_dir: Path, steps: int, batch_size: int = 40,
                    workers: int = MULTIBENCH_WORKERS) -> float:
    """Samples/s of MultiBench's own AV-MNIST training loop around the same model: its data path
    (pliang279/MultiBench @ 49f9be2, ``datasets/avmnist/get_data.py`` ``get_dataloader``: the
    arrays loaded into memory, divided by 255, reshaped to (1, 28, 28) and (1, 112, 112), then a
    Python list of per-sample ``[image, audio, label]`` lists fed to ``DataLoader(trainlist,
    shuffle=True, num_workers=8, batch_size=40)``, which collates sample by sample) and its step
    (``training_structures/Supervised_Learning.py`` ``train``: each input ``.float().to(device)``,
    loss, backward, ``clip_grad_norm_(8)``, optimiser step). The step is the suite's (SGD lr 0.1,
    as :func:`bare_loop`), so the ratio isolates the data path. Only the rows the measured steps
    read (plus warm-up) are loaded; steady state: the first 10 batches (worker start-up) are not
    timed."""
    import i2m2bench
    from i2m2bench.data.avmnist.processing import DIGITS, MODALITIES
    from i2m2bench.types import Batch, TaskSpec

    spec = TaskSpec("avmnist", "bench", MODALITIES, "multiclass", 10, DIGITS)
    rows = min((steps + 10) * batch_size, AVMNIST_ROWS[0])
    img = np.asarray(np.load(data_dir / "image" / "train_data.npy", mmap_mode="r")[:rows], np.float32) / 255.0
    aud = np.asarray(np.load(data_dir / "audio" / "train_data.npy", mmap_mode="r")[:rows], np.float32) / 255.0
    trains = [np.expand_dims(img.reshape(rows, 28, 28), 1), np.expand_dims(aud.reshape(rows, 112, 112), 1),
              np.load(data_dir / "train_labels.npy")[:rows].astype(int)]
    trainlist = [[trains[j][i] for j in range(3)] for i in range(rows)]
    loader = torch.utils.data.DataLoader(trainlist, shuffle=True, num_workers=workers,
                                         batch_size=batch_size)
    torch.manual_seed(0)
    model = i2m2bench.build_fusion("late_fusion", spec, operator="concat", width=6).to(DEV).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.0, weight_decay=1e-4)
    done, t0 = 0, 0.0
    for k, j in enumerate(loader):
        if k == 10:
            sync(DEV)
            t0 = time.perf_counter()
        if k == steps + 10:
            break
        b = Batch({"image": j[0].float().to(DEV), "audio": j[1].float().to(DEV)}, j[2].to(DEV))
        loss = model.loss(model(b), b)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 8.0)
        opt.step()
        done += len(j[2]) if k >= 10 else 0
    sync(DEV)
    return done / (time.perf_counter() - t0)


def test_avmnist_full_size(benchmark, tmp_root):
    data = tmp_root / "avmnist_data"
    nbytes = write_avmnist(data)
    params = ["train.epochs = 1", "suite.protocols = ['test']",
              "suite.dataset_options = {'source': 'real', 'split_sizes': %s}" % (AVMNIST_ROWS,)]
    out: dict = {}

    def run():
        bare_before = bare_loop(data / "avmnist", BARE_STEPS)
        cmd = _cmd("avmnist.gin", data, tmp_root / "avmnist_run", params + [])
        cmd[cmd.index("--seeds"):cmd.index("--seeds")] = ["--methods", "late_fusion"]
        mem = run_measured(cmd, _env(), tmp_root / "avmnist_run.log")
        info = unit_info(tmp_root / "avmnist_run")
        bare_after = bare_loop(data / "avmnist", BARE_STEPS)
        bare = (bare_before + bare_after) / 2
        bare_default = bare_loop(data / "avmnist", BARE_STEPS, deterministic=False)
        multibench = multibench_loop(data / "avmnist", BARE_STEPS)
        out.update({"command": _shown(cmd).replace(str(tmp_root), "$TMP"),
                    "data": {"rows": list(AVMNIST_ROWS), "stored_dtype": AVMNIST_DTYPE,
                             "bytes_on_disk": nbytes, "bytes_as_uint8": sum(AVMNIST_ROWS) * (784 + 12544)},
                    **mem, "samples_per_s": info["samples_per_s"],
                    "train_seconds": info["train_seconds"], "eval_seconds": info["eval_seconds"],
                    "test_accuracy": info.get("score_test"),
                    "bare_samples_per_s": bare, "bare_samples_per_s_before": bare_before,
                    "bare_samples_per_s_after": bare_after, "bare_steps": BARE_STEPS,
                    "bare_default_samples_per_s": bare_default,
                    "multibench_samples_per_s": multibench, "multibench_workers": MULTIBENCH_WORKERS,
                    "ratio_to_bare": info["samples_per_s"] / bare,
                    "ratio_to_multibench": info["samples_per_s"] / multibench})
        if BASELINE:
            base_out = tmp_root / "avmnist_baseline"
            bcmd = _cmd("avmnist.gin", data, base_out, params)
            bcmd[bcmd.index("--seeds"):bcmd.index("--seeds")] = ["--methods", "late_fusion"]
            bmem = run_measured(bcmd, _env(Path(BASELINE)), tmp_root / "avmnist_baseline.log",
                                cwd=Path(BASELINE))  # `python -m` puts the cwd first on sys.path
            binfo = unit_info(base_out)
            out["baseline"] = {"code": BASELINE, **bmem, "samples_per_s": binfo["samples_per_s"],
                               "train_seconds": binfo["train_seconds"],
                               "test_accuracy": binfo.get("score_test"),
                               "ratio_to_bare": binfo["samples_per_s"] / bare}

    benchmark.group = "training throughput"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in out.items() if not isinstance(v, dict)})
    RESULTS["avmnist"] = out


# ------------------------------------------------------------------------------ 10 GB on disk
GIN = """\
import bench_disk_dataset
include 'base.gin'

suite.name = 'bench_disk'
suite.dataset = 'bench_disk'
suite.dataset_options = {'n_eval': %(n_eval)d}
suite.methods = ['late_fusion']
suite.seeds = [0]
suite.protocols = ['test', 'missing:a']
train.epochs = 1
train.batch_size = 256
train.lr = 0.05
train.eval_batch_size = 1000
late_fusion/method.fusion = 'late_fusion'
late_fusion/method.options = {'operator': 'concat', 'width': 64}
"""


@pytest.mark.parametrize("side", DISK_SIDES)
def test_disk_10gb(benchmark, tmp_root, side):
    """One epoch on the 10 GiB files (streamed) and, for the same number of steps, epochs over
    in-memory splits of their first GiB (so that both rates are measured over as many steps)."""
    data = tmp_root / f"disk_data_{side}"
    bench_disk_dataset.write(data, DISK_BYTES, side=side)
    gin = tmp_root / "bench_disk.gin"
    gin.write_text(GIN % {"n_eval": N_EVAL})
    row = 2 * side * side
    rows, mem_rows = DISK_BYTES // row, MEMORY_BYTES // row
    train_rows, mem_train_rows = rows - 2 * N_EVAL, mem_rows - 2 * N_EVAL
    mem_epochs = max(1, round(train_rows / mem_train_rows))
    out: dict = {}

    def run():
        cmd = _cmd(str(gin), data, tmp_root / f"disk_run_{side}", [])
        disk = run_measured(cmd, _env(), tmp_root / f"disk_run_{side}.log")
        disk.update(unit_info(tmp_root / f"disk_run_{side}"))
        mcmd = _cmd(str(gin), data, tmp_root / f"mem_run_{side}",
                    ["suite.dataset_options = {'n_eval': %d, 'in_memory_bytes': %d}"
                     % (N_EVAL, MEMORY_BYTES), f"train.epochs = {mem_epochs}",
                     f"train.patience = {mem_epochs}"])
        mem = run_measured(mcmd, _env(), tmp_root / f"mem_run_{side}.log")
        mem.update(unit_info(tmp_root / f"mem_run_{side}"))
        out.update({"command": _shown(cmd).replace(str(tmp_root), "$TMP"),
                    "command_in_memory": _shown(mcmd).replace(str(tmp_root), "$TMP"),
                    "gin": GIN % {"n_eval": N_EVAL},
                    "data": {"bytes": DISK_BYTES, "sample_shape": [1, side, side],
                             "row_bytes_per_modality": side * side, "rows": rows,
                             "train_rows": train_rows, "in_memory_bytes": MEMORY_BYTES,
                             "in_memory_train_rows": mem_train_rows,
                             "in_memory_epochs": mem_epochs},
                    "disk": disk, "in_memory": mem,
                    "ratio_disk_to_memory": disk["samples_per_s"] / mem["samples_per_s"]})
        shutil.rmtree(data, ignore_errors=True)  # 10 GiB: not kept for the next size

    benchmark.group = "training throughput"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update({"ratio_disk_to_memory": out["ratio_disk_to_memory"],
                                 "disk_peak_rss_mb": out["disk"]["peak_rss_mb"]})
    RESULTS[f"disk_10gb_{side}"] = out


# ------------------------------------------------------------------------------ publishing
def _gb(mb: float) -> str:
    return f"{mb / 1024:.2f} GB"


def render_markdown(data: dict) -> str:
    m = data["machine"]
    lines = ["# Training throughput and memory (data on disk)", "",
             f"Generated by `benchmarks/test_training_throughput.py` on {m['device']} "
             f"({m['cpus']} CPU cores, {m['memory_gib']} GiB, {m['device_type']}; torch "
             f"{m['torch']}, Python {m['python']}); {data['date']}. Figures: "
             "`leaderboards/bench/training_throughput.json`. Peak RSS: the largest resident set "
             "of any one process of the run (`wait4`'s `ru_maxrss`); peak PSS: the proportional "
             "set sizes of the whole process tree summed (shared pages counted once; sampled "
             "every 0.5 s); load: the 1-minute load average before/after the run (the machine "
             f"has {m['cpus']} cores; above that, other work shared them).", ""]
    a = data.get("avmnist")
    if a:
        d = a["data"]
        lines += ["## Full-size AV-MNIST, one epoch of late fusion (`python -m i2m2bench run`)", "",
                  f"{sum(d['rows']):,} rows in MultiBench's layout, stored as {d['stored_dtype']} "
                  f"({d['bytes_on_disk'] / 1e9:.2f} GB on disk, {d['bytes_as_uint8'] / 1e9:.2f} GB "
                  "as uint8); batch 40; evaluated on `test`. The bare loop steps the same model "
                  f"on ready float tensors: {a['bare_samples_per_s']:.0f} samples/s with the "
                  "harness's torch settings (deterministic algorithms), "
                  f"{a['bare_default_samples_per_s']:.0f} with torch's defaults.", "",
                  "| code | peak RSS | peak PSS | train samples/s | / bare loop | "
                  "/ bare loop (torch defaults) | load |", "|---|---:|---:|---:|---:|---:|---:|"]
        rows = [("this: files read in place, streamed", a)]
        if "baseline" in a:
            rows.append(("before: files copied into memory", a["baseline"]))
        for name, r in rows:
            lo = r["load_avg_1min"]
            lines.append(f"| {name} | {_gb(r['peak_rss_mb'])} | {_gb(r['peak_tree_pss_mb'])} | "
                         f"{r['samples_per_s']:.0f} | {r['samples_per_s'] / a['bare_samples_per_s']:.3f} "
                         f"| {r['samples_per_s'] / a['bare_default_samples_per_s']:.3f} | "
                         f"{lo[0]:.1f}/{lo[1]:.1f} |")
        if "multibench_samples_per_s" in a:
            target = " (target on a GPU: ≥ 3×)" if m["device_type"] == "cuda" else ""
            lines += ["", f"MultiBench's own loop around the same model (its `get_dataloader`: "
                      "per-sample lists collated by a `DataLoader` with "
                      f"{a['multibench_workers']} workers, batch 40; `Supervised_Learning.train`'s "
                      f"step), measured in the same run: {a['multibench_samples_per_s']:.0f} "
                      f"samples/s. The harness / MultiBench's loop: "
                      f"**{a['ratio_to_multibench']:.2f}×**{target}."]
        lines += ["", f"Command: `{a['command']}`", ""]
    for key in sorted(k for k in data if k.startswith("disk_10gb_")):
        b = data[key]
        d = b["data"]
        shape = "×".join(map(str, d["sample_shape"]))
        lines += [f"## {d['bytes'] / 2**30:g} GiB on disk, samples of 2 × {shape} uint8", "",
                  f"Two ({shape}) uint8 modalities ({d['row_bytes_per_modality']:,} bytes per row "
                  f"and modality), {d['rows']:,} rows; late fusion (MLP encoders, width 64), batch "
                  "256; one epoch, evaluated on validation, `test` and `missing:a`. Against the same "
                  f"suite on in-memory splits of the data's first {d['in_memory_bytes'] / 2**30:.0f} "
                  f"GiB, trained for {d['in_memory_epochs']} epochs (about as many steps).", "",
                  "| splits | train rows | peak RSS | peak PSS | train samples/s | wall s | load |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r, n in (("on disk (streamed)", b["disk"], d["train_rows"]),
                           ("in memory (first GiB)", b["in_memory"], d["in_memory_train_rows"])):
            lo = r["load_avg_1min"]
            lines.append(f"| {name} | {n:,} | {_gb(r['peak_rss_mb'])} | "
                         f"{_gb(r['peak_tree_pss_mb'])} | {r['samples_per_s']:.0f} | "
                         f"{r['wall_s']:.0f} | {lo[0]:.1f}/{lo[1]:.1f} |")
        lines += ["", f"Step rate on disk / in memory: **{b['ratio_disk_to_memory']:.3f}**.", "",
                  f"Command: `{b['command']}`", ""]
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def publish(tmp_root):
    yield
    if not RESULTS:
        return
    target = ((tmp_root.parent / "i2m2bench-bench-quick") if QUICK else
              Path(os.environ.get("I2M2BENCH_BENCH_OUT", ROOT / "leaderboards")))  # gpu_check.sh
    path = target / "bench" / "training_throughput.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.pop("disk_10gb", None)  # the layout before sample sizes were measured separately
    data = {**old, **RESULTS, "machine": _machine(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    (target / "training_throughput.md").write_text(render_markdown(data))
