"""What every dataset family module needs, with no dependency on the families themselves.

The family modules (``avmnist``, ``avdigits``, ``spectrum``, ``toy``, and third-party ones) import
from here, never from the :mod:`i2m2bench.data` package, which imports them in turn and
re-exports these names.

Data roots: :func:`resolve_data_root` gives the explicit root, else ``$I2M2BENCH_DATA``, else
None. A root that was given — by ``--data-root``, by ``$I2M2BENCH_DATA`` or by a ``data_root=``
argument — must be an existing folder: one that does not exist or is a file is a
:class:`DataError` naming the path and where it came from (:func:`check_data_root`), never a
silent fall-back to embedded data. Only builders that read files call it, so a suite on
generated or embedded data is untouched by ``$I2M2BENCH_DATA``.

:func:`path_problem` says precisely why a path cannot be read as a file or folder (a folder where
a file belongs, a symlink loop, a dangling link, a file where a folder belongs), so that "not
found" is only said of what does not exist; :func:`check_count` checks a sample-count option.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable

from i2m2bench.registry import Registry
from i2m2bench.types import Task

DATASETS: Registry[Callable[..., Task]] = Registry("dataset")

DATA_ENV = "I2M2BENCH_DATA"


class DataError(Exception):
    """Bad or missing data: the message names the file and what was expected."""


def path_problem(path: str | os.PathLike, want: str = "file") -> str | None:
    """Why ``path`` cannot be used as a ``want`` (``"file"`` or ``"folder"``), or None when it
    can: ``"not found"``, ``"a symlink loop"``, ``"a symlink to X, which does not exist"``,
    ``"is a folder, not a file"``, ``"is a file, not a folder"``, ``"X is a file, not a folder"``
    (a parent), ``"not a regular file"``."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop (the link resolves to itself)"
        if exc.errno == errno.ENOTDIR:
            for parent in reversed(p.parents):
                if parent.is_file():
                    return f"{parent} is a file, not a folder"
            return "a parent is not a folder"
        if exc.errno == errno.EACCES:
            return "permission denied"
        if p.is_symlink():
            return f"a symlink to {os.readlink(p)}, which does not exist"
        return "not found"
    import stat

    if want == "file":
        if stat.S_ISDIR(st.st_mode):
            return "is a folder, not a file"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
    elif not stat.S_ISDIR(st.st_mode):
        return "is a file, not a folder"
    return None


def check_data_root(data_root: str | os.PathLike, origin: str = "data_root") -> Path:
    """``data_root`` as a Path (``~`` expanded) if it is an existing folder; else a DataError
    naming it and ``origin`` (``--data-root``, ``$I2M2BENCH_DATA``, ``data_root``)."""
    if not isinstance(data_root, (str, os.PathLike)):
        raise DataError(f"{origin} {data_root!r}: not a folder path")
    text = os.fspath(data_root)
    if not str(text).strip():
        raise DataError(f"{origin} is empty; name the folder that holds the datasets (or give no "
                        "data root for the embedded data)")
    root = Path(text).expanduser()
    problem = path_problem(root, "folder")
    if problem is not None:
        raise DataError(f"{origin} {root}: {'no such folder' if problem == 'not found' else problem}"
                        "; a data root must be an existing folder holding the datasets (give none "
                        "for the embedded data)")
    return root


def resolve_data_root(data_root: str | os.PathLike | None = None, *, check: bool = False) -> Path | None:
    """The explicit data root, else ``$I2M2BENCH_DATA``, else None.

    A root from ``$I2M2BENCH_DATA`` must be an existing folder (DataError naming the variable
    otherwise); so must an explicit one when ``check`` (builders that read files pass it; a
    builder that reports a missing file itself may leave it off). An explicit ``''`` counts as
    given: an error when ``check``."""
    if data_root is not None and (check or str(os.fspath(data_root))):
        return check_data_root(data_root, "data_root") if check else Path(data_root).expanduser()
    env = os.environ.get(DATA_ENV)
    return check_data_root(env, f"${DATA_ENV}") if env else None


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dataset_folder(data_root, folder: str, dataset: str, holding: str, embedded: str,
                   aliases: tuple[str, ...] = ()) -> Path:
    """``<data root>/<folder>`` (the root: ``data_root``, else ``$I2M2BENCH_DATA``), or the first
    of ``aliases`` that exists (another name the official downloads give it, such as
    ``VQA-VS``): a missing root, or a root with none of them, is a DataError saying what
    belongs there (``holding``) and that no data root gives the ``embedded`` stand-in."""
    root = resolve_data_root(data_root, check=True)
    if root is None:
        raise DataError(f"{dataset}: the real data need a data root (--data-root DIR or "
                        f"${DATA_ENV}) holding {holding}")
    path = root / folder
    problem = path_problem(path, "folder")
    for alias in aliases:
        if problem is not None and path_problem(root / alias, "folder") is None:
            return root / alias
    if problem is not None:
        origin = "data_root" if data_root is not None else f"${DATA_ENV}"
        also = "".join(f" (nor {root / a})" for a in aliases)
        raise DataError(f"{path}: {problem}{also}; the data root ({origin} {root}) must hold "
                        f"{holding}, or give no data root (or source='embedded') for the "
                        f"{embedded}")
    return path


def reads_real(dataset: str, source: str, data_root, embedded: str, page: str) -> bool:
    """Whether a builder with ``source`` ('auto', 'real' or 'embedded') reads the real data:
    'real', or 'auto' with a data root given (which must exist). Otherwise says on stderr that
    the ``embedded`` stand-in is used and which documentation ``page`` tells about it."""
    if source not in ("auto", "real", "embedded"):
        raise ValueError(f"{dataset}: source must be 'auto', 'real' or 'embedded'; got {source!r}")
    root = None if source == "embedded" else resolve_data_root(data_root, check=True)
    if root is not None or source == "real":
        return True
    import sys

    why = "no data root given" if source == "auto" else "source='embedded'"
    print(f"[i2m2bench] {dataset}: {why}; using the {embedded} (see {page}).",
          file=sys.stderr)
    return False


def check_count(dataset: str, option: str, value, *, optional: bool = False, low: int = 1) -> None:
    """A sample-count option (``n_train``, ``max_eval``, ...) is a whole number >= ``low`` (or
    None when ``optional``): ValueError naming the dataset and option otherwise (a float such as
    2.5, a bool or a string is refused, never rounded)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        extra = " or None (all)" if optional else ""
        raise ValueError(f"{dataset}: option {option!r} must be a whole number >= {low}{extra}; "
                         f"got {value!r}")


__all__ = ["DATASETS", "DATA_ENV", "DataError", "resolve_data_root", "check_data_root",
           "path_problem", "check_count", "dataset_folder", "file_sha256", "reads_real"]
