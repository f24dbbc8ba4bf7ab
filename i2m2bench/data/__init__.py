"""Datasets: one package per family, all registered in ``DATASETS`` as task builders.

A builder is a function ``build(**options) -> Task`` whose keyword parameters are the options it
accepts: :func:`build_task` refuses any other option before calling it (:func:`builder_options`
lists them). Real data are never downloaded at run time: loaders that read files declare a
``data_root`` option (else the ``I2M2BENCH_DATA`` environment variable is used) and say precisely
what they expected when files are missing; builders of embedded or generated data do not declare
it (:func:`accepts_data_root`). Each family also ships an embedded default that runs with no
download.

The shared names (``DATASETS``, ``DataError``, ``resolve_data_root``, ``DATA_ENV``) live in
:mod:`i2m2bench.data.base`, which the family modules import; this package re-exports them, and
the :class:`~i2m2bench.data.common.family.DatasetFamily` record with its ``FAMILIES`` registry
(the ``prepare`` / ``verify`` verbs of the CLI).

Layout: one package per family (``avmnist``, ``fastmri``, ``mimic``, ``vqa_vs``, ``nlvr2``; the
generated tasks in ``synthetic``), each with the same roles: ``__init__`` (builder, registration,
the family record), ``real`` (where the official files are; ``load`` -> Task, ``prepare``,
``verify``), ``embedded`` (the twin that runs with no download) and ``processing`` (what real and
embedded data share: the spec and the common path); shared plumbing in :mod:`i2m2bench.data.common`.
"""
from __future__ import annotations

import difflib
import inspect

# The family modules register the datasets; they import i2m2bench.data.base, never this package.
from i2m2bench.data import avmnist, fastmri, mimic, nlvr2, synthetic, vqa_vs  # noqa: F401
from i2m2bench.data.base import DATA_ENV, DATASETS, DataError, resolve_data_root
from i2m2bench.data.common.family import (FAMILIES, VERIFY_LEVELS, DatasetFamily, PrepareOption,
                                          find_family)
from i2m2bench.registry import load_plugins
from i2m2bench.types import Task

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _declared(name: str) -> tuple[set[str], bool]:
    """(the keyword parameters the builder of ``name`` names, whether it takes ``**kwargs``)."""
    params = inspect.signature(DATASETS.get(name)).parameters.values()
    return ({p.name for p in params if p.kind in _NAMED},
            any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params))


def builder_options(name: str) -> set[str]:
    """The options (keyword parameters) that the builder of dataset ``name`` declares."""
    return _declared(name)[0]


def accepts_data_root(name: str) -> bool:
    """Whether the builder of dataset ``name`` takes a ``data_root`` option (it reads files).

    A builder that takes ``**kwargs`` without naming its options accepts any option, so this one
    too."""
    names, open_ = _declared(name)
    return "data_root" in names or open_


def build_task(name: str, **options) -> Task:
    """Build the task ``name`` (e.g. ``"avmnist"``) with builder ``options`` (e.g. ``data_root``).

    An option the builder does not declare is a ``TypeError`` naming the dataset, the option (with
    the closest declared names) and every option it accepts, raised before the builder runs.
    Plugins (``i2m2bench.plugins`` entry points) are loaded first, so their datasets resolve;
    ``I2M2BENCH_PLUGINS=0`` skips them."""
    load_plugins()
    builder = DATASETS.get(name)
    accepted, open_ = _declared(name)
    unknown = [] if open_ else sorted(set(options) - accepted)
    if unknown:
        parts = []
        for opt in unknown:
            close = difflib.get_close_matches(opt, sorted(accepted), n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            if opt == "data_root" and not close:
                hint = " (it reads no data files)"
            parts.append(f"{opt!r}{hint}")
        raise TypeError(f"dataset {name!r} has no option{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(parts)}; the options it accepts are: "
                        f"{', '.join(sorted(accepted)) or '(none)'}")
    try:
        return builder(**options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc) or "missing" in str(exc):
            raise TypeError(f"dataset {name!r}: {exc}") from exc
        raise


__all__ = ["DATASETS", "DataError", "build_task", "builder_options", "accepts_data_root",
           "resolve_data_root", "DATA_ENV", "FAMILIES", "DatasetFamily", "PrepareOption",
           "VERIFY_LEVELS", "find_family"]
