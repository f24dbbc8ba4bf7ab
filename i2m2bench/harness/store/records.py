"""The records of the result store: the schema, a tolerant reader and an atomic writer of
``leaderboards/results/<board>.jsonl`` (one record per unit and protocol set, provenance once).

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

Healing from run folders is :mod:`i2m2bench.harness.store.healing`.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from i2m2bench.fileio import locked, write_bytes_atomic
from i2m2bench.harness.store.provenance import stable_hash

SCHEMA = 2
# Row fields that describe what produced a unit (stored once per file, referenced by id).
PROVENANCE_FIELDS = ("git_commit", "device", "torch_version")
# Row fields that describe one score (the rest of a row is the unit's record).
SCORE_FIELDS = ("protocol", "kind", "metric", "value", "higher_is_better", "curve", "level")


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


def unit_key(rec: dict) -> tuple:
    """What identifies a unit's records: (unit hash, seed)."""
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


def numerics_notes(label: str, replaced: list[dict], provs: dict, new_prov: dict) -> list[str]:
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


def unit_label(rec: dict) -> str:
    """``<method>/seed<seed>``: how notes name a record's unit."""
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
    label = label or unit_label(record)
    with locked(path):
        skipped: list[Skipped] = []
        provs, units = read_records(path, report=quiet, skipped=skipped)
        key = unit_key(record)
        new_scores = {(sc["protocol"], sc["metric"]) for sc in record["scores"]}
        kept, replaced = [], []
        for rec in units:
            if unit_key(rec) == key:
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
        notes = numerics_notes(label, replaced, provs, prov)
        provs[prov["id"]] = prov
        return notes + write_records(path, provs, kept + [record], skipped)


def upsert_unit_rows(path: Path, rows: list[dict]) -> list[str]:
    """Store flat rows (grouped into records); the units they name replace their earlier records.
    Returns the notes of :func:`upsert_unit` (numerics replaced, torn lines dropped)."""
    new_provs, records = records_from_rows(rows)
    keys = {unit_key(r) for r in records}
    with locked(path):
        skipped: list[Skipped] = []
        provs, units = read_records(path, report=quiet, skipped=skipped)
        notes = []
        for rec in records:
            old = [u for u in units if unit_key(u) == unit_key(rec)]
            notes += [n for n in numerics_notes(unit_label(rec), old, provs, new_provs[rec["provenance"]])
                      if n not in notes]
        provs.update(new_provs)
        return notes + write_records(path, provs, [u for u in units if unit_key(u) not in keys] + records,
                                     skipped)


def unit_records(path: Path, unit_hash: str, seed: int) -> list[tuple[dict, dict]]:
    """(record, provenance) of each stored record of one unit, in file order (read under the
    lock, quietly)."""
    with locked(path):
        provs, units = read_records(path, report=quiet)
    return [(r, provs[r["provenance"]]) for r in units if unit_key(r) == (unit_hash, seed)]
