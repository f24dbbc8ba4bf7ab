"""The Markdown page of the full-scale rehearsal (``leaderboards/real_scale.md``), rendered from
``leaderboards/bench/real_scale.json`` (:mod:`test_real_scale` measures it); each target's mark
is derived from the figures."""
from __future__ import annotations

TARGET_RSS_MB = 2048


def _mb(x: float) -> str:
    return f"{x:,.0f}"


def _ok(value: float, good: bool) -> str:
    return f"{value} ✓" if good else f"{value} ✗"


def render(data: dict) -> str:
    """The Markdown page of the rehearsal's figures."""
    lines = [
        "# Full-scale rehearsal",
        "",
        "Every dataset from synthetic files in its official format at the real dataset's size "
        "(`scripts/make_full_scale.py`), through `prepare` and one epoch of I2M2, measured as a "
        "user runs them. Made by `python -m pytest benchmarks/test_real_scale.py -q "
        "-p no:cacheprovider` (one dataset: `-k vqa_vs`); figures in "
        "`leaderboards/bench/real_scale.json`; method and caveats in the benchmark's docstring.",
        "",
        f"Targets: peak RSS ≤ {TARGET_RSS_MB:,} MB for prepare and for an epoch; prepare within "
        "2× the time of reading its input bytes (less the start-up of `python -m i2m2bench list`; backbone compute excluded: the VL features come "
        "in as `--own-features`, the backbone's cost per item is below); an epoch's training "
        "step rate ≥ 0.9× a bare loop over the same tensors. ✓ met, ✗ missed.",
        "",
        "| dataset | rows | input | read MB/s | prepare s | prepare peak RSS MB | prepare ÷ read | "
        "epoch run s | epoch peak RSS MB | bare loop peak RSS MB | I2M2 samples/s | bare samples/s | "
        "÷ bare |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in data.items():
        w, rd, ep, bare = r["written"], r["read"], r["epoch"], r["bare"]
        pr, xb = r.get("prepare"), ep["x_bare"]
        prep = ("—", "—", "—") if pr is None else (
            f"{pr['wall_s']:.1f}", _ok(_mb(pr["peak_rss_mb"]), pr["peak_rss_mb"] <= TARGET_RSS_MB),
            "within start-up ✓" if pr["x_read_time"] <= 0
            else _ok(f"{pr['x_read_time']:.1f}×", pr["x_read_time"] <= 2))
        lines.append(
            f"| {name} | {w['rows']:,} | {rd['bytes'] / 2**30:.2f} GiB | {rd['mb_per_s']:,.0f} | "
            f"{prep[0]} | {prep[1]} | {prep[2]} | {ep['wall_s']:.1f} | "
            f"{_ok(_mb(ep['peak_rss_mb']), ep['peak_rss_mb'] <= TARGET_RSS_MB)} | "
            f"{_mb(bare['peak_rss_mb'])} | {ep['samples_per_s']:,.0f} | {bare['samples_per_s']:,.0f} | "
            f"{_ok(f'{xb:.2f}×', xb >= 0.9)} |")
    machines = sorted({f"{r['machine']} ({r['cpus']} CPUs)" for r in data.values()})
    codes = sorted({r.get("code", "unrecorded") for r in data.values()})
    lines += ["", f"Machine: {', '.join(machines)}. Code: {', '.join(codes)}. Scale: "
              + ", ".join(f"{n} {r['scale']:g}" for n, r in data.items()) + "."]
    notes: dict[str, list[str]] = {}
    for n, r in data.items():
        if r.get("code_note"):
            notes.setdefault(r["code_note"], []).append(n)
    for note, names in notes.items():
        lines += ["", f"Code of {', '.join(names)}: {note}."]
    for name, r in data.items():
        b = r.get("before")
        if b:
            lines += ["", f"**{name} before** (code {b['code']}, `train.eval_batch_size` = "
                      f"{b['eval_batch_size']}): epoch peak RSS {_mb(b['epoch']['peak_rss_mb'])} MB, "
                      f"{b['epoch']['samples_per_s']:,.0f} samples/s ({b['epoch']['x_bare']:.2f}× its "
                      f"bare loop); {b['note']}."]
    fm = data.get("fastmri")
    if fm:
        w = fm["written"]
        lines += ["", f"**FastMRI** wrote {w['volumes']} volumes ({w['bytes'] / 2**30:.1f} GiB, "
                  f"{w['rows']:,} slices) of the full {w['full_volumes']:,} "
                  f"({w['full_slices']:,} slices, ≈ {w['full_bytes_estimate'] / 2**30:.0f} GiB): "
                  "extrapolated linearly, prepare of the full set takes ≈ "
                  f"{fm['prepare']['wall_s'] * w['full_bytes_estimate'] / w['bytes'] / 60:.0f} min "
                  "here. Its ResNets ran at stem width 8 (the official 64 is GPU work)."]
    for name in ("vqa_vs", "nlvr2"):
        b = data.get(name, {}).get("backbone")
        if b:
            rows = data[name]["written"]["rows"]
            lines += ["", f"**{name} backbone**: the tiny random FLAVA of the tests took "
                      f"{b['ms_per_item']:.1f} ms per item ({b['images_per_item']} image(s) "
                      f"each, {b['torch_threads']} threads, batch 32); the {rows:,} items of the "
                      f"full set: ≈ {b['ms_per_item'] * rows / 60000:.1f} min here. A real "
                      "backbone (FIBER, FLAVA) costs what its forward pass costs on your "
                      "device; everything else prepare does is in the table."]
    return "\n".join(lines) + "\n"
