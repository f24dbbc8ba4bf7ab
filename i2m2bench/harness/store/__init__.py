"""The result store: one record per unit and protocol set, provenance once, in
``leaderboards/results/<board>.jsonl``.

* :mod:`~i2m2bench.harness.store.provenance` — what produced a run (commit, device, versions,
  numerics) and the stable hash of ids and unit hashes;
* :mod:`~i2m2bench.harness.store.records` — the schema, the tolerant reader and the atomic
  writer (upserts under the file's lock);
* :mod:`~i2m2bench.harness.store.views` — what a unit's records say, and bit-for-bit comparison
  of two results folders;
* :mod:`~i2m2bench.harness.store.healing` — rebuilding a unit's records from its run folder's
  ``metrics.json`` and replacing stored records that say something else.

This package re-exports the public names of those modules (the store's interface). Checkpoints
are :mod:`i2m2bench.harness.checkpoints`; atomic file writes and locks :mod:`i2m2bench.fileio`.
"""
from i2m2bench.harness.store.healing import (Sync, added_meta, metrics_meta, records_from_metrics,
                                             sync_unit)
from i2m2bench.harness.store.provenance import (git_commit, plugin_versions, provenance,
                                                stable_hash, utc_now)
from i2m2bench.harness.store.records import (MERGE_MARKERS, PROVENANCE_FIELDS, SCHEMA,
                                             SCORE_FIELDS, Skipped, StoreFormatError, make_record,
                                             numerics_notes, quiet, read_records, read_rows,
                                             records_from_rows, rows_of, unit_key, unit_label,
                                             unit_record_problem, unit_records, upsert_unit,
                                             upsert_unit_rows, write_records)
from i2m2bench.harness.store.views import (TIMING_FIGURES, exact_differences, unit_count,
                                           unit_view, view_difference)

__all__ = ["MERGE_MARKERS", "PROVENANCE_FIELDS", "SCHEMA", "SCORE_FIELDS", "TIMING_FIGURES",
           "Skipped", "StoreFormatError", "Sync", "added_meta", "exact_differences", "git_commit",
           "make_record", "metrics_meta", "numerics_notes", "plugin_versions", "provenance",
           "quiet", "read_records", "read_rows", "records_from_metrics", "records_from_rows",
           "rows_of", "stable_hash", "sync_unit", "unit_count", "unit_key", "unit_label", "unit_record_problem",
           "unit_records", "unit_view", "upsert_unit", "upsert_unit_rows", "utc_now",
           "view_difference", "write_records"]
