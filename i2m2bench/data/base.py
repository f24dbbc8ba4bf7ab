"""What every dataset family module needs, with no dependency on the families themselves.

The family modules (``avmnist``, ``avdigits``, ``spectrum``, ``toy``, and third-party ones) import
from here, never from the :mod:`i2m2bench.data` package, which imports them in turn and
re-exports these names.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from i2m2bench.registry import Registry
from i2m2bench.types import Task

DATASETS: Registry[Callable[..., Task]] = Registry("dataset")

DATA_ENV = "I2M2BENCH_DATA"


class DataError(Exception):
    """Bad or missing data: the message names the file and what was expected."""


def resolve_data_root(data_root: str | os.PathLike | None) -> Path | None:
    """The explicit data root, else ``$I2M2BENCH_DATA``, else None."""
    if data_root:
        return Path(data_root).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else None


__all__ = ["DATASETS", "DATA_ENV", "DataError", "resolve_data_root"]
