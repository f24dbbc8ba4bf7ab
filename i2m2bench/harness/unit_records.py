"""The records of one setting's units: the identity every record carries, writing records to the
board's results file, and healing the store from the units' run folders.

Every run checks the result store against the run directories: a complete unit whose rows are
missing or differ from its ``metrics.json`` has them written again (original dates, no
retraining), and each repair is logged in one line and listed in the summary
(:meth:`UnitRecords.heal`; the store side is :mod:`i2m2bench.harness.store.healing`).
"""
from __future__ import annotations

from typing import Callable

from i2m2bench.fusion.base import FUSIONS
from i2m2bench.harness import store
from i2m2bench.harness.planner import Workspace
from i2m2bench.harness.recipes import RECIPES
from i2m2bench.harness.unit_files import UnitFiles
from i2m2bench.harness.units import Unit
from i2m2bench.metrics import declared_metrics

Log = Callable[[str], None]


def summary_values(scores: list[dict], primary: str) -> dict[str, float]:
    """Summary/log keys of stored scores: the protocol for the ``primary`` metric,
    ``<protocol> <metric>`` else."""
    return {sc["protocol"] if sc["metric"] == primary else f"{sc['protocol']} {sc['metric']}":
            sc["value"] for sc in scores}


class UnitRecords:
    """Makes, writes and heals the records of one setting's units. ``config_hash``: the hash of
    the operative gin config; ``provenance``: what produced this run
    (:func:`i2m2bench.harness.store.provenance`)."""

    def __init__(self, workspace: Workspace, config_hash: str, provenance: dict) -> None:
        self.workspace, self.config_hash, self.provenance = workspace, config_hash, provenance

    def base(self, u: Unit) -> dict:
        """The identity and settings every record of unit ``u`` carries."""
        ws = self.workspace
        spec = ws.task.spec
        return {"board": ws.board, "suite": ws.suite.name, "dataset": spec.name,
                "dataset_version": spec.version, "data_source": spec.source, "method": u.method,
                "label": u.label, "family": FUSIONS.get(u.config.fusion).family,
                "fusion": u.config.fusion, "recipe": u.config.recipe,
                "trained": RECIPES.get(u.config.recipe).trains, "seed": u.seed,
                "unit_hash": u.unit_hash, "config_hash": self.config_hash,
                "train": u.train.as_dict(), "n_train": len(ws.task.splits["train"]),
                "layout": ws.suite.layout, "setting": ws.label,
                "reference_method": ws.suite.reference,
                "task_options": ws.task_identity()["options"],
                "metrics": list(declared_metrics(spec)),  # primary first: the board's order
                **({"official": list(u.official)} if u.official else {})}

    def make(self, u: Unit, scores: list[dict], info: dict,
             error: str | None = None) -> tuple[dict, dict]:
        """(record, provenance) of unit ``u``, dated now."""
        return store.make_record(self.base(u), self.provenance, scores, info, store.utc_now(),
                                 error)

    def write(self, rec: dict, prov: dict, replace: bool, label: str, log: Log) -> None:
        """Upsert one unit record into the board's results file, logging the store's notes
        (rows made with other numerics replaced, torn lines dropped)."""
        for note in store.upsert_unit(self.workspace.results_path, rec, prov, replace=replace,
                                      label=label):
            log(f"[i2m2bench] {note}")

    def stored(self, u: Unit) -> list[tuple[dict, dict]]:
        """(record, provenance) of each stored record of unit ``u``, in file order."""
        return store.unit_records(self.workspace.results_path, u.unit_hash, u.seed)

    def summary_values(self, scores: list[dict]) -> dict[str, float]:
        """:func:`summary_values` for this task's primary metric."""
        return summary_values(scores, self.workspace.task.spec.metric)

    def heal(self, u: Unit, log: Log) -> tuple[str, dict] | None:
        """Make a complete unit's stored rows agree with its ``metrics.json`` (the truth of a
        complete unit): rows missing (a deleted or rebuilt results file, a torn line) or damaged
        (cut, or scores that differ) are written again from it -- with their original dates and
        provenance, no retraining -- and the repair is logged in one line. Returns (that line,
        the summary entry) when a repair was made, else None. A ``metrics.json`` written before
        it kept dates gets them from the unit's stored rows when those agree; when they do not,
        the rows written again are dated by its modification time and given this run's
        provenance (the log line says so)."""
        ws, files = self.workspace, self.workspace.files(u)
        metrics = files.read_metrics()
        if not metrics:
            return None
        records = store.records_from_metrics(self.base(u), metrics, prov=self.provenance,
                                             date=files.metrics_date())
        remark = ""
        if not isinstance(metrics.get("date"), str) or not isinstance(metrics.get("provenance"), dict):
            if self._dates_from_store(u, files, metrics, records):
                return None
            remark = ("; dated by the modification time of metrics.json and given this run's "
                      "provenance: metrics.json predates recorded dates")
        sync = store.sync_unit(ws.results_path, records, label=ws.where(u))
        if sync.repaired is None:
            return None
        line = (f"{ws.results_path}: re-emitted the rows of {ws.where(u)} from "
                f"{files.metrics_path} ({sync.repaired}{remark})")
        log(f"[i2m2bench] {line}")
        for note in sync.notes:
            log(f"[i2m2bench] {note}")
        return line, {"unit": ws.where(u), "repaired": f"rows re-emitted ({sync.repaired})",
                      **self.summary_values(metrics["scores"])}

    def _dates_from_store(self, u: Unit, files: UnitFiles, metrics: dict,
                          records: list[tuple[dict, dict]]) -> bool:
        """A ``metrics.json`` without dates whose unit's stored rows say the same: it is given
        their dates and provenance (for a later rebuild); True when so."""
        have = self.stored(u)
        if have and store.view_difference(store.unit_view([r for r, _ in have]),
                                          store.unit_view([r for r, _ in records])) is None:
            extra = {k: v for k, v in metrics.items() if k not in ("scores", "info")}
            files.write_metrics(metrics["scores"], metrics["info"],
                                {**extra, **store.metrics_meta(have)})  # dates, for a rebuild
            return True
        return False


__all__ = ["UnitRecords", "summary_values"]
