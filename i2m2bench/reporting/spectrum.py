"""The ``dependency_spectrum`` board: settings x methods tables (test and each shift set) beside
the task's exact Bayes ceiling, and a figure of accuracy against the inter-dependency share.

The task and its ceiling live in :mod:`i2m2bench.data.synthetic.spectrum`; this layout only reads them
(data never imports reporting).
"""
from __future__ import annotations

import statistics
from collections import defaultdict

from tabulate import tabulate

from i2m2bench.data.synthetic.spectrum import (BAYES_MC_SAMPLES, BAYES_MC_SEED, DEFAULTS, SHIFTS,
                                     bayes_ceiling)
from i2m2bench.reporting.layouts import LAYOUTS, Layout, png_bytes
from i2m2bench.reporting.rows import (board_metrics, latest_units, machine_of, machines_note,
                                      method_order, metric_rows)
from i2m2bench.reporting.significance import (CELLS_NOTE, MARKS_NOTE, NO_EVIDENCE, Evidence,
                                              column_cells, entry)

#: The board's panels: protocol -> the distribution the Bayes ceiling is computed on.
PROTOCOLS = {"test": "test", **{f"shift:{s}": s for s in SHIFTS}}

_PROTOCOL_TITLES = {
    "test": "Test accuracy (%) against the inter-dependency share",
    "shift:no_inter": "Missing inter-dependency: `shift:no_inter` accuracy (%) — cross-modal "
                      "relation broken (c_b redrawn), each modality's own cue kept",
    "shift:no_intra": "Missing intra-dependency: `shift:no_intra` accuracy (%) — per-modality "
                      "cues redrawn, cross-modal relation kept",
}


def _collect(rows: list[dict]) -> tuple[dict, dict, list, list]:
    """(values[(setting, method)][protocol] -> {seed: value}, {"meta": meta[method], "options":
    options[setting], "hash": unit hash[(setting, method)]}, settings, methods).

    For each (setting, method) only the rows of its most recent unit hash count, and only the
    scores of the board's primary metric (the task's, accuracy).
    """
    metrics = board_metrics(rows)
    if metrics:
        rows = metric_rows(rows, metrics[0])
    values: dict = {}
    meta: dict = {}
    options: dict = {}
    hashes: dict = {}
    for key, unit_rows in latest_units(rows, key=lambda r: (r.get("setting"), r["method"])).items():
        per: dict = defaultdict(dict)
        for r in unit_rows:
            if r["protocol"] != "train":
                per[r["protocol"]][r["seed"]] = r["value"]
            elif r["metric"] == "failed":
                per["failed"][r["seed"]] = 1.0
        values[key] = {p: {s: v[s] for s in sorted(v)} for p, v in per.items()}
        r0 = unit_rows[0]
        hashes[key] = r0["unit_hash"]
        options[key[0]] = r0.get("task_options") or {}
        meta.setdefault(r0["method"], r0)
    settings = sorted(options, key=lambda s: (float(options[s].get("inter_share", 0.0)), str(s)))
    methods = sorted(meta, key=lambda m: method_order(meta[m]["family"], m))
    return values, {"meta": meta, "options": options, "hash": hashes}, settings, methods


def _protocol_section(proto: str, values: dict, info: dict, settings: list, methods: list,
                      evidence: Evidence, metric: str) -> tuple[list[str], int]:
    """One protocol's settings x methods table (with its Bayes columns), and how many of its rows
    carry no marks."""
    which = PROTOCOLS[proto]
    options = info["options"]
    headers = ["Setting", "inter share", "Bayes ceiling"]
    if proto != "test":
        headers.append("training Bayes rule")
    headers += [f"`{m}`" for m in methods]
    body, unmarked = [], 0
    for s in settings:
        o = options[s]
        b = bayes_ceiling(o, which)
        line = [f"`{s}`", f"{float(o.get('inter_share', 0.0)):.3g}",
                f"{b['ceiling'] * 100:.1f} ± {b['ceiling_se'] * 100:.1f}"]
        if proto != "test":
            line.append(f"{b['train_rule'] * 100:.1f} ± {b['train_rule_se'] * 100:.1f}")
        entries = {m: entry(values.get((s, m), {}).get(proto, {}),
                            lambda seed, s=s, m=m: (s, m, info["hash"][s, m], seed),
                            evidence, proto, metric)
                   for m in methods if (s, m) in info["hash"]}
        cells, ok = column_cells(entries, True, 100.0, 1)
        unmarked += not ok
        for m in methods:
            c = cells.get(m, "—")
            if values.get((s, m), {}).get("failed"):
                c += f" ({len(values[(s, m)]['failed'])} failed)"
            line.append(c)
        body.append(line)
    lines = [f"## {_PROTOCOL_TITLES[proto]}", ""]
    if proto != "test":
        lines += ["Bayes ceiling: the Bayes accuracy of the shifted distribution itself. "
                  "Training Bayes rule: the accuracy there of the Bayes-optimal classifier "
                  "of the *training* setting (what a perfect model of the training data "
                  "scores when the dependency goes missing).", ""]
    return lines + [_table(headers, body), ""], unmarked


def _provenance(rows: list[dict], methods: list[str], meta: dict) -> list[str]:
    """The methods and provenance section."""
    prov = []
    for m in methods:
        r0 = meta[m]
        t = r0["train"]
        rs = [r for r in rows if r["method"] == m]
        prov.append([f"`{m}`", r0["label"], r0.get("fusion", ""), r0["recipe"],
                     f"{t['optimizer']} lr={t['lr']:g} wd={t['weight_decay']:g} "
                     f"batch={t['batch_size']} epochs≤{t['epochs']} patience={t['patience']}",
                     str(len({r["seed"] for r in rs})),
                     ", ".join(sorted({r["git_commit"] for r in rs})),
                     ", ".join(sorted({machine_of(r) for r in rs})),
                     max(r["date"] for r in rs)[:10]])
    return ["## Methods and provenance", "",
            _table(["Method", "Label", "Fusion", "Recipe", "Schedule", "Seeds", "Commit",
                    "Device", "Date"], prov)]


@LAYOUTS.register("dependency_spectrum")
class DependencySpectrumLayout(Layout):
    """Settings x methods tables (test and each shift set) with the Bayes ceiling, and a figure
    of accuracy against the inter-dependency share (one line per method, dashed ceiling)."""

    def markdown(self, rows: list[dict], evidence: Evidence = NO_EVIDENCE) -> str:
        if not rows:
            raise ValueError("no result rows to render")
        values, info, settings, methods = _collect(rows)
        metric = board_metrics(rows)[0] if board_metrics(rows) else "accuracy"
        unmarked = 0
        meta, options = info["meta"], info["options"]
        first = min(rows, key=lambda r: (str(r["board"]), str(r["suite"])))
        board = first["board"]
        common = {k: v for k, v in options[settings[0]].items()
                  if k != "inter_share" and all(options[s].get(k) == v for s in settings)}
        lines = [f"# Leaderboard: `{first['suite']}` suite on `dependency_spectrum` "
                 f"v{first['dataset_version']} (synthetic)", "",
                 f"Generated by `python -m i2m2bench leaderboard` from `results/{board}.jsonl` "
                 f"and the per-sample predictions in `predictions/{board}/` (accuracy, %). "
                 f"{CELLS_NOTE} {MARKS_NOTE.replace('runner-up', 'runner-up in its row')} Do not "
                 "edit by hand. The generator, its knobs and the Bayes ceiling are described in "
                 "`docs/dependency_spectrum.md` and `i2m2bench/data/synthetic/spectrum.py`.", "",
                 f"Fixed options: {', '.join(f'`{k}={v}`' for k, v in sorted(common.items()))}. "
                 "`inter_share` is the fraction of samples whose label is carried only by the "
                 "cross-modal relation y = (c_a + c_b) mod C; the rest carry it only in each "
                 "modality's own cue.", "",
                 f"**Bayes ceiling**: exact posterior (sum over the finite latents of Gaussian "
                 f"likelihoods), accuracy E[max_y p(y|x)] estimated on {BAYES_MC_SAMPLES} Monte "
                 f"Carlo samples (fixed seed {BAYES_MC_SEED}); ± is its standard error.", "",
                 f"![Accuracy against the inter-dependency share]({board}.png)", ""]
        for proto in PROTOCOLS:
            section, count = _protocol_section(proto, values, info, settings, methods, evidence,
                                               metric)
            lines += section
            unmarked += count
        if unmarked:
            lines += [f"{unmarked} row(s) carry no marks: the per-sample predictions of some "
                      f"method there are not published beside the results (`predictions/{board}/`), "
                      "or cover other test samples. Re-run the suite to publish them.", ""]
        lines += _provenance(rows, methods, meta)
        lines += machines_note(rows)
        lines.append("")
        return "\n".join(lines)

    def figure_bytes(self, rows: list[dict], stem: str) -> dict[str, bytes]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        values, info, settings, methods = _collect(rows)
        options = info["options"]
        xs = [float(options[s].get("inter_share", 0.0)) for s in settings]
        fig, axes = plt.subplots(1, len(PROTOCOLS), figsize=(5.2 * len(PROTOCOLS), 5.0),
                                 sharey=True)
        styles = {"unimodal": (":", 1.2), "intra": ("-", 1.6), "inter": ("--", 1.4),
                  "i2m2": ("-", 2.4)}
        for ax, proto in zip(axes, PROTOCOLS):
            which = PROTOCOLS[proto]
            for i, m in enumerate(methods):
                pts = [(x, list(values[(s, m)][proto].values())) for x, s in zip(xs, settings)
                       if values.get((s, m), {}).get(proto)]
                if not pts:
                    continue
                ls, lw = styles.get(info["meta"][m]["family"], ("-", 1.4))
                ax.errorbar([p[0] for p in pts], [statistics.fmean(p[1]) * 100 for p in pts],
                            yerr=[(statistics.stdev(p[1]) * 100 if len(p[1]) > 1 else 0.0)
                                  for p in pts],
                            label=meta_label(info["meta"][m], m), marker="o", ms=3.5, capsize=2.5,
                            ls=ls, lw=lw, color=_COLORS[i % len(_COLORS)])
            ceil = [bayes_ceiling(options[s], which)["ceiling"] * 100 for s in settings]
            ax.plot(xs, ceil, "k--", lw=2.0, label="Bayes ceiling")
            if proto != "test":
                rule = [bayes_ceiling(options[s], which)["train_rule"] * 100 for s in settings]
                ax.plot(xs, rule, "k:", lw=1.4, label="training Bayes rule (shift panels)")
            classes = int(options[settings[0]].get("classes", DEFAULTS["classes"]))
            ax.axhline(100 / classes, color="0.7", lw=0.8)
            ax.set_title(proto)
            ax.set_xlabel("inter-dependency share (inter_share)")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("accuracy (%)")
        handles, labels = axes[-1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
        fig.suptitle(f"{rows[0]['suite']}: mean ± std over seeds; grey line = chance")
        fig.tight_layout(rect=(0, 0.17, 1, 1))
        png = png_bytes(fig, dpi=110)
        plt.close(fig)
        return {f"{stem}.png": png}


_COLORS = ("#1f77b4", "#17becf", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#ff7f0e", "#e377c2",
           "#bcbd22", "#7f7f7f")


def meta_label(r0: dict, method: str) -> str:
    return f"{r0['label']} ({method})" if r0["label"] != method else method


def _table(headers: list[str], body: list[list[str]]) -> str:
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
