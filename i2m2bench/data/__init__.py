"""Datasets: one module per family, all registered in ``DATASETS`` as task builders.

A builder is a function ``build(**options) -> Task``. Real data are never downloaded at run time:
loaders read the official/community format from a data root (``data_root=`` option, else the
``I2M2BENCH_DATA`` environment variable) and say precisely what they expected when files are
missing. Each family also ships an embedded default that runs with no download.
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


def build_task(name: str, **options) -> Task:
    """Build the task ``name`` (e.g. ``"avmnist"``) with builder ``options`` (e.g. ``data_root``)."""
    builder = DATASETS.get(name)
    try:
        return builder(**options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc) or "missing" in str(exc):
            raise TypeError(f"dataset {name!r}: {exc}") from exc
        raise


from i2m2bench.data import avmnist, avdigits, spectrum, toy  # noqa: E402,F401  (registers the datasets)

__all__ = ["DATASETS", "DataError", "build_task", "resolve_data_root", "DATA_ENV"]
