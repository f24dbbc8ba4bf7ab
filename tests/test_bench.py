"""The PoE benchmark table: rendering from pytest-benchmark JSON, and the benchmark code itself."""
import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from i2m2bench.bench import poe_markdown, stale_poe
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
    # fused fwdbwd: 3*4096*32768*4 bytes / 0.2 s = 8.05 GB/s; roofline: see the tests below
    row = re.search(r"\| fwdbwd \| 3 +\| 4096 \| 32768 \|(.*)", md).group(1)
    rl = _roofline_s(3, 4096, 32768, ROOF)
    assert re.findall(r"[^|\s]+", row) == ["2000", "800", "200", "fused", "8.1", _ms(rl),
                                            f"{rl / 0.2:.0%}", f"{rl / 0.2:.0%}"]
    assert re.search(r"\| fused +\| 1.02 +\| 1 +\| 0.02 +\|", md)
    assert "Test CPU" in md


def _roofline_s(k, b, c, roof, itemsize=4):
    """The table's definition, restated: read K*B*C logits + write one B*C buffer at the higher of
    the measured read/copy bandwidths, or one exp per element at the measured exp rate."""
    bw = max(roof["roofline_read_gbps"], roof["roofline_copy_gbps"]) * 1e9
    return max((k + 1) * b * c * itemsize / bw, b * c / (roof["roofline_exp_gelems"] * 1e9))


def _ms(s):
    return f"{s * 1e3:.0f}" if s >= 0.1 else f"{s * 1e3:.3g}"


def _cells(md, mode, k, b, c):
    row = re.search(rf"\| {mode} +\| {k} +\| {b} +\| {c} +\|(.*)", md).group(1)
    return re.findall(r"[^|\s]+", row)


@pytest.mark.parametrize("read,copy,exp", [(20.0, 16.0, 3.0),  # memory-bound, read is the higher
                                           (10.0, 25.0, 3.0),  # memory-bound, copy is the higher
                                           (20.0, 16.0, 0.5)])  # exp-bound
def test_roofline_percent_is_derived_from_the_json(read, copy, exp):
    roof = {**ROOF, "roofline_read_gbps": read, "roofline_copy_gbps": copy, "roofline_exp_gelems": exp}

    def bench(mode, backend, mean, k=3, b=4096, c=32768):
        e = _bench(mode, backend, mean, k, b, c)
        e["extra_info"].update(roof)
        return e

    times = {("fwd", "torch"): 0.9, ("fwd", "fused"): 0.31, ("fwdbwd", "reference"): 2.0,
             ("fwdbwd", "torch"): 0.8, ("fwdbwd", "fused"): 0.27}
    benches = [bench(m, x, t) for (m, x), t in times.items()]
    benches += [bench("fwd", "torch", 0.001, k=2, b=256, c=3129), bench("fwd", "fused", 0.002, k=2, b=256, c=3129)]
    md = render_poe_markdown({"benchmarks": benches})
    rl = _roofline_s(3, 4096, 32768, roof)
    mem = 4 * 4096 * 32768 * 4 / (max(read, copy) * 1e9)
    assert rl == pytest.approx(mem if exp == 3.0 else 4096 * 32768 / (exp * 1e9))  # which bound binds
    for mode in ("fwd", "fwdbwd"):
        cells = _cells(md, mode, 3, 4096, 32768)
        fused = times[(mode, "fused")]
        assert cells[-5] == "fused"
        assert cells[-3:] == [_ms(rl), f"{rl / fused:.0%}", f"{rl / fused:.0%}"]
    # a row the torch backend wins: the best and the fused columns differ
    small = _roofline_s(2, 256, 3129, roof)
    assert _cells(md, "fwd", 2, 256, 3129)[-5:] == ["torch", f"{2 * 256 * 3129 * 4 / 0.001 / 1e9:.1f}", _ms(small),
                                                     f"{small / 0.001:.0%}", f"{small / 0.002:.0%}"]
    line = re.search(r"\| fused forward and forward\+backward: % of roofline +\|([^|]*)\|([^|]*)\|", md)
    assert line.group(1).strip() == f"forward {rl / 0.31:.0%}, forward+backward {rl / 0.27:.0%}"
    assert line.group(2).strip() == "≥ 50% each"
    assert f"({max(read, copy):.1f} GB/s)" in md and "one exp per element" in md


def test_roofline_target_line_needs_only_the_rows_present():
    benches = [_bench("fwdbwd", "reference", 2.0), _bench("fwdbwd", "torch", 0.8),
               _bench("fwdbwd", "fused", 0.2), _bench("fwd", "torch", 0.1)]
    md = render_poe_markdown({"benchmarks": benches})
    rl = _roofline_s(3, 4096, 32768, ROOF)
    assert re.search(rf"\| fused forward and forward\+backward: % of roofline +\| forward\+backward "
                     rf"{rl / 0.2:.0%} +\|", md)  # no fused forward row: only the one measured
    assert _cells(md, "fwd", 3, 4096, 32768)[-1] == "—"


def test_stale_check(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "poe_kernel.json").write_text(json.dumps(fake()))
    assert "missing" in stale_poe(tmp_path)[0]
    (tmp_path / "poe_kernel.md").write_text(poe_markdown(tmp_path), encoding="utf-8")  # render + GPU note
    assert stale_poe(tmp_path) == []
    (tmp_path / "poe_kernel.md").write_text(render_poe_markdown(fake()), encoding="utf-8")
    assert "differs" in stale_poe(tmp_path)[0]  # the closing GPU note is part of the table


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
    for section in ("## Missing experts: a mask", "## On a loaded machine",
                    "## The PoE's share of an I2M2 training step at VQA size"):
        assert section in md, section
    masked = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") == "masked"]
    assert {(e["backend"], e["masked"]) for e in masked} >= {("fused", True), ("fused", False)}
    assert all(0 < e["present_pairs"] < e["K"] * e["B"] for e in masked
               if e["masked"] and e["backend"] not in ("first_touch", "sum_only"))
    assert "the first touch of its K fresh gradient buffers" in md
    assert "The fused forward's weighted sum alone (timed in the same run)" in md
    loads = {b["extra_info"]["load_jobs"] for b in data["benchmarks"]
             if b["extra_info"].get("kind") == "load"}
    assert loads == {0, 1}
    shares = [b["extra_info"]["share"] for b in data["benchmarks"]
              if b["extra_info"].get("kind") == "share"]
    assert shares and all(0 < x < float("inf") for x in shares)  # timings of a tiny model:
    # noisy, so a share may exceed 1 here (a measurement is the full size's, not this one)
    mem = {b["extra_info"]["backend"]: b["extra_info"] for b in data["benchmarks"]
           if b["extra_info"]["mode"] == "memory"}
    assert mem["fused"]["grad_buffers"] == 1  # one gradient buffer shared by the K experts


def test_each_benchmark_entry_says_which_commit_measured_it(tmp_path):
    """Entries merged from several `bench -- -k ...` runs each keep their own run's commit, and
    the sections built from them say it (a dirty tree is marked)."""
    from i2m2bench.bench import _stamp_commit

    path = tmp_path / "b.json"
    data = {"commit_info": {"id": "0123456789abcdef", "dirty": True},
            "benchmarks": [{"extra_info": {"kind": "share", "mode": "train-step", "backend": "fused",
                                           "answers": 3129, "batch": 512, "dim": 768,
                                           "hidden": 1536, "parameters": 10, "share": 0.05,
                                           "roofline_device": "Some CPU",
                                           "roofline_device_type": "cpu",
                                           "roofline_threads": 2}}]}
    path.write_text(json.dumps(data), encoding="utf-8")
    _stamp_commit(path)
    entry = json.loads(path.read_text())["benchmarks"][0]
    assert entry["extra_info"]["commit"] == "0123456789ab+dirty"
    from i2m2bench.reporting.poe_kernel import _share
    text = "\n".join(_share([entry]))
    assert "Measured at commit `0123456789ab+dirty` on Some CPU (cpu, 2 threads)." in text
    assert "| fused" in text and "5.0%" in text


def quick_benchmark(name: str, tmp_path, select: str | None = None) -> dict[str, dict]:
    """Run ``benchmarks/<name>`` (``select``: its ``-k`` expression) with
    ``I2M2BENCH_BENCH_QUICK=1`` and ``I2M2BENCH_BENCH_OUT=tmp_path``; {test name: its JSON entry}."""
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "I2M2BENCH_BENCH_QUICK": "1", "I2M2BENCH_BENCH_OUT": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(ROOT / "benchmarks" / name), f"--benchmark-json={out}",
                        *(["-k", select] if select else [])],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return {b["name"]: b for b in json.loads(out.read_text())["benchmarks"]}


def test_content_chain_benchmark_runs_in_quick_mode(tmp_path):
    """benchmarks/test_content_chain.py on 2,000 files: the three side-by-side figures exist."""
    figures = {k: b["extra_info"] for k, b in quick_benchmark("test_content_chain.py", tmp_path).items()}
    assert set(figures) == {"test_checking_the_recorded_inputs[quick]",
                            "test_checking_the_recorded_inputs[full]",
                            "test_reading_every_byte_once"}
    assert all(e["files"] == 2000 and e["seconds_per_100k_files"] > 0 for e in figures.values())


def test_site_build_benchmark_runs_in_quick_mode(tmp_path):
    """benchmarks/test_site_build.py on one board: both side-by-side figures exist."""
    figures = quick_benchmark("test_site_build.py", tmp_path)
    assert set(figures) == {"test_building_the_website", "test_rendering_the_markdown_boards"}
    assert figures["test_building_the_website"]["extra_info"]["files"] > 10
    assert all(b["stats"]["median"] > 0 for b in figures.values())


def test_real_scale_rehearsal_runs_in_quick_mode(tmp_path):
    """benchmarks/test_real_scale.py on MIMIC at scale 0.002: prepare, the epoch and the bare loop
    each measured in a process of its own, and the page's row derived from them."""
    quick_benchmark("test_real_scale.py", tmp_path, select="mimic")
    r = json.loads((tmp_path / "bench" / "real_scale.json").read_text())["mimic"]
    assert r["written"]["rows"] == 72 and r["scale"] == 0.002  # round(36,212 x 0.002)
    for step in ("startup", "prepare", "epoch", "bare"):
        assert r[step]["peak_rss_from"] == "VmHWM", step  # the child's own, not wait4's
        assert 0 < r[step]["peak_rss_mb"] < 100_000 and r[step]["wall_s"] > 0
    assert r["epoch"]["x_bare"] == r["epoch"]["samples_per_s"] / r["bare"]["samples_per_s"]
    md = (tmp_path / "real_scale.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| mimic |"))
    assert f"| {r['bare']['samples_per_s']:,.0f} | {r['epoch']['x_bare']:.2f}×" in row


def test_real_scale_page_marks_each_target_from_the_figures():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from real_scale_page import render

    def entry(prep_rss, x_read, epoch_rss, rate, bare):
        return {"machine": "m", "cpus": 2, "scale": 1, "code": "abc1234",
                "written": {"rows": 10}, "read": {"bytes": 2**30, "mb_per_s": 100.0},
                "prepare": {"wall_s": 5.0, "peak_rss_mb": prep_rss, "x_read_time": x_read},
                "epoch": {"wall_s": 9.0, "peak_rss_mb": epoch_rss, "samples_per_s": rate,
                          "x_bare": rate / bare},
                "bare": {"peak_rss_mb": 500.0, "samples_per_s": bare}}

    md = render({"good": entry(2048, 2.0, 1000, 90, 100), "bad": entry(2049, 2.1, 3000, 89, 100)})
    good = next(x for x in md.splitlines() if x.startswith("| good |"))
    bad = next(x for x in md.splitlines() if x.startswith("| bad |"))
    assert "2,048 ✓" in good and "2.0× ✓" in good and "1,000 ✓" in good and "0.90× ✓" in good
    assert "2,049 ✗" in bad and "2.1× ✗" in bad and "3,000 ✗" in bad and "0.89× ✗" in bad
    assert "Code: abc1234." in md


def test_the_committed_rehearsal_page_is_its_figures():
    """leaderboards/real_scale.md is what its JSON renders to: every published figure is traced."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from real_scale_page import render

    data = json.loads((ROOT / "leaderboards" / "bench" / "real_scale.json").read_text())
    assert set(data) == {"avmnist", "mimic", "fastmri", "vqa_vs", "nlvr2"}
    assert all(r["scale"] == 1 for r in data.values())  # the real sizes, not a quick run
    assert (ROOT / "leaderboards" / "real_scale.md").read_text() == render(data)
