"""Reading the official FastMRI files of either layout (raw fastMRI + fastMRI+ csvs, or the
official I2M2 per-slice layout) into a :class:`Plan` of the volumes to write.

The layouts and the split recipe are described in :mod:`i2m2bench.data.fastmri.real`; the
writing is :mod:`i2m2bench.data.fastmri.real_prepare`'s.
"""
from __future__ import annotations

import ast
import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from i2m2bench.data.base import DataError, path_problem
from i2m2bench.data.common import manifest
from i2m2bench.data.common.manifest import one_line
from i2m2bench.data.fastmri.processing import KSPACE_SHAPE, LABELS, parse_labels
from i2m2bench.data.fastmri.real_cache import SPLITS

#: data_split values of the official metadata csv -> our split names.
OFFICIAL_SPLITS = {"train_class": "train", "val_class": "val", "test_class": "test"}
PREPARE_HINT = "run `python -m i2m2bench prepare fastmri --data-root DIR` (DIR holding fastmri/)"

#: The raw volumes' folders: fastMRI's names, with or without the tarballs' ``knee_`` prefix.
RAW_DIRS = ("singlecoil_train", "singlecoil_val", "knee_singlecoil_train", "knee_singlecoil_val")
KNEE_CSV = Path("fastmri_plus") / "knee.csv"
FILE_LIST_CSV = Path("fastmri_plus") / "knee_file_list.csv"
#: Where fastMRI+'s two csvs are looked for (first with knee_file_list.csv wins): the suite's
#: ``fastmri_plus/``, and the repository as cloned (microsoft/fastmri-plus @ 67ed9a6 keeps them
#: in ``Annotations/``): ``fastmri-plus/Annotations/``, ``fastmri_plus/Annotations/``,
#: ``Annotations/``.
LABEL_DIRS = (Path("fastmri_plus"), Path("fastmri-plus") / "Annotations",
              Path("fastmri_plus") / "Annotations", Path("Annotations"))


def label_files(folder: Path) -> tuple[Path, Path]:
    """(knee.csv, knee_file_list.csv) relative to ``folder``: those of the first of
    :data:`LABEL_DIRS` holding the file list, else the suite's own names (for the messages)."""
    for d in LABEL_DIRS:
        if (folder / d / FILE_LIST_CSV.name).is_file():
            return d / KNEE_CSV.name, d / FILE_LIST_CSV.name
    return KNEE_CSV, FILE_LIST_CSV
METADATA_CSV = Path("knee") / "metadata_knee.csv"
KNEE_CSV_HEADER = ("file", "slice", "study_level", "x", "y", "width", "height", "label")
KNEE_CSV_USED = ("file", "slice", "label")
METADATA_USED = ("volume_id", "slice_id", "labels", "data_split")

_VOLUME_ID = re.compile(r"file\d+")  # a fastMRI knee volume id (file1000001)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a folder name, no path parts
_WHOLE = re.compile(r"[0-9]+")


def check_geometry(width: int, crop: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """(``width``, ``crop``) checked: whole numbers >= 1, the crop no wider than the k-space
    width; a ValueError naming both otherwise."""
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


def open_h5(path: Path, what: str):
    """``h5py.File(path, 'r')``; a missing, unreadable, truncated or non-HDF5 file is a DataError
    naming it."""
    problem = path_problem(path, "file")
    if problem is not None:
        raise DataError(f"{path}: {problem}; expected {what}")
    h5py = _h5py()
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read it as an HDF5 file ({one_line(exc)}); expected "
                        f"{what}") from exc


def kspace_dataset(h5, path: Path, key: str, ndim: int, crop: tuple[int, int], what: str):
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


def read_slices(ds, sel, path: Path, what: str) -> np.ndarray:
    """``ds[sel]`` as an array; a read error (a truncated file) is a DataError naming the file."""
    try:
        x = np.asarray(ds[sel])
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot read dataset {ds.name.lstrip('/')!r} "
                        f"({one_line(exc)}); the file looks truncated or corrupt; expected "
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
        return None, one_line(exc)
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
class Volume:
    """One volume to write: its slices (ids), their labels, and where its k-space is: ``path``
    (raw: one file, all slices) or ``files`` (official: one file per slice)."""

    id: str
    slices: list[int]
    labels: np.ndarray  # (n, 4) uint8
    path: Path | None = None
    files: list[Path] | None = None


@dataclass
class Plan:
    """What :func:`plan_raw` / :func:`plan_official` found: the ``layout``, the volumes to write
    per split, and layout-specific manifest entries (``info``)."""

    layout: str
    volumes: dict[str, list[Volume]]
    info: dict  # layout-specific manifest entries (per split and top level)
    #: every file the plan read (csvs, volumes or slice files, dropped volumes too) and the
    #: files it looked for and did not find: the cache's recorded inputs (data/common/chain.py)
    inputs: list[Path] = field(default_factory=list)
    absent: list[Path] = field(default_factory=list)


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
        f"{', '.join(str(folder / d) + '/' for d in RAW_DIRS)} with fastMRI+'s knee.csv and "
        f"knee_file_list.csv in {', '.join(str(folder / d) + '/' for d in LABEL_DIRS)} (raw "
        "fastMRI volumes + fastMRI+ labels)")


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
                            f"({one_line(exc)}); expected one volume id a line") from exc
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
                            f"({one_line(exc)}); expected {expected}") from exc


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


def plan_raw(folder: Path, width: int, crop: tuple[int, int], log: Callable) -> Plan:
    """The plan of the raw layout: the reviewed volumes of fastMRI+'s file list, split 70/15/15
    (:func:`split_volumes`), with their slices' labels from ``knee.csv``."""
    knee_csv, file_list_csv = label_files(folder)
    file_list = folder / file_list_csv
    reviewed, ignored_lines = _read_file_list(file_list)
    for item in ignored_lines:
        log(f"fastmri: {file_list}: line {item['line']} {item['text']!r} is not a volume id; "
            "ignored (the official script would split it as a volume)")
    annotations = _read_knee_csv(folder / knee_csv, set(reviewed), file_list)

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
                        f"volume needs at least 4 ({one_line(exc)})") from exc
    what = "a fastMRI single-coil knee volume: dataset 'kspace' (slices, rows, columns) complex"
    volumes: dict[str, list[Volume]] = {}
    inputs, missing = [file_list, folder / knee_csv], []
    info: dict = {"splits": {}, "ignored_file_list_lines": ignored_lines,
                  "unreviewed_on_disk": len(set(on_disk) - set(reviewed)),
                  "ignored_label_rows": []}
    for split in SPLITS:
        kept, dropped, absent = [], [], []
        for vid in sorted(assignment[split]):
            path = on_disk.get(vid)
            if path is None:
                absent.append(vid)
                missing += [folder / d / f"{vid}.h5" for d in RAW_DIRS]
                continue
            inputs.append(path)
            with open_h5(path, what) as h5:
                ds = kspace_dataset(h5, path, "kspace", 3, crop, what)
                n, _, cols = ds.shape
            if cols > width:
                reason = f"k-space has {cols} columns, more than {width} (dropped as officially)"
                dropped.append({"volume": vid, "reason": reason})
                log(f"fastmri: {path}: {reason}")
                continue
            labels = np.zeros((n, len(LABELS)), np.uint8)
            for s, (strings, line) in sorted(annotations.get(vid, {}).items()):
                if s >= n:
                    info["ignored_label_rows"].append({"file": knee_csv.as_posix(), "line": line,
                                                       "volume": vid, "slice": s, "slices": n})
                    log(f"fastmri: {folder / knee_csv}: line {line}: slice {s} of {vid}, which has "
                        f"{n} slices; ignored")
                    continue
                labels[s] = parse_labels(strings)
            kept.append(Volume(vid, list(range(n)), labels, path=path))
        volumes[split] = kept
        info["splits"][split] = {"dropped": dropped, "absent": absent}
    return Plan("raw", volumes, info, inputs, missing)


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


def plan_official(folder: Path, width: int, crop: tuple[int, int], log: Callable) -> Plan:
    """The plan of the official I2M2 per-slice layout: the slices, labels and splits of
    ``knee/metadata_knee.csv``."""
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
    volumes: dict[str, list[Volume]] = {}
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
                with open_h5(path, what) as h5:
                    ds = kspace_dataset(h5, path, "sc_kspace", 2, crop, what)
                    cols = ds.shape[-1]
                if cols > width:
                    raise DataError(f"{path}: dataset 'sc_kspace' has shape {tuple(ds.shape)}: "
                                    f"{cols} columns, more than the k-space width {width}; "
                                    f"expected {what}")
                files.append(path)
                labels[i] = parse_labels(["None" if v is None else v for v in strings])
            kept.append(Volume(vid, slices, labels, files=files))
        volumes[split] = kept
    info = {"splits": {s: {"dropped": []} for s in SPLITS}, "ignored_rows": ignored}
    inputs = [meta] + [f for split in SPLITS for v in volumes[split] for f in v.files]
    return Plan("official", volumes, info, inputs)


__all__ = ["FILE_LIST_CSV", "KNEE_CSV", "LABEL_DIRS", "label_files", "KNEE_CSV_HEADER", "KNEE_CSV_USED", "METADATA_CSV", "METADATA_USED", "OFFICIAL_SPLITS", "Plan", "RAW_DIRS", "Volume", "check_geometry", "detect_layout", "kspace_dataset", "open_h5", "plan_official", "plan_raw", "read_slices", "split_volumes"]
