"""Intervals and significance marks on boards, from constructed predictions with known answers,
and the predictions a run publishes beside its results."""
import math

import numpy as np
import pytest

from i2m2bench import metrics as M
from i2m2bench.harness.publish import (evidence_of, prediction_path, publish_predictions,
                                       render_all, stale_boards)
from i2m2bench.harness.store import upsert_unit_rows
from i2m2bench.predictions import Predictions, save_predictions
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


def test_undefined_auroc_is_never_marked(monkeypatch):
    monkeypatch.setattr("i2m2bench.reporting.significance.RESAMPLE_RANKING_METRICS", True)
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


def test_a_generic_metric_is_resampled_through_compute(monkeypatch):
    y0 = np.array([[0], [1]])
    p0 = Predictions("multilabel", ("auprc",))
    p0.add("test", "test", np.zeros((2, 1), np.float32), y0)
    assert seed_evidence(p0, "test", "auprc") is None  # by default AUPRC gets no marks yet
    monkeypatch.setattr("i2m2bench.reporting.significance.RESAMPLE_RANKING_METRICS", True)
    rng = np.random.default_rng(6)
    y = (rng.random((200, 2)) < 0.5).astype(int)
    logits = (y * 2.0 - 1.0 + rng.normal(0, 1.5, size=y.shape)).astype(np.float32)
    p = Predictions("multilabel", ("auroc",))
    p.add("test", "test", logits, y)
    ev = seed_evidence(p, "test", "auroc")
    assert ev.stat.values is None  # no per-sample decomposition of AUROC
    assert ev.stat.full() == pytest.approx(M.compute("auroc", logits, y, "multilabel"))
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
