"""The metric registry on tiny inputs whose answers are known (by hand, or by construction)."""
import json
import math

import numpy as np
import pytest
import torch

from i2m2bench.metrics import (METRICS, MetricError, check_spec, compute, compute_all,
                               declared_metrics, direction, is_defined, per_label_values)
from i2m2bench.reporting import render_markdown, summary_table, to_json
from i2m2bench.reporting.tables import board_table
from i2m2bench.testing import tiny_spec
from i2m2bench.types import ModalitySpec, TaskSpec

Y = np.array([0, 0, 1, 1, 0, 1])  # one binary label, 3 negatives, 3 positives


def _ml(scores, y=Y):
    """(pred, target) of a one-label multilabel task: scores as logits (N, 1)."""
    return np.asarray(scores, dtype=np.float32)[:, None], np.asarray(y)[:, None]


def test_the_registry_holds_every_metric_of_the_issue():
    import i2m2bench.metrics_official  # noqa: F401  (registers the official scorers)

    assert set(METRICS.names()) == {"accuracy", "balanced_accuracy", "auroc", "auprc", "vqa_score",
                                    "consistency", "op_sensitivity", "op_specificity",
                                    "op_balanced_accuracy",
                                    # the official code's scorers (issue 29, item 6)
                                    "vqa_vs_score", "op_sensitivity_scored",
                                    "op_specificity_scored", "op_balanced_accuracy_scored"}
    assert {m for m in METRICS.names() if METRICS.get(m).needs_reference} == {
        "op_sensitivity", "op_specificity", "op_balanced_accuracy"}
    assert all(direction(m) for m in METRICS.names())  # all fractions, higher is better
    assert METRICS.get("consistency").needs_groups
    assert METRICS.get("vqa_score").problems == ("soft-score",)
    with pytest.raises(KeyError, match="unknown metric 'aucroc'.*Did you mean 'auroc'"):
        METRICS.get("aucroc")


# ------------------------------------------------------------------------------ ranking metrics
def test_auroc_of_a_perfect_a_reversed_and_a_constant_ranking():
    perfect = np.where(Y == 1, 2.0, -2.0) + np.arange(6) * 0.01
    assert compute("auroc", *_ml(perfect), "multilabel") == 1.0
    assert compute("auroc", *_ml(-perfect), "multilabel") == 0.0
    assert compute("auroc", *_ml(np.zeros(6)), "multilabel") == 0.5
    assert compute("auprc", *_ml(perfect), "multilabel") == 1.0


def test_auroc_and_auprc_by_hand():
    # scores 0.1 0.4 0.35 0.8 (y 0 0 1 1): of the 4 positive-negative pairs 3 are ordered -> 0.75;
    # AP: ranks 0.8 (pos, P=1), 0.4 (neg), 0.35 (pos, P=2/3) -> (1 + 2/3) / 2
    pred, y = _ml([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert compute("auroc", pred, y, "multilabel") == pytest.approx(0.75)
    assert compute("auprc", pred, y, "multilabel") == pytest.approx((1 + 2 / 3) / 2)


def test_macro_mean_and_per_label_values():
    # label 0 ranked perfectly, label 1 reversed, label 2 a single class: undefined
    s = np.where(Y == 1, 1.0, -1.0)
    pred = np.stack([s, -s, s], 1)
    y = np.stack([Y, Y, np.ones(6, int)], 1)
    per = per_label_values("auroc", pred, y, "multilabel")
    assert per[0] == 1.0 and per[1] == 0.0 and math.isnan(per[2])
    assert compute("auroc", pred, y, "multilabel") == 0.5  # mean over the defined labels
    labels = ("a", "b", "c")
    assert compute("auroc/b", pred, y, "multilabel", labels=labels) == 0.0
    assert math.isnan(compute("auroc/c", pred, y, "multilabel", labels=labels))
    assert compute("auroc/0", pred, y, "multilabel") == 1.0  # no label names: indices
    # average precision is defined for an all-positive label (1) and not for an all-negative one
    assert per_label_values("auprc", pred, y, "multilabel")[2] == 1.0
    y0 = np.stack([Y, Y, np.zeros(6, int)], 1)
    assert math.isnan(per_label_values("auprc", pred, y0, "multilabel")[2])


def test_undefined_everywhere_is_nan_never_an_error_or_a_made_up_half():
    pred, y = _ml(np.linspace(-1, 1, 6), np.ones(6, int))
    assert math.isnan(compute("auroc", pred, y, "multilabel"))
    assert not is_defined("auroc", y, "multilabel")
    assert is_defined("auroc", Y[:, None], "multilabel") and is_defined("accuracy", Y, "multiclass", width=2)


def test_multiclass_auroc_is_one_vs_rest():
    target = np.array([0, 1, 2, 0, 1, 2])
    logp = np.log(np.eye(3)[target] * 0.9 + 0.1 / 3)  # every sample ranked first in its class
    assert compute("auroc", logp, target, "multiclass") == 1.0
    assert list(per_label_values("auprc", logp, target, "multiclass")) == [1.0, 1.0, 1.0]


# ------------------------------------------------------------------------------ the others
def test_accuracy_multiclass_is_the_old_formula_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    for n, c in ((400, 10), (1000, 4), (7, 3)):
        pred = torch.log_softmax(torch.randn(n, c, generator=g), 1)
        pred[: n // 10] = pred[: n // 10, :1]  # ties: the first maximal index wins in both
        target = torch.randint(0, c, (n,), generator=g)
        old = float((pred.argmax(1) == target).double().mean())
        assert compute("accuracy", pred, target, "multiclass") == old


def test_multilabel_accuracy_and_balanced_accuracy_by_hand():
    # logits > 0 predict 1. label 0: decisions 1 1 0 0 vs y 1 0 0 0 -> 3/4 right;
    # balanced: recall(1) = 1, recall(0) = 2/3 -> 5/6. label 1: all right -> 1, balanced 1.
    pred = np.array([[2.0, -1.0], [0.5, 1.0], [-0.5, -2.0], [-3.0, 3.0]])
    y = np.array([[1, 0], [0, 1], [0, 0], [0, 1]])
    assert compute("accuracy", pred, y, "multilabel") == pytest.approx((3 / 4 + 1) / 2)
    assert compute("balanced_accuracy", pred, y, "multilabel") == pytest.approx((5 / 6 + 1) / 2)
    assert list(per_label_values("accuracy", pred, y, "multilabel")) == [0.75, 1.0]


def test_balanced_accuracy_multiclass_by_hand():
    # class 0: 2 of 4 right, class 1: 1 of 1, class 2: 0 of 1 -> (0.5 + 1 + 0) / 3
    target = np.array([0, 0, 0, 0, 1, 2])
    pred = np.log(np.eye(3)[[0, 0, 1, 2, 1, 0]] + 1e-3)
    assert compute("balanced_accuracy", pred, target, "multiclass") == pytest.approx(0.5)
    assert compute("accuracy", pred, target, "multiclass") == pytest.approx(3 / 6)


def test_vqa_score_by_hand():
    # arg-max answers 1, 0, 2 -> their target scores 0.6, 1.0, 0 -> mean 1.6 / 3
    logp = np.log(np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]))
    target = np.array([[0.3, 0.6, 1.0], [1.0, 0.0, 0.0], [0.9, 0.3, 0.0]])
    assert compute("vqa_score", logp, target, "soft-score") == pytest.approx(1.6 / 3)


def test_consistency_by_hand():
    # groups 7 (3 samples, all right), 3 (2 samples, one wrong), 5 (1 sample, right) -> 2 / 3
    target = np.array([1, 0, 1, 1, 0, 0])
    right = np.array([1, 0, 1, 1, 1, 0])  # arg-max answers
    pred = np.log(np.eye(2)[right] * 0.8 + 0.1)
    groups = np.array([7, 7, 7, 3, 3, 5])
    assert compute("consistency", pred, target, "multiclass", groups) == pytest.approx(2 / 3)
    assert compute("accuracy", pred, target, "multiclass") == pytest.approx(5 / 6)
    with pytest.raises(MetricError, match="needs the split's sample groups"):
        compute("consistency", pred, target, "multiclass")


def test_compute_all_keeps_the_order_and_refuses_what_does_not_apply():
    pred, y = _ml(np.linspace(-1, 1, 6))
    assert list(compute_all(["auroc", "accuracy"], pred, y, "multilabel")) == ["auroc", "accuracy"]
    with pytest.raises(MetricError, match="'vqa_score' does not apply to multilabel"):
        compute("vqa_score", pred, y, "multilabel")
    with pytest.raises(MetricError, match="'vqa_score' has no per-label values"):
        compute("vqa_score/0", pred, y, "soft-score")


# ------------------------------------------------------------------------------ task declarations
def _spec(**kw):
    base = dict(name="t", version="0", modalities=(ModalitySpec("a", (2,), "vector"),),
                problem="multilabel", num_classes=2, labels=("x", "y"), metric="auroc")
    return TaskSpec(**{**base, **kw})


def test_a_task_declares_its_metrics_primary_first():
    spec = _spec(metrics=("auprc", "auroc", "auroc/y"))
    assert declared_metrics(spec) == ("auroc", "auprc", "auroc/y")
    check_spec(spec)
    assert tiny_spec().higher_is_better is None  # derived from the metric
    check_spec(_spec(higher_is_better=True))


@pytest.mark.parametrize("kw,message", [
    ({"metrics": ("vqa_score",)}, "declares metric 'vqa_score'.*does not apply to multilabel"),
    ({"metrics": ("aucroc",)}, "declares metric 'aucroc'.*Did you mean 'auroc'"),
    ({"metrics": ("auroc/z",)}, "no label 'z'; its labels are x, y"),
    ({"higher_is_better": False}, "higher_is_better=False contradicts its primary metric 'auroc'"),
    ({"problem": "regression"}, "problem type 'regression'"),
])
def test_bad_declarations_are_refused(kw, message):
    with pytest.raises(MetricError, match=message):
        check_spec(_spec(**kw))


# ------------------------------------------------------------------------------ on the board
def test_an_undefined_metric_shows_as_undefined_and_never_wins(make_row):
    rows = []
    for seed in (0, 1):
        rows += [make_row("alpha", seed, "test", math.nan, metric="auroc"),
                 make_row("beta", seed, "test", 0.6 + 0.1 * seed, metric="auroc"),
                 make_row("alpha", seed, "shift:x", math.nan, metric="auroc"),
                 make_row("beta", seed, "shift:x", math.nan, metric="auroc")]
    md = render_markdown(rows)
    line = {m: next(ln for ln in md.splitlines() if f"(`{m}`)" in ln) for m in ("alpha", "beta")}
    # beta: 0.6, 0.7 -> 65.00 ± t(0.975, 1) * 0.0707 / sqrt(2) = 63.53; no predictions, no marks
    assert "| undefined " in line["alpha"] and "| 65.00 ± 63.53 " in line["beta"]
    assert "**undefined**" not in md and "nan" not in md.replace("provenance", "")
    assert '"undefined": the metric has no value on that split' in md
    assert "undefined" in summary_table(rows)
    exported = json.loads(to_json(board_table(rows)))
    assert exported[0]["test/auroc/mean"] is None and exported[1]["test/auroc/mean"] == pytest.approx(0.65)


def test_every_declared_metric_gets_a_column_in_declared_order(make_row):
    rows = []
    for seed in (0, 1):
        for metric, value, hib in (("auroc", 0.8, True), ("auprc", 0.7, True), ("accuracy", 0.6, True)):
            for m, delta in (("alpha", 0.0), ("beta", 0.05)):
                r = make_row(m, seed, "test", value + delta, metric=metric)
                rows.append({**r, "higher_is_better": hib, "metrics": ["auroc", "auprc", "accuracy"]})
    md = render_markdown(rows)
    head = next(ln for ln in md.splitlines() if ln.startswith("| Method"))
    assert head.index("test auroc (%) ↑") < head.index("test auprc (%) ↑") < head.index("test accuracy (%) ↑")
    table = [ln for ln in md.splitlines() if ln.startswith("| BETA") or ln.startswith("| ALPHA")]
    cells = [c.strip() for c in table[1].split("|")[5:8]]
    assert cells == ["85.00 ± 0.00", "75.00 ± 0.00", "65.00 ± 0.00"]  # auroc, auprc, accuracy
