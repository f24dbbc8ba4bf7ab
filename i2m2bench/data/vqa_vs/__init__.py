"""``vqa_vs``: visual question answering under nine kinds of shortcut shift (VQA-VS, Si et al.,
EMNLP Findings 2022), on features of a frozen vision-language backbone (the I2M2 paper's VQA-VS
experiments).

A **soft-score** task: each question's target is a score in [0, 1] per answer of the vocabulary
(VQA's 0 / 0.3 / 0.6 / 0.9 / 1 for 0 / 1 / 2 / 3 / 4+ of the 10 annotators giving it); the metric
is the VQA score, the target score of the arg-max answer. Modalities (as the official code's
heads read them): ``image`` and ``text``, the backbone's image-only and text-only features, and
``joint``, its cross-modal feature -- a *derived* input (``ModalitySpec.derived_from``): absent
with either modality, never removed alone, no intra expert of its own. Splits: ``train``, ``val``
(checkpoint selection: VQA-VS's rule, never the OOD sets), ``test`` (IID); shift sets: the nine
OOD test sets :data:`OOD_SETS`, each a subset of the IID test set; the board adds their mean.

Sources of data (``source``):

* ``real`` -- VQA-VS's JSON files and features extracted once from them
  (:mod:`i2m2bench.data.vqa_vs.real`; ``python -m i2m2bench prepare vqa-vs --backbone DIR``).
* ``embedded`` -- the scene world with planted shortcuts (:mod:`i2m2bench.data.vqa_vs.embedded`),
  its features from the shipped frozen scene backbone (:mod:`i2m2bench.data.common.scene_backbone`).
  Labelled EMBEDDED everywhere: synthetic scenes, not COCO.
* ``auto`` (default) -- ``real`` when a data root is given (it must then hold ``vqa_vs/``), else
  ``embedded``.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from i2m2bench.data.base import DATASETS, check_count, reads_real
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec

OOD_SETS = ("QT", "KW", "KWP", "QT+KW", "KO", "KOP", "QT+KO", "KW+KO", "QT+KW+KO")
REFERENCE_SEED = 999  # the unbiased reference pool that fixes each concept's shortcut answer


def task_spec(source: str, dims: tuple[int, int, int], answers: tuple[str, ...],
              description: str = "", name: str = "vqa_vs") -> TaskSpec:
    """The TaskSpec: ``dims`` = (image, text, joint) feature sizes, ``answers`` the vocabulary."""
    d_image, d_text, d_joint = dims
    return TaskSpec(
        name=name, version="1", problem="soft-score", num_classes=len(answers), labels=answers,
        metric="vqa_score", source=source, description=description,
        modalities=(ModalitySpec("image", (d_image,), "vector", "identity"),
                    ModalitySpec("text", (d_text,), "vector", "identity"),
                    ModalitySpec("joint", (d_joint,), "vector", "identity",
                                 derived_from=("image", "text"))))


def build_embedded(train: int = 24000, val: int = 3000, test: int = 10000, pool: int = 150000,
                   data_seed: int = 0) -> Task:
    """The EMBEDDED scene world: ``pool`` unbiased questions, splits drawn from it with planted
    shortcuts, features from the frozen scene backbone, the nine OOD sets of the IID test set."""
    from i2m2bench.data.common import scene_backbone as sb
    from i2m2bench.data.common import scene_world as sw
    from i2m2bench.data.vqa_vs import embedded as vw

    for name, value in (("train", train), ("val", val), ("test", test), ("pool", pool)):
        check_count("vqa_vs", name, value, low=10)
    shortcuts = vw.shortcut_answers(vw.draw_pool(40000, REFERENCE_SEED))
    world = vw.draw_pool(pool, data_seed)
    index = vw.draw_splits(world, vw.planted_weights(world, shortcuts),
                           {"train": train, "val": val, "test": test}, data_seed)
    model = sb.load()
    splits, digest = {}, hashlib.sha256()
    for k, (name, rows) in enumerate(index.items()):
        images = sw.render(world.scenes, 32, seed=data_seed * 10 + k, rows=rows)
        tokens = np.stack([sw.tokens(world.questions[i].text) for i in rows])
        image, text, joint = sb.extract(images, tokens, model=model)
        target = vw.soft_targets(world, rows, data_seed * 10 + k)
        for a in (image, text, joint, target):
            digest.update(a.tobytes())
        splits[name] = Split({"image": torch.from_numpy(image), "text": torch.from_numpy(text),
                              "joint": torch.from_numpy(joint)}, torch.from_numpy(target), name)
    test_split = splits["test"]
    shifts = {}
    for kind, pos in vw.ood_sets(world, index["test"]).items():
        if len(pos) == 0:
            raise ValueError(f"vqa_vs: the OOD set {kind} of the embedded world is empty: its "
                             f"{test} IID test questions form no imbalanced {kind} group of "
                             f"{vw.MIN_GROUP} or more; give a larger 'test' (and 'pool')")
        sel = torch.from_numpy(pos)
        shifts[kind] = Split({m: x[sel] for m, x in test_split.inputs.items()},
                             test_split.target[sel], kind)
    spec = task_spec("embedded", (sb.IMAGE_DIM, sb.TEXT_DIM, sb.JOINT_DIM), sw.ANSWERS,
                     "EMBEDDED scene world with planted shortcuts (synthetic, not COCO)")
    return Task(spec, splits, shifts, options=dict(
        source="embedded", train=train, val=val, test=test, pool=pool, data_seed=data_seed,
        checksum=digest.hexdigest()[:16]))


@DATASETS.register("vqa_vs")
def build_vqa_vs(source: str = "auto", data_root: str | None = None, verify: str = "size",
                 train: int = 24000, val: int = 3000, test: int = 10000, pool: int = 150000,
                 data_seed: int = 0) -> Task:
    """VQA-VS from the prepared features under ``<data_root>/vqa_vs`` (``verify``: ``'size'``
    or ``'full'`` checksums) or, with no data root under ``auto``, the EMBEDDED scene world."""
    if verify not in ("size", "full"):
        raise ValueError(f"vqa_vs: verify must be 'size' or 'full'; got {verify!r}")
    if reads_real("vqa_vs", source, data_root,
                  "EMBEDDED scene world with planted shortcuts, not VQA-VS", "VQA-VS"):
        from i2m2bench.data.vqa_vs import real as vqa_vs_real

        got = vqa_vs_real.load(vqa_vs_real.folder(data_root), verify)
        return Task(task_spec("real", got["dims"], got["answers"], f"VQA-VS ({got['folder']})"),
                    got["splits"], got["shifts"],
                    options={"source": "real", "checksum": got["checksum"]})
    return build_embedded(train, val, test, pool, data_seed)


__all__ = ["OOD_SETS", "build_embedded", "build_vqa_vs", "task_spec"]
