"""Publishing boards from results files: read a board's rows from the store (under its lock) and
hand them to :mod:`i2m2bench.reporting`, which renders them. The read-only operations (``--check``,
``--format csv|json``, ``compare``) take no lock -- files are replaced atomically -- so a read-only
folder works with them; ``--output`` never names a record of a folder (:func:`output_problem`).

A leaderboard folder holds ``results/<board>.jsonl`` (the store), the per-sample predictions of
the board's units (``predictions/<board>/[<setting>/]<method>/<unit hash>-seed<k>.npz``, copied
from each unit's run directory by :func:`publish_predictions`; format in
:mod:`i2m2bench.predictions`) and, beside them, each board's ``<board>.md`` and figures, whose
intervals and significance marks are computed from the predictions
(:mod:`i2m2bench.reporting.significance`). The runner calls :func:`publish_predictions` and
:func:`render_board_file` when a run ends;
``python -m i2m2bench leaderboard`` calls :func:`render_all`, :func:`check_boards` (``--check``)
and :func:`export_board` (``--format csv|json``); ``compare`` calls :func:`compare_folders`.

The same boards made on other machines (``<folder>/machines/<name>/``, leaderboard folders of
their own) are rendered and checked too and give each main board its Across machines section;
a board's official-behaviour twin (``<suite>_official-...``) gives it its Official behaviour
section (:func:`board_extra`).

A results file line that the store does not understand (a torn line, a merge-conflict marker, a
string where a number belongs: :func:`i2m2bench.harness.store.read_records`) is reported on
stderr with file and line, left out of the board and named in a note at the end of its Markdown
(:func:`skipped_note`). ``--check`` fails on a folder that does not exist or holds no boards
(:func:`folder_problem`) instead of calling it up to date.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Mapping

from i2m2bench.fileio import locked
from i2m2bench.harness.store import Skipped, quiet, read_rows
from i2m2bench.predictions import load_predictions, save_predictions
from i2m2bench.reporting import (board_is_stale, board_method, board_table, latest_units,
                                 summary_table, to_csv, to_json, write_board)
from i2m2bench.reporting.board import StandardLayout
from i2m2bench.reporting.layouts import layout_of
from i2m2bench.reporting.official import official_board_name, official_section
from i2m2bench.reporting.machines import (BoardComparison, Side, compare_boards,
                                          machines_section)
from i2m2bench.reporting.rows import has_settings
from i2m2bench.reporting.significance import Evidence, Key, row_key
from i2m2bench.reporting.verify import Verification, verify_board

PREDICTIONS, RESULTS = "predictions", "results"

EXPORT_FORMATS = {"csv": to_csv, "json": to_json}


def results_files(out_dir: Path) -> list[Path]:
    """The results files of the leaderboard folder ``out_dir``, sorted."""
    return sorted((Path(out_dir) / "results").glob("*.jsonl"))


def board_names(out_dir: Path) -> list[str]:
    """The boards of ``out_dir`` (one per results file)."""
    return [p.stem for p in results_files(out_dir)]


def board_path(results_path: Path, out_dir: Path) -> Path:
    return Path(out_dir) / f"{Path(results_path).stem}.md"


def _component(value, what: str) -> str:
    text = str(value)
    if not text or text in (".", "..") or "/" in text or "\\" in text:
        raise ValueError(f"{what} {text!r} cannot name a folder of the published predictions")
    return text


def prediction_path(out_dir: Path, board: str, key: Key) -> Path:
    """Where the predictions of the unit ``key`` = (setting, method, unit hash, seed) of
    ``board`` are published under the leaderboard folder ``out_dir``."""
    setting, method, unit_hash, seed = key
    d = Path(out_dir) / PREDICTIONS / _component(board, "board")
    d = d if setting is None else d / _component(setting, "setting")
    return d / _component(method, "method") / f"{_component(unit_hash, 'unit hash')}-seed{int(seed)}.npz"


def evidence_of(out_dir: Path, board: str) -> Evidence:
    """The published predictions of ``board`` (a unit without a file has none)."""
    def load(key: Key):
        return load_predictions(p) if (p := prediction_path(out_dir, board, key)).is_file() else None
    return Evidence(load)


def publish_predictions(results_path: Path, out_dir: Path, sources: Mapping[Key, Path]) -> list[Path]:
    """Publish each unit's predictions (``sources``: key -> ``<run dir>/predictions.npz``) at
    its place under ``out_dir`` (temporary file + rename), keeping the protocols its rows score
    outside robustness curves -- the ones a board ranks and marks (curve points are tabled from
    the rows, and the run directory keeps every protocol) -- then remove the board's published
    files that belong to none of its latest units (superseded configurations); the files
    written."""
    results_path = Path(results_path)
    with locked(results_path):  # two runs sharing the folder never delete each other's files
        return _publish_predictions(results_path, out_dir, sources)


def _publish_predictions(results_path: Path, out_dir: Path, sources: Mapping[Key, Path]) -> list[Path]:
    board = results_path.stem
    rows = read_rows(results_path, report=quiet)
    ranked: dict[Key, set[str]] = {}  # unit -> the protocols its rows score outside curves
    for r in rows:
        if r.get("curve") is None and r.get("protocol"):
            ranked.setdefault(row_key(r), set()).add(r["protocol"])
    written = []
    for key, src in sorted(sources.items(), key=lambda kv: str(kv[0])):
        if not Path(src).is_file():
            continue
        pred = load_predictions(Path(src))
        if key in ranked:
            pred = pred.only(ranked[key])
        dst = prediction_path(out_dir, board, key)
        save_predictions(dst, pred)
        written.append(dst)
    root = Path(out_dir) / PREDICTIONS / board
    if root.is_dir():
        keep = {prediction_path(out_dir, board, row_key(r))
                for rs in latest_units(rows, key=lambda r: (r.get("setting"), board_method(r))).values()
                for r in rs}
        for path in root.rglob("*-seed*.npz"):
            if path not in keep:
                path.unlink(missing_ok=True)
    return written


def publish_unit_cards(results_path: Path, out_dir: Path, sources: Mapping[Key, Path]) -> list[Path]:
    """Publish each unit's card (``sources``: key -> its run folder) beside the board:
    ``<out_dir>/units/<board>/<method>-[<setting>-]<hash>-seed<seed>.json`` holding the unit's
    operative gin config (``operative_config.gin``) and training history (``unit.json``), which
    the website's unit pages show. Only units with rows on the board are published; a run folder
    without both files is skipped. The files written."""
    import json

    from i2m2bench.fileio import write_text_atomic
    from i2m2bench.reporting.site_html import card_path

    results_path = Path(results_path)
    board = results_path.stem
    with locked(results_path):
        keys = {row_key(r) for r in read_rows(results_path, report=quiet)}
    written = []
    for key, folder in sorted(sources.items(), key=lambda kv: str(kv[0])):
        config, unit = Path(folder) / "operative_config.gin", Path(folder) / "unit.json"
        if key not in keys or not (config.is_file() and unit.is_file()):
            continue
        history = json.loads(unit.read_text()).get("history") or []
        setting, method, unit_hash, seed = key
        card = {"board": board, "setting": setting, "method": method, "unit_hash": unit_hash,
                "seed": seed, "operative_config": config.read_text(), "history": history}
        path = card_path(out_dir, board, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(card, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def read_board_rows(results_path: Path, report=None) -> list[dict]:
    """The rows of one results file, read under its lock (lines left out are reported through
    ``report``, default stderr)."""
    with locked(results_path):
        return read_rows(results_path, report=report)


def skipped_note(results_path: Path, skipped: list[Skipped]) -> str:
    """The Markdown note that ends a board whose results file holds lines the store does not
    understand ("" when none): how many, which lines and why; they are kept in the file."""
    if not skipped:
        return ""
    def short(reason: str) -> str:
        return reason if len(reason) <= 120 else reason[:117] + "..."

    shown = "; ".join(f"line {s.lineno}: {short(s.reason)}" for s in skipped[:5]) \
        + ("; ..." if len(skipped) > 5 else "")
    name = f"results/{Path(results_path).name}"
    return (f"\n> **Left out of this board:** {len(skipped)} line(s) of `{name}` that the result "
            f"store does not understand ({shown}). They are kept in the file as they are; mend or "
            "remove them and re-render.\n")


def uncommitted_note(rows: list[dict]) -> str:
    """The Markdown line that says which of a board's units (its latest configuration of each
    method and setting) were run from code that is in no commit -- provenance ``git_commit``
    ending in ``+dirty`` (``run --allow-dirty``) -- and "" when none was, so a board made
    from committed code renders as before. Names at most ten."""
    shown = latest_units(rows, key=lambda r: (r.get("setting"), r["method"]))
    dirty, commits = [], set()
    for (setting, method), rs in shown.items():
        marked = {c for c in (str(r.get("git_commit")) for r in rs) if c.endswith("+dirty")}
        if marked:
            dirty.append(method if setting is None else f"{method} ({setting})")
            commits |= marked
    if not dirty:
        return ""
    sweep = any(setting is not None for setting, _ in shown)
    what = "methods and settings" if sweep else "methods"
    if len(dirty) == len(shown):
        which = f"every one of the {len(shown)} {what} on this board"
    else:
        names = sorted(dirty)
        which = (f"{len(dirty)} of the {len(shown)} {what} on this board ("
                 + ", ".join(f"`{n}`" for n in names[:10])
                 + (f" and {len(names) - 10} more" if len(names) > 10 else "") + ")")
    return (f"\n> **From uncommitted code:** the rows of {which} were run from code that differed "
            f"from its commit ({', '.join(sorted(commits))}); no commit reproduces their numbers. "
            "Rerun them from a clean checkout.\n")


MACHINES = "machines"


def replica_folders(out_dir: Path) -> list[Path]:
    """The leaderboard folders of the same boards made on other machines:
    ``<out_dir>/machines/<name>/``, sorted by name."""
    root = Path(out_dir) / MACHINES
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def replicas_of(out_dir: Path, board: str, report=None) -> list[Side]:
    """``board`` as made on other machines (:func:`replica_folders` holding its results file):
    one :class:`~i2m2bench.reporting.machines.Side` each, with its published predictions."""
    out = []
    for folder in replica_folders(out_dir):
        results = folder / "results" / f"{board}.jsonl"
        rows = read_rows(results, report=report) if results.is_file() else []  # no lock: a
        if rows:  # read-only checkout can be checked; an empty replica has nothing to compare
            out.append(Side(folder.name, rows, evidence_of(folder, board), machine_note(folder)))
    return out


MACHINE_FILE = "machine.json"


def machine_note(folder: Path) -> str:
    """What a replica folder's ``machine.json`` says of how it was made (its ``"note"``), "" when
    it has none. A replica made by forcing kernels on another CPU says ``"simulated": true``: the
    Across machines section then labels it a simulation of that machine, not the machine."""
    import json

    path = Path(folder) / MACHINE_FILE
    if not path.is_file():
        return ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc}); expected {{\"note\": \"...\", "
                         "\"simulated\": true|false}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("note", ""), str) \
            or not isinstance(data.get("simulated", False), bool):
        raise ValueError(f"{path}: expected an object with a string \"note\" and a boolean "
                         "\"simulated\"")
    label = "**simulated** — " if data.get("simulated") else ""
    return (label + data.get("note", "")).strip()


def board_extra(results_path: Path, out_dir: Path, rows: list[dict], evidence: Evidence,
                skipped: list[Skipped], report=None) -> str:
    """What a board's Markdown carries beyond its layout's render: on a standard board, the
    **Across machines** section (:func:`replicas_of`) and the **Official behaviour** section
    (:mod:`i2m2bench.reporting.official`); then the notes of :func:`uncommitted_note` and
    :func:`skipped_note`."""
    section: list[str] = []
    if (standard := rows and isinstance(layout_of(rows, results_path), StandardLayout)) and not has_settings(rows):
        section = machines_section(Side("this board", rows, evidence),
                                   replicas_of(out_dir, Path(results_path).stem, report=report))
    if standard and len({r.get("setting") for r in rows}) == 1:  # one setting: its own board
        official = official_board_name(Path(results_path).stem)  # its official-behaviour twin
        theirs = Path(out_dir) / RESULTS / f"{official}.jsonl"
        section += official_section(rows, evidence, read_rows(theirs, report=report) if theirs.is_file()
                                    else [], evidence_of(out_dir, official), official)
    text = "\n".join(section) + "\n" if section else ""
    return text + uncommitted_note(rows) + skipped_note(results_path, skipped)


def render_board_file(results_path: Path, out_dir: Path, report=None) -> Path:
    """Re-render ``<out_dir>/<board>.md`` (and its figures) from its results file; its path.
    Lines of the file that the store does not understand are reported (``report``, default
    stderr), left out, and named in a note at the end of the board; replicas of the board made
    on other machines add its Across machines section (:func:`board_extra`)."""
    results_path = Path(results_path)
    with locked(results_path):  # never render rows that another run is replacing
        skipped: list[Skipped] = []
        rows = read_rows(results_path, report=report, skipped=skipped)
        evidence = evidence_of(out_dir, results_path.stem)
        return write_board(rows, Path(out_dir), results_path.stem, where=results_path,
                           evidence=evidence,
                           extra=board_extra(results_path, out_dir, rows, evidence, skipped, report))


def _selected(out_dir: Path, boards: list[str] | None) -> list[Path]:
    if boards is None:
        return results_files(out_dir)
    return [find_board(out_dir, b) for b in boards]


def render_all(out_dir: Path, boards: list[str] | None = None) -> list[Path]:
    """Re-render every board of the leaderboard folder ``out_dir`` (or only ``boards``) -- and,
    when rendering all, the boards of its replica folders (``machines/<name>/``) first.
    ``FileNotFoundError`` when ``out_dir`` does not exist (nothing would be rendered)."""
    if not Path(out_dir).is_dir():
        raise FileNotFoundError(f"{out_dir}: no such folder, so no boards to render; name the "
                                "folder that holds results/*.jsonl with --leaderboard-dir")
    done = []
    if boards is None:
        for folder in replica_folders(out_dir):
            done += [render_board_file(r, folder) for r in results_files(folder)]
    return done + [render_board_file(r, out_dir) for r in _selected(out_dir, boards)]


def folder_problem(out_dir: Path) -> str | None:
    """Why ``out_dir`` cannot be checked as a leaderboard folder -- it does not exist, is not a
    folder, or holds no boards (no ``results/*.jsonl``, no ``bench/*.json``) -- or None."""
    out_dir = Path(out_dir)
    hint = "name the folder that holds results/*.jsonl with --leaderboard-dir"
    if not out_dir.exists():
        return f"{out_dir}: no such folder, so there are no boards to check; {hint}"
    if not out_dir.is_dir():
        return f"{out_dir}: not a folder, so there are no boards to check; {hint}"
    if not results_files(out_dir) and not any((out_dir / "bench").glob("*.json")):
        return f"{out_dir}: holds no boards (no results/*.jsonl), so there is nothing to check; {hint}"
    return None


def _why_stale(folder: Path, results: Path, evidence: Evidence | None = None) -> str | None:
    """Why the board of ``results`` in ``folder`` is stale (:func:`board_is_stale`), or None;
    ``evidence``: its published predictions when already open."""
    skipped: list[Skipped] = []
    rows = read_rows(results, skipped=skipped)
    evidence = evidence_of(folder, results.stem) if evidence is None else evidence
    try:
        return board_is_stale(rows, board_path(results, folder), source=results,
                              evidence=evidence,
                              extra=board_extra(results, folder, rows, evidence, skipped,
                                                report=quiet))
    except ValueError as exc:  # unreadable evidence: check_boards' verification names the unit
        return f"{board_path(results, folder)}: cannot be rendered to compare ({exc})"


def _check_jobs(out_dir: Path, boards: list[str] | None) -> list[tuple[Path, Path]]:
    """(folder, results file) of every board to check: the replicas' first when all."""
    folders = [(out_dir, _selected(out_dir, boards))]
    if boards is None:
        folders = [(f, results_files(f)) for f in replica_folders(out_dir)] + folders
    return [(folder, results) for folder, selected in folders for results in selected]


def _in_workers(fn: Callable, jobs: list[tuple[Path, Path]], workers: int) -> list:
    """``fn(folder, results)`` of every job, in job order; ``workers`` > 1: in that many fresh
    processes that load the plugins, the boards with the most predictions first (balance)."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(folder, results) for folder, results in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(range(len(jobs)), key=lambda i: -sum(  # the published predictions' bytes
        f.stat().st_size for f in (jobs[i][0] / PREDICTIONS / jobs[i][1].stem).rglob("*.npz")))
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        found = pool.map(_in_worker, [fn] * len(jobs), *zip(*[jobs[i] for i in order]))
        by_job = dict(zip(order, found))
    return [by_job[i] for i in range(len(jobs))]


def _in_worker(fn: Callable, folder: Path, results: Path):
    from i2m2bench.registry import load_plugins

    load_plugins()  # a fresh process: the layouts plugins register
    return fn(folder, results)


def stale_boards(out_dir: Path, boards: list[str] | None = None, workers: int = 1) -> list[str]:
    """Boards (all, or ``boards``) whose committed Markdown differs from a fresh render or is
    missing; for all boards, also the folder itself when it is missing or holds none
    (:func:`folder_problem`). Reads without the lock (files are replaced atomically), so a
    read-only checkout can be checked; ``workers`` processes give the same answer."""
    if boards is None:
        problem = folder_problem(out_dir)
        if problem:
            return [problem]
    found = _in_workers(_why_stale, _check_jobs(out_dir, boards), workers)
    return [why for why in found if why]


def _verify_one(folder: Path, results: Path, evidence: Evidence | None = None) -> Verification:
    """Every shown score of one board recomputed from its published predictions."""
    return verify_board(str(results), read_rows(results, report=quiet),
                        evidence_of(folder, results.stem) if evidence is None else evidence,
                        lambda key: str(prediction_path(folder, results.stem, key)))


def _total(found: Iterable[tuple[Path, Verification]]) -> Verification:
    """The boards' verifications (results file, its :class:`Verification`) added up."""
    total = Verification()
    for results, v in found:
        total.verified += v.verified
        total.problems += v.problems
        if v.unverified:
            total.unverified_boards.append(str(results))
    return total


def _check_one(folder: Path, results: Path) -> tuple[str | None, Verification]:
    """One board of ``leaderboard --check``: why it is stale (or None) and its scores recomputed
    from its predictions, the predictions opened once for both."""
    evidence = evidence_of(folder, results.stem)
    return _why_stale(folder, results, evidence), _verify_one(folder, results, evidence)


def check_boards(out_dir: Path, boards: list[str] | None = None,
                 workers: int = 1) -> tuple[list[str], Verification]:
    """``leaderboard --check`` of the boards of ``out_dir`` (all, with the replica folders'; or
    ``boards``): what :func:`stale_boards` finds, and every shown score recomputed from the
    published predictions (:func:`~i2m2bench.reporting.verify.verify_board`; a board none of
    whose units has predictions is named in ``unverified_boards``). Each board is rendered and
    verified in one job, its predictions opened once; ``workers`` processes at once give the
    same answer in the same order."""
    if boards is None:
        problem = folder_problem(out_dir)
        if problem:
            return [problem], Verification()
    jobs = _check_jobs(out_dir, boards)
    found = _in_workers(_check_one, jobs, workers)
    return ([why for why, _ in found if why],
            _total((results, v) for (_, results), (_, v) in zip(jobs, found)))


def find_board(out_dir: Path, board: str | None = None) -> Path:
    """The results file of ``board`` in ``out_dir``; ``board`` may be omitted when the folder
    holds exactly one. The error lists the boards there."""
    names = board_names(out_dir)
    if board is None:
        if len(names) == 1:
            return results_files(out_dir)[0]
        if not names:
            raise FileNotFoundError(f"{Path(out_dir) / 'results'}: no results files (*.jsonl), so no boards")
        raise ValueError(f"{out_dir} holds {len(names)} boards; name one with --board: "
                         f"{', '.join(names)}")
    if board not in names:
        raise ValueError(f"{out_dir}: no board {board!r}; the boards there are: "
                         f"{', '.join(names) or '(none)'}")
    return Path(out_dir) / "results" / f"{board}.jsonl"


def compare_folders(first: Path, second: Path, board: str | None = None) -> BoardComparison:
    """One board of two leaderboard folders side by side (``python -m i2m2bench compare``):
    :func:`~i2m2bench.reporting.machines.compare_boards` of their rows and published
    predictions, read without a lock (read-only folders can be compared). ``board`` may be
    omitted when ``first`` holds exactly one; the error of a folder without it names the boards
    there."""
    for folder in (first, second):
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: no such leaderboard folder (expected a folder "
                                    "holding results/<board>.jsonl)")
    results = find_board(first, board)
    other = find_board(second, results.stem)
    sides = [Side(str(folder), read_rows(r), evidence_of(folder, r.stem))  # no lock: read-only
             for folder, r in ((first, results), (second, other))]
    for (folder, r), side in zip(((first, results), (second, other)), sides):
        found = verify_board(str(r), side.rows, side.evidence,
                             lambda key, f=folder, b=r.stem: str(prediction_path(f, b, key)))
        if found.problems:  # a comparison of numbers their own evidence contradicts means nothing
            more = f" (and {len(found.problems) - 1} more)" if len(found.problems) > 1 else ""
            raise ValueError(f"{found.problems[0]}{more}; `python -m i2m2bench leaderboard "
                             f"--check --leaderboard-dir {folder}` lists every one")
    return compare_boards(*sides)


def output_problem(output: Path, out_dir: Path) -> str | None:
    """Why an export may not be written to ``output`` (``leaderboard --output``), or None: it is
    a record of a leaderboard folder -- anything under ``out_dir``'s (or a replica's)
    ``results/`` or ``predictions/``, a ``results/*.jsonl`` or a published ``predictions/**.npz``
    of any folder -- which an export must never overwrite."""
    path = Path(output).resolve()
    root = Path(out_dir).resolve()
    inside = path.is_relative_to(root) and bool(
        {RESULTS, PREDICTIONS} & set(path.relative_to(root).parts[:-1]))
    record = (path.suffix == ".jsonl" and path.parent.name == RESULTS) or \
        (path.suffix == ".npz" and PREDICTIONS in path.parts[:-1])
    if inside or record:
        return (f"--output {output}: a record of a leaderboard folder (results/*.jsonl or "
                "predictions/), which an export never overwrites; name another file")
    return None


def export_board(out_dir: Path, board: str | None, fmt: str) -> str:
    """One board as CSV or JSON text (:func:`i2m2bench.reporting.board_table`), read without a
    lock (a read-only folder can be exported)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {sorted(EXPORT_FORMATS)}")
    results = find_board(out_dir, board)
    rows = read_rows(results)  # no lock (files are replaced atomically): a read-only folder works
    if not rows:
        raise ValueError(f"{results}: no result rows to export")
    return EXPORT_FORMATS[fmt](board_table(rows))


def summary_of(results_path: Path) -> str:
    """The console summary (:func:`i2m2bench.reporting.summary_table`) of one results file."""
    return summary_table(read_board_rows(Path(results_path)))
