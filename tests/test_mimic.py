"""MIMIC-III: the official processing, split and labels, the real-file loader on fixtures in
MultiBench's layout (benign and hostile pickles), the embedded cohort, and the official
architectures."""
from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from i2m2bench.data import DataError, build_task
from i2m2bench.data.mimic import embedded as ic
from i2m2bench.data.mimic import processing as mp
from i2m2bench.data.mimic import real as mr
from i2m2bench.data.mimic import build_embedded, task_spec
from i2m2bench.data.common.safe_pickle import UnsafePickleError
from i2m2bench.fusion import build_fusion


def _arrays(n: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """A small file's worth of arrays in the official layout, with NaN and Inf in the inputs."""
    rng = np.random.default_rng(seed)
    series = rng.normal(5, 2, (n, 24, 12))
    series[0, :3, 4] = np.nan
    series[1, 5, 0] = np.inf
    static = rng.normal(60, 10, (n, 5))
    static[2, 1] = -np.inf
    adm = (rng.random((n, 6)) < 0.2).astype(np.float64)
    icd = (rng.random((n, 20)) < 0.3).astype(np.int64)
    return {"ep_tdata": series, "adm_features_all": static, "adm_labels_all": adm, "y_icd9": icd}


def _official_order(n: int) -> list[int]:
    """The official shuffle of get_data.py (lines 76-80), on a list of (X_s, X_t, y) tuples --
    here tuples carrying the row index -- with the module-level generator, state restored."""
    state = random.getstate()
    try:
        datasets = [(i, f"s{i}", f"t{i}") for i in range(n)]
        random.seed(10)
        random.shuffle(datasets)
        return [d[0] for d in datasets]
    finally:
        random.setstate(state)


# ------------------------------------------------------------------------------ official rules
@pytest.mark.parametrize("n", [10, 57, 1000, 36212])
def test_split_reproduces_the_official_shuffle(n):
    order = _official_order(n)
    split = mp.official_split(n)
    assert split["val"].tolist() == order[0:n // 10]  # valids = datasets[0:le//10]
    assert split["test"].tolist() == order[n // 10:n // 5]  # robust tests: datasets[le//10:le//5]
    assert split["train"].tolist() == order[n // 5:]  # trains = datasets[le//5:]
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(n))


def test_mortality_label_is_the_first_positive_column_as_the_official_loop():
    a = _arrays(200)
    a["adm_labels_all"][3] = [1, 0, 0, 1, 1, 0]  # first positive among 1..5: column 3
    a["adm_labels_all"][4] = [1, 0, 0, 0, 0, 0]  # column 0 is not read: class 0
    expected = []
    for row in a["adm_labels_all"]:  # get_data.py lines 60-72
        expected.append(next((c for c in range(1, 6) if row[c] > 0), 0))
    got = mp.labels(a, "mortality")
    assert got.tolist() == expected and got[3] == 3 and got[4] == 0
    assert set(got.tolist()) <= set(range(6))
    assert mp.labels(a, "icd9_140_239").tolist() == a["y_icd9"][:, 1].tolist()
    assert mp.labels(a, "icd9_460_519").tolist() == a["y_icd9"][:, 7].tolist()


def test_stats_all_reproduce_the_official_normalisation():
    a = _arrays(60)
    # get_data.py lines 33-49, on copies
    X_t, X_s = a["ep_tdata"].copy(), a["adm_features_all"].copy()
    X_t[np.isinf(X_t)] = 0
    X_t[np.isnan(X_t)] = 0
    X_s[np.isinf(X_s)] = 0
    X_s[np.isnan(X_s)] = 0
    X_s_avg, X_s_std = np.average(X_s, axis=0), np.std(X_s, axis=0)
    X_t_avg, X_t_std = np.average(X_t, axis=(0, 1)), np.std(X_t, axis=(0, 1))
    for i in range(len(X_s)):
        X_s[i] = (X_s[i] - X_s_avg) / X_s_std
        for j in range(len(X_t[0])):
            X_t[i][j] = (X_t[i][j] - X_t_avg) / X_t_std
    from i2m2bench.data.mimic import make_task

    task = make_task(mp.check_arrays(a, "fixture"), "mortality", "all", "real", "fixture")
    split = mp.official_split(60)
    for name, rows in split.items():
        np.testing.assert_allclose(task.splits[name].inputs["timeseries"].numpy(), X_t[rows], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(task.splits[name].inputs["static"].numpy(), X_s[rows], rtol=1e-6, atol=1e-6)


def test_stats_train_use_the_training_rows_only():
    from i2m2bench.data.mimic import make_task

    a = _arrays(80)
    task = make_task(mp.check_arrays(a, "fixture"), "icd9_140_239", "train", "real", "fixture")
    train = task.splits["train"]
    ts = train.inputs["timeseries"].double()
    np.testing.assert_allclose(ts.mean((0, 1)).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(ts.std((0, 1), unbiased=False).numpy(), 1, atol=1e-5)
    test_static = task.splits["test"].inputs["static"].double()
    assert abs(float(test_static.mean())) > 1e-4  # the test rows are not their own reference
    assert torch.isfinite(ts).all()  # NaN/Inf became 0 before scaling


# ------------------------------------------------------------------------------ checking files
@pytest.mark.parametrize("change, words", [
    (lambda a: a.pop("y_icd9"), ["missing key", "y_icd9"]),
    (lambda a: a.__setitem__("ep_tdata", a["ep_tdata"][:, :, :11]), ["ep_tdata", "(N, 24, 12)"]),
    (lambda a: a.__setitem__("adm_features_all", a["adm_features_all"][:40]), ["adm_features_all", "40 samples"]),
    (lambda a: a["y_icd9"].__setitem__((7, 1), 2), ["y_icd9", "row 7", "column 1", "0 or 1"]),
    (lambda a: a["adm_labels_all"].__setitem__((3, 2), np.nan), ["adm_labels_all", "row 3"]),
    (lambda a: a.__setitem__("adm_labels_all", a["adm_labels_all"].astype(str)), ["adm_labels_all", "numeric"]),
    (lambda a: a.__setitem__("y_icd9", [[0] * 20] * 50), ["y_icd9", "numeric NumPy array"]),
])
def test_bad_arrays_are_errors_naming_the_file_and_field(change, words):
    a = _arrays()
    change(a)
    with pytest.raises(DataError) as info:
        mp.check_arrays(a, "/data/mimic/im.pk")
    msg = str(info.value)
    assert "/data/mimic/im.pk" in msg
    for w in words:
        assert w in msg, (w, msg)


def _root(tmp_path, arrays=None, protocol=4, obj=None):
    folder = tmp_path / "mimic"
    folder.mkdir(exist_ok=True)
    with open(folder / "im.pk", "wb") as f:
        pickle.dump(obj if obj is not None else (arrays or _arrays()), f, protocol=protocol)
    return tmp_path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_real_pickle_loads_through_the_allow_list(tmp_path, protocol):
    a = _arrays(40)
    root = _root(tmp_path, a, protocol)
    with pytest.raises(DataError, match=r"mimic\.npz: not prepared; a run reads only the prepared "
                                        r"arrays, never im\.pk itself: type `python -m i2m2bench "
                                        r"prepare mimic --data-root "):
        build_task("mimic_icd9_460_519", data_root=str(root))
    mr.prepare(root / "mimic")
    task = build_task("mimic_icd9_460_519", data_root=str(root))
    assert task.spec.source == "real" and task.spec.name == "mimic_icd9_460_519"
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 32, "val": 4, "test": 4}
    assert not task.shifts  # the official "robust" set is copies of the test set: none is made
    rows = mp.official_split(40)["test"]
    assert task.splits["test"].target.tolist() == a["y_icd9"][rows, 7].tolist()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > SENTINEL",))


@pytest.mark.parametrize("payload, name", [
    (lambda: {"ep_tdata": _Evil()}, "system"),
    (lambda: {**_arrays(), "extra": _Evil()}, "system"),
    (lambda: {"x": _PlainClass()}, "_PlainClass"),
])
def test_hostile_pickle_is_refused_before_anything_runs_and_nothing_is_written(
        tmp_path, monkeypatch, payload, name):
    monkeypatch.chdir(tmp_path)
    root = _root(tmp_path, obj=payload())
    with pytest.raises(DataError, match="not prepared"):  # a run never opens the pickle
        build_task("mimic", data_root=str(root))
    with pytest.raises(UnsafePickleError) as info:
        mr.prepare(root / "mimic")
    assert name in str(info.value) and "im.pk" in str(info.value)
    with pytest.raises(UnsafePickleError):
        mr.verify(root / "mimic")
    assert not (tmp_path / "SENTINEL").exists()
    assert sorted(p.name for p in (root / "mimic").iterdir()) == ["im.pk"]  # no npz, no temp file


class _PlainClass:
    pass


def test_prepare_writes_the_npz_which_is_then_read_without_pickle(tmp_path):
    a = _arrays(30)
    root = _root(tmp_path, a)
    path = mr.prepare(root / "mimic")
    assert path.name == "mimic.npz"
    with np.load(path, allow_pickle=False) as z:
        for k in mp.LAYOUT:
            np.testing.assert_array_equal(z[k], a[k])
    arrays, used = mr.read(root / "mimic")
    assert used == path
    (root / "mimic" / "im.pk").unlink()  # the npz alone is enough
    t1 = build_task("mimic", data_root=str(root))
    assert t1.spec.name == "mimic_mortality" and len(t1.splits["train"]) == 24


def test_npz_from_another_pickle_is_refused(tmp_path):
    root = _root(tmp_path, _arrays(30, seed=1))
    mr.prepare(root / "mimic")
    _root(tmp_path, _arrays(30, seed=2))  # im.pk replaced after prepare
    with pytest.raises(DataError, match=r"im.pk: its bytes changed since it was prepared .*stale: "
                                         r"rerun `python -m i2m2bench prepare mimic"):
        mr.read(root / "mimic")


def test_npz_that_does_not_name_its_source_is_refused_beside_a_pickle(tmp_path):
    """A mimic.npz without the sha256 of the im.pk it came from (written by another tool, or
    edited) cannot be checked against the im.pk beside it: refused, naming both; alone it is
    read as it is. Nothing is written either way."""
    a = _arrays(30, seed=3)
    root = _root(tmp_path, a)
    npz = root / "mimic" / "mimic.npz"
    np.savez(npz, **a)  # the arrays, no source digest
    before = npz.read_bytes()
    with pytest.raises(DataError, match=r"mimic\.npz does not record which im\.pk it was "
                                        r"prepared from \(no 'content_chain'\), so it cannot be "
                                        r"checked against .*im\.pk; rerun `python -m i2m2bench "
                                        r"prepare mimic"):
        mr.read(root / "mimic")
    assert npz.read_bytes() == before
    (root / "mimic" / "im.pk").unlink()
    arrays, used = mr.read(root / "mimic")
    assert used == npz
    np.testing.assert_array_equal(arrays["ep_tdata"], a["ep_tdata"])


def test_missing_files_and_folders_say_what_belongs_there(tmp_path):
    with pytest.raises(DataError, match="mimic"):
        build_task("mimic", data_root=str(tmp_path))  # no mimic/ folder
    (tmp_path / "mimic").mkdir()
    with pytest.raises(DataError) as info:
        build_task("mimic", data_root=str(tmp_path))
    assert "mimic.npz" in str(info.value) and "im.pk" in str(info.value)


def test_cli_prepare_mimic(tmp_path):
    root = _root(tmp_path, _arrays(20))
    env = {**os.environ, "I2M2BENCH_PLUGINS": "0"}
    ok = subprocess.run([sys.executable, "-m", "i2m2bench", "prepare", "mimic", "--data-root",
                         str(root)], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert (root / "mimic" / "mimic.npz").is_file()
    _root(tmp_path, obj={"y_icd9": _Evil()})
    (root / "mimic" / "mimic.npz").unlink()
    bad = subprocess.run([sys.executable, "-m", "i2m2bench", "prepare", "mimic", "--data-root",
                          str(root)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode != 0 and "system" in bad.stderr and "im.pk" in bad.stderr
    assert not (root / "mimic" / "mimic.npz").exists() and not (tmp_path / "SENTINEL").exists()


# ------------------------------------------------------------------------------ the dataset
def test_dataset_options_are_checked():
    with pytest.raises(ValueError, match="task must be one of"):
        build_task("mimic", task="sepsis")
    with pytest.raises(ValueError, match="stats must be"):
        build_task("mimic", stats="test")
    with pytest.raises(TypeError, match="task"):
        build_task("mimic_mortality", task="icd9_140_239")  # the fixed-task datasets take no task


def test_embedded_task_layout_and_determinism():
    t = build_embedded("mortality", patients=500)
    assert t.spec.source == "embedded" and "EMBEDDED" in t.spec.description
    assert {k: len(v) for k, v in t.splits.items()} == {"train": 400, "val": 50, "test": 50}
    assert len(t.shifts["hospital_b"]) == 50
    assert t.spec.num_classes == 6 and t.spec.metric == "accuracy"
    assert build_embedded("mortality", patients=500).options["checksum"] == t.options["checksum"]
    assert build_embedded("mortality", patients=500, data_seed=1).options["checksum"] != t.options["checksum"]
    b = build_embedded("icd9_140_239", patients=500)
    assert b.spec.num_classes == 2 and b.spec.metric == "auprc/present"
    assert b.spec.metrics == ("accuracy", "auroc")


def test_cohort_goes_through_the_real_path_with_missing_values():
    a = ic.generate(2000, seed=3)
    checked = mp.check_arrays(a, "cohort")
    assert np.isnan(checked["ep_tdata"]).any()  # hours before the first measurement
    b = ic.generate(2000, seed=3, hospital=ic.HOSPITAL_B)
    assert b["adm_features_all"][:, 0].mean() > a["adm_features_all"][:, 0].mean() + 5  # older
    assert np.isnan(b["ep_tdata"]).mean() > np.isnan(a["ep_tdata"]).mean()  # sparser measurement
    cls = mp.labels(a, "mortality")
    share = np.bincount(cls, minlength=6) / len(cls)
    assert 0.5 < share[0] < 0.7 and (share[1:] > 0.04).all()


def _auroc(features: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(features)
    half = len(y) // 2
    model = LogisticRegression(max_iter=2000).fit(x[:half], y[:half])
    return roc_auc_score(y[half:], model.predict_proba(x[half:])[:, 1])


def test_cohort_labels_depend_on_the_modalities_as_documented():
    """Neoplasms from the static features, respiratory from the series, mortality from their
    interaction: linear probes on each modality and on both with their products."""
    a = ic.generate(8000, seed=5)
    static = mp.zero_nonfinite(a["adm_features_all"])
    static = np.concatenate([static, np.eye(3)[static[:, 2].astype(int)]], 1)  # admission one-hot
    series = mp.zero_nonfinite(a["ep_tdata"])
    summary = np.concatenate([series.mean(1), series[:, -6:].mean(1) - series[:, :6].mean(1)], 1)
    neo, resp = a["y_icd9"][:, 1], a["y_icd9"][:, 7]
    # the series see a little of the static features (through the severity's start), no more
    assert _auroc(static, neo) > 0.8 and _auroc(static, neo) - _auroc(summary, neo) > 0.15
    assert _auroc(summary, resp) > 0.8 and _auroc(static, resp) < 0.6
    dead = (mp.labels(a, "mortality") > 0).astype(int)
    both = np.concatenate([static, summary, (static[:, :, None] * summary[:, None, :]).reshape(len(dead), -1)], 1)
    alone = max(_auroc(static, dead), _auroc(summary, dead))
    assert _auroc(both, dead) > alone + 0.1


# ------------------------------------------------------------------------------ architectures
def _count(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("task, classes", [("mortality", 6), ("icd9_140_239", 2)])
def test_models_have_the_official_shapes(task, classes):
    from torch import nn

    spec = task_spec(task, "real")
    inter = build_fusion("late_fusion", spec, operator="concat", width=None, hidden=40)
    assert inter.encoders["static"].out_dim == 10 and inter.encoders["timeseries"].out_dim == 720
    # official: MLP(5, 10, 10), GRU(12, 30), MLP(730, 40, C)
    official = [nn.Linear(5, 10), nn.Linear(10, 10), nn.GRU(12, 30), nn.Linear(730, 40),
                nn.Linear(40, classes)]
    assert _count(inter) == _count(*official)
    assert not isinstance(inter.encoders["static"].net[-1], nn.ReLU)  # fc2 has no activation
    series = build_fusion("unimodal", spec, modality="timeseries", width=None, hidden=40,
                          encoder_options={"step_dim": 15})
    assert series.encoder.out_dim == 360  # GRUWithLinear(12, 30, 15), flattened
    assert _count(series) == _count(nn.GRU(12, 30), nn.Linear(30, 15), nn.Linear(360, 40),
                                    nn.Linear(40, classes))
    i2m2 = build_fusion("i2m2", spec, inter="late_fusion",
                        inter_options={"width": None, "hidden": 40},
                        intra_options={"width": None, "hidden": 40, "per_modality":
                                       {"timeseries": {"encoder_options": {"step_dim": 15}}}})
    static = build_fusion("unimodal", spec, modality="static", width=None, hidden=40)
    assert _count(i2m2) == _count(inter) + _count(series) + _count(static)
    batch = task_and_batch(task)
    out = i2m2(batch)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "static": (4, classes), "timeseries": (4, classes), "inter": (4, classes)}
    with pytest.raises(ValueError, match="per_modality"):
        build_fusion("intra_only", spec, intra_options={"per_modality": {"vitals": {}}})


def task_and_batch(task: str):
    t = build_embedded(task, patients=100)
    return t.splits["train"].batch(torch.arange(4), t.spec)


# ------------------------------------------------------------------------------ the suite
def test_suite_writes_one_board_per_task(tmp_path):
    from i2m2bench.harness.runner import run_suite
    from i2m2bench.harness.store import read_rows

    gin_dir = __import__("pathlib").Path(__file__).resolve().parents[1] / "gin"
    run = run_suite([gin_dir / "mimic_smoke.gin"],
                    ["suite.dataset_options = {'source': 'embedded', 'patients': 100}"],
                    methods=["static_only", "i2m2"], out=tmp_path / "runs",
                    results_dir=tmp_path / "lb", progress=False, log=lambda s: None)
    assert not run.failures
    boards = sorted(p.name for p in (tmp_path / "lb").glob("*.md"))
    assert boards == [f"mimic_smoke-{t}-embedded-mimic_{t}.md"
                      for t in ("icd9_140_239", "icd9_460_519", "mortality")]
    for t in ("icd9_140_239", "icd9_460_519", "mortality"):
        rows = read_rows(tmp_path / "lb" / "results" / f"mimic_smoke-{t}-embedded-mimic_{t}.jsonl")
        assert {r["setting"] for r in rows} == {t} and {r["dataset"] for r in rows} == {f"mimic_{t}"}
        text = (tmp_path / "lb" / f"mimic_smoke-{t}-embedded-mimic_{t}.md").read_text()
        assert "EMBEDDED" in text and ("auprc/present" in text) == (t != "mortality")


def test_suite_boards_setting_is_checked():
    from i2m2bench.harness.config import SettingError, SuiteConfig

    with pytest.raises(SettingError, match="suite.boards must be 'one'"):
        SuiteConfig(name="s", dataset="mimic", methods=("a",), boards="each")


def test_suite_on_real_files_names_its_boards_by_task(tmp_path):
    from i2m2bench.harness.runner import run_suite
    from i2m2bench.harness.store import read_rows

    root = _root(tmp_path, _arrays(60))
    mr.prepare(root / "mimic")
    gin_dir = __import__("pathlib").Path(__file__).resolve().parents[1] / "gin"
    run = run_suite([gin_dir / "mimic_smoke.gin"], ["suite.dataset_options = {'source': 'auto'}"],
                    methods=["late_fusion"], data_root=str(root), out=tmp_path / "runs",
                    results_dir=tmp_path / "lb", progress=False, log=lambda s: None)
    assert not run.failures
    assert sorted(p.name for p in (tmp_path / "lb").glob("*.md")) == [
        "mimic_smoke-icd9_140_239.md", "mimic_smoke-icd9_460_519.md", "mimic_smoke-mortality.md"]
    rows = read_rows(tmp_path / "lb" / "results" / "mimic_smoke-mortality.jsonl")
    assert {r["data_source"] for r in rows} == {"real"}
    assert not any(str(r["protocol"]).startswith("shift:") for r in rows)  # no shift set on real data
    assert {r["protocol"] for r in rows} >= {"test", "missing:static", "missing:timeseries"}
