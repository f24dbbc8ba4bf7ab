"""VQA-VS: the real layout (JSON through Hugging Face datasets, answers, soft scores, images),
feature extraction with a tiny random FLAVA backbone, the prepared features and their checks, and
the embedded scene world's shortcuts and OOD sets."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from i2m2bench.data import DataError, build_task
from i2m2bench.data.vqa_vs import real as vr

pytest.importorskip("transformers")
from vl_fixtures import tiny_backbone, vqa_vs_root  # noqa: E402


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("flava"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, backbone):
    root = vqa_vs_root(tmp_path_factory.mktemp("data"))
    vr.prepare(root / "vqa_vs", str(backbone), batch_size=5, device="cpu", progress=False)
    return root


# ------------------------------------------------------------------------------ answers
@pytest.mark.parametrize("raw, norm", [("Two", "2"), ("no.", "no"), ("The Red  Car", "red car"),
                                       ("3.5", "3.5"), ("yes!", "yes"), ("a dog's toy", "dog's toy")])
def test_normalize(raw, norm):
    assert vr.normalize(raw) == norm


def test_vocabulary_and_soft_scores_follow_the_official_rules():
    answers = {i: {"multiple_choice_answer": a} for i, a in enumerate(["yes"] * 9 + ["no"] * 8 + ["Two"] * 9)}
    assert vr.vocabulary(answers) == ["2", "yes"]  # >= 9 questions; "Two" normalised to "2"
    q = [{"question_id": 0}]
    ann = {0: {"answers": [{"answer": a} for a in ["yes"] * 2 + ["2"] * 3 + ["two"] * 1 + ["no"] * 4]}}
    t = vr.soft_targets(q, ann, ["2", "yes"])
    np.testing.assert_allclose(t, [[1.0, 0.6]])  # 4 x "2" -> min(1, 1.2); 2 x yes -> 0.6


# ------------------------------------------------------------------------------ prepare and load
def test_prepare_then_load(prepared):
    task = build_task("vqa_vs", data_root=str(prepared))
    assert task.spec.problem == "soft-score" and task.spec.source == "real"
    assert set(task.spec.labels) == {"2", "yes", "no"}  # "Two" -> "2", "no." -> "no"; "red" too rare
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 40, "val": 8, "test": 12}
    assert sorted(task.shifts) == sorted(vr.OOD_SETS) and len(task.shifts["QT"]) == 8
    assert task.spec.modality("joint").derived_from == ("image", "text")
    batch = task.splits["test"].batch(torch.arange(3), task.spec)
    assert batch.inputs["image"].shape == (3, 16) and batch.inputs["joint"].shape == (3, 16)
    # an OOD set's rows are the IID test rows of its question ids
    test = task.splits["test"]
    qt = task.shifts["QT"]
    ids_test = np.load(prepared / "vqa_vs" / "features" / "test" / "ids.npy")
    ids_qt = np.load(prepared / "vqa_vs" / "features" / "QT" / "ids.npy")
    rows = torch.tensor([int(np.flatnonzero(ids_test == i)[0]) for i in ids_qt])
    torch.testing.assert_close(qt.batch(torch.arange(len(qt)), task.spec).inputs["text"],
                               test.batch(rows, task.spec).inputs["text"])
    assert float(task.splits["train"].target.max()) == 1.0  # 7 annotators agree


def test_changed_features_are_refused(prepared, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(prepared, root)
    feats = root / "vqa_vs" / "features"
    a = np.load(feats / "val" / "text.npy")
    np.save(feats / "val" / "text.npy", a[:-1])  # one row short
    with pytest.raises(DataError, match=r"val/text.npy: shape .* but .*manifest.json records"):
        build_task("vqa_vs", data_root=str(root))
    np.save(feats / "val" / "text.npy", a + 1)  # same shape, other bytes
    with pytest.raises(DataError, match="sha256 differs"):
        build_task("vqa_vs", data_root=str(root), verify="full")
    np.save(feats / "val" / "text.npy", a)
    qs = json.loads((root / "vqa_vs" / "Val" / "Val-Ques.json").read_text())
    (root / "vqa_vs" / "Val" / "Val-Ques.json").write_text(json.dumps(qs[::-1]))
    with pytest.raises(DataError, match=r"Val-Ques.json: its bytes changed since it was prepared"
                                         r".*stale: run `python -m i2m2bench prepare vqa-vs"):
        build_task("vqa_vs", data_root=str(root))


# ------------------------------------------------------------------------------ bad input
def _fresh(tmp_path):
    return vqa_vs_root(tmp_path / "d", n_train=40, n_val=4, n_test=6)


def test_malformed_json_names_file_and_position(tmp_path, backbone):
    root = _fresh(tmp_path)
    path = root / "vqa_vs" / "Val" / "Val-Ans.json"
    text = path.read_text()
    path.write_text(text[:200] + "}" + text[200:])
    with pytest.raises(DataError) as info:
        vr.prepare(root / "vqa_vs", str(backbone), progress=False)
    assert str(path) in str(info.value) and "line 1 column 201" in str(info.value)
    assert not (root / "vqa_vs" / "features").exists()  # nothing written


def test_question_without_answers(tmp_path, backbone):
    root = _fresh(tmp_path)
    path = root / "vqa_vs" / "IID-Test" / "IID-Test-Ans.json"
    ans = json.loads(path.read_text())
    path.write_text(json.dumps(ans[1:]))
    with pytest.raises(DataError, match=r"IID-Test-Ans.json: 1 question id\(s\) .* have no answers"):
        vr.prepare(root / "vqa_vs", str(backbone), progress=False)
    assert not (root / "vqa_vs" / "features").exists()


def test_missing_field_and_missing_image(tmp_path, backbone):
    root = _fresh(tmp_path)
    path = root / "vqa_vs" / "Training" / "Training-Ques.json"
    qs = json.loads(path.read_text())
    del qs[3]["image_id"]
    path.write_text(json.dumps(qs))
    with pytest.raises(DataError, match=r"Training-Ques.json: entry 3: field 'image_id' is missing"):
        vr.prepare(root / "vqa_vs", str(backbone), progress=False)
    root = _fresh(tmp_path / "b")
    for p in (root / "coco").rglob("*.jpg"):
        p.unlink()
        break
    with pytest.raises(DataError, match=r"image id \d+ \(field 'image_id' of the questions\): no image at any of .*COCO_train2014_.*COCO_val2014_"):
        vr.prepare(root / "vqa_vs", str(backbone), progress=False)
    assert not (root / "vqa_vs" / "features").exists()


def test_ood_question_outside_the_iid_test_set(tmp_path, backbone):
    root = _fresh(tmp_path)
    path = root / "vqa_vs" / "OOD-Test" / "KO" / "OOD-Test-KO-Ques.json"
    qs = json.loads(path.read_text())
    qs.append({"image_id": 1, "question": "x", "question_id": 5})
    path.write_text(json.dumps(qs))
    with pytest.raises(DataError, match="OOD-Test-KO-Ques.json: 1 question id.* not in the IID test set"):
        vr.prepare(root / "vqa_vs", str(backbone), progress=False)


def test_extraction_resumes_after_an_interruption(tmp_path, backbone):
    from i2m2bench.data.common import vl_features as vf
    from vl_fixtures import write_image

    items = []
    for k in range(7):
        write_image(tmp_path / f"im{k}.png", k, "PNG")
        items.append(vf.Item(k, (tmp_path / f"im{k}.png",), "what is the color"))
    full = vf.extract(str(backbone), items, tmp_path / "a", batch_size=3, progress=False, log=lambda s: None)
    whole = np.load(tmp_path / "a" / "joint.npy")
    # an interrupted run: the first batch done, the second fails on a broken image
    (tmp_path / "im4.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="im4.png: not an image"):
        vf.extract(str(backbone), items, tmp_path / "b", batch_size=3, progress=False, log=lambda s: None)
    assert json.loads((tmp_path / "b" / "progress.json").read_text()) == {"rows": 3}
    write_image(tmp_path / "im4.png", 4, "PNG")
    vf.extract(str(backbone), items, tmp_path / "b", batch_size=3, progress=False, log=lambda s: None)
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "joint.npy"), whole)
    assert full["joint"] == (7, 16) and not (tmp_path / "b" / "progress.json").exists()


def test_cli_prepare_checks_the_files_and_then_needs_a_backbone(tmp_path):
    env = {**os.environ, "I2M2BENCH_PLUGINS": "0"}
    root = _fresh(tmp_path)
    r = subprocess.run([sys.executable, "-m", "i2m2bench", "prepare", "vqa-vs", "--data-root",
                        str(root)], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "check out" in r.stderr and "--backbone DIR" in r.stderr
    path = root / "vqa_vs" / "Val" / "Val-Ques.json"
    path.write_text(path.read_text()[:-2])  # malformed: found before any backbone is needed
    r = subprocess.run([sys.executable, "-m", "i2m2bench", "prepare", "vqa-vs", "--data-root",
                        str(root)], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "Val-Ques.json: malformed JSON at line 1" in r.stderr
    # run reads the prepared features only (the JSON is prepare's): unprepared, it says which
    # prepare to type
    with pytest.raises(DataError, match=r"features/manifest.json: not found; the features are "
                       r"not prepared yet: run `python -m i2m2bench prepare vqa-vs"):
        build_task("vqa_vs", data_root=str(root))
    assert not (root / "vqa_vs" / "features").exists()


# ------------------------------------------------------------------------------ embedded world
def test_embedded_world_plants_shortcuts_that_the_ood_sets_break():
    from collections import Counter, defaultdict

    from i2m2bench.data.vqa_vs import embedded as vw

    shortcuts = vw.shortcut_answers(vw.draw_pool(20000, 999))
    pool = vw.draw_pool(60000, 1)
    index = vw.draw_splits(pool, vw.planted_weights(pool, shortcuts),
                           {"train": 12000, "test": 6000}, 1)
    ood = vw.ood_sets(pool, index["test"])
    assert set(ood) == set(vw.KINDS) and all(len(v) > 100 for v in ood.values())
    for kind in ("QT", "QT+KW", "KO"):
        by = defaultdict(Counter)
        for i in index["train"]:
            by[pool.concepts[i][kind]][pool.questions[i].answer] += 1
        prior = lambda rows: np.mean([by[pool.concepts[i][kind]].most_common(1)[0][0]  # noqa: E731
                                      == pool.questions[i].answer for i in rows])
        iid, shifted = prior(index["test"]), prior(index["test"][ood[kind]])
        assert iid > 0.25 and shifted < 0.05, (kind, iid, shifted)  # the shortcut fails there
    # template mix kept (within 2 points of uniform)
    mix = Counter(pool.questions[i].template for i in index["train"])
    assert max(mix.values()) / len(index["train"]) < 1 / 7 + 0.02


def test_smoke_suite_board_has_the_ood_mean_and_the_poe_share(tmp_path):
    from pathlib import Path

    from i2m2bench.harness.runner import run_suite
    from i2m2bench.harness.store import read_rows

    gin_dir = Path(__file__).resolve().parents[1] / "gin"
    run_suite([gin_dir / "vqa_vs_smoke.gin"],
              ["suite.dataset_options = {'source': 'embedded', 'train': 600, 'val': 200, "
               "'test': 2000, 'pool': 12000}"],
              methods=["text_only", "i2m2"], out=tmp_path / "runs", results_dir=tmp_path / "lb",
              progress=False, log=lambda s: None)
    rows = read_rows(tmp_path / "lb" / "results" / "vqa_vs_smoke-embedded-vqa_vs.jsonl")
    shifts = {r["protocol"] for r in rows if r["protocol"].startswith("shift:")}
    assert shifts == {f"shift:{s}" for s in ("QT", "KW", "KWP", "QT+KW", "KO", "KOP", "QT+KO",
                                             "KW+KO", "QT+KW+KO")}
    mean = {}
    for m in ("text_only", "i2m2"):
        vals = [r["value"] for r in rows if r["method"] == m and r["protocol"] in shifts]
        mean[m] = sum(vals) / len(vals)
    text = (tmp_path / "lb" / "vqa_vs_smoke-embedded-vqa_vs.md").read_text()
    assert "shift mean vqa_score (%)" in text
    line = next(x for x in text.splitlines() if x.startswith("| I2M2"))
    assert f"{100 * mean['i2m2']:.2f}" in line  # one seed: its mean of the nine sets
    assert "spent in the product of experts" in text and "`i2m2`" in text.split("product of experts")[-1]
    shares = [r["value"] for r in rows if r["metric"] == "poe_share"]
    assert len(shares) == 1 and 0 < shares[0] < 1  # the PoE model only


def test_a_world_too_small_for_an_ood_set_is_a_clear_error():
    from i2m2bench.data.vqa_vs import build_embedded

    with pytest.raises(ValueError, match="OOD set .* is empty.* give a larger 'test'"):
        build_embedded(train=300, val=100, test=300, pool=3000)


def test_images_are_checked_before_anything_is_written(tmp_path, backbone):
    root = _fresh(tmp_path)
    image = next((root / "coco" / "val2014").glob("*.jpg"))
    image.write_text("not an image at all")
    with pytest.raises(DataError, match=f"{image.name}: not an image"):
        vr.prepare(root / "vqa_vs", str(backbone), progress=False)
    assert not (root / "vqa_vs" / "features").exists()


def test_images_are_found_in_the_other_documented_folders(tmp_path):
    base = tmp_path / "VQA-VS"  # the official folder name
    for where in (base / "images", tmp_path, base):  # the dataset's images/, the data root, itself
        (where / "val2014").mkdir(parents=True)
        p = where / "val2014" / "COCO_val2014_000000000042.jpg"
        p.write_bytes(b"x")
        assert vr.image_path(base, 42) == p
        p.unlink()
    with pytest.raises(DataError, match=r"image id 43 \(field 'image_id' of the questions\): no "
                       r"image at any of .*coco/train2014/COCO_train2014_000000000043.jpg, .*"
                       r"VQA-VS/val2014/COCO_val2014_000000000043.jpg$"):
        vr.image_path(base, 43)
