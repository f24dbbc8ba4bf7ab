"""The layouts the official tools leave, accepted as they unpack (issue: official downloads at
full scale): NLVR2's images where the official I2M2 writer reads them, in one flat folder as
NLVR2's downloader saves them, or without the numbered training folders, labels in any case or as
JSON booleans; VQA-VS under ``VQA-VS/`` or ``vqa_vs/`` with COCO's folders at the data root, the
dataset folder or ``coco/``, and the IID test answers from ``test_annotations.json``. Each one
prepared and loaded end to end; each failure one line naming the file, nothing half-written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from i2m2bench.data import DataError, build_task

pytest.importorskip("transformers")
from vl_fixtures import nlvr2_root, tiny_backbone, vqa_vs_root  # noqa: E402

from i2m2bench.data.nlvr2 import real as nr  # noqa: E402


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return tiny_backbone(tmp_path_factory.mktemp("flava"))


def _move_images(root: Path, target) -> None:
    """Move every image of ``root/nlvr2/images`` to ``target(split, directory or None)``."""
    src = root / "nlvr2" / "images"
    aside = root / "aside"
    shutil.move(src, aside)
    for p in sorted(aside.rglob("*.png")):
        split = p.relative_to(aside).parts[0]
        directory = p.parent.name if split == "train" else None
        dst = target(split, directory) / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(p, dst)
    shutil.rmtree(aside)


def _labels(root: Path) -> dict:
    out = {}
    for split in ("train", "dev", "test1"):
        rows = [json.loads(x) for x in (root / "nlvr2" / "data" / f"{split}.json").read_text().splitlines()]
        out[split] = [r["label"] in (True, "True", "true", "TRUE") for r in rows]
    return out


LAYOUTS = {
    # divyam3897/I2M2 @ 7742765, vqa_nlvr/fiber/utils/write_nlvr2.py L17-21: train images in
    # <root>/images/train/<directory>/, the others in <root>/<split>/ (root: the data root)
    "official-writer": (lambda root: lambda split, d: root / "images" / "train" / d if split == "train"
                        else root / split,
                        {"train": "images/train/<directory>/ under the data root",
                         "dev": "dev/ under the data root", "test1": "test1/ under the data root"}),
    # lil-lab/nlvr @ 18924841, nlvr2/util/download_images.py L13, L42: every image of a split
    # saved into the one folder given on the command line
    "flat": (lambda root: lambda split, d: root / "nlvr2" / "images",
             dict.fromkeys(("train", "dev", "test1"), "nlvr2/images/ (one flat folder)")),
    "train-without-directories": (lambda root: lambda split, d: root / "nlvr2" / "images" / split,
                                  {"train": "nlvr2/images/train/", "dev": "nlvr2/images/dev/",
                                   "test1": "nlvr2/images/test1/"}),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_nlvr2_images_in_the_layouts_the_official_tools_leave(tmp_path, backbone, layout):
    root = nlvr2_root(tmp_path)
    target, found = LAYOUTS[layout]
    _move_images(root, target(root))
    nr.prepare(root / "nlvr2", str(backbone), batch_size=8, device="cpu", progress=False)
    manifest = json.loads((root / "nlvr2" / "features" / "manifest.json").read_text())
    assert manifest["layouts"] == found
    task = build_task("nlvr2", data_root=str(root))
    want = _labels(root)
    for name, split in nr.SPLITS.items():
        assert task.splits[name].target.tolist() == [int(x) for x in want[split]]


def test_nlvr2_labels_in_any_case_and_as_json_booleans(tmp_path, backbone):
    """NLVR2's files write "True"/"False"; its README says "true or false" and its scorer
    compares lower case (lil-lab/nlvr @ 18924841, nlvr2/README.md L18, eval/metrics.py L44)."""
    root = nlvr2_root(tmp_path)
    spellings = {"train": str.lower, "dev": str.upper, "test1": lambda s: s == "True"}
    for split, spell in spellings.items():
        path = root / "nlvr2" / "data" / f"{split}.json"
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "label": spell(r["label"])}) + "\n" for r in rows))
    nr.prepare(root / "nlvr2", str(backbone), batch_size=8, device="cpu", progress=False)
    task = build_task("nlvr2", data_root=str(root))
    want = _labels(root)
    assert task.splits["test"].target.tolist() == [int(x) for x in want["test1"]]
    assert sum(want["train"]) == len(want["train"]) // 2  # the fixture's balance, read back


def test_nlvr2_images_in_no_known_layout_list_every_place_looked(tmp_path, backbone):
    root = nlvr2_root(tmp_path)
    _move_images(root, lambda split, d: tmp_path / "elsewhere" / split)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    with pytest.raises(DataError) as info:
        nr.prepare(root / "nlvr2", str(backbone), batch_size=8, device="cpu", progress=False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("NLVR2 train: image train-0-0-img0.png")
    for place in ("nlvr2/images/train/<directory>/", "images/train/<directory>/ under the data "
                  "root", "nlvr2/train/", "nlvr2/images/ (one flat folder)",
                  "images/ under the data root (one flat folder)"):
        assert place in msg, place
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


def test_a_truncated_image_fails_the_prepare_naming_it_and_writes_nothing(tmp_path, backbone):
    """A JPEG whose header is fine but whose body is cut: the header check passes, decoding
    fails during extraction; one line naming the file, and no features folder (the finished
    batches stay in the hidden partial folder for the next prepare)."""
    root = nlvr2_root(tmp_path)
    jpeg = next(p for p in sorted((root / "nlvr2" / "images" / "dev").glob("*.png"))
                if p.read_bytes()[:2] == b"\xff\xd8")
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[:-60])  # the scan cut short: the header still parses
    with pytest.raises(DataError, match=str(jpeg) + r": not an image Pillow can read \((image "
                       r"file is truncated|Truncated File Read)"):
        nr.prepare(root / "nlvr2", str(backbone), batch_size=8, device="cpu", progress=False)
    assert not (root / "nlvr2" / "features").exists()
    assert np.load(root / "nlvr2" / ".features.partial" / "train" / "ids.npy").shape == (8,)


# ------------------------------------------------------------------------------ VQA-VS
from i2m2bench.data.vqa_vs import real as vr  # noqa: E402


def _as_official(root: Path) -> Path:
    """``root`` rearranged as the official downloads unpack: the dataset folder named ``VQA-VS``
    (PhoebusSi/VQA-VS @ b1249be, Baseline_code/preprocess_text.py L272-287) and COCO's
    ``train2014/``, ``val2014/`` straight under the data root (COCO's zips unpack so)."""
    shutil.move(root / "vqa_vs", root / "VQA-VS")
    for split in ("train2014", "val2014"):
        shutil.move(root / "coco" / split, root / split)
    (root / "coco").rmdir()
    return root / "VQA-VS"


def _test_annotations(base: Path) -> None:
    """``IID-Test-Ans.json`` replaced by the repository's ``test_annotations.json`` (its
    scorer's file: {"annotations": [{"question_id", "answer_count", "answers_word",
    "answer_type"}], "QT_qid": [...], ...}; new_comput_score.py L31-35, L134-144)."""
    ans_path = base / "IID-Test" / "IID-Test-Ans.json"
    rows = []
    for a in json.loads(ans_path.read_text()):
        counts: dict = {}
        for x in a["answers"]:
            counts[x["answer"]] = counts.get(x["answer"], 0) + 1
        rows.append({"question_id": a["question_id"], "answer_count": counts,
                     "answers_word": sorted(counts), "answer_type": a["answer_type"]})
    content = {"annotations": rows}
    for s in vr.OOD_SETS:
        qs = json.loads((base / "OOD-Test" / s / f"OOD-Test-{s}-Ques.json").read_text())
        content[s.replace("+", "") + "_qid"] = [q["question_id"] for q in qs]
    (base / vr.TEST_ANNOTATIONS).write_text(json.dumps(content))
    ans_path.unlink()


def test_vqa_vs_as_the_official_downloads_unpack(tmp_path, backbone, capsys):
    """VQA-VS/ instead of vqa_vs/, COCO at the data root, the IID test answers only in
    test_annotations.json: prepared and loaded, with the same features and soft scores as the
    suite's own layout."""
    ours = vqa_vs_root(tmp_path / "ours")
    official = vqa_vs_root(tmp_path / "official")
    base = _as_official(official)
    _test_annotations(base)
    from i2m2bench.cli import main

    assert main(["prepare", "vqa-vs", "--data-root", str(official), "--backbone", str(backbone),
                 "--device", "cpu", "--no-progress", "--batch-size", "8"]) == 0, capsys.readouterr().err
    vr.prepare(ours / "vqa_vs", str(backbone), batch_size=8, device="cpu", progress=False)
    a = build_task("vqa_vs", data_root=str(official))
    b = build_task("vqa_vs", data_root=str(ours))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a.splits[split].target.numpy(), b.splits[split].target.numpy())
    manifest = json.loads((base / "features" / "manifest.json").read_text())
    assert "VQA-VS/test_annotations.json" in manifest["inputs"]["files"]
    assert "train2014/COCO_train2014_000000000101.jpg" in manifest["inputs"]["files"]


def test_vqa_vs_folder_under_neither_name_says_both(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DataError, match=r"vqa_vs: not found \(nor .*VQA-VS\); the data root"):
        build_task("vqa_vs", data_root=str(tmp_path))


def test_malformed_test_annotations_name_the_file(tmp_path, backbone):
    root = vqa_vs_root(tmp_path)
    base = root / "vqa_vs"
    _test_annotations(base)
    path = base / vr.TEST_ANNOTATIONS
    content = json.loads(path.read_text())
    content["annotations"][2]["answer_count"] = {"yes": "three"}
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=str(path) + r": entry 2: field 'answer_count' is "
                       r"\{'yes': 'three'\}"):
        vr.prepare(base, str(backbone), batch_size=8, device="cpu", progress=False)
    assert not (base / "features").exists()


def test_vl_heads_are_twice_the_backbones_width_on_every_source(tmp_path, backbone):
    """'2x:text' (gin/vqa_vs.gin, gin/nlvr2.gin): the official hidden_dim * 2 -- 1536 on 768-d
    real features, 128 on the embedded 64-d ones, 32 on this fixture's 16-d features."""
    from i2m2bench.fusion.unimodal import Unimodal, resolve_hidden

    root = vqa_vs_root(tmp_path)
    vr.prepare(root / "vqa_vs", str(backbone), batch_size=8, device="cpu", progress=False)
    real = build_task("vqa_vs", data_root=str(root)).spec
    head = Unimodal(real, "joint", width=None, hidden="2x:text", head="ln_gelu").head
    assert head[0].in_features == 16 and head[0].out_features == 32  # the joint of a 16-d backbone
    embedded = build_task("vqa_vs", source="embedded", train=200, val=50, test=2000,
                          pool=12000).spec
    assert resolve_hidden("2x:text", embedded) == 128 and resolve_hidden(7, embedded) == 7
    for bad in ("2x:audio", "twice", "0x:text", -1, True):
        with pytest.raises(ValueError, match=r"hidden .*expected a whole number"):
            resolve_hidden(bad, embedded)


# ------------------------------------------------------------------------------ smoke suites
def test_a_smoke_suite_given_a_data_root_runs_the_smoke_schedule_on_the_real_data(tmp_path, capsys):
    """fastmri_smoke.gin with --data-root: the real cache, one epoch, the embedded sizes left out
    (and said so); without a data root the same suite stays on the embedded phantom."""
    pytest.importorskip("h5py")
    from test_fastmri_real import CROP, W, make_raw

    from i2m2bench.cli import main
    from i2m2bench.data.fastmri import real as fr
    from i2m2bench.harness.store import read_rows

    root = tmp_path / "data"
    F, _ = make_raw(root)
    fr.prepare(F, width=W, crop=CROP, log=lambda _: None)
    args = ["run", "--gin", "fastmri_smoke.gin", "--methods", "magnitude_only", "--no-progress",
            "--gin-param", "train.class_weights = None", "--out", str(tmp_path / "runs"),
            "--leaderboard-dir", str(tmp_path / "lb")]
    assert main([*args, "--data-root", str(root)]) == 0
    err = capsys.readouterr().err
    assert "suite.embedded_options {'patients': 20, 'slices': 6, 'size': 16} not applied" in err
    rows = read_rows(tmp_path / "lb" / "results" / "fastmri_smoke.jsonl")
    assert rows and {r["data_source"] for r in rows} == {"real"}
    assert {r["train"]["epochs"] for r in rows} == {1} and {r["n_train"] for r in rows} == {11}
    assert {r["task_options"]["source"] for r in rows} == {"real"}
    assert main(args) == 0
    assert (tmp_path / "lb" / "fastmri_smoke-embedded-fastmri.md").is_file()


# ------------------------------------------------------------------------------ FastMRI
def test_fastmri_folders_as_the_tarballs_and_the_fastmri_plus_clone_leave_them(tmp_path):
    """Volumes in knee_singlecoil_{train,val}/ and fastMRI+'s csvs in the repository as cloned
    (microsoft/fastmri-plus @ 67ed9a6: Annotations/knee.csv, Annotations/knee_file_list.csv):
    the same cache as the suite's own names give."""
    pytest.importorskip("h5py")
    from test_fastmri_real import CROP, W, make_raw

    from i2m2bench.data.fastmri import real as fr

    ours, _ = make_raw(tmp_path / "ours")
    theirs, _ = make_raw(tmp_path / "theirs")
    for d in ("singlecoil_train", "singlecoil_val"):
        shutil.move(theirs / d, theirs / f"knee_{d}")
    (theirs / "fastmri-plus").mkdir()
    shutil.move(theirs / "fastmri_plus", theirs / "fastmri-plus" / "Annotations")
    a = fr.prepare(ours, width=W, crop=CROP, log=lambda _: None)
    b = fr.prepare(theirs, width=W, crop=CROP, log=lambda _: None)
    for name in ("train_magnitude.npy", "test_labels.npy", "test_undersampled4x_phase.npy"):
        np.testing.assert_array_equal(np.load(a / name), np.load(b / name))
    inputs = json.loads((b / "manifest.json").read_text())["inputs"]["files"]
    assert "fastmri/fastmri-plus/Annotations/knee.csv" in inputs
    assert any(k.startswith("fastmri/knee_singlecoil_train/") for k in inputs)
    shutil.rmtree(theirs / "fastmri-plus")
    for d in ("knee_singlecoil_train", "knee_singlecoil_val"):
        shutil.rmtree(theirs / d)
    with pytest.raises(DataError, match=r"no fastMRI knee data found; .*knee_singlecoil_val/ with "
                       r"fastMRI\+'s knee.csv and knee_file_list.csv in .*fastmri-plus/Annotations/"):
        fr.prepare(theirs, width=W, crop=CROP, log=lambda _: None)
