"""The dataset family record (:mod:`i2m2bench.data.common.family`): every built-in family is
registered with the same verbs, the verify levels are one set (with the old spellings as
aliases), and a plugin family gets ``prepare`` / ``verify`` from the CLI with its own options."""
from __future__ import annotations

from pathlib import Path

import pytest

from i2m2bench.cli import main
from i2m2bench.data import FAMILIES, DATASETS, DataError, DatasetFamily, PrepareOption, find_family
from i2m2bench.data.common.family import VERIFY_LEVELS, verify_level


def test_every_built_in_family_is_registered_with_its_datasets():
    assert set(FAMILIES.names()) >= {"avmnist", "fastmri", "mimic", "vqa_vs", "nlvr2"}
    for name in FAMILIES.names():
        fam = FAMILIES.get(name)
        assert fam.name == name and callable(fam.verify_files)
        assert all(d in DATASETS for d in fam.datasets), (name, fam.datasets)
    assert find_family("vqa-vs") is FAMILIES.get("vqa_vs")  # the CLI's old spelling
    assert FAMILIES.get("avmnist").prepare_files is None  # read in place: verify only


def test_one_set_of_verify_levels_with_the_old_spellings_as_aliases():
    assert VERIFY_LEVELS == ("quick", "full")
    assert verify_level("probe") == verify_level("size") == "quick"
    with pytest.raises(ValueError, match="verify must be one of 'quick', 'full'"):
        verify_level("fast", "fastmri")


@pytest.fixture
def tiny_family():
    calls = []

    def prepare(folder: Path, rows: int = 3, progress: bool = True) -> Path:
        calls.append(("prepare", folder, rows, progress))
        out = folder / "tiny.txt"
        out.write_text("x\n" * rows)
        return out

    def verify(folder: Path, level: str) -> str:
        calls.append(("verify", folder, level))
        path = folder / "tiny.txt"
        if not path.exists():
            raise DataError(f"{path}: not found")
        return f"tiny: {len(path.read_text().splitlines())} rows ({level})"

    fam = DatasetFamily(name="tiny_plugin", datasets=(), folder="tiny", holding="tiny/",
                        prepare_files=prepare, verify_files=verify,
                        options=(PrepareOption("rows", "rows to write", int, 3),
                                 PrepareOption("progress", "no progress bar", flag=True, default=True)))
    FAMILIES.add(fam.name, fam, origin="tests.tiny_plugin")
    yield fam, calls
    FAMILIES.remove(fam.name)


def test_a_plugin_family_is_prepared_and_verified_through_the_cli(tiny_family, tmp_path, capsys):
    fam, calls = tiny_family
    (tmp_path / "tiny").mkdir()
    assert main(["prepare", "tiny_plugin", "--data-root", str(tmp_path), "--rows", "5",
                 "--no-progress"]) == 0
    assert calls[-1] == ("prepare", tmp_path / "tiny", 5, False)
    assert "wrote" in capsys.readouterr().out
    assert main(["verify", "tiny_plugin", "--data-root", str(tmp_path), "--level", "probe"]) == 0
    assert calls[-1] == ("verify", tmp_path / "tiny", "quick")
    assert "tiny: 5 rows (quick)" in capsys.readouterr().out
    assert fam.prepare(tmp_path, rows=2).read_text() == "x\nx\n"
    with pytest.raises(TypeError, match="no option"):
        fam.prepare(tmp_path, colour="red")
    with pytest.raises(SystemExit):  # an option the family does not declare: argparse refuses it
        main(["prepare", "tiny_plugin", "--data-root", str(tmp_path), "--colour", "red"])


def test_cli_errors_name_the_family_and_the_folder(tmp_path, capsys):
    assert main(["prepare", "no_such_family", "--data-root", str(tmp_path)]) == 2
    assert "no_such_family" in capsys.readouterr().err
    assert main(["prepare", "avmnist", "--data-root", str(tmp_path)]) == 2
    assert "nothing to prepare" in capsys.readouterr().err
    assert main(["verify", "mimic", "--data-root", str(tmp_path)]) == 2
    assert "mimic" in capsys.readouterr().err
