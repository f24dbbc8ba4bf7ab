"""The EMBEDDED VQA-VS twin: questions about rendered scenes with planted shortcuts, and the nine
out-of-distribution test sets built the way VQA-VS builds them.

**Synthetic.** Scenes and questions come from :mod:`i2m2bench.data.common.scene_world`; nothing is from
VQA or COCO. Labelled EMBEDDED everywhere.

**Concepts** (what a shortcut keys on), per question, as VQA-VS defines its shortcut kinds
(Si et al., 2022, "Language Prior Is Not the Only Shortcut: A Benchmark for Shortcut Learning in
VQA"):

* ``QT`` question type: the opening words (``what color is the``, ``how many``, ...);
* ``KW`` keyword: the question's object word (the last colour or shape word);
* ``KWP`` keyword pair: its two content words (questions with two; others have none);
* ``KO`` key object: the colour of the scene's most salient object (the largest; among equals,
  the first in reading order) -- a visual concept;
* ``KOP`` key-object pair: the colours of the two most salient objects;
* combinations ``QT+KW``, ``QT+KO``, ``KW+KO``, ``QT+KW+KO``: the tuple of their concepts.

**Planting** (:func:`planted_weights`). A large pool is drawn without bias; each value of the
planted concepts (:data:`PLANTED`: question type, keyword, keyword pair, question type with keyword, key
object, key-object pair) gets a *shortcut answer*, drawn deterministically among its frequent
answers in an unbiased reference pool. Training, validation and the IID test set are then drawn
from the pool with probability proportional to ``prod_kinds (1 + strength[kind] * [answer ==
the shortcut of the question's concept])``, normalised within each question template so that the
mix of question kinds stays that of the unbiased world; every split is thus skewed the same way,
as VQA's natural biases skew all of VQA v2.

**OOD sets** (:func:`ood_sets`), for each of the nine kinds, by a head/tail rule after GQA-OOD
(Kervadec et al., CVPR 2021), whose terms VQA-VS uses ("imbalanced groups", "head", "tail") while
its exact thresholds are not published in a form this suite could read (docs/fidelity.md): the
IID test questions are grouped by concept; a group of at least :data:`MIN_GROUP` questions is
*imbalanced* when the normalised entropy of its answers is below :data:`MAX_ENTROPY` -- an
absolute threshold, not GQA-OOD's "mean minus one standard deviation over the groups", because
VQA-VS counts most groups as imbalanced (52 of 65 question types, 79 of 81 key objects: its
Table 1) while that rule keeps about one in six; in an imbalanced group an answer is *tail* when
its share is below ``(1 + alpha) / #answers`` (``alpha = 0.2``, GQA-OOD's); the OOD set is every
tail question of an imbalanced group -- where the shortcut fails. Each is a subset of the IID test
set, as in VQA-VS.
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from i2m2bench.data.base import check_count
from i2m2bench.data.vqa_vs.processing import task_spec
from i2m2bench.types import Split, Task

from i2m2bench.data.common import scene_world as sw

KINDS = ("QT", "KW", "KWP", "QT+KW", "KO", "KOP", "QT+KO", "KW+KO", "QT+KW+KO")
#: planted concepts and their strengths (the other kinds' shortcuts follow from these)
PLANTED = {"QT": 1.0, "KW": 1.0, "KWP": 1.0, "QT+KW": 2.0, "KO": 1.5, "KOP": 1.0}
ALPHA = 0.2  # GQA-OOD's tail margin
MAX_ENTROPY = 0.95  # a group is imbalanced below this normalised entropy (the suite's choice)
MIN_GROUP = 20  # groups with fewer IID test questions are left out (too few to tell)


@dataclass
class Pool:
    """Questions about scenes: the scene (its row in ``scenes``), the question, its concepts."""

    scenes: sw.Scenes
    questions: list[sw.Question]
    concepts: list[dict[str, object]]  # kind -> concept value (None: not defined)

    def __len__(self) -> int:
        return len(self.questions)


def salient(objs: list[tuple[str, str, str, int]]) -> list[tuple[str, str, str, int]]:
    """Objects by salience: large before small, then reading order (the cell index)."""
    return sorted(objs, key=lambda o: (o[2] != "large", o[3]))


def concepts_of(q: sw.Question, objs) -> dict[str, object]:
    """The concept of each shortcut kind for question ``q`` about scene ``objs``."""
    by = salient(objs)
    c = {"QT": q.qtype, "KW": q.keywords[-1],
         "KWP": tuple(sorted(q.keywords)) if len(q.keywords) > 1 else None,
         "KO": by[0][1], "KOP": tuple(sorted((by[0][1], by[1][1]))) if len(by) > 1 else None}
    for kind in KINDS:
        if "+" in kind:
            parts = tuple(c[p] for p in kind.split("+"))
            c[kind] = None if any(p is None for p in parts) else parts
    return c


def draw_pool(n: int, seed: int) -> Pool:
    """``n`` unbiased questions, one per scene (scenes with at least two objects)."""
    rng = np.random.default_rng([seed, 2022])
    scenes = sw.sample_scenes(rng, n, min_objects=2)
    questions, concepts = [], []
    for i in range(n):
        objs = scenes.objects(i)
        q = sw.sample_question(rng, objs)
        if q is None:  # practically never: every scene admits a count question
            q = sw.question("count_color", objs, colour=objs[0][1])
        questions.append(q)
        concepts.append(concepts_of(q, objs))
    return Pool(scenes, questions, concepts)


def shortcut_answers(pool: Pool, kinds=tuple(PLANTED)) -> dict[str, dict[object, str]]:
    """For each kind, each concept value's shortcut answer: one of its answers seen at least half
    as often as its most frequent one in ``pool``, chosen by a hash of the concept (so that
    shortcuts spread over the answers instead of always taking the first of a tie)."""
    import zlib

    out: dict[str, dict[object, str]] = {}
    for kind in kinds:
        counts: dict[object, Counter] = defaultdict(Counter)
        for q, c in zip(pool.questions, pool.concepts):
            if c[kind] is not None:
                counts[c[kind]][q.answer] += 1
        out[kind] = {}
        for v, cnt in counts.items():
            top = max(cnt.values())
            frequent = sorted(a for a, k in cnt.items() if 2 * k >= top)
            out[kind][v] = frequent[zlib.crc32(repr((kind, v)).encode()) % len(frequent)]
    return out


def planted_weights(pool: Pool, shortcuts: dict[str, dict[object, str]],
                    strength: dict[str, float] = PLANTED) -> np.ndarray:
    """Sampling weight of each pool question: ``prod (1 + strength * [answer == shortcut])``,
    divided by the mean weight of its template (the template mix is kept)."""
    w = np.ones(len(pool))
    for i, (q, c) in enumerate(zip(pool.questions, pool.concepts)):
        for kind, s in strength.items():
            if c[kind] is not None and shortcuts[kind].get(c[kind]) == q.answer:
                w[i] *= 1.0 + s
    templates = np.array([q.template for q in pool.questions])
    for t in set(templates):
        w[templates == t] /= w[templates == t].mean()
    return w


def draw_splits(pool: Pool, weights: np.ndarray, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Disjoint index sets of the pool, drawn without replacement with probability ∝ ``weights``,
    in the order of ``sizes``."""
    rng = np.random.default_rng([seed, 3])
    total = sum(sizes.values())
    if total > len(pool):
        raise ValueError(f"the pool holds {len(pool)} questions; the splits need {total}")
    chosen = rng.choice(len(pool), size=total, replace=False, p=weights / weights.sum())
    out, start = {}, 0
    for name, k in sizes.items():
        out[name] = np.sort(chosen[start:start + k])
        start += k
    return out


def _entropy(counts: Counter) -> float:
    """Normalised entropy of an answer histogram (GQA-OOD: H / log(#answers), H alone for one
    answer, which is 0)."""
    p = np.array(list(counts.values()), dtype=np.float64)
    p /= p.sum()
    h = float(-(p * np.log(p)).sum())
    return h / np.log(len(p)) if len(p) > 1 else h


def ood_sets(pool: Pool, test: np.ndarray, alpha: float = ALPHA, max_entropy: float = MAX_ENTROPY,
             min_count: int = MIN_GROUP) -> dict[str, np.ndarray]:
    """For each kind of :data:`KINDS`, the positions in ``test`` (sorted) of the tail questions
    of imbalanced concept groups (module docstring), grouped over ``test`` itself."""
    out = {}
    for kind in KINDS:
        groups: dict[object, Counter] = defaultdict(Counter)
        for i in test:
            v = pool.concepts[i][kind]
            if v is not None:
                groups[v][pool.questions[i].answer] += 1
        tail = {v: {a for a, k in cnt.items() if k / sum(cnt.values()) < (1 + alpha) / len(cnt)}
                for v, cnt in groups.items()
                if sum(cnt.values()) >= min_count and _entropy(cnt) < max_entropy}
        rows = [j for j, i in enumerate(test)
                if pool.concepts[i][kind] in tail and pool.questions[i].answer in tail[pool.concepts[i][kind]]]
        out[kind] = np.asarray(rows, dtype=np.int64)
    return out


def soft_targets(pool: Pool, rows: np.ndarray, seed: int, agree: float = 0.9) -> np.ndarray:
    """float32 (len(rows), len(ANSWERS)) VQA soft scores from 10 simulated annotators each."""
    rng = np.random.default_rng([seed, 10])
    out = np.zeros((len(rows), len(sw.ANSWERS)), dtype=np.float32)
    for j, i in enumerate(rows):
        q = pool.questions[i]
        for a, c in sw.annotate(rng, q.answer, sw.answer_kind(q.template), agree=agree).items():
            out[j, sw.ANSWERS.index(a)] = sw.soft_score(c)
    return out


REFERENCE_SEED = 999  # the unbiased reference pool that fixes each concept's shortcut answer


def build_embedded(train: int = 24000, val: int = 3000, test: int = 10000, pool: int = 150000,
                   data_seed: int = 0) -> Task:
    """The EMBEDDED scene world: ``pool`` unbiased questions, splits drawn from it with planted
    shortcuts, features from the frozen scene backbone, the nine OOD sets of the IID test set."""
    from i2m2bench.data.common import scene_backbone as sb
    from i2m2bench.data.common import scene_world as sw

    for name, value in (("train", train), ("val", val), ("test", test), ("pool", pool)):
        check_count("vqa_vs", name, value, low=10)
    shortcuts = shortcut_answers(draw_pool(40000, REFERENCE_SEED))
    world = draw_pool(pool, data_seed)
    index = draw_splits(world, planted_weights(world, shortcuts),
                           {"train": train, "val": val, "test": test}, data_seed)
    model = sb.load()
    splits, digest = {}, hashlib.sha256()
    for k, (name, rows) in enumerate(index.items()):
        images = sw.render(world.scenes, 32, seed=data_seed * 10 + k, rows=rows)
        tokens = np.stack([sw.tokens(world.questions[i].text) for i in rows])
        image, text, joint = sb.extract(images, tokens, model=model)
        target = soft_targets(world, rows, data_seed * 10 + k)
        for a in (image, text, joint, target):
            digest.update(a.tobytes())
        splits[name] = Split({"image": torch.from_numpy(image), "text": torch.from_numpy(text),
                              "joint": torch.from_numpy(joint)}, torch.from_numpy(target), name)
    test_split = splits["test"]
    shifts = {}
    for kind, pos in ood_sets(world, index["test"]).items():
        if len(pos) == 0:
            raise ValueError(f"vqa_vs: the OOD set {kind} of the embedded world is empty: its "
                             f"{test} IID test questions form no imbalanced {kind} group of "
                             f"{MIN_GROUP} or more; give a larger 'test' (and 'pool')")
        sel = torch.from_numpy(pos)
        shifts[kind] = Split({m: x[sel] for m, x in test_split.inputs.items()},
                             test_split.target[sel], kind)
    spec = task_spec("embedded", (sb.IMAGE_DIM, sb.TEXT_DIM, sb.JOINT_DIM), sw.ANSWERS,
                     "EMBEDDED scene world with planted shortcuts (synthetic, not COCO)")
    return Task(spec, splits, shifts, options=dict(
        source="embedded", train=train, val=val, test=test, pool=pool, data_seed=data_seed,
        checksum=digest.hexdigest()[:16]))


__all__ = ["build_embedded", "KINDS", "PLANTED", "Pool", "concepts_of", "draw_pool", "draw_splits", "ood_sets",
           "planted_weights", "salient", "shortcut_answers", "soft_targets"]
