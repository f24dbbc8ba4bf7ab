"""The :class:`DatasetFamily` record: one shape for every dataset family's ``prepare`` / ``verify``.

A family (``avmnist``, ``fastmri``, ``mimic``, ``vqa_vs``, ``nlvr2``, or a plugin's) names the
datasets it builds, the folder its real files live in under the data root, and two verbs:

* ``prepare(data_root, **options)`` -- the one-time conversion of the official files (a cache, a
  converted file, extracted features); returns the path written. ``options`` are declared by
  :class:`PrepareOption` records, from which the CLI builds ``python -m i2m2bench prepare
  <family>``'s flags; a family with nothing to convert has no ``prepare``.
* ``verify(data_root, level)`` -- check the real files (and the prepared ones) without building
  a task; returns a one-line report. ``level`` is one of :data:`VERIFY_LEVELS` (``quick``: sizes,
  shapes, dtypes and sampled checksums where a manifest records them; ``full``: every byte's
  sha256); the older spellings ``probe`` (FastMRI) and ``size`` (VQA-VS, NLVR2) are aliases of
  ``quick`` (:func:`verify_level`).

Families register in :data:`FAMILIES` (``FAMILIES.add(family.name, family)``); the CLI's
``prepare`` and ``verify`` commands dispatch through it, so a plugin dataset gets both verbs by
registering its own record (docs/adding_a_dataset.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from i2m2bench.data.base import dataset_folder
from i2m2bench.registry import Registry

#: The verify levels every family accepts, cheapest first.
VERIFY_LEVELS = ("quick", "full")
#: Older spellings, still accepted: FastMRI's ``probe`` and the VL datasets' ``size``.
VERIFY_ALIASES = {"probe": "quick", "size": "quick"}


def verify_level(level: str, dataset: str = "data") -> str:
    """``level`` as one of :data:`VERIFY_LEVELS` (an alias of :data:`VERIFY_ALIASES` mapped);
    a ValueError naming ``dataset`` and the accepted levels otherwise."""
    level = VERIFY_ALIASES.get(level, level) if isinstance(level, str) else level
    if level not in VERIFY_LEVELS:
        raise ValueError(f"{dataset}: verify must be one of {', '.join(map(repr, VERIFY_LEVELS))} "
                         f"(aliases: {', '.join(f'{a!r}={c!r}' for a, c in VERIFY_ALIASES.items())}); "
                         f"got {level!r}")
    return level


@dataclass(frozen=True)
class PrepareOption:
    """One option of a family's ``prepare``: its keyword ``name`` (the CLI flag is ``--name``
    with ``-`` for ``_``), a ``help`` line, the ``type`` that parses the flag's text and the
    ``default``; ``flag=True`` makes a switch: ``--no-<name>`` that sets the option to False
    (default True), or, with ``default=False``, ``--<name>`` that sets it to True."""

    name: str
    help: str
    type: Callable[[str], Any] = str
    default: Any = None
    flag: bool = False
    metavar: str | None = None


@dataclass(frozen=True)
class DatasetFamily:
    """A dataset family: its ``name`` (the CLI's ``prepare``/``verify`` argument; ``aliases``
    are accepted too), the ``datasets`` it builds, the ``folder`` under the data root holding its
    real files (``holding``: what belongs there, for error messages), and its verbs:
    ``prepare_files(folder, **options) -> Path`` (None: nothing to prepare) with its ``options``,
    and ``verify_files(folder, level) -> str``."""

    name: str
    datasets: tuple[str, ...]
    folder: str
    holding: str
    verify_files: Callable[[Path, str], str]
    prepare_files: Callable[..., Path] | None = None
    options: tuple[PrepareOption, ...] = ()
    aliases: tuple[str, ...] = ()
    description: str = ""
    embedded: str = field(default="embedded stand-in")
    #: other names of :attr:`folder` that the official downloads give it (``VQA-VS``)
    folder_aliases: tuple[str, ...] = ()

    def real_folder(self, data_root: str | os.PathLike | None = None) -> Path:
        """``<data root>/<folder>`` (the root: ``data_root``, else ``$I2M2BENCH_DATA``); a missing
        root, or a root without that folder, is a DataError saying what belongs there."""
        return dataset_folder(data_root, self.folder, self.name, self.holding, self.embedded,
                              self.folder_aliases)

    def prepare(self, data_root: str | os.PathLike | None = None, **options) -> Path:
        """Run the family's one-time conversion of the files under ``data_root``; returns the
        path written. ``options``: those of :attr:`options` (others are a TypeError); an option
        left out takes its declared default, as on the command line."""
        if self.prepare_files is None:
            raise ValueError(f"{self.name}: nothing to prepare (its files are read in place); "
                             f"`python -m i2m2bench verify {self.name}` checks them")
        known = {o.name for o in self.options}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"{self.name}: prepare has no option(s) {', '.join(unknown)}; its "
                            f"options are: {', '.join(sorted(known)) or '(none)'}")
        defaults = {o.name: o.default for o in self.options}
        return self.prepare_files(self.real_folder(data_root), **{**defaults, **options})

    def verify(self, data_root: str | os.PathLike | None = None, level: str = "quick") -> str:
        """Check the family's real (and prepared) files under ``data_root`` at ``level`` (one of
        :data:`VERIFY_LEVELS` or an alias); returns a one-line report, raises DataError naming
        the file at fault."""
        level = verify_level(level, self.name)
        return self.verify_files(self.real_folder(data_root), level)


#: Every dataset family, by name (``python -m i2m2bench prepare|verify <name>``).
FAMILIES: Registry[DatasetFamily] = Registry("dataset family")


def find_family(name: str) -> DatasetFamily:
    """The family registered as ``name`` or having ``name`` among its aliases (``vqa-vs``)."""
    for fam_name in FAMILIES.names():
        fam = FAMILIES.get(fam_name)
        if name in fam.aliases:
            return fam
    return FAMILIES.get(name)


__all__ = ["DatasetFamily", "FAMILIES", "PrepareOption", "VERIFY_ALIASES", "VERIFY_LEVELS",
           "find_family", "verify_level"]
