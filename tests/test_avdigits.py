"""The embedded AV-Digits data: checksum, splits, voices, regeneration."""
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from i2m2bench import build_task
from i2m2bench.data.avmnist import embedded_store as store_mod

ROOT = Path(__file__).resolve().parents[1]


def test_checksum_matches_the_shipped_file():
    digest = hashlib.sha256(store_mod.STORE_PATH.read_bytes()).hexdigest()
    assert digest == store_mod.expected_sha256()
    assert store_mod.STORE_PATH.stat().st_size <= 5 * 2**20


def test_corrupt_store_is_refused(tmp_path):
    bad = tmp_path / "avdigits_v1.npz"
    data = bytearray(store_mod.STORE_PATH.read_bytes())
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="avdigits_v1.npz"):
        store_mod.read_store(bad)


def test_pairs_voices_and_dialects():
    s = store_mod.read_store()
    assert len(s["train_image"]) >= 3000
    group = s["utt_group"]
    voice = lambda u: (int(s["utt_dialect"][u]), int(s["utt_variant"][u]))  # noqa: E731
    train_voices = {voice(u) for u in s["train_utt"]}
    test_voices = {voice(u) for u in s["test_utt"]}
    assert train_voices.isdisjoint(test_voices)  # test voices never occur in training
    assert set(group[s["test_utt"]]) == {1} and set(group[s["train_utt"]]) == {0}
    train_dialects = {int(s["utt_dialect"][u]) for u in s["train_utt"]}
    shift_dialects = {int(s["utt_dialect"][u]) for u in s["shift_dialects_utt"]}
    assert train_dialects.isdisjoint(shift_dialects) and len(shift_dialects) == 2
    # images are disjoint across train/val/test, and every pair is within class
    imgs = [set(s[f"{k}_image"].tolist()) for k in ("train", "val", "test")]
    assert not (imgs[0] & imgs[1] or imgs[0] & imgs[2] or imgs[1] & imgs[2])
    from sklearn.datasets import load_digits
    y = load_digits().target
    for k in store_mod.SPLITS:
        assert np.array_equal(y[s[f"{k}_image"]], s["utt_digit"][s[f"{k}_utt"]])


def test_task_shapes_dtypes_and_labels():
    task = build_task("avmnist", source="embedded")
    assert task.spec.name == "avdigits" and task.spec.source == "embedded"
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 3591, "val": 400, "test": 800}
    assert list(task.shifts) == ["dialects"] and len(task.shifts["dialects"]) == 800
    for split in [*task.splits.values(), *task.shifts.values()]:
        assert split.inputs["image"].shape[1:] == (1, 28, 28)
        assert split.inputs["audio"].shape[1:] == (1, 112, 112)
        assert split.inputs["audio"].dtype == split.inputs["image"].dtype == __import__("torch").uint8
        assert set(split.target.unique().tolist()) == set(range(10))
    # test and the dialect shift share their images and differ only in the audio
    import torch
    assert torch.equal(task.splits["test"].inputs["image"].sum((1, 2, 3)).sort().values,
                       task.shifts["dialects"].inputs["image"].sum((1, 2, 3)).sort().values)


def test_image_energy_is_removed_by_pca():
    from i2m2bench.data.avmnist.embedded import _pca_weakened
    from sklearn.datasets import load_digits

    x = load_digits().images
    idx = np.arange(1000)
    weak = _pca_weakened(x, idx, 0.25)
    centred = x[idx].reshape(1000, -1) - x[idx].reshape(1000, -1).mean(0)
    kept = weak[idx].reshape(1000, -1) - x[idx].reshape(1000, -1).mean(0)
    ratio = (kept**2).sum() / (centred**2).sum()
    assert 0.25 <= ratio < 0.40  # the leading components that first reach 25% of the energy
    assert np.allclose(_pca_weakened(x, idx, 1.0), x)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("espeakng_loader") is None,
                    reason="regeneration needs the optional extra `regen` (espeakng-loader)")
def test_regenerates_bit_for_bit(tmp_path):
    spec = importlib.util.spec_from_file_location("make_avdigits", ROOT / "scripts" / "make_avdigits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "avdigits_v1.npz"
    digest = mod.generate(out, write_sha_file=False)
    assert digest == store_mod.expected_sha256()
    assert out.read_bytes() == store_mod.STORE_PATH.read_bytes()
