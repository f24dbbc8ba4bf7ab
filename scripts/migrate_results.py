"""Convert results files from schema 1 (one JSON line per score, provenance repeated on each)
to schema 2 (one record per unit and protocol set, provenance once; see
``i2m2bench/harness/store/records.py``).

    python scripts/migrate_results.py leaderboards/results/*.jsonl

Schema-1 rows carry the protocol only as a string; this one-time conversion derives the
structured fields (``kind``, ``curve``, ``level``) from the protocol syntax of
``i2m2bench/harness/protocols.py`` (``perturb:<m>:<kind>@<level>``, ``missing_rate:<p>``), so
that no renderer ever parses a protocol string again. A file already in schema 2 is left as it
is. Every board re-renders byte-identical from the converted file (``leaderboard --check``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from i2m2bench.fileio import locked
from i2m2bench.harness.store import records_from_rows, write_records


def structured(protocol: str) -> tuple[str, str | None, float | None]:
    """(kind, curve, level) of a schema-1 protocol key."""
    if protocol in ("train", "val", "test"):
        return protocol, None, None
    if protocol.startswith("perturb:") and "@" in protocol:
        curve, level = protocol.rsplit("@", 1)
        return "perturb", curve, float(level)
    if protocol.startswith("missing_rate:"):
        return "missing_rate", "missing_rate", float(protocol.split(":", 1)[1])
    head = protocol.split(":", 1)[0]
    if head not in ("shift", "missing"):
        raise ValueError(f"unknown schema-1 protocol {protocol!r}")
    return head, None, None


def migrate(path: Path) -> bool:
    """Convert ``path`` in place; False when it holds no schema-1 rows."""
    with locked(path):
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines or any("record" in obj for obj in lines):
            return False
        for row in lines:
            row["kind"], row["curve"], row["level"] = structured(row["protocol"])
        provs, units = records_from_rows(lines)
        write_records(path, provs, units)
    return True


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg}: {'converted' if migrate(Path(arg)) else 'already schema 2 (unchanged)'}")
