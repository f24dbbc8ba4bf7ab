"""Names that reach Markdown, CSV or a path cannot break the output: a method label holding ``|``
or a line break (which injected cells and a fake row into the board) is refused, naming the
binding; a suite named after a file or folder the leaderboard folder already holds
(``poe_kernel`` overwrote the PoE table) is refused. Nothing already written changes."""
import pytest

from i2m2bench.harness.checks import RESERVED_BOARD_NAMES, SettingError, check_label


@pytest.mark.parametrize("label", ["I2M2 | fake cell", "two\\nlines", "tab\\there", "cr\\rhere"],
                         ids=["pipe", "newline", "tab", "carriage-return"])
def test_a_label_that_would_break_the_board(label, refused, gin_file):
    err = refused(r"method 'a_only': method\.label .* contains .*: a label is a cell of the Markdown "
                  r'board.*case\.gin", line 2',
                  "--gin", gin_file(f"a_only/method.label = '{label}'"))
    assert err.count("\n") <= 3  # one message, not a traceback


@pytest.mark.parametrize("name", ["poe_kernel", "training_throughput", "POE_KERNEL", "results"])
def test_a_suite_named_after_a_reserved_board(name, refused, gin_file, board):
    (board.path / "poe_kernel.md").write_text("the PoE table\n")
    refused(rf"suite\.name: '{name}' is reserved in a leaderboard folder",
            "--gin", gin_file(f"suite.name = '{name}'"))
    assert (board.path / "poe_kernel.md").read_text() == "the PoE table\n"


def test_labels_that_stay_allowed():
    for ok in (None, "I2M2 (LF)", "late fusion — LRTF, rank 4", "`code` & *emphasis*"):
        assert check_label(ok) == ok
    with pytest.raises(SettingError, match="must be a string or None"):
        check_label(3)
    assert {"poe_kernel", "training_throughput"} <= RESERVED_BOARD_NAMES
