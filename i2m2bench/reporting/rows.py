"""What reporting needs to know about a row, read from its structured fields.

A result row (``i2m2bench.harness.store.read_rows``) names its protocol (``protocol``, the key
it is stored under and the column heading boards show) and its ``metric`` (one row per declared
metric per protocol; :func:`board_metrics` orders them, primary first) and carries structured
fields: ``curve``
(``"perturb:audio:snr"``, ``"missing_rate"``; None off a curve) and ``level`` (float; None off a
curve). Renderers group and order rows by these fields and by :func:`protocol_kind`; no renderer
splits a protocol string. :func:`protocol_kind` is the one boundary where a row from a file
without a ``kind`` field has its kind derived, and it says so.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Hashable

from i2m2bench.numerics import numerics_label

#: Kinds of protocol. ``train`` rows hold training figures (samples/s, seconds, epochs, ...).
KINDS = ("test", "shift", "missing", "missing_rate", "perturb", "val", "train")
#: The robustness protocols: evaluated after training on transformed test inputs.
ROBUST_KINDS = frozenset({"missing", "missing_rate", "perturb"})
#: Column order by kind (any other kind, e.g. a plugin's, sorts with ``shift``).
KIND_RANK = {"test": 0, "shift": 1, "missing": 3, "missing_rate": 4, "perturb": 5, "val": 8,
             "train": 9}
#: Method order on every board: by family, then name.
FAMILY_ORDER = {"unimodal": 0, "intra": 1, "inter": 2, "i2m2": 3}


def protocol_kind(row: dict) -> str:
    """The kind of a row's protocol: one of :data:`KINDS` (or a plugin's own head).

    Reads the row's structured fields first: its ``kind`` when the store recorded one; ``train``,
    ``test`` and ``val`` rows by their protocol; a row on a curve (``curve`` set) is a
    ``missing_rate`` point when its curve is ``"missing_rate"``, else a ``perturb`` point. Only
    for the remaining rows of files written without a ``kind`` field (``shift:<set>``,
    ``missing:<modality>``) is the kind the protocol's head before its first ``:`` — the one
    place in reporting that reads a protocol string, and only as a fallback.
    """
    kind = row.get("kind")
    if kind:
        return str(kind)
    protocol = row["protocol"]
    if protocol in ("train", "test", "val"):
        return protocol
    curve = row.get("curve")
    if curve is not None:
        return "missing_rate" if curve == "missing_rate" else "perturb"
    return str(protocol).partition(":")[0]  # fallback for files without ``kind``


def is_robust(row: dict) -> bool:
    """Whether a row is a robustness protocol's (missing modality, missing rate, perturbation)."""
    return protocol_kind(row) in ROBUST_KINDS


def curve_point(row: dict) -> tuple[str, float] | None:
    """(curve, level) of a row on a robustness curve, from its structured fields; else None."""
    if row.get("curve") is None or row.get("level") is None:
        return None
    return row["curve"], float(row["level"])


def curve_subject(row: dict) -> str:
    """What a curve varies, for axis labels: ``"<modality>:<perturbation>"`` of a perturbation
    curve. Reads ``modality`` and ``perturbation`` fields when the rows carry them, else the curve
    name without its leading ``perturb:`` (display only; nothing is keyed on it)."""
    if row.get("modality") and row.get("perturbation"):
        return f"{row['modality']}:{row['perturbation']}"
    return str(row["curve"]).partition(":")[2] or str(row["curve"])


def column_order(row: dict) -> tuple:
    """Sort key of a row's (protocol, metric) column: by kind, then curve and level, then name."""
    cp = curve_point(row)
    return (KIND_RANK.get(protocol_kind(row), 2), cp[0] if cp else "", cp[1] if cp else 0.0,
            str(row["protocol"]), str(row["metric"]))


def method_order(family: str | None, method: str) -> tuple:
    return FAMILY_ORDER.get(family, 9), method


#: The precision every row without a ``train.precision`` (rows written before it existed) ran in.
DEFAULT_PRECISION = "fp32"


def precision_of(row: dict) -> str:
    """The ``train.precision`` a row's unit ran in (rows that record none: fp32)."""
    return str((row.get("train") or {}).get("precision") or DEFAULT_PRECISION)


def board_method(row: dict) -> str:
    """The name a row's unit has on a board: its method, with `` [<precision>]`` when it ran in
    another precision than fp32 (``a_only [bf16]``). A bf16 and an fp32 unit of one method are
    two entries of a board, never one superseding the other: rerunning the fp32 command after a
    bf16 run shows the fp32 numbers (with their own schedule), not the newer bf16 ones."""
    precision = precision_of(row)
    return row["method"] if precision == DEFAULT_PRECISION else f"{row['method']} [{precision}]"


def latest_units(rows: list[dict], key: Callable[[dict], Hashable] = board_method) -> dict:
    """key(row) (default: :func:`board_method`, the method and its precision) -> its rows from the
    unit hash whose newest row is the most recent; older configurations of the same key (another
    learning rate, schedule or code) are ignored. Every board uses it."""
    by_key: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_key[key(r)][r["unit_hash"]].append(r)
    out = {}
    for k, units in by_key.items():
        newest = max(units, key=lambda h: (max(r["date"] for r in units[h]), h))
        out[k] = units[newest]
    return out


def board_metrics(rows: list[dict]) -> list[str]:
    """The board's metrics, primary first: the ``metrics`` its units declare (the task's
    metrics, recorded with each unit; the most recently dated declaration wins), then any other
    metric its score rows carry, by name. Rows written before tasks declared several metrics
    carry none: their metric(s) by name (one, ``accuracy``, for every board of that time)."""
    scored = [r for r in rows if r["protocol"] != "train"]
    declared = max(((str(r.get("date")), tuple(r["metrics"])) for r in scored if r.get("metrics")),
                   default=(None, ()))[1]
    present = {str(r["metric"]) for r in scored}
    return [m for m in declared if m in present] + sorted(present - set(declared))


def metric_rows(rows: list[dict], metric: str) -> list[dict]:
    """The score rows of one metric, with every training-figure row (``protocol == "train"``):
    what a renderer built for one metric per protocol reads."""
    return [r for r in rows if r["protocol"] == "train" or r["metric"] == metric]


def has_settings(rows: list[dict]) -> bool:
    """Whether the rows come from several settings of a task (a ``setting`` field that is set)."""
    return any(r.get("setting") is not None for r in rows)


def unit_key(rows: list[dict]) -> Callable[[dict], Hashable]:
    """The grouping of exports and summaries: (setting, :func:`board_method`) when the rows have
    settings, else :func:`board_method`."""
    if has_settings(rows):
        return lambda r: (r.get("setting"), board_method(r))
    return board_method


def per_seed(rows: list[dict], select: Callable[[dict], Hashable | None]) -> dict:
    """select(row) -> {seed: value} (seeds sorted), over rows where select gives a key (not None);
    a later row of the same key and seed wins."""
    out: dict = defaultdict(dict)
    for r in rows:
        k = select(r)
        if k is not None:
            out[k][r["seed"]] = r["value"]
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def machine_of(row: dict) -> str:
    """The machine a row came from: its recorded numerics (CPU or GPU, kernel capability,
    threads), or its device for rows made before numerics were recorded."""
    return numerics_label(row.get("numerics"), row["device"])


def machines_note(rows: list[dict]) -> list[str]:
    """Lines naming the machine(s) whose numerics made these rows (none when no row recorded
    them); with several, a warning that the board mixes them."""
    seen = sorted({machine_of(r) for r in rows if r.get("numerics")})
    if not seen:
        return []
    if len(seen) == 1:
        return ["", f"Made on {seen[0]} (the numerics every row records; the same command on "
                    "another CPU or GPU, or with another thread count, may give other numbers: "
                    "README, Reproducibility)."]
    return ["", f"**Rows from {len(seen)} machines**: " + "; ".join(seen) + ". A unit hash names "
                "the settings, not the numbers: cells that mix machines mix their floating-point "
                "noise (README, Reproducibility)."]
