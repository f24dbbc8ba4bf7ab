"""Synthetic files in each dataset's official format at the real dataset's size, for the
full-scale rehearsal (``benchmarks/test_real_scale.py``): what ``prepare`` and ``run`` face when
a researcher brings the official downloads. Random content (memory, time and bytes are what is
measured, not accuracy); the files are written as the official tools leave them.

    python scripts/make_full_scale.py DATA_ROOT [--only avmnist,mimic,...] [--scale 0.01]
                                      [--fastmri-gib 10]

Sizes (``--scale`` multiplies every count; 1 = the real size):

* **AV-MNIST**: 60,000 + 10,000 rows in MultiBench's folder as unzipped (``avmnist/image/``,
  ``avmnist/audio/``, ``{train,test}_labels.npy``; images (N, 784), spectrograms (N, 112, 112),
  float32 as MultiBench ships them; the suite's split 55,000 / 5,000 / 10,000,
  ``i2m2bench/data/avmnist/real.py``).
* **MIMIC-III**: 36,212 stays in MultiBench's ``mimic/im.pk`` (a pickled dict of float64 /
  int64 arrays; keys and shapes in ``i2m2bench/data/mimic/real.py``).
* **FastMRI**: single-coil knee volumes of 35 slices of (640, 368..372) complex64 k-space in
  ``fastmri/singlecoil_{train,val}/`` (the tarballs' folders) with fastMRI+ ``knee.csv`` and
  ``knee_file_list.csv``, about ``--fastmri-gib`` GiB of volumes (default 10). The full training
  set (973 volumes, 34,742 slices; val 199 volumes, 7,135 slices: Zbontar et al. 2018)
  is about 74 GiB; the rehearsal extrapolates linearly from the part written, and says so.
  ``--scale`` does not apply (``--fastmri-gib`` sets the size).
* **VQA-VS**: ``vqa_vs/Training``, ``Val``, ``IID-Test`` (question and answer JSON lists in VQA
  v2's format, 10 answers each) and the nine ``OOD-Test/<S>`` question files; 461,000 training
  questions (the size ``i2m2bench/data/vqa_vs/real.py`` states), 32,723 validation questions (the
  real ``Val-Ques.json``), and the rest of VQA v2's 658,111 train + val questions (Goyal et al.
  2017), 164,388, as IID test (VQA-VS re-splits VQA v2's train and val, PhoebusSi/VQA-VS
  ``README.md``: 19-20); answers drawn from 4,000 strings with a Zipf law, so about 3,000 pass
  the ≥ 9 rule; COCO 2014's 82,783 + 40,504 images (``coco/train2014``, ``coco/val2014``, the
  zips' folders), each a 24 x 30 JPEG.
* **NLVR2**: ``nlvr2/data/{train,dev,test1}.json`` (JSON Lines, NLVR2's fields) with 86,373 /
  6,982 / 6,967 examples (Suhr et al. 2019: train, dev, test-P), four image pairs per sentence,
  and each example's two images ``<id>-img{0,1}.png`` (24 x 30; every other one JPEG bytes under the .png
  name, as in NLVR2) in ``nlvr2/images/train/<directory>/`` and ``nlvr2/images/{dev,test1}/``.

For the vision-language datasets ``--backbone DIR`` also writes the tiny random FLAVA model the
tests use (``tests/vl_fixtures.py``: no weights exist offline) to ``DIR``.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))
sys.path.insert(0, str(HERE.parent / "tests"))
from bench_disk_dataset import NpyWriter  # noqa: E402

DATASETS = ("avmnist", "mimic", "fastmri", "vqa_vs", "nlvr2")
AVMNIST_ROWS = (60_000, 10_000)  # MultiBench's train (train + val) and test files
MIMIC_STAYS = 36_212
FASTMRI_SLICES, FASTMRI_ROWS = 35, 640
FASTMRI_FULL = {"train": (973, 34_742), "val": (199, 7_135)}  # volumes, slices
VQA_VS = {"Training": 461_000, "Val": 32_723, "IID-Test": 164_388}
COCO_IMAGES = {"train2014": 82_783, "val2014": 40_504}
OOD_SETS = ("QT", "KW", "KWP", "QT+KW", "KO", "KOP", "QT+KO", "KW+KO", "QT+KW+KO")
NLVR2 = {"train": 86_373, "dev": 6_982, "test1": 6_967}
PAIRS_PER_SENTENCE = 4


def _count(n: int, scale: float, least: int = 1) -> int:
    return max(least, round(n * scale))


def _image_bytes(seed: int, fmt: str) -> bytes:
    """A 24 x 30 RGB image's file bytes (random pixels)."""
    import io

    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


class _Images:
    """A handful of encoded images reused round-robin: writing 300k distinct images would time
    the encoder, not the layout (the files still differ in name and place)."""

    def __init__(self, fmt: str, k: int = 64) -> None:
        self.blobs = [_image_bytes(i, fmt) for i in range(k)]

    def write(self, path: Path, i: int) -> int:
        data = self.blobs[i % len(self.blobs)]
        path.write_bytes(data)
        return len(data)


def avmnist(root: Path, scale: float = 1.0, seed: int = 0) -> dict:
    d = root / "avmnist"
    (d / "image").mkdir(parents=True, exist_ok=True)
    (d / "audio").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = [_count(n, scale, 20) for n in AVMNIST_ROWS]
    total = 0
    for split, n in zip(("train", "test"), rows):
        for m, shape in (("image", (784,)), ("audio", (112, 112))):
            path = d / m / f"{split}_data.npy"
            w = NpyWriter(path, (n, *shape), np.float32)
            for s in range(0, n, 2048):
                w.write(rng.integers(0, 256, (min(n, s + 2048) - s, *shape), dtype=np.uint8))
            w.close()
            total += path.stat().st_size
        np.save(d / f"{split}_labels.npy", rng.integers(0, 10, n).astype(np.int64))
    n_test = rows[1]
    n_val = min(5_000, max(1, round(rows[0] / 12)))
    return {"rows": sum(rows), "bytes": total,
            "split_sizes": (rows[0] - n_val, n_val, n_test)}


def mimic(root: Path, scale: float = 1.0, seed: int = 0) -> dict:
    n = _count(MIMIC_STAYS, scale, 40)
    rng = np.random.default_rng(seed)
    arrays = {"ep_tdata": rng.normal(5, 2, (n, 24, 12)),
              "adm_features_all": rng.normal(60, 10, (n, 5)),
              "adm_labels_all": (rng.random((n, 6)) < 0.2).astype(np.float64),
              "y_icd9": (rng.random((n, 20)) < 0.3).astype(np.int64)}
    (root / "mimic").mkdir(parents=True, exist_ok=True)
    path = root / "mimic" / "im.pk"
    with open(path, "wb") as fh:
        pickle.dump(arrays, fh, protocol=4)
    return {"rows": n, "bytes": path.stat().st_size}


def fastmri(root: Path, gib: float = 10.0, seed: int = 0, slices: int = FASTMRI_SLICES) -> dict:
    import h5py

    folder = root / "fastmri"
    per_volume = slices * FASTMRI_ROWS * 370 * 8
    volumes = max(4, round(gib * 2**30 / per_volume))
    n_val = max(2, round(volumes * 199 / (973 + 199)))
    rng = np.random.default_rng(seed)
    ids = [f"file{1000001 + i}" for i in range(volumes)]
    total = 0
    for i, vid in enumerate(ids):
        cols = 368 + 2 * (i % 3)
        sub = folder / ("singlecoil_val" if i < n_val else "singlecoil_train")
        sub.mkdir(parents=True, exist_ok=True)
        with h5py.File(sub / f"{vid}.h5", "w") as h5:
            ds = h5.create_dataset("kspace", (slices, FASTMRI_ROWS, cols), dtype=np.complex64)
            noise = (rng.standard_normal((FASTMRI_ROWS, cols), dtype=np.float32)
                     + 1j * rng.standard_normal((FASTMRI_ROWS, cols), dtype=np.float32)) * 1e-4
            for s in range(slices):  # one slice at a time: the writer stays small
                ds[s] = np.roll(noise, s, axis=1).astype(np.complex64)
            h5.attrs["acquisition"] = "CORPD_FBK"
        total += (sub / f"{vid}.h5").stat().st_size
    plus = folder / "fastmri_plus"
    plus.mkdir(parents=True, exist_ok=True)
    labels = ["Meniscus Tear", "Ligament - ACL High Grade Sprain",
              "Cartilage - Partial Thickness loss/defect", "Joint Effusion "]
    rows = ["file,slice,study_level,x,y,width,height,label"]
    for i, vid in enumerate(ids):
        for s in range(0, slices, 2):
            rows.append(f"{vid},{s},No,1,1,1,1,{labels[(i + s) % len(labels)]}")
    (plus / "knee.csv").write_text("\n".join(rows) + "\n")
    (plus / "knee_file_list.csv").write_text("\n".join(ids) + "\n")
    full = sum(v for v, _ in FASTMRI_FULL.values())
    return {"rows": volumes * slices, "volumes": volumes, "bytes": total,
            "full_volumes": full, "full_slices": sum(s for _, s in FASTMRI_FULL.values()),
            "full_bytes_estimate": round(total / (volumes * slices) * sum(s for _, s in FASTMRI_FULL.values()))}


def _answers(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` answer indices from a Zipf law over 4,000 strings."""
    ranks = np.arange(1, 4001)
    p = 1 / ranks ** 1.1
    return rng.choice(4000, size=n, p=p / p.sum())


def _write_json_list(path: Path, rows) -> int:
    """A JSON list written row by row (the writer never holds the whole list)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fh.write("[")
        for k, row in enumerate(rows):
            fh.write(("," if k else "") + json.dumps(row))
        fh.write("]")
    return path.stat().st_size


def vqa_vs(root: Path, scale: float = 1.0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    images = {d: _count(n, scale, 4) for d, n in COCO_IMAGES.items()}
    img_ids = [(d, 1 + 2 * i + (d == "val2014")) for d, n in images.items() for i in range(n)]
    jpeg = _Images("JPEG")
    total = 0
    for k, (d, image_id) in enumerate(img_ids):
        path = root / "coco" / d / f"COCO_{d[:-4]}2014_{image_id:012d}.jpg"
        if k == 0 or img_ids[k - 1][0] != d:
            path.parent.mkdir(parents=True, exist_ok=True)
        total += jpeg.write(path, k)
    base = root / "vqa_vs"
    qid, test_qs, questions = 1_000_000, [], 0
    for stem, n in VQA_VS.items():
        n = _count(n, scale, 30)
        picks = rng.integers(0, len(img_ids), n)
        mc = _answers(rng, n)
        first = qid

        def ques(first=first, picks=picks):
            for j in range(n):
                yield {"image_id": img_ids[picks[j]][1], "question": f"what is in picture {j % 97}",
                       "question_id": first + j}

        def ans(first=first, picks=picks, mc=mc):
            for j in range(n):
                a = f"answer{mc[j]}"
                yield {"question_type": "what is", "multiple_choice_answer": a,
                       "answers": [{"answer": a if r < 7 else f"answer{(mc[j] + r) % 4000}",
                                    "answer_confidence": "yes", "answer_id": r + 1}
                                   for r in range(10)],
                       "image_id": img_ids[picks[j]][1], "answer_type": "other",
                       "question_id": first + j}

        total += _write_json_list(base / stem / f"{stem}-Ques.json", ques())
        total += _write_json_list(base / stem / f"{stem}-Ans.json", ans())
        if stem == "IID-Test":
            test_qs = list(ques())
        qid += n
        questions += n
    for j, s in enumerate(OOD_SETS):  # subsets of IID-Test by question id
        sub = [q for i, q in enumerate(test_qs) if (i * 7 + j) % 5 < 2]
        total += _write_json_list(base / "OOD-Test" / s / f"OOD-Test-{s}-Ques.json", sub)
    return {"rows": questions, "images": len(img_ids), "bytes": total}


def nlvr2(root: Path, scale: float = 1.0, seed: int = 0) -> dict:
    base = root / "nlvr2"
    (base / "data").mkdir(parents=True, exist_ok=True)
    png, jpeg = _Images("PNG"), _Images("JPEG")
    total, examples, images = 0, 0, 0
    for split, n in NLVR2.items():
        n = _count(n, scale, 2 * PAIRS_PER_SENTENCE)
        made: set[Path] = set()
        with open(base / "data" / f"{split}.json", "w") as fh:
            for e in range(n):
                s, pair = divmod(e, PAIRS_PER_SENTENCE)
                ident = f"{split}-{s}-{pair}-0"
                row = {"sentence": f"there are {s % 5} dogs in the left image",
                       "left_url": "http://example.invalid/l.jpg",
                       "right_url": "http://example.invalid/r.jpg",
                       "label": "True" if (s + pair) % 2 else "False", "identifier": ident,
                       "writer": "w1", "synset": "dog", "query": "dogs 1"}
                where = base / "images" / split
                if split == "train":
                    row["directory"] = s % 100
                    where = where / str(s % 100)
                if where not in made:
                    where.mkdir(parents=True, exist_ok=True)
                    made.add(where)
                for k in (0, 1):
                    blob = jpeg if (s + k) % 2 else png
                    total += blob.write(where / f"{split}-{s}-{pair}-img{k}.png", e * 2 + k)
                    images += 1
                fh.write(json.dumps(row) + "\n")
        total += (base / "data" / f"{split}.json").stat().st_size
        examples += n
    return {"rows": examples, "images": images, "bytes": total}


def write(name: str, root: Path, scale: float = 1.0, fastmri_gib: float = 10.0) -> dict:
    """Write dataset ``name`` under ``root``; what was written (rows, bytes, ...)."""
    if name == "fastmri":  # its size is --fastmri-gib, whatever the scale
        return fastmri(root, fastmri_gib)
    return {"avmnist": avmnist, "mimic": mimic, "vqa_vs": vqa_vs, "nlvr2": nlvr2}[name](root, scale)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="the data root to write into")
    ap.add_argument("--only", default=",".join(DATASETS), help="comma-separated datasets")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every count (1: real size)")
    ap.add_argument("--fastmri-gib", type=float, default=10.0, help="GiB of FastMRI volumes")
    ap.add_argument("--backbone", type=Path, help="also write the tiny random FLAVA here")
    args = ap.parse_args(argv)
    names = [n.strip().replace("-", "_") for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in DATASETS]
    if bad:
        ap.error(f"--only: unknown {bad}; choose from {', '.join(DATASETS)}")
    if args.backbone:
        from vl_fixtures import tiny_backbone
        tiny_backbone(args.backbone)
    for n in names:
        print(n, json.dumps(write(n, args.root, args.scale, args.fastmri_gib)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
