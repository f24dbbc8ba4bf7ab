"""The result store: one record per unit and protocol set, provenance once, in
``leaderboards/results/<board>.jsonl``; plus checkpoints and atomic file writes.

A results file holds JSON lines of two kinds (schema 2):

* ``{"record": "provenance", "id": ..., "git_commit": ..., "device": ..., "torch_version": ...,
  "plugins": {...}, ...}`` — what produced some units, written once per file and referenced by id;
* ``{"record": "unit", "unit_hash": ..., "seed": ..., "method": ..., <identity and settings>,
  "provenance": <id>, "date": ..., "scores": [{"protocol", "kind", "metric", "value",
  "higher_is_better", "curve", "level"}, ...], "info": {"train_seconds": ..., ...}}`` — one unit's
  scores on one set of protocols, one per metric the task declares (``metrics``, primary first)
  and protocol; an undefined value is nan. A unit evaluated later on more protocols gets a second record
  (with its own date and provenance); its timing figures supersede the first record's.

Readers get *rows* (:func:`read_rows`): the flat view that renderers consume, one per score or
training figure, with the record's identity and provenance and the structured protocol fields
(``kind``, ``curve``, ``level``) — nothing downstream parses a protocol string. Every write replaces the
file through a temporary file and ``os.replace`` under an exclusive lock on ``<file>.lock``, so
concurrent runs serialise and a crash leaves the old file or the new one.

A line the reader does not understand -- not JSON (torn, cut in half), a merge-conflict marker
(``<<<<<<< HEAD``), foreign keys, a unit record with a field missing or a string where a number
belongs, a record naming a provenance the file lacks -- is reported with file and line
(:class:`Skipped`) and left out of the rows; every write keeps it verbatim at the end of the
file (a write never deletes a line it did not write), except a line the new file holds in full:
a verbatim copy, or a torn line that is the start of a line written again.

The store heals from run directories: a complete unit's ``metrics.json`` keeps its scores and
figures with the date and provenance of its records (:func:`metrics_meta`), so
:func:`records_from_metrics` rebuilds the records as they were and :func:`sync_unit` replaces a
unit's stored records when they are missing or say something else (:func:`unit_view`,
:func:`view_difference`). A ``metrics.json`` written before it kept dates gives the dates and
provenance of the unit's stored records if any, else its own modification time and the current
run's provenance (the runner says so). Replacing rows made with other numerics (provenance
``numerics``) is returned as a note by :func:`upsert_unit` and :func:`sync_unit`, for the
runner to log.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from i2m2bench._version import __version__
from i2m2bench.fileio import (WriteError, is_temporary, locked, write_atomic,  # noqa: F401
                              write_bytes_atomic, write_text_atomic)

SCHEMA = 2
# Row fields that describe what produced a unit (stored once per file, referenced by id).
PROVENANCE_FIELDS = ("git_commit", "device", "torch_version")
# Row fields that describe one score (the rest of a row is the unit's record).
SCORE_FIELDS = ("protocol", "kind", "metric", "value", "higher_is_better", "curve", "level")


def stable_hash(obj) -> str:
    """12-hex-digit SHA-256 of the canonical JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _suite_repo() -> Path:
    """The folder above the installed ``i2m2bench`` package (its git work tree, if any)."""
    return Path(__file__).resolve().parents[2]


def git_commit(cwd: Path | None = None) -> str:
    """Commit of the suite's own repository (not the current directory's), ``+dirty`` when
    tracked files differ; ``unknown`` for an install outside a git work tree."""
    where = cwd or _suite_repo()
    if not (where / ".git").exists() and cwd is None:
        return "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where,
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def plugin_versions() -> dict[str, str]:
    """Distribution name -> version of every plugin loaded in this process (none when plugins
    are switched off)."""
    from i2m2bench.registry import loaded_plugins

    return dict(sorted(loaded_plugins().items()))


def provenance(device: torch.device) -> dict:
    """What produced a run: the suite's commit, device, torch, Python and plugin versions, and
    the settings that decide its floating-point numbers (:mod:`i2m2bench.numerics`)."""
    from i2m2bench.numerics import numerics

    name = str(device)
    if device.type == "cuda":
        name = f"cuda:{torch.cuda.get_device_name(device)}"
    return {"git_commit": git_commit(), "device": name, "torch_version": torch.__version__,
            "i2m2bench_version": __version__, "python_version": platform.python_version(),
            "plugins": plugin_versions(), "numerics": numerics(device)}


# ----------------------------------------------------------------------------- records <-> rows
class StoreFormatError(ValueError):
    """A line of a results file that this store does not understand."""


@dataclass(frozen=True)
class Skipped:
    """A line of a results file that the reader left out: where, why, and its text (kept
    verbatim by every write). ``torn``: the line is not JSON at all (cut short, or not ours)."""

    path: Path
    lineno: int
    reason: str
    text: str
    torn: bool = False

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.reason}"


def _unit_key(rec: dict) -> tuple:
    return rec.get("unit_hash"), rec.get("seed")


def make_record(base: dict, prov: dict, scores: list[dict], info: dict, date: str,
                error: str | None = None) -> tuple[dict, dict]:
    """A unit record and its provenance record. ``base``: the unit's identity and settings;
    ``scores``: dicts with the keys of ``SCORE_FIELDS``; ``info``: training/timing figures."""
    prov = {k: v for k, v in prov.items() if k not in ("record", "id", "date")}
    pid = stable_hash(prov)
    rec = {"record": "unit", **base, "provenance": pid, "date": date,
           "scores": [{k: s.get(k) for k in SCORE_FIELDS} for s in scores], "info": dict(info)}
    if error is not None:
        rec["error"] = error
    return rec, {"record": "provenance", "id": pid, **prov}


def rows_of(rec: dict, prov: dict) -> list[dict]:
    """The flat rows of one unit record (one per score, one per training figure)."""
    base = {k: v for k, v in rec.items() if k not in ("record", "provenance", "scores", "info", "error")}
    base.update({k: v for k, v in prov.items() if k not in ("record", "id")})
    rows = [{**base, **s} for s in rec["scores"]]
    for k, v in rec["info"].items():
        row = {**base, "protocol": "train", "kind": "train", "metric": k, "value": v,
               "higher_is_better": None, "curve": None, "level": None}
        if k == "failed" and "error" in rec:
            row["error"] = rec["error"]
        rows.append(row)
    return rows


def records_from_rows(rows: list[dict]) -> tuple[dict, list[dict]]:
    """Group flat rows (each with the ``SCORE_FIELDS``) back into provenance and unit records:
    rows that agree on everything but their score form one record (first-seen order kept)."""
    provs: dict[str, dict] = {}
    groups: dict[str, dict] = {}
    for r in rows:
        prov = {k: r[k] for k in r if k in PROVENANCE_FIELDS or k in (
            "i2m2bench_version", "python_version", "plugins", "numerics")}
        base = {k: v for k, v in r.items()
                if k not in SCORE_FIELDS and k not in prov and k not in ("date", "error")}
        date = r.get("date")
        key = stable_hash([base, prov, date])
        if key not in groups:
            rec, prec = make_record(base, prov, [], {}, date)
            provs[prec["id"]] = prec
            groups[key] = rec
        rec = groups[key]
        if r["protocol"] == "train":
            rec["info"][r["metric"]] = r["value"]
            if "error" in r:
                rec["error"] = r["error"]
        else:
            rec["scores"].append({k: r.get(k) for k in SCORE_FIELDS})
    return provs, list(groups.values())


# ----------------------------------------------------------------------------- reading
MERGE_MARKERS = ("<<<<<<<", "=======", ">>>>>>>", "|||||||")


def _is_number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _describe(v) -> str:
    kinds = {str: "a string", list: "a list", dict: "an object", bool: "a boolean"}
    kind = kinds.get(type(v), type(v).__name__)
    text = json.dumps(v, default=str)
    return f"{kind} ({text[:40] + '...' if len(text) > 40 else text})"


def unit_record_problem(obj: dict) -> str | None:
    """Why a ``{"record": "unit", ...}`` object is not a unit record this store can read (a
    field missing, or of the wrong type: a string where a number belongs...), or None."""
    for k, types, what in (("unit_hash", str, "a string"), ("method", str, "a string"),
                           ("provenance", str, "a string"), ("scores", list, "a list"),
                           ("info", dict, "an object")):
        if k not in obj:
            return f"a unit record without {k!r}"
        if not isinstance(obj[k], types):
            return f"a unit record whose {k} is {_describe(obj[k])}, not {what}"
    seed = obj.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return f"a unit record whose seed is {_describe(seed)}, not a whole number"
    if obj.get("date") is not None and not isinstance(obj["date"], str):
        return f"a unit record whose date is {_describe(obj['date'])}, not a string"
    for i, sc in enumerate(obj["scores"]):
        if not isinstance(sc, dict):
            return f"a unit record whose scores[{i}] is {_describe(sc)}, not an object"
        unknown = sorted(set(sc) - set(SCORE_FIELDS))
        if unknown:
            return f"a unit record whose scores[{i}] has keys this store does not know: {', '.join(unknown)}"
        for k in ("protocol", "metric"):
            if not isinstance(sc.get(k), str):
                return f"a unit record whose scores[{i}].{k} is {_describe(sc.get(k))}, not a string"
        if not _is_number(sc.get("value")):
            return f"a unit record whose scores[{i}].value is {_describe(sc['value'])}, not a number"
        if sc.get("level") is not None and not _is_number(sc["level"]):
            return f"a unit record whose scores[{i}].level is {_describe(sc['level'])}, not a number"
    for k, v in obj["info"].items():
        if not _is_number(v):
            return f"a unit record whose info.{k} is {_describe(v)}, not a number"
    return None


def quiet(msg: str) -> None:
    """A ``report`` that says nothing (the caller reports the lines itself)."""


def _stderr(msg: str) -> None:
    print(f"[i2m2bench] {msg}", file=sys.stderr)


def read_records(path: Path, *, report=None, foreign: list | None = None,
                 skipped: list | None = None) -> tuple[dict, list[dict]]:
    """(provenance by id, unit records) of ``path``. A line this store does not understand --
    not JSON (a torn or cut line), not a schema-2 record (foreign keys, a schema-1 row, a
    merge-conflict marker such as ``<<<<<<< HEAD``), a unit record with a missing field or a
    string where a number belongs, or one naming a provenance the file lacks -- is reported
    through ``report`` (default: stderr) as ``file:line: why`` and left out; its raw text is
    appended to ``foreign`` and a :class:`Skipped` to ``skipped`` when given (writers keep such
    lines verbatim: a write never deletes a line it did not write)."""
    report = report or _stderr
    foreign = [] if foreign is None else foreign
    skipped = [] if skipped is None else skipped
    path = Path(path)
    if not path.exists():
        return {}, []

    def skip(lineno: int, line: str, reason: str, torn: bool = False) -> None:
        s = Skipped(path, lineno, reason, line.rstrip("\r\n"), torn)
        report(f"{s}; left out (kept in the file as it is)")
        foreign.append(s.text)
        skipped.append(s)

    provs, units, pending = {}, [], []
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if line.startswith(MERGE_MARKERS):
                skip(lineno, line, f"a merge-conflict marker ({line.strip()[:30]}): resolve the "
                                   "conflict; the records on both sides are read")
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                skip(lineno, line, "a malformed line, not JSON (torn or cut short?)", torn=True)
                continue
            kind = obj.get("record") if isinstance(obj, dict) else None
            if kind == "provenance" and isinstance(obj.get("id"), str):
                provs[obj["id"]] = obj
            elif kind == "unit":
                problem = unit_record_problem(obj)
                if problem:
                    skip(lineno, line, problem)
                else:
                    pending.append((lineno, obj, line))
            elif isinstance(obj, dict) and "protocol" in obj and "record" not in obj:
                skip(lineno, line, f"a schema-1 row (one line per score); convert the file with "
                                   f"`python scripts/migrate_results.py {path}`")
            elif isinstance(obj, dict):
                keys = ", ".join(sorted(map(str, obj))[:6]) + (", ..." if len(obj) > 6 else "")
                skip(lineno, line, f"not a result record (keys: {keys or 'none'})")
            else:
                skip(lineno, line, f"not a result record ({_describe(obj)})")
    for lineno, rec, line in pending:
        if rec["provenance"] not in provs:
            skip(lineno, line, f"a unit record naming provenance {rec['provenance']!r}, which the "
                               "file does not hold")
            continue
        units.append(rec)
    return provs, units


def read_rows(path: Path, *, report=None, skipped: list | None = None) -> list[dict]:
    """All rows of ``path`` (see module docstring), in file order; the lines left out are
    reported (``report``, default stderr) and listed in ``skipped`` when given."""
    provs, units = read_records(path, report=report, skipped=skipped)
    return [row for rec in units for row in rows_of(rec, provs[rec["provenance"]])]


# ----------------------------------------------------------------------------- writing
def _dump(provs: dict, units: list[dict], foreign=()) -> tuple[str, list]:
    """The file's text and the kept lines it drops: a kept line is dropped only when the new text
    holds it in full -- verbatim, or (a torn line) as the start of one of its lines -- so no
    information is lost."""
    used = []
    for rec in units:
        if rec["provenance"] not in used:
            used.append(rec["provenance"])
    lines = [json.dumps(provs[p], sort_keys=True) for p in used]
    lines += [json.dumps(rec, sort_keys=True) for rec in units]
    ours = set(lines)
    kept, dropped = [], []
    for f in foreign:
        text = f.text if isinstance(f, Skipped) else f
        torn = isinstance(f, Skipped) and f.torn
        if isinstance(f, Skipped) and (text in ours or (torn and any(x.startswith(text) for x in lines))):
            dropped.append(f)
        else:
            kept.append(text)
    return "".join(line + "\n" for line in [*lines, *kept]), dropped


def _dropped_notes(dropped: list) -> list[str]:
    return [f"{s.path}:{s.lineno}: dropped a " + ("torn line: the start of a line now written in full"
                                                   if s.torn else "line now written as it is")
            for s in dropped]


def write_records(path: Path, provs: dict, units: list[dict], foreign=()) -> list[str]:
    """Replace ``path`` with these records (under the caller's lock); ``foreign``: lines the
    reader did not understand (their text, or :class:`Skipped`), kept verbatim at the end --
    except a :class:`Skipped` line that the new file holds in full (a torn copy of a record
    written again). Returns one note per line so dropped."""
    text, dropped = _dump(provs, units, foreign)
    # surrogateescape: a kept line that is not UTF-8 goes back byte for byte
    write_bytes_atomic(path, text.encode("utf-8", "surrogateescape"), "the results file")
    return _dropped_notes(dropped)


# ----------------------------------------------------------------------------- a unit's view
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


def exact_differences(first: Path, second: Path) -> list[str]:
    """Where two results files (or folders of them, matched by file name) disagree, bit for bit:
    units present in one only, and every score or non-timing figure (:data:`TIMING_FIGURES`
    aside) that differs, one line each; [] when every row is the same. NaN equals NaN."""
    first, second = Path(first), Path(second)
    if first.is_dir() or second.is_dir():
        names = sorted({p.name for d in (first, second) for p in Path(d).glob("*.jsonl")})
        if not names:
            return [f"{first}, {second}: no results files (*.jsonl)"]
        return [line for n in names for line in exact_differences(first / n, second / n)]

    def units(path: Path) -> dict:
        if not path.exists():
            return {}
        _, recs = read_records(path, report=quiet)
        by = {}
        for r in recs:
            by.setdefault((r.get("setting"), r["method"], r["seed"], r["unit_hash"]), []).append(r)
        return {k: unit_view(v) for k, v in by.items()}

    a, b = units(first), units(second)
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


def _numerics_notes(label: str, replaced: list[dict], provs: dict, new_prov: dict) -> list[str]:
    """``<label>: replacing rows made with numerics X by rows made with numerics Y`` for each
    distinct machine whose rows are replaced by rows of another (both recording numerics)."""
    new = new_prov.get("numerics")
    notes = []
    for rec in replaced:
        old = provs.get(rec["provenance"], {}).get("numerics")
        if not isinstance(old, dict) or not isinstance(new, dict) or old == new:
            continue
        keys = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
        x = ", ".join(f"{k}={old.get(k, '?')}" for k in keys)
        y = ", ".join(f"{k}={new.get(k, '?')}" for k in keys)
        note = f"{label}: replacing rows made with numerics {x} by rows made with numerics {y}"
        if note not in notes:
            notes.append(note)
    return notes


def _label(rec: dict) -> str:
    return f"{rec.get('method')}/seed{rec.get('seed')}"


# ----------------------------------------------------------------------------- storing
def upsert_unit(path: Path, record: dict, prov: dict, *, replace: bool = True,
                label: str | None = None) -> list[str]:
    """Store one unit record. ``replace``: drop the unit's earlier records (a new training);
    otherwise add it beside them (more protocols for a trained unit) — its scores and ``info``
    figures then supersede the same protocols' scores and the same figures of the earlier
    records, so adding the same scores twice stores them once. Lines the reader did not
    understand are kept as they are.

    Returns notes to show the user (``label``, default ``<method>/seed<seed>``, names the unit):
    ``<label>: replacing rows made with numerics X by rows made with numerics Y`` when rows made
    on a machine with other numerics (provenance ``numerics``: CPU capability, threads, device,
    deterministic flag, torch) are replaced, and one per torn line dropped because the new file
    holds it in full."""
    label = label or _label(record)
    with locked(path):
        skipped: list[Skipped] = []
        provs, units = read_records(path, report=quiet, skipped=skipped)
        key = _unit_key(record)
        new_scores = {(sc["protocol"], sc["metric"]) for sc in record["scores"]}
        kept, replaced = [], []
        for rec in units:
            if _unit_key(rec) == key:
                if replace:
                    replaced.append(rec)
                    continue
                slim = {**rec,
                        "info": {k: v for k, v in rec["info"].items() if k not in record["info"]},
                        "scores": [sc for sc in rec["scores"]
                                   if (sc["protocol"], sc["metric"]) not in new_scores]}
                if slim["info"] != rec["info"] or slim["scores"] != rec["scores"]:
                    replaced.append(rec)
                rec = slim
            kept.append(rec)
        notes = _numerics_notes(label, replaced, provs, prov)
        provs[prov["id"]] = prov
        return notes + write_records(path, provs, kept + [record], skipped)


def upsert_unit_rows(path: Path, rows: list[dict]) -> list[str]:
    """Store flat rows (grouped into records); the units they name replace their earlier records.
    Returns the notes of :func:`upsert_unit` (numerics replaced, torn lines dropped)."""
    new_provs, records = records_from_rows(rows)
    keys = {_unit_key(r) for r in records}
    with locked(path):
        skipped: list[Skipped] = []
        provs, units = read_records(path, report=quiet, skipped=skipped)
        notes = []
        for rec in records:
            old = [u for u in units if _unit_key(u) == _unit_key(rec)]
            notes += [n for n in _numerics_notes(_label(rec), old, provs, new_provs[rec["provenance"]])
                      if n not in notes]
        provs.update(new_provs)
        return notes + write_records(path, provs, [u for u in units if _unit_key(u) not in keys] + records,
                                     skipped)


def unit_records(path: Path, unit_hash: str, seed: int) -> list[tuple[dict, dict]]:
    """(record, provenance) of each stored record of one unit, in file order (read under the
    lock, quietly)."""
    with locked(path):
        provs, units = read_records(path, report=quiet)
    return [(r, provs[r["provenance"]]) for r in units if _unit_key(r) == (unit_hash, seed)]


@dataclass
class Sync:
    """What :func:`sync_unit` did: ``repaired``: why the stored rows were replaced (None when
    they agreed); ``notes``: further lines to show (numerics replaced, torn lines dropped)."""

    repaired: str | None = None
    notes: list = field(default_factory=list)


def sync_unit(path: Path, records: list[tuple[dict, dict]], *, label: str | None = None,
              source: str = "metrics.json") -> Sync:
    """Make the stored rows of one unit say what ``records`` (its (record, provenance) pairs,
    built from its run directory: :func:`records_from_metrics`) say: under the lock, compare the
    unit's stored view (:func:`unit_view`) with theirs; when the unit is missing or any score
    or figure differs, is missing or is extra, replace the unit's records by ``records``. A
    file that does not exist is created."""
    if not records:
        return Sync()
    key = _unit_key(records[0][0])
    label = label or _label(records[0][0])
    want = unit_view([r for r, _ in records])
    with locked(path):
        skipped: list[Skipped] = []
        provs, units = read_records(path, report=quiet, skipped=skipped)
        mine = [u for u in units if _unit_key(u) == key]
        why = "missing" if not mine else view_difference(unit_view(mine), want, source)
        if why is None:
            return Sync()
        if not mine and not path.exists():
            why = "missing: the results file did not exist"
        notes = []
        for rec, prov in records:
            notes += [n for n in _numerics_notes(label, mine, provs, prov) if n not in notes]
            provs[prov["id"]] = prov
        others = [u for u in units if _unit_key(u) != key]
        notes += write_records(path, provs, others + [r for r, _ in records], skipped)
        return Sync(why, notes)


# ----------------------------------------------------------------------------- metrics.json <-> records
def metrics_meta(records: list[tuple[dict, dict]]) -> dict:
    """What ``metrics.json`` keeps besides scores and figures so that its unit's records can be
    rebuilt as they were (:func:`records_from_metrics`): ``date``, ``provenance`` and
    ``config_hash`` of the first record (the training), and ``added``: for each later record
    (protocols evaluated later) its date, provenance, config hash, protocols and figures."""
    if not records:
        return {}
    (first, fprov), later = records[0], records[1:]
    meta = {"date": first.get("date"), "provenance": _bare(fprov)}
    if "config_hash" in first:
        meta["config_hash"] = first["config_hash"]
    if later:
        meta["added"] = [added_meta(r, p) for r, p in later]
    return meta


def _bare(prov: dict) -> dict:
    return {k: v for k, v in prov.items() if k not in ("record", "id")}


def added_meta(record: dict, prov: dict) -> dict:
    """The ``metrics.json`` entry (under ``added``) of a record that added protocols to a
    trained unit: its date, provenance, protocols and figures."""
    out = {"date": record.get("date"), "provenance": _bare(prov),
           "protocols": sorted({sc["protocol"] for sc in record["scores"]}),
           "info": sorted(record["info"])}
    if "config_hash" in record:
        out["config_hash"] = record["config_hash"]
    return out


def records_from_metrics(base: dict, metrics: dict, *, prov: dict, date: str,
                         error: str | None = None) -> list[tuple[dict, dict]]:
    """A unit's (record, provenance) pairs rebuilt from its ``metrics.json`` (scores, ``info``,
    and the :func:`metrics_meta` keys when it holds them): the records a run wrote, with their
    original dates and provenance. ``prov`` and ``date``: used where ``metrics.json`` does not
    say (a file written before it kept them)."""
    scores, info = metrics["scores"], metrics["info"]
    first_prov = metrics.get("provenance") if isinstance(metrics.get("provenance"), dict) else prov
    first_date = metrics.get("date") if isinstance(metrics.get("date"), str) else date

    def base_of(entry: dict) -> dict:  # the gin config hash of the run that wrote the record
        return {**base, "config_hash": entry["config_hash"]} if isinstance(
            entry.get("config_hash"), str) and "config_hash" in base else base

    added = [a for a in metrics.get("added") or [] if isinstance(a, dict)]
    later_protocols = {p for a in added for p in a.get("protocols", [])}
    later_info = {k for a in added for k in a.get("info", [])}
    groups = [(base_of(metrics), first_date, first_prov,
               [sc for sc in scores if sc["protocol"] not in later_protocols],
               {k: v for k, v in info.items() if k not in later_info})]
    for i, a in enumerate(added):
        after = {k for b in added[i + 1:] for k in b.get("info", [])}
        protos = set(a.get("protocols", []))
        groups.append((base_of(a), a.get("date") if isinstance(a.get("date"), str) else date,
                       a.get("provenance") if isinstance(a.get("provenance"), dict) else prov,
                       [sc for sc in scores if sc["protocol"] in protos],
                       {k: info[k] for k in a.get("info", []) if k in info and k not in after}))
    out = [make_record(b, p, s, f, d, error) for b, d, p, s, f in groups if s or f]
    return out or [make_record(base_of(metrics), first_prov, [], {}, first_date, error)]


# ----------------------------------------------------------------------------- files
def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` through a unique temporary file and rename. The state is serialised in
    memory first (``torch.save`` into a file turns a full disk into an obscure RuntimeError), so
    a write that fails -- a full disk, a read-only folder -- raises a :class:`WriteError` naming
    ``path`` and the cause, and leaves neither a partial checkpoint nor a temporary file: the
    unit stays incomplete and the same command trains it again."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(path, buf.getbuffer(), "the checkpoint",
                       hint="rerun the same command once there is room: the unit is trained again")


def load_checkpoint(path: Path) -> dict:
    """Load a state dict saved by this harness; tensors only (``weights_only=True``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


MIN_FREE_BYTES = 200 << 20


class OutputError(OSError):
    """An output location that cannot take the run's files."""


def check_writable(*dirs: Path) -> None:
    """Fail before any training when an output folder cannot be written or its disk is full."""
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=d, prefix=".i2m2bench-write-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise OutputError(f"{d}: output folder is not writable ({exc.strerror or exc}); "
                              "choose another with --out / --leaderboard-dir") from exc
        free = shutil.disk_usage(d).free
        if free < MIN_FREE_BYTES:
            raise OutputError(f"{d}: only {free / 2**20:.0f} MiB free on its disk; at least "
                              f"{MIN_FREE_BYTES >> 20} MiB are needed for checkpoints and results")
