"""An allow-list unpickler for data files that are pickled NumPy arrays (MultiBench's ``im.pk``).

**Why.** Unpickling runs code: a pickle names globals (``module.name``) and calls them, so a
file can run ``os.system`` or ``eval`` the moment it is loaded (Python's ``pickle`` docs,
"Restricting Globals"). :func:`load` therefore resolves only the globals in :data:`ALLOWED`,
each mapped to its object through a fixed table built here (nothing is imported by name), and
refuses any other in ``find_class`` - before it can be called - with an
:class:`UnsafePickleError` naming the file and the global. There is no option to turn the check
off.

**Allowed**: NumPy array, dtype and scalar reconstruction under NumPy 2 (``numpy._core``) and
NumPy 1 (``numpy.core``) names, ``numpy.ndarray``, ``numpy.dtype``; ``_codecs.encode`` with the
``latin1`` codec only (protocols 0-2 store bytes through it); ``builtins`` ``set``,
``frozenset``, ``bytes``, ``bytearray`` and ``complex``; ``collections.OrderedDict``. Python 2 names (``__builtin__``, ``copy_reg``) are
mapped as the standard library maps them for protocols below 3. dicts, lists, tuples, str, int
and float need no global. Object-dtype arrays are refused after loading as well, since they
can carry arbitrary Python objects. A truncated or corrupt file is a :class:`DataError`.

**Alternative**: store the arrays as ``.npz`` (``np.savez``) and read them with
``np.load(path, allow_pickle=False)``, which never unpickles anything.
"""
from __future__ import annotations

import _codecs
import _compat_pickle
import builtins
import collections
import io
import os
import pickle
from typing import IO, Any

import numpy as np

from i2m2bench.data.base import DataError

try:  # NumPy 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]


class UnsafePickleError(DataError):
    """A pickle names a global outside :data:`ALLOWED`, or holds an object-dtype array."""


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocols 0-2 call it for bytes (``encode(text, 'latin1')``); any
    other codec is refused (no other module is reached through the codec registry)."""
    if encoding not in ("latin1", "latin-1") or errors != "strict":
        raise UnsafePickleError(f"refused _codecs.encode with codec {encoding!r}: only 'latin1' "
                                "(how pickles of protocols 0-2 store bytes) is allowed")
    return _codecs.encode(text, "latin1")


_TABLE: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1_encode,
                                      ("numpy", "ndarray"): np.ndarray,
                                      ("numpy", "dtype"): np.dtype,
                                      ("collections", "OrderedDict"): collections.OrderedDict}
for _core in ("numpy._core", "numpy.core"):
    _TABLE[(f"{_core}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _TABLE[(f"{_core}.multiarray", "scalar")] = _multiarray.scalar
    _TABLE[(f"{_core}.numeric", "_frombuffer")] = _numeric._frombuffer
for _name in ("set", "frozenset", "bytes", "bytearray", "complex"):
    _TABLE[("builtins", _name)] = getattr(builtins, _name)

#: The globals a pickle may name, as ``module.name`` (Python 2 spellings are mapped first).
ALLOWED: tuple[str, ...] = tuple(sorted(f"{m}.{n}" for m, n in _TABLE))

_SUMMARY = ("NumPy array/dtype/scalar reconstruction (numpy._core and numpy.core), numpy.ndarray, "
            "numpy.dtype, _codecs.encode, builtins set/frozenset/bytes/bytearray/complex, "
            "collections.OrderedDict")


def _is_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], source: str, proto: int) -> None:
        super().__init__(file, encoding="latin1")
        self._source, self._proto = source, proto

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if self._proto < 3:  # the standard library's mapping of Python 2 names
            if key in _compat_pickle.NAME_MAPPING:
                key = _compat_pickle.NAME_MAPPING[key]
            elif module in _compat_pickle.IMPORT_MAPPING:
                key = (_compat_pickle.IMPORT_MAPPING[module], name)
        if key in _TABLE:
            return _TABLE[key]
        if not (_is_name(str(module)) and _is_name(str(name))):
            raise DataError(f"{self._source}: not a readable pickle (it names the global "
                            f"{module!r} {name!r}, which is not a Python name)")
        shown = f"{module}.{name}"
        if module in ("posix", "nt"):
            shown += f" (os.{name})"
        elif key != (module, name):
            shown += f" ({key[0]}.{key[1]})"
        raise UnsafePickleError(
            f"{self._source}: refused to unpickle: it names the global {shown}, which is not "
            "allowed. This file may hold only NumPy arrays, dtypes, NumPy scalars and plain "
            "containers; nothing from it was run. Allowed globals (i2m2bench.data.common.safe_pickle."
            f"ALLOWED): {_SUMMARY}. Convert trusted data to .npz instead.")


def _check_no_objects(obj: object, source: str) -> None:
    """Refuse object-dtype arrays (and NumPy scalars) anywhere in dicts, lists, tuples, sets."""
    stack: list[tuple[object, str]] = [(obj, "")]
    seen: set[int] = set()
    while stack:
        item, where = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (np.ndarray, np.generic)) and item.dtype.hasobject:
            place = f"at {where}" if where else "as the top-level object"
            raise UnsafePickleError(
                f"{source}: refused: it holds an object-dtype array {place} (dtype "
                f"{item.dtype}); object arrays can carry arbitrary Python objects, and this file "
                "may hold only numeric, boolean or string NumPy arrays")
        if isinstance(item, dict):
            stack.extend((v, f"{where}[{k!r}]") for k, v in item.items())
            extra = getattr(item, "__dict__", None)  # attributes a BUILD opcode may have set
            if extra:
                stack.extend((v, f"{where}.{k}") for k, v in extra.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, (set, frozenset)):
            stack.extend((v, f"{where}{{{v!r}}}") for v in item)


def _load(file: IO[bytes], source: str, what: str) -> object:
    head = file.read(2)
    file.seek(0)
    proto = head[1] if len(head) == 2 and head[0] == 0x80 else 0
    try:
        obj = _Unpickler(file, source, proto).load()
    except UnsafePickleError as exc:
        if str(exc).startswith(f"{source}:"):
            raise
        raise UnsafePickleError(f"{source}: {exc}") from None
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, OverflowError, RecursionError) as exc:
        raise DataError(f"{source}: not a readable {what} (truncated or corrupt: "
                        f"{type(exc).__name__}: {exc})") from exc
    _check_no_objects(obj, source)
    return obj


def load(path: str | os.PathLike[str], *, what: str = "pickle") -> object:
    """Unpickle ``path`` through the allow-list (see the module docstring); ``what`` names the
    file's kind in errors. UnsafePickleError when it names anything else or holds object arrays;
    DataError when it cannot be read or is not a readable pickle."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from exc
    with f:
        return _load(f, os.fspath(path), what)


def loads(data: bytes, *, source: str = "<bytes>") -> object:
    """:func:`load` for bytes in memory; ``source`` names them in errors."""
    return _load(io.BytesIO(data), source, "pickle")
