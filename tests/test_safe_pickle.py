"""The allow-list unpickler (i2m2bench.data.common.safe_pickle): benign NumPy pickles of every protocol
load unchanged; hostile ones are refused, naming the file and the global, before they run."""
from __future__ import annotations

import builtins
import collections
import copyreg
import os
import pickle
import subprocess

import numpy as np
import pytest

from i2m2bench.data.common import safe_pickle as safe_pickle
from i2m2bench.data.base import DataError
from i2m2bench.data.common.safe_pickle import ALLOWED, UnsafePickleError

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
HOSTILE_PROTOCOLS = (0, 2, 4)


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"ep_tdata": rng.normal(size=(7, 24, 12)),
            "adm_features_all": rng.normal(size=(7, 5)).astype(np.float32),
            "adm_labels_all": rng.integers(0, 2, size=(7, 6)).astype(np.int64),
            "y_icd9": rng.integers(0, 2, size=(7, 20)).astype(bool),
            "empty": np.zeros((0, 3), dtype=np.int32),
            "fortran": np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)),
            "scalar0d": np.array(2.5)}


def _assert_same(got: object, want: object) -> None:
    assert type(got) is type(want)
    if isinstance(want, (np.ndarray, np.generic)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            _assert_same(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
    else:
        assert got == want


def _write(tmp_path, data: bytes, name: str = "im.pk"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------- benign
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_dict_of_arrays_round_trips(tmp_path, protocol):
    arrays = _arrays()
    path = _write(tmp_path, pickle.dumps(arrays, protocol=protocol))
    _assert_same(safe_pickle.load(path), arrays)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_scalars_and_containers_round_trip(protocol):
    obj = {"scalars": [np.float64(1.5), np.float32(-2.0), np.int64(7), np.int32(-3),
                       np.bool_(True), np.uint8(255)],
           "dtype": np.dtype("float32"),
           "nested": ([1, 2.5, "s", None, b"raw", b""], (np.zeros(3), {"x": np.ones(2)})),
           "sets": {1, 2, 3}, "frozen": frozenset({"a"}), "bytes": bytearray(b"ab"),
           "complex": 1 + 2j, "ordered": collections.OrderedDict(b=np.arange(3), a=1)}
    got = safe_pickle.loads(pickle.dumps(obj, protocol=protocol))
    _assert_same(got, obj)
    assert isinstance(got["ordered"], collections.OrderedDict)
    assert list(got["ordered"]) == ["b", "a"]


def test_protocol_2_with_fix_imports(tmp_path):
    obj = {"a": _arrays()["ep_tdata"], "s": {1, 2}, "b": b"\x00\xff"}
    data = pickle.dumps(obj, protocol=2, fix_imports=True)
    assert b"__builtin__" in data  # the Python 2 spelling that find_class must map
    _assert_same(safe_pickle.load(_write(tmp_path, data)), obj)


def test_hand_made_protocol_2_builtin_set():
    data = b"\x80\x02c__builtin__\nset\n]K\x01aK\x02a\x85R."
    assert safe_pickle.loads(data) == {1, 2}


def test_builtin_spelling_not_mapped_for_protocol_3():
    # The standard library maps Python 2 names only below protocol 3; so does the loader.
    with pytest.raises(UnsafePickleError, match=r"__builtin__\.set"):
        safe_pickle.loads(b"\x80\x03c__builtin__\nset\n]K\x01a\x85R.")


def test_numpy_1_names_load():
    arr = np.arange(12.0).reshape(3, 4)
    data = pickle.dumps({"a": arr, "s": np.int32(4)}, protocol=2).replace(b"numpy._core.",
                                                                        b"numpy.core.")
    assert b"numpy.core.multiarray\n_reconstruct" in data and b"numpy._core" not in data
    _assert_same(safe_pickle.loads(data), {"a": arr, "s": np.int32(4)})
    # numpy.core.numeric._frombuffer (NumPy 1's protocol-5 reconstruction), by hand
    args = pickle.dumps((arr.tobytes(), arr.dtype, arr.shape, "C"), protocol=2)
    data = b"\x80\x02cnumpy.core.numeric\n_frombuffer\n" + args[2:-1] + b"R."
    _assert_same(safe_pickle.loads(data), arr)


# ------------------------------------------------------------------------------------ hostile
class Custom:
    def __init__(self) -> None:
        self.x = 1


class Payload:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _hostile(sentinel):
    """(payload, global names the refusal must mention)"""
    return {
        "os.system": (Payload(os.system, f"touch {sentinel}"),
                      [f"{os.system.__module__}.system", "os.system"]),
        "eval": (Payload(builtins.eval, f"open({str(sentinel)!r}, 'w')"), ["builtins.eval"]),
        "Popen": (Payload(subprocess.Popen, ["touch", str(sentinel)]), ["subprocess.Popen"]),
        "reconstructor": (Payload(copyreg._reconstructor, Custom, object, None),
                          ["copyreg._reconstructor"]),
    }


def _assert_refused(path, names, sentinel) -> None:
    with pytest.raises(UnsafePickleError) as info:
        safe_pickle.load(path)
    msg = str(info.value)
    assert str(path) in msg
    for name in names:
        assert name in msg
    assert "nothing from it was run" in msg and "NumPy arrays" in msg
    assert not sentinel.exists()


@pytest.mark.parametrize("protocol", HOSTILE_PROTOCOLS)
@pytest.mark.parametrize("kind", ["os.system", "eval", "Popen", "reconstructor"])
def test_hostile_global_refused(tmp_path, kind, protocol):
    sentinel = tmp_path / "SENTINEL"
    payload, names = _hostile(sentinel)[kind]
    path = _write(tmp_path, pickle.dumps(payload, protocol=protocol))
    if protocol < 3 and kind in ("eval", "reconstructor"):  # written with Python 2 spellings
        raw = {"eval": "__builtin__.eval", "reconstructor": "copy_reg._reconstructor"}[kind]
        names = [raw, *names]
    _assert_refused(path, names, sentinel)


@pytest.mark.parametrize("protocol", (2, 4, 5))
def test_custom_class_refused(tmp_path, protocol):
    path = _write(tmp_path, pickle.dumps({"a": np.zeros(2), "c": Custom()}, protocol=protocol))
    _assert_refused(path, [f"{Custom.__module__}.{Custom.__qualname__}"], tmp_path / "none")


def test_custom_class_protocol_0_refused_at_reconstructor(tmp_path):
    path = _write(tmp_path, pickle.dumps(Custom(), protocol=0))
    _assert_refused(path, ["copy_reg._reconstructor", "copyreg._reconstructor"], tmp_path / "x")


@pytest.mark.parametrize("protocol", HOSTILE_PROTOCOLS)
def test_hostile_global_deep_in_benign_dict(tmp_path, protocol):
    sentinel = tmp_path / "SENTINEL"
    arrays = _arrays()
    deep = {"deep": _hostile(sentinel)["os.system"][0]}
    obj = {"ep_tdata": arrays["ep_tdata"], "adm_features_all": [arrays["adm_features_all"], deep],
           "y_icd9": arrays["y_icd9"]}
    path = _write(tmp_path, pickle.dumps(obj, protocol=protocol))
    _assert_refused(path, ["os.system"], sentinel)


@pytest.mark.parametrize("func", [os.system, builtins.exec, builtins.getattr, np.load])
def test_bare_reference_to_callable_refused(tmp_path, func):
    # Even naming the callable without calling it is refused.
    path = _write(tmp_path, pickle.dumps({"f": func}, protocol=4))
    _assert_refused(path, [f"{func.__module__}.{func.__name__}"], tmp_path / "none")


def test_object_array_refused_naming_key(tmp_path):
    obj = {"ep_tdata": np.array([1, "a"], dtype=object), "y": np.zeros(2)}
    for protocol in PROTOCOLS:
        path = _write(tmp_path, pickle.dumps(obj, protocol=protocol))
        with pytest.raises(UnsafePickleError, match=r"\['ep_tdata'\]") as info:
            safe_pickle.load(path)
        assert str(path) in str(info.value) and "object" in str(info.value)
    nested = {"x": [np.zeros(2), np.array([None], dtype=object)]}
    with pytest.raises(UnsafePickleError, match=r"\['x'\]\[1\]"):
        safe_pickle.loads(pickle.dumps(nested))
    with pytest.raises(UnsafePickleError, match="top-level"):
        safe_pickle.loads(pickle.dumps(np.zeros(2, dtype=[("a", "f4"), ("b", "O")])))


# ---------------------------------------------------------------------------------- unreadable
def test_truncated_pickle(tmp_path):
    data = pickle.dumps(_arrays(), protocol=4)
    path = _write(tmp_path, data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable") as info:
        safe_pickle.load(path, what="MIMIC-III pickle")
    assert not isinstance(info.value, UnsafePickleError)
    assert str(path) in str(info.value) and "MIMIC-III pickle" in str(info.value)


@pytest.mark.parametrize("text", ["hello, world\n", "colour,size\nred,1\n", ""])
def test_text_file(tmp_path, text):
    path = tmp_path / "im.pk"
    path.write_text(text)
    with pytest.raises(DataError, match="not a readable") as info:
        safe_pickle.load(path)
    assert not isinstance(info.value, UnsafePickleError)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="im.pk"):
        safe_pickle.load(tmp_path / "im.pk")


def test_allowed_list():
    for name in ("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
                 "numpy._core.multiarray.scalar", "numpy._core.numeric._frombuffer",
                 "numpy.ndarray", "numpy.dtype", "_codecs.encode"):
        assert name in ALLOWED
    for name in ("posix.system", "os.system", "nt.system", "subprocess.Popen", "builtins.eval",
                 "builtins.exec", "builtins.getattr", "copyreg._reconstructor", "numpy.load"):
        assert name not in ALLOWED
    assert not any(n.startswith(("os.", "subprocess.", "posix.", "nt.")) for n in ALLOWED)


def test_codecs_encode_only_latin1():
    # protocols 0-2 store bytes as _codecs.encode(text, 'latin1'); no other codec is reachable
    assert safe_pickle.loads(pickle.dumps(b"\x00\xffab", protocol=2)) == b"\x00\xffab"
    with pytest.raises(safe_pickle.UnsafePickleError, match="latin1"):
        safe_pickle.loads(b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x05\x00\x00\x00rot13\x86R.")
