"""A unit's view of the result store: what its records say (scores and figures, later records
superseding earlier ones), how two views differ (:func:`view_difference`, for healing) and where
two results files disagree bit for bit (:func:`exact_differences`, ``compare --exact``)."""
from __future__ import annotations

import math
from pathlib import Path

from i2m2bench.harness.store.records import quiet, read_records


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and (a is None) == (b is None)


def unit_view(records: list[dict]) -> tuple[dict, dict]:
    """({(protocol, metric): value}, {figure: value}) of one unit's records in file order: a
    later record's scores and figures supersede an earlier one's (what the rows say)."""
    scores, info = {}, {}
    for rec in records:
        for sc in rec["scores"]:
            scores[sc["protocol"], sc["metric"]] = sc["value"]
        info.update(rec["info"])
    return scores, info


#: Figures that measure the machine rather than the model: any two runs differ in them.
TIMING_FIGURES = ("train_seconds", "samples_per_s", "eval_seconds", "robustness_eval_seconds",
                  "peak_memory_mb", "poe_share")


def unit_count(results: Path) -> int:
    """How many unit records a results file, or a folder of them (``*.jsonl``), holds; 0 for a
    path that does not exist."""
    results = Path(results)
    files = sorted(results.glob("*.jsonl")) if results.is_dir() else [results]
    return sum(len(read_records(f, report=quiet)[1]) for f in files if f.is_file())


def exact_differences(first: Path, second: Path, *, by_hash: bool = True) -> list[str]:
    """Where two results files (or folders of them, matched by file name) disagree, bit for bit:
    units present in one only, and every score or non-timing figure (:data:`TIMING_FIGURES`
    aside) that differs, one line each; [] when every row is the same. NaN equals NaN.

    Units are matched by (setting, method, seed, unit hash); with ``by_hash=False`` by (setting,
    method, seed) alone, which checks that a change of code that moves every unit hash (a
    refactoring) left every number as it was. A side with several configurations of one unit
    is then ambiguous and reported as such."""
    first, second = Path(first), Path(second)
    if first.is_dir() or second.is_dir():
        names = sorted({p.name for d in (first, second) for p in Path(d).glob("*.jsonl")})
        if not names:
            return [f"{first}, {second}: no results files (*.jsonl)"]
        return [line for n in names
                for line in exact_differences(first / n, second / n, by_hash=by_hash)]

    def units(path: Path) -> tuple[dict, dict]:
        if not path.exists():
            return {}, {}
        _, recs = read_records(path, report=quiet)
        by = {}
        for r in recs:
            key = (r.get("setting"), r["method"], r["seed"]) + ((r["unit_hash"],) if by_hash else ())
            by.setdefault(key, []).append(r)
        return {k: unit_view(v) for k, v in by.items()}, {
            k: {r["unit_hash"] for r in v} for k, v in by.items()}

    (a, hashes_a), (b, hashes_b) = units(first), units(second)
    ambiguous = [f"{path.name}: {'/'.join(str(x) for x in k if x is not None)} has "
                 f"{len(h)} configurations in {path.parent} (match by unit hash)"
                 for path, hashes in ((first, hashes_a), (second, hashes_b))
                 for k, h in sorted(hashes.items(), key=str) if len(h) > 1]
    if ambiguous:
        return ambiguous
    out = [f"{first.name}: {'/'.join(str(x) for x in k if x is not None)} only in "
           f"{first if k in a else second}" for k in sorted(a.keys() ^ b.keys(), key=str)]
    for k in sorted(a.keys() & b.keys(), key=str):
        (sa, ia), (sb, ib) = a[k], b[k]
        ia = {f: v for f, v in ia.items() if f not in TIMING_FIGURES}
        ib = {f: v for f, v in ib.items() if f not in TIMING_FIGURES}
        for what, x, y in (("score", sa, sb), ("figure", ia, ib)):
            for f in sorted(x.keys() | y.keys(), key=str):
                vx, vy = x.get(f), y.get(f)
                if _fmt(vx) != _fmt(vy):
                    out.append(f"{first.name}: {'/'.join(str(v) for v in k if v is not None)} "
                               f"{what} {f}: {_fmt(vx)} vs {_fmt(vy)}")
    return out


def _fmt(v) -> str:
    return "nan" if isinstance(v, float) and math.isnan(v) else repr(v)


def view_difference(have: tuple[dict, dict], want: tuple[dict, dict],
                    source: str = "metrics.json") -> str | None:
    """Why the stored view ``have`` (:func:`unit_view`) is not ``want`` (``source``'s), or None."""
    why = []
    for i, (what, h, w) in enumerate((("score", have[0], want[0]), ("training figure", have[1], want[1]))):
        name = (lambda k: f"{k[0]} {k[1]}") if i == 0 else str
        missing = [k for k in w if k not in h]
        extra = [k for k in h if k not in w]
        differ = [k for k in w if k in h and not _same(h[k], w[k])]
        if missing:
            why.append(f"{len(missing)} {what}(s) missing ({name(missing[0])}"
                       + (", ..." if len(missing) > 1 else "") + ")")
        if differ:
            k = differ[0]
            why.append(f"{len(differ)} {what}(s) differ from {source} ({name(k)}: {_fmt(h[k])} in "
                       f"the file, {_fmt(w[k])} in {source}" + (", ..." if len(differ) > 1 else "") + ")")
        if extra:
            why.append(f"{len(extra)} {what}(s) that {source} does not hold ({name(extra[0])}"
                       + (", ..." if len(extra) > 1 else "") + ")")
    return "; ".join(why) or None
