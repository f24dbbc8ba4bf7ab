"""Writing the FastMRI cache (:func:`prepare`): undersampling, magnitude/phase per slice in
chunks, float16 ``.npy`` files written in place, the manifest with every file's checksums, and
an atomic swap into place.

The recipe is described in :mod:`i2m2bench.data.fastmri.real`.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from i2m2bench.data.base import DataError, path_problem
from i2m2bench.data.common import chain
from i2m2bench.data.common import manifest as mf
from i2m2bench.data.fastmri.processing import CROP, KSPACE_SHAPE, LABELS, column_mask, magnitude_phase
from i2m2bench.data.fastmri.real_cache import (FORMAT, FORMAT_VERSION, SHIFT, SPLITS, cache_file_names,
                                               default_cache)
from i2m2bench.data.fastmri.real_layouts import (METADATA_CSV, Plan, Volume, check_geometry, label_files,
                                                 detect_layout, kspace_dataset, open_h5, plan_official,
                                                 plan_raw, read_slices)
from i2m2bench.fileio import WriteError, write_text_atomic

#: The shift set's undersampling (fastMRI ``RandomMaskFunc`` settings).
UNDERSAMPLING = {"kind": "random", "acceleration": 4, "center_fraction": 0.08}
#: Probe hash: the .npy header plus this many evenly spaced blocks of this many bytes.
PROBE_BLOCKS = mf.PROBE_BLOCKS
PROBE_BLOCK_BYTES = mf.PROBE_BLOCK_BYTES
#: Slices processed (and held in memory) at a time.
SLICE_CHUNK = 8
#: MAG_REF: the smallest power of two >= this percentile of the first train slices' magnitudes.
MAG_REF_PERCENTILE = 99.9
MAG_REF_SLICES = 64

DEVIATIONS = (
    "reviewed volume ids are sorted before the 70/15/15 split (the official list comes from a "
    "Python set, whose order depends on PYTHONHASHSEED)",
    "lines of knee_file_list.csv that are not volume ids (the stray 'Knee data' line) are "
    "ignored; the official script splits them as volumes",
    "any number of k-space rows >= the crop height is accepted (the official script assumes 640)",
    "magnitude stored as float16 magnitude / mag_ref, phase as float16",
)


# ------------------------------------------------------------------------------ processing
def undersample(kspace: np.ndarray, rng: np.random.Generator,
                span: tuple[int, int] | None = None) -> np.ndarray:
    """A copy of one slice's k-space (rows, cols) with a fastMRI random column mask
    (:data:`UNDERSAMPLING`: acceleration 4, centre fraction 0.08) drawn by ``rng`` over the
    columns ``span = (first, end)`` (default all), the columns outside it left as they are
    (zero padding)."""
    lo, hi = (0, kspace.shape[-1]) if span is None else span
    mask = column_mask(hi - lo, kind=UNDERSAMPLING["kind"],
                       acceleration=UNDERSAMPLING["acceleration"],
                       center_fraction=UNDERSAMPLING["center_fraction"], rng=rng)
    out = np.array(kspace, copy=True)
    out[..., lo:hi] *= mask.astype(out.real.dtype)
    return out


def nonzero_span(kspace: np.ndarray) -> tuple[int, int]:
    """(first, last + 1) of the columns of a slice's k-space with non-zero energy (all columns
    when none has): the acquired columns of a zero-padded slice."""
    nz = np.flatnonzero(np.any(kspace != 0, axis=-2))
    return (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, kspace.shape[-1])


def _chunks(vol: Volume, crop: tuple[int, int]) -> Iterator[tuple[list[int], np.ndarray,
                                                                    list[tuple[int, int]]]]:
    """(slice ids, k-space (n, rows, cols), undersampling spans) of a volume, a few slices at a
    time."""
    if vol.path is not None:
        what = "a fastMRI single-coil knee volume: dataset 'kspace' (slices, rows, columns) complex"
        with open_h5(vol.path, what) as h5:
            ds = kspace_dataset(h5, vol.path, "kspace", 3, crop, what)
            for start in range(0, len(vol.slices), SLICE_CHUNK):
                ids = vol.slices[start:start + SLICE_CHUNK]
                k = read_slices(ds, np.s_[ids[0]:ids[-1] + 1], vol.path, what)
                yield ids, k, [(0, k.shape[-1])] * len(ids)
        return
    what = "an I2M2 knee slice file: dataset 'sc_kspace' (rows, columns) complex"
    for s, path in zip(vol.slices, vol.files):
        with open_h5(path, what) as h5:
            k = read_slices(kspace_dataset(h5, path, "sc_kspace", 2, crop, what), (), path, what)
        yield [s], k[None], [nonzero_span(k)]


def _choose_mag_ref(plan: Plan, width: int, crop: tuple[int, int]) -> dict:
    """MAG_REF from the first train slices (see the module docstring)."""
    mags, n, used = [], 0, []
    for vol in plan.volumes["train"]:
        for _, k, _ in _chunks(vol, crop):
            mags.append(magnitude_phase(k, width, crop)[0].ravel())
            n += len(k)
            if n >= MAG_REF_SLICES:
                break
        used.append(vol.id)
        if n >= MAG_REF_SLICES:
            break
    value = float(np.percentile(np.concatenate(mags), MAG_REF_PERCENTILE)) if mags else 0.0
    ref = 2.0 ** math.ceil(math.log2(value)) if value > 0 and math.isfinite(value) else 1.0
    return {"mag_ref": ref, "mag_ref_from": {"volumes": used, "slices": n,
                                             "percentile": MAG_REF_PERCENTILE, "value": value}}


def _write_split(plan: Plan, split: str, folder: Path, width: int, crop: tuple[int, int],
                 mag_ref: float, seed: int, log: Callable) -> None:
    vols = plan.volumes[split]
    n = sum(len(v.slices) for v in vols)
    shape = (n, 1, *crop)
    names = ["magnitude", "phase"] + ([f"{SHIFT}_magnitude", f"{SHIFT}_phase"] if split == "test"
                                      else [])
    writers = {}
    try:
        for m in names:
            writers[m] = mf.NpyWriter(folder / f"{split}_{m}.npy", shape, np.float16,
                                     what="a fastMRI cache file")
        step = max(1, len(vols) // 10)
        for vindex, vol in enumerate(vols):
            for ids, k, spans in _chunks(vol, crop):
                mag, phase = magnitude_phase(k, width, crop)
                writers["magnitude"].append(_scaled(mag, mag_ref, vol))
                writers["phase"].append(phase[:, None])
                if split == "test":
                    under = np.stack([undersample(k[i], np.random.default_rng([seed, vindex, s]),
                                                  spans[i]) for i, s in enumerate(ids)])
                    mag_u, phase_u = magnitude_phase(under, width, crop)
                    writers[f"{SHIFT}_magnitude"].append(_scaled(mag_u, mag_ref, vol))
                    writers[f"{SHIFT}_phase"].append(phase_u[:, None])
            if (vindex + 1) % step == 0 or vindex + 1 == len(vols):
                log(f"fastmri: {split}: {vindex + 1}/{len(vols)} volumes, "
                    f"{writers['magnitude'].next_row}/{n} slices")
        for w in writers.values():
            w.close()
    finally:
        for w in writers.values():
            if w.fd is not None:
                os.close(w.fd)
    labels = np.concatenate([v.labels for v in vols]) if vols else np.zeros((0, len(LABELS)),
                                                                              np.uint8)
    path = folder / f"{split}_labels.npy"
    try:
        with open(path, "wb") as fh:
            np.save(fh, labels.astype(np.uint8))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise WriteError(path, exc, "a fastMRI cache file") from exc


def _scaled(mag: np.ndarray, mag_ref: float, vol: Volume) -> np.ndarray:
    out = (mag / np.float32(mag_ref)).astype(np.float16)[:, None]
    if not np.all(np.isfinite(out)):
        where = vol.path or vol.files[0].parent
        raise DataError(f"{where}: magnitude above {65504 * mag_ref:g} ({65504} x mag_ref "
                        f"{mag_ref:g}, chosen from the first train slices): it overflows float16; "
                        "expected magnitudes of the order of the first volumes'")
    return out


def prepare(folder: str | os.PathLike, cache: str | os.PathLike | None = None,
            width: int = KSPACE_SHAPE[1], crop: tuple[int, int] = CROP,
            log: Callable[[str], object] = print, *, seed: int = 0) -> Path:
    """Read the fastMRI knee data under ``folder`` (``<data root>/fastmri``, either layout: see
    the module docstring) and write the cache (default ``folder/cache``); returns its path.

    ``width``: the k-space width slices are padded to (volumes wider are dropped); ``crop``: the
    image crop (height, width). ``log``: progress and report lines (dropped volumes, ignored
    lines, counts). ``seed``: the undersampling masks' seed. Bad input: a DataError naming the
    file (and line); a failed write: a :class:`~i2m2bench.fileio.WriteError`. Either way no
    cache is left half written, and an existing cache is kept."""
    width, crop = check_geometry(width, crop)
    folder = Path(folder).expanduser()
    layout = detect_layout(folder)
    cache = default_cache(folder) if cache is None else Path(cache).expanduser()
    problem = path_problem(cache, "folder")
    if problem not in (None, "not found"):
        raise DataError(f"{cache}: {problem}; expected a folder (or nothing) where the fastMRI "
                        "cache is written")
    log(f"fastmri: reading the {layout} layout in {folder}")
    plan = (plan_raw if layout == "raw" else plan_official)(folder, width, crop, log)
    counts = {s: sum(len(v.slices) for v in plan.volumes[s]) for s in SPLITS}
    log("fastmri: " + ", ".join(f"{s} {counts[s]} slices ({len(plan.volumes[s])} volumes)"
                                for s in SPLITS))
    empty = [s for s in SPLITS if counts[s] == 0]
    if empty:
        source = folder / (METADATA_CSV if layout == "official" else label_files(folder)[1])
        raise DataError(f"{source}: no slices for split(s) {', '.join(empty)} "
                        f"({', '.join(f'{s} {counts[s]}' for s in SPLITS)}); expected volumes on "
                        "disk in every split")
    mag = _choose_mag_ref(plan, width, crop)
    log(f"fastmri: mag_ref {mag['mag_ref']:g} (the {MAG_REF_PERCENTILE}th percentile of the first "
        f"{mag['mag_ref_from']['slices']} train slices' magnitudes is "
        f"{mag['mag_ref_from']['value']:.4g})")

    inputs = chain.record_inputs(folder.parent, plan.inputs, plan.absent)
    with chain.staged(cache, "the fastMRI cache", log) as tmp:
        for split in SPLITS:
            _write_split(plan, split, tmp, width, crop, mag["mag_ref"], seed, log)
        splits = {}
        for split in SPLITS:
            entry = {"count": counts[split], "volumes": [v.id for v in plan.volumes[split]],
                     "slices": [len(v.slices) for v in plan.volumes[split]]}
            if layout == "official":
                entry["slice_ids"] = [v.slices for v in plan.volumes[split]]
            entry.update(plan.info["splits"][split])
            splits[split] = entry
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "layout": layout,
            "source": str(folder.absolute()), "width": width, "crop": list(crop), **mag,
            "labels": list(LABELS), "seed": seed,
            "undersampling": {**UNDERSAMPLING, "mask_seed": "[seed, volume index in test, slice]",
                              "columns": "all columns of the volume" if layout == "raw" else
                              "the span of columns with non-zero energy of each slice"},
            "splits": splits,
            "shifts": {SHIFT: {"split": "test", "count": counts["test"]}},
            **{k: v for k, v in plan.info.items() if k != "splits"},
            "deviations": list(DEVIATIONS),
            "inputs": inputs,
            "probe": {"blocks": PROBE_BLOCKS, "block_bytes": PROBE_BLOCK_BYTES},
            "files": {name: mf.npy_entry(tmp / name, (PROBE_BLOCKS, PROBE_BLOCK_BYTES))
                      for name in cache_file_names()},
        }
        write_text_atomic(tmp / "manifest.json", json.dumps(chain.seal(manifest), indent=1) + "\n",
                          what="the fastMRI cache manifest")
    dropped = sum(len(splits[s]["dropped"]) for s in SPLITS)
    log(f"fastmri: wrote {cache} ({', '.join(f'{s} {counts[s]}' for s in SPLITS)} slices; "
        f"{dropped} volume(s) dropped)")
    return cache


__all__ = ["DEVIATIONS", "MAG_REF_PERCENTILE", "MAG_REF_SLICES", "PROBE_BLOCKS", "PROBE_BLOCK_BYTES", "SLICE_CHUNK", "UNDERSAMPLING", "nonzero_span", "prepare", "undersample"]
