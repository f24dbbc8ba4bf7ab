"""The ``bench_disk`` dataset of the training-throughput benchmark: a synthetic task larger than
memory, stored as ``.npy`` files, registered when this module is imported (a gin
``import bench_disk_dataset`` line, with ``benchmarks/`` on ``PYTHONPATH``).

``<data_root>/bench_disk/`` holds ``a.npy`` and ``b.npy`` (N, 1, S, S) uint8 (S = 128 by default)
and ``target.npy`` (N,) int64. The last ``2 * n_eval`` rows are validation and test; the rest is training.
``in_memory_bytes`` > 0 instead builds in-memory splits from the first that many bytes of the
inputs (read with plain file reads, not mapped): the same data's first gigabyte, for the step-rate
comparison.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from i2m2bench.data.base import DATASETS, resolve_data_root
from i2m2bench.data.common.disk import DiskSplit, open_npy
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec

SIDE = 128
CLASSES = 10


def modalities(side: int = SIDE) -> tuple[ModalitySpec, ...]:
    shape = (1, side, side)
    return (ModalitySpec("a", shape, "image", "mlp", scale=1 / 255),
            ModalitySpec("b", shape, "image", "mlp", scale=1 / 255))


class NpyWriter:
    """Write an ``.npy`` file of ``shape`` and ``dtype`` row chunk by row chunk, with plain file
    writes (the writer never maps nor holds the file)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype) -> None:
        self.dtype, self.shape, self.rows = np.dtype(dtype), tuple(shape), 0
        self.fh = open(path, "wb")
        np.lib.format.write_array_header_1_0(self.fh, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": self.shape})

    def write(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, self.dtype)
        assert chunk.shape[1:] == self.shape[1:]
        self.fh.write(chunk.tobytes())
        self.rows += chunk.shape[0]

    def close(self) -> None:
        self.fh.close()
        assert self.rows == self.shape[0], (self.rows, self.shape)


def write(root: Path, total_bytes: int, side: int = SIDE, seed: int = 0) -> Path:
    """Write ``total_bytes`` of inputs (both modalities together) under ``root/bench_disk``,
    chunk by chunk. The label is a coarse function of one pixel of each modality, so that a
    fused model can learn the task."""
    d = root / "bench_disk"
    d.mkdir(parents=True, exist_ok=True)
    shape = (1, side, side)
    n = total_bytes // (2 * math.prod(shape))
    chunk_rows = max(1, (32 << 20) // math.prod(shape))
    rng = np.random.default_rng(seed)
    out = {m: NpyWriter(d / f"{m}.npy", (n, *shape), np.uint8) for m in "ab"}
    y = NpyWriter(d / "target.npy", (n,), np.int64)
    for s in range(0, n, chunk_rows):
        e = min(n, s + chunk_rows)
        x = {m: rng.integers(0, 256, (e - s, *shape), dtype=np.uint8) for m in "ab"}
        for m in "ab":
            out[m].write(x[m])
        y.write(x["a"][:, 0, 0, 0].astype(np.int64) // 52 * 2 + x["b"][:, 0, 0, 0] // 128)
    for w in (*out.values(), y):
        w.close()
    return d


def _read_rows(path: Path, rows: int) -> np.ndarray:
    """The first ``rows`` rows of an .npy file, read (not mapped) into memory."""
    col = open_npy(path)
    count = rows * math.prod(col.shape)
    x = np.fromfile(path, np.dtype(col.dtype), count=count, offset=col.offset)
    return x.reshape(rows, *col.shape)


@DATASETS.register("bench_disk")
def build_bench_disk(data_root: str | None = None, n_eval: int = 20_000,
                     in_memory_bytes: int = 0) -> Task:
    d = resolve_data_root(data_root) / "bench_disk"
    side = open_npy(d / "a.npy").shape[-1]
    mods = modalities(side)
    spec = TaskSpec("bench_disk", "1", mods, "multiclass", CLASSES,
                    tuple(map(str, range(CLASSES))), source="synthetic",
                    description="synthetic benchmark data larger than memory")
    target = torch.from_numpy(np.load(d / "target.npy"))
    n = len(target)
    if in_memory_bytes:
        n = min(n, in_memory_bytes // (2 * math.prod(mods[0].shape)))
        x = {m.name: torch.from_numpy(_read_rows(d / f"{m.name}.npy", n)) for m in mods}
        cut = [0, n - 2 * n_eval, n - n_eval, n]
        splits = {name: Split({m: v[a:b] for m, v in x.items()}, target[a:b], name)
                  for name, a, b in zip(("train", "val", "test"), cut, cut[1:])}
    else:
        full = DiskSplit.from_npy({m.name: d / f"{m.name}.npy" for m in mods}, target)
        cut = [0, n - 2 * n_eval, n - n_eval, n]
        splits = {name: full.subset(a, b - a, name)
                  for name, a, b in zip(("train", "val", "test"), cut, cut[1:])}
    return Task(spec, splits, {}, options={"n_eval": n_eval, "in_memory_bytes": in_memory_bytes,
                                           "rows": n})
