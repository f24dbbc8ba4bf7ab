"""MIMIC-III as MultiBench preprocessed it: reading, checking and processing ``im.pk`` /
``mimic.npz`` exactly as the official I2M2 code does, where it is right.

**The file** (MultiBench ``datasets/mimic/get_data.py``; the copy in the official I2M2 code,
divyam3897/I2M2 @ 7742765, ``avmnist_and_mimic/datasets/mimic/get_data.py`` lines 30-34, 57, 74):
a pickled dict of NumPy arrays,

============================  ============  =============================================
key                           shape         meaning
============================  ============  =============================================
``ep_tdata``                  (N, 24, 12)   hourly values of 12 variables (time series)
``adm_features_all``          (N, 5)        static features of the admission
``adm_labels_all``            (N, 6)        mortality indicators (columns 1..5 used)
``y_icd9``                    (N, 20)       ICD-9 group indicators (columns 1 and 7 used)
============================  ============  =============================================

Read from ``<data root>/mimic/``: a run reads only ``mimic.npz`` (the same arrays, written once by
``python -m i2m2bench prepare mimic``, read with ``allow_pickle=False``), and says which command
to type when it is not there; ``prepare`` and ``verify`` read ``im.pk`` through the allow-list
unpickler (:mod:`i2m2bench.data.common.safe_pickle`: a pickle that names anything but NumPy array
reconstruction and plain containers is refused before anything in it runs).

The processing, split and labels shared with the embedded cohort are in
:mod:`i2m2bench.data.mimic.processing`.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from i2m2bench.data.base import DataError, dataset_folder, file_sha256, path_problem
from i2m2bench.data.common import chain
from i2m2bench.data.mimic.processing import REAL_HINT, check_arrays, digest, make_task
from i2m2bench.fileio import write_atomic
from i2m2bench.types import Task

PICKLE, NPZ = "im.pk", "mimic.npz"
_SOURCE_KEY = "source_sha256"  # an older mimic.npz: the im.pk's sha256 only
_CHAIN_KEY = "content_chain"  # the content chain: inputs, the arrays' digest, the seal


PREPARE = "rerun `python -m i2m2bench prepare mimic --data-root DIR`"


def read(folder: Path, level: str = "quick",
         prepared_only: bool = False) -> tuple[dict[str, np.ndarray], Path]:
    """(the checked arrays, the file read) from ``folder`` (``<data root>/mimic``):
    ``mimic.npz`` when present, else ``im.pk`` (``prepared_only``, as a run reads: a DataError
    naming the ``prepare`` command instead). A ``mimic.npz`` carries its content chain
    (:mod:`i2m2bench.data.common.chain`: the ``im.pk`` it came from -- size, time, sha256 --
    and its arrays' digest, sealed): one whose arrays or record were changed, one prepared from
    another ``im.pk`` than the one beside it (checked at ``level``), or one that records no
    source while an ``im.pk`` is beside it, is refused (alone, without its ``im.pk``, it is read
    as it is)."""
    npz, pk = folder / NPZ, folder / PICKLE
    if path_problem(npz) is None:
        try:
            with np.load(npz, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DataError(f"{npz}: not a readable .npz of NumPy arrays ({exc}); {PREPARE}") from exc
        record = arrays.pop(_CHAIN_KEY, None)
        recorded = arrays.pop(_SOURCE_KEY, None)  # written before the content chain
        if record is not None:
            _check_chain(npz, record, arrays, folder.parent, level)
        elif path_problem(pk) is None:  # the source is here: the npz must say it came from it
            if recorded is None:
                raise DataError(f"{npz} does not record which {PICKLE} it was prepared from "
                                f"(no {_CHAIN_KEY!r}), so it cannot be checked against {pk}; "
                                f"{PREPARE}")
            if str(recorded) != file_sha256(pk):
                raise DataError(f"{npz} was prepared from another {PICKLE} than {pk} (sha256 "
                                f"{str(recorded)[:12]}...); {PREPARE}, or remove one of them")
        return check_arrays(arrays, npz), npz
    problem = path_problem(pk)
    if problem is not None:
        raise DataError(f"{folder}: neither {NPZ} nor {PICKLE} is readable ({pk}: {problem}); put "
                        f"MultiBench's MIMIC-III file there as {PICKLE} (docs/datasets/mimic.md)")
    if prepared_only:
        raise DataError(f"{npz}: not prepared; a run reads only the prepared arrays, never "
                        f"{PICKLE} itself: type `python -m i2m2bench prepare mimic --data-root "
                        f"{folder.parent}` once (it checks and converts {pk})")
    from i2m2bench.data.common import safe_pickle

    return check_arrays(safe_pickle.load(pk), pk), pk


def _check_chain(npz: Path, record: np.ndarray, arrays: dict, root: Path, level: str) -> None:
    try:
        meta = json.loads(str(record))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise DataError(f"{npz}: its {_CHAIN_KEY!r} record is not readable JSON ({exc}); "
                        f"{PREPARE}") from exc
    chain.check_manifest(meta, npz, root, level, PREPARE)
    if meta.get("arrays") != digest(arrays):
        raise DataError(f"{npz}: its arrays no longer match the digest recorded when it was "
                        f"prepared (changed after prepare); {PREPARE}")


def prepare(folder: Path) -> Path:
    """Convert ``folder/im.pk`` (read through the allow-list unpickler, checked) into
    ``folder/mimic.npz``, written atomically with its content chain (the pickle's size, time and
    sha256, the arrays' digest, sealed); returns its path. Nothing is written when the pickle is
    refused or malformed."""
    pk = folder / PICKLE
    problem = path_problem(pk)
    if problem is not None:
        raise DataError(f"{pk}: {problem}; `prepare mimic` converts MultiBench's {PICKLE} "
                        f"(docs/datasets/mimic.md)")
    from i2m2bench.data.common import safe_pickle

    inputs = chain.record_inputs(folder.parent, [pk])
    arrays = check_arrays(safe_pickle.load(pk), pk)
    record = np.array(json.dumps(chain.seal({"inputs": inputs, "arrays": digest(arrays)})))
    target = folder / NPZ
    # temporary file + rename: a full disk or a read-only folder is a WriteError naming the file
    write_atomic(target, lambda f: np.savez(f, **arrays, **{_CHAIN_KEY: record}),
                 "the prepared arrays", "free space there and rerun `prepare mimic`")
    return target


def folder(data_root: str | None = None) -> Path:
    """``<data root>/mimic`` (the root: ``data_root``, else ``$I2M2BENCH_DATA``); a missing root,
    or one without that folder, is a DataError saying what belongs there."""
    return dataset_folder(data_root, "mimic", "mimic", REAL_HINT, "embedded cohort")


def load(folder: Path, task: str = "mortality", stats: str = "train") -> Task:
    """The task ``task`` from the real file under ``folder`` (``<data root>/mimic``), z-scored with
    the statistics of ``stats``: the prepared ``mimic.npz`` only."""
    arrays, path = read(folder, prepared_only=True)
    return make_task(arrays, task, stats, "real",
                     f"MIMIC-III via MultiBench ({path.name})",
                     options=dict(source="real", checksum=digest(arrays)))


def verify(folder: Path, level: str = "quick") -> str:
    """Check the real file under ``folder`` (``mimic.npz`` when present, else ``im.pk`` through the
    allow-list unpickler): every array's layout and values, and that a ``mimic.npz`` was prepared
    from the ``im.pk`` beside it (both levels read every byte: the file is small); a one-line
    report (a DataError naming the file at fault otherwise)."""
    arrays, path = read(folder, level)
    return (f"mimic: {path} is readable and well formed ({level}): "
            f"{len(arrays['ep_tdata'])} stays, checksum {digest(arrays)}")


__all__ = ["NPZ", "PICKLE", "folder", "load", "prepare", "read", "verify"]
