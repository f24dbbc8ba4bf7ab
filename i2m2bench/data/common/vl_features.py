"""Features of a frozen vision-language backbone, extracted once, stored as float16 ``.npy`` files
with a manifest, and read back verified (shared by VQA-VS and NLVR2).

The official I2M2 vision-language experiments freeze the backbone (FIBER) and train only the
heads on its image, text and joint (cross-modal) features. ``python -m i2m2bench prepare vqa-vs
--backbone DIR`` (and ``prepare nlvr2``) does the same with a Hugging Face ``transformers`` model
saved in a local folder (``transformers`` is an optional extra: ``pip install -e ".[vl]"``;
nothing is downloaded): :func:`extract` runs it on every item once, batched, on CUDA when
present, with a progress bar, resumable (finished batches are kept on disk and skipped after an
interruption; a prepare resumes only a partial folder made from the same inputs, backbone and
device: :func:`resume_key`), and :func:`write_manifest` records what was made.

**The backbone** must give image, text and joint features: a FLAVA-style model
(``transformers.FlavaModel``: ``image_embeddings``, ``text_embeddings`` and
``multimodal_embeddings``; the first token of each) with its processor in the same folder. An item
with two images (NLVR2's pair) gets each image's feature and the joint features of (image,
sentence) for both images, concatenated (the official NLVR2 head reads the two joint features
side by side: 2 x 768 = 1536 in FIBER).

**Layout** of a feature folder (also what users who extracted FIBER features themselves write)::

    <folder>/manifest.json             {"version": 2, "backbone": {"path", "files": {name:
                                         sha256}, "sha256"}, "inputs": {"files": {path: {"bytes",
                                         "mtime_ns", "sha256"}}, "absent": []}, "extraction":
                                         {"device", "batch_size"}, "whole": {name: sha256},
                                         "splits": {split: {"rows": N, "files": {name: {"shape":
                                         [...], "dtype": "float16", "sha256": ...}}}},
                                         "content_sha256": the seal}
    <folder>/<split>/ids.npy           int64 (N,) the item ids, in row order (question ids, or
                                         the row of the JSON Lines file)
    <folder>/<split>/image.npy         float16 (N, d_image) -- (N, 2, d_image) for image pairs
    <folder>/<split>/text.npy          float16 (N, d_text)
    <folder>/<split>/joint.npy         float16 (N, d_joint)

:func:`open_features` checks a folder against its manifest (sizes and shapes always, checksums of
every byte with ``verify='full'``) and against the ids the annotations expect, and says exactly
what does not match; :func:`check_features` checks the manifest's seal and the inputs it
records (:mod:`i2m2bench.data.common.chain`). Features extracted elsewhere are written in the
layout above without a manifest, and ``prepare <family> --own-features`` checks them
(:func:`adopt`) and writes it.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from i2m2bench.data.base import DataError, file_sha256, path_problem
from i2m2bench.data.common import chain, manifest
from i2m2bench.data.common.family import PrepareOption
from i2m2bench.fileio import WriteError, write_text_atomic

MANIFEST = "manifest.json"
FEATURES = ("image", "text", "joint")
#: 2: the manifest records the inputs (annotations, images), the backbone's files and the
#: extraction settings, and is sealed (data/common/chain.py)
VERSION = 2


#: The prepare options of the VL families (VQA-VS, NLVR2): the backbone and its extraction.
VL_OPTIONS = (
    PrepareOption("backbone", "a local folder with a transformers vision-language model and its "
                  "processor (FLAVA-style: image, text and multimodal encoders); its image, text "
                  "and joint features are extracted once. Without it the files are checked only",
                  str, None, metavar="DIR"),
    PrepareOption("own_features", "the image, text and joint features under features/<split>/ "
                  "were extracted elsewhere (FIBER's, as in the paper) in the documented layout: "
                  "check them against the annotations and record them with their inputs in a "
                  "sealed manifest, without a backbone", flag=True, default=False),
    PrepareOption("batch_size", "items per batch (default 32)", int, 32, metavar="N"),
    PrepareOption("device", "the extraction's device (default: CUDA when present)", str, None),
    PrepareOption("progress", "no progress bar", flag=True, default=True),
)


@dataclass(frozen=True)
class Item:
    """One item to extract: its id, its image file(s) and its text."""

    id: int
    images: tuple[Path, ...]
    text: str


def _open_image(path: Path):
    """The RGB image at ``path``, whatever its real format (NLVR2's ``.png`` files are not all
    PNG); a DataError naming the path when it is missing or not an image."""
    from PIL import Image, UnidentifiedImageError

    problem = path_problem(path)
    if problem is not None:
        raise DataError(f"{path}: {problem} (an image the annotations name)")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: not an image Pillow can read ({exc})") from exc


def check_images(paths: Iterable[Path]) -> None:
    """Every path is a file whose header Pillow recognises as an image (whatever its name says):
    checked before anything is extracted or written. DataError naming the first that is not."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        problem = path_problem(path)
        if problem is not None:
            raise DataError(f"{path}: {problem} (an image the annotations name)")
        try:
            with Image.open(path):  # reads the header only
                pass
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DataError(f"{path}: not an image Pillow can read ({exc})") from exc


def require_backbone(backbone, base: Path, count: int, what: str, own: bool = False) -> None:
    """The files under ``base`` checked out (``count`` ``what``); a DataError saying that the
    extraction needs ``--backbone DIR`` when ``backbone`` is None (and the features are not the
    user's own); a DataError when both are given."""
    if own and backbone is not None:
        raise DataError("--own-features and --backbone exclude each other: either the features "
                        "under features/ were extracted elsewhere, or --backbone extracts them")
    if backbone is None and not own:
        raise DataError(f"{base}: the {what} and images check out ({count} {what}); extracting "
                        "their features needs --backbone DIR (a transformers model saved in a "
                        "local folder with its processor)")


def load_backbone(folder: str | os.PathLike, device: str | None = None):
    """(model, processor, device) from a local ``transformers`` folder (``local_files_only``:
    nothing is downloaded); a DataError naming the folder when it holds no usable model."""
    try:
        import torch
        from transformers import AutoModel, AutoProcessor
    except ImportError as exc:
        raise DataError("feature extraction needs the optional `transformers` package: "
                        "pip install -e '.[vl]'") from exc
    folder = Path(folder)
    problem = path_problem(folder, "folder")
    if problem is not None:
        raise DataError(f"--backbone {folder}: {problem}; name a folder holding a saved "
                        "transformers model and its processor (save_pretrained)")
    try:
        model = AutoModel.from_pretrained(folder, local_files_only=True)
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"--backbone {folder}: not a loadable transformers model with its "
                        f"processor ({exc})") from exc
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.eval().to(dev), processor, dev


def _features(model, processor, images, texts, device):
    """(image (B, d), text (B, d), joint (B, d)) of a FLAVA-style model, float32 numpy."""
    import torch

    inputs = processor(images=images, text=texts, return_tensors="pt", padding="max_length",
                       truncation=True, max_length=40)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    with torch.inference_mode():
        out = model(**inputs)
    firsts = []
    for name in ("image_embeddings", "text_embeddings", "multimodal_embeddings"):
        t = getattr(out, name, None)
        if t is None:
            raise DataError(f"the backbone gives no {name}: a FLAVA-style model (image, text and "
                            "multimodal encoders) is needed")
        firsts.append(t[:, 0].float().cpu().numpy())
    return tuple(firsts)


def check_batch_size(batch_size) -> None:
    """``batch_size`` (``--batch-size``) is a whole number >= 1: a DataError naming the option
    otherwise (checked before anything is read or written)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"--batch-size {batch_size!r}: the items per batch must be a whole number "
                        ">= 1 (default 32); nothing was written")


def read_progress(path: Path, count: int) -> int:
    """The rows already extracted, as recorded in ``path`` (``progress.json``; 0 when it does not
    exist); a DataError naming it when it is not a record of 0..``count`` rows (torn, edited),
    so that an extraction never resumes from a guess. Nothing is changed."""
    if not path.exists():
        return 0
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        rows = exc
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= count:
        why = rows if isinstance(rows, Exception) else f"rows {rows!r}, expected 0..{count}"
        raise DataError(f"{path}: not a readable record of the extraction's progress ({why}); "
                        f"remove {path.parent} to extract this split again")
    return rows


def extract(backbone: str | os.PathLike, items: Sequence[Item], out: Path, *,
            batch_size: int = 32, device: str | None = None, progress: bool = True,
            log: Callable[[str], None] = print) -> dict[str, tuple[int, ...]]:
    """Extract image, text and joint features of ``items`` into ``out`` (one split's folder):
    float16 ``image.npy``, ``text.npy``, ``joint.npy`` and ``ids.npy``. Resumable: the rows of
    finished batches are recorded in ``out/progress.json`` and not extracted again. Returns the
    shape of each file."""
    check_batch_size(batch_size)
    state_path = out / "progress.json"
    if (out / "ids.npy").exists() and not state_path.exists():
        # finished before (ids.npy is written after the last batch, progress.json removed
        # after it): an interrupted prepare resumed in its partial folder
        if np.array_equal(np.load(out / "ids.npy"), np.array([it.id for it in items])):
            log(f"[i2m2bench] features of {len(items)} items already in {out}")
            return {name: tuple(np.load(out / f"{name}.npy", mmap_mode="r").shape)
                    for name in FEATURES}
    done = read_progress(state_path, len(items))
    model, processor, dev = load_backbone(backbone, device)
    out.mkdir(parents=True, exist_ok=True)
    pairs = len(items[0].images) if items else 1
    arrays: dict[str, manifest.NpyWriter] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    starts = range(done, len(items), batch_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), initial=done, desc=f"features {out.name}", unit="item")
    try:
        for start in starts:
            batch = items[start:start + batch_size]
            per_image = [[_open_image(p) for p in it.images] for it in batch]
            feats = [_features(model, processor, [ims[k] for ims in per_image],
                               [it.text for it in batch], dev) for k in range(pairs)]
            image = np.stack([f[0] for f in feats], 1) if pairs > 1 else feats[0][0]
            text = feats[0][1]
            joint = np.concatenate([f[2] for f in feats], 1)
            values = (("image", image), ("text", text), ("joint", joint))
            if not arrays:
                for name, value in values:
                    shapes[name] = (len(items), *value.shape[1:])
                    arrays[name] = manifest.NpyWriter(out / f"{name}.npy", shapes[name],
                                                      np.float16, start_row=start,
                                                      what="the extracted features")
            for name, value in values:  # positioned writes: a full disk is an error naming the file
                arrays[name].append(value)
                arrays[name].sync()
            done = start + len(batch)
            write_text_atomic(state_path, json.dumps({"rows": done}), "the extraction's progress")
            if bar is not None:
                bar.update(len(batch))
    finally:
        for writer in arrays.values():
            writer.close(complete=False)
        if bar is not None:
            bar.close()
    arrays.clear()
    if not shapes:  # everything was done before: read the shapes back
        shapes = {name: tuple(np.load(out / f"{name}.npy", mmap_mode="r").shape) for name in FEATURES}
    _check_rows(out, len(items))
    ids_path = out / "ids.npy"
    try:
        np.save(ids_path, np.array([it.id for it in items], dtype=np.int64))
    except OSError as exc:
        ids_path.unlink(missing_ok=True)  # never taken as finished
        raise WriteError(ids_path, exc, "the extracted features' ids") from exc
    state_path.unlink(missing_ok=True)
    log(f"[i2m2bench] features of {len(items)} items -> {out}")
    return shapes


def _check_rows(out: Path, count: int) -> None:
    """Every one of the ``count`` rows of each feature file was written: a row of zeros in all
    of them is a batch that never ran (a DataError naming the file and row)."""
    zero = np.ones(count, dtype=bool)
    for name in FEATURES:
        a = np.load(out / f"{name}.npy", mmap_mode="r")
        if len(a) != count:
            raise DataError(f"{out / f'{name}.npy'}: {len(a)} rows, expected {count}")
        flat = a.reshape(len(a), -1)
        for start in range(0, count, 1 << 14):  # blocks of rows: memory bounded at any size
            block = np.asarray(flat[start:start + (1 << 14)])
            zero[start:start + len(block)] &= ~(block != 0).any(axis=1)
        del a, flat
    if zero.any():
        first = int(np.flatnonzero(zero)[0])
        raise DataError(f"{out}: {int(zero.sum())} row(s) all zero in every feature file "
                        f"(first: row {first}); the extraction did not write them: prepare again")


def backbone_record(backbone: str | os.PathLike) -> dict:
    """The backbone folder's record (the sha256 of every file: weights, config, processor), a
    DataError naming ``--backbone`` when it is not a folder."""
    folder = Path(backbone)
    problem = path_problem(folder, "folder")
    if problem is not None:
        raise DataError(f"--backbone {folder}: {problem}; name a folder holding a saved "
                        "transformers model and its processor (save_pretrained)")
    return chain.folder_record(folder)


#: The backbone record of features extracted elsewhere (``--own-features``).
OWN = {"path": None, "files": {}, "sha256": "own features: extracted elsewhere"}


def adopt(src: Path, dst: Path, items: Sequence[Item]) -> None:
    """Take the user's own features of one split (``src``: ``ids.npy``, ``image.npy``,
    ``text.npy``, ``joint.npy``) into the staged folder ``dst`` (hard links where the file
    system allows, else copies), after checking that the ids are those of ``items`` in order
    and that every feature file is a float16 or float32 array of one row per item. A DataError
    naming the file otherwise; ``src`` is never changed."""
    ids = np.array([it.id for it in items], dtype=np.int64)
    for name in ("ids", *FEATURES):
        path = src / f"{name}.npy"
        problem = path_problem(path)
        if problem is not None:
            raise DataError(f"{path}: {problem}; --own-features expects the documented layout "
                            f"(features/<split>/ids.npy, image.npy, text.npy, joint.npy)")
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({manifest.one_line(exc)})") from exc
        if name == "ids":
            if a.shape != ids.shape or not np.array_equal(a, ids):
                raise DataError(f"{path}: {len(a)} ids that are not the {len(ids)} ids of the "
                                "annotations in their order (question ids, or the row of the "
                                "JSON Lines file)")
        elif a.dtype not in (np.float16, np.float32) or a.ndim < 2 or len(a) != len(ids):
            raise DataError(f"{path}: shape {a.shape} {a.dtype}; expected float16 or float32 "
                            f"with one row per id ({len(ids)} rows, >= 2 axes)")
        dst.mkdir(parents=True, exist_ok=True)
        target = dst / path.name
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)
        except OSError:
            import shutil

            shutil.copyfile(path, target)


def resume_key(inputs: dict, backbone: dict, device: str | None) -> dict:
    """What a partial extraction is made from (its inputs, the backbone's files, the device
    kind): a resumed prepare continues only a partial folder with the same key."""
    import torch

    kind = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")).type
    return {"inputs": chain.inputs_digest(inputs), "backbone": backbone["sha256"],
            "device": kind}


@dataclass
class Staged:
    """A features folder being written (:func:`staged_features`): ``out``, the staged folder
    holding every split's extracted (or adopted) features; what its manifest records."""

    out: Path
    backbone: dict
    inputs: dict
    settings: dict

    def write_manifest(self, splits: Iterable[str], extra: Sequence[str] = (),
                       whole: Sequence[str] = (), layouts: dict | None = None) -> Path:
        """:func:`write_manifest` of the staged folder."""
        return write_manifest(self.out, splits, self.backbone, self.inputs, self.settings,
                              extra=extra, whole=whole, layouts=layouts)


@contextmanager
def staged_features(base: Path, what: str, items: dict[str, Sequence[Item]],
                    annotations: Iterable[Path], backbone: str | None, *,
                    own_features: bool = False, batch_size: int = 32,
                    device: str | None = None, progress: bool = True) -> Iterator[Staged]:
    """Write ``base/features`` all-or-nothing (:func:`i2m2bench.data.common.chain.staged`):
    records the inputs (the ``annotations`` files and every item's images) and the backbone's
    files, extracts every split of ``items`` with ``backbone`` (resuming a partial folder made
    from the same inputs, backbone and device) or adopts the user's own features, then yields
    the :class:`Staged` folder for the family's own files and its manifest; the folder replaces
    ``base/features`` when the block ends without an error."""
    backbone_files = OWN if own_features else backbone_record(backbone)
    images = (p for its in items.values() for it in its for p in it.images)
    inputs = chain.record_inputs(base.parent, [*annotations, *images])
    key = resume_key(inputs, backbone_files, None if own_features else device)
    with chain.staged(base / "features", what, print,
                      resume_key=None if own_features else key) as out:
        for name, its in items.items():
            if own_features:
                adopt(base / "features" / name, out / name, its)
            else:
                extract(backbone, its, out / name, batch_size=batch_size, device=device,
                        progress=progress)
        settings = ({"own_features": True} if own_features
                    else {"device": key["device"], "batch_size": batch_size})
        yield Staged(out, backbone_files, inputs, settings)


def write_manifest(folder: Path, splits: Iterable[str], backbone: dict, inputs: dict,
                   settings: dict, extra: Sequence[str] = (), whole: Sequence[str] = (),
                   layouts: dict | None = None) -> Path:
    """Record every split's files (``ids``, the features and ``extra`` ones such as ``targets``:
    shape, dtype, sha256), the ``backbone`` (:func:`backbone_record`), the ``inputs``
    (:func:`i2m2bench.data.common.chain.record_inputs`) and the extraction ``settings`` in
    ``folder/manifest.json``, sealed; ``whole``: other files of the folder (``answers.json``),
    recorded by sha256 and checked whole at every load; ``layouts``: which of the accepted
    layouts of the official files was found (recorded as it is)."""
    entry = {"version": VERSION, "backbone": backbone, "inputs": inputs, "extraction": settings,
             "whole": {name: file_sha256(folder / name) for name in whole}, "splits": {}}
    if layouts:
        entry["layouts"] = layouts
    for split in splits:
        (folder / split / "progress.json").unlink(missing_ok=True)
        files = {name: manifest.short_entry(folder / split / f"{name}.npy")
                 for name in ("ids", *FEATURES, *extra)}
        entry["splits"][split] = {"rows": files["ids"]["shape"][0], "files": files}
    return manifest.write_json(folder / MANIFEST, chain.seal(entry))


def check_features(folder: Path, root: Path, verify: str, hint: str) -> tuple[dict, int]:
    """(the parsed manifest of the features under ``folder``, the number of recorded inputs no
    longer on disk): its version, its seal and its inputs under ``root`` (the data root)
    checked at ``verify`` (:func:`i2m2bench.data.common.chain.check_manifest`); a DataError
    naming the file and saying ``hint`` otherwise."""
    mpath = folder / MANIFEST
    problem = path_problem(mpath)
    if problem is not None:
        raise DataError(f"{mpath}: {problem}; the features are not prepared yet: {hint}")
    try:
        meta = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{mpath}: cannot read it as JSON ({manifest.one_line(exc)}); "
                        f"{hint}") from exc
    if not isinstance(meta, dict) or meta.get("version") != VERSION:
        version = meta.get("version") if isinstance(meta, dict) else None
        raise DataError(f"{mpath}: features manifest version {version!r}; this i2m2bench reads "
                        f"version {VERSION} (with the inputs it was made from): {hint}")
    gone = chain.check_manifest(meta, mpath, root, verify, hint)
    for name, digest in meta.get("whole", {}).items():
        path = folder / name
        problem = path_problem(path)
        if problem is None and file_sha256(path) != digest:
            problem = "its sha256 differs from the manifest's"
        if problem is not None:
            raise DataError(f"{path}: {problem} (listed in {mpath}); {hint}")
    return meta, gone


def open_features(folder: Path, split: str, ids: np.ndarray | None, verify: str = "quick",
                  extra: Sequence[str] = ()) -> dict[str, Path]:
    """The feature files of ``split`` under ``folder``, checked against the manifest (shapes,
    dtypes; ``verify='full'``: every file's sha256) and, when ``ids`` is given, against them
    (the ids the annotations list, in the same order). DataError naming the file and field
    otherwise."""
    mpath = folder / MANIFEST
    problem = path_problem(mpath)
    if problem is not None:
        raise DataError(f"{mpath}: {problem}; prepare the features first (`python -m "
                        "i2m2bench prepare ... --backbone DIR`) or write them in the documented "
                        "layout with a manifest")
    try:
        meta = json.loads(mpath.read_text())
        files = meta["splits"][split]["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{mpath}: no entry splits.{split}.files ({exc}); prepare the "
                        "features again") from exc
    out = {}
    for name in ("ids", *FEATURES, *extra):
        path = folder / split / f"{name}.npy"
        want = files.get(name)
        if want is None:
            raise DataError(f"{mpath}: splits.{split}.files has no {name!r}")
        problem = manifest.npy_problem(path, want, verify, mpath)
        if problem is not None:
            raise DataError(f"{path}: {problem} (listed in {mpath}); the file changed after it "
                            "was prepared: prepare the features again")
        out[name] = path
    stored = np.load(out["ids"], allow_pickle=False)
    if ids is None:
        return out
    if len(stored) != len(ids) or not np.array_equal(stored, ids):
        where = next((i for i in range(min(len(stored), len(ids))) if stored[i] != ids[i]),
                     min(len(stored), len(ids)))
        raise DataError(f"{out['ids']}: the features list {len(stored)} ids, the annotations "
                        f"{len(ids)}; they first differ at row {where} (feature id "
                        f"{stored[where] if where < len(stored) else 'none'}, annotation id "
                        f"{ids[where] if where < len(ids) else 'none'}): the features were "
                        "prepared from other annotations")
    return out


__all__ = ["VL_OPTIONS", "FEATURES", "Item", "MANIFEST", "OWN", "Staged", "VERSION", "adopt",
           "backbone_record", "staged_features",
           "check_batch_size", "check_features", "check_images", "extract", "load_backbone",
           "open_features", "read_progress", "require_backbone", "resume_key", "write_manifest"]
