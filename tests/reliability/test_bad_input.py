"""Bad input is caught early and explained: one message naming the file, line, binding or field
and what was expected; a non-zero exit code; no traceback unless --debug; earlier results intact.

Most cases are rows of two tables — ``CONFIG_CASES`` (gin lines / command-line arguments) and
``DATA_CASES`` (one defect written into otherwise valid AV-MNIST files) — each checked by
:func:`assert_refused`. Cases that need their own setup or assertions are separate functions.
"""
import re
import shutil
from collections import namedtuple

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
    code, err = run_cli(capsys, board, *args)
    assert code != 0, err
    assert re.search(pattern, err, re.S), err
    assert "Traceback" not in err
    assert board.intact(), "earlier results were changed"
    assert not list(board.path.glob("results/toy_smoke*")), "a refused run wrote result rows"


# --- configuration: names, gin, suite, training and fusion options ------------------------------
def case(id, pattern, *lines, file=None, args=(), include=True):
    """One refused configuration. The run gets ``--gin case.gin`` holding ``lines`` (after an
    ``include`` of the toy suite unless ``include=False``), or ``--gin file`` when ``file`` is
    given (a relative ``file`` is taken inside the test's tmp_path), then ``args``."""
    return pytest.param(lines, file, tuple(args), include, pattern, id=id)


CONFIG_CASES = [
    # names
    case("unknown_fusion", r"unknown fusion 'late_fusoin'.*Did you mean 'late_fusion'",
         "late_fusion/method.fusion = 'late_fusoin'"),
    case("unknown_method_on_the_command_line", r"unknown method 'a_onyl'.*Did you mean 'a_only'",
         file=TOY, args=["--methods", "a_onyl"]),
    case("unknown_dataset", r"unknown dataset 'avmnsit'.*Did you mean 'avmnist'",
         "suite.dataset = 'avmnsit'"),
    case("unknown_encoder", r"unknown encoder 'mpl'.*Did you mean 'mlp'",
         "a_only/method.options = {'modality': 'a', 'encoder': 'mpl'}"),
    case("unknown_recipe",
         r"unknown recipe 'pretrain_then_fine_tune'.*Did you mean 'pretrain_then_finetune'",
         "i2m2/method.recipe = 'pretrain_then_fine_tune'"),
    case("unknown_modality_option", r"has no modality 'c'; its modalities are a, b",
         "a_only/method.options = {'modality': 'c'}"),
    # gin
    case("unknown_binding_names_file_and_line", r"learning_rate.*case.gin.*line 2",
         "train.learning_rate = 0.1"),
    case("unknown_configurable", r"trian.*case.gin.*line 2", "trian.lr = 0.1"),
    case("gin_syntax_error", r"case.gin.*line 2", "train.lr = = 0.1"),
    case("missing_gin_file", r"gin file .*nope.gin: not found", file="nope.gin"),
    case("bad_command_line_binding", r"--gin-param.*train.lrr",
         file=TOY, args=["--gin-param", "train.lrr = 1"]),
    case("binding_for_a_method_that_does_not_exist", r"gin scope 'i2m3' names no method.*did you mean 'i2m2'.*case\.gin\", line 2",
         "i2m3/train.lr = 0.1"),
    case("method_without_fusion", r"method 'c_only'.*fusion.*c_only/method.fusion = ",
         f"include '{TOY.parent / 'base.gin'}'", "suite.name = 'toy_smoke'", "suite.dataset = 'toy'",
         "suite.methods = ['c_only']", "c_only/train.lr = 0.1", include=False),
    # pretraining
    case("pretrain_source_that_is_not_a_method", r"i2m2/method\.pretrain names 'a_onyl', which is not a method.*Did you mean 'a_only'",
         "i2m2/method.pretrain = {'a': 'a_onyl', 'b': 'b_only', 'inter': 'late_fusion'}"),
    case("pretrain_map_missing_an_expert",
         r"map each expert \['a', 'b', 'inter'\].*missing \['inter'\]",
         "i2m2/method.pretrain = {'a': 'a_only', 'b': 'b_only'}", args=["--methods", "i2m2"]),
    case("pretrain_map_with_the_joint_recipe",
         r"method 'i2m2': recipe 'joint' takes no method.pretrain", "i2m2/method.recipe = 'joint'"),
    case("pretrain_recipe_without_a_map",
         r"method 'i2m2': recipe 'pretrain_then_finetune' needs a method.pretrain map",
         "i2m2/method.pretrain = {}"),
    case("pretrain_cycle", r"cycle: i2m2 -> i2m2",
         "i2m2/method.pretrain = {'a': 'i2m2', 'b': 'b_only', 'inter': 'late_fusion'}"),
    # protocols and sweeps
    case("unknown_protocol", r"unknown protocol 'tset'", "suite.protocols = ['tset']"),
    case("unknown_shift_set", r"'shift:dialects' names no shift set of 'toy'; it has \['noisier'\]",
         "suite.protocols = ['test', 'shift:dialects']"),
    case("sweep_option_that_the_dataset_does_not_take",
         r"suite.sweep\['x'\] = \{'nosie': 1.0\}: .*nosie", "suite.sweep = {'x': {'nosie': 1.0}}"),
    case("sweep_label_that_is_not_a_folder_name", r"setting label '\.\./x' must be letters, digits",
         "suite.sweep = {'../x': {'noise': 1.0}}"),
    case("sweep_settings_that_coincide", r"settings 'a' and 'b' resolve to the same dataset options",
         "suite.sweep = {'a': {'noise': 1.0}, 'b': {'noise': 1.0}}"),
    case("empty_protocol_list", r"no protocols to evaluate", "suite.protocols = []"),
    # training and fusion options
    case("bad_optimizer", r"train.optimizer must be one of 'sgd', 'adam', 'adamw', 'rmsprop'; got 'sgdd'",
         "train.optimizer = 'sgdd'"),
    case("non_positive_learning_rate", r"method 'a_only'.*train.lr must be > 0",
         "a_only/train.lr = 0.0"),
    case("bad_embedded_schedule_field", r"embedded_schedule.overrides.*epoch",
         "embedded_schedule.overrides = {'epoch': 3}"),
    case("bad_fusion_option", r"fusion 'late_fusion'.*operator must be 'concat' or 'lrtf'; got 'sum'",
         "late_fusion/method.options = {'operator': 'sum'}"),
]


@pytest.mark.parametrize("lines,file,args,include,pattern", CONFIG_CASES)
def test_bad_configuration_is_refused(lines, file, args, include, pattern, capsys, board, gin_file,
                                      tmp_path):
    path = gin_file(*lines, include=include) if file is None else str(tmp_path / file)
    assert_refused(capsys, board, pattern, "--gin", path, *args)


# --- data: one defect in otherwise valid AV-MNIST files under --data-root ---------------------
AVMNIST_GIN = [f"include '{TOY.parent / 'avmnist_smoke.gin'}'"]


def _avmnist(gin_file, source="real"):
    return gin_file(*AVMNIST_GIN, f"suite.dataset_options = {{'source': '{source}', "
                    "'split_sizes': (30, 6, 12)}", include=False)


def _delete(rel):
    return lambda d: (d / rel).unlink()


def _save(rel, array, **kw):
    return lambda d: np.save(d / rel, array, **kw)


def _truncate(rel, size):
    return lambda d: (d / rel).write_bytes((d / rel).read_bytes()[:size])


def _nan_in_first_row(rel, count):
    def edit(d):
        x = np.load(d / rel)
        x[0, :count] = np.nan
        np.save(d / rel, x)
    return edit


DATA_CASES = [
    pytest.param(_delete("train_labels.npy"),
                 r"avmnist/train_labels.npy: file not found; expected integer digit labels",
                 id="missing_data_file"),
    pytest.param(_save("image/train_data.npy", np.zeros((36, 780), np.uint8)),
                 r"image/train_data.npy: found shape \(36, 780\), expected \(36, 784\)", id="wrong_shape"),
    pytest.param(_truncate("audio/test_data.npy", 1000),
                 r"audio/test_data.npy: cannot read as a .npy array", id="truncated_npy"),
    pytest.param(_nan_in_first_row("image/test_data.npy", 3),
                 r"image/test_data.npy: 3 NaN/Inf values", id="nan_in_data_is_counted"),
    pytest.param(_save("test_labels.npy", np.arange(12) - 1),
                 r"test_labels.npy: labels span \[-1, 10\]; expected 0..9", id="label_out_of_range"),
    pytest.param(_save("test_labels.npy", np.full(12, 0.5)),
                 r"test_labels.npy: found float64 \(12,\), expected \(12,\) integer labels",
                 id="float_labels"),
    pytest.param(_save("test_labels.npy", np.array([{"x": 1}] * 12, dtype=object), allow_pickle=True),
                 r"test_labels.npy: cannot read as a .npy array.*would need pickle",
                 id="pickled_object_array_is_not_loaded"),
]


@pytest.mark.parametrize("damage,pattern", DATA_CASES)
def test_bad_data_file_is_refused(damage, pattern, capsys, board, gin_file, tmp_path, write_avmnist):
    root = tmp_path / "data"
    damage(write_avmnist(root))
    assert_refused(capsys, board, pattern, "--gin", _avmnist(gin_file), "--data-root", str(root))


def test_real_data_without_a_root(capsys, board, gin_file, monkeypatch):
    monkeypatch.delenv("I2M2BENCH_DATA", raising=False)
    assert_refused(capsys, board, r"source='real' needs a data root \(--data-root DIR or \$I2M2BENCH_DATA\)",
                   "--gin", _avmnist(gin_file))


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
