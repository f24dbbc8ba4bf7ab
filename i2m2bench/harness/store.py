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
concurrent runs serialise and a crash leaves the old file or the new one. A line the reader does
not understand is reported with file and line and skipped.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from i2m2bench._version import __version__
from i2m2bench.fileio import locked, write_atomic, write_bytes_atomic, write_text_atomic  # noqa: F401

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


def read_records(path: Path, *, report=None, foreign: list | None = None) -> tuple[dict, list[dict]]:
    """(provenance by id, unit records) of ``path``. Lines that are not JSON, not a schema-2
    record, or name a provenance the file lacks are reported (file:line) and skipped; their raw
    text is appended to ``foreign`` when given (writers keep them: a write never deletes a line
    it did not write)."""
    report = report or (lambda msg: print(f"[i2m2bench] {msg}", file=sys.stderr))
    foreign = [] if foreign is None else foreign
    if not path.exists():
        return {}, []
    provs, units, pending = {}, [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                report(f"{path}:{lineno}: skipping a malformed (torn?) line")
                foreign.append(line.rstrip("\n"))
                continue
            kind = obj.get("record") if isinstance(obj, dict) else None
            if kind == "provenance" and isinstance(obj.get("id"), str):
                provs[obj["id"]] = obj
            elif kind == "unit" and isinstance(obj.get("scores"), list) and isinstance(obj.get("info"), dict):
                pending.append((lineno, obj, line))
            elif isinstance(obj, dict) and "protocol" in obj and "record" not in obj:
                report(f"{path}:{lineno}: a schema-1 row (one line per score); convert the file "
                       f"with `python scripts/migrate_results.py {path}`; skipping it")
                foreign.append(line.rstrip("\n"))
            else:
                report(f"{path}:{lineno}: skipping a line that is not a result record")
                foreign.append(line.rstrip("\n"))
    for lineno, rec, line in pending:
        if rec.get("provenance") not in provs:
            report(f"{path}:{lineno}: unit record names provenance {rec.get('provenance')!r} that "
                   "the file does not hold; skipping it")
            foreign.append(line.rstrip("\n"))
            continue
        units.append(rec)
    return provs, units


def read_rows(path: Path) -> list[dict]:
    """All rows of ``path`` (see module docstring), in file order."""
    provs, units = read_records(path)
    return [row for rec in units for row in rows_of(rec, provs[rec["provenance"]])]


def _dump(provs: dict, units: list[dict], foreign: list[str] = ()) -> str:
    used = []
    for rec in units:
        if rec["provenance"] not in used:
            used.append(rec["provenance"])
    lines = [json.dumps(provs[p], sort_keys=True) for p in used]
    lines += [json.dumps(rec, sort_keys=True) for rec in units]
    return "".join(line + "\n" for line in [*lines, *foreign])


def write_records(path: Path, provs: dict, units: list[dict], foreign: list[str] = ()) -> None:
    """Replace ``path`` with these records (under the caller's lock); ``foreign``: lines the
    reader did not understand, kept verbatim at the end."""
    write_text_atomic(path, _dump(provs, units, foreign))


def upsert_unit(path: Path, record: dict, prov: dict, *, replace: bool = True) -> None:
    """Store one unit record. ``replace``: drop the unit's earlier records (a new training);
    otherwise add it beside them (more protocols for a trained unit) — its scores and ``info``
    figures then supersede the same protocols' scores and the same figures of the earlier
    records, so adding the same scores twice stores them once. Lines the reader did not
    understand are kept as they are."""
    with locked(path):
        foreign: list[str] = []
        provs, units = read_records(path, foreign=foreign)
        key = _unit_key(record)
        new_scores = {(sc["protocol"], sc["metric"]) for sc in record["scores"]}
        kept = []
        for rec in units:
            if _unit_key(rec) == key:
                if replace:
                    continue
                rec = {**rec, "info": {k: v for k, v in rec["info"].items() if k not in record["info"]},
                       "scores": [sc for sc in rec["scores"] if (sc["protocol"], sc["metric"]) not in new_scores]}
            kept.append(rec)
        provs[prov["id"]] = prov
        write_records(path, provs, kept + [record], foreign)


def upsert_unit_rows(path: Path, rows: list[dict]) -> None:
    """Store flat rows (grouped into records); the units they name replace their earlier records."""
    new_provs, records = records_from_rows(rows)
    keys = {_unit_key(r) for r in records}
    with locked(path):
        foreign: list[str] = []
        provs, units = read_records(path, foreign=foreign)
        provs.update(new_provs)
        write_records(path, provs, [u for u in units if _unit_key(u) not in keys] + records, foreign)


# ----------------------------------------------------------------------------- files
def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` through a unique temporary file and rename."""
    write_atomic(path, lambda fh: torch.save(state, fh))


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
