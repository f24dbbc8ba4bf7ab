"""Operating-point metrics (FastMRI's sensitivity, specificity and balanced accuracy at FNR < 10%):
the threshold comes from the validation predictions, is the exact one the rule names, is applied
unchanged to the split scored, and every such score is recomputed from saved predictions."""
import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_curve

from i2m2bench import metrics as M
from i2m2bench.predictions import Predictions
from i2m2bench.reporting.significance import seed_evidence
from i2m2bench.reporting.stats import resampled_values
from i2m2bench.reporting.verify import recompute


def _data(n, seed, labels=3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < rng.uniform(0.1, 0.8, labels)).astype(np.int64)
    p = (np.round(rng.normal(size=(n, labels)) * 2, 1) + 1.5 * y).astype(np.float32)
    return p, y


@pytest.mark.parametrize("seed", range(40))
def test_the_threshold_is_the_highest_whose_false_negative_rate_is_below_ten_percent(seed):
    p, y = _data(int(np.random.default_rng(seed).integers(8, 80)), seed)
    t = M.operating_points(p, y)
    for j in range(y.shape[1]):
        pos = int(y[:, j].sum())
        if not 0 < pos < len(y):
            assert math.isnan(t[j])
            continue
        # sklearn's ROC thresholds (every distinct score), rates compared exactly in integers:
        # the official code compares 1 - tpr < 0.1 in floats, which admits FNR = 10% exactly
        # when 1 - 0.9 rounds below 0.1 (10 positives, one missed)
        _, tpr, thr = roc_curve(y[:, j], p[:, j], drop_intermediate=False)
        misses = pos - np.rint(tpr * pos).astype(int)
        assert t[j] == thr[10 * misses < pos][0]
        missed = int((p[y[:, j] == 1, j] < t[j]).sum())
        assert 10 * missed < pos  # on the reference itself, FNR < 10%


def test_the_float_rule_of_the_official_code_admits_exactly_ten_percent():
    y = np.array([1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1])[:, None]  # 10 positives
    p = np.arange(12, dtype=np.float32)[:, None]
    # every threshold (the official call keeps sklearn's default drop_intermediate=True, which
    # can drop the point and move its threshold lower; here it does)
    fpr, tpr, thr = roc_curve(y[:, 0], p[:, 0], drop_intermediate=False)
    official = thr[(1 - tpr) < 0.1][0]  # the rule of classification_metrics.py L28-29
    assert official == 1.0  # 1 - 0.9 = 0.0999... < 0.1: one of ten positives missed
    assert M.operating_points(p, y)[0] == 0.0  # here: FNR strictly below 10%, none missed


@pytest.mark.parametrize("seed", range(10))
def test_the_validation_threshold_is_applied_to_the_test_split(seed):
    pv, yv = _data(60, seed)
    pt, yt = _data(50, seed + 100)
    t = M.operating_points(pv, yv)
    sens, spec, bacc = [], [], []
    for j in range(3):
        decide = (pt[:, j] >= t[j]).astype(int)
        sens.append(recall_score(yt[:, j], decide, zero_division=np.nan))
        spec.append(recall_score(1 - yt[:, j], 1 - decide, zero_division=np.nan))
        bacc.append(balanced_accuracy_score(yt[:, j], decide))
    ref = (pv, yv)
    for name, expect in (("op_sensitivity", sens), ("op_specificity", spec),
                         ("op_balanced_accuracy", bacc)):
        per = M.per_label_values(name, pt, yt, "multilabel", ref)
        np.testing.assert_allclose(per, expect)
        assert M.compute(name, pt, yt, "multilabel", reference=ref) == pytest.approx(np.nanmean(expect))
    # the threshold is the reference's: with the test split as its own reference (the official
    # choice) every label's sensitivity is above 0.9 by construction
    own = M.per_label_values("op_sensitivity", pt, yt, "multilabel", (pt, yt))
    assert all(v > 0.9 for v in own if not np.isnan(v))


def test_without_reference_predictions_the_metric_is_refused():
    p, y = _data(20, 0)
    with pytest.raises(M.MetricError, match="'op_sensitivity' needs reference predictions"):
        M.compute("op_sensitivity", p, y, "multilabel")
    with pytest.raises(M.MetricError, match="does not apply to multiclass"):
        M.compute("op_specificity", p, y[:, 0], "multiclass", reference=(p, y))


def _unit_predictions():
    pv, yv = _data(80, 1, labels=4)
    pt, yt = _data(70, 2, labels=4)
    pred = Predictions("multilabel", ("auroc", "op_sensitivity"), ("a", "b", "c", "d"))
    pred.add("val", "val", pv, yv)
    pred.add("test", "test", pt, yt)
    return pred


def test_verify_recomputes_them_from_the_units_own_validation_predictions():
    pred = _unit_predictions()
    for name in ("op_sensitivity", "op_specificity", "op_balanced_accuracy"):
        expect = M.compute(name, pred.pred["test"], pred.target["test"], "multilabel",
                           reference=(pred.pred["val"], pred.target["val"]))
        assert recompute(pred, "test", name) == expect
    lacking = Predictions("multilabel", pred.metrics, pred.labels)
    lacking.add("test", "test", pred.pred["test"], pred.target["test"])
    with pytest.raises(M.MetricError, match="needs reference predictions"):
        recompute(lacking, "test", "op_sensitivity")


@pytest.mark.parametrize("name", ["op_sensitivity", "op_specificity", "op_balanced_accuracy"])
def test_the_bootstrap_resamples_test_samples_with_the_threshold_fixed(name):
    pred = _unit_predictions()
    ev = seed_evidence(pred, "test", name)
    assert ev is not None  # vectorised: boards mark these metrics
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 70, size=(25, 70))
    fast = ev.stat.batch(idx)
    ref = (pred.pred["val"], pred.target["val"])
    slow = [M.compute(name, pred.pred["test"][i], pred.target["test"][i], "multilabel",
                      reference=ref) for i in idx]
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
    assert len(resampled_values(ev.stat, n_boot=50)) == 50


def test_verify_reads_per_label_columns_from_one_computation_with_the_same_numbers():
    pred = _unit_predictions()
    cache = {}
    for protocol in ("val", "test"):
        for base in ("auroc", "auprc", "op_sensitivity", "op_balanced_accuracy"):
            for label in pred.labels:
                name = f"{base}/{label}"
                assert recompute(pred, protocol, name, cache) == recompute(pred, protocol, name)
    assert set(cache) == {(p, b) for p in ("val", "test")
                          for b in ("auroc", "auprc", "op_sensitivity", "op_balanced_accuracy")}
    with pytest.raises(M.MetricError, match="no label 'zz'"):
        recompute(pred, "test", "auroc/zz", cache)  # an unknown label: compute's own error
