"""Every guide in docs/ carries a complete example, and the tests execute it.

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
GUIDES = sorted((ROOT / "docs").glob("adding_*.md"))
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
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MPLBACKEND": "Agg"}
    for cmd in commands:
        argv = [sys.executable, *shlex.split(cmd)[1:]]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{guide.name}: `{cmd}` failed:\n{proc.stderr[-3000:]}"
    proc = subprocess.run([sys.executable, "-c", "\n".join(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{guide.name}: example failed:\n{proc.stderr[-3000:]}"
