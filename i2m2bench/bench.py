"""``python -m i2m2bench bench``: run the PoE kernel benchmarks and publish their table.

The benchmark JSON written by pytest-benchmark is kept in ``leaderboards/bench/poe_kernel.json``
and ``leaderboards/poe_kernel.md`` is a pure function of it
(:func:`i2m2bench.reporting.poe_kernel.render_poe_markdown`), so ``leaderboard --check`` can
verify the committed table like the others (:func:`stale_poe`). ``bench --quick`` (a tiny grid
that checks the code, not a measurement) writes to :data:`QUICK_DIR` unless a folder is named
(:func:`default_out_dir`), so it never replaces the published table.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from i2m2bench.fileio import write_text_atomic
from i2m2bench.reporting.poe_kernel import render_poe_markdown

BENCH_FILE = "benchmarks/test_poe_throughput.py"
#: Where ``bench`` writes: the published folder, and the scratch folder of ``--quick`` (relative
#: to the working directory, like ``run --out runs``).
PUBLISHED_DIR = Path("leaderboards")
QUICK_DIR = Path("runs") / "bench-quick"


def default_out_dir(quick: bool) -> Path:
    """The folder ``bench`` writes to when none is named: a quick check's tiny grid goes to
    :data:`QUICK_DIR`, never over the published table in :data:`PUBLISHED_DIR`."""
    return QUICK_DIR if quick else PUBLISHED_DIR


def json_path(out_dir: Path) -> Path:
    return out_dir / "bench" / "poe_kernel.json"


def run_benchmarks(out_dir: Path, quick: bool = False, extra: list[str] = ()) -> Path:
    """Run the benchmark suite (from a source checkout) and render ``poe_kernel.md``."""
    root = Path(__file__).resolve().parents[1]
    out_dir = Path(out_dir).resolve()  # pytest runs in ``root``: its --benchmark-json must not be relative
    if not (root / BENCH_FILE).is_file():
        raise FileNotFoundError(f"{root / BENCH_FILE} not found: `bench` runs from a source "
                                "checkout (pip install -e .)")
    target = json_path(out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.json")
    env = {**os.environ, **({"I2M2BENCH_BENCH_QUICK": "1"} if quick else {})}
    cmd = [sys.executable, "-m", "pytest", str(root / BENCH_FILE), "-q", "-p", "no:cacheprovider",
           f"--benchmark-json={tmp}", "--benchmark-sort=name", *extra]
    r = subprocess.run(cmd, cwd=root, env=env)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"benchmarks failed (exit {r.returncode}): {' '.join(cmd)}")
    _stamp_commit(tmp)
    if extra and target.exists():  # a subset (-k ...): replace those entries, keep the others
        new, old = _load(tmp), _load(target)
        names = {b["fullname"] for b in new["benchmarks"]}
        old["benchmarks"] = [b for b in old["benchmarks"] if b["fullname"] not in names] + new["benchmarks"]
        write_text_atomic(target, json.dumps(old, indent=2))
        tmp.unlink()
    else:
        os.replace(tmp, target)
    return render_poe_file(out_dir)


def _stamp_commit(path: Path) -> None:
    """Write the run's commit (pytest-benchmark's ``commit_info``; ``+dirty`` for a tree with
    changes) into every benchmark's ``extra_info``, so that entries merged from several runs
    each say which code measured them."""
    data = _load(path)
    info = data.get("commit_info") or {}
    commit = (info.get("id") or "unknown")[:12] + ("+dirty" if info.get("dirty") else "")
    for b in data["benchmarks"]:
        b.setdefault("extra_info", {})["commit"] = commit
    write_text_atomic(path, json.dumps(data, indent=2))


def _load(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if "benchmarks" not in data:
        raise ValueError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' key)")
    return data


GPU_DIR = "gpu"  # scripts/gpu_check.sh writes its figures to <leaderboards>/gpu/


def gpu_note(out_dir: Path) -> str:
    """The closing section of a CPU table: where the same benchmarks on a GPU are, or that they
    are pending (none committed). Empty for a GPU table itself (``<...>/gpu/``)."""
    out_dir = Path(out_dir)
    if out_dir.name == GPU_DIR:
        return ""
    gpu = out_dir / GPU_DIR / "poe_kernel.md"
    if gpu.exists():
        return ("\n## On a GPU\n\nThe same benchmarks on CUDA (Triton backend included): "
                f"[{GPU_DIR}/poe_kernel.md]({GPU_DIR}/poe_kernel.md), from `scripts/gpu_check.sh`.\n")
    return ("\n## On a GPU\n\n**GPU figures pending**: no GPU run is committed yet. "
            "`bash scripts/gpu_check.sh` on a machine with CUDA measures every backend there "
            f"(Triton included) and writes `{GPU_DIR}/poe_kernel.md` beside this table.\n")


def poe_markdown(out_dir: Path) -> str:
    """``poe_kernel.md`` of ``out_dir``: the render of its JSON, and :func:`gpu_note`."""
    return render_poe_markdown(_load(json_path(out_dir))) + gpu_note(out_dir)


def render_poe_file(out_dir: Path) -> Path:
    path = out_dir / "poe_kernel.md"
    write_text_atomic(path, poe_markdown(out_dir))
    return path


def stale_poe(out_dir: Path) -> list[str]:
    src = json_path(out_dir)
    if not src.exists():
        return []
    md = out_dir / "poe_kernel.md"
    if not md.exists():
        return [f"{md}: missing ({src} exists)"]
    if md.read_text(encoding="utf-8") != poe_markdown(out_dir):
        return [f"{md}: differs from a render of {src}"]
    return []
