"""The real-file fastMRI knee reader (:mod:`i2m2bench.data.fastmri.real`) on tiny fixtures written
with h5py in the two official layouts (raw fastMRI + fastMRI+, and I2M2's preprocessed per-slice
files): prepare -> cache -> load_cache end to end, the documented split recipe, labels,
magnitude/phase, the undersampled shift set, every bad input, and cache verification."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")

from sklearn.model_selection import train_test_split  # noqa: E402

from i2m2bench.data.fastmri import real as fr  # noqa: E402
from i2m2bench.data.fastmri import real_prepare  # noqa: E402
from i2m2bench.data.base import DataError  # noqa: E402
from i2m2bench.data.common.disk import DiskSplit  # noqa: E402
from i2m2bench.data.fastmri.processing import magnitude_phase, parse_labels  # noqa: E402

W, CROP, ROWS = 40, (32, 32), 64
IDS = [f"file{1000001 + i}" for i in range(10)]
KNEE_HEADER = "file,slice,study_level,x,y,width,height,label"


def recipe(ids):
    """The documented split, computed here independently of the module."""
    train, rest = train_test_split(sorted(ids), test_size=0.3, random_state=0)
    test, val = train_test_split(rest, test_size=0.5, random_state=0)
    return {"train": train, "val": val, "test": test}


def kspace(rng, slices, rows, cols, dtype=np.complex64):
    k = (rng.standard_normal((slices, rows, cols)) + 1j * rng.standard_normal((slices, rows, cols)))
    return (k * 1e-4).astype(dtype)


def write_volume(path: Path, k, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        if k is not None:
            h5.create_dataset("kspace", data=k)
        h5.create_dataset("reconstruction_esc", data=np.zeros((len(k) if k is not None else 1,
                                                                 CROP[0], CROP[1]), np.float32))
        h5.create_dataset("ismrmrd_header", data=b"<ismrmrdHeader/>")
        h5.attrs["acquisition"] = "CORPD_FBK"
        h5.attrs["max"] = 1e-3
        for key, value in extra.items():
            h5.create_dataset(key, data=value)


def make_raw(root: Path, seed: int = 0):
    """F = root/fastmri in the raw layout: 10 reviewed ids, 2 absent from disk and 1 too wide
    (all three train volumes of the recipe, so that every split keeps volumes), 2-4 slices each;
    knee.csv with several labels on a slice, a study-level row, a row past a volume's last slice;
    knee_file_list.csv with a stray 'Knee data' line. Returns (F, info)."""
    rng = np.random.default_rng(seed)
    F = root / "fastmri"
    split = recipe(IDS)
    absent = set(sorted(split["train"])[:2])
    wide = sorted(split["train"])[2]
    kspaces = {}
    for i, vid in enumerate(IDS):
        if vid in absent:
            continue
        cols = 44 if vid == wide else 36 + i % 5
        k = kspace(rng, 2 + i % 3, ROWS, cols)
        kspaces[vid] = k
        folder = "singlecoil_train" if i % 2 else "singlecoil_val"
        write_volume(F / folder / f"{vid}.h5", k)
    present = sorted(v for v in kspaces if v != wide)
    a, b, c = present[0], present[1], present[2]
    rows = [
        f"{a},0,No,10,12,20,8,Meniscus Tear",
        f"{a},0,No,11,14,5,8,Joint Effusion ",
        f"{a},1,No,1,2,3,4,Ligament - ACL High Grade Sprain",
        f"{a},1,No,1,2,3,4,Meniscus Tear",
        f"{b},0,Yes,,,,,artifact",
        f"{c},1,No,3,3,3,3,Cartilage - Partial Thickness loss/defect",
        f"{c},1,No,3,3,3,3,Cartilage - Partial Thickness loss/defect",
        f"{c},9,No,3,3,3,3,Meniscus Tear",  # past the volume's last slice: reported, ignored
        f"{sorted(absent)[0]},0,No,1,1,1,1,Meniscus Tear",  # reviewed but not on disk
    ]
    (F / "fastmri_plus").mkdir(parents=True)
    (F / "fastmri_plus" / "knee.csv").write_text("\n".join([KNEE_HEADER, *rows]) + "\n")
    file_list = "\n".join(IDS + ["", "Knee data"]) + "\n"
    (F / "fastmri_plus" / "knee_file_list.csv").write_text(file_list)
    expected = {}
    for line in rows:
        vid, s, *_, label = line.split(",")
        expected.setdefault((vid, int(s)), []).append(label)
    return F, {"split": split, "absent": absent, "wide": wide, "kspace": kspaces,
               "labels": expected}


def make_official(root: Path, seed: int = 1):
    """F = root/fastmri in the official preprocessed layout: metadata_knee.csv (pandas-style,
    with its unnamed index column) and per-slice files, complex128 (zero-padded from 36 columns)
    and complex64 (native width); rows with data_split None are ignored."""
    rng = np.random.default_rng(seed)
    F = root / "fastmri"
    knee = F / "knee"
    vols = {"file2000001": "train_class", "file2000002": "train_class", "file2000003": "val_class",
            "file2000004": "test_class", "file2000005": "test_class", "file2000006": ""}
    labels_of = {("file2000001", 0): "['Meniscus Tear', 'Joint Effusion ']",
                 ("file2000004", 1): "['Ligament - ACL Low Grade sprain']",
                 ("file2000005", 0): "['Cartilage - Full Thickness loss/defect', None]"}
    header = ",index,volume_id,slice_id,labels,shape,dataset,data_type,data_split,location"
    lines, kspaces, i = [header], {}, 0
    for v, (vid, split) in enumerate(vols.items()):
        for s in range(2 + v % 2):
            if split:
                if v % 2:
                    k = np.zeros((ROWS, W), np.complex128)
                    k[:, 2:38] = kspace(rng, 1, ROWS, 36, np.complex128)[0]
                else:
                    k = kspace(rng, 1, ROWS, W)[0]
                kspaces[vid, s] = k
                path = knee / vid / f"knee_singlecoil_{vid}_{s}.h5"
                path.parent.mkdir(parents=True, exist_ok=True)
                with h5py.File(path, "w") as h5:
                    h5.create_dataset("sc_kspace", data=k)
                    h5.create_dataset("recon_esc", data=np.zeros(CROP, np.float32))
                    h5.create_dataset("sampled_indices", data=np.array([2, 37]))
            labels = labels_of.get((vid, s), "[None]")
            lines.append(f'{i},knee_knee_singlecoil_{vid}_{s},{vid},{s},"{labels}","({ROWS}, {W})",'
                         f"knee,orignial,{split},../knee/{vid}/knee_singlecoil_{vid}_{s}.h5")
            i += 1
    (knee / "metadata_knee.csv").write_text("\n".join(lines) + "\n")
    (F / "singlecoil_train").mkdir()  # the official layout wins over the raw one
    return F, {"splits": vols, "kspace": kspaces, "labels": labels_of}


def quiet(lines):
    return lambda msg: lines.append(msg)


def check_images(stored_mag, stored_phase, k, mag_ref):
    mag, phase = magnitude_phase(k, W, CROP)
    np.testing.assert_allclose(stored_mag.astype(np.float32) * mag_ref, mag, rtol=1e-3,
                               atol=mag_ref * 2.0 ** -20)
    diff = np.angle(np.exp(1j * (stored_phase.astype(np.float64) - phase)))  # mod 2 pi
    assert np.abs(diff).max() < 2e-3


# ------------------------------------------------------------------------------ raw layout
@pytest.fixture(scope="module")
def raw_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    F, info = make_raw(root)
    log = []
    cache = fr.prepare(F, width=W, crop=CROP, log=quiet(log))
    return F, info, cache, log


def test_raw_end_to_end(raw_cache):
    F, info, cache, log = raw_cache
    assert cache == F / "cache" and not list(F.glob(".cache.*"))
    data = fr.load_cache(cache)
    m = data.manifest
    assert data.layout == "raw" and data.width == W and data.crop == CROP
    assert m["layout"] == "raw" and m["crop"] == list(CROP)

    # the split: by volume, the documented recipe, absent and dropped volumes left out
    split = info["split"]
    seen = []
    for s in fr.SPLITS:
        want = sorted(set(split[s]) - info["absent"] - {info["wide"]})
        assert m["splits"][s]["volumes"] == want
        assert sorted(m["splits"][s]["absent"]) == sorted(set(split[s]) & info["absent"])
        seen += want
        n = sum(len(info["kspace"][v]) for v in want)
        assert data.counts[s] == m["splits"][s]["count"] == n == len(data.splits[s])
        assert isinstance(data.splits[s], DiskSplit)
    assert len(seen) == len(set(seen)) == 7
    assert sum(data.counts.values()) == sum(len(info["kspace"][v]) for v in seen)
    dropped = [d for s in fr.SPLITS for d in m["splits"][s]["dropped"]]
    assert [d["volume"] for d in dropped] == [info["wide"]] and "44 columns" in dropped[0]["reason"]
    assert any(info["wide"] in line and "44 columns" in line for line in log)
    assert m["ignored_file_list_lines"] == [{"line": 12, "text": "Knee data"}]
    assert [r["slice"] for r in m["ignored_label_rows"]] == [9]
    assert m["deviations"] and "PYTHONHASHSEED" in m["deviations"][0]

    # magnitude scale: a power of two, recorded
    ref = data.mag_ref
    assert ref == m["mag_ref"] and ref > 0 and np.log2(ref) == round(np.log2(ref))

    # labels, magnitude and phase row by row
    for s in fr.SPLITS:
        sp = data.splits[s]
        mag, phase = sp.inputs["magnitude"].numpy(), sp.inputs["phase"].numpy()
        assert mag.shape == phase.shape == (len(sp), 1, *CROP) and mag.dtype == np.float16
        assert sp.target.dtype == torch.float32 and tuple(sp.target.shape) == (len(sp), 4)
        rows = data.rows(s)
        for r, (vid, sl) in enumerate(rows):
            strings = info["labels"].get((vid, sl), [])
            assert sp.target[r].tolist() == parse_labels(strings).tolist()
        assert torch.allclose(sp.mean("magnitude"), torch.from_numpy(
            mag.astype(np.float64).mean(0)).to(sp.mean("magnitude").dtype))
        for vid in m["splits"][s]["volumes"]:
            idx = [r for r, (v, _) in enumerate(rows) if v == vid]
            check_images(mag[idx, 0], phase[idx, 0], info["kspace"][vid], ref)
    # the labels that were set at all (several on one slice; a study-level row)
    a = sorted(v for v in info["kspace"] if v != info["wide"])[0]
    assert parse_labels(info["labels"][a, 0]).tolist() == [1, 1, 0, 0]


def test_raw_undersampled_shift(raw_cache):
    F, info, cache, _ = raw_cache
    data = fr.load_cache(cache)
    shift, test = data.shifts[fr.SHIFT], data.splits["test"]
    assert len(shift) == len(test) and torch.equal(shift.target, test.target)
    full, under = test.inputs["magnitude"].numpy(), shift.inputs["magnitude"].numpy()
    assert not np.array_equal(full, under)
    # reproduce: mask over all acquired columns, before padding, rng [seed, volume index, slice]
    rows = data.rows("test")
    vols = data.manifest["splits"]["test"]["volumes"]
    for r, (vid, sl) in enumerate(rows):
        k = info["kspace"][vid][sl]
        ku = fr.undersample(k, np.random.default_rng([0, vols.index(vid), sl]))
        assert 0 < np.count_nonzero(np.any(ku != 0, axis=0)) < k.shape[1]
        check_images(under[r:r + 1, 0], shift.inputs["phase"].numpy()[r:r + 1, 0], ku[None],
                     data.mag_ref)


def test_raw_manifest_files_and_replacement(raw_cache, tmp_path):
    F, info, cache, _ = raw_cache
    m = json.loads((cache / "manifest.json").read_text())
    assert set(m["files"]) == {f"{s}_{k}.npy" for s in fr.SPLITS for k in
                               ("magnitude", "phase", "labels")} | {
        "test_undersampled4x_magnitude.npy", "test_undersampled4x_phase.npy"}
    for name, e in m["files"].items():
        arr = np.load(cache / name, mmap_mode="r")
        assert list(arr.shape) == e["shape"] and arr.dtype.str == e["dtype"]
        assert os.path.getsize(cache / name) == e["bytes"] and len(e["sha256"]) == 64
        assert arr.flags.c_contiguous
    assert fr.load_cache(cache, verify="full").counts == {s: m["splits"][s]["count"]
                                                          for s in fr.SPLITS}

    # a second prepare into an existing cache replaces it; an interrupted one leaves it intact
    root = tmp_path / "again"
    F2, _ = make_raw(root, seed=3)
    out = fr.prepare(F2, cache=tmp_path / "c", width=W, crop=CROP, log=lambda _: None)
    first = (out / "manifest.json").read_text()
    print_a = fr.load_cache(out).fingerprint
    fr.prepare(F2, cache=out, width=W, crop=CROP, log=lambda _: None)
    assert fr.load_cache(out, verify="full").fingerprint == print_a  # same data, same fingerprint
    assert fr.load_cache(cache).fingerprint != print_a
    assert fr.default_cache(F) == cache
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "c"]

    calls = []

    def boom(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = real_prepare._write_split
    real_prepare._write_split = boom
    try:
        with pytest.raises(KeyboardInterrupt):
            fr.prepare(F2, cache=out, width=W, crop=CROP, log=lambda _: None, seed=5)
        with pytest.raises(KeyboardInterrupt):
            calls.clear()
            fr.prepare(F2, cache=tmp_path / "new", width=W, crop=CROP, log=lambda _: None)
    finally:
        real_prepare._write_split = real
    assert (out / "manifest.json").read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "c"]  # no half cache, no temp
    fr.load_cache(out, verify="full")


# ------------------------------------------------------------------------------ official layout
def test_official_end_to_end(tmp_path):
    F, info = make_official(tmp_path)
    log = []
    data = fr.load_cache(fr.prepare(F, width=W, crop=CROP, log=quiet(log)))
    m = data.manifest
    assert data.layout == "official" and m["ignored_rows"] == 3
    want = {"train": ["file2000001", "file2000002"], "val": ["file2000003"],
            "test": ["file2000004", "file2000005"]}
    for s in fr.SPLITS:
        assert m["splits"][s]["volumes"] == want[s]
        rows = data.rows(s)
        assert rows == sorted(k for k in info["kspace"] if k[0] in want[s])
        sp = data.splits[s]
        mag, phase = sp.inputs["magnitude"].numpy(), sp.inputs["phase"].numpy()
        for r, key in enumerate(rows):
            text = info["labels"].get(key, "[None]")
            strings = ["None" if x is None else x for x in eval(text)]  # fixture text, trusted
            assert sp.target[r].tolist() == parse_labels(strings).tolist()
            check_images(mag[r:r + 1, 0], phase[r:r + 1, 0], info["kspace"][key][None],
                         data.mag_ref)
    assert data.splits["train"].target[0].tolist() == [1, 1, 0, 0]
    assert {str(info["kspace"][k].dtype) for k in info["kspace"]} == {"complex64", "complex128"}
    # undersampling of a zero-padded slice covers its non-zero column span only
    under = data.shifts[fr.SHIFT].inputs["magnitude"].numpy()
    for r, (vid, sl) in enumerate(data.rows("test")):
        k = info["kspace"][vid, sl]
        span = fr.nonzero_span(k)
        assert span == ((2, 38) if k.dtype == np.complex128 else (0, W))
        ku = fr.undersample(k, np.random.default_rng([0, want["test"].index(vid), sl]), span)
        mag_u, _ = magnitude_phase(ku[None], W, CROP)
        np.testing.assert_allclose(under[r, 0].astype(np.float32) * data.mag_ref, mag_u[0],
                                   rtol=1e-3, atol=data.mag_ref * 2.0 ** -20)
    assert not np.array_equal(under, data.splits["test"].inputs["magnitude"].numpy())


# ------------------------------------------------------------------------------ bad input
def prep(F):
    return fr.prepare(F, width=W, crop=CROP, log=lambda _: None)


def raises(F, *fragments):
    with pytest.raises(DataError) as err:
        prep(F)
    msg = str(err.value)
    assert "\n" not in msg
    for f in fragments:
        assert str(f) in msg, msg
    return msg


def a_volume(F):
    return sorted((F / "singlecoil_train").glob("*.h5"))[0]


@pytest.mark.parametrize("case", ["no_kspace", "real", "rank", "rows", "truncated", "garbage"])
def test_bad_volume(tmp_path, case):
    F, _ = make_raw(tmp_path)
    path = a_volume(F)
    k = kspace(np.random.default_rng(0), 2, ROWS, 36)
    if case == "no_kspace":
        path.unlink()
        write_volume(path, None)
        raises(F, path, "no dataset 'kspace'", "reconstruction_esc")
    elif case == "real":
        path.unlink()
        write_volume(path, k.real.copy())
        raises(F, path, "not complex")
    elif case == "rank":
        path.unlink()
        write_volume(path, k[0])
        raises(F, path, "2 axes")
    elif case == "rows":
        path.unlink()
        write_volume(path, k[:, :20])
        raises(F, path, "20 rows", "crop height 32")
    elif case == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        raises(F, path, "HDF5")
    else:
        path.write_bytes(b"not an hdf5 file at all" * 10)
        raises(F, path, "cannot read it as an HDF5 file")


def test_corrupt_data_region(tmp_path):
    """A file whose metadata read but whose data do not (a corrupt compressed chunk): the write
    pass names it."""
    F, _ = make_raw(tmp_path)
    path = a_volume(F)
    path.unlink()
    with h5py.File(path, "w") as h5:
        h5.create_dataset("kspace", data=kspace(np.random.default_rng(0), 3, ROWS, 36),
                          chunks=(1, ROWS, 36), compression="gzip")
    with h5py.File(path, "r") as h5:
        info = h5["kspace"].id.get_chunk_info(1)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    raises(F, path, "cannot read dataset 'kspace'", "truncated or corrupt")


def edit(path: Path, old: str, new: str):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_bad_knee_csv(tmp_path):
    F, info = make_raw(tmp_path)
    csv_path = F / "fastmri_plus" / "knee.csv"
    good = csv_path.read_text()
    edit(csv_path, KNEE_HEADER, "file,slice_no,study_level,x,y,width,height,label")
    raises(F, csv_path, "line 1", "slice", "file,slice,study_level")
    csv_path.write_text(good)
    lines = good.splitlines()
    vid = lines[1].split(",")[0]
    csv_path.write_text("\n".join(lines[:3] + [f"{vid},two,No,1,1,1,1,Meniscus Tear"]) + "\n")
    raises(F, csv_path, "line 4", "'two'")
    csv_path.write_text("\n".join(lines[:2] + [f"{vid},1,No,1,1,1,1,"]) + "\n")
    raises(F, csv_path, "line 3", "empty label")
    csv_path.write_text("\n".join(lines[:2] + ["file9999999,0,No,1,1,1,1,Meniscus Tear"]) + "\n")
    raises(F, csv_path, "line 3", "unknown volume 'file9999999'", "knee_file_list.csv")
    csv_path.unlink()
    raises(F, csv_path, "not found")


def test_bad_official_layout(tmp_path):
    F, info = make_official(tmp_path)
    meta = F / "knee" / "metadata_knee.csv"
    good = meta.read_text()
    lines = good.splitlines()
    meta.write_text(good.replace(",data_split,", ",split,", 1))
    raises(F, meta, "line 1", "data_split")
    meta.write_text(good.replace("\"['Meniscus Tear', 'Joint Effusion ']\"",
                                 "\"__import__('os').system('true')\"", 1))
    raises(F, meta, "line 2", "not a list literal")
    meta.write_text(good.replace("\"['Ligament - ACL Low Grade sprain']\"", "\"[1, 2]\"", 1))
    raises(F, meta, "not a list literal", "[1, 2]")
    # an unknown data_split is ignored: its slices need no files
    meta.write_text(good + lines[-1].replace(",,", ",holdout_class,").replace("file2000006",
                                                                             "file2000099") + "\n")
    data = fr.load_cache(prep(F))
    assert data.manifest["ignored_rows"] == 4
    # a slice file without sc_kspace, a missing slice file, one too wide
    meta.write_text(good)
    path = F / "knee" / "file2000002" / "knee_singlecoil_file2000002_1.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("recon_esc", data=np.zeros(CROP, np.float32))
    raises(F, path, "no dataset 'sc_kspace'")
    path.unlink()
    raises(F, path, "not found", "line 5")
    with h5py.File(path, "w") as h5:
        h5.create_dataset("sc_kspace", data=np.zeros((ROWS, W + 4), np.complex64))
    raises(F, path, "44 columns")


def test_neither_layout(tmp_path):
    F = tmp_path / "fastmri"
    F.mkdir()
    msg = raises(F, "metadata_knee.csv", "singlecoil_train", "singlecoil_val", "knee.csv",
                 "knee_file_list.csv")
    assert msg.startswith(str(F))
    raises(tmp_path / "nothere", "nothere", "not found")


def test_raw_missing_label_files(tmp_path):
    F, _ = make_raw(tmp_path)
    (F / "fastmri_plus" / "knee_file_list.csv").unlink()
    raises(F, F / "fastmri_plus" / "knee_file_list.csv", "not found")


# ------------------------------------------------------------------------------ the cache
def test_cache_changes_are_caught(tmp_path, monkeypatch):
    F, _ = make_raw(tmp_path)
    cache = prep(F)
    name = "train_magnitude.npy"
    path = cache / name
    entry = json.loads((cache / "manifest.json").read_text())["files"][name]
    # the first data bytes: inside the probe
    original = path.read_bytes()
    with open(path, "r+b") as fh:
        fh.seek(entry["offset"])
        fh.write(b"\x00\x7c" * 4)  # float16 +inf
    for verify in ("probe", "full"):
        with pytest.raises(DataError, match="no longer matches its manifest") as err:
            fr.load_cache(cache, verify=verify)
        assert str(path) in str(err.value) and "prepare fastmri" in str(err.value)
    fr.load_cache(cache, verify="none")  # sizes, shapes and dtypes only
    path.write_bytes(original)
    fr.load_cache(cache, verify="full")
    path.write_bytes(original[:-2])
    with pytest.raises(DataError, match="bytes, the manifest records"):
        fr.load_cache(cache, verify="none")

    # a change outside the probe's blocks: only the full hash sees it
    monkeypatch.setattr(real_prepare, "PROBE_BLOCK_BYTES", 64)
    cache = fr.prepare(F, cache=tmp_path / "small_probe", width=W, crop=CROP, log=lambda _: None)
    m = json.loads((cache / "manifest.json").read_text())
    assert m["probe"] == {"blocks": 16, "block_bytes": 64}
    path, entry = cache / name, m["files"][name]
    gap = (entry["bytes"] - 64) // 15
    assert gap > 256
    with open(path, "r+b") as fh:
        fh.seek(gap // 2 + 64)
        fh.write(b"\x00\x7c")
    fr.load_cache(cache, verify="probe")
    with pytest.raises(DataError, match="sha256 differs"):
        fr.load_cache(cache, verify="full")


def test_missing_or_bad_manifest(tmp_path):
    F, _ = make_raw(tmp_path)
    cache = prep(F)
    text = (cache / "manifest.json").read_text()
    (cache / "manifest.json").unlink()
    with pytest.raises(DataError, match="prepare fastmri") as err:
        fr.load_cache(cache)
    assert "manifest.json" in str(err.value)
    (cache / "manifest.json").write_text(text[:100])
    with pytest.raises(DataError, match="prepare fastmri"):
        fr.load_cache(cache)
    (cache / "manifest.json").write_text(text)
    (cache / "val_phase.npy").unlink()
    with pytest.raises(DataError, match="val_phase.npy: not found; the cache no longer matches"):
        fr.load_cache(cache)
    with pytest.raises(DataError, match="prepare fastmri"):
        fr.load_cache(tmp_path / "nocache")


def test_split_volumes_is_the_recipe():
    assert fr.split_volumes(reversed(IDS)) == recipe(IDS)
    with pytest.raises(ValueError):
        fr.split_volumes(IDS[:2])
