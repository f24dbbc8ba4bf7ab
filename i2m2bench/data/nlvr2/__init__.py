"""``nlvr2``: is a sentence true of a pair of images (NLVR2, Suhr et al., ACL 2019), on features of a
frozen vision-language backbone (the I2M2 paper's NLVR2 experiments).

Binary (``False`` / ``True``), scored by accuracy (primary) and **consistency** -- the share of
sentences whose every image pair is answered right (NLVR2's second metric; the splits carry the
sentence of each item as its sample group). Modalities as the official code's heads read them
(docs/fidelity.md): ``image``, the two images' image-only features side by side (the image-pair
expert); ``text``, the sentence's text-only feature; ``joint``, the cross-modal features of
(left image, sentence) and (right image, sentence) side by side -- a *derived* input, absent with
the images or the sentence.

Sources of data (``source``):

* ``real`` -- NLVR2's JSON Lines and images, features extracted once
  (:mod:`i2m2bench.data.nlvr2.real`; ``python -m i2m2bench prepare nlvr2 --backbone DIR``);
  splits ``train``, ``val`` (= ``dev``, which selects the checkpoint) and ``test`` (= ``test1``).
* ``embedded`` -- pairs of rendered scenes with templated sentences
  (:mod:`i2m2bench.data.nlvr2.embedded`), features from the shipped frozen scene backbone; shift sets
  ``held_out`` (template and word combinations never seen in training) and ``one_image`` (the
  test items with the right image blank: one image absent). Labelled EMBEDDED everywhere.
* ``auto`` (default) -- ``real`` when a data root is given (it must then hold ``nlvr2/``), else
  ``embedded``.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from i2m2bench.data.base import DATASETS, check_count, reads_real
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec

LABELS = ("False", "True")


def task_spec(source: str, dims: tuple[int, int, int], description: str = "") -> TaskSpec:
    """``dims`` = (image pair, text, joint) feature sizes."""
    d_image, d_text, d_joint = dims
    return TaskSpec(
        name="nlvr2", version="1", problem="multiclass", num_classes=2, labels=LABELS,
        metric="accuracy", metrics=("consistency",), source=source, description=description,
        modalities=(ModalitySpec("image", (d_image,), "vector", "identity"),
                    ModalitySpec("text", (d_text,), "vector", "identity"),
                    ModalitySpec("joint", (d_joint,), "vector", "identity",
                                 derived_from=("image", "text"))))


def _features(items, seed: int, model, blank_right: bool = False):
    """(image pair (N, 2d), text (N, d), joint (N, 2d')) of the items with the scene backbone."""
    from i2m2bench.data.common import scene_backbone as sb
    from i2m2bench.data.common import scene_world as sw

    tokens = np.stack([sw.tokens(s.text) for s in items.sentences])
    left = sw.render(items.left, 32, seed=seed * 2)
    right = sw.render(items.right, 32, seed=seed * 2 + 1)
    if blank_right:  # the same scenes with no objects: an empty canvas
        r = items.right
        right = sw.render(sw.Scenes(r.shape, r.colour, r.size, r.cell, np.zeros_like(r.count)),
                          32, seed=seed * 2 + 1)
    li, text, lj = sb.extract(left, tokens, model=model)
    ri, _, rj = sb.extract(right, tokens, model=model)
    return np.concatenate([li, ri], 1), text, np.concatenate([lj, rj], 1)


def build_embedded(train: int = 6000, val: int = 500, test: int = 1500, held_out: int = 750,
                   data_seed: int = 0) -> Task:
    """The EMBEDDED pair world: ``train`` / ``val`` / ``test`` / ``held_out`` sentences, each
    with 4 image pairs (half true)."""
    from i2m2bench.data.nlvr2 import embedded as nw
    from i2m2bench.data.common import scene_backbone as sb

    for name, value in (("train", train), ("val", val), ("test", test), ("held_out", held_out)):
        check_count("nlvr2", name, value)
    model = sb.load()
    digest = hashlib.sha256()
    made = {}
    plan = {"train": (train, False), "val": (val, False), "test": (test, False),
            "held_out": (held_out, True)}
    for k, (name, (n, held)) in enumerate(plan.items()):
        items = nw.draw_items(n, data_seed * 10 + k, held_out=held)
        made[name] = (items, _features(items, data_seed * 10 + k, model))
    items, _ = made["test"]
    made["one_image"] = (items, _features(items, data_seed * 10 + 2, model, blank_right=True))
    splits = {}
    for name, (items, (image, text, joint)) in made.items():
        for a in (image, text, joint, items.label, items.group):
            digest.update(np.ascontiguousarray(a).tobytes())
        splits[name] = Split({"image": torch.from_numpy(image), "text": torch.from_numpy(text),
                              "joint": torch.from_numpy(joint)},
                             torch.from_numpy(items.label.astype(np.int64)), name,
                             groups=torch.from_numpy(items.group.astype(np.int64)))
    dims = tuple(int(splits["train"].inputs[m].shape[1]) for m in ("image", "text", "joint"))
    spec = task_spec("embedded", dims, "EMBEDDED pairs of rendered scenes (synthetic, not NLVR2)")
    return Task(spec, {k: splits[k] for k in ("train", "val", "test")},
                {k: splits[k] for k in ("held_out", "one_image")},
                options=dict(source="embedded", train=train, val=val, test=test,
                             held_out=held_out, data_seed=data_seed,
                             checksum=digest.hexdigest()[:16]))


@DATASETS.register("nlvr2")
def build_nlvr2(source: str = "auto", data_root: str | None = None, verify: str = "size",
                train: int = 6000, val: int = 500, test: int = 1500, held_out: int = 750,
                data_seed: int = 0) -> Task:
    """NLVR2 from the prepared features under ``<data_root>/nlvr2`` or, with no data root under
    ``auto``, the EMBEDDED pair world (``train``... sentences of 4 pairs each)."""
    if verify not in ("size", "full"):
        raise ValueError(f"nlvr2: verify must be 'size' or 'full'; got {verify!r}")
    if reads_real("nlvr2", source, data_root, "EMBEDDED pairs of rendered scenes, not NLVR2",
                  "NLVR2"):
        from i2m2bench.data.nlvr2 import real as nlvr2_real

        got = nlvr2_real.load(nlvr2_real.folder(data_root), verify)
        return Task(task_spec("real", got["dims"], f"NLVR2 ({got['folder']})"), got["splits"], {},
                    options={"source": "real", "checksum": got["checksum"]})
    return build_embedded(train, val, test, held_out, data_seed)


__all__ = ["LABELS", "build_embedded", "build_nlvr2", "task_spec"]
