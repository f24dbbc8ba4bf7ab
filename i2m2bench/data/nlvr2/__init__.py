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

from i2m2bench.data.base import DATASETS, reads_real
from i2m2bench.data.common.family import FAMILIES, DatasetFamily, verify_level
from i2m2bench.data.common.vl_features import VL_OPTIONS
from i2m2bench.data.nlvr2 import real
from i2m2bench.data.nlvr2.embedded import build_embedded
from i2m2bench.data.nlvr2.processing import LABELS, task_spec
from i2m2bench.types import Task


@DATASETS.register("nlvr2")
def build_nlvr2(source: str = "auto", data_root: str | None = None, verify: str = "quick",
                train: int = 6000, val: int = 500, test: int = 1500, held_out: int = 750,
                data_seed: int = 0) -> Task:
    """NLVR2 from the prepared features under ``<data_root>/nlvr2`` or, with no data root under
    ``auto``, the EMBEDDED pair world (``train``... sentences of 4 pairs each)."""
    verify = verify_level(verify, "nlvr2")
    if reads_real("nlvr2", source, data_root, "EMBEDDED pairs of rendered scenes, not NLVR2",
                  "docs/datasets/nlvr2.md"):
        return real.load(real.folder(data_root), verify)
    return build_embedded(train, val, test, held_out, data_seed)


FAMILY = DatasetFamily(
    name="nlvr2", datasets=("nlvr2",), folder="nlvr2", holding=real.HINT,
    verify_files=real.verify, prepare_files=real.prepare, embedded="embedded pair world",
    options=VL_OPTIONS,
    description="check NLVR2's JSON Lines files and images, then extract the image-pair, text and "
                "joint features with --backbone (without it the files are checked only)")
FAMILIES.add(FAMILY.name, FAMILY, origin=f"{__name__}.FAMILY")

__all__ = ["FAMILY", "LABELS", "build_embedded", "build_nlvr2", "task_spec"]
