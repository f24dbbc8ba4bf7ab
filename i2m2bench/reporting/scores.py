"""A board's rows grouped for rendering: per method (latest unit), per seed, by protocol and by
(curve, level) point; and the mean ± std cell every board prints.

Grouping reads the rows' structured fields (:mod:`i2m2bench.reporting.rows`); no protocol string
is parsed.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from i2m2bench.reporting.rows import (ROBUST_KINDS, curve_point, latest_units, method_order,
                                      protocol_kind)


def _mean_std(values: list[float], scale: float, digits: int) -> str:
    m = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


#: The cell of a metric that has no value (nan) on the split for some seed (e.g. AUROC of a label
#: whose targets hold one class only).
UNDEFINED = "undefined"


def is_undefined(values: list[float] | None) -> bool:
    """Whether ``values`` hold an undefined (nan) value."""
    return bool(values) and any(v != v for v in values)


def finite_best(means: list[float], higher_is_better: bool) -> float | None:
    """The best of ``means`` (max or min), leaving undefined (nan) ones out; None if none is left."""
    ok = [m for m in means if m == m]
    return (max if higher_is_better else min)(ok) if ok else None


def mean_std_cell(values: list[float] | None, scale: float, digits: int,
                  best: float | None = None) -> str:
    """A table cell: mean ± sample std of ``values`` × ``scale``, bold when the mean is ``best``,
    "—" when there are none, "undefined" when one of them is (nan; never bold)."""
    if not values:
        return "—"
    if is_undefined(values):
        return UNDEFINED
    cell = _mean_std(values, scale, digits)
    return f"**{cell}**" if best is not None and statistics.fmean(values) == best else cell


def curve_slug(curve: str) -> str:
    """The file-name form of a curve name (``perturb:audio:snr`` -> ``perturb-audio-snr``)."""
    return curve.replace(":", "-").replace("_", "-")


# ------------------------------------------------------------------------------ one unit's values
@dataclass
class UnitScores:
    """One method's values per seed (seeds sorted; a later row of the same seed wins)."""

    rows: list[dict]
    scores: dict[str, dict[int, float]] = field(default_factory=dict)  # protocol -> seed -> value
    points: dict[tuple[str, float], dict[int, float]] = field(default_factory=dict)  # (curve, level)
    info: dict[str, dict[int, float]] = field(default_factory=dict)  # training figure -> seed -> value

    @classmethod
    def of(cls, rows: list[dict]) -> "UnitScores":
        scores, points, info = defaultdict(dict), defaultdict(dict), defaultdict(dict)
        for r in rows:
            if r["protocol"] == "train":
                info[r["metric"]][r["seed"]] = r["value"]
                continue
            scores[r["protocol"]][r["seed"]] = r["value"]
            cp = curve_point(r)
            if cp is not None:
                points[cp][r["seed"]] = r["value"]
        srt = lambda d: {k: dict(sorted(v.items())) for k, v in d.items()}  # noqa: E731
        return cls(rows, srt(scores), srt(points), srt(info))

    @property
    def family(self) -> str:
        return self.rows[0]["family"]

    @property
    def trained(self) -> bool:
        """Whether the unit trained (an ``evaluate_only`` unit evaluates another's weights; rows
        written before the store recorded ``trained`` are judged by their recipe)."""
        r0 = self.rows[0]
        return bool(r0.get("trained", r0.get("recipe") != "evaluate_only"))

    @property
    def ranked(self) -> bool:
        """Whether the unit competes for the marks: every unit but an ``evaluate_only`` one,
        which evaluates another method's trained model under other options. An ``ensemble``
        trains nothing either, but its product of separately trained experts is a model of its
        own, so it is ranked."""
        return self.rows[0].get("recipe") != "evaluate_only"

    def score(self, protocol: str) -> list[float] | None:
        v = self.scores.get(protocol)
        return list(v.values()) if v else None

    def point(self, curve: str, level: float) -> list[float] | None:
        v = self.points.get((curve, level))
        return list(v.values()) if v else None

    def figure(self, name: str) -> list[float] | None:
        v = self.info.get(name)
        return list(v.values()) if v else None

    def curve_of_seed(self, curve: str, seed: int) -> dict[float, float]:
        """{level: value} of one seed on ``curve``."""
        return {lv: v[seed] for (c, lv), v in self.points.items() if c == curve and seed in v}


@dataclass
class BoardData:
    """A board's rows grouped for rendering (latest unit per method)."""

    units: dict[str, UnitScores]
    methods: list[str]  # board order: family, then name
    kinds: dict[str, str]  # protocol -> kind (scored protocols of the latest units)
    curves: dict[str, set[float]]  # curve -> its levels
    point_protocols: dict[tuple[str, float], str] = field(default_factory=dict)  # (curve, level) -> protocol

    @classmethod
    def of(cls, rows: list[dict]) -> "BoardData":
        units = {m: UnitScores.of(rs) for m, rs in latest_units(rows).items()}
        methods = sorted(units, key=lambda m: method_order(units[m].family, m))
        kinds: dict[str, str] = {}
        curves: dict[str, set[float]] = defaultdict(set)
        point_protocols: dict[tuple[str, float], str] = {}
        for u in units.values():
            for r in u.rows:
                if r["protocol"] == "train":
                    continue
                kinds.setdefault(r["protocol"], protocol_kind(r))
                cp = curve_point(r)
                if cp is not None:
                    curves[cp[0]].add(cp[1])
                    point_protocols.setdefault(cp, r["protocol"])
        return cls(units, methods, kinds, dict(curves), point_protocols)

    def point_protocol(self, curve: str, level: float) -> str | None:
        """The protocol whose rows hold the point (``curve``, ``level``)."""
        return self.point_protocols.get((curve, level))

    def protocols(self, *kinds: str) -> list[str]:
        return sorted(p for p, k in self.kinds.items() if k in kinds)

    def plain_protocols(self) -> list[str]:
        """The main table's columns: every protocol that is not a robustness protocol."""
        plain = [p for p, k in self.kinds.items() if k not in ROBUST_KINDS]
        return sorted(plain, key=lambda p: ({"test": 0, "val": 9}.get(self.kinds[p], 1), p))
