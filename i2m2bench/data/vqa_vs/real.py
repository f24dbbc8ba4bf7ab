"""VQA-VS's real files: reading and checking the JSON, the answer vocabulary and soft scores,
feature extraction (``prepare vqa-vs``) and loading the prepared features.

**Files** under ``<data root>/vqa_vs/`` (PhoebusSi/VQA-VS; layout of its ``Baseline_code`` and
``comput_score.py``)::

    Training/Training-Ques.json, Training/Training-Ans.json
    Val/Val-Ques.json, Val/Val-Ans.json
    IID-Test/IID-Test-Ques.json, IID-Test/IID-Test-Ans.json
    OOD-Test/<S>/OOD-Test-<S>-Ques.json   S in QT, KW, KWP, QT+KW, KO, KOP, QT+KO, KW+KO, QT+KW+KO

Question files: JSON lists of ``{image_id, question, question_id}``; answer files: JSON lists in
VQA v2's annotation format (``question_id``, ``answers``: 10 ``{answer, answer_confidence,
answer_id}``, ``multiple_choice_answer``, ``answer_type``, ``question_type``, ``image_id``). The
OOD sets are subsets of the IID test set, by question id. The folder may be named ``VQA-VS/``
(the official name, :data:`FOLDER_ALIASES`), and the IID test answers may come from the
repository's ``test_annotations.json`` instead (:data:`TEST_ANNOTATIONS`). Images: COCO
``train2014`` and ``val2014`` under ``<data root>/coco/``, ``coco/images/``, the data root or
the dataset folder (:func:`image_dirs`), ``COCO_<split>2014_<12-digit image id>.jpg``, looked up
by ``image_id`` in both.

**Answers** (:func:`normalize`, :func:`vocabulary`, :func:`soft_targets`): every answer string is
normalised the VQA way (lower case, punctuation, number words to digits, articles dropped); the
vocabulary is the normalised ``multiple_choice_answer`` of at least :data:`MIN_COUNT` (9) training
questions (the official writer's threshold; 3,129 answers on VQA v2); a question's target is, per
answer, ``min(1, 0.3 x #annotators)`` over its 10 normalised answers (0 / 0.3 / 0.6 / 0.9 / 1,
the official I2M2 writer's table).

**Prepared** under ``<data root>/vqa_vs/features/`` by ``python -m i2m2bench prepare vqa-vs
--backbone DIR`` (:func:`prepare`): the feature layout of :mod:`i2m2bench.data.common.vl_features` for
``train``, ``val``, ``test`` (IID) and each OOD set (its rows copied from the IID test features,
never extracted twice), plus ``targets.npy`` (float16 soft scores) per split and
``answers.json`` (the vocabulary), all in the manifest.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from i2m2bench.data.common import chain, hf_json
from i2m2bench.data.base import DataError, dataset_folder, path_problem
from i2m2bench.data.vqa_vs.processing import OOD_SETS, task_spec
from i2m2bench.types import Task

SPLITS = {"train": "Training", "val": "Val", "test": "IID-Test"}
MIN_COUNT = 9
FEATURES = "features"
PREPARE = "run `python -m i2m2bench prepare vqa-vs --backbone DIR --data-root DIR`"
HINT = ("VQA-VS's JSON files under vqa_vs/ (Training/, Val/, IID-Test/, OOD-Test/<S>/) and COCO "
        "train2014/val2014 images under coco/ (docs/datasets/vqa_vs.md); then `python -m i2m2bench prepare "
        "vqa-vs --backbone DIR --data-root DIR`")

_PUNCT = re.compile(r"(?!<=\d)(\.)(?!\d)")
_STRIP = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$|~:]")  # VQA eval's punctuation
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
            "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}


def normalize(answer: str) -> str:
    """VQA's answer normalisation: lower case, punctuation removed (a dot only outside numbers,
    an apostrophe kept), number words to digits, articles dropped, spaces collapsed."""
    text = answer.lower().replace("\n", " ").replace("\t", " ").strip()
    text = _PUNCT.sub("", _STRIP.sub("", text))
    words = [_NUMBERS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


def _ques_fields() -> dict:
    return {"question_id": int, "image_id": int, "question": str}


def _answers_ok(value) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(isinstance(a, dict) and isinstance(a.get("answer"), str) for a in value))


#: The IID test answers as the repository ships them for its scorer, when ``IID-Test-Ans.json``
#: is absent: ``{"annotations": [{"question_id", "answer_count": {answer: annotators}, ...}],
#: "QT_qid": [...], ...}`` (PhoebusSi/VQA-VS @ b1249be: ``test_annotations.json.zip`` at the
#: repository's root; read by ``new_comput_score.py`` L31-35, L134-136).
TEST_ANNOTATIONS = "test_annotations.json"


def _answer_counts_ok(value) -> bool:
    return (isinstance(value, dict) and len(value) > 0
            and all(isinstance(k, str) and isinstance(c, int) and not isinstance(c, bool) and c > 0
                    for k, c in value.items()))


def _test_annotations(path: Path) -> list[dict]:
    """The IID test answers of :data:`TEST_ANNOTATIONS` in the answer files' shape: each
    answer repeated once per annotator who gave it (soft scores are then as for VQA's ten)."""
    try:
        with open(path, encoding="utf-8") as fh:
            content = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc}); expected VQA-VS's test "
                        "annotations ({'annotations': [...], 'QT_qid': [...], ...})") from exc
    rows = content.get("annotations") if isinstance(content, dict) else None
    if not isinstance(rows, list):
        raise DataError(f"{path}: no list 'annotations'; expected VQA-VS's test annotations "
                        "({'annotations': [{'question_id', 'answer_count', ...}], ...})")
    hf_json.require(rows, path, {"question_id": int, "answer_count": _answer_counts_ok},
                    "VQA-VS test annotations (answer_count: answer -> annotators)")
    return [{"question_id": r["question_id"],
             "answers": [{"answer": a} for a, c in r["answer_count"].items() for _ in range(c)]}
            for r in rows]


def read_split(folder: Path, stem: str) -> tuple[list[dict], dict[int, dict], Path]:
    """(questions in file order, answers by question id, the answer file) of one split, checked:
    fields present and typed, every question id answered. The IID test answers come from
    ``IID-Test-Ans.json`` or, when it is absent, from :data:`TEST_ANNOTATIONS` in the dataset
    folder."""
    qpath, apath = folder / f"{stem}-Ques.json", folder / f"{stem}-Ans.json"
    questions = hf_json.read(qpath, "VQA-VS questions")
    hf_json.require(questions, qpath, _ques_fields(), "VQA-VS questions")
    alternative = folder.parent / TEST_ANNOTATIONS
    if stem == SPLITS["test"] and path_problem(apath) is not None \
            and path_problem(alternative) is None:
        apath, answers = alternative, _test_annotations(alternative)
    else:
        answers = hf_json.read(apath, "VQA-VS answers")
        fields = {"question_id": int, "answers": _answers_ok}
        if stem == SPLITS["train"]:  # the vocabulary is made of the training ones
            fields["multiple_choice_answer"] = str
        hf_json.require(answers, apath, fields, "VQA-VS answers")
    by_id = {a["question_id"]: a for a in answers}
    missing = [q["question_id"] for q in questions if q["question_id"] not in by_id]
    if missing:
        raise DataError(f"{apath}: {len(missing)} question id(s) of {qpath.name} have no answers "
                        f"(field 'question_id'; first: {missing[0]})")
    return questions, by_id, apath


def vocabulary(train_answers: dict[int, dict]) -> list[str]:
    """Normalised ``multiple_choice_answer`` of at least :data:`MIN_COUNT` training questions,
    most frequent first (ties: alphabetical)."""
    counts: dict[str, int] = {}
    for a in train_answers.values():
        key = normalize(a["multiple_choice_answer"])
        counts[key] = counts.get(key, 0) + 1
    kept = [a for a, k in counts.items() if k >= MIN_COUNT]
    return sorted(kept, key=lambda a: (-counts[a], a))


def soft_targets(questions: list[dict], answers: dict[int, dict], vocab: list[str]) -> np.ndarray:
    """float32 (N, len(vocab)): ``min(1, 0.3 x count)`` of each normalised annotator answer."""
    index = {a: i for i, a in enumerate(vocab)}
    out = np.zeros((len(questions), len(vocab)), dtype=np.float32)
    for row, q in enumerate(questions):
        counts: dict[int, int] = {}
        for a in answers[q["question_id"]]["answers"]:
            j = index.get(normalize(a["answer"]))
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        for j, c in counts.items():
            out[row, j] = min(1.0, 0.3 * c)
    return out


#: Other names of the dataset folder: the official repository's and baseline code's
#: (PhoebusSi/VQA-VS @ b1249be, ``Baseline_code/preprocess_text.py`` L272-287: ``./VQA-VS/...``).
FOLDER_ALIASES = ("VQA-VS",)


def folder(data_root: str | None = None) -> Path:
    """``<data root>/vqa_vs`` (or ``<data root>/VQA-VS``, the official name); a DataError saying
    what belongs there when neither exists."""
    return dataset_folder(data_root, "vqa_vs", "vqa_vs", HINT, "embedded scene world",
                          FOLDER_ALIASES)


def image_dirs(base: Path) -> list[Path]:
    """Where COCO's ``train2014`` / ``val2014`` folders are looked for (first found wins):
    ``coco/`` and ``coco/images/`` under the data root, the data root itself (COCO's zips
    unpack to ``train2014/``, ``val2014/``), and the dataset folder ``base`` and its
    ``images/``."""
    root = base.parent
    return [root / "coco", root / "coco" / "images", root, base / "images", base]


def image_path(base: Path, image_id: int) -> Path:
    """The COCO image of ``image_id``: ``COCO_<split>2014_<12-digit id>.jpg`` in a
    ``train2014`` or ``val2014`` folder under one of :func:`image_dirs`; a DataError naming
    every place looked in when it is in none."""
    tried = [d / f"{split}2014" / f"COCO_{split}2014_{image_id:012d}.jpg"
             for d in image_dirs(base) for split in ("train", "val")]
    for p in tried:
        if p.is_file():
            return p
    raise DataError(f"image id {image_id} (field 'image_id' of the questions): no image at any of "
                    + ", ".join(map(str, tried)))


def _ood_rows(base: Path, test_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Each OOD set's rows in the IID test set, checked to be a subset of it."""
    position = {int(q): i for i, q in enumerate(test_ids)}
    out = {}
    for s in OOD_SETS:
        path = base / "OOD-Test" / s / f"OOD-Test-{s}-Ques.json"
        rows = hf_json.read(path, f"VQA-VS OOD set {s} questions")
        hf_json.require(rows, path, _ques_fields(), f"VQA-VS OOD set {s} questions")
        extra = [r["question_id"] for r in rows if r["question_id"] not in position]
        if extra:
            raise DataError(f"{path}: {len(extra)} question id(s) are not in the IID test set "
                            f"(field 'question_id'; first: {extra[0]}); every OOD set is a subset "
                            "of IID-Test")
        out[s] = np.array([position[r["question_id"]] for r in rows], dtype=np.int64)
    return out


def prepare(base: Path, backbone: str | None, *, batch_size: int = 32, device: str | None = None,
            progress: bool = True, own_features: bool = False) -> Path:
    """Read and check every file and image (nothing is written before all of them pass), then
    extract the features of train, val and IID test with ``backbone`` and write the prepared
    folder. With no ``backbone`` the files are checked and a DataError says that extracting
    needs one."""
    from i2m2bench.data.common import vl_features as vf

    vf.check_batch_size(batch_size)  # before anything is read or written
    splits = {name: read_split(base / stem, stem) for name, stem in SPLITS.items()}
    vocab = vocabulary(splits["train"][1])
    if not vocab:
        raise DataError(f"{splits['train'][2]}: no answer is the multiple-choice answer of "
                        f"{MIN_COUNT} training questions; the vocabulary would be empty")
    test_ids = np.array([q["question_id"] for q in splits["test"][0]], dtype=np.int64)
    ood = _ood_rows(base, test_ids)
    items = {name: [vf.Item(q["question_id"], (image_path(base, q["image_id"]),), q["question"])
                    for q in qs] for name, (qs, _, _) in splits.items()}  # every image exists
    vf.check_images({p for its in items.values() for it in its for p in it.images})
    vf.require_backbone(backbone, base, sum(map(len, items.values())), "questions", own_features)
    annotations = annotation_files(base, [a for _, _, a in splits.values()])
    with vf.staged_features(base, "the VQA-VS features", items, annotations, backbone,
                            own_features=own_features, batch_size=batch_size, device=device,
                            progress=progress) as staged:
        out = staged.out
        for name in items:
            qs, ans, _ = splits[name]
            np.save(out / name / "targets.npy", soft_targets(qs, ans, vocab).astype(np.float16))
        for s, rows in ood.items():  # the OOD sets' rows, copied from the IID test features
            (out / s).mkdir(parents=True, exist_ok=True)
            for f in (*vf.FEATURES, "ids", "targets"):
                np.save(out / s / f"{f}.npy", np.load(out / "test" / f"{f}.npy", mmap_mode="r")[rows])
        (out / "answers.json").write_text(json.dumps(vocab))
        staged.write_manifest([*SPLITS, *OOD_SETS], extra=("targets",), whole=("answers.json",))
    return base / FEATURES


def annotation_files(base: Path, answers: list[Path]) -> list[Path]:
    """The JSON files prepare reads: every split's questions, the ``answers`` files it read
    (``IID-Test-Ans.json`` or :data:`TEST_ANNOTATIONS`), every OOD set's questions."""
    return ([base / stem / f"{stem}-Ques.json" for stem in SPLITS.values()] + list(answers)
            + [base / "OOD-Test" / s / f"OOD-Test-{s}-Ques.json" for s in OOD_SETS])


def load(base: Path, verify: str = "quick") -> Task:
    """The task from the prepared features under ``base/features`` alone (:func:`load_counted`)."""
    return load_counted(base, verify)[0]


def load_counted(base: Path, verify: str = "quick") -> tuple[Task, int]:
    """(the task, the recorded inputs no longer on disk) from the prepared features under
    ``base/features`` alone: the JSON files and images are read by :func:`prepare`, never here.
    The manifest's content chain checks that none of them changed since (``verify``: ``quick``,
    sizes and times; ``full``, every byte) and the features against the manifest; without
    prepared features, a DataError gives the prepare command."""
    import torch

    from i2m2bench.data.common import vl_features as vf
    from i2m2bench.data.common.disk import DiskSplit

    out = base / FEATURES
    meta, gone = vf.check_features(out, base.parent, verify, PREPARE)
    vocab_path = out / "answers.json"  # its sha256 checked by check_features
    vocab = tuple(json.loads(vocab_path.read_text()))
    splits, dims = {}, None
    for name in (*SPLITS, *OOD_SETS):
        files = vf.open_features(out, name, None, verify, extra=("targets",))
        # float16 in memory (VQA-VS's 461k x 3,129 soft scores: 2.9 GB instead of 5.8); losses
        # and metrics read them in float32 / float64
        target = torch.from_numpy(np.load(files["targets"], allow_pickle=False))
        if target.shape[1:] != (len(vocab),):
            raise DataError(f"{files['targets']}: {target.shape[1]} answers, but {vocab_path} "
                            f"lists {len(vocab)}; {PREPARE}")
        splits[name] = DiskSplit.from_npy({m: files[m] for m in vf.FEATURES}, target, name)
        dims = tuple(int(np.load(files[m], mmap_mode="r").shape[1]) for m in vf.FEATURES)
    task = Task(task_spec("real", dims, vocab, f"VQA-VS ({out})"),
                {k: splits[k] for k in SPLITS}, {s: splits[s] for s in OOD_SETS},
                options={"source": "real", "checksum": meta["content_sha256"]})
    return task, gone


def verify(base: Path, level: str = "quick") -> str:
    """Check the prepared features under ``base`` against their manifest and the inputs it
    records (``full``: every byte); a one-line report (a DataError naming the file otherwise)."""
    task, gone = load_counted(base, level)
    inputs = json.loads((base / FEATURES / "manifest.json").read_text())["inputs"]
    return (f"vqa_vs: {base / FEATURES} matches its manifest and {chain.inputs_report(inputs, gone)} "
            f"({level}): " + ", ".join(f"{k} {len(s)}" for k, s in {**task.splits, **task.shifts}.items()))


__all__ = ["MIN_COUNT", "OOD_SETS", "SPLITS", "folder", "image_path", "load", "normalize",
           "prepare", "read_split", "soft_targets", "verify", "vocabulary"]
