"""Scorers of the official code where they differ from the suite's own metrics (issue 29).

Registered in :data:`i2m2bench.metrics.METRICS` when this module is imported (the harness's
:mod:`i2m2bench.harness.official` and the boards' :mod:`i2m2bench.reporting.significance` import
it), and used by the official-behaviour switches that score as the official code scores
(``suite.official``: ``vqa_vs_scorer``, ``operating_point_on_scored_split``):

* ``vqa_vs_score`` ↑ — soft-score: VQA-VS's own scorer. The suite's ``vqa_score`` reads the
  targets of I2M2's VQA writer, 0 / 0.3 / 0.6 / 0.9 / 1 for 0 / 1 / 2 / 3 / 4+ annotators
  (divyam3897/I2M2 @ 7742765, ``vqa_nlvr/fiber/utils/write_vqa.py`` L13-23); VQA-VS's scorer
  gives min(n / 3, 1) (PhoebusSi/VQA-VS @ b1249bec, ``comput_score.py`` L30-36). Both are
  functions of the annotator count n, so the VQA-VS score is read off the same targets: n from
  the target score (0.3 n below 1; 1 means n >= 3 for VQA-VS either way), then min(n / 3, 1).
* ``op_sensitivity_scored``, ``op_specificity_scored``, ``op_balanced_accuracy_scored`` ↑ —
  multilabel: as ``op_sensitivity`` ... but with the operating point chosen on the split scored
  itself, as the official FastMRI test does (``test_epoch_end`` calls ``evaluate_classifier``
  with no operating point, which then picks it on the test predictions: I2M2
  ``fastMRI/module.py`` L347, ``fastMRI/metrics/classification_metrics.py`` L16-42). The
  threshold rule is the suite's exact one (:func:`i2m2bench.metrics.operating_points`).
"""
from __future__ import annotations

import numpy as np

from i2m2bench import metrics as M

_ORIGIN = "i2m2bench.metrics_official"

#: VQA-VS's scorer divides the annotator count by this (``min(n / 3, 1)``).
VQA_VS_FULL = 3
#: I2M2's soft score per annotator below four (``0.3 * n``).
I2M2_STEP = 0.3


def vqa_vs_scores(target_scores: np.ndarray) -> np.ndarray:
    """VQA-VS's min(n / 3, 1) for I2M2-table target scores (0, 0.3, 0.6, 0.9, 1): n recovered as
    round(score / 0.3) below 1 (float16 targets hold 0.3 as 0.2998...), any score of 1 is full."""
    s = np.asarray(target_scores, dtype=np.float64)
    n = np.rint(s / I2M2_STEP)
    return np.where(s >= 1.0, 1.0, np.minimum(n / VQA_VS_FULL, 1.0))


def _vqa_vs_per_sample(pred, target, problem) -> np.ndarray:
    best = np.asarray(pred).argmax(1)
    return vqa_vs_scores(np.asarray(target)[np.arange(len(best)), best])


def _vqa_vs_score(pred, target, problem, groups=None) -> float:
    return float(np.mean(_vqa_vs_per_sample(pred, target, problem)))


def _scored_per_label(base: str):
    per_label = M.METRICS.get(base).per_label

    def fn(pred, target, problem) -> np.ndarray:
        return per_label(pred, target, problem, reference=(pred, target))
    return fn


def _scored_macro(per_label):
    return lambda pred, target, problem, groups=None: M.macro_mean(per_label(pred, target, problem))


_OPERATING = ("op_sensitivity", "op_specificity", "op_balanced_accuracy")
#: official-scorer metric -> the suite's metric it replaces under its switch
REPLACES = {"vqa_vs_score": "vqa_score", **{f"{base}_scored": base for base in _OPERATING}}


def _register() -> None:
    if "vqa_vs_score" in M.METRICS:  # imported again (a reload): already there
        return
    M.METRICS.add("vqa_vs_score", M.Metric(
        "vqa_vs_score", _vqa_vs_score, True, ("soft-score",),
        per_sample=_vqa_vs_per_sample, per_sample_problems=("soft-score",),
        description="VQA-VS's own scorer: min(n/3, 1) of the arg-max answer's annotator count, "
                    "mean (official, PhoebusSi/VQA-VS comput_score.py L30-36)"),
        origin=f"{_ORIGIN}._vqa_vs_score")
    for base in _OPERATING:
        kind = base[len("op_"):]
        per_label = _scored_per_label(base)
        M.METRICS.add(f"{base}_scored", M.Metric(
            f"{base}_scored", _scored_macro(per_label), True, ("multilabel",),
            per_label=per_label, per_label_problems=("multilabel",), macro=True,
            description=f"{kind.replace('_', ' ')} per label at the operating point chosen on the "
                        "split scored itself (official FastMRI test), macro mean"),
            origin=f"{_ORIGIN}._scored_per_label")


_register()

__all__ = ["REPLACES", "vqa_vs_scores"]
