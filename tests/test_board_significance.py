"""Intervals and significance marks on boards, from constructed predictions with known answers,
and the predictions a run publishes beside its results."""
import math

import numpy as np
import pytest

from i2m2bench import metrics as M
from i2m2bench.harness.publish import (evidence_of, prediction_path, publish_predictions,
                                       render_all, stale_boards)
from i2m2bench.harness.store import upsert_unit_rows
from i2m2bench.predictions import Predictions, load_predictions, save_predictions
from i2m2bench.reporting import render_markdown
from i2m2bench.reporting.significance import (Entry, Evidence, column_cells, entry,
                                              seed_evidence)
from i2m2bench.reporting.stats import (SampleStat, bootstrap_interval, paired_bootstrap,
                                       paired_bootstrap_stats)

N = 400


def _cells(md: str) -> str:
    """The table rows of a board (above its settings), without the header notes."""
    return "\n".join(ln for ln in md.split("## Settings")[0].splitlines() if ln.startswith("| "))


def _pred(correct: np.ndarray, target: np.ndarray, classes: int = 4) -> np.ndarray:
    """Log-probability-like scores whose arg-max is right exactly where ``correct`` is."""
    out = np.full((len(target), classes), -5.0, dtype=np.float32)
    out[np.arange(len(target)), np.where(correct, target, (target + 1) % classes)] = 0.0
    return out


def _predictions(correct, target) -> Predictions:
    p = Predictions("multiclass", ("accuracy",))
    p.add("test", "test", _pred(correct, target), target)
    p.add("shift:x", "test", _pred(correct, target), target)
    return p


def _board(make_row, accuracy: dict[str, list[np.ndarray]], target):
    """Rows and an Evidence for methods with the given per-seed correctness masks."""
    rows, files = [], {}
    for method, masks in accuracy.items():
        for seed, mask in enumerate(masks):
            acc = float(mask.mean())
            rows += [make_row(method, seed, "test", acc), make_row(method, seed, "shift:x", acc)]
            files[None, method, "u1", seed] = _predictions(mask, target)
    return rows, Evidence(lambda key: files.get(key))


@pytest.fixture
def target():
    return np.random.default_rng(0).integers(0, 4, N)


def test_a_clear_winner_is_bold_and_two_identical_methods_are_tied(make_row, target):
    rng = np.random.default_rng(1)
    strong = [rng.random(N) < 0.9 for _ in range(3)]
    weak = [rng.random(N) < 0.6 for _ in range(3)]
    rows, evidence = _board(make_row, {"alpha": strong, "beta": weak}, target)
    md = render_markdown(rows, evidence)
    acc = np.mean([m.mean() for m in strong]) * 100
    assert f"**{acc:.2f} ± " in _cells(md) and "*≈" not in _cells(md) and "carry no marks" not in md
    # two methods with the very same predictions: neither leads significantly -> both tied
    rows, evidence = _board(make_row, {"alpha": strong, "gamma": strong, "beta": weak}, target)
    md = render_markdown(rows, evidence)
    assert _cells(md).count(f"*≈ {acc:.2f} ± ") == 4  # two methods x (test, shift:x)
    assert "**" not in _cells(md)  # no bold cell at all


def test_one_seed_gets_a_bootstrap_interval_and_a_close_race_is_tied(make_row, target):
    rng = np.random.default_rng(2)
    a = rng.random(N) < 0.80
    b = a.copy()
    b[np.flatnonzero(a)[:8]] = False  # beta errs on 8 samples alpha gets right
    b[np.flatnonzero(~a)[:4]] = True  # and gets 4 right that alpha errs on: 1 point behind,
    # 12 discordant samples -- far from significant
    rows, evidence = _board(make_row, {"alpha": [a], "beta": [b]}, target)
    md = render_markdown(rows, evidence)
    lo, hi = bootstrap_interval(SampleStat(N, values=a.astype(float)))
    assert f"*≈ {a.mean() * 100:.2f} [{lo * 100:.2f}, {hi * 100:.2f}]*" in md
    assert lo < a.mean() < hi and hi - lo == pytest.approx(
        2 * 1.96 * math.sqrt(a.mean() * (1 - a.mean()) / N), rel=0.2)
    assert f"*≈ {b.mean() * 100:.2f} [" in md


def test_no_marks_when_predictions_are_missing_or_cover_other_samples(make_row, target):
    rng = np.random.default_rng(3)
    strong = [rng.random(N) < 0.9 for _ in range(2)]
    weak = [rng.random(N) < 0.5 for _ in range(2)]
    rows, evidence = _board(make_row, {"alpha": strong, "beta": weak}, target)
    partial = Evidence(lambda key: None if key[1] == "beta" else evidence.get(key))
    md = render_markdown(rows, partial)
    assert "**" not in _cells(md)
    assert "2 ranked column(s) carry no marks" in md
    other = Evidence(lambda key: (_predictions(weak[key[3]], (target + 1) % 4)
                                  if key[1] == "beta" else evidence.get(key)))
    assert "2 ranked column(s) carry no marks" in render_markdown(rows, other)


def test_undefined_auroc_is_never_marked():
    y = np.array([1, 1, 1, 1])[:, None]  # one class only: AUROC undefined
    p = Predictions("multilabel", ("auroc",))
    p.add("test", "test", np.linspace(-1, 1, 4, dtype=np.float32)[:, None], y)
    ev = seed_evidence(p, "test", "auroc")
    e = Entry({0: math.nan}, {0: ev})
    cells, marked = column_cells({"a": e, "b": Entry({0: 0.7})}, True)
    assert cells["a"] == "undefined" and "**" not in cells["b"]


def test_per_sample_values_average_to_the_metric():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(50, 3)).astype(np.float32)
    y_mc, y_ml = rng.integers(0, 3, 50), (rng.random((50, 3)) < 0.5).astype(int)
    scores = rng.choice([0.0, 0.3, 0.6, 0.9, 1.0], size=(50, 3))
    for name, t, problem in (("accuracy", y_mc, "multiclass"), ("accuracy", y_ml, "multilabel"),
                             ("vqa_score", scores, "soft-score")):
        vals = M.per_sample_values(name, logits, t, problem)
        assert vals.shape == (50,) and vals.mean() == pytest.approx(M.compute(name, logits, t, problem))
    assert M.per_sample_values("auroc", logits, y_ml, "multilabel") is None  # a ranking metric


def test_vectorised_and_generic_paired_bootstraps_agree(target):
    """The per-sample fast path draws the same resamples and gives the same interval as
    recomputing the metric on every resample."""
    rng = np.random.default_rng(5)
    preds_a = [_pred(rng.random(N) < 0.75, target) for _ in range(2)]
    preds_b = [_pred(rng.random(N) < 0.70, target) for _ in range(2)]

    def acc(p, t, idx):
        return float((p[idx].argmax(1) == t[idx]).mean())

    slow = paired_bootstrap(acc, preds_a, preds_b, [target, target], n_boot=300)
    fast = paired_bootstrap_stats(
        [SampleStat(N, values=(p.argmax(1) == target).astype(float)) for p in preds_a],
        [SampleStat(N, values=(p.argmax(1) == target).astype(float)) for p in preds_b], n_boot=300)
    assert fast.diff == pytest.approx(slow.diff, abs=1e-12)
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-9)


def test_a_plugin_metric_without_a_vectorised_form_is_resampled_only_on_request(monkeypatch):
    """A registered metric that is neither a mean nor a built-in ranking metric gets no marks by
    default; with RESAMPLE_OTHER_METRICS it is recomputed on every resample through compute."""
    from i2m2bench.metrics import METRICS, Metric

    def top2(pred, target, problem, groups=None):  # share of targets among the two best classes
        return float(np.mean((np.argsort(-pred, 1)[:, :2] == target[:, None]).any(1)))

    monkeypatch.setitem(METRICS._items, "top2", Metric("top2", top2, True, ("multiclass",)))
    rng = np.random.default_rng(6)
    y = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)).astype(np.float32)
    p = Predictions("multiclass", ("top2",))
    p.add("test", "test", logits, y)
    assert seed_evidence(p, "test", "top2") is None
    monkeypatch.setattr("i2m2bench.reporting.significance.RESAMPLE_OTHER_METRICS", True)
    ev = seed_evidence(p, "test", "top2")
    assert ev.stat.fn is not None and ev.stat.full() == pytest.approx(top2(logits, y, "multiclass"))
    lo, hi = bootstrap_interval(ev.stat, n_boot=200)
    assert lo < ev.stat.full() < hi


def test_published_predictions_back_the_committed_board(tmp_path, make_row, target):
    """publish_predictions copies run files into predictions/<board>/, prunes superseded ones;
    the board rendered from the folder carries marks, and --check notices a changed file."""
    rng = np.random.default_rng(7)
    masks = {"alpha": [rng.random(N) < 0.9], "beta": [rng.random(N) < 0.5]}
    rows = [make_row(m, 0, "test", float(v[0].mean())) for m, v in masks.items()]
    results = tmp_path / "results" / "demo.jsonl"
    upsert_unit_rows(results, rows)
    runs = tmp_path / "runs"
    sources = {}
    for m, v in masks.items():
        src = runs / m / "predictions.npz"
        src.parent.mkdir(parents=True)
        save_predictions(src, _predictions(v[0], target))
        sources[None, m, "u1", 0] = src
    stale = prediction_path(tmp_path, "demo", (None, "alpha", "old", 0))
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"superseded")
    written = publish_predictions(results, tmp_path, sources)
    assert [p.name for p in written] == ["u1-seed0.npz"] * 2 and not stale.exists()
    assert evidence_of(tmp_path, "demo").get((None, "alpha", "u1", 0)) is not None
    render_all(tmp_path)
    md = (tmp_path / "demo.md").read_text()
    assert f"**{masks['alpha'][0].mean() * 100:.2f} [" in md
    assert stale_boards(tmp_path) == []
    # beta's published predictions now say it is as good as alpha: the board is stale
    save_predictions(prediction_path(tmp_path, "demo", (None, "beta", "u1", 0)),
                     _predictions(masks["alpha"][0], target))
    assert "differs" in stale_boards(tmp_path)[0]


def test_published_predictions_keep_the_protocols_outside_curves(tmp_path, make_row, target):
    """Curve points are tabled from the rows, so the published copy drops them (the run
    directory keeps every protocol): the board's predictions stay small."""
    mask = np.random.default_rng(8).random(N) < 0.8
    curve_point = {**make_row("alpha", 0, "perturb:x@1", 0.5), "curve": "perturb:x", "level": 1.0}
    results = tmp_path / "results" / "demo.jsonl"
    upsert_unit_rows(results, [make_row("alpha", 0, "test", float(mask.mean())), curve_point])
    full = _predictions(mask, target)
    full.add("perturb:x@1", "test", _pred(~mask, target), target)
    src = tmp_path / "runs" / "predictions.npz"
    src.parent.mkdir(parents=True)
    save_predictions(src, full)
    publish_predictions(results, tmp_path, {(None, "alpha", "u1", 0): src})
    published = evidence_of(tmp_path, "demo").get((None, "alpha", "u1", 0))
    assert set(published.pred) == {"test"}  # shift:x has no row here, perturb:x@1 is a curve
    assert np.array_equal(published.pred["test"], full.pred["test"])
    assert set(load_predictions(src).pred) == {"test", "shift:x", "perturb:x@1"}


def test_a_method_name_cannot_escape_the_predictions_folder(tmp_path):
    with pytest.raises(ValueError, match="method '..'"):
        prediction_path(tmp_path, "demo", (None, "..", "u1", 0))


def test_entry_reads_the_predictions_of_each_seed(target):
    p = _predictions(np.ones(N, bool), target)
    e = entry({0: 1.0, 1: 1.0}, lambda seed: (None, "a", "u", seed),
              Evidence(lambda key: p if key[3] == 0 else None), "test", "accuracy")
    assert set(e.evidence) == {0} and not e.complete


def test_a_run_publishes_its_predictions_and_the_board_is_marked(tmp_path):
    """run_suite copies every unit's predictions beside its results; the board it renders has
    marks in every ranked column, and `leaderboard --check` reproduces it from the folder."""
    from i2m2bench.harness.runner import run_suite

    lb = tmp_path / "lb"
    run = run_suite(["toy_smoke.gin"], methods=["a_only", "b_only", "i2m2"], seeds=[0],
                    out=tmp_path / "runs", results_dir=lb, progress=False, log=lambda s: None)
    board = run.board
    published = sorted(p.relative_to(lb / "predictions" / board).parts[0]
                       for p in (lb / "predictions" / board).rglob("*.npz"))
    assert published == ["a_only", "b_only", "i2m2", "late_fusion"]  # i2m2 pretrains on late_fusion
    md = (lb / f"{board}.md").read_text()
    assert "carry no marks" not in md
    table = _cells(md)
    assert table.count("**") + table.count("*≈") > 0 and " [" in table  # one seed: bootstrap
    assert stale_boards(lb) == []


def test_vectorised_resampled_auroc_equals_scikit_learn_on_each_resample():
    from sklearn.metrics import roc_auc_score

    from i2m2bench.reporting.stats import resampled_auroc

    rng = np.random.default_rng(8)
    n = 60
    y = rng.random(n) < 0.4
    s = np.round(rng.normal(size=n) + y, 1)  # rounded: many ties
    idx = rng.integers(0, n, size=(25, n))
    got = resampled_auroc(s, y, idx)
    want = [roc_auc_score(y[i], s[i]) if 0 < y[i].sum() < n else np.nan for i in idx]
    assert np.allclose(got, want, equal_nan=True)
    one_class = resampled_auroc(s, y, np.full((1, n), np.flatnonzero(y)[0]))
    assert np.isnan(one_class[0])


def test_auroc_columns_are_resampled_vectorised_and_match_compute():
    rng = np.random.default_rng(9)
    y = (rng.random((120, 3)) < 0.5).astype(int)
    y[:, 2] = 1  # one label undefined on the whole split: left out of the macro mean
    logits = (y * 1.5 - 0.75 + rng.normal(0, 1.0, size=y.shape)).astype(np.float32)
    p = Predictions("multilabel", ("auroc",), ("a", "b", "c"))
    p.add("test", "test", logits, y)
    for name in ("auroc", "auroc/b"):
        ev = seed_evidence(p, "test", name)
        assert ev.stat.batch is not None
        assert ev.stat.full() == pytest.approx(M.compute(name, logits, y, "multilabel", labels=p.labels))
        idx = rng.integers(0, 120, size=(5, 120))
        want = [M.compute(name, logits[i], y[i], "multilabel", labels=p.labels) for i in idx]
        assert np.allclose(ev.stat.on(idx), want)


def test_vectorised_average_precision_and_balanced_accuracy_equal_scikit_learn():
    import warnings

    from sklearn.metrics import average_precision_score, balanced_accuracy_score

    from i2m2bench.reporting.stats import (resampled_average_precision,
                                           resampled_balanced_accuracy)

    rng = np.random.default_rng(10)
    n = 50
    y = rng.random(n) < 0.3
    s = np.round(rng.normal(size=n) + y, 1)  # many ties
    idx = rng.integers(0, n, size=(25, n))
    idx[0] = np.flatnonzero(~y)[0]  # a resample with no positive: undefined
    got = resampled_average_precision(s, y, idx)
    assert np.isnan(got[0])
    assert np.allclose(got[1:], [average_precision_score(y[i], s[i]) for i in idx[1:]])
    cls = rng.integers(0, 4, n)
    said = np.where(rng.random(n) < 0.6, cls, rng.integers(0, 4, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: "y_pred contains classes not in y_true"
        want = [balanced_accuracy_score(cls[i], said[i]) for i in idx]
    assert np.allclose(resampled_balanced_accuracy(said == cls, cls, idx), want)


@pytest.mark.parametrize("problem", ["multiclass", "multilabel"])
@pytest.mark.parametrize("name", ["auprc", "auprc/b", "balanced_accuracy"])
def test_every_builtin_metric_column_resamples_vectorised_and_matches_compute(problem, name):
    rng = np.random.default_rng(11)
    if problem == "multiclass":
        y = rng.integers(0, 3, 90)
        logits = (np.eye(3)[y] * 1.5 + rng.normal(0, 1.0, size=(90, 3))).astype(np.float32)
    else:
        y = (rng.random((90, 3)) < 0.5).astype(int)
        y[:, 2] = 0  # one label with no positive: AP undefined there, left out of the mean
        logits = (y * 1.5 - 0.75 + rng.normal(0, 1.0, size=y.shape)).astype(np.float32)
    p = Predictions(problem, (name,), ("a", "b", "c"))
    p.add("test", "test", logits, y)
    ev = seed_evidence(p, "test", name)
    assert ev.stat.batch is not None
    assert ev.stat.full() == pytest.approx(M.compute(name, logits, y, problem, labels=p.labels))
    idx = rng.integers(0, 90, size=(6, 90))
    want = [M.compute(name, logits[i], y[i], problem, labels=p.labels) for i in idx]
    assert np.allclose(ev.stat.on(idx), want, equal_nan=True)


def test_consistency_resamples_whole_groups():
    """Consistency averages over sample groups, so its bootstrap draws groups: the evidence
    holds one all-right value per group, and two files whose groups differ are not compared."""
    rng = np.random.default_rng(12)
    groups = np.repeat(np.arange(40), 4)  # 40 sentences x 4 image pairs
    y = rng.integers(0, 2, 160)
    right = rng.random(160) < 0.85
    logits = np.where(right, y, 1 - y)[:, None] == np.arange(2)
    p = Predictions("multiclass", ("consistency",))
    p.add("test", "test", logits.astype(np.float32), y, groups=groups)
    ev = seed_evidence(p, "test", "consistency")
    assert ev.stat.n == 40
    assert ev.stat.full() == pytest.approx(M.compute("consistency", logits.astype(np.float32), y,
                                                     "multiclass", groups))
    q = Predictions("multiclass", ("consistency",))
    q.add("test", "test", logits.astype(np.float32), y, groups=np.repeat(np.arange(80), 2))
    assert seed_evidence(q, "test", "consistency").targets != ev.targets


def test_a_lead_that_one_seed_reverses_is_not_significant():
    """The seed stage: alpha leads beta by 4 points on two seeds and trails by 4 on the third.
    Pooling the seeds' test samples alone would call alpha's lead significant; drawing seeds
    with replacement does not. A lead every seed shows stays significant."""
    n = 4000
    base = np.random.default_rng(13).random(n) < 0.8

    def shifted(points):  # a copy of base with |points|% of the samples flipped
        out = base.copy()
        k = int(abs(points) / 100 * n)
        out[np.flatnonzero(base if points < 0 else ~base)[:k]] = points > 0
        return SampleStat(n, values=out.astype(float))

    ref = [SampleStat(n, values=base.astype(float))] * 3
    mixed = [shifted(4), shifted(4), shifted(-4)]
    pooled = SampleStat(n, values=np.mean([m.values for m in mixed], axis=0))
    assert paired_bootstrap_stats([pooled], ref[:1]).significant  # test samples alone: yes
    assert not paired_bootstrap_stats(mixed, ref).significant
    assert paired_bootstrap_stats([shifted(2), shifted(4), shifted(3)], ref).significant


def test_integer_values_resample_to_the_same_floats_as_their_mean():
    """Per-sample values that are small integers (correct or not, paired differences) are
    resampled as exact int8 sums: the same float64 as the mean of the float values."""
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 301, (40, 301))
    for values in (rng.random(301) < 0.6, (rng.random(301) < 0.6).astype(int) - (rng.random(301) < 0.4),
                   rng.integers(-127, 128, 301)):
        stat = SampleStat(301, values=values)
        assert stat.small is not None
        assert np.array_equal(stat.on(idx), np.asarray(values, np.float64)[idx].mean(axis=1))
    for values in (rng.random(301), np.full(301, 128.0)):  # fractions, or beyond int8: floats
        assert SampleStat(301, values=values).small is None
