"""NLVR2's real files: reading and checking the JSON Lines and images, feature extraction
(``prepare nlvr2``) and loading the prepared features.

**Files** under ``<data root>/nlvr2/`` (lil-lab/nlvr, ``nlvr2/``)::

    data/train.json, data/dev.json, data/test1.json     JSON Lines, one example per line
    images/train/<directory>/<id>-img0.png, -img1.png  training pairs (``directory``: 0..99)
    images/dev/<id>-img0.png ..., images/test1/...      the other splits

or any of the image layouts the official tools leave (:func:`image_layouts`).

Each line: ``sentence``, ``left_url``, ``right_url``, ``label`` (``"True"`` / ``"False"``, in
any case, or a JSON boolean: :func:`label_of`), ``identifier`` (``split-set-pair-sentence``), ``writer``, ``synset``, ``query``
(and ``directory`` for train); ``<id>`` is the identifier without its sentence number. Images are
not all really PNG (NLVR2's README): their format is detected, not assumed.

**Consistency groups**: the identifier with the pair number left out (``split-set-*-sentence``),
as NLVR2's ``eval/metrics.py`` groups them.

**Prepared** under ``<data root>/nlvr2/features/`` by ``python -m i2m2bench prepare nlvr2
--backbone DIR`` (:func:`prepare`): :mod:`i2m2bench.data.common.vl_features`' layout for ``train``,
``val`` (dev) and ``test`` (test1) -- image features of both images side by side, the sentence's
text feature, the joint features of both (image, sentence) side by side -- plus ``labels.npy``
and ``groups.npy`` per split, all in the manifest.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from i2m2bench.data.common import chain, hf_json
from i2m2bench.data.base import DataError, dataset_folder, path_problem
from i2m2bench.data.nlvr2.processing import task_spec
from i2m2bench.types import Task

SPLITS = {"train": "train", "val": "dev", "test": "test1"}
FEATURES = "features"
PREPARE = "run `python -m i2m2bench prepare nlvr2 --backbone DIR --data-root DIR`"
HINT = ("NLVR2's data/{train,dev,test1}.json and images/ under nlvr2/ (docs/datasets/nlvr2.md); then "
        "`python -m i2m2bench prepare nlvr2 --backbone DIR --data-root DIR`")


def folder(data_root: str | None = None) -> Path:
    """``<data root>/nlvr2``; a DataError saying what belongs there when it is missing."""
    return dataset_folder(data_root, "nlvr2", "nlvr2", HINT, "embedded pair world")


def _identifier_ok(value) -> bool:
    return isinstance(value, str) and len(value.split("-")) == 4


def _label_ok(value) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false"))


def label_of(value) -> bool:
    """An example's label as a bool: the strings ``"True"`` / ``"False"`` in any case (NLVR2's
    files write ``"True"``, its README says "true or false" and its scorer compares lower case:
    lil-lab/nlvr @ 18924841, ``nlvr2/README.md`` L18, ``nlvr2/eval/metrics.py`` L44) or a JSON
    boolean."""
    return value if isinstance(value, bool) else value.lower() == "true"


def read_split(base: Path, name: str) -> tuple[list[dict], Path]:
    """The examples of ``data/<name>.json``, checked: a sentence, a label (:func:`label_of`) and
    an identifier of four parts on every line (DataError naming the file and line)."""
    path = base / "data" / f"{name}.json"
    rows = hf_json.read(path, "NLVR2 examples", lines=True)
    fields = {"sentence": str, "identifier": _identifier_ok, "label": _label_ok}
    if name == "train":
        fields["directory"] = lambda v: isinstance(v, (int, str)) and str(v).isdigit()
    hf_json.require(rows, path, fields, "NLVR2 examples; expected a sentence, a label true or "
                    "false (any case, or a JSON boolean), an identifier split-set-pair-sentence"
                    + (" and a directory number" if name == "train" else ""), first_line=1)
    return rows, path


def image_layouts(base: Path, split: str) -> list[tuple[str, Callable[[dict], Path]]]:
    """The folders the images of ``split`` (``train``, ``dev``, ``test1``) are looked for in,
    first match wins: (a description, the folder of an example). ``base`` is
    ``<data root>/nlvr2``; ``R`` below is the data root.

    * ``nlvr2/images/<split>/`` (train: ``nlvr2/images/train/<directory>/``, or without the
      numbered folders);
    * the layout the official I2M2 code writes from: ``R/images/train/<directory>/``,
      ``R/dev/``, ``R/test1/`` (divyam3897/I2M2 @ 7742765,
      ``vqa_nlvr/fiber/utils/write_nlvr2.py`` L17-21), and ``R/images/<split>/``;
    * ``nlvr2/<split>/``;
    * one flat folder, as NLVR2's ``util/download_images.py`` saves them (its second argument;
      lil-lab/nlvr @ 18924841, ``nlvr2/util/download_images.py`` L13, L42):
      ``nlvr2/images/`` or ``R/images/``.
    """
    root = base.parent
    numbered = split == "train"

    def sub(folder: Path, label: str, by_directory: bool, note: str = ""):
        if by_directory:
            return (f"{label}<directory>/{note}", lambda r: folder / str(r["directory"]))
        return (f"{label}{note}", lambda r: folder)

    out = []
    for folder, label, note in ((base / "images" / split, f"nlvr2/images/{split}/", ""),
                                (root / "images" / split, f"images/{split}/",
                                 " under the data root")):
        if numbered:
            out.append(sub(folder, label, True, note))
        out.append(sub(folder, label, False, note))
    if not numbered:
        out.append(sub(root / split, f"{split}/", False, " under the data root"))
    out.append(sub(base / split, f"nlvr2/{split}/", False))
    out.append(sub(base / "images", "nlvr2/images/", False, " (one flat folder)"))
    out.append(sub(root / "images", "images/", False, " under the data root (one flat folder)"))
    return out


def _stem(row: dict) -> str:
    return row["identifier"].rsplit("-", 1)[0]


def find_layout(base: Path, split: str, rows: list[dict]) -> tuple[str, Callable[[dict], Path]]:
    """The first of :func:`image_layouts` holding the left image of the first example of
    ``split``; a DataError listing every folder looked in when none does."""
    if not rows:
        return image_layouts(base, split)[0]
    name = f"{_stem(rows[0])}-img0.png"
    layouts = image_layouts(base, split)
    for layout in layouts:
        if path_problem(layout[1](rows[0]) / name) is None:
            return layout
    looked = "; ".join(f"{label} ({where(rows[0]) / name})" for label, where in layouts)
    raise DataError(f"NLVR2 {split}: image {name} (example {rows[0]['identifier']}) is in none "
                    f"of the layouts looked for: {looked}")


def image_paths(layout: tuple[str, Callable[[dict], Path]], row: dict) -> tuple[Path, Path]:
    """The left and right images of an example in ``layout`` (they must exist)."""
    label, where = layout
    stem = _stem(row)
    paths = tuple(where(row) / f"{stem}-img{k}.png" for k in (0, 1))
    for p in paths:
        problem = path_problem(p)
        if problem is not None:
            raise DataError(f"{p}: {problem} (image {p.name[-8:-4]} of example "
                            f"{row['identifier']}; its split's images were found in the layout "
                            f"{label})")
    return paths


def groups_of(rows: list[dict]) -> np.ndarray:
    """int64 consistency group per example: its identifier without the pair number."""
    keys, out = {}, []
    for r in rows:
        split, set_id, _pair, sentence = r["identifier"].split("-")
        out.append(keys.setdefault((split, set_id, sentence), len(keys)))
    return np.asarray(out, dtype=np.int64)


def prepare(base: Path, backbone: str | None, *, batch_size: int = 32, device: str | None = None,
            progress: bool = True, own_features: bool = False) -> Path:
    """Read and check every file and image (each must exist and be an image, whatever its name
    says; nothing is written before all pass), then extract the features of the three splits and
    write the prepared folder (an interrupted extraction resumes from its finished batches). With
    no ``backbone`` the files are checked and a DataError says that extracting needs one."""
    from i2m2bench.data.common import vl_features as vf

    vf.check_batch_size(batch_size)  # before anything is read or written
    splits = {name: read_split(base, stem) for name, stem in SPLITS.items()}
    layouts = {name: find_layout(base, SPLITS[name], rows) for name, (rows, _) in splits.items()}
    for name, (label, _) in layouts.items():
        print(f"nlvr2: {SPLITS[name]} images in {label}")
    items = {name: [vf.Item(i, image_paths(layouts[name], r), r["sentence"])
                    for i, r in enumerate(rows)] for name, (rows, _) in splits.items()}
    vf.check_images(p for its in items.values() for it in its for p in it.images)
    vf.require_backbone(backbone, base, sum(map(len, items.values())), "examples", own_features)
    annotations = [path for _, path in splits.values()]
    with vf.staged_features(base, "the NLVR2 features", items, annotations, backbone,
                            own_features=own_features, batch_size=batch_size, device=device,
                            progress=progress) as staged:
        out = staged.out
        for name in items:
            pair = np.load(out / name / "image.npy")
            side = out / name / "image.side.npy"  # a new file (image.npy may be a link to own features)
            np.save(side, pair.reshape(len(pair), -1))  # both images side by side
            os.replace(side, out / name / "image.npy")
            rows = splits[name][0]
            np.save(out / name / "labels.npy", np.array([label_of(r["label"]) for r in rows],
                                                        dtype=np.int64))
            np.save(out / name / "groups.npy", groups_of(rows))
        staged.write_manifest(list(SPLITS), extra=("labels", "groups"),
                              layouts={SPLITS[n]: label for n, (label, _) in layouts.items()})
    return base / FEATURES


def load(base: Path, verify: str = "quick") -> Task:
    """The task from the prepared features under ``base/features`` alone (:func:`load_counted`)."""
    return load_counted(base, verify)[0]


def load_counted(base: Path, verify: str = "quick") -> tuple[Task, int]:
    """(the task, the recorded inputs no longer on disk) from the prepared features under
    ``base/features`` alone: the JSON Lines files and images are read by :func:`prepare`, never
    here (labels and consistency groups are in the features folder). The manifest's content
    chain checks that none of them changed since (``verify``: ``quick``, sizes and times;
    ``full``, every byte) and the features against the manifest; without prepared features, a
    DataError gives the prepare command."""
    import torch

    from i2m2bench.data.common import vl_features as vf
    from i2m2bench.data.common.disk import DiskSplit

    out = base / FEATURES
    meta, gone = vf.check_features(out, base.parent, verify, PREPARE)
    splits, dims = {}, None
    for name in SPLITS:
        files = vf.open_features(out, name, None, verify, extra=("labels", "groups"))
        labels = np.load(files["labels"], allow_pickle=False)
        splits[name] = DiskSplit.from_npy({m: files[m] for m in vf.FEATURES},
                                          torch.from_numpy(labels), name,
                                          groups=torch.from_numpy(np.load(files["groups"],
                                                                          allow_pickle=False)))
        dims = tuple(int(np.load(files[m], mmap_mode="r").shape[1]) for m in vf.FEATURES)
    task = Task(task_spec("real", dims, f"NLVR2 ({out})"), splits, {},
                options={"source": "real", "checksum": meta["content_sha256"]})
    return task, gone


def verify(base: Path, level: str = "quick") -> str:
    """Check the prepared features under ``base`` against their manifest and the inputs it
    records (``full``: every byte); a one-line report (a DataError naming the file otherwise)."""
    import json

    task, gone = load_counted(base, level)
    inputs = json.loads((base / FEATURES / "manifest.json").read_text())["inputs"]
    return (f"nlvr2: {base / FEATURES} matches its manifest and {chain.inputs_report(inputs, gone)} "
            f"({level}): " + ", ".join(f"{k} {len(s)}" for k, s in task.splits.items()))


__all__ = ["SPLITS", "find_layout", "folder", "groups_of", "image_layouts", "image_paths",
           "label_of", "load", "load_counted", "prepare", "read_split", "verify"]
