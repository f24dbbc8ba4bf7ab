"""Checks of settings and arguments, before gin is parsed, data loaded or a unit trained.

* value checks of a setting (:class:`SettingError`): whole numbers (``2.5``, ``'3'`` or ``True``
  are refused, never rounded), finite reals in a range, lists that are not strings, no
  duplicates, no NaN/Inf inside options, plain names that become folders
  (:func:`check_plain_name`) — used by the settings dataclasses of
  :mod:`i2m2bench.harness.config`;
* :func:`check_run_arguments`: the arguments of a run (``run_suite``'s or the command line's:
  gin files, methods, seeds, data root, output folders, device — :mod:`~i2m2bench.harness.devices`);
* :func:`check_writable`: output folders that can take the run's files.
"""
from __future__ import annotations

import math
import numbers
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path
from typing import Mapping

from i2m2bench.harness.devices import check_device
from i2m2bench.harness.errors import ConfigError

PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")


class SettingError(ConfigError, ValueError):
    """A setting with a wrong type or value. ``binding``: the gin binding it came from, unscoped
    (``train.epochs``); ``message``: what is wrong (gin appends its own context to ``str``)."""

    def __init__(self, binding: str, message: str) -> None:
        super().__init__(message)
        self.binding = binding
        self.message = message


# ------------------------------------------------------------------------------ value checks
def kind_name(value) -> str:
    """The type name of ``value`` (for messages)."""
    return type(value).__name__


def is_whole_number(value) -> bool:
    """An int, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


#: Seeds are drawn from [0, SEED_LIMIT): NumPy's legacy seeding takes 32 bits (the harness seeds it
#: with ``seed % 2**32``), so 2**32 would silently repeat seed 0 while a board counted two seeds.
SEED_LIMIT = 2**32


def out_of_range_seed(seeds) -> int | None:
    """The first seed outside [0, :data:`SEED_LIMIT`), or None."""
    return next((s for s in seeds if not 0 <= s < SEED_LIMIT), None)


def is_real_number(value) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_whole(binding: str, value) -> None:
    """``value`` is an int (not a bool, not a float such as 1.0 or 2.5: never rounded) > 0."""
    if not is_whole_number(value):
        raise SettingError(binding, f"{binding} must be a whole number, not a {kind_name(value)} "
                           f"(never rounded or converted); got {value!r}")
    if value < 1:
        raise SettingError(binding, f"{binding} must be > 0; got {value!r}")


def check_real(binding: str, value, *, low: float = -math.inf, high: float = math.inf,
          low_open: bool = False, high_open: bool = False, rng: str = "") -> None:
    """``value`` is a finite number (an int or float, not a bool) in the given range."""
    if not is_real_number(value):
        raise SettingError(binding, f"{binding} must be a number; got {value!r} (a {kind_name(value)})")
    if not math.isfinite(value):
        raise SettingError(binding, f"{binding} must be a finite number{rng and ' ' + rng}; got "
                           f"{value!r}")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        raise SettingError(binding, f"{binding} must be {rng}; got {value!r}")


def check_sequence(binding: str, value, what: str, *, empty_ok: bool = False) -> tuple:
    """A list or tuple (not a string, which gin would otherwise split into characters)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise SettingError(binding, f"{binding} must be a list of {what}; got {value!r}")
    if not value and not empty_ok:
        raise SettingError(binding, f"{binding} must be a non-empty list of {what}; got {value!r}")
    return tuple(value)


def check_no_duplicates(binding: str, values: tuple) -> None:
    """No value listed twice."""
    seen, dup = set(), []
    for v in values:
        if v in seen and v not in dup:
            dup.append(v)
        seen.add(v)
    if dup:
        raise SettingError(binding, f"{binding} lists {', '.join(map(repr, dup))} more than once; "
                           f"got {list(values)!r}")


def check_finite(binding: str, value, path: str = "") -> None:
    """No NaN/Inf float anywhere in a (nested) option value."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingError(binding, f"{binding}{path} = {value!r}: NaN/Inf is not a setting; give a "
                           "finite number")
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_finite(binding, v, f"{path}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(binding, v, f"{path}[{i}]")


def check_plain_name(value, what: str, binding: str | None = None) -> str:
    """A name that becomes a file or folder name (suite name, method name, sweep label) must be
    a plain name: letters, digits, ``.``, ``_`` or ``-``, not empty and not only dots (``.``,
    ``..``), so no ``/``, ``\\`` or NUL. Returns it; :class:`SettingError` (a ConfigError and a
    ValueError) otherwise, naming ``what`` (and ``binding``)."""
    if isinstance(value, str) and PLAIN_NAME.fullmatch(value) and set(value) != {"."}:
        return value
    where = f"{binding}: " if binding else ""
    raise SettingError(binding or what, f"{where}{what} {value!r} must be letters, digits, '.', '_' "
                       "or '-' (not empty, not '.' or '..', no '/' or '\\'): it names a folder")


#: Names in a leaderboard folder that are not boards of a suite: a suite of one of these names
#: (its board is ``<suite name>.md`` on real or synthetic data) would overwrite them.
RESERVED_BOARD_NAMES = frozenset({"poe_kernel", "training_throughput", "real_scale", "readme",
                                  "index", "results", "predictions", "machines", "bench", "gpu"})


def check_board_name(value: str, binding: str = "suite.name") -> str:
    """A suite name that may name a board: not one of :data:`RESERVED_BOARD_NAMES` (compared
    without case, as some file systems do)."""
    if value.lower() in RESERVED_BOARD_NAMES:
        raise SettingError(binding, f"{binding}: {value!r} is reserved in a leaderboard folder "
                           f"(its board would overwrite {value}.md or that folder); reserved: "
                           f"{', '.join(sorted(RESERVED_BOARD_NAMES))}")
    return value


def check_label(value, binding: str = "method.label") -> str | None:
    """A method's label, shown in a cell of the Markdown board and in CSV rows: None or a string
    with no ``|`` and no control character (a line break would start a new row of the table)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SettingError(binding, f"{binding} must be a string or None; got {value!r}")
    bad = next((c for c in value if c == "|" or unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise SettingError(binding, f"{binding} {value!r} contains {bad!r}: a label is a cell of the "
                           "Markdown board, so it may hold no '|', line break or other control "
                           "character")
    return value


# ------------------------------------------------------------------------------ run arguments
_API_NAMES = {"gin_files": "run_suite: gin_files", "methods": "run_suite: methods",
              "seeds": "run_suite: seeds", "data_root": "run_suite: data_root",
              "out": "run_suite: out", "results_dir": "run_suite: results_dir",
              "device": "run_suite: device"}
CLI_NAMES = {"gin_files": "--gin", "methods": "--methods", "seeds": "--seeds",
             "data_root": "--data-root", "out": "--out", "results_dir": "--leaderboard-dir",
             "device": "--device"}


def check_folder_argument(value, what: str) -> None:
    """An output folder argument: a non-empty path (``''`` would silently mean the working
    directory)."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a folder path; got {value!r}")
    if not str(os.fspath(value)).strip():
        raise ValueError(f"{what} is empty; name a folder (an empty path would mean the working "
                         "directory)")


def check_run_arguments(gin_files, methods=None, seeds=None, *, data_root=None, out="runs",
                        results_dir="leaderboards", device=None, names: Mapping | None = None) -> None:
    """The arguments of a run, checked before gin is parsed or any data is loaded: a non-empty
    list of gin files (not one string), methods and seeds as non-empty lists without duplicates
    (seeds whole numbers: ``0.5`` or ``1.0`` are refused, not truncated), output folders that are
    not empty paths, an explicit data root that exists and is a folder, a device this machine has
    (:func:`check_device`). TypeError for a wrong type, ValueError for a wrong value, DataError
    for the data root, ConfigError for the device. ``names``: how the messages name the arguments
    (default ``run_suite``'s parameters; :data:`CLI_NAMES` for the command line)."""
    n = {**_API_NAMES, **(names or {})}
    if isinstance(gin_files, (str, bytes, os.PathLike)) or not isinstance(gin_files, (list, tuple)) \
            or not gin_files:
        raise TypeError(f"{n['gin_files']} must be a non-empty list of gin files; got {gin_files!r}")
    for f in gin_files:
        if not isinstance(f, (str, os.PathLike)):
            raise TypeError(f"{n['gin_files']} must be a list of gin file paths; got {f!r} in "
                            f"{list(gin_files)!r}")
    if methods is not None:
        if isinstance(methods, (str, bytes)) or not isinstance(methods, (list, tuple)) or not methods:
            raise TypeError(f"{n['methods']} must be a non-empty list of method names; got "
                            f"{methods!r}")
        if not all(isinstance(m, str) and m for m in methods):
            raise TypeError(f"{n['methods']} must be a list of method names; got {list(methods)!r}")
        if len(set(methods)) != len(methods):
            raise ValueError(f"{n['methods']} names a method more than once; got {list(methods)!r}")
    if seeds is not None:
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)) or not seeds:
            raise TypeError(f"{n['seeds']} must be a non-empty list of integers; got {seeds!r}")
        bad = [s for s in seeds if not is_whole_number(s)]
        if bad:
            raise TypeError(f"{n['seeds']} must be a list of integers, not a {kind_name(bad[0])} "
                            f"such as {bad[0]!r} (never rounded); got {list(seeds)!r}")
        if (bad := out_of_range_seed(seeds)) is not None:
            raise ValueError(f"{n['seeds']}: seed {bad} is outside [0, 2**32) (NumPy seeds with "
                             f"32 bits: a larger seed would repeat a smaller one); got {list(seeds)!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{n['seeds']} lists a seed more than once; got {list(seeds)!r}")
    check_folder_argument(out, n["out"])
    check_folder_argument(results_dir, n["results_dir"])
    if data_root is not None:
        from i2m2bench.data.base import check_data_root

        check_data_root(data_root, n["data_root"])
    check_device(device, n["device"])


# ------------------------------------------------------------------------------ output folders
MIN_FREE_BYTES = 200 << 20


class OutputError(OSError):
    """An output location that cannot take the run's files."""


def check_writable(*dirs: Path) -> None:
    """Fail before any training when an output folder cannot be written or its disk is full."""
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=d, prefix=".i2m2bench-write-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OutputError(f"{d}: output folder is not writable ({exc.strerror or exc}); "
                              "choose another with --out / --leaderboard-dir") from exc
        free = shutil.disk_usage(d).free
        if free < MIN_FREE_BYTES:
            raise OutputError(f"{d}: only {free / 2**20:.0f} MiB free on its disk; at least "
                              f"{MIN_FREE_BYTES >> 20} MiB are needed for checkpoints and results")
