"""Leaderboards: result rows -> Markdown, as a pure function (tested against a golden file).

For every method the rows of its most recent configuration (``unit_hash``) are used; each
metric is shown as mean ± sample standard deviation over seeds, with ↑/↓ for its direction and
the best mean of each column in bold. ``render_board_file`` writes ``<dir>/<board>.md`` from
``<dir>/results/<board>.jsonl``; ``stale_boards`` is what ``leaderboard --check`` reports.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Callable, Hashable

from tabulate import tabulate

from i2m2bench.harness.store import locked, read_rows, write_text_atomic
from i2m2bench.registry import Registry

FAMILY_ORDER = {"unimodal": 0, "intra": 1, "inter": 2, "i2m2": 3}
TRAIN_INFO = ("samples_per_s", "train_seconds", "epochs_run")


def latest_units(rows: list[dict], key: Callable[[dict], Hashable] = lambda r: r["method"]) -> dict:
    """key(row) (default: the method) -> its rows from the unit hash whose newest row is the most
    recent; older configurations of the same key are ignored. Layouts use it too."""
    by_key: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_key[key(r)][r["unit_hash"]].append(r)
    out = {}
    for k, units in by_key.items():
        newest = max(units, key=lambda h: (max(r["date"] for r in units[h]), h))
        out[k] = units[newest]
    return out


def _mean_std(values: list[float], scale: float, digits: int) -> str:
    m = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def mean_std_cell(values: list[float] | None, scale: float, digits: int,
                  best: float | None = None) -> str:
    """A table cell: mean ± sample std of ``values`` × ``scale``, bold when the mean is ``best``,
    "—" when there are none."""
    if not values:
        return "—"
    cell = _mean_std(values, scale, digits)
    return f"**{cell}**" if best is not None and statistics.fmean(values) == best else cell


def _curves(protocols) -> dict[str, set[float]]:
    """curve name -> its levels, from protocol names."""
    curves: dict[str, set[float]] = defaultdict(set)
    for p in protocols:
        cp = curve_point(p)
        if cp:
            curves[cp[0]].add(cp[1])
    return curves


def _protocol_order(p: str) -> tuple:
    return ({"test": 0, "val": 9}.get(p.split(":")[0], 1), p)


ROBUST_HEADS = ("missing", "missing_rate", "perturb")


def curve_point(protocol: str) -> tuple[str, float] | None:
    """``"perturb:audio:snr@0.5"`` -> ("perturb:audio:snr", 0.5); ``"missing_rate:0.5"`` ->
    ("missing_rate", 0.5); anything else -> None."""
    if protocol.startswith("perturb:") and "@" in protocol:
        curve, level = protocol.rsplit("@", 1)
        return curve, float(level)
    if protocol.startswith("missing_rate:"):
        return "missing_rate", float(protocol.split(":", 1)[1])
    return None


def area_metrics(clean: float, points: dict[float, float], ref_clean: float | None = None,
                 ref_points: dict[float, float] | None = None) -> tuple[float, float | None]:
    """Relative and effective robustness of one curve (one seed).

    The names follow Taori et al., "Measuring Robustness to Natural Distribution Shifts in Image
    Classification" (NeurIPS 2020); the definitions here are on curve areas, as this suite's
    robustness protocols specify.

    The curve is ``clean`` at level 0 followed by ``points`` {level: score}; its area is the
    trapezoid rule over [0, L] (L = the largest level), divided by L.

    * relative robustness = area / (clean × 1): 1 means no degradation;
    * effective robustness = area − area of the reference curve (late fusion) shifted to the
      same clean score, i.e. mean of (score(l) − [ref(l) − ref(0) + clean]) over [0, L]:
      0 means degrading exactly like the reference, > 0 more gracefully. Needs the reference's
      points at the same levels (else None).
    """
    levels = sorted(points)
    if not levels or levels[0] <= 0:
        raise ValueError(f"curve levels must be > 0 (level 0 is the clean score); got {levels}")
    xs = [0.0, *levels]

    def area(c, pts):
        ys = [c, *(pts[x] for x in levels)]
        return sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(levels))) / xs[-1]

    own = area(clean, points)
    rel = own / clean if clean else float("nan")
    if ref_points is None or ref_clean is None or set(ref_points) != set(points):
        return rel, None
    return rel, own - (area(ref_clean, ref_points) - ref_clean + clean)


def render_markdown(rows: list[dict]) -> str:
    """The leaderboard of one board's rows (pure: same rows, same text)."""
    if not rows:
        raise ValueError("no result rows to render")
    units = latest_units(rows)
    first = next(iter(rows))
    scored = [r for r in rows if r["protocol"] != "train"]
    metric = scored[0]["metric"] if scored else "metric"
    hib = scored[0]["higher_is_better"] if scored else True
    every = {r["protocol"] for rs in units.values() for r in rs if r["protocol"] != "train"}
    protocols = sorted((p for p in every if p.split(":")[0] not in ROBUST_HEADS), key=_protocol_order)
    methods = sorted(units, key=lambda m: (FAMILY_ORDER.get(units[m][0]["family"], 9), m))

    table: dict[str, dict[str, list[float]]] = {}
    for m in methods:
        vals: dict[str, dict[int, float]] = defaultdict(dict)
        for r in units[m]:
            key = r["protocol"] if r["protocol"] != "train" else r["metric"]
            vals[key][r["seed"]] = r["value"]  # a later row of the same seed wins
        table[m] = {k: [v[s] for s in sorted(v)] for k, v in vals.items()}

    best = {}
    for p in protocols:
        means = [statistics.fmean(table[m][p]) for m in methods if table[m].get(p)]
        best[p] = (max if hib else min)(means) if means else None

    arrow = "↑" if hib else "↓"
    headers = ["Method", "Fusion", "Recipe", "Seeds"]
    headers += [f"{p} {metric} (%) {arrow}" for p in protocols]
    headers += ["train samples/s", "train s", "epochs run"]
    body = []
    for m in methods:
        r0 = units[m][0]
        failed = {r["seed"] for r in units[m] if r["metric"] == "failed"}
        seeds = {r["seed"] for r in units[m]} - failed
        count = f"{len(seeds)} ({len(failed)} failed)" if failed else str(len(seeds))
        line = [f"{r0['label']} (`{m}`)", r0.get("fusion", ""), r0["recipe"], count]
        for p in protocols:
            line.append(mean_std_cell(table[m].get(p), 100.0, 2, best[p]))
        for k in TRAIN_INFO:
            v = table[m].get(k)
            line.append(f"{statistics.fmean(v):.0f}" if v else "—")
        body.append(line)

    title_data = first["dataset"] + (" (EMBEDDED data)" if first["data_source"] == "embedded" else "")
    lines = [f"# Leaderboard: `{first['suite']}` suite on {title_data}", ""]
    if first["data_source"] == "embedded":
        lines += [f"> **Embedded data.** These numbers are on `{first['dataset']}` "
                  f"v{first['dataset_version']}, the stand-in that ships with the package, not on "
                  "the real dataset, with the (possibly shortened) schedules listed under Settings; "
                  "they are not comparable with published results.", ""]
    lines += [f"Generated by `python -m i2m2bench leaderboard` from "
              f"`results/{first['board']}.jsonl`. Mean ± sample std over seeds; best mean per "
              "column in bold. Do not edit by hand.", ""]
    lines.append(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True))
    lines += _robustness_sections(units, table, methods, every, hib, metric, first["board"])
    lines += ["", "## Settings and provenance", ""]
    prov = []
    for m in methods:
        rs = units[m]
        t = rs[0]["train"]
        prov.append([
            f"`{m}`", f"`{rs[0]['unit_hash']}`",
            f"{t['optimizer']} lr={t['lr']:g} wd={t['weight_decay']:g} batch={t['batch_size']} "
            f"epochs≤{t['epochs']} patience={t['patience']} clip={t['grad_clip']}",
            ", ".join(sorted({r["git_commit"] for r in rs})),
            ", ".join(sorted({r["device"] for r in rs})),
            ", ".join(sorted({r["torch_version"] for r in rs})),
            max(r["date"] for r in rs)[:10],
        ])
    lines.append(tabulate(prov, headers=["Method", "Unit hash", "Schedule", "Commit", "Device",
                                         "torch", "Date"], tablefmt="github", disable_numparse=True))
    peaks = [r["value"] for rs in units.values() for r in rs if r["metric"] == "peak_memory_mb"]
    if peaks:
        lines += ["", f"Peak memory of the training process (CPU: resident set; CUDA: allocated), "
                      f"max over units: {max(peaks):.0f} MB."]
    robust = sum(r["value"] for rs in units.values() for r in rs
                 if r["metric"] == "robustness_eval_seconds")
    rest = sum(r["value"] for rs in units.values() for r in rs
               if r["metric"] in ("train_seconds", "eval_seconds")) - robust
    if robust and rest > 0:
        lines += ["", f"Time of the robustness protocols, summed over units: {robust:.0f} s, "
                      f"{100 * robust / rest:.1f}% on top of the units' training and test/shift "
                      f"evaluation ({rest:.0f} s; per-epoch validation and start-up are not in "
                      "that sum, so the share of the run's wall time is smaller)."]
    lines.append("")
    return "\n".join(lines)


class Layout:
    """How one board's rows become Markdown (a pure function) and figures (files next to it).

    Rows name their layout (``suite.layout`` in gin; ``"standard"`` by default), so
    ``i2m2bench leaderboard`` re-renders any board from its rows alone.
    """

    def markdown(self, rows: list[dict]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def figures(self, rows: list[dict], out_dir: Path, stem: str) -> list[Path]:
        """Write the board's figures under ``out_dir`` (names starting with ``stem``)."""
        return []


LAYOUTS: Registry[type[Layout]] = Registry("leaderboard layout", Layout)


@LAYOUTS.register("standard")
class StandardLayout(Layout):
    def markdown(self, rows: list[dict]) -> str:
        return render_markdown(rows)

    def figures(self, rows: list[dict], out_dir: Path, stem: str) -> list[Path]:
        return plot_curves(rows, out_dir, stem)


def layout_of(rows: list[dict], where: Path | str = "") -> Layout:
    if not rows:
        raise ValueError(f"{where}: no result rows to render")
    import i2m2bench.data  # noqa: F401  (datasets may register their layouts)

    names = {r.get("layout", "standard") for r in rows}
    if len(names) != 1:
        raise ValueError(f"{where}: rows name several layouts {sorted(names)}")
    return LAYOUTS.get(names.pop())()


def render_rows(rows: list[dict], where: Path | str = "") -> str:
    """The Markdown of a board's rows, in the layout the rows name."""
    return layout_of(rows, where).markdown(rows)


def curve_slug(curve: str) -> str:
    return curve.replace(":", "-").replace("_", "-")


def _robustness_sections(units, table, methods, every, hib, metric, board) -> list[str]:
    """Missing-modality table, curve-area table and one table + plot per curve (if any rows)."""
    missing = sorted(p for p in every if p.startswith("missing:"))
    curves = _curves(every)
    if not missing and not curves:
        return []
    arrow = "↑" if hib else "↓"
    pick = max if hib else min
    out = ["", "## Robustness", "",
           "Every method is evaluated the same way after training (`suite.protocols`); missing "
           "inputs reach a model only as the availability mask, and each strategy handles them its "
           "own way (PoE models drop the absent modality's experts, inter-only models impute).",
           ""]
    if missing:
        out += ["### Missing modalities", "",
                f"{metric} (%) {arrow} with the modality absent for every test sample; "
                "`test` repeated for reference.", ""]
        cols = ["test", *missing]
        best = {p: pick([statistics.fmean(table[m][p]) for m in methods if table[m].get(p)] or [0])
                for p in cols}
        body = [[f"`{m}`", *(mean_std_cell(table[m].get(p), 100.0, 2, best[p]) for p in cols)]
                for m in methods if any(table[m].get(p) for p in missing)]
        out.append(tabulate(body, headers=["Method", *cols], tablefmt="github", disable_numparse=True))
    if curves:
        ref = next((r["reference_method"] for rs in units.values() for r in rs
                    if r.get("reference_method")), "late_fusion")
        areas = {}  # (method, curve) -> (relative list, effective list)
        for m in methods:
            for c, levels in curves.items():
                rel, eff = [], []
                for seed, clean in _per_seed(units[m], "test").items():
                    pts = _curve_seed(units[m], c, seed)
                    if set(pts) != levels:
                        continue
                    rpts = _curve_seed(units[ref], c, seed) if ref in units else None
                    rclean = _per_seed(units[ref], "test").get(seed) if ref in units else None
                    r_, e_ = area_metrics(clean, pts, rclean, rpts)
                    rel.append(r_)
                    if e_ is not None:
                        eff.append(e_)
                areas[m, c] = (rel, eff)
        out += ["", "### Robustness curves: areas", "",
                "Per curve (level 0 = the clean test score): **RR**, relative robustness = "
                "normalised area under the curve / clean score (1 = no degradation); **ER**, "
                f"effective robustness = mean gap (points of {metric} %) to the curve of "
                f"`{ref}` shifted to the method's clean score (0 = degrades like `{ref}`, > 0 "
                "more gracefully). Both per seed from this board's raw curves, then mean ± std "
                "(names after Taori et al., NeurIPS 2020). ER compares the shape of the curves, "
                "not their level: a method starting from a lower clean score whose curve ends "
                "near chance, like the reference's, scores a high ER; a method that never reads "
                "the perturbed modality keeps RR = 1. Read ER together with RR and the curve "
                "tables.",
                ""]
        heads, body = ["Method"], []
        for c in sorted(curves):
            heads += [f"{c} RR {arrow}", f"{c} ER {arrow}"]
        for m in methods:
            line = [f"`{m}`"]
            for c in sorted(curves):
                rel, eff = areas[m, c]
                line += [mean_std_cell(rel, 1.0, 3), mean_std_cell(eff, 100.0, 2)]
            if any(x != "—" for x in line[1:]):
                body.append(line)
        out.append(tabulate(body, headers=heads, tablefmt="github", disable_numparse=True))
        for c in sorted(curves):
            levels = sorted(curves[c])
            out += ["", f"#### Curve `{c}`", "",
                    f"![{c}]({board}-{curve_slug(c)}.png)", ""]
            cols = ["test", *(_level_protocol(c, lv) for lv in levels)]
            body = [[f"`{m}`", *(mean_std_cell(table[m].get(p), 100.0, 2) for p in cols)]
                    for m in methods if any(table[m].get(p) for p in cols[1:])]
            out.append(tabulate(body, headers=["Method", "level 0 (test)", *(f"{lv:g}" for lv in levels)],
                                tablefmt="github", disable_numparse=True))
    return out


def _level_protocol(curve: str, level: float) -> str:
    return f"missing_rate:{level:g}" if curve == "missing_rate" else f"{curve}@{level:g}"


def _per_seed(rows: list[dict], protocol: str) -> dict[int, float]:
    return {r["seed"]: r["value"] for r in rows if r["protocol"] == protocol}


def _curve_seed(rows: list[dict], curve: str, seed: int) -> dict[float, float]:
    out = {}
    for r in rows:
        cp = curve_point(r["protocol"])
        if cp and cp[0] == curve and r["seed"] == seed:
            out[cp[1]] = r["value"]
    return out


def plot_curves(rows: list[dict], out_dir: Path, stem: str) -> list[Path]:
    """One PNG per curve: mean score against level (± std band), one line per method."""
    units = latest_units(rows)
    curves = _curves(r["protocol"] for rs in units.values() for r in rs)
    if not curves:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = sorted(units, key=lambda m: (FAMILY_ORDER.get(units[m][0]["family"], 9), m))
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: one per method
    markers = "os^vDP*Xph<>"
    paths = []
    for c, levels in sorted(curves.items()):
        fig, ax = plt.subplots(figsize=(7.2, 4.6))
        xs = [0.0, *sorted(levels)]
        for i, m in enumerate(methods):
            per_level = [[v for v in _per_seed(units[m], p).values()]
                         for p in ["test", *(_level_protocol(c, lv) for lv in xs[1:])]]
            if not all(per_level[1:]) or not per_level[0]:
                continue
            mean = [100 * statistics.fmean(v) for v in per_level]
            std = [100 * statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_level]
            style = "--" if units[m][0]["family"] in ("unimodal", "intra") else "-"
            line, = ax.plot(xs, mean, style, marker=markers[i % len(markers)], ms=4, label=m,
                            color=colors[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20])
            ax.fill_between(xs, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)],
                            color=line.get_color(), alpha=0.12, lw=0)
        ax.set_xlabel("missing rate p (each modality drawn absent w.p. p; a sample left with "
                      "none gets one back)" if c == "missing_rate" else f"level of {c.split(':', 1)[1]}",
                      fontsize=8)
        ax.set_ylabel(f"{rows[0]['metric']} (%)")
        ax.set_title(f"{stem}: {c}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="best")
        fig.tight_layout()
        path = out_dir / f"{stem}-{curve_slug(c)}.png"
        tmp = path.with_name(path.name + ".tmp")
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
        plt.close(fig)
        tmp.replace(path)
        paths.append(path)
    return paths


def board_path(results_path: Path, out_dir: Path) -> Path:
    return out_dir / f"{results_path.stem}.md"


def render_board_file(results_path: Path, out_dir: Path) -> Path:
    """Re-render ``<out_dir>/<board>.md`` (and its figures) from its results file."""
    path = board_path(results_path, out_dir)
    with locked(results_path):  # never render rows that another run is replacing
        rows = read_rows(results_path)
        layout = layout_of(rows, results_path)
        layout.figures(rows, out_dir, results_path.stem)
        write_text_atomic(path, layout.markdown(rows))
    return path


def stale_boards(out_dir: Path) -> list[str]:
    """Boards whose committed Markdown differs from a fresh render (or is missing)."""
    stale = []
    for results in sorted((out_dir / "results").glob("*.jsonl")):
        md = board_path(results, out_dir)
        fresh = render_rows(read_rows(results), results)
        if not md.exists():
            stale.append(f"{md}: missing (results file {results} exists)")
        elif md.read_text(encoding="utf-8") != fresh:
            stale.append(f"{md}: differs from a render of {results}")
    return stale


def render_all(out_dir: Path) -> list[Path]:
    return [render_board_file(r, out_dir) for r in sorted((out_dir / "results").glob("*.jsonl"))]
