"""The ``dependency_spectrum`` task: its knobs do what they claim, its Bayes ceiling is right on
cases computed by hand, it is deterministic by seed, and its board renders (Madaan et al.,
NeurIPS 2024: intra- vs inter-modality dependency)."""
import math
import statistics
from pathlib import Path

import pytest
import torch
from sklearn.linear_model import LogisticRegression

import i2m2bench
from i2m2bench.data.synthetic.spectrum import (BAYES_MC_SAMPLES, SHIFTS, _bayes, _option_key, bayes_ceiling,
                                     log_likelihoods, log_posterior, mechanism_weights)
from i2m2bench.reporting import DependencySpectrumLayout, render_rows

ROOT = Path(__file__).resolve().parents[1]
N = 20000  # "large sample": the binomial std of an accuracy near 1/4 is sqrt(.25*.75/N) = 0.0031
C = 4


def _phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _chance_tol(n, classes=C, k=4.0):
    """k binomial standard deviations of an accuracy at chance, measured on n samples."""
    p = 1 / classes
    return k * math.sqrt(p * (1 - p) / n)


def _task(inter_share, n=N, seed=0, **kw):
    return i2m2bench.build_task("dependency_spectrum", n_train=n, n_eval=n, inter_share=inter_share,
                                data_seed=seed, **kw)


def _decode(x, m, classes=C, dim=16, intra_snr=2.0, inter_snr=3.0):
    """The MAP (cue, code) of each sample of modality m from its input alone."""
    ll = log_likelihoods(x, m, classes, dim, intra_snr, inter_snr)  # (n, u, c)
    flat = ll.flatten(1).argmax(1)
    return flat // classes, flat % classes


def _cell_classifier_acc(train_keys, train_y, test_keys, test_y):
    """Accuracy of the best classifier on a discrete feature: majority label per cell (fit on
    train, scored on test) — it captures *any* dependence between the feature and y."""
    votes = {}
    for k, y in zip(train_keys.tolist(), train_y.tolist()):
        votes.setdefault(k, [0] * C)[y] += 1
    pred = torch.tensor([max(range(C), key=lambda c: votes.get(k, [1] + [0] * (C - 1))[c])
                         for k in test_keys.tolist()])
    return float((pred == test_y).float().mean())


def _logreg_acc(xtr, ytr, xte, yte):
    clf = LogisticRegression(max_iter=300).fit(xtr.numpy(), ytr.numpy())
    return float((torch.from_numpy(clf.predict(xte.numpy())) == yte).float().mean())


# ------------------------------------------------------------------------------- the knobs
def test_pure_inter_each_modality_alone_is_at_chance():
    task = _task(1.0)
    tr, te = task.splits["train"], task.splits["test"]
    tol = _chance_tol(len(te))
    for i, m in enumerate(("a", "b")):
        # linear: logistic regression on the raw input
        acc = _logreg_acc(tr.inputs[m], tr.target, te.inputs[m], te.target)
        assert abs(acc - 1 / C) < tol, (m, acc)
        # nonlinear: best classifier on the modality's decoded (cue, code) pair
        u, c = _decode(tr.inputs[m], i)
        ut, ct = _decode(te.inputs[m], i)
        acc = _cell_classifier_acc(u * C + c, tr.target, ut * C + ct, te.target)
        assert abs(acc - 1 / C) < tol + 0.005, (m, acc)  # +0.005: 16 cells fitted on N samples
    # positive control: the same cell classifier on the pair of codes decodes the label
    ca, cb = _decode(tr.inputs["a"], 0)[1], _decode(tr.inputs["b"], 1)[1]
    cat, cbt = _decode(te.inputs["a"], 0)[1], _decode(te.inputs["b"], 1)[1]
    assert _cell_classifier_acc(ca * C + cb, tr.target, cat * C + cbt, te.target) > 0.8


def test_pure_intra_the_pairing_carries_no_label_information():
    task = _task(0.0)
    tr, te = task.splits["train"], task.splits["test"]
    tol = _chance_tol(len(te))
    # The codes' pairing alone (decoded c_a, c_b) is at chance ...
    ca, cb = _decode(tr.inputs["a"], 0)[1], _decode(tr.inputs["b"], 1)[1]
    cat, cbt = _decode(te.inputs["a"], 0)[1], _decode(te.inputs["b"], 1)[1]
    assert abs(_cell_classifier_acc(ca * C + cb, tr.target, cat * C + cbt, te.target) - 1 / C) < tol + 0.005
    # ... and re-pairing b with another sample of the same label changes nothing: the exact Bayes
    # accuracy on shuffled pairs equals that on the original pairs within noise.
    assert _within_class_shuffle_gap(task) < 4 * math.sqrt(2 * 0.25 / len(te))
    # positive control: at the pure-inter end the same re-pairing destroys the label
    assert _within_class_shuffle_gap(_task(1.0)) > 0.5


def _within_class_shuffle_gap(task):
    te = task.splits["test"]
    o = task.options
    gen = torch.Generator().manual_seed(7)
    perm = torch.arange(len(te))
    for y in range(C):
        idx = (te.target == y).nonzero()[:, 0]
        perm[idx] = idx[torch.randperm(len(idx), generator=gen)]

    def acc(xb):
        post = log_posterior(te.inputs["a"], xb, C, o["dim"], o["intra_snr"], o["inter_snr"],
                             *mechanism_weights(o["inter_share"]))
        return float((post.argmax(1) == te.target).float().mean())

    return acc(te.inputs["b"]) - acc(te.inputs["b"][perm])


def test_mixture_share_is_the_fraction_of_relation_labelled_samples():
    from i2m2bench.data.synthetic.spectrum import sample_latents

    lat = sample_latents(N, C, 0.3, torch.Generator().manual_seed(0))
    assert abs(float(lat["s"].float().mean()) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / N)
    s = lat["s"]
    assert torch.equal((lat["c_a"][s] + lat["c_b"][s]) % C, lat["y"][s])  # relation on inter samples
    assert torch.equal(lat["u_a"][~s], lat["y"][~s]) and torch.equal(lat["u_b"][~s], lat["y"][~s])


def test_shift_sets_remove_exactly_one_dependency():
    task = _task(0.5, n=2000)
    te, no_inter, no_intra = task.splits["test"], task.shifts["no_inter"], task.shifts["no_intra"]
    assert set(task.shifts) == set(SHIFTS)
    for s in (no_inter, no_intra):
        assert torch.equal(s.target, te.target)
    # no_inter redraws only c_b: modality a is the test set's, b differs
    assert torch.equal(no_inter.inputs["a"], te.inputs["a"])
    assert not torch.equal(no_inter.inputs["b"], te.inputs["b"])
    assert not torch.equal(no_intra.inputs["a"], te.inputs["a"])
    # ceilings: no relation at the pure-inter end / no cue at the pure-intra end -> exactly chance
    assert bayes_ceiling({"inter_share": 1.0}, "no_inter")["ceiling"] == pytest.approx(1 / C, abs=1e-9)
    assert bayes_ceiling({"inter_share": 0.0}, "no_intra")["ceiling"] == pytest.approx(1 / C, abs=1e-9)
    # and each shift set keeps the other dependency's ceiling
    assert bayes_ceiling({"inter_share": 0.0}, "no_inter")["ceiling"] == pytest.approx(
        bayes_ceiling({"inter_share": 0.0})["ceiling"], abs=1e-9)


# ---------------------------------------------------------------------------- Bayes ceiling
def test_bayes_ceiling_by_hand_pure_intra():
    # C=2, pure intra, no codes (inter_snr=0), intra_snr=1. Each modality's two class means are
    # orthonormal directions scaled by 1: distance sqrt(2); with unit-variance isotropic noise and
    # the two modalities independent given y, the Mahalanobis distance of the pair is
    # sqrt(2 + 2) = 2. Two equal-prior Gaussians at distance D: Bayes accuracy Phi(D/2) = Phi(1)
    # = 0.8413.
    b = bayes_ceiling(dict(classes=2, dim=4, inter_share=0.0, intra_snr=1.0, inter_snr=0.0))
    assert b["ceiling"] == pytest.approx(_phi(1.0), abs=4 * b["ceiling_se"])
    assert 0 < b["ceiling_se"] < 0.004


def test_bayes_ceiling_by_hand_pure_inter():
    # C=2, pure inter, no cues (intra_snr=0), inter_snr=sqrt(2): y = c_a XOR c_b. Each code is a
    # two-Gaussian problem at distance sqrt(2)*sqrt(2) = 2, decoded correctly with probability
    # q = Phi(1). p(y=0|x) = q_a q_b + (1-q_a)(1-q_b) > 1/2 iff both MAP codes agree with the same
    # y, so the Bayes rule is the XOR of the MAP codes: right iff both codes are right or both
    # wrong, independently: q^2 + (1-q)^2 = 0.7330.
    q = _phi(1.0)
    b = bayes_ceiling(dict(classes=2, dim=4, inter_share=1.0, intra_snr=0.0, inter_snr=math.sqrt(2)))
    assert b["ceiling"] == pytest.approx(q * q + (1 - q) ** 2, abs=4 * b["ceiling_se"])


def test_bayes_ceiling_without_signal_is_chance_and_knobs_move_it():
    b = bayes_ceiling(dict(inter_share=0.5, intra_snr=0.0, inter_snr=0.0))
    assert b["ceiling"] == pytest.approx(1 / C, abs=1e-12) and b["ceiling_se"] == pytest.approx(0, abs=1e-12)
    lo = bayes_ceiling(dict(inter_share=1.0, inter_snr=1.0))["ceiling"]
    hi = bayes_ceiling(dict(inter_share=1.0, inter_snr=4.0))["ceiling"]
    assert 1 / C + 0.05 < lo < hi
    with pytest.raises(ValueError, match="which must be 'test' or one of"):
        bayes_ceiling({}, "no_such_shift")


def test_bayes_ceiling_matches_an_independent_sample_and_is_pure():
    # The cached Monte Carlo ceiling (fixed seed, its own sampler) against an independent estimate:
    # a fresh test set from the task generator with another seed, scored two ways with the exact
    # posterior. E[max_y p(y|x)] must agree within a few combined standard errors, and so must the
    # hit rate of the posterior's argmax (which checks the posterior is calibrated, not only the
    # sampler). Neither can pass if the ceiling's sampler or the mechanism weights disagree with
    # the generator the models are trained on.
    share = 0.5
    b = bayes_ceiling({"inter_share": share})
    task = _task(share, seed=11)
    te, o = task.splits["test"], task.options
    post = log_posterior(te.inputs["a"], te.inputs["b"], C, o["dim"], o["intra_snr"], o["inter_snr"],
                         *mechanism_weights(share)).exp()
    best = post.max(1).values
    mean, se = float(best.mean()), float(best.std()) / math.sqrt(len(te))
    assert abs(mean - b["ceiling"]) < 4 * math.hypot(se, b["ceiling_se"]), (mean, b)
    hits = float((post.argmax(1) == te.target).float().mean())
    hit_sd = math.sqrt(b["ceiling"] * (1 - b["ceiling"]) / len(te))
    assert abs(hits - b["ceiling"]) < 4 * math.hypot(hit_sd, b["ceiling_se"]), (hits, b)
    # Pure: recomputed with the cache bypassed, the fixed seed gives the same numbers, and a
    # caller editing the returned dict does not change what the next caller gets.
    uncached = _bayes.__wrapped__(_option_key({"inter_share": share}), "test", BAYES_MC_SAMPLES)
    assert uncached == b
    b["ceiling"] = -1.0
    assert bayes_ceiling({"inter_share": share}) == uncached


def test_bayes_rule_is_not_beaten_by_a_trained_model():
    # The exact posterior's argmax on held-out data agrees with the Monte Carlo ceiling, and a
    # logistic regression on both raw inputs (pure intra: the Bayes rule is linear) does not beat it.
    task = _task(0.0, n=5000)
    tr, te = task.splits["train"], task.splits["test"]
    o = task.options
    post = log_posterior(te.inputs["a"], te.inputs["b"], C, o["dim"], o["intra_snr"],
                         o["inter_snr"], *mechanism_weights(0.0))
    bayes = float((post.argmax(1) == te.target).float().mean())
    ceil = bayes_ceiling(o)["ceiling"]
    sd = math.sqrt(ceil * (1 - ceil) / len(te))
    assert abs(bayes - ceil) < 4 * sd
    cat = lambda s: torch.cat([s.inputs["a"], s.inputs["b"]], 1)  # noqa: E731
    assert _logreg_acc(cat(tr), tr.target, cat(te), te.target) < bayes + 4 * sd


# ----------------------------------------------------------------------- determinism, options
def test_deterministic_by_seed():
    a, b, c = _task(0.5, n=300, seed=3), _task(0.5, n=300, seed=3), _task(0.5, n=300, seed=4)
    for name in ("train", "val", "test"):
        for m in ("a", "b"):
            assert torch.equal(a.splits[name].inputs[m], b.splits[name].inputs[m])
            assert not torch.equal(a.splits[name].inputs[m], c.splits[name].inputs[m])
        assert torch.equal(a.splits[name].target, b.splits[name].target)
    for s in SHIFTS:
        assert torch.equal(a.shifts[s].inputs["b"], b.shifts[s].inputs["b"])
    assert a.options == b.options and a.options["data_seed"] == 3
    assert a.spec.source == "synthetic" and a.spec.modality_names == ("a", "b")


@pytest.mark.parametrize("opts, match", [
    ({"inter_share": 1.5}, r"'inter_share' must be a number in \[0.0, 1.0\]; got 1.5"),
    ({"inter_share": "half"}, r"'inter_share' must be a number"),
    ({"classes": 1}, r"'classes' must be an integer >= 2; got 1"),
    ({"dim": 6}, r"'dim' must be >= 2 \* classes = 8"),
    ({"intra_snr": -1.0}, r"'intra_snr' must be a number >= 0"),
    ({"n_train": 0}, r"'n_train' must be an integer >= 1"),
    ({"source": "real"}, r"'source' must be 'auto' or 'synthetic'"),
])
def test_bad_options_name_the_option(opts, match):
    with pytest.raises(ValueError, match=match):
        i2m2bench.build_task("dependency_spectrum", **opts)


def test_refuses_data_root_it_would_ignore():
    """A synthetic builder declares no data_root: passing one is an error, not silently ignored."""
    with pytest.raises(TypeError, match=r"dataset 'dependency_spectrum' has no option 'data_root'"):
        i2m2bench.build_task("dependency_spectrum", n_train=10, n_eval=10, data_root="/nonexistent")


# ---------------------------------------------------------------------------------- board
def _rows():
    rows = []
    for setting, share in (("mid", 0.5), ("intra", 0.0), ("inter", 1.0)):
        for method, fam, base in (("solo", "unimodal", 0.3), ("both", "i2m2", 0.8)):
            for seed in (0, 1):
                for proto, v in (("test", base + 0.01 * seed), ("shift:no_inter", base - 0.1),
                                 ("shift:no_intra", base - 0.2)):
                    rows.append({
                        "board": "spec", "suite": "spec", "dataset": "dependency_spectrum",
                        "dataset_version": "1", "data_source": "synthetic", "method": method,
                        "label": method.upper(), "family": fam, "fusion": "f", "recipe": "joint",
                        "seed": seed, "protocol": proto, "metric": "accuracy", "value": v,
                        "higher_is_better": True, "unit_hash": f"{setting}-{method}",
                        "train": {"optimizer": "adam", "lr": 0.003, "weight_decay": 1e-4,
                                  "batch_size": 64, "epochs": 10, "patience": 10},
                        "git_commit": "abc", "device": "cpu", "torch_version": "x",
                        "date": "2026-01-01T00:00:00+00:00", "layout": "dependency_spectrum",
                        "setting": setting,
                        "task_options": {"inter_share": share, "classes": 4, "dim": 16,
                                         "intra_snr": 2.0, "inter_snr": 3.0}})
    return rows


def test_layout_markdown_is_pure_sorted_by_share_and_shows_the_ceiling():
    rows = _rows()
    md = render_rows(rows)
    assert md == render_rows(list(reversed(rows)))
    test_table = md.split("## Test accuracy")[1].split("##")[0]
    body = [ln for ln in test_table.splitlines() if ln.startswith("| `")]
    assert [ln.split("|")[1].strip() for ln in body] == ["`intra`", "`mid`", "`inter`"]
    for ln, share in zip(body, (0.0, 0.5, 1.0)):
        c = bayes_ceiling({"inter_share": share})
        assert f"{c['ceiling'] * 100:.1f} ± {c['ceiling_se'] * 100:.1f}" in ln
    # "both" at mid: seeds 0.80, 0.81 -> 80.5 ± t(0.975, 1) * 0.00707 / sqrt(2) = 6.4 (95% t
    # half-width); no predictions behind these rows, so no marks
    assert "| 80.5 ± 6.4 " in md and "| 30.5 ± 6.4 " in md and "**80.5" not in md
    assert "row(s) carry no marks" in md
    c = bayes_ceiling({"inter_share": 0.5}, "no_inter")
    assert f"{c['train_rule'] * 100:.1f} ± {c['train_rule_se'] * 100:.1f}" in md
    assert "](spec.png)" in md and f"{BAYES_MC_SAMPLES} Monte Carlo" in md


def test_layout_figure_is_written(tmp_path):
    paths = DependencySpectrumLayout().figures(_rows(), tmp_path, "spec")
    assert paths == [tmp_path / "spec.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[0].stat().st_size > 10_000


@pytest.mark.slow
def test_smoke_suite_end_to_end(tmp_path):
    run = i2m2bench.run_suite([ROOT / "gin" / "dependency_spectrum_smoke.gin"], out=tmp_path / "runs",
                              results_dir=tmp_path, progress=False)
    assert not run.failures
    md = (tmp_path / "dependency_spectrum_smoke.md").read_text()
    assert (tmp_path / "dependency_spectrum_smoke.png").stat().st_size > 10_000
    test_table = md.split("## Test accuracy")[1].split("##")[0]
    body = [ln for ln in test_table.splitlines() if ln.startswith("| `")]
    assert [ln.split("|")[1].strip() for ln in body] == ["`p0.00`", "`p0.50`", "`p1.00`"]
    assert all(ln.count("|") == 3 + 10 + 1 for ln in body)  # setting, share, ceiling + 10 methods
    # the smoke task is tiny but its ceiling comes from the options alone
    ceil = bayes_ceiling({**run.task.options, "inter_share": 0.5})["ceiling"]
    assert f"{ceil * 100:.1f}" in body[1]
    assert len(run.summary) == 3 * 10  # every (setting, method) unit trained once
