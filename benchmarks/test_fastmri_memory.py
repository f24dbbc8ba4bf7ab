"""Resident memory of the real FastMRI path: ``prepare fastmri`` over full-size k-space volumes,
then training from the cache it writes, each run as a user runs it (a child process measured from
outside, :func:`test_training_throughput.run_measured`).

The data: ``I2M2BENCH_BENCH_FASTMRI_VOLUMES`` (default 12) volumes of
``I2M2BENCH_BENCH_FASTMRI_SLICES`` (default 20) slices in the raw fastMRI + fastMRI+ layout, each
slice (640, 368..372) complex64 as fastMRI's single-coil knee files (random values: memory, not
accuracy, is measured here), written to a temporary folder. Training: ``magnitude_only`` on the
prepared cache, one epoch, the suite's real-data settings (pool 10, batch 16, AdamW, class
weights) except the ResNet's stem width, 8 instead of the official 64: on a CPU the official
network's own activations at 320 x 320 and batch 16 exceed the 3 GB target by themselves (the
paper trains it on GPUs), and what this measures is that the data path -- cache, streaming,
evaluation -- stays bounded whatever the number of slices.

Not run by CI (a minute or two; about 1 GB of temporary files, deleted afterwards). Results go
to ``leaderboards/bench/fastmri_memory.json`` (``I2M2BENCH_BENCH_QUICK=1``: 2 volumes of 4
slices, written under the temp folder).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

from conftest import QUICK, _cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_training_throughput import ROOT, run_measured  # noqa: E402

VOLUMES = 2 if QUICK else int(os.environ.get("I2M2BENCH_BENCH_FASTMRI_VOLUMES", "12"))
SLICES = 4 if QUICK else int(os.environ.get("I2M2BENCH_BENCH_FASTMRI_SLICES", "20"))
WIDTH_NET = 8


def write_raw(folder: Path, volumes: int, slices: int) -> int:
    """The raw layout under ``folder`` (= <root>/fastmri): volumes split over singlecoil_train
    and singlecoil_val, every slice annotated on some volumes; the number of slices written."""
    rng = np.random.default_rng(0)
    ids = [f"file{1000001 + i}" for i in range(max(volumes, 4))]
    for i, vid in enumerate(ids):
        cols = 368 + 2 * (i % 3)
        sub = folder / ("singlecoil_train" if i % 2 else "singlecoil_val")
        sub.mkdir(parents=True, exist_ok=True)
        with h5py.File(sub / f"{vid}.h5", "w") as h5:
            ds = h5.create_dataset("kspace", (slices, 640, cols), dtype=np.complex64)
            for s in range(slices):  # one slice at a time: the writer stays small too
                k = rng.standard_normal((640, cols)) + 1j * rng.standard_normal((640, cols))
                ds[s] = (k * 1e-4).astype(np.complex64)
    plus = folder / "fastmri_plus"
    plus.mkdir(parents=True, exist_ok=True)
    rows = ["file,slice,study_level,x,y,width,height,label"]
    labels = ["Meniscus Tear", "Ligament - ACL High Grade Sprain",
              "Cartilage - Partial Thickness loss/defect", "Joint Effusion "]
    for i, vid in enumerate(ids):
        for s in range(0, slices, 2):
            rows.append(f"{vid},{s},No,1,1,1,1,{labels[(i + s) % len(labels)]}")
    (plus / "knee.csv").write_text("\n".join(rows) + "\n")
    (plus / "knee_file_list.csv").write_text("\n".join(ids) + "\n")
    return len(ids) * slices


def test_prepare_and_train_from_the_cache(tmp_path_factory):
    tmp = Path(tempfile.mkdtemp(prefix="i2m2bench-fastmri-", dir=os.environ.get("I2M2BENCH_BENCH_TMP")))
    try:
        root = tmp / "data"
        n = write_raw(root / "fastmri", VOLUMES, SLICES)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        py = sys.executable
        prep = run_measured([py, "-m", "i2m2bench", "prepare", "fastmri", "--data-root", str(root)],
                            env, tmp / "prepare.log")
        cache_bytes = sum(p.stat().st_size for p in (root / "fastmri" / "cache").glob("*.npy"))
        net = {"modality": "magnitude", "encoder": "preact_resnet18_gn", "width": WIDTH_NET, "hidden": 0}
        train = run_measured(
            [py, "-m", "i2m2bench", "run", "--gin", "gin/fastmri.gin", "--methods", "magnitude_only",
             "--seeds", "0", "--data-root", str(root), "--out", str(tmp / "runs"),
             "--leaderboard-dir", str(tmp / "lb"), "--no-progress",
             "--gin-param", "train.epochs = 1",
             "--gin-param", f"magnitude_only/method.options = {net!r}"],
            env, tmp / "train.log")
        result = {"machine": _cpu_name(), "slices": n, "h5_bytes": sum(
            p.stat().st_size for p in (root / "fastmri").rglob("*.h5")),
            "cache_bytes": cache_bytes, "net_width": WIDTH_NET, "prepare": prep, "train": train}
        print(json.dumps(result, indent=2))
        out = (tmp if QUICK else ROOT / "leaderboards" / "bench") / "fastmri_memory.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        assert prep["peak_rss_mb"] > 0 and train["peak_rss_mb"] > 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
