"""Splits that live on disk: ``.npy`` files read in place, streamed in index batches.

A :class:`DiskSplit` is the on-disk kind of :class:`i2m2bench.types.DataSplit`. Each modality is
an :class:`NpyColumn` — a row range of a C-order ``.npy`` file, each row viewed as the modality's
per-sample shape — and the targets are held in memory (they are small, and metrics need them
without reading inputs). A pass over the split (:meth:`DiskSplit.batches`) hands whole *index
batches* to a ``torch.utils.data.DataLoader`` (the sampler yields one int64 array per batch,
``batch_size=None``: no per-sample Python collation); its workers read each batch's rows, in
the stored dtype, into one flat buffer allocated in shared memory (one hand-over per batch); the
batch is pinned (CUDA), moved to the device and normalised there exactly as
:meth:`i2m2bench.types.Split.batch` does, so both kinds give bit-identical batches for the same
rows. On a CPU device the rows are read in the training process by default (see
:class:`LoaderOptions`).

Resident memory stays bounded however large the files are: nothing is copied into memory but
the batches in flight. Rows are read with positioned reads (``pread``) from the kernel's page
cache — which holds the recently used parts of the files, and is what a memory map would read
from too — rather than through a memory map, because on current Linux a fault on a mapped file
maps the whole large folio around it (up to 2 MB of resident memory for one 4 KB row), so that a
mapped random-access reader ends up with the whole file in its resident set (measured: 320 MB
for 256 random 4 KB rows on Linux 6.18). The files are still memory-mapped for inspection
(:attr:`DiskSplit.inputs`) and never loaded.

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
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from i2m2bench.types import Batch, DataSplit, Split, TaskSpec, model_input, shard_rows

# Rows per chunk of a sequential scan (means, validation): about this many bytes.
CHUNK_BYTES = 64 << 20
# Stored dtypes handed to torch as they are; others are widened to float64 (exact for the
# integers a loader accepts) in the worker.
_TORCH_OF = {np.dtype("u1"): torch.uint8, np.dtype("i1"): torch.int8, np.dtype("i2"): torch.int16,
             np.dtype("i4"): torch.int32, np.dtype("i8"): torch.int64, np.dtype("f2"): torch.float16,
             np.dtype("f4"): torch.float32, np.dtype("f8"): torch.float64, np.dtype("?"): torch.bool}
_TORCH_DTYPES = set(_TORCH_OF)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@gin.configurable("disk_loader")
@dataclass(frozen=True)
class LoaderOptions:
    """How a :class:`DiskSplit` streams (gin: ``disk_loader.*``). Results do not depend on them.

    ``num_workers``: DataLoader worker processes; 0 reads in the main process. None (default):
    ``min(4, CPUs)`` when the split's device is CUDA — the main process mostly waits for the GPU,
    and workers read and pin the next batches meanwhile — and 0 on the CPU, where the training
    step already keeps every core busy (torch's intra-op threads) and a worker only adds the cost
    of handing each batch over (shared memory, page faults, a file descriptor) and of preempting
    those threads (on 2 cores, a late-fusion MLP on 2 × 64×64 uint8 rows, batch 256: 13,700–15,500
    samples/s with 2 workers, 21,000–25,800 reading in the main process, 25,200–30,700 in memory;
    docs/scaling.md, "Data larger than memory").
    ``prefetch_factor``: batches in flight per worker; ``pin_memory``: None pins when the split's
    device is CUDA; ``persistent_workers``: keep the workers between passes (epochs).
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

    def workers(self, device: torch.device) -> int:
        """The number of worker processes for a split on ``device``."""
        if self.num_workers is not None:
            return int(self.num_workers)
        return min(4, _cpus()) if device.type == "cuda" else 0


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


def _sent_dtype(col: NpyColumn) -> np.dtype:
    """The dtype a column's rows are handed over in: its ``cast``, else the stored dtype in
    native byte order, widened to float64 when torch has no such dtype."""
    if col.cast is not None:
        return np.dtype(col.cast)
    dt = np.dtype(col.dtype).newbyteorder("=")
    return dt if dt in _TORCH_DTYPES else np.dtype(np.float64)


def _layout(columns: Mapping[str, NpyColumn], n: int):
    """Where the rows of ``n`` samples of each column lie in one flat byte buffer: a list of
    (modality, dtype, shape, byte offset, bytes) — offsets aligned to 64 bytes — and the size.
    One buffer per batch: one shared-memory segment to hand from a worker, one pinned copy."""
    segments, off = [], 0
    for m, col in columns.items():
        dt = _sent_dtype(col)
        nbytes = n * math.prod(col.shape) * dt.itemsize
        segments.append((m, dt, col.shape, off, nbytes))
        off += -(-nbytes // 64) * 64
    return segments, off


def _unpack(flat: torch.Tensor, columns: Mapping[str, NpyColumn], n: int) -> dict[str, torch.Tensor]:
    """The per-modality tensors (views) of a flat batch buffer."""
    segments, _ = _layout(columns, n)
    return {m: flat[off:off + nbytes].view(_TORCH_OF[dt]).view(n, *shape)
            for m, dt, shape, off, nbytes in segments}


def _pread_into(fd: int, buf: memoryview, offset: int, path: str) -> None:
    """Fill ``buf`` from ``fd`` at ``offset`` (positioned reads; loops over short reads)."""
    done = 0
    while done < len(buf):
        got = os.preadv(fd, [buf[done:]], offset + done)
        if got <= 0:
            raise OSError(f"{path}: file ends before byte {offset + len(buf)} (truncated?)")
        done += got


class _Reader:
    """One process's open files of a split's columns: reads rows with positioned reads.

    Rows are read with ``pread`` straight from the page cache rather than through a memory map:
    a mapped random row costs this process a whole page-cache folio of resident memory (on
    Linux 6.x a fault maps the entire large folio — up to 2 MB for a 4 KB row), so a reader over
    a memory map would hold the file in its resident set; a positioned read copies exactly the
    row and holds nothing."""

    def __init__(self, columns: Mapping[str, NpyColumn], random_access: bool = True) -> None:
        self.pid = os.getpid()
        self.columns = dict(columns)
        self.random_access = random_access
        self.fds: dict[str, int] = {}
        self.cast = {m: None if col.cast is None else np.dtype(col.cast) for m, col in columns.items()}

    def _fd(self, path: str) -> int:
        fd = self.fds.get(path)
        if fd is None:
            fd = self.fds[path] = os.open(path, os.O_RDONLY)
            if self.random_access and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead of random rows
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def __del__(self) -> None:
        try:
            if os.getpid() == self.pid:
                self.close()
        except Exception:  # interpreter shutdown
            pass

    def read(self, m: str, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start .. stop`` of column ``m`` (stored dtype), into ``out`` if given."""
        col = self.columns[m]
        x = np.empty((stop - start, *col.shape), np.dtype(col.dtype)) if out is None else out
        if x.nbytes:
            _pread_into(self._fd(col.path), memoryview(x).cast("B"),
                        col.offset + (col.start + start) * col.row_bytes, col.path)
        return x

    def rows(self, m: str, index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``index`` of column ``m`` (stored dtype; into ``out`` if given): one read per
        row, or one read for a contiguous range (evaluation passes)."""
        n = len(index)
        col = self.columns[m]
        if n and (int(index.min()) < 0 or int(index.max()) >= col.rows):
            raise IndexError(f"row index out of range for {col.rows} rows")
        if n and int(index[-1]) - int(index[0]) == n - 1 and bool(np.all(np.diff(index) == 1)):
            return self.read(m, int(index[0]), int(index[0]) + n, out)
        x = np.empty((n, *col.shape), np.dtype(col.dtype)) if out is None else out
        mv, rb, fd = memoryview(x).cast("B"), col.row_bytes, self._fd(col.path)
        base = col.offset + col.start * rb
        for i, r in enumerate(index.tolist()):
            _pread_into(fd, mv[i * rb:(i + 1) * rb], base + r * rb, col.path)
        return x

    def gather(self, index: np.ndarray, flat: np.ndarray | None = None) -> np.ndarray:
        """Rows ``index`` of every column, packed into one flat uint8 buffer (``flat``, else a
        new one) as :func:`_layout` places them: each in the dtype it is handed over in."""
        n = len(index)
        segments, total = _layout(self.columns, n)
        flat = np.empty(total, np.uint8) if flat is None else flat
        for m, dt, shape, off, nbytes in segments:
            dst = flat[off:off + nbytes].view(dt).reshape(n, *shape)
            if np.dtype(self.columns[m].dtype) == dt:
                self.rows(m, index, dst)  # read straight into place
                continue
            x = self.rows(m, index)
            if self.cast[m] is not None and x.dtype.kind == "f" and x.dtype.itemsize > 4:
                x = x.astype(np.float32)  # wider floats pass through float32 first
            np.copyto(dst, x, casting="unsafe")  # = x.astype(dt): byte order, cast, widening
        return flat

    def chunks(self, modality: str) -> Iterator[np.ndarray]:
        """Consecutive row chunks of about ``CHUNK_BYTES``, read into one reused buffer (valid
        until the next chunk)."""
        col = self.columns[modality]
        step = max(1, CHUNK_BYTES // max(1, col.row_bytes))
        buf = np.empty((min(step, col.rows), *col.shape), np.dtype(col.dtype))
        for s in range(0, col.rows, step):
            e = min(col.rows, s + step)
            yield self.read(modality, s, e, buf[:e - s])


def iter_chunks(column: NpyColumn) -> Iterator[np.ndarray]:
    """The column's rows in consecutive chunks of about ``CHUNK_BYTES`` (each valid until the
    next is drawn): a whole-file check or sum that never holds the file in memory."""
    reader = _Reader({"x": column}, random_access=False)
    try:
        yield from reader.chunks("x")
    finally:
        reader.close()


class _IndexBatchDataset(Dataset):
    """``dataset[index_batch]`` -> the batch's rows of every column in one flat buffer."""

    def __init__(self, columns: Mapping[str, NpyColumn]) -> None:
        self.columns = dict(columns)
        self.rows = next(iter(self.columns.values())).rows if self.columns else 0
        self._reader: _Reader | None = None

    def reader(self) -> _Reader:
        if self._reader is None or self._reader.pid != os.getpid():  # own files per process
            self._reader = _Reader(self.columns)
        return self._reader

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: np.ndarray) -> torch.Tensor:
        """The batch as one flat uint8 tensor (:func:`_layout`); in a worker process it is
        allocated in shared memory, so handing it to the main process copies nothing."""
        index = np.asarray(index)
        _, total = _layout(self.columns, len(index))
        new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
        if get_worker_info() is not None and new_shared is not None:
            flat = torch.empty(0, dtype=torch.uint8).set_(new_shared(total))
        else:
            flat = torch.empty(total, dtype=torch.uint8)
        self.reader().gather(index, flat.numpy())
        return flat

    def __getstate__(self) -> dict:  # what a spawned worker receives: plain data, no open files
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
    def _finish(self, flat: torch.Tensor, index: np.ndarray, spec: TaskSpec) -> Batch:
        """Move a gathered batch (one flat buffer) to the device and normalise it as
        ``Split.batch`` does (the same :func:`~i2m2bench.types.model_input`)."""
        dev = self.device
        arrays = _unpack(flat.to(dev, non_blocking=True), self.columns, len(index))
        inputs = {}
        for m in spec.modalities:  # views of this batch's own buffer: normalised in place
            inputs[m.name] = model_input(arrays[m.name], m, inplace=True)
        return Batch(inputs, self.target.index_select(0, torch.from_numpy(index).to(dev)))

    def batch(self, index: torch.Tensor, spec: TaskSpec) -> Batch:
        """Rows ``index``, read in this process."""
        idx = index.detach().to("cpu", torch.int64).numpy()
        return self._finish(self._dataset[idx], idx, spec)

    def _options(self) -> LoaderOptions:
        return self.loader if self.loader is not None else LoaderOptions()  # gin, if bound

    def _stream(self) -> DataLoader:
        if self._dataloader is None:
            opts = self._options()
            pin = self.device.type == "cuda" if opts.pin_memory is None else opts.pin_memory
            self._dataloader = DataLoader(
                self._dataset, sampler=_IndexBatches(), batch_size=None,
                num_workers=opts.workers(self.device), pin_memory=pin,
                prefetch_factor=opts.prefetch_factor,
                persistent_workers=opts.persistent_workers)
        return self._dataloader

    def batches(self, spec: TaskSpec, batch_size: int, order: torch.Tensor | None = None,
                shard: tuple[int, int] | None = None) -> Iterator[Batch]:
        n = len(self)
        if order is None:
            index = [np.arange(s, min(s + batch_size, n), dtype=np.int64) for s in range(0, n, batch_size)]
        else:
            flat = order.detach().to("cpu", torch.int64).numpy()
            index = [flat[s:s + batch_size] for s in range(0, len(flat), batch_size)]
        index = [shard_rows(idx, shard) for idx in index]
        if self._options().workers(self.device) == 0:
            for idx in index:
                yield self._finish(self._dataset[idx], idx, spec)
            return
        stream = self._stream()
        stream.sampler.batches = index
        for idx, flat in zip(index, stream):
            yield self._finish(flat, idx, spec)

    def mean(self, modality: str) -> torch.Tensor:
        """Summed in float64 chunk by chunk in this process (exactly the in-memory mean for
        integer-valued data: those sums are exact)."""
        col = self.columns[modality]
        total = np.zeros(col.shape, np.float64)
        for chunk in iter_chunks(col):
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
           "CHUNK_BYTES"]
