"""Clear messages for what exists but is wrong: data files that are not what they should be
(strings, object arrays, an .npz named .npy, a symlink loop, a folder where a file belongs — each
naming the path and what was expected, never "not found" for something that exists), gin files
(a circular include in one line naming the cycle, an undefined macro without the whole config,
``--gin`` given a folder), and ``run_suite`` arguments refused with a TypeError/ValueError before
any data is loaded.
"""
import os

import numpy as np
import pytest

from i2m2bench.data import DataError
from i2m2bench.harness.errors import ConfigError

from .conftest import TOY

AVMNIST_SMOKE = TOY.parent / "avmnist_smoke.gin"


# --- data files: one defect in otherwise valid AV-MNIST files --------------------------------
def _save(rel, array, **kw):
    return lambda d: np.save(d / rel, array, **kw)


def _replace_with_folder(rel):
    def edit(d):
        (d / rel).unlink()
        (d / rel).mkdir()
    return edit


def _symlink_loop(rel):
    def edit(d):
        (d / rel).unlink()
        os.symlink(d / rel, d / rel)
    return edit


def _dangling_link(rel):
    def edit(d):
        (d / rel).unlink()
        os.symlink(d / "gone.npy", d / rel)
    return edit


def _npz_named_npy(rel):
    def edit(d):
        x = np.load(d / rel)
        with open(d / rel, "wb") as fh:
            np.savez(fh, labels=x)
    return edit


def _folder_is_a_file(rel):
    def edit(d):
        for p in (d / rel).iterdir():
            p.unlink()
        (d / rel).rmdir()
        (d / rel).write_text("not a folder")
    return edit


DATA_CASES = [
    pytest.param(_save("test_labels.npy", np.array([str(i % 10) for i in range(12)])),
                 r"avmnist/test_labels\.npy: dtype <U1 \(strings\), expected numeric integer digit labels",
                 id="labels_as_strings"),
    pytest.param(_save("image/test_data.npy", np.full((12, 784), "7", dtype="U3")),
                 r"image/test_data\.npy: dtype <U3 \(strings\), expected numeric MNIST images",
                 id="images_as_strings"),
    pytest.param(_save("audio/test_data.npy", np.ones((12, 112, 112), np.complex64)),
                 r"audio/test_data\.npy: dtype complex64 \(complex numbers\), expected numeric",
                 id="complex_values"),
    pytest.param(_save("train_labels.npy", np.array([1] * 36, dtype=object), allow_pickle=True),
                 r"train_labels\.npy: cannot read as a \.npy array: an object array \(dtype object\), "
                 r"expected numeric integer digit labels", id="object_array"),
    pytest.param(_npz_named_npy("test_labels.npy"),
                 r"test_labels\.npy: an \.npz archive \(arrays: labels\) named \.npy, not an \.npy array; "
                 r"expected a \.npy file of integer digit labels", id="npz_renamed_npy"),
    pytest.param(_symlink_loop("audio/train_data.npy"),
                 r"audio/train_data\.npy: a symlink loop.*expected a \.npy file of audio spectrograms",
                 id="symlink_loop"),
    pytest.param(_dangling_link("image/train_data.npy"),
                 r"image/train_data\.npy: a symlink to .*gone\.npy, which does not exist",
                 id="dangling_symlink"),
    pytest.param(_replace_with_folder("test_labels.npy"),
                 r"test_labels\.npy: is a folder, not a file; expected a \.npy file of integer digit "
                 r"labels 0\.\.9 with shape \(12,\)", id="folder_where_a_file_belongs"),
    pytest.param(_folder_is_a_file("image"),
                 r"avmnist/image/train_data\.npy: .*avmnist/image is a file, not a folder",
                 id="file_where_a_folder_belongs"),
]


@pytest.mark.parametrize("damage,pattern", DATA_CASES)
def test_bad_data_file_says_what_it_found(damage, pattern, refused, gin_file, tmp_path, write_avmnist):
    root = tmp_path / "data"
    damage(write_avmnist(root))
    path = gin_file(f"include '{AVMNIST_SMOKE}'",
                    "suite.dataset_options = {'source': 'real', 'split_sizes': (30, 6, 12)}",
                    include=False)
    err = refused(pattern, "--gin", path, "--data-root", str(root))
    assert "not found" not in err or "which does not exist" in err


# --- gin files ------------------------------------------------------------------------------
def test_circular_include_is_one_line_naming_the_cycle(refused, tmp_path):
    (tmp_path / "a.gin").write_text(f"include '{TOY}'\ninclude 'b.gin'\n")
    (tmp_path / "b.gin").write_text("train.lr = 0.1\ninclude 'a.gin'\n")
    err = refused(r"circular include: \S*a\.gin -> \S*b\.gin -> \S*a\.gin \(file \"\S*b\.gin\", line 2",
                  "--gin", str(tmp_path / "a.gin"))
    assert len(err.strip().splitlines()) == 2  # the error and the --debug hint


def test_a_file_including_itself(refused, tmp_path):
    (tmp_path / "self.gin").write_text("include 'self.gin'\n")
    refused(r"circular include: \S*self\.gin -> \S*self\.gin", "--gin", str(tmp_path / "self.gin"))


def test_undefined_macro_is_named_without_the_whole_config(refused, gin_file):
    err = refused(r"undefined macro %EPOCHS \(used at file \"\S*case\.gin\", line 2\)",
                  "--gin", gin_file("train.epochs = %EPOCHS"))
    assert len(err.strip().splitlines()) == 2 and "Parameters for" not in err


def test_gin_argument_that_is_a_folder(refused, tmp_path):
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "x.gin").write_text("")
    refused(r"gin file \S*suites: is a folder holding x\.gin, not a gin file",
            "--gin", str(tmp_path / "suites"))


def test_empty_gin_argument(refused):
    refused(r"gin file '': an empty name", "--gin", "")


# --- the Python API: refused before any data is loaded ----------------------------------------
@pytest.mark.parametrize("gin_files,kwargs,exc,pattern", [
    pytest.param(str(TOY), {}, TypeError, r"gin_files must be a non-empty list of gin files; got '",
                 id="gin_files_as_one_string"),
    pytest.param([TOY], {"seeds": 0}, TypeError, r"seeds must be a non-empty list of integers; got 0",
                 id="seeds_as_an_int"),
    pytest.param([TOY], {"seeds": []}, TypeError, r"seeds must be a non-empty list of integers; got \[\]",
                 id="no_seeds"),
    pytest.param([TOY], {"seeds": [0.5]}, TypeError,
                 r"seeds must be a list of integers, not a float such as 0\.5 \(never rounded\)",
                 id="fractional_seed"),
    pytest.param([TOY], {"seeds": [0, 1.0]}, TypeError, r"not a float such as 1\.0",
                 id="seed_given_as_float"),
    pytest.param([TOY], {"seeds": [1, 1]}, ValueError, r"seeds lists a seed more than once",
                 id="duplicate_seeds"),
    pytest.param([TOY], {"methods": "a_only"}, TypeError,
                 r"methods must be a non-empty list of method names; got 'a_only'", id="methods_as_one_string"),
    pytest.param([TOY], {"methods": []}, TypeError, r"methods must be a non-empty list of method names",
                 id="no_methods"),
    pytest.param([TOY], {"out": ""}, ValueError, r"run_suite: out is empty; name a folder", id="empty_out"),
    pytest.param([TOY], {"results_dir": ""}, ValueError, r"run_suite: results_dir is empty",
                 id="empty_results_dir"),
    pytest.param([TOY], {"data_root": "/no/such/folder"}, DataError,
                 r"run_suite: data_root /no/such/folder: no such folder", id="data_root_missing"),
    pytest.param([TOY], {"device": "tpu"}, ConfigError, r"run_suite: device tpu: unknown device type; "
                 r"available: cpu", id="unknown_device"),
])
def test_run_suite_refuses_bad_arguments_before_loading_data(gin_files, kwargs, exc, pattern,
                                                             api_refused):
    api_refused(exc, pattern, gin_files, **kwargs)


@pytest.mark.parametrize("binding,pattern", [
    ("train.epochs = 2.5", r"train\.epochs must be a whole number, not a float.*--gin-param "
                           r"'train\.epochs = 2\.5'"),
    ("suite.seeds = [0.5]", r"suite\.seeds must be whole numbers, not a float such as 0\.5"),
    ("suite.dataset_options = [1]", r"suite\.dataset_options must be a dict"),
])
def test_run_suite_refuses_bad_settings_before_loading_data(binding, pattern, api_refused):
    api_refused(ConfigError, pattern, [TOY], bindings=[binding])


def test_train_config_refuses_nan_and_bool():
    from i2m2bench.harness.config import SettingError, TrainConfig

    with pytest.raises(SettingError, match=r"train\.lr must be a finite number.*got nan") as err:
        TrainConfig(lr=float("nan"))
    assert err.value.binding == "train.lr" and isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match=r"train\.epochs must be a whole number, not a bool"):
        TrainConfig(epochs=True)
    with pytest.raises(ValueError, match=r"train\.momentum must be a finite number.*nan"):
        TrainConfig(momentum=float("nan"))
