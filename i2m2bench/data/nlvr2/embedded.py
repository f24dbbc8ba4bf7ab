"""The EMBEDDED NLVR2 twin: is a sentence true of a pair of rendered scenes?

**Synthetic.** Two scenes of :mod:`i2m2bench.data.common.scene_world` per item and a templated sentence
about them; nothing is from NLVR2. Labelled EMBEDDED everywhere.

Sentence templates (:data:`TEMPLATES`), each a function of *both* images unless it names one:

================  ====================================================================
``side_count``    the {left|right} image has exactly {n} {colour} objects
``more``          there are more {shape}s in the left image than in the right image
``both``          both images contain a {colour} {shape}
``one``           exactly one image contains a {colour} {shape}
``total``         there are exactly {n} {colour} objects in total
================  ====================================================================

**Groups and consistency.** As in NLVR2, each sentence is paired with several image pairs
(:data:`PAIRS_PER_SENTENCE`), drawn so that it is true for half of them and false for the other
half; a sentence is one group of NLVR2's consistency metric (all its pairs answered right). A text
alone therefore carries no label information here, by construction.

**Held-out combinations** (:data:`HELD_OUT`): sentences whose (template, word) pair is one of
these never appear in training, validation or test; the ``held_out`` shift set consists of them
only -- combinations of known words and templates never seen together.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from i2m2bench.data.base import check_count
from i2m2bench.data.nlvr2.processing import task_spec
from i2m2bench.types import Split, Task

from i2m2bench.data.common import scene_world as sw

TEMPLATES = ("side_count", "more", "both", "one", "total")
PAIRS_PER_SENTENCE = 4
HELD_OUT = {("both", "purple"), ("one", "yellow"), ("side_count", "green"), ("total", "red"),
            ("more", "diamond")}


@dataclass(frozen=True)
class Sentence:
    template: str
    text: str
    word: str  # the colour or shape the held-out rule reads
    side: str | None = None
    colour: str | None = None
    shape: str | None = None
    n: int = 0

    def holds(self, left, right) -> bool:
        """Whether the sentence is true of the pair of scenes (object lists)."""
        count = lambda objs, c=None, s=None: sum(  # noqa: E731
            (c is None or o[1] == c) and (s is None or o[0] == s) for o in objs)
        if self.template == "side_count":
            return count(left if self.side == "left" else right, c=self.colour) == self.n
        if self.template == "more":
            return count(left, s=self.shape) > count(right, s=self.shape)
        has = [count(x, self.colour, self.shape) > 0 for x in (left, right)]
        if self.template == "both":
            return all(has)
        if self.template == "one":
            return sum(has) == 1
        return count(left, c=self.colour) + count(right, c=self.colour) == self.n  # total


def draw_sentence(rng: np.random.Generator) -> Sentence:
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    t = pick(TEMPLATES)
    colour, shape = pick(sw.COLOURS), pick(sw.SHAPES)
    if t == "side_count":
        side, n = pick(("left", "right")), int(rng.integers(0, 4))
        return Sentence(t, f"the {side} image has exactly {sw.NUMBER_WORDS[n]} {colour} objects",
                        colour, side=side, colour=colour, n=n)
    if t == "more":
        return Sentence(t, f"there are more {shape}s in the left image than in the right image",
                        shape, shape=shape)
    if t == "total":
        n = int(rng.integers(0, 5))
        return Sentence(t, f"there are exactly {sw.NUMBER_WORDS[n]} {colour} objects in total",
                        colour, colour=colour, n=n)
    text = (f"both images contain a {colour} {shape}" if t == "both"
            else f"exactly one image contains a {colour} {shape}")
    return Sentence(t, text, colour, colour=colour, shape=shape)


@dataclass
class Items:
    """Items as index arrays into two Scenes (left, right), with sentences and labels."""

    left: sw.Scenes
    right: sw.Scenes
    sentences: list[Sentence]  # one per item
    label: np.ndarray  # (N,) 1 = True
    group: np.ndarray  # (N,) the sentence's id


def draw_items(n_sentences: int, seed: int, held_out: bool | None = False,
               tries: int = 60) -> Items:
    """``n_sentences`` sentences, each with :data:`PAIRS_PER_SENTENCE` pairs (half true, half
    false). ``held_out``: False excludes the :data:`HELD_OUT` combinations, True keeps only them,
    None keeps everything. A sentence for which balanced pairs are not found in ``tries`` draws
    is replaced by another."""
    rng = np.random.default_rng([seed, 2019])
    want = PAIRS_PER_SENTENCE // 2
    pairs, sentences, labels, groups = [], [], [], []
    g = 0
    while g < n_sentences:
        s = draw_sentence(rng)
        if held_out is not None and ((s.template, s.word) in HELD_OUT) != held_out:
            continue
        found = {True: [], False: []}
        for _ in range(tries):
            pair = sw.sample_scenes(rng, 2)
            truth = s.holds(pair.objects(0), pair.objects(1))
            if len(found[truth]) < want:
                found[truth].append(pair)
            if all(len(v) == want for v in found.values()):
                break
        if not all(len(v) == want for v in found.values()):
            continue
        for truth in (True, False):
            for pair in found[truth]:
                pairs.append(pair)
                sentences.append(s)
                labels.append(int(truth))
                groups.append(g)
        g += 1
    order = rng.permutation(len(labels))  # pairs of a sentence are not adjacent

    def stack(k):  # scene k (0 left, 1 right) of every pair, in item order
        fields = ("shape", "colour", "size", "cell")
        return sw.Scenes(*(np.stack([getattr(pairs[i], f)[k] for i in order]) for f in fields),
                         np.array([pairs[i].count[k] for i in order]))

    return Items(stack(0), stack(1), [sentences[i] for i in order],
                 np.asarray(labels)[order], np.asarray(groups)[order])


def _features(items, seed: int, model, blank_right: bool = False):
    """(image pair (N, 2d), text (N, d), joint (N, 2d')) of the items with the scene backbone."""
    from i2m2bench.data.common import scene_backbone as sb
    from i2m2bench.data.common import scene_world as sw

    tokens = np.stack([sw.tokens(s.text) for s in items.sentences])
    left = sw.render(items.left, 32, seed=seed * 2)
    right = sw.render(items.right, 32, seed=seed * 2 + 1)
    if blank_right:  # the same scenes with no objects: an empty canvas
        r = items.right
        right = sw.render(sw.Scenes(r.shape, r.colour, r.size, r.cell, np.zeros_like(r.count)),
                          32, seed=seed * 2 + 1)
    li, text, lj = sb.extract(left, tokens, model=model)
    ri, _, rj = sb.extract(right, tokens, model=model)
    return np.concatenate([li, ri], 1), text, np.concatenate([lj, rj], 1)


def build_embedded(train: int = 6000, val: int = 500, test: int = 1500, held_out: int = 750,
                   data_seed: int = 0) -> Task:
    """The EMBEDDED pair world: ``train`` / ``val`` / ``test`` / ``held_out`` sentences, each
    with 4 image pairs (half true)."""
    from i2m2bench.data.common import scene_backbone as sb

    for name, value in (("train", train), ("val", val), ("test", test), ("held_out", held_out)):
        check_count("nlvr2", name, value)
    model = sb.load()
    digest = hashlib.sha256()
    made = {}
    plan = {"train": (train, False), "val": (val, False), "test": (test, False),
            "held_out": (held_out, True)}
    for k, (name, (n, held)) in enumerate(plan.items()):
        items = draw_items(n, data_seed * 10 + k, held_out=held)
        made[name] = (items, _features(items, data_seed * 10 + k, model))
    items, _ = made["test"]
    made["one_image"] = (items, _features(items, data_seed * 10 + 2, model, blank_right=True))
    splits = {}
    for name, (items, (image, text, joint)) in made.items():
        for a in (image, text, joint, items.label, items.group):
            digest.update(np.ascontiguousarray(a).tobytes())
        splits[name] = Split({"image": torch.from_numpy(image), "text": torch.from_numpy(text),
                              "joint": torch.from_numpy(joint)},
                             torch.from_numpy(items.label.astype(np.int64)), name,
                             groups=torch.from_numpy(items.group.astype(np.int64)))
    dims = tuple(int(splits["train"].inputs[m].shape[1]) for m in ("image", "text", "joint"))
    spec = task_spec("embedded", dims, "EMBEDDED pairs of rendered scenes (synthetic, not NLVR2)")
    return Task(spec, {k: splits[k] for k in ("train", "val", "test")},
                {k: splits[k] for k in ("held_out", "one_image")},
                options=dict(source="embedded", train=train, val=val, test=test,
                             held_out=held_out, data_seed=data_seed,
                             checksum=digest.hexdigest()[:16]))


__all__ = ["build_embedded", "HELD_OUT", "Items", "PAIRS_PER_SENTENCE", "Sentence", "TEMPLATES", "draw_items",
           "draw_sentence"]
