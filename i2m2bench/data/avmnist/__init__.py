"""AV-MNIST (real files, MultiBench layout) and AV-Digits (its embedded stand-in).

AV-MNIST (Vielzeuf et al., 2018, "CentralNet"; packaged by MultiBench, Liang et al., 2021) pairs
MNIST digits whose images lost 75% of their energy through PCA with spoken TIDIGITS digits mixed
with ESC-50 noise, as 1x112x112 spectrograms. The loader reads MultiBench's layout under
``<data_root>/avmnist/``::

    image/train_data.npy  (60000, 784)  or (60000, 28, 28)      pixel-scale values
    image/test_data.npy   (10000, 784)  ...
    audio/train_data.npy  (60000, 112, 112) or (60000, 12544)  pixel-scale values
    audio/test_data.npy   (10000, ...)
    train_labels.npy      (60000,)       test_labels.npy (10000,)

train = first 55,000 rows of the train files, validation = the last 5,000, test = 10,000.
Values: any finite values, divided by 255 on the way to the model, exactly MultiBench's only
transform (``datasets/avmnist/get_data.py``); files already divided by 255 (every value <= 1)
are refused rather than divided twice (see :mod:`i2m2bench.data.avmnist.real`).
The files are not copied into memory: the splits are
:class:`~i2m2bench.data.common.disk.DiskSplit` row ranges of them (train and validation share the train
files), streamed in index batches; the values are checked chunk by chunk when the task is built.

``source`` = ``auto`` (real files when a data root is given, the embedded AV-Digits when none is),
``real`` or ``embedded``. Under ``auto``, a data root that was given (``--data-root``,
``$I2M2BENCH_DATA``, ``data_root=``) but does not exist, is not a folder or holds no ``avmnist/``,
and real files that are present but broken, are errors — never a silent fall-back to embedded data.

Each file is checked before it is used, and a refusal names the path and what was expected: a
missing file, a folder where the file belongs, a symlink loop or dangling link, an ``.npz``
archive renamed ``.npy``, an object array (never loaded: it would need pickle), a non-numeric
dtype (strings, structured, complex), a wrong shape, NaN/Inf values, labels outside 0..9.
"""
from __future__ import annotations

import inspect
import sys

from i2m2bench.data.avmnist import real
from i2m2bench.data.avmnist.embedded import build_avdigits
from i2m2bench.data.avmnist.processing import DIGITS, MODALITIES
from i2m2bench.data.avmnist.real import N_TEST, N_TRAIN, N_VAL, REAL_HINT
from i2m2bench.data.base import DATASETS, DataError, check_count, path_problem, resolve_data_root
from i2m2bench.data.common.family import FAMILIES, DatasetFamily
from i2m2bench.types import Task

# The embedded stand-in is a dataset of its own too (``avdigits``: its options without the real
# data's).
DATASETS.register("avdigits")(build_avdigits)


def _check_split_sizes(split_sizes) -> tuple[int, int, int]:
    if isinstance(split_sizes, (str, bytes)) or not isinstance(split_sizes, (list, tuple)) \
            or len(split_sizes) != 3:
        raise ValueError(f"avmnist: option 'split_sizes' must be (train, val, test) row counts; "
                         f"got {split_sizes!r}")
    for name, n in zip(("train", "val", "test"), split_sizes):
        check_count("avmnist", f"split_sizes ({name} rows)", n)
    return tuple(split_sizes)


@DATASETS.register("avmnist")
def build_avmnist(source: str = "auto", data_root: str | None = None,
                  split_sizes: tuple[int, int, int] = (N_TRAIN, N_VAL, N_TEST),
                  **embedded_options) -> Task:
    """AV-MNIST from ``<data_root>/avmnist`` or, under ``auto`` when absent, embedded AV-Digits."""
    if source not in ("auto", "real", "embedded"):
        raise ValueError(f"avmnist: source must be 'auto', 'real' or 'embedded'; got {source!r}")
    sizes = _check_split_sizes(split_sizes)
    # The data root is read only when real data may be wanted: an embedded run ignores it.
    root = None if source == "embedded" else resolve_data_root(data_root, check=True)
    if root is not None or source == "real":
        if root is None:
            raise DataError("avmnist: source='real' needs a data root (--data-root DIR or "
                            f"$I2M2BENCH_DATA) holding avmnist/; {REAL_HINT}")
        folder = root / "avmnist"
        problem = path_problem(folder, "folder")
        if problem is not None:  # a data root was given: never a silent fall-back
            origin = "data_root" if data_root is not None else "$I2M2BENCH_DATA"
            raise DataError(f"{folder}: {problem}; the data root ({origin} {root}) must hold the "
                            f"AV-MNIST folder avmnist/ ({REAL_HINT}), or give no data root "
                            "(or source='embedded') for the embedded AV-Digits stand-in")
        if embedded_options:
            raise TypeError(f"avmnist: options {sorted(embedded_options)} apply to embedded data only")
        return real.load(folder, sizes)
    why = "no data root given" if source == "auto" else "source='embedded'"
    print(f"[i2m2bench] avmnist: {why}; using the EMBEDDED AV-Digits stand-in, not AV-MNIST "
          "(see docs/datasets/avmnist.md).", file=sys.stderr)
    return build_avdigits(**embedded_options)


def _forwarding_signature(own, target) -> inspect.Signature:
    """``own``'s signature with its ``**kwargs`` replaced by ``target``'s options (keyword-only)."""
    params = [p for p in inspect.signature(own).parameters.values()
              if p.kind is not inspect.Parameter.VAR_KEYWORD]
    names = {p.name for p in params}
    params += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(target).parameters.values()
               if p.name not in names and p.kind is not inspect.Parameter.VAR_KEYWORD]
    return inspect.signature(own).replace(parameters=params)


# ``**embedded_options`` go to the embedded stand-in's builder: declare them by name, so that
# ``builder_options("avmnist")`` lists them and ``build_task`` checks them before building.
build_avmnist.__signature__ = _forwarding_signature(build_avmnist, build_avdigits)

FAMILY = DatasetFamily(
    name="avmnist", datasets=("avmnist", "avdigits"), folder="avmnist",
    holding=f"the AV-MNIST folder avmnist/ ({REAL_HINT})", verify_files=real.verify,
    embedded="embedded AV-Digits stand-in",
    description="AV-MNIST's files are read in place: nothing to prepare; verify checks them")
FAMILIES.add(FAMILY.name, FAMILY, origin=f"{__name__}.FAMILY")

__all__ = ["DIGITS", "FAMILY", "MODALITIES", "N_TEST", "N_TRAIN", "N_VAL", "build_avdigits",
           "build_avmnist"]
