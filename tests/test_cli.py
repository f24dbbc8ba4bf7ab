"""The CLI end to end, as a user types it (subprocesses, embedded data, no network)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "i2m2bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_smoke_suite_end_to_end(tmp_path):
    lb = tmp_path / "lb"
    r = cli("run", "--gin", "gin/avmnist_smoke.gin", "--out", str(tmp_path / "runs"),
            "--leaderboard-dir", str(lb), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "EMBEDDED AV-Digits" in r.stderr  # said on the console
    md = (lb / "avmnist_smoke-embedded-avdigits.md").read_text()
    for m in ("image_only", "audio_only", "intra_only", "late_fusion", "lrtf", "early_fusion",
              "i2m2_lf", "i2m2_lrtf"):
        assert f"(`{m}`)" in md
    assert "EMBEDDED" in md and "shift:dialects" in md
    ok = cli("leaderboard", "--check", "--leaderboard-dir", str(lb))
    assert ok.returncode == 0, ok.stderr
    (lb / "avmnist_smoke-embedded-avdigits.md").write_text(md.replace("image_only", "image-only"))
    stale = cli("leaderboard", "--check", "--leaderboard-dir", str(lb))
    assert stale.returncode == 1 and "stale" in stale.stderr
    assert cli("leaderboard", "--leaderboard-dir", str(lb)).returncode == 0
    assert (lb / "avmnist_smoke-embedded-avdigits.md").read_text() == md
    again = cli("run", "--gin", "gin/avmnist_smoke.gin", "--out", str(tmp_path / "runs"),
                "--leaderboard-dir", str(lb), "--no-progress")
    assert again.returncode == 0 and "nothing to train" in again.stdout


def test_list_shows_every_registry():
    r = cli("list")
    assert r.returncode == 0
    for name in ("avmnist", "avdigits", "lenet", "i2m2", "late_fusion", "pretrain_then_finetune"):
        assert name in r.stdout


def test_help_for_newcomers():
    r = cli("run", "--help")
    assert r.returncode == 0 and "--gin" in r.stdout and "examples:" in r.stdout


def test_bad_config_is_one_clear_error_without_traceback(tmp_path):
    scratch = ("--out", str(tmp_path), "--leaderboard-dir", str(tmp_path))  # not the published
    # folder, which a working tree with uncommitted changes may not write to
    r = cli("run", "--gin", str(tmp_path / "missing.gin"), *scratch)
    assert r.returncode == 2 and "error: gin file" in r.stderr and "Traceback" not in r.stderr
    r = cli("run", "--gin", "gin/toy_smoke.gin", "--methods", "i2m3", "--out", str(tmp_path),
            "--leaderboard-dir", str(tmp_path))
    assert r.returncode == 2 and "Did you mean 'i2m2'" in r.stderr and "Traceback" not in r.stderr
    r = cli("run", "--debug", "--gin", str(tmp_path / "missing.gin"), *scratch)
    assert r.returncode != 0 and "Traceback" in r.stderr
