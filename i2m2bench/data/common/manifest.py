"""Checksums and manifests of prepared files, written and checked the same way by every family.

A prepared folder (FastMRI's cache, the VL datasets' features) records each ``.npy`` file it
wrote -- shape, dtype, bytes, sha256 and, where a quick check must not read every byte, a *probe*
sha256 over the header and a few evenly spaced blocks (:func:`probe_sha256`) -- in a JSON
manifest written atomically (:func:`write_json`). Loaders check each file against its entry with
:func:`npy_problem` at a verify level (``quick``: size, shape, dtype and the probe when the entry
has one; ``full``: also every byte's sha256; ``none``: size, shape and dtype) and turn the
problem it names into their own error message. :func:`file_digest` is the short digest of a
manifest that the task's data checksum (hence every unit hash) carries.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from i2m2bench.data.base import file_sha256, path_problem

#: The probe's defaults: 16 blocks of 64 KiB.
PROBE_BLOCKS = 16
PROBE_BLOCK_BYTES = 64 << 10


def probe_sha256(path: str | os.PathLike, offset: int, blocks: int = PROBE_BLOCKS,
                 block_bytes: int = PROBE_BLOCK_BYTES) -> str:
    """sha256 of the first ``offset`` bytes (the .npy header) and of ``blocks`` evenly spaced
    blocks of ``block_bytes`` (block i starts at ``i * (size - block_bytes) // (blocks - 1)``);
    of the header and the whole file when it is no larger than ``blocks * block_bytes``."""
    size = os.path.getsize(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(offset))
        if size <= blocks * block_bytes or blocks < 2:
            fh.seek(0)
            h.update(fh.read())
        else:
            for i in range(blocks):
                fh.seek(i * (size - block_bytes) // (blocks - 1))
                h.update(fh.read(block_bytes))
    return h.hexdigest()


def npy_entry(path: str | os.PathLike, probe: tuple[int, int] = (PROBE_BLOCKS, PROBE_BLOCK_BYTES)) -> dict:
    """A written ``.npy`` file's manifest entry: shape, dtype (``np.dtype.str``), bytes, data
    offset, sha256 and the probe sha256 over ``probe`` = (blocks, block bytes)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(fh)
        offset = fh.tell()
    return {"shape": list(shape), "dtype": np.dtype(dtype).str, "bytes": os.path.getsize(path),
            "offset": offset, "sha256": file_sha256(path),
            "probe_sha256": probe_sha256(path, offset, *probe)}


def short_entry(path: str | os.PathLike) -> dict:
    """A ``.npy`` file's short manifest entry (the VL features' format): shape, dtype name
    (``str(dtype)``) and sha256."""
    a = np.load(path, mmap_mode="r")
    return {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": file_sha256(path)}


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: its type name and its message with whitespace runs collapsed."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def npy_problem(path: Path, entry: dict, level: str, manifest: Path,
                probe: tuple[int, int] | None = None) -> str | None:
    """What is wrong with ``path`` against its manifest ``entry`` at verify ``level``
    (``none``, ``quick`` or ``full``), or None: missing, another size (when the entry records
    bytes), not a readable .npy, another shape or dtype (compared in the entry's own spelling),
    another probe sha256 (``quick``, when ``probe`` is given and the entry has one) or sha256
    (``full``)."""
    problem = path_problem(path, "file")
    if problem is not None:
        return problem
    if "bytes" in entry:
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            return f"{size} bytes, the manifest records {entry['bytes']}"
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # a header that no longer parses
        return f"cannot read it as a .npy array ({one_line(exc)})"
    shape = list(arr.shape)
    dtype = arr.dtype.str if "bytes" in entry else str(arr.dtype)
    del arr
    if shape != list(entry["shape"]) or dtype != entry["dtype"]:
        if "bytes" in entry:
            return (f"shape {tuple(shape)} dtype {dtype}, the manifest records "
                    f"{tuple(entry['shape'])} {entry['dtype']}")
        return f"shape {shape} {dtype}, but {manifest} records {entry['shape']} {entry['dtype']}"
    if level == "quick" and probe is not None and "probe_sha256" in entry:
        if probe_sha256(path, int(entry["offset"]), *probe) != entry["probe_sha256"]:
            return "its probe sha256 (header and sampled blocks) differs from the manifest's"
    elif level == "full" and file_sha256(path) != entry["sha256"]:
        return "its sha256 differs from the manifest's"
    return None


class NpyWriter:
    """A ``.npy`` file of ``shape`` written row block by row block with positioned writes
    (``os.pwrite``: the page cache only, no mapping in this process, and a full disk is an
    OSError rather than the SIGBUS of a write through a mapping). New (``start_row=0``): created
    at its full size (``open_memmap``: the header); resumed (``start_row > 0``): the existing
    file, which must have that shape and dtype, continued at row ``start_row``. A failed write
    is a :class:`~i2m2bench.fileio.WriteError` naming the file (``what``: what it is)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype, start_row: int = 0,
                 what: str = "a prepared file") -> None:
        from i2m2bench.fileio import WriteError

        self.path, self.shape, self.dtype, self.what = path, tuple(shape), np.dtype(dtype), what
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.fd = None
        self.next_row = start_row
        try:
            mm = np.lib.format.open_memmap(path, mode="r+" if start_row else "w+",
                                           dtype=self.dtype, shape=self.shape)
            if tuple(mm.shape) != self.shape or mm.dtype != self.dtype:
                raise ValueError(f"{path}: shape {mm.shape} {mm.dtype}, expected {self.shape} "
                                 f"{self.dtype} to resume at row {start_row}")
            self.offset = int(mm.offset)
            del mm
            self.fd = os.open(path, os.O_WRONLY)
        except OSError as exc:
            raise WriteError(path, exc, what) from exc

    def append(self, rows: np.ndarray) -> None:
        from i2m2bench.fileio import WriteError

        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.next_row + len(rows) > self.shape[0]:
            raise AssertionError(f"{self.path}: rows {rows.shape} at {self.next_row} do not fit "
                                 f"{self.shape}")
        buf = memoryview(rows.reshape(-1).view(np.uint8))
        pos = self.offset + self.next_row * self.row_bytes
        try:
            while len(buf):
                n = os.pwrite(self.fd, buf, pos)
                buf, pos = buf[n:], pos + n
        except OSError as exc:
            raise WriteError(self.path, exc, self.what) from exc
        self.next_row += len(rows)

    def sync(self) -> None:
        """Flush the written rows to disk (fsync)."""
        from i2m2bench.fileio import WriteError

        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise WriteError(self.path, exc, self.what) from exc

    def close(self, complete: bool = True) -> None:
        """Sync and close; with ``complete``, every row must have been written."""
        if self.fd is None:
            return
        try:
            self.sync()
        finally:
            fd, self.fd = self.fd, None
            os.close(fd)
        if complete and self.next_row != self.shape[0]:
            raise AssertionError(f"{self.path}: {self.next_row} rows written of {self.shape[0]}")


def write_json(path: Path, content: dict, indent: int = 1, newline: bool = False) -> Path:
    """Write ``content`` as JSON to ``path`` atomically (a temporary file beside it, then a
    rename); returns ``path``."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(json.dumps(content, indent=indent) + ("\n" if newline else ""))
    os.replace(tmp, path)
    return path


def file_digest(path: Path, length: int = 16) -> str:
    """A short sha256 digest of a file's bytes (a manifest: it records every file's sha256)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


__all__ = ["NpyWriter", "PROBE_BLOCKS", "PROBE_BLOCK_BYTES", "file_digest", "npy_entry", "npy_problem",
           "one_line", "probe_sha256", "short_entry", "write_json"]
