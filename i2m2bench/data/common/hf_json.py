"""Reading annotation files (JSON lists and JSON Lines) with Hugging Face ``datasets``' ``json``
builder -- local files, offline, nothing cached outside a temporary folder -- and saying exactly
where a malformed file breaks.

``datasets`` reads large files fast (Arrow), but its errors do not say where a file is broken; so
when it fails, the file is parsed again with the standard library to find the line and column
(JSON) or the line (JSON Lines), and the DataError names the file and that position. Fields are
then checked row by row (:func:`require`), naming the file, the row (JSON Lines: the line) and the
field.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from i2m2bench.data.base import DataError, path_problem


def _position(path: Path, lines: bool) -> str:
    """Where the standard library's parser stops in ``path`` ('line L column C: why'), or ''."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if not lines:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return f"line {exc.lineno} column {exc.colno}: {exc.msg}"
        return ""
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError as exc:
                return f"line {number} column {exc.colno}: {exc.msg}"
    return ""


def read(path: str | os.PathLike, what: str, lines: bool = False) -> list[dict[str, Any]]:
    """The records of ``path``: a JSON list of objects (``lines=False``) or JSON Lines, read with
    ``datasets.load_dataset('json', ...)`` offline into memory; ``what`` names the file's role in
    errors. A missing file, malformed JSON (with its line and column) or a file that is not a
    list of objects is a DataError naming the file."""
    path = Path(path)
    problem = path_problem(path)
    if problem is not None:
        raise DataError(f"{path}: {problem} ({what})")
    if not lines:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096).lstrip()[:1]
        if head != "[":
            raise DataError(f"{path}: expected a JSON list of objects ({what}); the file starts "
                            f"with {head!r}")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # never reach the hub
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="i2m2bench-hf-") as cache:
        try:
            ds = datasets.load_dataset("json", data_files=str(path), split="train",
                                       cache_dir=cache, keep_in_memory=True)
        except Exception as exc:  # noqa: BLE001 - datasets wraps everything in its own errors
            where = _position(path, lines)  # the standard library says where it breaks
            if where:
                raise DataError(f"{path}: malformed JSON at {where} ({what})") from None
            cause = exc.__cause__ or exc
            raise DataError(f"{path}: not a readable list of JSON objects ({what}): "
                            f"{type(cause).__name__}: {cause}") from exc
        return ds.to_list()


def require(rows: list[dict], path: Path, fields: dict[str, Callable[[Any], bool] | type],
            what: str, first_line: int = 0) -> None:
    """Every row has every field of ``fields`` with an acceptable value (a type, or a
    predicate); else a DataError naming the file, the row (``first_line`` + index: JSON Lines
    lines are 1-based) and the field."""
    for i, row in enumerate(rows):
        for name, check in fields.items():
            value = row.get(name) if isinstance(row, dict) else None
            ok = isinstance(value, check) if isinstance(check, type) else check(value)
            if value is None or not ok:
                at = f"line {first_line + i}" if first_line else f"entry {i}"
                got = "missing" if value is None else f"{value!r}"
                raise DataError(f"{path}: {at}: field {name!r} is {got} ({what})")


__all__ = ["read", "require"]
