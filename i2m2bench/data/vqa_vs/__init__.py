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

from i2m2bench.data.base import DATASETS, reads_real
from i2m2bench.data.common.family import FAMILIES, DatasetFamily, verify_level
from i2m2bench.data.common.vl_features import VL_OPTIONS
from i2m2bench.data.vqa_vs import real
from i2m2bench.data.vqa_vs.embedded import REFERENCE_SEED, build_embedded
from i2m2bench.data.vqa_vs.processing import OOD_SETS, task_spec
from i2m2bench.types import Task


@DATASETS.register("vqa_vs")
def build_vqa_vs(source: str = "auto", data_root: str | None = None, verify: str = "quick",
                 train: int = 24000, val: int = 3000, test: int = 10000, pool: int = 150000,
                 data_seed: int = 0) -> Task:
    """VQA-VS from the prepared features under ``<data_root>/vqa_vs`` (``verify``: ``'quick'``
    (alias ``'size'``) or ``'full'`` checksums) or, with no data root under ``auto``, the
    EMBEDDED scene world."""
    verify = verify_level(verify, "vqa_vs")
    if reads_real("vqa_vs", source, data_root,
                  "EMBEDDED scene world with planted shortcuts, not VQA-VS",
                  "docs/datasets/vqa_vs.md"):
        return real.load(real.folder(data_root), verify)
    return build_embedded(train, val, test, pool, data_seed)


FAMILY = DatasetFamily(
    name="vqa_vs", aliases=("vqa-vs",), datasets=("vqa_vs",), folder="vqa_vs", holding=real.HINT,
    verify_files=real.verify, prepare_files=real.prepare, embedded="embedded scene world",
    folder_aliases=real.FOLDER_ALIASES,
    options=VL_OPTIONS,
    description="check VQA-VS's JSON files and the COCO images, then extract the image, text and "
                "joint features with --backbone (without it the files are checked only)")
FAMILIES.add(FAMILY.name, FAMILY, origin=f"{__name__}.FAMILY")

__all__ = ["FAMILY", "OOD_SETS", "REFERENCE_SEED", "build_embedded", "build_vqa_vs", "task_spec"]
