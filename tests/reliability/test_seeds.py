"""Seeds outside [0, 2**32) are refused before anything runs. NumPy's legacy seeding takes 32 bits
(the harness seeds it with ``seed % 2**32``), so seeds 2**32 and 2**63 gave results bit-identical
to seed 0 while the board counted them as further seeds, and 2**64 passed the up-front checks
only to fail inside the unit."""
import pytest

from i2m2bench.harness.checks import SEED_LIMIT, out_of_range_seed
from tests.reliability.conftest import TOY

ALIASING = [2**32, 2**63, 2**64, -1]


@pytest.mark.parametrize("seed", ALIASING, ids=["2^32", "2^63", "2^64", "-1"])
def test_a_seed_outside_32_bits_on_the_command_line(seed, refused):
    err = refused(rf"--seeds: seed {seed} is outside \[0, 2\*\*32\)", "--gin", str(TOY),
                  "--seeds", "0", str(seed))
    assert "would repeat a smaller one" in err


@pytest.mark.parametrize("seed", ALIASING, ids=["2^32", "2^63", "2^64", "-1"])
def test_a_seed_outside_32_bits_in_the_suite(seed, refused, gin_file):
    refused(rf"suite\.seeds: seed {seed} is outside \[0, 2\*\*32\)",
            "--gin", gin_file(f"suite.seeds = [0, {seed}]"))


def test_a_seed_outside_32_bits_through_the_python_api(tmp_path):
    from i2m2bench.harness import run_suite

    with pytest.raises(ValueError, match=r"run_suite: seeds: seed 4294967296 is outside"):
        run_suite([str(TOY)], seeds=[4294967296], out=tmp_path / "runs",
                  results_dir=tmp_path / "lb", progress=False)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()


def test_the_limits_themselves():
    assert SEED_LIMIT == 2**32
    assert out_of_range_seed([0, 1, 2**32 - 1]) is None
    assert out_of_range_seed([0, 2**32, -5]) == 2**32
    assert out_of_range_seed([-5]) == -5
