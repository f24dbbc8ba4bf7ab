"""Healing the result store from run directories.

A complete unit's ``metrics.json`` keeps its scores and figures with the date and provenance of
its records (:func:`metrics_meta`), so :func:`records_from_metrics` rebuilds the records as they
were and :func:`sync_unit` replaces a unit's stored records when they are missing or say
something else (:func:`~i2m2bench.harness.store.views.unit_view`,
:func:`~i2m2bench.harness.store.views.view_difference`). A ``metrics.json`` written before it
kept dates gives the dates and provenance of the unit's stored records if any, else its own
modification time and the current run's provenance (the runner says so). Replacing rows made
with other numerics (provenance ``numerics``) is returned as a note by :func:`sync_unit` (and
:func:`~i2m2bench.harness.store.records.upsert_unit`), for the runner to log.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from i2m2bench.fileio import locked
from i2m2bench.harness.store.records import (Skipped, make_record, numerics_notes, quiet,
                                             read_records, unit_key, unit_label, write_records)
from i2m2bench.harness.store.views import unit_view, view_difference


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
    key = unit_key(records[0][0])
    label = label or unit_label(records[0][0])
    want = unit_view([r for r, _ in records])
    with locked(path):
        skipped: list[Skipped] = []
        provs, units = read_records(path, report=quiet, skipped=skipped)
        mine = [u for u in units if unit_key(u) == key]
        why = "missing" if not mine else view_difference(unit_view(mine), want, source)
        if why is None:
            return Sync()
        if not mine and not path.exists():
            why = "missing: the results file did not exist"
        notes = []
        for rec, prov in records:
            notes += [n for n in numerics_notes(label, mine, provs, prov) if n not in notes]
            provs[prov["id"]] = prov
        others = [u for u in units if unit_key(u) != key]
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
