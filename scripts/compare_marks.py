"""Compare the significance marks of the embedded AV-MNIST board between two leaderboard folders
(e.g. the default CPU kernels against ``ATEN_CPU_CAPABILITY=avx2``), restricted to the official
code's methods; prints, per ranked column, whether the marks agree and each method's mean.

    python scripts/compare_marks.py leaderboards /tmp/avx2-leaderboards
"""
import sys
from pathlib import Path
from i2m2bench.harness.store import read_rows
from i2m2bench.harness.publish import evidence_of
from i2m2bench.reporting.board import _entries
from i2m2bench.reporting.scores import BoardData
from i2m2bench.reporting.rows import metric_rows
from i2m2bench.reporting.significance import column_marks

M = ["image_only", "audio_only", "intra_only", "late_fusion", "lrtf", "i2m2_lf", "i2m2_lrtf"]
B = "avmnist-embedded-avdigits"
out = {}
for tag, lb in (("first", Path(sys.argv[1])), ("second", Path(sys.argv[2]))):
    rows = [r for r in read_rows(lb / "results" / f"{B}.jsonl") if r["method"] in M]
    data = BoardData.of(metric_rows(rows, "accuracy"))
    ev = evidence_of(lb, B)
    cols = ["test", "shift:dialects", "val", "missing:audio", "missing:image"]
    out[tag] = {}
    for p in cols:
        ents = _entries(data.units, data.methods, ev, p, "accuracy")
        out[tag][p] = (column_marks(ents, True), {m: round(e.mean * 100, 2) for m, e in ents.items()})
for p in out["first"]:
    a, b = out["first"][p], out["second"][p]
    print(p, "SAME" if a[0] == b[0] else "DIFFERENT", a[0], b[0])
    print("   means first: ", a[1]); print("   means second:", b[1])
