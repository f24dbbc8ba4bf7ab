"""Splits that live on disk: memory-mapped ``.npy`` files streamed in index batches.

A :class:`DiskSplit` is the on-disk kind of :class:`i2m2bench.types.DataSplit`. Each modality is
an :class:`NpyColumn` — a row range of a C-order ``.npy`` file, each row viewed as the modality's
per-sample shape — and the targets are held in memory (they are small, and metrics need them
without reading inputs). A pass over the split (:meth:`DiskSplit.batches`) hands whole *index
batches* to a ``torch.utils.data.DataLoader`` (the sampler yields one int64 array per batch,
``batch_size=None``: no per-sample Python collation); its workers gather the rows from their own
memory map into one array per modality in the stored dtype; the batch is pinned (CUDA), moved to
the device and normalised there exactly as :meth:`i2m2bench.types.Split.batch` does, so both
kinds give bit-identical batches for the same rows.

Resident memory stays bounded however large the files are: nothing is copied into memory but
the batches in flight, and each process that reads a mapping drops its mapped pages (``madvise
MADV_DONTNEED``; the kernel's page cache keeps them) after every ``DROP_BYTES`` it has read.

Workers get plain data only (paths, offsets, dtypes, shapes): gin-configured objects do not
pickle. The loader's settings are the gin configurable ``disk_loader`` (:class:`LoaderOptions`),
read in the main process when a split first streams.
"""
from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Mapping

import gin
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from i2m2bench.types import Batch, DataSplit, Split, TaskSpec

# A process drops the pages it mapped after reading this many bytes (its resident share of the
# files stays below about this much per process).
DROP_BYTES = 64 << 20
# Rows per chunk of a sequential scan (means, validation): about this many bytes.
CHUNK_BYTES = 64 << 20
# Stored dtypes handed to torch as they are; others are widened to float64 (exact for the
# integers a loader accepts) in the worker.
_TORCH_DTYPES = {np.dtype(t) for t in ("u1", "i1", "i2", "i4", "i8", "f2", "f4", "f8", "?")}


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@gin.configurable("disk_loader")
@dataclass(frozen=True)
class LoaderOptions:
    """How a :class:`DiskSplit` streams (gin: ``disk_loader.*``). Results do not depend on them.

    ``num_workers``: DataLoader worker processes (None: ``min(4, CPUs)``; 0 reads in the main
    process); ``prefetch_factor``: batches in flight per worker; ``pin_memory``: None pins when
    the split's device is CUDA; ``persistent_workers``: keep the workers between passes (epochs).
    """

    num_workers: int | None = None
    prefetch_factor: int = 2
    pin_memory: bool | None = None
    persistent_workers: bool = True

    def __post_init__(self) -> None:
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"disk_loader.num_workers must be >= 0; got {self.num_workers}")
        if self.prefetch_factor < 1:
            raise ValueError(f"disk_loader.prefetch_factor must be >= 1; got {self.prefetch_factor}")

    @property
    def workers(self) -> int:
        return min(4, _cpus()) if self.num_workers is None else int(self.num_workers)


@dataclass(frozen=True)
class NpyColumn:
    """Rows ``start .. start + rows`` of the C-order ``.npy`` file ``path`` (whose data start at
    byte ``offset``: ``file_rows`` rows of ``dtype``), each row viewed as ``shape``. Plain data:
    it is what DataLoader workers receive.

    ``cast`` (optional): a dtype the rows are converted to where they are read, before they are
    sent — only where that is exact for every value (a loader that checked that a float file
    holds only integers 0..255 casts it to ``uint8``: a quarter of the bytes to move, and the
    batch is normalised from the same values, so bit for bit the same). Floats wider than
    float32 are rounded to float32 first, as that loader checks them."""

    path: str
    dtype: str  # numpy dtype string ('|u1', '<f4', ...)
    offset: int
    file_rows: int
    shape: tuple[int, ...]
    start: int = 0
    rows: int = -1  # -1: to the end of the file
    cast: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.rows < 0:
            object.__setattr__(self, "rows", self.file_rows - self.start)
        if not 0 <= self.start <= self.start + self.rows <= self.file_rows:
            raise ValueError(f"{self.path}: rows {self.start}..{self.start + self.rows} are outside "
                             f"its {self.file_rows} rows")

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    def subset(self, start: int, rows: int) -> "NpyColumn":
        """Rows ``start .. start + rows`` of this column (no data read)."""
        if not 0 <= start <= start + rows <= self.rows:
            raise ValueError(f"{self.path}: rows {start}..{start + rows} of a {self.rows}-row column")
        return replace(self, start=self.start + start, rows=rows)

    def map(self, access: int = mmap.ACCESS_READ) -> tuple[mmap.mmap | None, np.ndarray]:
        """(the mapping, this column's rows as an (rows, *shape) array over it)."""
        shape = (self.rows, *self.shape)
        if self.file_rows == 0 or self.row_bytes == 0:
            return None, np.empty(shape, np.dtype(self.dtype))
        with open(self.path, "rb") as fh:
            mm = mmap.mmap(fh.fileno(), 0, access=access)
        full = np.frombuffer(mm, np.dtype(self.dtype), count=self.file_rows * math.prod(self.shape),
                             offset=self.offset).reshape(self.file_rows, *self.shape)
        return mm, full[self.start:self.start + self.rows]


def open_npy(path: str | os.PathLike, shape: tuple[int, ...] | None = None) -> NpyColumn:
    """The ``.npy`` file ``path`` as a column (its header only is read). ``shape``: the per-row
    shape to view each row as (same number of values; default the file's own)."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    try:
        if arr.ndim < 1:
            raise ValueError(f"{path}: a 0-d array has no rows")
        if not arr.flags.c_contiguous:
            raise ValueError(f"{path}: Fortran-order arrays cannot be streamed by rows; save it in "
                             "C order (np.ascontiguousarray)")
        per = tuple(arr.shape[1:]) if shape is None else tuple(shape)
        if math.prod(per) != math.prod(arr.shape[1:]):
            raise ValueError(f"{path}: rows of shape {tuple(arr.shape[1:])} cannot be viewed as {per}")
        offset = arr.offset if isinstance(arr, np.memmap) else 0
        return NpyColumn(str(Path(path).resolve()), arr.dtype.str, int(offset), int(arr.shape[0]), per)
    finally:
        del arr


class _Reader:
    """One process's memory maps of a split's columns, gathering index batches."""

    def __init__(self, columns: Mapping[str, NpyColumn]) -> None:
        self.pid = os.getpid()
        self.maps: list[mmap.mmap] = []
        self.arrays: dict[str, np.ndarray] = {}
        for m, col in columns.items():
            mm, self.arrays[m] = col.map()
            if mm is not None:
                self.maps.append(mm)
        self.row_bytes = {m: col.row_bytes for m, col in columns.items()}
        self.cast = {m: None if col.cast is None else np.dtype(col.cast) for m, col in columns.items()}
        self.read = 0

    def _touched(self, nbytes: int) -> None:
        self.read += nbytes
        if self.read >= DROP_BYTES:
            self.drop()

    def drop(self) -> None:
        """Unmap the pages read so far from this process (they stay in the page cache)."""
        self.read = 0
        if hasattr(mmap, "MADV_DONTNEED"):
            for mm in self.maps:
                mm.madvise(mmap.MADV_DONTNEED)

    def gather(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``index`` of every column, copied into fresh (writable) arrays."""
        n = len(index)
        contiguous = n > 0 and int(index[-1]) - int(index[0]) == n - 1 and bool(np.all(np.diff(index) == 1))
        out = {}
        for m, arr in self.arrays.items():
            x = arr[int(index[0]):int(index[0]) + n] if contiguous else arr[index]
            cast = self.cast[m]
            if cast is not None:  # a copy (of a view, or of the gathered rows)
                if x.dtype.kind == "f" and x.dtype.itemsize > 4:
                    x = x.astype(np.float32)  # wider floats pass through float32 first
                x = x.astype(cast)
            elif contiguous:
                x = x.copy()
            if not x.dtype.isnative:
                x = x.astype(x.dtype.newbyteorder("="))
            if x.dtype not in _TORCH_DTYPES:
                x = x.astype(np.float64)
            out[m] = x
        self._touched(sum(self.row_bytes.values()) * n)
        return out

    def chunks(self, modality: str) -> Iterator[np.ndarray]:
        """Consecutive row chunks of about ``CHUNK_BYTES`` (views of the mapping), dropping the
        pages read as it goes."""
        arr = self.arrays[modality]
        step = max(1, CHUNK_BYTES // max(1, self.row_bytes[modality]))
        for s in range(0, arr.shape[0], step):
            yield arr[s:s + step]
            self._touched(self.row_bytes[modality] * min(step, arr.shape[0] - s))
        self.drop()


def iter_chunks(column: NpyColumn) -> Iterator[np.ndarray]:
    """The column's rows in consecutive chunks of about ``CHUNK_BYTES`` (read-only views of a
    memory map whose pages are dropped as the scan goes on): a whole-file check or sum that never
    holds the file in memory."""
    return _Reader({"x": column}).chunks("x")


class _IndexBatchDataset(Dataset):
    """``dataset[index_batch] -> {modality: tensor (B, *shape)}`` in the stored dtype."""

    def __init__(self, columns: Mapping[str, NpyColumn]) -> None:
        self.columns = dict(columns)
        self.rows = next(iter(self.columns.values())).rows if self.columns else 0
        self._reader: _Reader | None = None

    def reader(self) -> _Reader:
        if self._reader is None or self._reader.pid != os.getpid():  # a fresh map per process
            self._reader = _Reader(self.columns)
        return self._reader

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        return {m: torch.from_numpy(x) for m, x in self.reader().gather(np.asarray(index)).items()}

    def __getstate__(self) -> dict:  # what a spawned worker receives: plain data, no mapping
        return {"columns": self.columns, "rows": self.rows, "_reader": None}


class _IndexBatches(Sampler):
    """The index batches of the current pass (set before each pass; the workers persist)."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class DiskSplit(DataSplit):
    """A split whose inputs stay on disk: one :class:`NpyColumn` per modality, ``target`` in
    memory. ``loader``: the streaming settings (default: the gin configurable ``disk_loader``,
    read when the split first streams)."""

    def __init__(self, columns: Mapping[str, NpyColumn], target: torch.Tensor, name: str = "",
                 loader: LoaderOptions | None = None, groups: torch.Tensor | None = None) -> None:
        self.columns = dict(columns)
        self.target = target
        self.name = name
        self.loader = loader
        self.groups = groups  # (N,) sample groups for metrics, in memory like the targets
        n = int(target.shape[0])
        if groups is not None and tuple(groups.shape) != (n,):
            raise ValueError(f"split {name!r}: groups have shape {tuple(groups.shape)}; expected ({n},)")
        for m, col in self.columns.items():
            if col.rows != n:
                raise ValueError(f"split {name!r}: modality {m!r} has {col.rows} samples but there "
                                 f"are {n} targets")
        self._dataset = _IndexBatchDataset(self.columns)
        self._dataloader: DataLoader | None = None
        self._inputs: dict[str, torch.Tensor] | None = None
        self._maps: list = []

    @classmethod
    def from_npy(cls, files: Mapping[str, str | os.PathLike], target, name: str = "",
                 shapes: Mapping[str, tuple[int, ...]] | None = None,
                 loader: LoaderOptions | None = None, groups: torch.Tensor | None = None) -> "DiskSplit":
        """Modality -> ``.npy`` file (rows = samples), and the targets (a tensor, or a ``.npy``
        file read into memory)."""
        if not isinstance(target, torch.Tensor):
            target = torch.from_numpy(np.load(target, allow_pickle=False))
        cols = {m: open_npy(p, (shapes or {}).get(m)) for m, p in files.items()}
        return cls(cols, target, name, loader, groups)

    def __repr__(self) -> str:
        cols = ", ".join(f"{m}={Path(c.path).name}[{c.start}:{c.start + c.rows}]"
                         for m, c in self.columns.items())
        return f"DiskSplit({self.name!r}, {len(self)} rows, {cols}, device={self.device})"

    def to(self, device: torch.device | str) -> "DiskSplit":
        return DiskSplit(self.columns, self.target.to(device), self.name, self.loader, self.groups)

    def subset(self, start: int, rows: int, name: str | None = None) -> "DiskSplit":
        """Rows ``start .. start + rows`` (views of the same files)."""
        return DiskSplit({m: c.subset(start, rows) for m, c in self.columns.items()},
                         self.target[start:start + rows], self.name if name is None else name,
                         self.loader, None if self.groups is None else self.groups[start:start + rows])

    @property
    def inputs(self) -> dict[str, torch.Tensor]:
        """Zero-copy (copy-on-write) tensor views of the mapped files, for inspection; reading
        them reads the files. The harness never uses them."""
        if self._inputs is None:
            views = {}
            for m, col in self.columns.items():
                mm, arr = col.map(mmap.ACCESS_COPY)
                if mm is not None:
                    self._maps.append(mm)
                views[m] = torch.from_numpy(arr)
            self._inputs = views
        return self._inputs

    # -- batches ---------------------------------------------------------------------------
    def _finish(self, arrays: Mapping[str, torch.Tensor], index: np.ndarray, spec: TaskSpec) -> Batch:
        """Move a gathered batch to the device and normalise it as ``Split.batch`` does."""
        dev = self.device
        inputs = {}
        for m in spec.modalities:
            x = arrays[m.name].to(dev, non_blocking=True)
            inputs[m.name] = x.float().mul_(m.scale) if m.scale != 1.0 else x.float()
        return Batch(inputs, self.target.index_select(0, torch.from_numpy(index).to(dev)))

    def batch(self, index: torch.Tensor, spec: TaskSpec) -> Batch:
        """Rows ``index``, read in this process."""
        idx = index.detach().to("cpu", torch.int64).numpy()
        arrays = {m: torch.from_numpy(x) for m, x in self._dataset.reader().gather(idx).items()}
        return self._finish(arrays, idx, spec)

    def _options(self) -> LoaderOptions:
        return self.loader if self.loader is not None else LoaderOptions()  # gin, if bound

    def _stream(self) -> DataLoader:
        if self._dataloader is None:
            opts = self._options()
            pin = self.device.type == "cuda" if opts.pin_memory is None else opts.pin_memory
            self._dataloader = DataLoader(
                self._dataset, sampler=_IndexBatches(), batch_size=None,
                num_workers=opts.workers, pin_memory=pin,
                prefetch_factor=opts.prefetch_factor,
                persistent_workers=opts.persistent_workers)
        return self._dataloader

    def batches(self, spec: TaskSpec, batch_size: int,
                order: torch.Tensor | None = None) -> Iterator[Batch]:
        n = len(self)
        if order is None:
            index = [np.arange(s, min(s + batch_size, n), dtype=np.int64) for s in range(0, n, batch_size)]
        else:
            flat = order.detach().to("cpu", torch.int64).numpy()
            index = [flat[s:s + batch_size] for s in range(0, len(flat), batch_size)]
        if self._options().workers == 0:
            reader = self._dataset.reader()
            for idx in index:
                yield self._finish({m: torch.from_numpy(x) for m, x in reader.gather(idx).items()},
                                   idx, spec)
            return
        stream = self._stream()
        stream.sampler.batches = index
        for idx, arrays in zip(index, stream):
            yield self._finish(arrays, idx, spec)

    def mean(self, modality: str) -> torch.Tensor:
        """Summed in float64 chunk by chunk in this process (exactly the in-memory mean for
        integer-valued data: those sums are exact)."""
        col = self.columns[modality]
        total = np.zeros(col.shape, np.float64)
        for chunk in self._dataset.reader().chunks(modality):
            total += chunk.sum(0, dtype=np.float64)
        return (torch.from_numpy(total) / len(self)).to(self.device)


def save_split(split: Split, folder: str | os.PathLike, loader: LoaderOptions | None = None) -> DiskSplit:
    """Write an in-memory split as ``<folder>/<modality>.npy`` + ``target.npy`` (stored dtypes
    kept) and open it as a :class:`DiskSplit` (tests, benchmarks, caches)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for m, x in split.inputs.items():
        files[m] = folder / f"{m}.npy"
        np.save(files[m], x.detach().cpu().contiguous().numpy())
    np.save(folder / "target.npy", split.target.detach().cpu().numpy())
    groups = getattr(split, "groups", None)
    return DiskSplit.from_npy(files, folder / "target.npy", split.name, loader=loader,
                              groups=groups).to(split.device)


__all__ = ["DiskSplit", "LoaderOptions", "NpyColumn", "iter_chunks", "open_npy", "save_split",
           "CHUNK_BYTES", "DROP_BYTES"]
