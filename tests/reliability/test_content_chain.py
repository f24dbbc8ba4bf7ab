"""Prepared data that cannot go stale or mixed (class 1 of the third reliability round): the
content chain of :mod:`i2m2bench.data.common.chain` for FastMRI's cache, the VQA-VS and NLVR2
features and MIMIC's ``mimic.npz``.

Every case asserts the exit code or the error, that the message names the file and the
``prepare`` to rerun, and that nothing already written (the prepared folder, runs, boards)
changed."""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from i2m2bench.cli import main
from i2m2bench.data import DataError, build_task
from i2m2bench.data.common import chain

from .conftest import ROOT, snapshot

h5py = pytest.importorskip("h5py")

from tests.test_fastmri_real import CROP, W, kspace, make_raw, write_volume  # noqa: E402

from i2m2bench.data.fastmri import real as fr  # noqa: E402


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _prep(F: Path, log=None, **kw) -> Path:
    return fr.prepare(F, width=W, crop=CROP, log=log or (lambda _: None), **kw)


def _tree(folder: Path) -> dict:
    """Every path under ``folder`` with the digest of each file (links and hidden files too)."""
    return {**{p.relative_to(folder).as_posix(): None for p in folder.rglob("*")},
            **snapshot(folder)}


@pytest.fixture
def raw(tmp_path):
    """A data root with the raw fastMRI layout, prepared: (root, F, cache, info)."""
    root = tmp_path / "data"
    F, info = make_raw(root)
    return root, F, _prep(F), info


def _replace_inputs(F: Path, tmp_path: Path) -> None:
    """Every volume of ``F`` rewritten with other k-space, and a label row added to knee.csv."""
    other, _ = make_raw(tmp_path / "other", seed=7)
    for p in sorted(F.glob("singlecoil_*/*.h5")):
        shutil.copyfile(other / p.relative_to(F), p)
    with open(F / "fastmri_plus" / "knee.csv", "a") as fh:
        fh.write(f"{sorted(p.stem for p in F.glob('singlecoil_*/*.h5'))[0]},1,No,1,1,1,1,"
                 "Meniscus Tear\n")


FASTMRI_RUN = ("run", "--gin", ROOT / "gin" / "fastmri_smoke.gin", "--gin-param",
               "suite.dataset_options = {'source': 'real'}", "--gin-param",
               "train.class_weights = None", "--methods", "magnitude_only", "--no-progress")


# ------------------------------------------------------------------------------ FastMRI
def test_run_refuses_a_cache_whose_volumes_and_labels_were_replaced(raw, tmp_path, capsys):
    """The hostile case: after prepare, every h5 file and the labels csv replaced -> the next run
    no longer skips as done on the old cache: refused, naming a replaced file and the prepare."""
    root, F, cache, _ = raw
    out, boards = tmp_path / "runs", tmp_path / "lb"
    args = (*FASTMRI_RUN, "--data-root", root, "--out", out, "--leaderboard-dir", boards)
    code, _, err = _cli(capsys, *args)
    assert code == 0, err
    written = {name: _tree(p) for name, p in (("cache", cache), ("runs", out), ("lb", boards))}
    _replace_inputs(F, tmp_path)
    code, _, err = _cli(capsys, *args)
    assert code != 0 and "Traceback" not in err
    assert re.search(r"fastmri/(singlecoil_\w+/file\d+\.h5|fastmri_plus/knee\.csv): (its bytes "
                     r"changed|\d+ bytes, but it had).*stale: run `python -m i2m2bench prepare "
                     r"fastmri", err), err
    code, _, err = _cli(capsys, "verify", "fastmri", "--data-root", root)
    assert code != 0 and "prepare fastmri" in err
    assert {name: _tree(p) for name, p in (("cache", cache), ("runs", out), ("lb", boards))} \
        == written


def test_a_replaced_labels_csv_alone_is_refused(raw):
    root, F, cache, _ = raw
    before = _tree(cache)
    path = F / "fastmri_plus" / "knee.csv"
    path.write_text(path.read_text().replace("Meniscus Tear", "Meniscus TEAR"))  # same size
    with pytest.raises(DataError, match=re.escape(str(path)) + r": its bytes changed since it "
                       r"was prepared .*prepare fastmri"):
        build_task("fastmri", data_root=str(root), source="real")
    assert _tree(cache) == before


def test_an_edited_manifest_is_refused(raw):
    """``mag_ref`` multiplied by 1024 in the manifest (the model would see 1024x magnitudes):
    refused as edited; so is any other field, and a manifest of the format before the chain."""
    root, _, cache, _ = raw
    mpath = cache / "manifest.json"
    text = mpath.read_text()
    for edit in (lambda m: m.update(mag_ref=m["mag_ref"] * 1024),
                 lambda m: m["splits"]["train"]["slices"].append(1),
                 lambda m: m["files"]["val_labels.npy"].update(sha256="0" * 64)):
        m = json.loads(text)
        edit(m)
        mpath.write_text(json.dumps(m))
        with pytest.raises(DataError, match=re.escape(str(mpath)) + r": its content no longer "
                           r"matches its own content_sha256 \(the manifest was edited after "
                           r"prepare\); run `python -m i2m2bench prepare fastmri"):
            build_task("fastmri", data_root=str(root), source="real")
    m = json.loads(text)
    m["version"] = 1
    mpath.write_text(json.dumps(m))
    with pytest.raises(DataError, match=r"cache format version 1; this i2m2bench reads version 2"):
        fr.load_cache(cache)
    mpath.write_text(text)
    assert fr.load_cache(cache).fingerprint == m["content_sha256"]


def test_inputs_with_the_same_bytes_pass_and_deleted_ones_are_not_checked(raw, capsys):
    """Touched (new times, same bytes) inputs are hashed again and pass; raw files deleted once
    prepared are not checked, and verify says how many."""
    root, F, cache, _ = raw
    fingerprint = fr.load_cache(cache).fingerprint
    for p in F.glob("singlecoil_*/*.h5"):
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fr.load_cache(cache).fingerprint == fingerprint
    n = len(list(F.glob("singlecoil_train/*.h5")))
    shutil.rmtree(F / "singlecoil_train")
    task = build_task("fastmri", data_root=str(root), source="real")
    assert task.options["checksum"] == fingerprint
    code, out, err = _cli(capsys, "verify", "fastmri", "--data-root", root)
    assert code == 0, err
    assert f"({n} no longer there, not checked)" in out


def test_other_bytes_with_the_same_size_and_time_are_caught_by_full(raw):
    """The quick level trusts size + modification time (documented); ``full`` hashes every
    input and catches a same-size rewrite whose time was put back."""
    root, F, cache, _ = raw
    path = sorted(F.glob("singlecoil_val/*.h5"))[0]
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    fr.load_cache(cache, verify="quick")
    with pytest.raises(DataError, match=re.escape(str(path)) + r": its bytes changed"):
        fr.load_cache(cache, verify="full")


def test_a_volume_absent_when_prepared_appearing_is_refused(raw):
    root, F, cache, info = raw
    vid = sorted(info["absent"])[0]
    path = F / "singlecoil_train" / f"{vid}.h5"
    write_volume(path, kspace(np.random.default_rng(3), 2, 64, 36))
    with pytest.raises(DataError, match=re.escape(str(path)) + r": on disk now, but absent when "
                       r"prepared.*prepare fastmri"):
        build_task("fastmri", data_root=str(root), source="real")


def test_the_same_inputs_prepared_elsewhere_have_the_same_identity(raw, tmp_path):
    """The seal leaves out where and when: the same files under another data root give the same
    fingerprint (hence unit hashes); other files give another."""
    root, F, cache, _ = raw
    elsewhere = tmp_path / "moved" / "fastmri"
    shutil.copytree(F, elsewhere, ignore=shutil.ignore_patterns("cache"))
    for p in elsewhere.rglob("*"):  # new times too
        os.utime(p, ns=(1, 1))
    assert fr.load_cache(_prep(elsewhere)).fingerprint == fr.load_cache(cache).fingerprint
    other, _ = make_raw(tmp_path / "other", seed=5)
    assert fr.load_cache(_prep(other)).fingerprint != fr.load_cache(cache).fingerprint


def test_killed_prepares_leave_nothing_after_the_next_one(raw, monkeypatch):
    """A prepare interrupted while writing keeps the old cache whole and leaves no temporary
    folder; folders left by killed ones (SIGKILL runs no cleanup) are removed by the next."""
    from i2m2bench.data.fastmri import real_prepare

    root, F, cache, _ = raw
    before = _tree(cache)
    real_write = real_prepare._write_split

    def killed(plan, split, *a, **kw):
        if split == "val":
            raise KeyboardInterrupt
        return real_write(plan, split, *a, **kw)

    monkeypatch.setattr(real_prepare, "_write_split", killed)
    with pytest.raises(KeyboardInterrupt):
        _prep(F)
    monkeypatch.setattr(real_prepare, "_write_split", real_write)
    assert _tree(cache) == before and sorted(p.name for p in F.iterdir() if p.name.startswith(".")) == []
    for name in (".cache.prepare-k1", ".cache.prepare-k2", ".cache.old-123-ab"):  # as SIGKILL leaves
        (F / name).mkdir()
        (F / name / "train_magnitude.npy").write_bytes(b"\0" * 4096)
    log = []
    _prep(F, log=log.append)
    assert sorted(p.name for p in F.iterdir() if p.name.startswith(".")) == []
    assert sum("left by an interrupted prepare" in line for line in log) == 3
    assert fr.load_cache(cache, verify="full").fingerprint == json.loads(
        (cache / "manifest.json").read_text())["content_sha256"]


def test_a_symlinked_cache_folder_is_written_where_it_points(raw, tmp_path):
    root, F, cache, _ = raw
    big = tmp_path / "big_disk" / "fastmri_cache"
    shutil.move(cache, big)
    cache.symlink_to(big, target_is_directory=True)
    fingerprint = fr.load_cache(cache).fingerprint
    _replace_inputs(F, tmp_path)
    with pytest.raises(DataError, match="stale"):
        fr.load_cache(cache)
    _prep(F)
    assert cache.is_symlink() and os.readlink(cache) == str(big)
    assert fr.load_cache(cache).fingerprint != fingerprint
    assert sorted(p.name for p in big.parent.iterdir()) == ["fastmri_cache"]  # no leftovers


def test_a_second_prepare_of_the_same_cache_is_refused(raw):
    root, F, cache, _ = raw
    before = _tree(F)
    lock = F / ".cache.lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DataError, match=re.escape(str(cache)) + r": another prepare is "
                           r"writing the fastMRI cache \(it holds .*\.cache\.lock\); wait"):
            _prep(F)
    finally:
        os.close(fd)
        lock.unlink()
    assert _tree(F) == before


# ------------------------------------------------------------------------------ VQA-VS, NLVR2
pytest.importorskip("transformers")
from tests.vl_fixtures import nlvr2_root, tiny_backbone, vqa_vs_root, write_image  # noqa: E402

from i2m2bench.data.common import vl_features as vf  # noqa: E402
from i2m2bench.data.nlvr2 import real as nr  # noqa: E402
from i2m2bench.data.vqa_vs import real as vr  # noqa: E402


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    """Two tiny FLAVA backbones with different weights: (a, b)."""
    import torch
    from transformers import FlavaModel

    a = tiny_backbone(tmp_path_factory.mktemp("flava_a"))
    b = tmp_path_factory.mktemp("flava_b") / "model"
    shutil.copytree(a, b)
    model = FlavaModel.from_pretrained(b)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    model.save_pretrained(b)
    return a, b


@pytest.fixture(scope="module")
def vqa_prepared(tmp_path_factory, backbones):
    root = vqa_vs_root(tmp_path_factory.mktemp("vqa"))
    vr.prepare(root / "vqa_vs", str(backbones[0]), batch_size=8, device="cpu", progress=False)
    return root


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(root, dst, symlinks=True)
    return dst


def _reword(base: Path) -> Path:
    path = base / "Training" / "Training-Ques.json"
    qs = json.loads(path.read_text())
    for q in qs:
        q["question"] = q["question"].replace("what", "which")
    path.write_text(json.dumps(qs))
    return path


def _reanswer(base: Path) -> Path:
    path = base / "Val" / "Val-Ans.json"
    ans = json.loads(path.read_text())
    for a in ans:
        a["multiple_choice_answer"] = "no"
        for x in a["answers"]:
            x["answer"] = "no"
    path.write_text(json.dumps(ans))
    return path


def _new_image(base: Path) -> Path:
    path = sorted((base.parent / "coco").rglob("*.jpg"))[0]
    write_image(path, 999)
    return path


@pytest.mark.parametrize("change", [_reword, _reanswer, _new_image],
                         ids=["every-question-reworded", "every-answer-changed", "image-replaced"])
def test_vqa_vs_features_of_changed_inputs_are_refused(vqa_prepared, tmp_path, capsys, change):
    root = _copy(vqa_prepared, tmp_path)
    feats = root / "vqa_vs" / "features"
    before = _tree(feats)
    path = change(root / "vqa_vs")
    with pytest.raises(DataError, match=re.escape(str(path)) + r": (its bytes changed|\d+ bytes,"
                       r" but it had).*stale: run `python -m i2m2bench prepare vqa-vs"):
        build_task("vqa_vs", data_root=str(root))
    code, _, err = _cli(capsys, "verify", "vqa-vs", "--data-root", root)
    assert code != 0 and str(path) in err
    assert _tree(feats) == before


def test_nlvr2_features_of_a_replaced_image_are_refused(tmp_path, backbones):
    root = nlvr2_root(tmp_path)
    nr.prepare(root / "nlvr2", str(backbones[0]), batch_size=8, device="cpu", progress=False)
    feats = root / "nlvr2" / "features"
    before = _tree(feats)
    build_task("nlvr2", data_root=str(root))
    path = sorted((root / "nlvr2" / "images" / "dev").glob("*.png"))[0]
    write_image(path, 4242, "PNG")
    with pytest.raises(DataError, match=re.escape(str(path)) + r": .*stale: run `python -m "
                       r"i2m2bench prepare nlvr2"):
        build_task("nlvr2", data_root=str(root))
    assert _tree(feats) == before


def _interrupt_after_train(monkeypatch):
    real_extract = vf.extract

    def train_only(backbone, items, out, **kw):
        if out.name != "train":
            raise KeyboardInterrupt
        return real_extract(backbone, items, out, **kw)

    monkeypatch.setattr(vf, "extract", train_only)
    return lambda: monkeypatch.setattr(vf, "extract", real_extract)


def test_a_resume_with_another_backbone_starts_over(tmp_path, backbones, monkeypatch, capsys):
    """Killed after the train split with backbone A, resumed with B: A's rows are discarded and
    every row is B's (bit-identical to a clean prepare with B); the manifest names B's files."""
    a, b = backbones
    root = vqa_vs_root(tmp_path / "data")
    clean = _copy(root, tmp_path)
    restore = _interrupt_after_train(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        vr.prepare(root / "vqa_vs", str(a), batch_size=8, device="cpu", progress=False)
    restore()
    partial = root / "vqa_vs" / ".features.partial"
    assert (partial / "train" / "joint.npy").is_file()
    assert not (root / "vqa_vs" / "features").exists()
    capsys.readouterr()
    vr.prepare(root / "vqa_vs", str(b), batch_size=8, device="cpu", progress=False)
    assert "discarded" in capsys.readouterr().out and not partial.exists()
    vr.prepare(clean / "vqa_vs", str(b), batch_size=8, device="cpu", progress=False)
    for split in ("train", "val", "test", "QT"):
        for name in ("image", "text", "joint", "targets"):
            np.testing.assert_array_equal(
                np.load(root / "vqa_vs" / "features" / split / f"{name}.npy"),
                np.load(clean / "vqa_vs" / "features" / split / f"{name}.npy"))
    manifest = json.loads((root / "vqa_vs" / "features" / "manifest.json").read_text())
    assert manifest["backbone"]["sha256"] == chain.folder_record(b)["sha256"]
    assert build_task("vqa_vs", data_root=str(root)).options["checksum"] == \
        build_task("vqa_vs", data_root=str(clean)).options["checksum"]


def test_a_resume_with_the_same_backbone_keeps_the_finished_split(tmp_path, backbones,
                                                                  monkeypatch, capsys):
    a, _ = backbones
    root = vqa_vs_root(tmp_path / "data")
    restore = _interrupt_after_train(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        vr.prepare(root / "vqa_vs", str(a), batch_size=8, device="cpu", progress=False)
    restore()
    done = _tree(root / "vqa_vs" / ".features.partial" / "train")
    capsys.readouterr()
    vr.prepare(root / "vqa_vs", str(a), batch_size=8, device="cpu", progress=False)
    out = capsys.readouterr().out
    assert "already in" in out and "discarded" not in out
    assert {k: v for k, v in _tree(root / "vqa_vs" / "features" / "train").items()
            if k in done} == done


def test_an_interrupted_re_prepare_keeps_the_complete_features(vqa_prepared, tmp_path,
                                                               backbones, monkeypatch):
    """A re-prepare killed half-way over complete features: the old features, manifest and
    identity stay as they were (no all-zero rows under the old manifest)."""
    root = _copy(vqa_prepared, tmp_path)
    feats = root / "vqa_vs" / "features"
    before = _tree(feats)
    checksum = build_task("vqa_vs", data_root=str(root)).options["checksum"]
    restore = _interrupt_after_train(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        vr.prepare(root / "vqa_vs", str(backbones[1]), batch_size=8, device="cpu", progress=False)
    restore()
    assert _tree(feats) == before
    task = build_task("vqa_vs", data_root=str(root), verify="full")
    assert task.options["checksum"] == checksum
    joint = np.load(feats / "train" / "joint.npy")
    assert np.all(np.any(joint != 0, axis=1))


def test_an_extraction_that_leaves_rows_unwritten_is_refused(tmp_path, backbones, monkeypatch):
    items = []
    for k in range(6):
        write_image(tmp_path / f"im{k}.png", k, "PNG")
        items.append(vf.Item(k, (tmp_path / f"im{k}.png",), "what is the color"))
    real_features = vf._features
    calls = []

    def skip_second(*args):
        calls.append(1)
        feats = real_features(*args)
        return tuple(np.zeros_like(f) for f in feats) if len(calls) == 2 else feats

    monkeypatch.setattr(vf, "_features", skip_second)
    with pytest.raises(DataError, match=r"3 row\(s\) all zero in every feature file \(first: row "
                       r"3\); the extraction did not write them"):
        vf.extract(str(backbones[0]), items, tmp_path / "out", batch_size=3, progress=False,
                   log=lambda s: None)
    assert not (tmp_path / "out" / "ids.npy").exists()  # never taken as finished


def test_a_features_manifest_without_the_chain_is_refused(vqa_prepared, tmp_path):
    root = _copy(vqa_prepared, tmp_path)
    mpath = root / "vqa_vs" / "features" / "manifest.json"
    m = json.loads(mpath.read_text())
    old = {"version": 1, "backbone": "flava", "splits": m["splits"]}
    mpath.write_text(json.dumps(old))
    with pytest.raises(DataError, match=r"features manifest version 1; this i2m2bench reads "
                       r"version 2 .*prepare vqa-vs"):
        build_task("vqa_vs", data_root=str(root))
    m["backbone"]["sha256"] = "0" * 64  # another backbone named by hand
    mpath.write_text(json.dumps(m))
    with pytest.raises(DataError, match="edited after prepare"):
        build_task("vqa_vs", data_root=str(root))
    answers = root / "vqa_vs" / "features" / "answers.json"
    m["backbone"]["sha256"] = chain.folder_record(m["backbone"]["path"])["sha256"]
    mpath.write_text(json.dumps(m))
    answers.write_text(json.dumps(list(reversed(json.loads(answers.read_text())))))
    with pytest.raises(DataError, match=r"answers.json: its sha256 differs from the manifest's"):
        build_task("vqa_vs", data_root=str(root))


# ------------------------------------------------------------------------------ MIMIC
def test_an_edited_mimic_npz_is_refused(tmp_path):
    from i2m2bench.data.mimic import real as mr
    from tests.reliability.test_paths_and_locks import _mimic_root

    folder = _mimic_root(tmp_path)  # <root>/mimic
    npz = mr.prepare(folder)
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["ep_tdata"] = arrays["ep_tdata"] * 2
    np.savez(npz, **arrays)
    with pytest.raises(DataError, match=re.escape(str(npz)) + r": its arrays no longer match "
                       r"the digest recorded .*prepare mimic"):
        mr.read(folder)
    record = json.loads(str(arrays.pop("content_chain")))
    record["arrays"] = "0" * 16
    np.savez(npz, **arrays, content_chain=np.array(json.dumps(record)))
    with pytest.raises(DataError, match="edited after prepare"):
        mr.read(folder)


# ------------------------------------------------------------------------------ the mechanism
def test_the_chain_records_relative_paths_and_checks_each_change(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    f = root / "a" / "x.bin"
    f.write_bytes(b"1234")
    rec = chain.record_inputs(root, [f, f], absent=[root / "a" / "gone.bin"])
    assert list(rec["files"]) == ["a/x.bin"] and rec["absent"] == ["a/gone.bin"]
    assert chain.inputs_problem(root, rec) == (None, 0)
    f.write_bytes(b"12345")
    assert "5 bytes, but it had 4" in chain.inputs_problem(root, rec)[0]
    f.write_bytes(b"4321")
    assert "its bytes changed" in chain.inputs_problem(root, rec)[0]
    assert chain.inputs_problem(root, rec, "none") == (None, 0)
    f.unlink()
    assert chain.inputs_problem(root, rec) == (None, 1)
    (root / "a" / "gone.bin").write_bytes(b"")
    assert "on disk now, but absent when prepared" in chain.inputs_problem(root, rec)[0]
    # the seal ignores where and when, nothing else
    m = chain.seal({"source": "/x", "inputs": rec, "mag_ref": 1.0})
    moved = dict(m, source="/y", inputs={**rec, "files": {"a/x.bin": {**rec["files"]["a/x.bin"],
                                                                      "mtime_ns": 5}}})
    assert chain.content_sha256(moved) == m["content_sha256"]
    assert chain.content_sha256(dict(m, mag_ref=1024.0)) != m["content_sha256"]


def _own_layout(prepared: Path, tmp_path: Path) -> Path:
    """A copy of ``prepared`` whose features folder holds only what a user who extracted
    features elsewhere writes: ids, image, text and joint per split (no manifest)."""
    root = _copy(prepared, tmp_path)
    feats = root / "vqa_vs" / "features"
    for p in sorted(feats.iterdir()):
        if p.is_file() or p.name not in vr.SPLITS:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        else:
            (p / "targets.npy").unlink()
    return root


def test_own_features_are_checked_recorded_and_sealed(vqa_prepared, tmp_path, capsys):
    """`prepare vqa-vs --own-features`: features extracted elsewhere (FIBER's) in the documented
    layout are checked against the annotations and sealed with their inputs; the same rows as
    the ones they were copied from, and a changed input afterwards refuses them."""
    root = _own_layout(vqa_prepared, tmp_path)
    feats = root / "vqa_vs" / "features"
    own = {split: np.load(feats / split / "joint.npy") for split in vr.SPLITS}
    code, out, err = _cli(capsys, "prepare", "vqa-vs", "--data-root", root, "--own-features")
    assert code == 0, err
    task = build_task("vqa_vs", data_root=str(root), verify="full")
    assert sorted(task.shifts) == sorted(vr.OOD_SETS)
    for split in vr.SPLITS:
        np.testing.assert_array_equal(np.load(feats / split / "joint.npy"), own[split])
    m = json.loads((feats / "manifest.json").read_text())
    assert m["backbone"] == vf.OWN and m["extraction"] == {"own_features": True}
    _new_image(root / "vqa_vs")
    with pytest.raises(DataError, match="stale"):
        build_task("vqa_vs", data_root=str(root))


def test_own_features_with_other_ids_or_a_backbone_are_refused(vqa_prepared, tmp_path, capsys):
    root = _own_layout(vqa_prepared, tmp_path)
    feats = root / "vqa_vs" / "features"
    ids = feats / "val" / "ids.npy"
    np.save(ids, np.load(ids)[::-1])
    before = _tree(root)
    code, _, err = _cli(capsys, "prepare", "vqa-vs", "--data-root", root, "--own-features")
    assert code != 0 and re.search(re.escape(str(ids)) + r": \d+ ids that are not the \d+ ids "
                                   r"of the annotations in their order", err), err
    code, _, err = _cli(capsys, "prepare", "vqa-vs", "--data-root", root, "--own-features",
                        "--backbone", tmp_path)
    assert code != 0 and "--own-features and --backbone exclude each other" in err
    assert _tree(root) == before  # no temporary folder either


def test_a_full_disk_during_extraction_names_the_file_and_the_resume_completes(
        vqa_prepared, tmp_path, backbones, monkeypatch, capsys):
    """ENOSPC on the third batch of features: one line naming the feature file, exit 1, the
    complete features folder as it was; once there is room, the next prepare resumes and gives
    the same features as an uninterrupted one."""
    import errno

    root = _copy(vqa_prepared, tmp_path)
    feats = root / "vqa_vs" / "features"
    before = _tree(feats)
    real_pwrite, calls = os.pwrite, []

    def full(fd, data, pos):
        calls.append(1)
        if len(calls) > 6:  # three files a batch: the third batch finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, pos)

    monkeypatch.setattr(os, "pwrite", full)
    code, _, err = _cli(capsys, "prepare", "vqa-vs", "--data-root", root, "--backbone",
                        backbones[1], "--device", "cpu", "--batch-size", "8", "--no-progress")
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code != 0 and len(errors) == 1 and "Traceback" not in err, err
    assert re.search(r"\.features\.partial/train/image\.npy: cannot write the VQA-VS features "
                     r"\(No space left on device\); .*/features is as it was; the finished part "
                     r"is kept in .*\.features\.partial and the next prepare continues it",
                     errors[0]), err
    assert _tree(feats) == before
    code, _, err = _cli(capsys, "prepare", "vqa-vs", "--data-root", root, "--backbone",
                        backbones[1], "--device", "cpu", "--batch-size", "8", "--no-progress")
    assert code == 0, err
    clean = vqa_vs_root(tmp_path / "clean")
    vr.prepare(clean / "vqa_vs", str(backbones[1]), batch_size=8, device="cpu", progress=False)
    for name in ("image", "text", "joint"):
        np.testing.assert_array_equal(np.load(feats / "train" / f"{name}.npy"),
                                      np.load(clean / "vqa_vs" / "features" / "train" / f"{name}.npy"))


def test_run_reads_the_prepared_features_only(vqa_prepared, tmp_path, monkeypatch, capsys):
    """Building the task reads no annotation file (prepare's job): JSON parsing is never called,
    and with the annotations moved away the task builds from the features alone, same identity;
    verify says how many inputs it could not check."""
    from i2m2bench.data.common import hf_json

    root = _copy(vqa_prepared, tmp_path)
    checksum = build_task("vqa_vs", data_root=str(root)).options["checksum"]

    def no_json(*a, **k):
        raise AssertionError("an annotation file was parsed while building the task")

    monkeypatch.setattr(hf_json, "read", no_json)
    assert build_task("vqa_vs", data_root=str(root)).options["checksum"] == checksum
    for stem in vr.SPLITS.values():
        shutil.rmtree(root / "vqa_vs" / stem)
    task = build_task("vqa_vs", data_root=str(root))
    assert task.options["checksum"] == checksum and len(task.splits["train"]) == 40
    code, out, err = _cli(capsys, "verify", "vqa-vs", "--data-root", root)
    assert code == 0 and "(6 no longer there, not checked)" in out, out + err
