"""The AV-MNIST loader on fixture files written in MultiBench's real layout."""
import numpy as np
import pytest

from i2m2bench import build_task
from i2m2bench.data import DataError

SIZES = (30, 6, 12)  # train, val, test rows: the default of the write_avmnist fixture (tests/conftest.py)


def test_reads_multibench_layout(tmp_path, write_avmnist):
    d = write_avmnist(tmp_path)
    task = build_task("avmnist", data_root=str(tmp_path), split_sizes=SIZES)
    assert task.spec.source == "real" and task.spec.name == "avmnist"
    assert {k: len(v) for k, v in task.splits.items()} == {"train": 30, "val": 6, "test": 12}
    tr = task.splits["train"]
    assert tr.inputs["image"].shape == (30, 1, 28, 28) and tr.inputs["audio"].shape == (30, 1, 112, 112)
    img = np.load(d / "image" / "train_data.npy")
    # train = first rows, val = last rows of the train file; values /255 at batch time
    assert np.array_equal(tr.inputs["image"][3].numpy().ravel(), img[3].astype(np.uint8))
    assert np.array_equal(task.splits["val"].inputs["image"][0].numpy().ravel(), img[30].astype(np.uint8))
    labels = np.load(d / "train_labels.npy")
    assert task.splits["val"].target.tolist() == labels[30:].tolist()
    import torch
    batch = tr.batch(torch.arange(2), task.spec)
    assert batch.inputs["image"].dtype == torch.float32 and float(batch.inputs["image"].max()) <= 1.0
    assert torch.allclose(batch.inputs["image"][1].flatten() * 255, torch.from_numpy(img[1]))


def test_28x28_image_files_are_accepted(tmp_path, write_avmnist):
    write_avmnist(tmp_path, image_shape=(28, 28))
    assert len(build_task("avmnist", data_root=str(tmp_path), split_sizes=SIZES).splits["test"]) == 12


def test_wrong_shape_names_file_found_and_expected(tmp_path, write_avmnist):
    d = write_avmnist(tmp_path)
    np.save(d / "audio" / "test_data.npy", np.zeros((12, 100, 112), np.uint8))
    with pytest.raises(DataError) as err:
        build_task("avmnist", data_root=str(tmp_path), split_sizes=SIZES)
    msg = str(err.value)
    assert "audio/test_data.npy" in msg and "found shape (12, 100, 112)" in msg and "expected (12, 112, 112)" in msg


def test_wrong_row_count(tmp_path, write_avmnist):
    d = write_avmnist(tmp_path)
    np.save(d / "train_labels.npy", np.zeros(35, np.int64))
    with pytest.raises(DataError, match=r"train_labels.npy: found shape \(35,\), expected \(36,\)"):
        build_task("avmnist", data_root=str(tmp_path), split_sizes=SIZES)


def test_missing_file_says_what_and_how(tmp_path, write_avmnist):
    d = write_avmnist(tmp_path)
    (d / "image" / "test_data.npy").unlink()
    with pytest.raises(DataError, match=r"image/test_data.npy: file not found; expected MNIST images.*MultiBench"):
        build_task("avmnist", data_root=str(tmp_path), split_sizes=SIZES)


def test_corrupt_file(tmp_path, write_avmnist):
    d = write_avmnist(tmp_path)
    (d / "audio" / "train_data.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"audio/train_data.npy: cannot read as a .npy array"):
        build_task("avmnist", data_root=str(tmp_path), split_sizes=SIZES)


def test_any_finite_float_values_are_divided_by_255_as_multibench_does(tmp_path, write_avmnist):
    """The real images are PCA-reduced MNIST stored as floats: negative values and values above
    255 are data, not errors; the model sees value / 255 (MultiBench's only transform)."""
    import torch

    d = write_avmnist(tmp_path)
    rng = np.random.default_rng(0)
    img = rng.normal(40.0, 90.0, (12, 784)).astype(np.float32)  # negatives and > 255 included
    img[0, 0], img[0, 1] = -300.5, 400.25
    np.save(d / "image" / "test_data.npy", img)
    task = build_task("avmnist", data_root=str(tmp_path), split_sizes=SIZES)
    test = task.splits["test"]
    batch = test.batch(torch.arange(12), task.spec)
    got = batch.inputs["image"].reshape(12, 784)
    assert float(got.min()) < 0 and float(got.max()) > 1
    assert torch.allclose(got, torch.from_numpy(img) / 255, rtol=1e-6, atol=0)


def test_already_divided_nan_and_bad_labels_are_refused(tmp_path, write_avmnist):
    d = write_avmnist(tmp_path)
    np.save(d / "image" / "test_data.npy",
            np.random.default_rng(0).random((12, 784)).astype(np.float32))  # values in [0, 1)
    with pytest.raises(DataError, match=r"image/test_data.npy: every value lies in .*already "
                                        r"divided by 255"):
        build_task("avmnist", data_root=str(tmp_path), split_sizes=SIZES)
    bad = np.full((12, 784), 7.0, np.float32)
    bad[3, 5] = np.nan
    np.save(d / "image" / "test_data.npy", bad)
    with pytest.raises(DataError, match=r"image/test_data.npy: 1 NaN/Inf values"):
        build_task("avmnist", data_root=str(tmp_path), split_sizes=SIZES)
    np.save(d / "image" / "test_data.npy", np.full((12, 784), 7.0, np.float32))
    np.save(d / "test_labels.npy", np.full(12, 10, np.int64))
    with pytest.raises(DataError, match=r"test_labels.npy: labels span \[10, 10\]; expected 0..9"):
        build_task("avmnist", data_root=str(tmp_path), split_sizes=SIZES)


def test_auto_never_falls_back_when_real_files_are_broken(tmp_path, write_avmnist):
    d = write_avmnist(tmp_path)
    (d / "audio" / "test_data.npy").unlink()
    with pytest.raises(DataError):
        build_task("avmnist", source="auto", data_root=str(tmp_path), split_sizes=SIZES)


def test_real_without_data_root_is_an_error(monkeypatch):
    monkeypatch.delenv("I2M2BENCH_DATA", raising=False)
    with pytest.raises(DataError, match="source='real' needs a data root"):
        build_task("avmnist", source="real")


def test_env_variable_is_the_default_data_root(tmp_path, monkeypatch, write_avmnist):
    write_avmnist(tmp_path)
    monkeypatch.setenv("I2M2BENCH_DATA", str(tmp_path))
    assert build_task("avmnist", split_sizes=SIZES).spec.source == "real"


def test_bad_source_option():
    with pytest.raises(ValueError, match="source must be 'auto', 'real' or 'embedded'"):
        build_task("avmnist", source="download")
