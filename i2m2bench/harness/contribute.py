"""Contributed results: ``python -m i2m2bench leaderboard add SOURCE`` merges a user's run of a
published suite -- their own method, usually from a plugin -- into the committed board.

``SOURCE`` is the leaderboard folder the user's ``run --leaderboard-dir`` wrote (``results/``,
``predictions/``), or one results file in it. Each of its boards must name a board of the
target folder. Its units of methods that the board does not have are the contribution; units of
the board's own methods are left alone (the board keeps its rows).

A contribution is merged only when it is comparable with the board, unit by unit:

* the same suite, layout, dataset, dataset version and data source;
* the same data: every ``task_options`` entry equal (the data checksum is one of them);
* the same metrics and the same protocol set (every protocol the board scores, no other);
* the same seeds as the board;
* its numerics recorded (CPU capability, threads, device, torch: the provenance ``numerics``);
* no failed unit, and no row of an uncommitted tree (``git_commit`` ending in ``+dirty``).

Otherwise nothing is written and the error names every difference. Merged unit records keep
their own provenance record (plugin distributions and versions, commit, machine, numerics) and
gain ``"contributed": <date added>``; the board and the site mark them. Their per-sample
predictions (and unit cards: operative config, history) come along when the source has them, and are checked first: each score of the
contribution recomputed from its predictions must agree with its row. Without predictions a
contributed method gets intervals but takes no part in the significance marks
(:func:`~i2m2bench.reporting.significance.column_cells`), and ``leaderboard --check`` reports
its scores as unverified like any board without predictions.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

from i2m2bench.fileio import locked, write_bytes_atomic
from i2m2bench.harness.store.records import Skipped, read_records, write_records
from i2m2bench.predictions import load_predictions, save_predictions
from i2m2bench.reporting.significance import row_key
from i2m2bench.reporting.verify import scores_problem

#: Unit-record fields that must be equal to the board's for a contribution to be comparable.
SAME = ("suite", "layout", "dataset", "dataset_version", "data_source", "setting")


class NotComparable(ValueError):
    """A contribution that differs from its board; the message names every difference."""


@dataclass
class Added:
    """What :func:`add_results` merged into one board."""

    board: str
    methods: list[str]
    units: int
    with_predictions: list[str] = field(default_factory=list)
    without_predictions: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # the board's own methods in the source


def _sources(source: Path) -> list[Path]:
    source = Path(source)
    if source.is_file():
        return [source]
    results = source / "results"
    files = sorted(results.glob("*.jsonl")) if results.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"{source}: no results/*.jsonl here; name the folder your run wrote with "
            "--leaderboard-dir (or one results file in it)")
    return files


def _strict_records(path: Path) -> tuple[dict, list[dict]]:
    skipped: list[Skipped] = []
    provs, units = read_records(path, report=lambda m: None, skipped=skipped)
    if skipped:
        s = skipped[0]
        raise NotComparable(f"{s.path}:{s.lineno}: {s.reason}; a contribution must be read whole")
    return provs, units


def _protocols(rec: dict) -> set[str]:
    return {sc["protocol"] for sc in rec["scores"]}


def _metrics(rec: dict) -> list:
    return list(rec.get("metrics") or sorted({sc["metric"] for sc in rec["scores"]}))


def _board_shape(units: list[dict]) -> tuple[dict, set[str], set[int]]:
    """(the board's reference record, its protocol set, its seeds): protocols over its trained
    units' latest records together (a unit evaluated later adds a record)."""
    trained = [u for u in units if u.get("trained", True)]
    protocols: dict[tuple, set[str]] = {}
    for u in trained or units:
        protocols.setdefault((u["method"], u["seed"]), set()).update(_protocols(u))
    union = set().union(*protocols.values()) if protocols else set()
    return (trained or units)[0], union, {u["seed"] for u in units}


def differences(board: str, board_units: list[dict], provs: dict, units: list[dict]) -> list[str]:
    """Every way the contributed ``units`` (with their provenance ``provs``) differ from the
    board's; empty when they are comparable."""
    ref, protocols, seeds = _board_shape(board_units)
    out: list[str] = []

    def note(text: str) -> None:
        if text not in out:
            out.append(text)

    per_method: dict[str, list[dict]] = {}
    for u in units:
        per_method.setdefault(u["method"], []).append(u)
    for method, recs in per_method.items():
        where = f"{board}: method {method!r}"
        for rec in recs:
            for k in SAME:
                if rec.get(k) != ref.get(k):
                    note(f"{where}: {k} is {rec.get(k)!r}, the board's is {ref.get(k)!r}")
            theirs, ours = rec.get("task_options") or {}, ref.get("task_options") or {}
            for k in sorted(set(theirs) | set(ours)):
                if theirs.get(k) != ours.get(k):
                    what = "data checksum" if k in ("sha256", "checksum") else "data option"
                    note(f"{where}: {what} task_options.{k} is {theirs.get(k, '(absent)')!r}, the "
                         f"board's is {ours.get(k, '(absent)')!r}")
            if _metrics(rec) != _metrics(ref):
                note(f"{where}: metrics {_metrics(rec)}, the board's are {_metrics(ref)}")
            if "failed" in rec.get("info", {}):
                note(f"{where}: seed {rec['seed']} failed ({rec.get('error', 'no message')}); "
                     "re-run it before adding")
            prov = provs.get(rec["provenance"], {})
            if not isinstance(prov.get("numerics"), dict):
                note(f"{where}: seed {rec['seed']} was run without numerics in its provenance "
                     "(CPU capability, threads, device, torch); re-run it with this version")
            commit = str(prov.get("git_commit", ""))
            if commit.endswith("+dirty"):
                note(f"{where}: seed {rec['seed']} was run from an uncommitted tree ({commit})")
        got_seeds = {r["seed"] for r in recs}
        if got_seeds != seeds:
            missing, extra = sorted(seeds - got_seeds), sorted(got_seeds - seeds)
            parts = ([f"lacks seed(s) {missing}"] if missing else []) + (
                [f"has seed(s) {extra} the board does not"] if extra else [])
            note(f"{where}: {' and '.join(parts)} (the board's seeds are {sorted(seeds)})")
        by_seed: dict[int, set[str]] = {}
        for r in recs:
            by_seed.setdefault(r["seed"], set()).update(_protocols(r))
        for seed, got in sorted(by_seed.items()):
            missing, extra = sorted(protocols - got), sorted(got - protocols)
            if missing:
                note(f"{where}: seed {seed} lacks protocol(s) {', '.join(missing)}")
            if extra:
                note(f"{where}: seed {seed} scores protocol(s) the board does not: "
                     f"{', '.join(extra)}")
    return out


def _checked_predictions(src_folder: Path, board: str, units: list[dict]):
    """{key: Predictions} of the contributed units that have prediction files, each checked
    against its rows (a score its predictions do not give is refused)."""
    from i2m2bench.harness.publish import prediction_path

    found, problems = {}, []
    for rec in units:
        key = row_key(rec)
        path = prediction_path(src_folder, board, key)
        if not path.is_file():
            continue
        try:
            pred = load_predictions(path)
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"{path}: not a predictions file this version reads ({exc})")
            continue
        scored = [sc for sc in rec["scores"] if sc.get("curve") is None]  # curves are not published
        problem = scores_problem(scored, pred, str(path))
        if problem:
            problems.append(f"{rec['method']}/seed{rec['seed']}: {problem}")
        found[key] = pred
    if problems:
        raise NotComparable("the contribution's predictions do not give its scores:\n  "
                            + "\n  ".join(problems))
    return found


def add_results(source: Path, into: Path, today: str | None = None) -> list[Added]:
    """Merge the contribution at ``source`` into the leaderboard folder ``into`` (see the
    module's text); re-render each board it changed. Raises :class:`NotComparable` (every
    difference named) or ``FileNotFoundError``, having written nothing."""
    from i2m2bench.harness.publish import prediction_path, render_board_file
    from i2m2bench.reporting.site_html import card_path

    into = Path(into)
    today = today or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    plans = []
    folder_of: dict[str, Path] = {}
    problems: list[str] = []
    for path in _sources(source):
        board = path.stem
        target = into / "results" / f"{board}.jsonl"
        if not target.is_file():
            problems.append(f"{path}: there is no published board {board!r} in {into}/results/ "
                            "(a contribution is a run of a published suite)")
            continue
        provs, units = _strict_records(path)
        with locked(target):
            _, board_units = _strict_records(target)
        on_board = {u["method"] for u in board_units}
        mine = [u for u in units if u["method"] not in on_board]
        ignored = sorted({u["method"] for u in units if u["method"] in on_board})
        if not mine:
            problems.append(f"{path}: nothing to add: every method here is on the board "
                            f"already ({', '.join(ignored) or 'no units'})")
            continue
        diffs = differences(board, board_units, provs, mine)
        if diffs:
            problems += diffs
            continue
        folder = path.parent.parent
        preds = _checked_predictions(folder, board, mine)
        plans.append((board, target, provs, mine, preds, ignored))
        folder_of[board] = folder
    if problems:
        raise NotComparable("not added; nothing was written:\n  " + "\n  ".join(problems))

    done = []
    for board, target, provs, mine, preds, ignored in plans:
        written = []
        try:
            for key, pred in preds.items():
                dst = prediction_path(into, board, key)
                save_predictions(dst, pred)
                written.append(dst)
            for rec in mine:  # the unit cards (operative config, history), where published
                key = row_key(rec)
                src = card_path(folder_of[board], board, key)
                if src.is_file():
                    dst = card_path(into, board, key)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    write_bytes_atomic(dst, src.read_bytes())
                    written.append(dst)
            with locked(target):
                skipped: list[Skipped] = []
                board_provs, board_units = read_records(target, report=lambda m: None,
                                                        skipped=skipped)
                raced = sorted({u["method"] for u in board_units} & {u["method"] for u in mine})
                if raced:  # added by another process since the check
                    raise NotComparable(f"{target}: {', '.join(raced)} reached the board while "
                                        "this contribution was checked; nothing was written")
                added = [{**rec, "contributed": today} for rec in mine]
                for rec in added:
                    board_provs[rec["provenance"]] = provs[rec["provenance"]]
                write_records(target, board_provs, [*board_units, *added], skipped)
        except BaseException:
            for dst in written:
                dst.unlink(missing_ok=True)
            raise
        render_board_file(target, into)
        methods = sorted({u["method"] for u in mine})
        with_pred = sorted({k[1] for k in preds})
        done.append(Added(board, methods, len(mine), with_pred,
                          [m for m in methods if m not in with_pred], ignored))
    return done


__all__ = ["Added", "NotComparable", "SAME", "add_results", "differences"]

