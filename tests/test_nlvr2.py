"""NLVR2: the real layout (JSON Lines through Hugging Face datasets, image pairs whatever their
real format), feature extraction for pairs, consistency groups, the checks on bad input, and the
embedded pair world."""
from __future__ import annotations

import json

import pytest
import torch

from i2m2bench.data import DataError, build_task
from i2m2bench.data.nlvr2 import real as nr

pytest.importorskip("transformers")
from vl_fixtures import nlvr2_root, tiny_backbone  # noqa: E402


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("flava"))


def test_prepare_then_load_with_pairs_and_groups(tmp_path, backbone):
    root = nlvr2_root(tmp_path)
    nr.prepare(root / "nlvr2", str(backbone), batch_size=3, device="cpu", progress=False)
    task = build_task("nlvr2", data_root=str(root))
    assert task.spec.metric == "accuracy" and "consistency" in task.spec.metrics
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 8, "val": 8, "test": 8}
    b = task.splits["val"].batch(torch.arange(2), task.spec)
    assert b.inputs["image"].shape == (2, 32)  # two 16-d image features side by side
    assert b.inputs["joint"].shape == (2, 32) and b.inputs["text"].shape == (2, 16)
    # consistency groups: the identifier without its pair number -> 4 sentences of 2 pairs
    groups = task.splits["test"].groups
    assert len(set(groups.tolist())) == 4 and torch.bincount(groups).tolist() == [2, 2, 2, 2]
    labels = [json.loads(x)["label"] == "True" for x in (root / "nlvr2" / "data" / "test1.json").read_text().splitlines()]
    assert task.splits["test"].target.tolist() == [int(v) for v in labels]


@pytest.mark.parametrize("change, words", [
    (lambda r: r.pop("label"), ["dev.json", "line 3", "'label' is missing"]),
    (lambda r: r.__setitem__("label", "maybe"), ["dev.json", "line 3", "'label' is 'maybe'",
                                                 "a label true or false (any case"]),
    (lambda r: r.__setitem__("identifier", "dev-1-0"), ["dev.json", "line 3", "'identifier'"]),
])
def test_bad_lines_name_file_and_line(tmp_path, backbone, change, words):
    root = nlvr2_root(tmp_path)
    path = root / "nlvr2" / "data" / "dev.json"
    lines = path.read_text().splitlines()
    row = json.loads(lines[2])
    change(row)
    lines[2] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as info:
        nr.prepare(root / "nlvr2", str(backbone), progress=False)
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert not (root / "nlvr2" / "features").exists()


def test_malformed_line_and_missing_or_broken_image(tmp_path, backbone):
    root = nlvr2_root(tmp_path)
    path = root / "nlvr2" / "data" / "test1.json"
    lines = path.read_text().splitlines()
    lines[4] = lines[4][:-3]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"test1.json: malformed JSON at line 5 column"):
        nr.prepare(root / "nlvr2", str(backbone), progress=False)
    root = nlvr2_root(tmp_path / "b")
    missing = root / "nlvr2" / "images" / "dev" / "dev-2-1-img1.png"
    missing.unlink()
    with pytest.raises(DataError, match=r"dev-2-1-img1.png: not found \(image img1 of example dev-2-1-0; "
                       r"its split.s images were found in the layout nlvr2/images/dev/\)"):
        nr.prepare(root / "nlvr2", str(backbone), progress=False)
    assert not (root / "nlvr2" / "features").exists()
    root = nlvr2_root(tmp_path / "c")
    broken = root / "nlvr2" / "images" / "train" / "0" / "train-0-1-img0.png"
    broken.write_text("this is text, not an image")
    with pytest.raises(DataError, match=r"train-0-1-img0.png: not an image"):
        nr.prepare(root / "nlvr2", str(backbone), progress=False)
    assert not (root / "nlvr2" / "features").exists()  # checked before anything is written


def test_features_of_other_examples_are_refused(tmp_path, backbone):
    root = nlvr2_root(tmp_path)
    nr.prepare(root / "nlvr2", str(backbone), batch_size=4, device="cpu", progress=False)
    path = root / "nlvr2" / "data" / "dev.json"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[0]["label"] = "True" if rows[0]["label"] == "False" else "False"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"dev.json: \d+ bytes, but it had \d+ when prepared.*"
                                         r"stale: run `python -m i2m2bench prepare nlvr2"):
        build_task("nlvr2", data_root=str(root))


def test_embedded_pairs_are_balanced_per_sentence_and_hold_out_combinations():
    from i2m2bench.data.nlvr2 import embedded as nw

    items = nw.draw_items(200, 3)
    for g in set(items.group.tolist()):
        labels = items.label[items.group == g]
        assert len(labels) == nw.PAIRS_PER_SENTENCE and labels.sum() == nw.PAIRS_PER_SENTENCE // 2
    for i in range(0, len(items.label), 37):  # each label is the sentence's truth on its pair
        s = items.sentences[i]
        assert s.holds(items.left.objects(i), items.right.objects(i)) == bool(items.label[i])
        assert (s.template, s.word) not in nw.HELD_OUT
    held = nw.draw_items(40, 4, held_out=True)
    assert all((s.template, s.word) in nw.HELD_OUT for s in held.sentences)
