"""Every citation of the official code in the fidelity tables (``docs/datasets/*.md``, section
"Fidelity to the official code") names a file that exists at the pinned commit and lines that
file has. The line counts were read once from the official repositories at the commits the pages
pin (``tests/golden/official_file_lengths.json``: repository, commit, and the number of lines of
each text file), so the test needs no network.

A citation is ``\\`file\\`: 12-34`` (also ``12, 40-41`` or ``86 vs 100-106``), optionally after a
repository's letter (``V \\`comput_score.py\\`: 30-36``); the letter holds up to the end of its
parenthesis or the next ``;``. A file without a letter is looked up in the page's own repository
(**I**, the I2M2 code: first under the dataset's folder), then in the others the page pins. A
name that matches several files must be written with enough of its path to pick one.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = json.loads((ROOT / "tests" / "golden" / "official_file_lengths.json").read_text())
PAGES = sorted(p for p in (ROOT / "docs" / "datasets").glob("*.md")
               if "## Fidelity to the official code" in p.read_text(encoding="utf-8"))
#: Where a page's unlettered files live in the I2M2 code, most specific first.
FOLDERS = {"avmnist": ("avmnist_and_mimic/datasets/avmnist/", "avmnist_and_mimic/"),
           "mimic": ("avmnist_and_mimic/datasets/mimic/", "avmnist_and_mimic/"),
           "fastmri": ("fastMRI/",), "vqa_vs": ("vqa_nlvr/",), "nlvr2": ("vqa_nlvr/",),
           # docs/fidelity.md's table of the official-behaviour switches
           "fidelity": ("avmnist_and_mimic/training_structures/", "avmnist_and_mimic/", "fastMRI/",
                        "vqa_nlvr/fiber/utils/", "vqa_nlvr/")}
TOKEN = re.compile(
    r"(?P<open>\()|(?P<close>\))|(?P<semi>;)|"
    r"(?:\b(?P<letter>[A-Z]) )?`(?P<file>[^`\s]+\.(?:py|md|json|txt|yaml|yml|sh|cfg))`: "
    r"(?P<lines>\d+(?:-\d+)?(?:(?:, | vs | and )\d+(?:-\d+)?)*)")


def citations(page: Path) -> list[tuple[str | None, str, list[int]]]:
    """(repository letter or None, file, every line number) of each citation in the page's
    fidelity table."""
    section = page.read_text(encoding="utf-8").split("## Fidelity to the official code")[1]
    section = section.split("\n## ")[0]
    found = []
    for line in section.splitlines():
        if not line.startswith("| "):
            continue
        letter = None
        for m in TOKEN.finditer(line):
            if m.group("open") or m.group("close") or m.group("semi"):
                letter = None
                continue
            letter = m.group("letter") or letter
            found.append((letter, m.group("file"), [int(x) for x in re.findall(r"\d+", m.group("lines"))]))
    return found


def resolve(page: str, letter: str | None, name: str) -> tuple[str, str]:
    """(repository letter, path) of a cited file; AssertionError when none or several match."""
    order = ([letter] if letter in LENGTHS else []) + ["I"] + [k for k in LENGTHS if k not in (letter, "I")]
    for key in order:
        files = LENGTHS[key]["lines"]
        if name in files:
            return key, name
        matches = [f for f in files if f.endswith("/" + name)]
        if key == "I":
            for folder in FOLDERS[page]:
                inside = [f for f in matches if f.startswith(folder)]
                if inside:
                    matches = inside
                    break
        assert len(matches) <= 1, f"{page}: `{name}` matches {matches} in {LENGTHS[key]['repository']}"
        if matches:
            return key, matches[0]
    raise AssertionError(f"{page}: `{name}` is no file of {[v['repository'] for v in LENGTHS.values()]}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_every_citation_names_an_existing_file_and_lines(page):
    cites = citations(page)
    assert len(cites) >= 10, f"{page.name}: only {len(cites)} citations found; has the format changed?"
    text = page.read_text(encoding="utf-8")
    for letter, name, lines in cites:
        key, path = resolve(page.stem, letter, name)
        repo = LENGTHS[key]
        assert repo["commit"][:8] in text, f"{page.name} does not pin {repo['repository']}'s commit"
        length = repo["lines"][path]
        assert all(1 <= n <= length for n in lines), (
            f"{page.name}: `{name}`: {lines} cited, but {repo['repository']}@{repo['commit'][:8]}:"
            f"{path} has {length} lines")


def test_the_recorded_lengths_are_of_the_pinned_commits():
    pinned = {"I": "7742765f", "V": "b1249bec", "R": "d12968b1", "N": "18924841", "F": "684fb128"}
    assert {k: v["commit"][:8] for k, v in LENGTHS.items()} == pinned
    assert all(v["lines"] for v in LENGTHS.values())


def test_the_official_switch_table_cites_existing_files_and_lines():
    """docs/fidelity.md's table of the official-behaviour switches: every citation exists at the
    pinned commits (files under any of the I2M2 code's folders)."""
    text = (ROOT / "docs" / "fidelity.md").read_text(encoding="utf-8")
    section = text.split("## The official behaviours, runnable")[1].split("\n## ")[0]
    cites = []
    for line in section.splitlines():
        if line.startswith("| `"):
            cites += [(m.group("file"), [int(x) for x in re.findall(r"\d+", m.group("lines"))])
                      for m in TOKEN.finditer(line) if m.group("file")]
    assert len(cites) >= 6
    from i2m2bench.harness.official import OFFICIAL
    assert sorted(line.split("`")[1] for line in section.splitlines()
                  if line.startswith("| `")) == OFFICIAL.names()  # every switch, no other
    for name, lines in cites:
        key, path = resolve("fidelity", None, name)
        length = LENGTHS[key]["lines"][path]
        assert all(1 <= n <= length for n in lines), f"`{name}`: {lines} beyond {path}'s {length} lines"
