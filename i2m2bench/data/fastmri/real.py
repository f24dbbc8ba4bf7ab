"""FastMRI knee (single-coil) from the real files: read once into a memory-mapped cache.

The real data are large (about 42,000 slices; the k-space alone is tens of GB) and are never
downloaded by i2m2bench. :func:`prepare` reads them once, slice by slice, and writes a cache of
``.npy`` files (magnitude and phase images, labels, an undersampled test set); :func:`load_cache`
checks the cache against its manifest and opens it as :class:`~i2m2bench.data.common.disk.DiskSplit`
splits that stream from disk. Both go through :mod:`i2m2bench.data.fastmri.processing` (padding,
centred inverse FFT, crop, magnitude/phase, labels, column masks), the code the embedded phantom
uses too.

Input layouts
-------------
``F`` is the folder the caller passes (``<data root>/fastmri``). Two layouts are accepted; when
``F/knee/metadata_knee.csv`` exists the **official layout wins** over the raw one (both may sit in
``F``: the official scripts write ``knee/`` next to the raw ``singlecoil_*`` folders).

1. **Raw fastMRI + fastMRI+** (``layout='raw'``)::

       F/singlecoil_train/file1000001.h5 ...   volumes: 'kspace' (slices, rows, cols) complex
       F/singlecoil_val/*.h5
       F/fastmri_plus/knee.csv                 fastMRI+ boxes (file,slice,...,label)
       F/fastmri_plus/knee_file_list.csv       the reviewed volumes, one id a line, no header

   (facebookresearch/fastMRI @ 91f2df4, ``fastmri/data/README.md`` L32-49: single-coil train/val
   files hold ``kspace`` (slices, height, width); microsoft/fastmri-plus @ 67ed9a6,
   ``Annotations/knee.csv`` line 1 and ``README.md`` L29: one row per box, volumes without a
   finding are absent from knee.csv but listed in knee_file_list.csv.)
   A slice's labels are :func:`parse_labels` of the ``label`` values of its rows (study-level
   rows, whose box fields are empty, count at their slice, as the official ``groupby(['file',
   'slice'])`` does: divyam3897/I2M2 @ 7742765, ``fastMRI/data_processing/knee/
   generate_knee_metadata.py`` L51-60); a reviewed slice without a row has no finding (all four
   labels 0). Only reviewed volumes found on disk are used. A volume whose k-space has more
   columns than ``width`` (400) is dropped, as the official script drops it (I2M2 @ 7742765,
   ``fastMRI/data_processing/knee/knee_singlecoil.py`` L46-47); dropped volumes are counted, logged
   and listed in the manifest. Narrower k-space is zero-padded to ``width`` columns
   (knee_singlecoil.py L50-55, :func:`~i2m2bench.data.fastmri.processing.pad_columns`).

   Split by volume, 70/15/15 (generate_knee_metadata.py L38-39), over the **sorted** reviewed ids
   of the file list (see :func:`split_volumes`): ``train, rest = train_test_split(ids,
   test_size=0.3, random_state=0)``; ``test, val = train_test_split(rest, test_size=0.5,
   random_state=0)`` -- the first output of the second call is test. The split is made over every
   reviewed id of the list, as the official one is (L24, L38), so a volume's split does not depend
   on which volumes are on disk or dropped.

2. **Official I2M2 preprocessed layout** (``layout='official'``)::

       F/knee/metadata_knee.csv                volume_id, slice_id, labels, data_split, ...
       F/knee/<volume_id>/knee_singlecoil_<volume_id>_<slice_id>.h5
                                               'sc_kspace' (640, 400) complex

   (knee_singlecoil.py L79-111: one file per slice, ``sc_kspace`` already padded to 640 x 400,
   complex128 when it was padded, complex64 when not; generate_knee_metadata.py L96-107: the csv's
   columns.) Rows whose ``data_split`` is ``train_class``, ``val_class`` or ``test_class``
   (divyam3897/mri-robustness @ d12968b, ``src/data/knee_data.py`` L197-199) form train, val and
   test; other rows (the official script writes None for unreviewed volumes) are ignored and
   counted. ``labels`` is the str of a Python list of label strings or None (``"['Meniscus
   Tear', 'Joint Effusion ']"``, ``"[None]"``), read with ``ast.literal_eval`` -- never ``eval``.
   Slice files are found by ``volume_id`` / ``slice_id`` under ``F/knee``, not by the csv's
   ``location`` column (a path relative to the official repository).

Processing (both layouts): per slice, ``magnitude_phase(kspace, width, crop)`` -- pad to
``width`` columns (a no-op for the official 640 x 400 files), centred orthonormal inverse FFT,
centre crop, ``abs`` and ``angle`` (I2M2 @ 7742765, ``fastMRI/models/preactresnet_knee.py``
L16-23, L221-239; mri-robustness @ d12968b, ``src/data/knee_data.py`` L81-105). The official
model sees these raw values, with no normalisation.

The cache
---------
``prepare`` writes, in the cache folder (default ``F/cache``), for each split ``s`` in
train/val/test::

    <s>_magnitude.npy   float16 (N, 1, H, W)   magnitude / MAG_REF
    <s>_phase.npy       float16 (N, 1, H, W)   phase, radians in [-pi, pi]
    <s>_labels.npy      uint8   (N, 4)         [abnormal, meniscus_tear, acl, cartilage]

plus the shift set ``undersampled4x`` of the test split (``test_undersampled4x_magnitude.npy``,
``test_undersampled4x_phase.npy``; labels are the test labels): the same k-space with a
fastMRI-style random column mask (:func:`undersample`: acceleration 4, centre fraction 0.08;
fastMRI @ 91f2df4, ``fastmri/data/subsample.py`` L134-136, L240-244), drawn with
``np.random.default_rng([seed, volume index in the test split, slice index])``. The mask covers
the acquired columns, before padding: all columns of a raw volume; for an official slice file
(already padded) the span from its first to its last column with non-zero energy (the rule of
the official ``sampled_indices``, knee_singlecoil.py L39-40, applied per slice).

Rows are grouped by volume, volumes in sorted id order, slices in order; the manifest lists the
volumes and their slice counts (:meth:`CachedFastMRI.rows`).

*Magnitude scale.* FastMRI magnitudes are about 1e-5..1e-3, below float16's normal range
(6.1e-5): stored as they are they would lose most of their precision. They are stored divided by
``MAG_REF``, a power of two (so the division is exact before rounding) at or above the 99.9th
percentile of the magnitudes of the first train slices (:data:`MAG_REF_SLICES`); the manifest
records it (``mag_ref``), and a loader's modality ``scale = mag_ref`` restores the official values
(:attr:`CachedFastMRI.mag_ref`).

*Writing.* A cheap first pass reads only the h5 metadata (dataset shapes and dtypes) to check
every file and count the slices of each split; the write pass then processes one volume at a
time, :data:`SLICE_CHUNK` slices at a time. Each ``.npy`` file is created at its full size with
``np.lib.format.open_memmap`` (header and size), and its rows are then written with positioned
writes (``os.pwrite``) rather than through the mapping: the pages of a mapping that are written
stay in the process's resident set (see :mod:`i2m2bench.data.common.disk`), positioned writes go to the
page cache only. Resident memory is thus a few chunks of slices, whatever the data size. Everything
is written into a hidden temporary folder beside the cache (``.<name>.prepare-*``), renamed onto
the cache only when complete: an interrupted prepare leaves no half cache (a killed one leaves its
temporary folder, safe to delete), and an existing cache is replaced only once the new one is
complete.

``manifest.json``: ``format``/``version``, ``layout``, ``source`` (the folder read), ``width``,
``crop``, ``mag_ref`` (and how it was chosen), ``seed`` and the undersampling settings, per split
the ``count``, ``volumes``, ``slices`` (per volume), ``dropped`` (id + reason) and, for the raw
layout, ``absent`` (reviewed volumes not on disk); the file-list lines ignored, label rows that
name a slice the volume does not have; and per ``.npy`` file its ``shape``, ``dtype``, ``bytes``,
``sha256`` and ``probe_sha256`` -- a sha256 over the ``.npy`` header and :data:`PROBE_BLOCKS`
evenly spaced blocks of :data:`PROBE_BLOCK_BYTES` (the whole file when it is smaller), which
:func:`load_cache` checks by default in milliseconds.

Deviations from the official code (all recorded in the manifest's ``deviations``)
-----------------------------------------------------------------------------------
* The reviewed ids are **sorted** before the split: the official list comes from
  ``list(set(...))`` (generate_knee_metadata.py L24), whose order depends on ``PYTHONHASHSEED``, so
  the official split cannot be reproduced; ours can.
* Lines of knee_file_list.csv that are not volume ids (``file`` + digits) are ignored: the
  official script reads the file with ``header=None`` (L19) and so splits the stray last line
  ``Knee data`` (fastmri-plus ``Annotations/knee_file_list.csv`` line 1173) as if it were a volume.
* Any number of rows >= the crop height is accepted; the official script assumes 640.
* Magnitudes are stored as float16 ``magnitude / MAG_REF`` and phases as float16 (about 3
  significant digits); the official loader computes float32 values on the fly.

Bad input is a :class:`~i2m2bench.data.base.DataError`, one line naming the file (and the line of
a csv) and what was expected.

h5py is imported only when h5 files are read.
"""
from __future__ import annotations

import ast
import csv
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from i2m2bench.data.base import DataError, file_sha256, path_problem
from i2m2bench.data.common.disk import DiskSplit
from i2m2bench.data.fastmri.processing import (CROP, KSPACE_SHAPE, LABELS, column_mask,
                                               magnitude_phase, parse_labels)
from i2m2bench.fileio import WriteError, write_text_atomic

FORMAT = "i2m2bench-fastmri-cache"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
#: The shift set of the test split, and its undersampling (fastMRI ``RandomMaskFunc`` settings).
SHIFT = "undersampled4x"
UNDERSAMPLING = {"kind": "random", "acceleration": 4, "center_fraction": 0.08}
#: data_split values of the official metadata csv -> our split names.
OFFICIAL_SPLITS = {"train_class": "train", "val_class": "val", "test_class": "test"}
PREPARE_HINT = "run `python -m i2m2bench prepare fastmri --data-root DIR` (DIR holding fastmri/)"

RAW_DIRS = ("singlecoil_train", "singlecoil_val")
KNEE_CSV = Path("fastmri_plus") / "knee.csv"
FILE_LIST_CSV = Path("fastmri_plus") / "knee_file_list.csv"
METADATA_CSV = Path("knee") / "metadata_knee.csv"
KNEE_CSV_HEADER = ("file", "slice", "study_level", "x", "y", "width", "height", "label")
KNEE_CSV_USED = ("file", "slice", "label")
METADATA_USED = ("volume_id", "slice_id", "labels", "data_split")

#: Probe hash: the .npy header plus this many evenly spaced blocks of this many bytes.
PROBE_BLOCKS = 16
PROBE_BLOCK_BYTES = 64 << 10
#: Slices processed (and held in memory) at a time.
SLICE_CHUNK = 8
#: MAG_REF: the smallest power of two >= this percentile of the first train slices' magnitudes.
MAG_REF_PERCENTILE = 99.9
MAG_REF_SLICES = 64

_VOLUME_ID = re.compile(r"file\d+")  # a fastMRI knee volume id (file1000001)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a folder name, no path parts
_WHOLE = re.compile(r"[0-9]+")

DEVIATIONS = (
    "reviewed volume ids are sorted before the 70/15/15 split (the official list comes from a "
    "Python set, whose order depends on PYTHONHASHSEED)",
    "lines of knee_file_list.csv that are not volume ids (the stray 'Knee data' line) are "
    "ignored; the official script splits them as volumes",
    "any number of k-space rows >= the crop height is accepted (the official script assumes 640)",
    "magnitude stored as float16 magnitude / mag_ref, phase as float16",
)


# ------------------------------------------------------------------------------ small helpers
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_geometry(width: int, crop: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    ok = (isinstance(width, int) and not isinstance(width, bool) and width >= 1
          and isinstance(crop, (tuple, list)) and len(crop) == 2
          and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in crop))
    if not ok:
        raise ValueError(f"fastmri: width must be a whole number >= 1 and crop (height, width) two "
                         f"whole numbers >= 1; got width={width!r}, crop={crop!r}")
    if crop[1] > width:
        raise ValueError(f"fastmri: crop width {crop[1]} is wider than the k-space width {width}")
    return width, (int(crop[0]), int(crop[1]))


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("reading the fastMRI .h5 files needs h5py: pip install h5py") from exc
    return h5py


def _open_h5(path: Path, what: str):
    """``h5py.File(path, 'r')``; a missing, unreadable, truncated or non-HDF5 file is a DataError
    naming it."""
    problem = path_problem(path, "file")
    if problem is not None:
        raise DataError(f"{path}: {problem}; expected {what}")
    h5py = _h5py()
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read it as an HDF5 file ({_one_line(exc)}); expected "
                        f"{what}") from exc


def _kspace_dataset(h5, path: Path, key: str, ndim: int, crop: tuple[int, int], what: str):
    """The complex k-space dataset ``key`` of an open h5 file, checked (present, complex, ``ndim``
    axes, at least ``crop[0]`` rows) from its metadata only."""
    import h5py

    if key not in h5:
        found = ", ".join(sorted(h5.keys())[:8]) or "none"
        raise DataError(f"{path}: no dataset {key!r} (found: {found}); expected {what}")
    ds = h5[key]
    if not isinstance(ds, h5py.Dataset):
        raise DataError(f"{path}: {key!r} is an HDF5 group, not a dataset; expected {what}")
    if ds.dtype.kind != "c":
        raise DataError(f"{path}: dataset {key!r} has dtype {ds.dtype}, not complex; expected "
                        f"{what}")
    if ds.ndim != ndim:
        raise DataError(f"{path}: dataset {key!r} has shape {tuple(ds.shape)} ({ds.ndim} axes); "
                        f"expected {what}")
    rows, cols = ds.shape[-2:]
    if rows < crop[0]:
        raise DataError(f"{path}: dataset {key!r} has shape {tuple(ds.shape)}: {rows} rows, fewer "
                        f"than the crop height {crop[0]}; expected {what}")
    if cols < 1:
        raise DataError(f"{path}: dataset {key!r} has shape {tuple(ds.shape)}: no columns; "
                        f"expected {what}")
    return ds


def _read(ds, sel, path: Path, what: str) -> np.ndarray:
    """``ds[sel]`` as an array; a read error (a truncated file) is a DataError naming the file."""
    try:
        x = np.asarray(ds[sel])
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot read dataset {ds.name.lstrip('/')!r} "
                        f"({_one_line(exc)}); the file looks truncated or corrupt; expected "
                        f"{what}") from exc
    if not np.all(np.isfinite(x)):
        raise DataError(f"{path}: dataset {ds.name.lstrip('/')!r} holds NaN/Inf values; expected "
                        f"finite {what}")
    return x


def _reader(path: Path):
    """(an open text file for the csv module (a byte-order mark is skipped), None) or (None, why
    ``path`` cannot be read)."""
    problem = path_problem(path, "file")
    if problem is not None:
        return None, problem
    try:
        fh = open(path, "r", encoding="utf-8-sig", newline="")
    except OSError as exc:
        return None, _one_line(exc)
    return fh, None


# ------------------------------------------------------------------------------ the split
def split_volumes(ids: Iterable[str]) -> dict[str, list[str]]:
    """The official 70/15/15 split by volume (I2M2 @ 7742765, ``fastMRI/data_processing/knee/
    generate_knee_metadata.py`` L38-39) of the sorted unique ``ids``: ``train, rest =
    train_test_split(ids, test_size=0.3, random_state=0)``, then ``test, val =
    train_test_split(rest, test_size=0.5, random_state=0)``. Each list in the order sklearn
    returns it. ``ValueError`` (sklearn's) when there are too few ids to split (fewer than 4)."""
    from sklearn.model_selection import train_test_split

    ordered = sorted(set(ids))
    train, rest = train_test_split(ordered, test_size=0.3, random_state=0)
    test, val = train_test_split(rest, test_size=0.5, random_state=0)
    return {"train": list(train), "val": list(val), "test": list(test)}


# ------------------------------------------------------------------------------ the plan
@dataclass
class _Volume:
    """One volume to write: its slices (ids), their labels, and where its k-space is: ``path``
    (raw: one file, all slices) or ``files`` (official: one file per slice)."""

    id: str
    slices: list[int]
    labels: np.ndarray  # (n, 4) uint8
    path: Path | None = None
    files: list[Path] | None = None


@dataclass
class _Plan:
    layout: str
    volumes: dict[str, list[_Volume]]
    info: dict  # layout-specific manifest entries (per split and top level)


def detect_layout(folder: str | os.PathLike) -> str:
    """``'official'`` when ``folder/knee/metadata_knee.csv`` exists (it wins over the raw layout),
    ``'raw'`` when ``folder/singlecoil_train/`` or ``folder/singlecoil_val/`` exists; else a
    DataError listing what was looked for."""
    folder = Path(folder).expanduser()
    problem = path_problem(folder, "folder")
    if problem is not None:
        raise DataError(f"{folder}: {problem}; expected the fastMRI knee folder "
                        f"(<data root>/fastmri) holding {METADATA_CSV} or {RAW_DIRS[0]}/ and "
                        f"{RAW_DIRS[1]}/")
    meta = folder / METADATA_CSV
    if meta.exists() or meta.is_symlink():
        return "official"
    if any((folder / d).is_dir() for d in RAW_DIRS):
        return "raw"
    raise DataError(
        f"{folder}: no fastMRI knee data found; looked for {meta} (the official I2M2 preprocessed "
        f"layout, with per-slice files in {folder / 'knee'}/<volume_id>/) and for "
        f"{folder / RAW_DIRS[0]}/ or {folder / RAW_DIRS[1]}/ with {folder / KNEE_CSV} and "
        f"{folder / FILE_LIST_CSV} (raw fastMRI volumes + fastMRI+ labels)")


def _read_file_list(path: Path) -> tuple[list[str], list[dict]]:
    """(sorted unique volume ids, ignored non-blank lines as {line, text}) of knee_file_list.csv."""
    fh, problem = _reader(path)
    if fh is None:
        raise DataError(f"{path}: {problem}; expected the fastMRI+ list of reviewed knee volumes "
                        "(knee_file_list.csv: one volume id a line, no header)")
    ids, ignored = set(), []
    with fh:
        reader = csv.reader(fh)
        try:
            for row in reader:
                text = row[0].strip() if row else ""
                if _VOLUME_ID.fullmatch(text):
                    ids.add(text)
                elif any(cell.strip() for cell in row):
                    ignored.append({"line": reader.line_num, "text": ",".join(row)})
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: line {reader.line_num}: cannot read it as a csv "
                            f"({_one_line(exc)}); expected one volume id a line") from exc
    if not ids:
        raise DataError(f"{path}: no volume ids (file + digits, e.g. file1000001); expected the "
                        "fastMRI+ list of reviewed knee volumes, one id a line")
    return sorted(ids), ignored


def _csv_records(path: Path, used: tuple[str, ...], expected: str) -> Iterator[tuple[int, dict, list]]:
    """(line number, {column in ``used``: stripped value}, raw row) for every non-blank row of the
    csv ``path`` after its header; a header without the ``used`` columns, a row with too few
    fields or an unreadable file is a DataError naming the path and line."""
    fh, problem = _reader(path)
    if fh is None:
        raise DataError(f"{path}: {problem}; expected {expected}")
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            names = [h.strip() for h in header] if header else []
            missing = [c for c in used if c not in names]
            if missing:
                raise DataError(f"{path}: line 1: the header {','.join(names) or '(empty file)'!r} "
                                f"lacks column(s) {', '.join(missing)}; expected {expected}")
            col = {c: names.index(c) for c in used}
            need = max(col.values()) + 1
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) < need:
                    raise DataError(f"{path}: line {reader.line_num}: {len(row)} fields, expected "
                                    f"{len(names)} ({','.join(names)})")
                yield reader.line_num, {c: row[i].strip() for c, i in col.items()}, \
                    [row[i] for i in col.values()]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: line {reader.line_num}: cannot read it as a csv "
                            f"({_one_line(exc)}); expected {expected}") from exc


def _read_knee_csv(path: Path, reviewed: set[str], file_list: Path
                   ) -> dict[str, dict[int, tuple[list[str], int]]]:
    """fastMRI+ knee.csv -> {volume: {slice: (label strings, first line)}}."""
    expected = "the fastMRI+ knee annotations (header " + ",".join(KNEE_CSV_HEADER) + ")"
    out: dict[str, dict[int, tuple[list[str], int]]] = {}
    for line, rec, raw in _csv_records(path, KNEE_CSV_USED, expected):
        vid, s_text, label = rec["file"], rec["slice"], rec["label"]
        if vid not in reviewed:
            raise DataError(f"{path}: line {line}: unknown volume {vid!r}: it is not in "
                            f"{file_list} (the reviewed volumes); expected only volumes of "
                            "that list")
        if not _WHOLE.fullmatch(s_text):
            raise DataError(f"{path}: line {line}: slice {s_text!r} of {vid} is not a "
                            "whole number >= 0; expected a slice index")
        s = int(s_text)
        if not label:
            raise DataError(f"{path}: line {line}: empty label for {vid} slice {s}; "
                            "expected a fastMRI+ label string")
        labels, first = out.setdefault(vid, {}).get(s, ([], line))
        labels.append(raw[KNEE_CSV_USED.index("label")])  # as written: parse_labels strips it
        out[vid][s] = (labels, first)
    return out


def _plan_raw(folder: Path, width: int, crop: tuple[int, int], log: Callable) -> _Plan:
    file_list = folder / FILE_LIST_CSV
    reviewed, ignored_lines = _read_file_list(file_list)
    for item in ignored_lines:
        log(f"fastmri: {file_list}: line {item['line']} {item['text']!r} is not a volume id; "
            "ignored (the official script would split it as a volume)")
    annotations = _read_knee_csv(folder / KNEE_CSV, set(reviewed), file_list)

    on_disk: dict[str, Path] = {}
    for d in RAW_DIRS:
        sub = folder / d
        if not sub.is_dir():
            continue
        for p in sorted(sub.glob("*.h5")):
            if p.stem in on_disk:
                raise DataError(f"{p}: volume {p.stem} is also at {on_disk[p.stem]}; expected each "
                                "volume once across " + " and ".join(RAW_DIRS))
            on_disk[p.stem] = p
    try:
        assignment = split_volumes(reviewed)
    except ValueError as exc:
        raise DataError(f"{file_list}: {len(reviewed)} reviewed volume(s); the 70/15/15 split by "
                        f"volume needs at least 4 ({_one_line(exc)})") from exc
    what = "a fastMRI single-coil knee volume: dataset 'kspace' (slices, rows, columns) complex"
    volumes: dict[str, list[_Volume]] = {}
    info: dict = {"splits": {}, "ignored_file_list_lines": ignored_lines,
                  "unreviewed_on_disk": len(set(on_disk) - set(reviewed)),
                  "ignored_label_rows": []}
    for split in SPLITS:
        kept, dropped, absent = [], [], []
        for vid in sorted(assignment[split]):
            path = on_disk.get(vid)
            if path is None:
                absent.append(vid)
                continue
            with _open_h5(path, what) as h5:
                ds = _kspace_dataset(h5, path, "kspace", 3, crop, what)
                n, _, cols = ds.shape
            if cols > width:
                reason = f"k-space has {cols} columns, more than {width} (dropped as officially)"
                dropped.append({"volume": vid, "reason": reason})
                log(f"fastmri: {path}: {reason}")
                continue
            labels = np.zeros((n, len(LABELS)), np.uint8)
            for s, (strings, line) in sorted(annotations.get(vid, {}).items()):
                if s >= n:
                    info["ignored_label_rows"].append({"file": str(folder / KNEE_CSV), "line": line,
                                                       "volume": vid, "slice": s, "slices": n})
                    log(f"fastmri: {folder / KNEE_CSV}: line {line}: slice {s} of {vid}, which has "
                        f"{n} slices; ignored")
                    continue
                labels[s] = parse_labels(strings)
            kept.append(_Volume(vid, list(range(n)), labels, path=path))
        volumes[split] = kept
        info["splits"][split] = {"dropped": dropped, "absent": absent}
    return _Plan("raw", volumes, info)


def _label_list(text: str, path: Path, line: int) -> list:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
        ok = False
    else:
        ok = isinstance(value, list) and all(v is None or isinstance(v, str) for v in value)
    if not ok:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise DataError(f"{path}: line {line}: labels value {shown!r} is not a list literal of "
                        "label strings or None; expected e.g. \"['Meniscus Tear']\" or \"[None]\"")
    return value


def _plan_official(folder: Path, width: int, crop: tuple[int, int], log: Callable) -> _Plan:
    meta = folder / METADATA_CSV
    knee = folder / "knee"
    expected = ("the I2M2 knee metadata (generate_knee_metadata.py output with columns "
                + ", ".join(METADATA_USED) + ")")
    rows: dict[str, dict[str, dict[int, tuple[list, int]]]] = {s: {} for s in SPLITS}
    where: dict[str, tuple[str, int]] = {}  # volume -> (split, first line)
    ignored = 0
    for line, rec, raw in _csv_records(meta, METADATA_USED, expected):
        split = OFFICIAL_SPLITS.get(rec["data_split"])
        if split is None:
            ignored += 1
            continue
        vid, s_text = rec["volume_id"], rec["slice_id"]
        if not _SAFE_NAME.fullmatch(vid):
            raise DataError(f"{meta}: line {line}: volume_id {vid!r} is not a folder name; "
                            "expected a volume id such as file1000001")
        if not _WHOLE.fullmatch(s_text):
            raise DataError(f"{meta}: line {line}: slice_id {s_text!r} is not a whole "
                            "number >= 0; expected a slice index")
        s = int(s_text)
        labels = _label_list(raw[METADATA_USED.index("labels")], meta, line)
        first_split, first_line = where.setdefault(vid, (split, line))
        if first_split != split:
            raise DataError(f"{meta}: line {line}: volume {vid} is in {split} but line "
                            f"{first_line} puts it in {first_split}; expected a split by "
                            "volume")
        vol = rows[split].setdefault(vid, {})
        if s in vol:
            raise DataError(f"{meta}: line {line}: slice {s} of {vid} is also on line "
                            f"{vol[s][1]}; expected one row per slice")
        vol[s] = (labels, line)
    if ignored:
        log(f"fastmri: {meta}: {ignored} row(s) with a data_split other than "
            f"{', '.join(OFFICIAL_SPLITS)} ignored")
    what = (f"an I2M2 knee slice file: dataset 'sc_kspace' (rows, columns) complex with at least "
            f"{crop[0]} rows and at most {width} columns (officially {KSPACE_SHAPE})")
    volumes: dict[str, list[_Volume]] = {}
    for split in SPLITS:
        kept = []
        for vid in sorted(rows[split]):
            slices = sorted(rows[split][vid])
            files, labels = [], np.zeros((len(slices), len(LABELS)), np.uint8)
            for i, s in enumerate(slices):
                strings, line = rows[split][vid][s]
                path = knee / vid / f"knee_singlecoil_{vid}_{s}.h5"
                problem = path_problem(path, "file")
                if problem is not None:
                    raise DataError(f"{path}: {problem}; expected the slice file of {meta} line "
                                    f"{line} ({what})")
                with _open_h5(path, what) as h5:
                    ds = _kspace_dataset(h5, path, "sc_kspace", 2, crop, what)
                    cols = ds.shape[-1]
                if cols > width:
                    raise DataError(f"{path}: dataset 'sc_kspace' has shape {tuple(ds.shape)}: "
                                    f"{cols} columns, more than the k-space width {width}; "
                                    f"expected {what}")
                files.append(path)
                labels[i] = parse_labels(["None" if v is None else v for v in strings])
            kept.append(_Volume(vid, slices, labels, files=files))
        volumes[split] = kept
    info = {"splits": {s: {"dropped": []} for s in SPLITS}, "ignored_rows": ignored}
    return _Plan("official", volumes, info)


# ------------------------------------------------------------------------------ processing
def undersample(kspace: np.ndarray, rng: np.random.Generator,
                span: tuple[int, int] | None = None) -> np.ndarray:
    """A copy of one slice's k-space (rows, cols) with a fastMRI random column mask
    (:data:`UNDERSAMPLING`: acceleration 4, centre fraction 0.08) drawn by ``rng`` over the
    columns ``span = (first, end)`` (default all), the columns outside it left as they are
    (zero padding)."""
    lo, hi = (0, kspace.shape[-1]) if span is None else span
    mask = column_mask(hi - lo, kind=UNDERSAMPLING["kind"],
                       acceleration=UNDERSAMPLING["acceleration"],
                       center_fraction=UNDERSAMPLING["center_fraction"], rng=rng)
    out = np.array(kspace, copy=True)
    out[..., lo:hi] *= mask.astype(out.real.dtype)
    return out


def nonzero_span(kspace: np.ndarray) -> tuple[int, int]:
    """(first, last + 1) of the columns of a slice's k-space with non-zero energy (all columns
    when none has): the acquired columns of a zero-padded slice."""
    nz = np.flatnonzero(np.any(kspace != 0, axis=-2))
    return (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, kspace.shape[-1])


def _chunks(vol: _Volume, crop: tuple[int, int]) -> Iterator[tuple[list[int], np.ndarray,
                                                                    list[tuple[int, int]]]]:
    """(slice ids, k-space (n, rows, cols), undersampling spans) of a volume, a few slices at a
    time."""
    if vol.path is not None:
        what = "a fastMRI single-coil knee volume: dataset 'kspace' (slices, rows, columns) complex"
        with _open_h5(vol.path, what) as h5:
            ds = _kspace_dataset(h5, vol.path, "kspace", 3, crop, what)
            for start in range(0, len(vol.slices), SLICE_CHUNK):
                ids = vol.slices[start:start + SLICE_CHUNK]
                k = _read(ds, np.s_[ids[0]:ids[-1] + 1], vol.path, what)
                yield ids, k, [(0, k.shape[-1])] * len(ids)
        return
    what = "an I2M2 knee slice file: dataset 'sc_kspace' (rows, columns) complex"
    for s, path in zip(vol.slices, vol.files):
        with _open_h5(path, what) as h5:
            k = _read(_kspace_dataset(h5, path, "sc_kspace", 2, crop, what), (), path, what)
        yield [s], k[None], [nonzero_span(k)]


def _choose_mag_ref(plan: _Plan, width: int, crop: tuple[int, int]) -> dict:
    """MAG_REF from the first train slices (see the module docstring)."""
    mags, n, used = [], 0, []
    for vol in plan.volumes["train"]:
        for _, k, _ in _chunks(vol, crop):
            mags.append(magnitude_phase(k, width, crop)[0].ravel())
            n += len(k)
            if n >= MAG_REF_SLICES:
                break
        used.append(vol.id)
        if n >= MAG_REF_SLICES:
            break
    value = float(np.percentile(np.concatenate(mags), MAG_REF_PERCENTILE)) if mags else 0.0
    ref = 2.0 ** math.ceil(math.log2(value)) if value > 0 and math.isfinite(value) else 1.0
    return {"mag_ref": ref, "mag_ref_from": {"volumes": used, "slices": n,
                                             "percentile": MAG_REF_PERCENTILE, "value": value}}


class _NpyWriter:
    """A ``.npy`` file of ``shape`` created at its full size (``open_memmap``: the header), its
    rows then written with ``os.pwrite`` (the page cache only, no mapping in this process)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype) -> None:
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        self.fd = None
        self.next_row = 0
        try:
            mm = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=self.shape)
            self.offset = int(mm.offset)
            del mm
            self.fd = os.open(path, os.O_WRONLY)
        except OSError as exc:
            raise WriteError(path, exc, "a fastMRI cache file") from exc

    def append(self, rows: np.ndarray) -> None:
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
            raise WriteError(self.path, exc, "a fastMRI cache file") from exc
        self.next_row += len(rows)

    def close(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise WriteError(self.path, exc, "a fastMRI cache file") from exc
        finally:
            os.close(fd)
        if self.next_row != self.shape[0]:
            raise AssertionError(f"{self.path}: {self.next_row} rows written of {self.shape[0]}")


def _probe_sha256(path: Path, offset: int, blocks: int = PROBE_BLOCKS,
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


def _file_entry(path: Path) -> dict:
    """A written file's manifest entry: shape, dtype, bytes, data offset, sha256, probe."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(fh)
        offset = fh.tell()
    return {"shape": list(shape), "dtype": np.dtype(dtype).str, "bytes": os.path.getsize(path),
            "offset": offset, "sha256": file_sha256(path),
            "probe_sha256": _probe_sha256(path, offset, PROBE_BLOCKS, PROBE_BLOCK_BYTES)}


def _file_names() -> list[str]:
    names = [f"{s}_{m}.npy" for s in SPLITS for m in ("magnitude", "phase", "labels")]
    return names + [f"test_{SHIFT}_magnitude.npy", f"test_{SHIFT}_phase.npy"]


def _write_split(plan: _Plan, split: str, folder: Path, width: int, crop: tuple[int, int],
                 mag_ref: float, seed: int, log: Callable) -> None:
    vols = plan.volumes[split]
    n = sum(len(v.slices) for v in vols)
    shape = (n, 1, *crop)
    names = ["magnitude", "phase"] + ([f"{SHIFT}_magnitude", f"{SHIFT}_phase"] if split == "test"
                                      else [])
    writers = {}
    try:
        for m in names:
            writers[m] = _NpyWriter(folder / f"{split}_{m}.npy", shape, np.float16)
        step = max(1, len(vols) // 10)
        for vindex, vol in enumerate(vols):
            for ids, k, spans in _chunks(vol, crop):
                mag, phase = magnitude_phase(k, width, crop)
                writers["magnitude"].append(_scaled(mag, mag_ref, vol))
                writers["phase"].append(phase[:, None])
                if split == "test":
                    under = np.stack([undersample(k[i], np.random.default_rng([seed, vindex, s]),
                                                  spans[i]) for i, s in enumerate(ids)])
                    mag_u, phase_u = magnitude_phase(under, width, crop)
                    writers[f"{SHIFT}_magnitude"].append(_scaled(mag_u, mag_ref, vol))
                    writers[f"{SHIFT}_phase"].append(phase_u[:, None])
            if (vindex + 1) % step == 0 or vindex + 1 == len(vols):
                log(f"fastmri: {split}: {vindex + 1}/{len(vols)} volumes, "
                    f"{writers['magnitude'].next_row}/{n} slices")
        for w in writers.values():
            w.close()
    finally:
        for w in writers.values():
            if w.fd is not None:
                os.close(w.fd)
    labels = np.concatenate([v.labels for v in vols]) if vols else np.zeros((0, len(LABELS)),
                                                                              np.uint8)
    path = folder / f"{split}_labels.npy"
    try:
        with open(path, "wb") as fh:
            np.save(fh, labels.astype(np.uint8))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise WriteError(path, exc, "a fastMRI cache file") from exc


def _scaled(mag: np.ndarray, mag_ref: float, vol: _Volume) -> np.ndarray:
    out = (mag / np.float32(mag_ref)).astype(np.float16)[:, None]
    if not np.all(np.isfinite(out)):
        where = vol.path or vol.files[0].parent
        raise DataError(f"{where}: magnitude above {65504 * mag_ref:g} ({65504} x mag_ref "
                        f"{mag_ref:g}, chosen from the first train slices): it overflows float16; "
                        "expected magnitudes of the order of the first volumes'")
    return out


def _swap(tmp: Path, cache: Path) -> None:
    """Rename the complete ``tmp`` onto ``cache``, replacing (then deleting) an old cache."""
    if not (cache.exists() or cache.is_symlink()):
        os.rename(tmp, cache)
        return
    old = cache.parent / f".{cache.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(cache, old)
    try:
        os.rename(tmp, cache)
    except BaseException:
        os.rename(old, cache)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def default_cache(folder: str | os.PathLike) -> Path:
    """Where :func:`prepare` writes the cache of ``folder`` by default: ``folder/cache``."""
    return Path(folder).expanduser() / "cache"


def prepare(folder: str | os.PathLike, cache: str | os.PathLike | None = None,
            width: int = KSPACE_SHAPE[1], crop: tuple[int, int] = CROP,
            log: Callable[[str], object] = print, *, seed: int = 0) -> Path:
    """Read the fastMRI knee data under ``folder`` (``<data root>/fastmri``, either layout: see
    the module docstring) and write the cache (default ``folder/cache``); returns its path.

    ``width``: the k-space width slices are padded to (volumes wider are dropped); ``crop``: the
    image crop (height, width). ``log``: progress and report lines (dropped volumes, ignored
    lines, counts). ``seed``: the undersampling masks' seed. Bad input: a DataError naming the
    file (and line); a failed write: a :class:`~i2m2bench.fileio.WriteError`. Either way no
    cache is left half written, and an existing cache is kept."""
    width, crop = _check_geometry(width, crop)
    folder = Path(folder).expanduser()
    layout = detect_layout(folder)
    cache = default_cache(folder) if cache is None else Path(cache).expanduser()
    problem = path_problem(cache, "folder")
    if problem not in (None, "not found"):
        raise DataError(f"{cache}: {problem}; expected a folder (or nothing) where the fastMRI "
                        "cache is written")
    log(f"fastmri: reading the {layout} layout in {folder}")
    plan = (_plan_raw if layout == "raw" else _plan_official)(folder, width, crop, log)
    counts = {s: sum(len(v.slices) for v in plan.volumes[s]) for s in SPLITS}
    log("fastmri: " + ", ".join(f"{s} {counts[s]} slices ({len(plan.volumes[s])} volumes)"
                                for s in SPLITS))
    empty = [s for s in SPLITS if counts[s] == 0]
    if empty:
        source = folder / (METADATA_CSV if layout == "official" else FILE_LIST_CSV)
        raise DataError(f"{source}: no slices for split(s) {', '.join(empty)} "
                        f"({', '.join(f'{s} {counts[s]}' for s in SPLITS)}); expected volumes on "
                        "disk in every split")
    mag = _choose_mag_ref(plan, width, crop)
    log(f"fastmri: mag_ref {mag['mag_ref']:g} (the {MAG_REF_PERCENTILE}th percentile of the first "
        f"{mag['mag_ref_from']['slices']} train slices' magnitudes is "
        f"{mag['mag_ref_from']['value']:.4g})")

    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}.prepare-", dir=cache.parent))
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        for split in SPLITS:
            _write_split(plan, split, tmp, width, crop, mag["mag_ref"], seed, log)
        splits = {}
        for split in SPLITS:
            entry = {"count": counts[split], "volumes": [v.id for v in plan.volumes[split]],
                     "slices": [len(v.slices) for v in plan.volumes[split]]}
            if layout == "official":
                entry["slice_ids"] = [v.slices for v in plan.volumes[split]]
            entry.update(plan.info["splits"][split])
            splits[split] = entry
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "layout": layout,
            "source": str(folder), "width": width, "crop": list(crop), **mag,
            "labels": list(LABELS), "seed": seed,
            "undersampling": {**UNDERSAMPLING, "mask_seed": "[seed, volume index in test, slice]",
                              "columns": "all columns of the volume" if layout == "raw" else
                              "the span of columns with non-zero energy of each slice"},
            "splits": splits,
            "shifts": {SHIFT: {"split": "test", "count": counts["test"]}},
            **{k: v for k, v in plan.info.items() if k != "splits"},
            "deviations": list(DEVIATIONS),
            "probe": {"blocks": PROBE_BLOCKS, "block_bytes": PROBE_BLOCK_BYTES},
            "files": {name: _file_entry(tmp / name) for name in _file_names()},
        }
        write_text_atomic(tmp / "manifest.json", json.dumps(manifest, indent=1) + "\n",
                          what="the fastMRI cache manifest")
        _swap(tmp, cache)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    dropped = sum(len(splits[s]["dropped"]) for s in SPLITS)
    log(f"fastmri: wrote {cache} ({', '.join(f'{s} {counts[s]}' for s in SPLITS)} slices; "
        f"{dropped} volume(s) dropped)")
    return cache


# ------------------------------------------------------------------------------ loading
@dataclass
class CachedFastMRI:
    """An opened cache: ``splits`` (train/val/test) and ``shifts`` (``undersampled4x``: the
    undersampled test set) as :class:`DiskSplit` s with modalities ``magnitude`` and ``phase``
    (per sample (1, H, W) float16: magnitude / ``mag_ref``, phase in radians) and float32 (N, 4)
    0/1 targets in :data:`LABELS` order; ``manifest``: the parsed manifest.json."""

    path: Path
    layout: str
    width: int
    crop: tuple[int, int]
    mag_ref: float
    counts: dict[str, int]
    manifest: dict
    splits: dict[str, DiskSplit]
    shifts: dict[str, DiskSplit]

    @property
    def fingerprint(self) -> str:
        """A checksum of the cache's content: sha256 over its layout, geometry, ``mag_ref`` and
        the recorded sha256 of every file (the same data prepared twice give the same one)."""
        m = self.manifest
        key = {"layout": m["layout"], "width": m["width"], "crop": m["crop"],
               "mag_ref": m["mag_ref"], "seed": m["seed"],
               "files": {name: e["sha256"] for name, e in sorted(m["files"].items())}}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def rows(self, split: str) -> list[tuple[str, int]]:
        """(volume id, slice index) of each row of ``split`` (a shift: that of its split)."""
        split = self.manifest["shifts"][split]["split"] if split in self.shifts else split
        entry = self.manifest["splits"][split]
        ids = entry.get("slice_ids") or [list(range(n)) for n in entry["slices"]]
        return [(v, s) for v, slices in zip(entry["volumes"], ids) for s in slices]


def _stale(path: Path, manifest: Path, what: str) -> DataError:
    return DataError(f"{path}: {what}; the cache no longer matches its manifest {manifest}: "
                     f"re-run prepare ({PREPARE_HINT})")


def _check_file(path: Path, entry: dict, manifest: Path, verify: str,
                probe: tuple[int, int]) -> None:
    problem = path_problem(path, "file")
    if problem is not None:
        raise _stale(path, manifest, problem)
    size = os.path.getsize(path)
    if size != entry["bytes"]:
        raise _stale(path, manifest, f"{size} bytes, the manifest records {entry['bytes']}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # a header that no longer parses
        raise _stale(path, manifest, f"cannot read it as a .npy array ({_one_line(exc)})") from exc
    shape, dtype = list(arr.shape), arr.dtype.str
    del arr
    if shape != list(entry["shape"]) or dtype != entry["dtype"]:
        raise _stale(path, manifest, f"shape {tuple(shape)} dtype {dtype}, the manifest records "
                                     f"{tuple(entry['shape'])} {entry['dtype']}")
    if verify == "probe":
        if _probe_sha256(path, int(entry["offset"]), *probe) != entry["probe_sha256"]:
            raise _stale(path, manifest, "its probe sha256 (header and sampled blocks) differs "
                                         "from the manifest's")
    elif verify == "full" and file_sha256(path) != entry["sha256"]:
        raise _stale(path, manifest, "its sha256 differs from the manifest's")


def load_cache(cache: str | os.PathLike, verify: str = "probe") -> CachedFastMRI:
    """Open a cache written by :func:`prepare`: check that ``manifest.json`` parses and that every
    file exists with the recorded size, shape and dtype, and its probe sha256 (``verify='probe'``,
    the default: milliseconds), its full sha256 (``'full'``: reads every byte) or nothing more
    (``'none'``). A missing or unreadable manifest, or a file that no longer matches it, is a
    DataError naming the file and saying to re-run prepare."""
    if verify not in ("probe", "full", "none"):
        raise ValueError(f"fastmri: verify must be 'probe', 'full' or 'none'; got {verify!r}")
    cache = Path(cache).expanduser()
    problem = path_problem(cache, "folder")
    if problem is not None:
        raise DataError(f"{cache}: {problem}; expected the fastMRI cache folder: {PREPARE_HINT}")
    mpath = cache / "manifest.json"
    problem = path_problem(mpath, "file")
    if problem is not None:
        raise DataError(f"{mpath}: {problem}; expected the manifest of a complete fastMRI cache: "
                        f"{PREPARE_HINT}")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{mpath}: cannot read it as JSON ({_one_line(exc)}); expected the "
                        f"manifest of a fastMRI cache: {PREPARE_HINT}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{mpath}: not an i2m2bench fastMRI cache manifest (format "
                        f"{manifest.get('format') if isinstance(manifest, dict) else None!r}); "
                        f"{PREPARE_HINT}")
    if manifest.get("version") != FORMAT_VERSION:
        raise DataError(f"{mpath}: cache format version {manifest.get('version')!r}; this "
                        f"i2m2bench reads version {FORMAT_VERSION}: {PREPARE_HINT}")
    try:
        files = manifest["files"]
        probe = (int(manifest["probe"]["blocks"]), int(manifest["probe"]["block_bytes"]))
        for name in _file_names():
            if name not in files:
                raise DataError(f"{mpath}: lists no {name}; the manifest is incomplete: "
                                f"{PREPARE_HINT}")
            _check_file(cache / name, files[name], mpath, verify, probe)
        splits, counts = {}, {}
        for split in SPLITS:
            labels = np.load(cache / f"{split}_labels.npy", allow_pickle=False)
            counts[split] = int(manifest["splits"][split]["count"])
            splits[split] = DiskSplit.from_npy(
                {m: cache / f"{split}_{m}.npy" for m in ("magnitude", "phase")},
                torch.from_numpy(labels.astype(np.float32)), split)
        shifts = {SHIFT: DiskSplit.from_npy(
            {m: cache / f"test_{SHIFT}_{m}.npy" for m in ("magnitude", "phase")},
            splits["test"].target.clone(), SHIFT)}
        return CachedFastMRI(cache, str(manifest["layout"]), int(manifest["width"]),
                             tuple(int(c) for c in manifest["crop"]), float(manifest["mag_ref"]),
                             counts, manifest, splits, shifts)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{mpath}: malformed manifest ({_one_line(exc)}); {PREPARE_HINT}") from exc


__all__ = ["CachedFastMRI", "DEVIATIONS", "FORMAT", "FORMAT_VERSION", "PREPARE_HINT", "SHIFT",
           "SPLITS", "UNDERSAMPLING", "default_cache", "detect_layout", "load_cache",
           "nonzero_span", "prepare", "split_volumes", "undersample"]
