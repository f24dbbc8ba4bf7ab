"""Every guide in docs/extending/ carries a complete example, and the tests execute it; the
README stays a front page whose commands are CI's; every docs page is in the site's navigation.

A guide's fenced blocks tagged ``python file=NAME`` / ``gin file=NAME`` are written to a scratch
folder (where ``gin/`` points at the suite's gin files), its plain ``python`` blocks are run
there in order as one script, and its ``bash`` lines ``python -m i2m2bench ...`` are run too.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "docs" / "extending").glob("adding_*.md"))
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks(text: str):
    for lang, info, body in FENCE.findall(text):
        attrs = dict(kv.split("=", 1) for kv in info.split() if "=" in kv)
        yield lang, attrs, body


def test_there_is_a_guide_per_extension_point():
    assert {p.stem for p in GUIDES} >= {"adding_a_fusion", "adding_an_encoder", "adding_a_dataset",
                                        "adding_a_perturbation"}


@pytest.mark.slow
@pytest.mark.parametrize("guide", GUIDES, ids=[p.stem for p in GUIDES])
def test_guide_example_runs(guide, tmp_path):
    (tmp_path / "gin").symlink_to(ROOT / "gin")
    script, commands = [], []
    for lang, attrs, body in blocks(guide.read_text(encoding="utf-8")):
        if "file" in attrs:
            (tmp_path / attrs["file"]).write_text(body, encoding="utf-8")
        elif lang == "python":
            script.append(body)
        elif lang == "bash":
            commands += [ln for ln in body.splitlines() if ln.startswith("python -m i2m2bench")]
    assert script, f"{guide.name} has no executable python example"
    pythonpath = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "MPLBACKEND": "Agg"}
    for cmd in commands:
        argv = [sys.executable, *shlex.split(cmd)[1:]]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{guide.name}: `{cmd}` failed:\n{proc.stderr[-3000:]}"
    proc = subprocess.run([sys.executable, "-c", "\n".join(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{guide.name}: example failed:\n{proc.stderr[-3000:]}"


# --- the README is a front page; the site's navigation covers every page ----------------------
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"


def fenced_commands(text: str, lang: str = "bash") -> list[str]:
    """The lines of every ``lang`` block of a Markdown text, comments and blank lines left out."""
    return [ln.strip() for blk_lang, _, body in blocks(text) if blk_lang == lang
            for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_the_readme_is_a_front_page_of_at_most_200_lines():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 200, f"README.md has {n} lines; move the reference material to docs/"


def test_the_readme_set_up_and_test_commands_are_the_ones_ci_runs():
    text = README.read_text(encoding="utf-8")
    ci = [ln.strip() for ln in CI.read_text(encoding="utf-8").splitlines()]

    def section(title):
        start = text.index(title)
        end = text.find("\n## ", start + 1)
        return fenced_commands(text[start:end if end > 0 else None])

    set_up, test = section("## Set up"), section("## Test")
    assert set_up == ['python3 -m venv .venv && .venv/bin/pip install --no-cache-dir -e ".[dev]"']
    assert test == [".venv/bin/python -m pytest"]
    assert set_up[0] in ci and test[0] in ci


def _nav_pages(nav) -> list[str]:
    """Every page path in mkdocs.yml's ``nav`` (nested sections included)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for v in nav.values() for p in _nav_pages(v)]
    return [p for item in nav for p in _nav_pages(item)]


def _mkdocs_config() -> dict:
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may use !!python/name tags and !ENV; reading the nav needs neither
    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)


def test_every_docs_page_is_in_the_site_navigation_and_every_nav_entry_exists():
    config = _mkdocs_config()
    docs = ROOT / config.get("docs_dir", "docs")
    nav = _nav_pages(config["nav"])
    assert len(nav) == len(set(nav)), "a page is listed twice in mkdocs.yml's nav"
    missing = [p for p in nav if not (docs / p).is_file()]
    assert not missing, f"mkdocs.yml's nav lists pages that do not exist: {missing}"
    pages = {p.relative_to(docs).as_posix() for p in docs.rglob("*.md")}
    assert not pages - set(nav), f"pages missing from mkdocs.yml's nav: {sorted(pages - set(nav))}"
    assert {p.relative_to(docs).as_posix() for p in GUIDES} <= set(nav)


def test_ci_builds_the_site_strictly():
    assert any(ln.startswith(".venv/bin/mkdocs build --strict")
               for ln in (l.strip() for l in CI.read_text(encoding="utf-8").splitlines()))
