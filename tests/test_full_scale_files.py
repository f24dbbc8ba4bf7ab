"""``scripts/make_full_scale.py`` writes what the real loaders accept: each dataset at a tiny
scale, read back through the same ``prepare`` / ``build_task`` a user runs (the rehearsal's
figures, ``leaderboards/real_scale.md``, are only worth something if its files are the official
format the loaders expect)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from i2m2bench.data import build_task, find_family
from i2m2bench.data.base import DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import make_full_scale as mfs  # noqa: E402

SCALE = 0.001


def test_avmnist_files_load_as_multibench_avmnist(tmp_path):
    w = mfs.write("avmnist", tmp_path, SCALE)
    task = build_task("avmnist", data_root=str(tmp_path), source="real",
                      split_sizes=tuple(w["split_sizes"]))
    assert task.spec.source == "real"
    assert [len(task.splits[s]) for s in ("train", "val", "test")] == list(w["split_sizes"])
    assert sum(w["split_sizes"]) == w["rows"] == 80  # 60 + 10 at scale 0.001, the test file >= 20


def test_mimic_pickle_prepares_and_loads(tmp_path):
    w = mfs.write("mimic", tmp_path, SCALE)
    assert w["rows"] == 40  # round(36,212 x 0.001) = 36, at least 40
    find_family("mimic").prepare(str(tmp_path))
    task = build_task("mimic", data_root=str(tmp_path), task="mortality")
    assert task.spec.source == "real"
    assert sum(len(s) for s in task.splits.values()) == 40


def test_fastmri_volumes_prepare_and_load(tmp_path):
    w = mfs.fastmri(tmp_path, 0.01, slices=2)
    assert w["volumes"] == 4 and w["rows"] == 8
    assert sorted(p.name for p in (tmp_path / "fastmri").iterdir()) == [
        "fastmri_plus", "singlecoil_train", "singlecoil_val"]
    find_family("fastmri").prepare(str(tmp_path))
    task = build_task("fastmri", data_root=str(tmp_path), source="real")
    assert task.spec.source == "real"
    assert sum(len(s) for s in task.splits.values()) == 8


@pytest.mark.parametrize("name, family, what", [("vqa_vs", "vqa-vs", "questions"),
                                                ("nlvr2", "nlvr2", "")])
def test_vl_files_pass_every_check_of_prepare(tmp_path, name, family, what):
    """Every JSON file and every image is read and checked; only the features are missing (no
    backbone given): the error that says so is the one a user with good files meets."""
    w = mfs.write(name, tmp_path, SCALE)
    with pytest.raises(DataError, match=r"check out \((\d+) .*needs --backbone DIR") as info:
        find_family(family).prepare(str(tmp_path))
    if name == "vqa_vs":
        assert f"({w['rows']} questions)" in str(info.value)
        qs = json.loads((tmp_path / "vqa_vs" / "Training" / "Training-Ques.json").read_text())
        assert len(qs) == round(mfs.VQA_VS["Training"] * SCALE)
        ood = tmp_path / "vqa_vs" / "OOD-Test"
        assert sorted(p.name for p in ood.iterdir()) == sorted(mfs.OOD_SETS)
    else:
        lines = (tmp_path / "nlvr2" / "data" / "train.json").read_text().splitlines()
        assert len(lines) == round(mfs.NLVR2["train"] * SCALE)
        row = json.loads(lines[0])
        assert {"sentence", "label", "identifier", "directory", "left_url"} <= set(row)
        assert (tmp_path / "nlvr2" / "images" / "train" / str(row["directory"])
                / f"{row['identifier'].rsplit('-', 1)[0]}-img0.png").is_file()
    assert not (tmp_path / name / "features").exists()  # nothing half-written


def test_sizes_are_the_cited_ones():
    """The constants the rehearsal's sizes come from (cited in the script's docstring)."""
    assert mfs.AVMNIST_ROWS == (60_000, 10_000) and mfs.MIMIC_STAYS == 36_212
    assert sum(mfs.VQA_VS.values()) == 658_111  # VQA v2's train + val questions
    assert sum(mfs.COCO_IMAGES.values()) == 123_287  # COCO 2014 train + val
    assert mfs.NLVR2 == {"train": 86_373, "dev": 6_982, "test1": 6_967}
    assert np.isclose(sum(s for _, s in mfs.FASTMRI_FULL.values()) / 1172, 35.7, atol=0.1)
