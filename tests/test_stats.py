"""The statistics behind board cells and marks, on constructed inputs with known answers."""
import math

import numpy as np
import pytest

from i2m2bench.reporting.stats import (Paired, bootstrap_interval, mark_leaders, paired_bootstrap,
                                       t_interval)


def accuracy(pred, target, idx):
    return float((pred[idx].argmax(1) == target[idx]).mean())


def _preds(correct: np.ndarray, target: np.ndarray, classes: int = 3) -> np.ndarray:
    """One-hot scores that are right exactly where ``correct`` is True."""
    out = np.zeros((len(target), classes))
    wrong = (target + 1) % classes
    out[np.arange(len(target)), np.where(correct, target, wrong)] = 1.0
    return out


def test_t_interval_by_hand():
    # values 1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3)
    mean, half = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert t_interval([0.7]) == (0.7, None)
    with pytest.raises(ValueError):
        t_interval([])


def test_bootstrap_interval_covers_the_accuracy_and_is_reproducible():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 3, 400)
    pred = _preds(rng.random(400) < 0.7, target)
    lo, hi = bootstrap_interval(lambda idx: accuracy(pred, target, idx), 400)
    acc = accuracy(pred, target, np.arange(400))
    se = math.sqrt(acc * (1 - acc) / 400)
    assert lo < acc < hi and hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert (lo, hi) == bootstrap_interval(lambda idx: accuracy(pred, target, idx), 400)
    assert all(math.isnan(v) for v in bootstrap_interval(lambda idx: math.nan, 10))


def test_a_clear_winner_is_significant_and_identical_methods_are_tied():
    rng = np.random.default_rng(0)
    targets = [rng.integers(0, 3, 300) for _ in range(3)]
    strong = [_preds(rng.random(300) < 0.9, t) for t in targets]
    weak = [_preds(rng.random(300) < 0.6, t) for t in targets]
    win = paired_bootstrap(accuracy, strong, weak, targets)
    assert win.significant and win.diff == pytest.approx(0.3, abs=0.06) and win.low > 0.2
    same = paired_bootstrap(accuracy, strong, strong, targets)
    assert (same.diff, same.low, same.high) == (0.0, 0.0, 0.0) and not same.significant
    lower = paired_bootstrap(accuracy, weak, strong, targets, higher_is_better=False)
    assert lower.significant  # "lower is better": the weak method's lower accuracy wins
    with pytest.raises(ValueError, match="same test samples"):
        paired_bootstrap(accuracy, strong, [w[:10] for w in weak], targets)


def test_mark_leaders():
    results = {("a", "b"): Paired(0.1, 0.05, 0.15), ("a", "c"): Paired(0.2, 0.1, 0.3)}
    assert mark_leaders({"a": 0.9, "b": 0.8, "c": 0.7}, lambda x, y: results[x, y]) == {"a": "best"}
    close = {("a", "b"): Paired(0.01, -0.02, 0.04), ("a", "c"): Paired(0.2, 0.1, 0.3)}
    assert mark_leaders({"a": 0.9, "b": 0.89, "c": 0.7}, lambda x, y: close[x, y]) == {"a": "tied", "b": "tied"}
    # lower is better, an undefined mean never leads, one method alone is best
    low = {("c", "a"): Paired(0.2, 0.1, 0.3)}
    assert mark_leaders({"a": 0.9, "c": 0.7, "d": math.nan}, lambda x, y: low[x, y],
                        higher_is_better=False) == {"c": "best"}
    assert mark_leaders({"a": 0.5}, lambda x, y: None) == {"a": "best"}
    assert mark_leaders({}, lambda x, y: None) == {}
