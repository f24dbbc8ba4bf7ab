"""Every setting is checked before any training, and a refusal names the binding and the file and
line (or ``--gin-param``) that set it: types (a whole number given ``2.5``, ``'3'`` or ``True`` is
refused, never rounded), signs and ranges, NaN/Inf, empty and duplicate lists, dataset sizes,
``suite.reference``; names that become folders; output folders, data roots and devices given on
the command line; ``bench --quick`` never writing over the published table.

Each refusal is checked by the ``refused`` fixture (tests/reliability/conftest.py): exit code != 0,
a message naming the culprit, no traceback, earlier results intact, no result rows written.
"""
from pathlib import Path

import pytest
import torch

from i2m2bench.cli import main

from .conftest import TOY

AVMNIST_SMOKE = TOY.parent / "avmnist_smoke.gin"
LINE2 = r'case\.gin", line 2'  # the line after the gin_file fixture's include


def case(id, pattern, *lines, args=()):
    """``--gin case.gin`` holding the toy suite plus ``lines``, then ``args``."""
    return pytest.param(lines, tuple(args), pattern, id=id)


SETTING_CASES = [
    # train.*: whole numbers are never rounded; bool is not an int
    case("epochs_float", rf"train\.epochs must be a whole number, not a float.*got 2\.5.*{LINE2}.*"
         r"train\.epochs = 2\.5", "train.epochs = 2.5"),
    case("epochs_string", rf"train\.epochs must be a whole number, not a str.*got '3'.*{LINE2}",
         "train.epochs = '3'"),
    case("epochs_zero", rf"train\.epochs must be > 0; got 0.*{LINE2}", "train.epochs = 0"),
    case("batch_size_bool", rf"train\.batch_size must be a whole number, not a bool.*{LINE2}",
         "train.batch_size = True"),
    case("eval_batch_size_float", r"train\.eval_batch_size must be a whole number, not a float.*"
         r"got 100\.0", "train.eval_batch_size = 100.0"),
    case("patience_fraction", rf"train\.patience must be a whole number >= 1 or None.*2\.5.*{LINE2}",
         "train.patience = 2.5"),
    case("momentum_one", rf"train\.momentum must be in \[0, 1\); got 1\.0.*{LINE2}",
         "train.momentum = 1.0"),
    case("negative_weight_decay", rf"train\.weight_decay must be >= 0; got -0\.0001.*{LINE2}",
         "train.weight_decay = -1e-4"),
    case("zero_grad_clip", rf"train\.grad_clip must be > 0, or None for no clipping; got 0\.0.*{LINE2}",
         "train.grad_clip = 0.0"),
    case("infinite_lr", rf"train\.lr must be a finite number.*got inf.*{LINE2}", "train.lr = 1e999"),
    case("lr_as_string", r"train\.lr must be a number; got '0\.1'", "train.lr = '0.1'"),
    case("scoped_binding_is_named_as_written",
         rf"method 'b_only': train\.lr must be > 0; got -1\.0.*{LINE2}: b_only/train\.lr = -1\.0",
         "b_only/train.lr = -1.0"),
    case("gin_param_is_named", r"train\.epochs must be a whole number.*--gin-param 'train\.epochs = 1\.5'",
         args=["--gin-param", "train.epochs = 1.5"]),
    case("embedded_schedule_override",
         rf"embedded_schedule\.overrides\['epochs'\] = 2\.5: train\.epochs must be a whole number.*{LINE2}",
         "embedded_schedule.overrides = {'epochs': 2.5, 'patience': 3}"),
    # suite.*
    case("seed_as_float_one", rf"suite\.seeds must be whole numbers, not a float such as 1\.0.*{LINE2}",
         "suite.seeds = [0, 1.0]"),
    case("seed_as_fraction", r"suite\.seeds must be whole numbers, not a float such as 0\.5",
         "suite.seeds = [0.5]"),
    case("no_seeds", rf"suite\.seeds must be a non-empty list.*{LINE2}", "suite.seeds = []"),
    case("duplicate_seeds", r"suite\.seeds lists 1 more than once", "suite.seeds = [1, 1]"),
    case("no_methods", rf"suite\.methods must be a non-empty list of method names.*{LINE2}",
         "suite.methods = []"),
    case("methods_as_one_string", r"suite\.methods must be a list of method names; got 'a_only'",
         "suite.methods = 'a_only'"),
    case("duplicate_methods", r"suite\.methods lists 'a_only' more than once",
         "suite.methods = ['a_only', 'b_only', 'a_only']"),
    case("level_above_one", rf"suite\.levels must be in \(0, 1\].*got 1\.5.*{LINE2}",
         "suite.levels = [0.5, 1.5]"),
    case("level_zero", r"suite\.levels must be in \(0, 1\] \(level 0 is the test score itself\); got 0",
         "suite.levels = [0, 0.5]"),
    case("infinite_level", r"suite\.levels must be a finite number.*got inf", "suite.levels = [1e999]"),
    case("dataset_options_as_list", rf"suite\.dataset_options must be a dict.*{LINE2}",
         "suite.dataset_options = ['n_train', 64]"),
    case("infinite_dataset_option", rf"suite\.dataset_options\['noise'\] = inf: NaN/Inf.*{LINE2}",
         "suite.dataset_options = {'noise': 1e999}"),
    case("zero_train_samples", r"toy: option 'n_train' must be a whole number >= 1; got 0",
         "suite.dataset_options = {'n_train': 0}"),
    case("negative_eval_samples", r"toy: option 'n_eval' must be a whole number >= 1; got -8",
         "suite.dataset_options = {'n_eval': -8}"),
    case("fractional_sample_count", r"toy: option 'n_train' must be a whole number >= 1; got 64\.5",
         "suite.dataset_options = {'n_train': 64.5}"),
    case("reference_typo", rf"suite\.reference 'late_fusoin' names no method.*did you mean "
         rf"'late_fusion'.*{LINE2}", "suite.reference = 'late_fusoin'"),
    case("default_reference_missing_with_curves",
         r"suite\.reference 'late_fusion' names no method of suite\.methods \['a_only', 'b_only'\].*"
         r"\(the default\).*perturb:a:gaussian@0\.5",
         "suite.methods = ['a_only', 'b_only']", "suite.protocols = ['test', 'perturb:a:gaussian@0.5']"),
    # names that become folders
    case("suite_name_with_a_slash", rf"suite\.name: suite name 'a/b' must be letters, digits.*{LINE2}",
         "suite.name = 'a/b'"),
    case("suite_name_dot_dot", r"suite name '\.\.' must be letters, digits", "suite.name = '..'"),
    case("empty_suite_name", r"suite name '' must be letters, digits", "suite.name = ''"),
    case("method_name_escaping_its_folder", r"suite\.methods: method name '\.\./a_only' must be letters",
         "suite.methods = ['../a_only']"),
    case("method_name_with_a_backslash", r"method name 'a\\\\b' must be letters",
         "suite.methods = ['a\\\\b']"),
    case("sweep_label_dot", r"suite\.sweep: setting label '\.' must be letters",
         "suite.sweep = {'.': {'noise': 1.0}}"),
]


@pytest.mark.parametrize("lines,args,pattern", SETTING_CASES)
def test_bad_setting_is_refused_naming_the_binding(lines, args, pattern, refused, gin_file):
    refused(pattern, "--gin", gin_file(*lines), *args)


def test_avmnist_embedded_subset_sizes_are_checked(refused, gin_file):
    path = gin_file(f"include '{AVMNIST_SMOKE}'",
                    "suite.dataset_options = {'source': 'embedded', 'max_train': 0, 'max_eval': 50}",
                    include=False)
    refused(r"avdigits: option 'max_train' must be a whole number >= 1 or None \(all\); got 0",
            "--gin", path)


def test_avmnist_split_sizes_are_checked(refused, gin_file, tmp_path, write_avmnist):
    write_avmnist(tmp_path / "data")
    path = gin_file(f"include '{AVMNIST_SMOKE}'",
                    "suite.dataset_options = {'source': 'real', 'split_sizes': (30, -6, 12)}",
                    include=False)
    refused(r"avmnist: option 'split_sizes \(val rows\)' must be a whole number >= 1; got -6",
            "--gin", path, "--data-root", str(tmp_path / "data"))


def test_without_curves_the_default_reference_may_be_left_out(capsys, board, gin_file):
    """Effective robustness is only drawn for curves: a suite without them (toy_smoke's
    protocols are test and shift sets) may leave out late fusion, the default reference."""
    path = gin_file("suite.methods = ['a_only', 'b_only']")
    assert main(["run", "--gin", path, "--dry-run", "--out", str(board.out), "--leaderboard-dir",
                 str(board.path)]) == 0
    assert "dry run: 4 to train" in capsys.readouterr().out  # two methods x two seeds
    assert board.intact()


# --- command-line arguments ---------------------------------------------------------------
@pytest.mark.parametrize("args,pattern", [
    pytest.param(["--out", ""], r"--out is empty; name a folder", id="empty_out"),
    pytest.param(["--leaderboard-dir", ""], r"--leaderboard-dir is empty; name a folder",
                 id="empty_leaderboard_dir"),
    pytest.param(["--seeds", "0", "0"], r"--seeds lists a seed more than once; got \[0, 0\]",
                 id="duplicate_seeds_on_the_command_line"),
    pytest.param(["--methods", "a_only", "a_only"], r"--methods names a method more than once",
                 id="duplicate_methods_on_the_command_line"),
    pytest.param(["--device", "tpu"], r"--device tpu: unknown device type; available: cpu",
                 id="unknown_device"),
    pytest.param(["--device", "meta"], r"--device meta: not a device to train on.*available: cpu",
                 id="meta_device"),
    pytest.param(["--device", "cuda:64"], r"--device cuda:64: .*available: cpu",
                 id="cuda_device_index_out_of_range"),
])
def test_bad_command_line_argument_is_refused(args, pattern, refused):
    refused(pattern, "--gin", str(TOY), *args)


def test_mps_requested_where_there_is_none(refused):
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    refused(r"--device mps: not a device to train on, on this machine; available: cpu",
            "--gin", str(TOY), "--device", "mps")


def test_fractional_seed_on_the_command_line(capsys, board):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--gin", str(TOY), "--seeds", "0.5", "--out", str(board.out),
              "--leaderboard-dir", str(board.path)])
    assert exit_.value.code == 2 and "invalid int value: '0.5'" in capsys.readouterr().err
    assert board.intact()


# --- data roots ---------------------------------------------------------------------------
def test_data_root_that_does_not_exist(refused, tmp_path):
    refused(rf"--data-root {tmp_path}/nowhere: no such folder", "--gin", str(TOY),
            "--data-root", str(tmp_path / "nowhere"))


def test_data_root_that_is_a_file(refused, tmp_path):
    (tmp_path / "data").write_text("not a folder")
    refused(rf"--data-root {tmp_path}/data: is a file, not a folder", "--gin", str(AVMNIST_SMOKE),
            "--data-root", str(tmp_path / "data"))


def test_data_root_from_the_environment_that_does_not_exist(refused, gin_file, tmp_path, monkeypatch):
    monkeypatch.setenv("I2M2BENCH_DATA", str(tmp_path / "gone"))
    path = gin_file(f"include '{AVMNIST_SMOKE}'", "suite.dataset_options = {'source': 'auto'}",
                    include=False)
    refused(rf"\$I2M2BENCH_DATA {tmp_path}/gone: no such folder", "--gin", path)


def test_a_given_data_root_without_avmnist_never_falls_back_to_embedded(refused, gin_file, tmp_path,
                                                                        monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("I2M2BENCH_DATA", str(tmp_path / "data"))
    path = gin_file(f"include '{AVMNIST_SMOKE}'", "suite.dataset_options = {'source': 'auto'}",
                    include=False)
    refused(rf"data/avmnist: not found; the data root \(\$I2M2BENCH_DATA {tmp_path}/data\) must "
            r"hold the AV-MNIST folder", "--gin", path)


@pytest.mark.parametrize("env", ["valid", "missing"])
def test_data_root_in_the_environment_leaves_generated_data_alone(env, capsys, board, tmp_path,
                                                                  monkeypatch):
    """A suite on generated data (toy) reads no data root: $I2M2BENCH_DATA does not matter."""
    (tmp_path / "valid").mkdir()
    monkeypatch.setenv("I2M2BENCH_DATA", str(tmp_path / env))
    assert main(["run", "--gin", str(TOY), "--dry-run", "--out", str(board.out),
                 "--leaderboard-dir", str(board.path)]) == 0, capsys.readouterr().err


def test_embedded_avmnist_ignores_the_environment(monkeypatch, tmp_path):
    from i2m2bench.data.avmnist import build_avmnist

    monkeypatch.setenv("I2M2BENCH_DATA", str(tmp_path / "gone"))
    task = build_avmnist(source="embedded", max_train=20, max_eval=20)
    assert task.spec.source == "embedded"


# --- bench --quick ------------------------------------------------------------------------
def test_bench_quick_writes_to_a_scratch_folder(monkeypatch, tmp_path, capsys):
    import i2m2bench.bench as bench

    calls = []
    monkeypatch.setattr(bench, "run_benchmarks",
                        lambda out, quick=False, extra=(): calls.append((Path(out), quick)) or
                        Path(out) / "poe_kernel.md")
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick"]) == 0
    assert calls[-1] == (Path("runs") / "bench-quick", True)
    assert "leaderboards/poe_kernel.md is untouched" in capsys.readouterr().out
    assert main(["bench", "--quick", "--leaderboard-dir", "mine"]) == 0
    assert calls[-1] == (Path("mine"), True)
    assert main(["bench"]) == 0
    assert calls[-1] == (Path("leaderboards"), False)


def test_bench_with_an_empty_leaderboard_dir(refused):
    refused(r"--leaderboard-dir is empty", command=["bench", "--quick", "--leaderboard-dir", ""])


def test_leaderboard_with_an_empty_leaderboard_dir(refused):
    refused(r"--leaderboard-dir is empty", command=["leaderboard", "--leaderboard-dir", ""])
