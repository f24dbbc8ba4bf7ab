"""Bad input is caught early and explained: one message naming the file, line, binding or field
and what was expected; a non-zero exit code; no traceback unless --debug; earlier results intact.
"""
import numpy as np
import pytest

from i2m2bench.cli import main

from .conftest import TOY


def run_cli(capsys, board, *args):
    code = main(["run", *args, "--out", str(board.out), "--leaderboard-dir", str(board.path),
                 "--no-progress"])
    err = capsys.readouterr().err
    return code, err


def assert_refused(capsys, board, pattern, *args):
    import re

    code, err = run_cli(capsys, board, *args)
    assert code != 0, err
    assert re.search(pattern, err, re.S), err
    assert "Traceback" not in err
    assert board.intact(), "earlier results were changed"
    assert not list(board.path.glob("results/toy_smoke*")), "a refused run wrote result rows"


# --- names ---------------------------------------------------------------------------------
def test_unknown_fusion(capsys, board, gin_file):
    assert_refused(capsys, board, r"unknown fusion 'late_fusoin'.*Did you mean 'late_fusion'",
                   "--gin", gin_file("late_fusion/method.fusion = 'late_fusoin'"))


def test_unknown_method_on_the_command_line(capsys, board):
    assert_refused(capsys, board, r"unknown method 'a_onyl'.*Did you mean 'a_only'",
                   "--gin", str(TOY), "--methods", "a_onyl")


def test_unknown_dataset(capsys, board, gin_file):
    assert_refused(capsys, board, r"unknown dataset 'avmnsit'.*Did you mean 'avmnist'",
                   "--gin", gin_file("suite.dataset = 'avmnsit'"))


def test_unknown_encoder(capsys, board, gin_file):
    assert_refused(capsys, board, r"unknown encoder 'mpl'.*Did you mean 'mlp'",
                   "--gin", gin_file("a_only/method.options = {'modality': 'a', 'encoder': 'mpl'}"))


def test_unknown_recipe(capsys, board, gin_file):
    assert_refused(capsys, board, r"unknown recipe 'pretrain_then_fine_tune'.*Did you mean 'pretrain_then_finetune'",
                   "--gin", gin_file("i2m2/method.recipe = 'pretrain_then_fine_tune'"))


def test_unknown_modality_option(capsys, board, gin_file):
    assert_refused(capsys, board, r"has no modality 'c'; its modalities are a, b",
                   "--gin", gin_file("a_only/method.options = {'modality': 'c'}"))


# --- gin --------------------------------------------------------------------------------------
def test_unknown_binding_names_file_and_line(capsys, board, gin_file):
    assert_refused(capsys, board, r"learning_rate.*case.gin.*line 2",
                   "--gin", gin_file("train.learning_rate = 0.1"))


def test_unknown_configurable(capsys, board, gin_file):
    assert_refused(capsys, board, r"trian.*case.gin.*line 2", "--gin", gin_file("trian.lr = 0.1"))


def test_gin_syntax_error(capsys, board, gin_file):
    assert_refused(capsys, board, r"case.gin.*line 2", "--gin", gin_file("train.lr = = 0.1"))


def test_missing_gin_file(capsys, board, tmp_path):
    assert_refused(capsys, board, r"gin file .*nope.gin: not found", "--gin", str(tmp_path / "nope.gin"))


def test_bad_command_line_binding(capsys, board):
    assert_refused(capsys, board, r"--gin-param.*train.lrr", "--gin", str(TOY), "--gin-param", "train.lrr = 1")


def test_binding_for_a_method_that_does_not_exist(capsys, board, gin_file):
    assert_refused(capsys, board, r"scope\(s\) \['i2m3'\] name no method",
                   "--gin", gin_file("i2m3/train.lr = 0.1"))


def test_method_without_fusion(capsys, board, gin_file):
    assert_refused(capsys, board, r"method 'c_only'.*fusion.*c_only/method.fusion = ",
                   "--gin", gin_file(f"include '{TOY.parent / 'base.gin'}'", "suite.name = 'toy_smoke'",
                                     "suite.dataset = 'toy'", "suite.methods = ['c_only']",
                                     "c_only/train.lr = 0.1", include=False))


def test_pretrain_source_that_is_not_a_method(capsys, board, gin_file):
    assert_refused(capsys, board, r"unknown method 'a_onyl'",
                   "--gin", gin_file("i2m2/method.pretrain = {'a': 'a_onyl', 'b': 'b_only', 'inter': 'late_fusion'}"))


def test_pretrain_map_missing_an_expert(capsys, board, gin_file):
    assert_refused(capsys, board, r"map each expert \['a', 'b', 'inter'\].*missing \['inter'\]",
                   "--gin", gin_file("i2m2/method.pretrain = {'a': 'a_only', 'b': 'b_only'}"),
                   "--methods", "i2m2")


def test_pretrain_map_with_the_joint_recipe(capsys, board, gin_file):
    assert_refused(capsys, board, r"method 'i2m2': recipe 'joint' takes no method.pretrain",
                   "--gin", gin_file("i2m2/method.recipe = 'joint'"))


def test_pretrain_recipe_without_a_map(capsys, board, gin_file):
    assert_refused(capsys, board, r"method 'i2m2': recipe 'pretrain_then_finetune' needs a method.pretrain map",
                   "--gin", gin_file("i2m2/method.pretrain = {}"))


def test_pretrain_cycle(capsys, board, gin_file):
    assert_refused(capsys, board, r"cycle: i2m2 -> i2m2",
                   "--gin", gin_file("i2m2/method.pretrain = {'a': 'i2m2', 'b': 'b_only', 'inter': 'late_fusion'}"))


def test_unknown_protocol(capsys, board, gin_file):
    assert_refused(capsys, board, r"unknown protocol 'tset'", "--gin", gin_file("suite.protocols = ['tset']"))


def test_unknown_shift_set(capsys, board, gin_file):
    assert_refused(capsys, board, r"'shift:dialects' names no shift set of 'toy'; it has \['noisier'\]",
                   "--gin", gin_file("suite.protocols = ['test', 'shift:dialects']"))


def test_sweep_option_that_the_dataset_does_not_take(capsys, board, gin_file):
    assert_refused(capsys, board, r"suite.sweep\['x'\] = \{'nosie': 1.0\}: .*nosie",
                   "--gin", gin_file("suite.sweep = {'x': {'nosie': 1.0}}"))


def test_sweep_label_that_is_not_a_folder_name(capsys, board, gin_file):
    assert_refused(capsys, board, r"setting label '\.\./x' must be letters, digits",
                   "--gin", gin_file("suite.sweep = {'../x': {'noise': 1.0}}"))


def test_sweep_settings_that_coincide(capsys, board, gin_file):
    assert_refused(capsys, board, r"settings 'a' and 'b' resolve to the same dataset options",
                   "--gin", gin_file("suite.sweep = {'a': {'noise': 1.0}, 'b': {'noise': 1.0}}"))


def test_empty_protocol_list(capsys, board, gin_file):
    assert_refused(capsys, board, r"no protocols to evaluate", "--gin", gin_file("suite.protocols = []"))


def test_bad_optimizer(capsys, board, gin_file):
    assert_refused(capsys, board, r"train.optimizer must be 'sgd', 'adam' or 'adamw'; got 'sgdd'",
                   "--gin", gin_file("train.optimizer = 'sgdd'"))


def test_non_positive_learning_rate(capsys, board, gin_file):
    assert_refused(capsys, board, r"method 'a_only'.*train.lr must be > 0",
                   "--gin", gin_file("a_only/train.lr = 0.0"))


def test_bad_embedded_schedule_field(capsys, board, gin_file):
    assert_refused(capsys, board, r"embedded_schedule.overrides.*epoch",
                   "--gin", gin_file("embedded_schedule.overrides = {'epoch': 3}"))


def test_bad_fusion_option(capsys, board, gin_file):
    assert_refused(capsys, board, r"fusion 'late_fusion'.*operator must be 'concat' or 'lrtf'; got 'sum'",
                   "--gin", gin_file("late_fusion/method.options = {'operator': 'sum'}"))


# --- data -------------------------------------------------------------------------------------
AVMNIST_GIN = [f"include '{TOY.parent / 'avmnist_smoke.gin'}'"]


def _avmnist(gin_file, data_root, source="real"):
    return gin_file(*AVMNIST_GIN, f"suite.dataset_options = {{'source': '{source}', "
                    "'split_sizes': (30, 6, 12)}", include=False)


def _write_avmnist(root, **override):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from test_avmnist_loader import write_avmnist
    return write_avmnist(root, **override)


def test_real_data_without_a_root(capsys, board, gin_file, monkeypatch):
    monkeypatch.delenv("I2M2BENCH_DATA", raising=False)
    assert_refused(capsys, board, r"source='real' needs a data root \(--data-root DIR or \$I2M2BENCH_DATA\)",
                   "--gin", _avmnist(gin_file, None))


def test_missing_data_file(capsys, board, gin_file, tmp_path):
    d = _write_avmnist(tmp_path / "data")
    (d / "train_labels.npy").unlink()
    assert_refused(capsys, board, r"avmnist/train_labels.npy: file not found; expected integer digit labels",
                   "--gin", _avmnist(gin_file, tmp_path / "data"), "--data-root", str(tmp_path / "data"))


def test_wrong_shape(capsys, board, gin_file, tmp_path):
    d = _write_avmnist(tmp_path / "data")
    np.save(d / "image" / "train_data.npy", np.zeros((36, 780), np.uint8))
    assert_refused(capsys, board, r"image/train_data.npy: found shape \(36, 780\), expected \(36, 784\)",
                   "--gin", _avmnist(gin_file, tmp_path / "data"), "--data-root", str(tmp_path / "data"))


def test_truncated_npy(capsys, board, gin_file, tmp_path):
    d = _write_avmnist(tmp_path / "data")
    f = d / "audio" / "test_data.npy"
    f.write_bytes(f.read_bytes()[:1000])
    assert_refused(capsys, board, r"audio/test_data.npy: cannot read as a .npy array",
                   "--gin", _avmnist(gin_file, tmp_path / "data"), "--data-root", str(tmp_path / "data"))


def test_nan_in_data_is_counted(capsys, board, gin_file, tmp_path):
    d = _write_avmnist(tmp_path / "data")
    x = np.load(d / "image" / "test_data.npy")
    x[0, :3] = np.nan
    np.save(d / "image" / "test_data.npy", x)
    assert_refused(capsys, board, r"image/test_data.npy: 3 NaN/Inf values",
                   "--gin", _avmnist(gin_file, tmp_path / "data"), "--data-root", str(tmp_path / "data"))


def test_label_out_of_range(capsys, board, gin_file, tmp_path):
    d = _write_avmnist(tmp_path / "data")
    np.save(d / "test_labels.npy", np.arange(12) - 1)
    assert_refused(capsys, board, r"test_labels.npy: labels span \[-1, 10\]; expected 0..9",
                   "--gin", _avmnist(gin_file, tmp_path / "data"), "--data-root", str(tmp_path / "data"))


def test_float_labels(capsys, board, gin_file, tmp_path):
    d = _write_avmnist(tmp_path / "data")
    np.save(d / "test_labels.npy", np.full(12, 0.5))
    assert_refused(capsys, board, r"test_labels.npy: found float64 \(12,\), expected \(12,\) integer labels",
                   "--gin", _avmnist(gin_file, tmp_path / "data"), "--data-root", str(tmp_path / "data"))


def test_pickled_object_array_is_not_loaded(capsys, board, gin_file, tmp_path):
    d = _write_avmnist(tmp_path / "data")
    np.save(d / "test_labels.npy", np.array([{"x": 1}] * 12, dtype=object), allow_pickle=True)
    assert_refused(capsys, board, r"test_labels.npy: cannot read as a .npy array.*would need pickle",
                   "--gin", _avmnist(gin_file, tmp_path / "data"), "--data-root", str(tmp_path / "data"))


# --- environment ----------------------------------------------------------------------------
def test_output_folder_not_writable(capsys, board, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["run", "--gin", str(TOY), "--out", str(blocker / "runs"),
                 "--leaderboard-dir", str(board.path), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "output folder is not writable" in err and "file/runs" in err
    assert board.intact()


def test_disk_nearly_full(capsys, board, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    assert_refused(capsys, board, r"only 1 MiB free on its disk; at least 200 MiB are needed",
                   "--gin", str(TOY))


def test_cuda_requested_without_cuda(capsys, board):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_refused(capsys, board, r"--device cuda: CUDA is not available", "--gin", str(TOY), "--device", "cuda")


def test_debug_shows_the_traceback(capsys, board, gin_file):
    with pytest.raises(KeyError):
        main(["run", "--debug", "--gin", gin_file("suite.dataset = 'nope'"), "--out", str(board.out),
              "--leaderboard-dir", str(board.path)])
    assert board.intact()
