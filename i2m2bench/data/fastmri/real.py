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
the cache only when complete (:func:`i2m2bench.data.common.chain.staged`): an interrupted prepare
leaves no half cache, an existing cache is replaced only once the new one is complete, the
temporary folders of killed prepares are removed by the next one, one prepare runs at a time,
and a cache folder that is a symlink is written where it points.

``manifest.json``: ``format``/``version``, ``layout``, ``source`` (the folder read), ``width``,
``crop``, ``mag_ref`` (and how it was chosen), ``seed`` and the undersampling settings, per split
the ``count``, ``volumes``, ``slices`` (per volume), ``dropped`` (id + reason) and, for the raw
layout, ``absent`` (reviewed volumes not on disk); the file-list lines ignored, label rows that
name a slice the volume does not have; and per ``.npy`` file its ``shape``, ``dtype``, ``bytes``,
``sha256`` and ``probe_sha256`` -- a sha256 over the ``.npy`` header and :data:`PROBE_BLOCKS`
evenly spaced blocks of :data:`PROBE_BLOCK_BYTES` (the whole file when it is smaller), which
:func:`load_cache` checks by default in milliseconds; ``inputs``: every file read (the csvs, the
volumes or slice files, dropped volumes too; size, time, sha256) and the paths of reviewed volumes
not on disk; ``content_sha256``: the seal over all of it but paths and times, the cache's identity
in unit hashes (:mod:`i2m2bench.data.common.chain`; :func:`load_cache` refuses an edited manifest
or a changed input).

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

h5py is imported only when h5 files are read. The code: :mod:`~i2m2bench.data.fastmri.real_layouts`
(reading either layout), :mod:`~i2m2bench.data.fastmri.real_prepare` (writing the cache),
:mod:`~i2m2bench.data.fastmri.real_cache` (its format, opening it verified); this module is the
family's entry: :func:`folder`, :func:`load` -> Task, :func:`prepare`, :func:`verify`.
"""
from __future__ import annotations

import os
from pathlib import Path

from i2m2bench.data.base import dataset_folder
from i2m2bench.data.common import chain
from i2m2bench.data.fastmri.processing import REAL_HINT, task_spec
from i2m2bench.data.fastmri.real_cache import (FORMAT, FORMAT_VERSION, PREPARE_HINT, SHIFT, SPLITS,
                                               CachedFastMRI, default_cache, load_cache)
from i2m2bench.data.fastmri.real_layouts import detect_layout, split_volumes
from i2m2bench.data.fastmri.real_prepare import (DEVIATIONS, UNDERSAMPLING, nonzero_span, prepare,
                                                 undersample)
from i2m2bench.types import Task


def folder(data_root: str | os.PathLike | None = None) -> Path:
    """``<data root>/fastmri`` (the root: ``data_root``, else ``$I2M2BENCH_DATA``); a missing
    root, or a root without that folder, is a DataError saying what belongs there."""
    return dataset_folder(data_root, "fastmri", "fastmri", f"fastmri/ ({REAL_HINT})",
                          "embedded phantom")


def load(folder: str | os.PathLike, verify: str = "quick") -> Task:
    """The task from the prepared cache of the real data under ``folder`` (``<data root>/fastmri``),
    checked at ``verify`` (``quick``: probe checksums, ``full``: every byte)."""
    folder = Path(folder).expanduser()
    cached = load_cache(default_cache(folder), verify=verify, root=folder.parent)
    spec = task_spec("real", cached.crop, cached.mag_ref, 1.0, encoder_options={"pool": 10},
                     description=f"fastMRI single-coil knee + fastMRI+ labels ({cached.layout} layout)")
    return Task(spec, dict(cached.splits), dict(cached.shifts), options=dict(
        # not ``verify``: it checks the data, never changes them
        source="real", layout=cached.layout, checksum=cached.fingerprint))


def verify(folder: str | os.PathLike, level: str = "quick") -> str:
    """Check the prepared cache under ``folder`` against its manifest at ``level``; a one-line
    report (a DataError naming the file at fault otherwise)."""
    folder = Path(folder).expanduser()
    cached = load_cache(default_cache(folder), verify=level, root=folder.parent)
    return (f"fastmri: {cached.path} ({cached.layout} layout) matches its manifest and "
            f"{chain.inputs_report(cached.manifest['inputs'], cached.inputs_gone)} ({level}): "
            + ", ".join(f"{s} {n}" for s, n in cached.counts.items()) + " slices")



__all__ = ["CachedFastMRI", "DEVIATIONS", "FORMAT", "FORMAT_VERSION", "PREPARE_HINT", "SHIFT",
           "SPLITS", "UNDERSAMPLING", "default_cache", "detect_layout", "folder", "load",
           "load_cache", "nonzero_span", "prepare", "split_volumes", "undersample", "verify"]
