"""The PoE benchmark table: rendering from pytest-benchmark JSON, and the benchmark code itself."""
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from i2m2bench.bench import stale_poe
from i2m2bench.reporting.poe_kernel import render_poe_markdown

ROOT = Path(__file__).resolve().parents[1]
ROOF = {"roofline_device": "Test CPU", "roofline_device_type": "cpu", "roofline_threads": 2,
        "roofline_torch": "2.9.1", "roofline_read_gbps": 20.0, "roofline_copy_gbps": 16.0,
        "roofline_exp_gelems": 3.0, "roofline_quick": False}


def _bench(mode, backend, mean, k=3, b=4096, c=32768):
    return {"stats": {"mean": mean}, "extra_info": {"mode": mode, "K": k, "B": b, "C": c,
            "backend": backend, "dtype": "torch.float32", "logit_bytes": k * b * c * 4, **ROOF}}


def fake():
    benches = [_bench("fwdbwd", "reference", 2.0), _bench("fwdbwd", "torch", 0.8),
               _bench("fwdbwd", "fused", 0.2), _bench("fwd", "torch", 0.1)]
    mem = {"stats": {"mean": 1.0}, "extra_info": {"mode": "memory", "K": 3, "B": 4096, "C": 32768,
           "backend": "fused", "peak_during_buffers": 1.02, "grad_buffers": 1,
           "extra_beyond_grads_buffers": 0.02, **ROOF}}
    return {"benchmarks": benches + [mem]}


def test_ratios_throughput_and_memory_are_derived_from_the_json():
    md = render_poe_markdown(fake())
    assert "| fused vs reference" in md and "10.0×" in md  # 2.0 / 0.2
    assert "4.0×" in md  # 0.8 / 0.2
    # fused fwdbwd: 3*4096*32768*4 bytes / 0.2 s = 8.05 GB/s = 40% of 20 GB/s
    row = re.search(r"\| fwdbwd \| 3 +\| 4096 \| 32768 \|(.*)", md).group(1)
    assert re.findall(r"[^|\s]+", row) == ["2000", "800", "200", "fused", "8.1", "40%"]
    assert re.search(r"\| fused +\| 1.02 +\| 1 +\| 0.02 +\|", md)
    assert "Test CPU" in md


def test_stale_check(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "poe_kernel.json").write_text(json.dumps(fake()))
    assert "missing" in stale_poe(tmp_path)[0]
    (tmp_path / "poe_kernel.md").write_text(render_poe_markdown(fake()))
    assert stale_poe(tmp_path) == []


@pytest.mark.slow
def test_benchmark_suite_runs_in_quick_mode(tmp_path):
    """The benchmark code itself (tiny grid), so it cannot rot unnoticed."""
    out = tmp_path / "b.json"
    env = {**os.environ, "I2M2BENCH_BENCH_QUICK": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "benchmarks" / "test_poe_throughput.py"), f"--benchmark-json={out}",
                        "-k", "fused or torch or memory"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    data = json.loads(out.read_text())
    md = render_poe_markdown(data)
    assert "QUICK" in md and "| fwdbwd |" in md
    mem = {b["extra_info"]["backend"]: b["extra_info"] for b in data["benchmarks"]
           if b["extra_info"]["mode"] == "memory"}
    assert mem["fused"]["grad_buffers"] == 1  # one gradient buffer shared by the K experts
