"""A procedural scene world for the EMBEDDED vision-language data (VQA-VS and NLVR2 twins).

**Synthetic.** Scenes of a few flat objects on a plain background, drawn with Pillow, and
templated questions (or sentences) answered from the scene graph. Nothing comes from COCO, VQA or
NLVR2; the world exists so that the vision-language suites run out of the box on a CPU and so
that what a shortcut is can be controlled exactly.

**Scenes** (:func:`sample_scenes`): 1 to :data:`MAX_OBJECTS` objects, each a shape
(:data:`SHAPES`), a colour (:data:`COLOURS`), a size (:data:`SIZES`) and a position on a grid of
cells (no two objects share a cell), uniform over shapes and colours unless ``colour_p`` /
``shape_p`` say otherwise; :func:`render` draws them at ``size`` x ``size`` pixels (uint8 RGB, a
little pixel noise), deterministically from a seed.

**Questions** (:func:`question`): seven templates, each with the question type VQA would give it
(``qtype``: the opening words, as VQA's ``question_type`` field), the content words
(``keywords``: the colour and shape words of the question) and the answer read off the scene
graph:

=====================  ==========================================  ===================
template               text                                        answers
=====================  ==========================================  ===================
``color``              what color is the {shape}                   a colour
``shape``              what shape is the {color} object            a shape
``count_color``        how many {color} objects are there          0..5
``count_shape``        how many {shape}s are there                 0..5
``exist``              is there a {color} {shape}                  yes / no
``where``              where is the {color} {shape}                left / right
``more``               are there more {shape}s than {shape2}s      yes / no
=====================  ==========================================  ===================

``color``, ``shape`` and ``where`` ask about an object that is unique in the scene by the
words of the question (the question is not asked otherwise).

**Statements** (:func:`statement`, :data:`STATEMENTS`): single-image sentences answered yes / no
("the image has exactly {n} {colour} objects", "the image contains a {colour} {shape}"). The
frozen backbone (:mod:`i2m2bench.data.common.scene_backbone`) is pretrained on them besides the questions,
so that its features also serve the NLVR2 twin's sentences about image pairs
(:mod:`i2m2bench.data.nlvr2.embedded`). Words of questions and sentences are tokenised with the fixed
vocabulary :data:`VOCAB` (id 0 pads; at most :data:`MAX_TOKENS` words).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "purple", "gray")
SIZES = ("small", "large")
RGB = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 220),
       "yellow": (230, 210, 40), "purple": (150, 60, 190), "gray": (128, 128, 128)}
MAX_OBJECTS = 5
GRID = 3  # objects sit in the cells of a GRID x GRID grid, one per cell
TEMPLATES = ("color", "shape", "count_color", "count_shape", "exist", "where", "more")
QTYPES = {"color": "what color is the", "shape": "what shape is the",
          "count_color": "how many", "count_shape": "how many", "exist": "is there a",
          "where": "where is the", "more": "are there more"}
ANSWERS = (*COLOURS, *SHAPES, *(str(k) for k in range(MAX_OBJECTS + 1)), "yes", "no", "left",
           "right")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
_WORDS = ("<pad>", "what", "color", "is", "the", "shape", "object", "how", "many", "objects",
          "are", "there", "a", "where", "more", "than", *COLOURS, *SHAPES,
          *(f"{s}s" for s in SHAPES),
          # statements (backbone pretraining) and NLVR2-style sentences about image pairs
          "image", "images", "has", "exactly", "contains", "contain", "both", "in", "left",
          "right", "total", *NUMBER_WORDS)
VOCAB = {w: i for i, w in enumerate(_WORDS)}
MAX_TOKENS = 14
#: single-image statements (answered yes / no): the backbone's pretraining reads them besides the
#: questions, so that its text and joint features also serve sentences (NLVR2's twin)
STATEMENTS = ("has_count", "contains")


@dataclass
class Scenes:
    """``n`` scenes as arrays of (n, MAX_OBJECTS) entries; ``count[i]`` objects are real."""

    shape: np.ndarray  # int index into SHAPES
    colour: np.ndarray  # int index into COLOURS
    size: np.ndarray  # int index into SIZES
    cell: np.ndarray  # int in [0, GRID * GRID)
    count: np.ndarray  # (n,)

    def __len__(self) -> int:
        return len(self.count)

    def objects(self, i: int) -> list[tuple[str, str, str, int]]:
        """Scene ``i``'s objects as (shape, colour, size, cell)."""
        return [(SHAPES[self.shape[i, k]], COLOURS[self.colour[i, k]], SIZES[self.size[i, k]],
                 int(self.cell[i, k])) for k in range(self.count[i])]


def sample_scenes(rng: np.random.Generator, n: int, min_objects: int = 1,
                  colour_p: np.ndarray | None = None, shape_p: np.ndarray | None = None) -> Scenes:
    """``n`` random scenes (objects uniform over shapes and colours unless ``colour_p`` /
    ``shape_p`` give other probabilities)."""
    count = rng.integers(min_objects, MAX_OBJECTS + 1, n)
    shape = rng.choice(len(SHAPES), (n, MAX_OBJECTS), p=shape_p)
    colour = rng.choice(len(COLOURS), (n, MAX_OBJECTS), p=colour_p)
    size = rng.integers(0, len(SIZES), (n, MAX_OBJECTS))
    cell = np.argsort(rng.random((n, GRID * GRID)), axis=1)[:, :MAX_OBJECTS]
    return Scenes(shape, colour, size, cell, count)


def _polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if kind == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]  # diamond


def render(scenes: Scenes, size: int = 32, seed: int = 0, rows: np.ndarray | None = None) -> np.ndarray:
    """uint8 (n, 3, size, size) images of ``scenes`` (or of ``rows`` of them): a light
    background, each object drawn in its cell (radius by size), pixel noise from ``seed``."""
    from PIL import Image, ImageDraw

    idx = np.arange(len(scenes)) if rows is None else np.asarray(rows)
    out = np.empty((len(idx), 3, size, size), dtype=np.uint8)
    cell = size / GRID
    for j, i in enumerate(idx):
        img = Image.new("RGB", (size, size), (235, 235, 228))
        draw = ImageDraw.Draw(img)
        for shape, colour, sz, c in scenes.objects(int(i)):
            cx, cy = (c % GRID + 0.5) * cell, (c // GRID + 0.5) * cell
            r = cell * (0.28 if sz == "small" else 0.45)
            box = (cx - r, cy - r, cx + r, cy + r)
            if shape == "circle":
                draw.ellipse(box, fill=RGB[colour])
            elif shape == "square":
                draw.rectangle(box, fill=RGB[colour])
            else:
                draw.polygon(_polygon(shape, cx, cy, r), fill=RGB[colour])
        out[j] = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    noise = np.random.default_rng([seed, 7]).integers(-8, 9, out.shape)
    return np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Question:
    template: str
    text: str
    answer: str
    qtype: str
    keywords: tuple[str, ...]  # the colour and shape words of the question


def _unique(objs, colour=None, shape=None):
    hits = [o for o in objs if (colour is None or o[1] == colour) and (shape is None or o[0] == shape)]
    return hits[0] if len(hits) == 1 else None


def question(template: str, objs: list[tuple[str, str, str, int]], colour: str | None = None,
             shape: str | None = None, shape2: str | None = None) -> Question | None:
    """The question ``template`` about the scene ``objs`` with the given words, and its answer;
    None when the template does not apply (the object it asks about is not unique)."""
    count = lambda c=None, s=None: sum(  # noqa: E731
        (c is None or o[1] == c) and (s is None or o[0] == s) for o in objs)
    if template == "color":
        o = _unique(objs, shape=shape)
        return o and Question(template, f"what color is the {shape}", o[1], QTYPES[template], (shape,))
    if template == "shape":
        o = _unique(objs, colour=colour)
        return o and Question(template, f"what shape is the {colour} object", o[0],
                              QTYPES[template], (colour,))
    if template == "count_color":
        return Question(template, f"how many {colour} objects are there", str(count(c=colour)),
                        QTYPES[template], (colour,))
    if template == "count_shape":
        return Question(template, f"how many {shape}s are there", str(count(s=shape)),
                        QTYPES[template], (f"{shape}s",))
    if template == "exist":
        return Question(template, f"is there a {colour} {shape}",
                        "yes" if count(colour, shape) else "no", QTYPES[template], (colour, shape))
    if template == "where":
        o = _unique(objs, colour, shape)
        side = None if o is None or o[3] % GRID == GRID // 2 else (
            "left" if o[3] % GRID < GRID // 2 else "right")
        return side and Question(template, f"where is the {colour} {shape}", side,
                                 QTYPES[template], (colour, shape))
    if template == "more":
        if shape == shape2:
            return None
        return Question(template, f"are there more {shape}s than {shape2}s",
                        "yes" if count(s=shape) > count(s=shape2) else "no", QTYPES[template],
                        (f"{shape}s", f"{shape2}s"))
    raise ValueError(f"unknown template {template!r}; expected one of {', '.join(TEMPLATES)}")


def statement(template: str, objs, colour: str, shape: str, n: int = 0) -> Question:
    """A single-image statement and whether it holds (``yes`` / ``no``): ``has_count`` "the image
    has exactly {n} {colour} objects", ``contains`` "the image contains a {colour} {shape}"."""
    if template == "has_count":
        truth = sum(o[1] == colour for o in objs) == n
        return Question(template, f"the image has exactly {NUMBER_WORDS[n]} {colour} objects",
                        "yes" if truth else "no", "the image has", (colour,))
    if template == "contains":
        truth = any(o[1] == colour and o[0] == shape for o in objs)
        return Question(template, f"the image contains a {colour} {shape}",
                        "yes" if truth else "no", "the image contains", (colour, shape))
    raise ValueError(f"unknown statement {template!r}; expected one of {', '.join(STATEMENTS)}")


def sample_statement(rng: np.random.Generator, objs) -> Question:
    """A statement about ``objs``, true about half of the time (its words taken from the scene
    or, for a false one, nudged)."""
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    o = pick(objs)
    template = pick(STATEMENTS)
    if template == "has_count":
        n = sum(x[1] == o[1] for x in objs)
        if rng.random() < 0.5:
            n = int(np.clip(n + pick((-1, 1, 2)), 0, len(NUMBER_WORDS) - 1))
        return statement(template, objs, o[1], o[0], n)
    colour, shape = (o[1], o[0]) if rng.random() < 0.5 else (pick(COLOURS), pick(SHAPES))
    return statement(template, objs, colour, shape)


def sample_question(rng: np.random.Generator, objs: list[tuple[str, str, str, int]],
                    template: str | None = None, tries: int = 30) -> Question | None:
    """A question about the scene ``objs``: ``template`` (else one drawn uniformly, kept for half
    of the ``tries`` before others are tried) with words drawn so that answers are not trivially
    skewed (``exist`` asks about a present object half of
    the time; counts mostly name a colour or shape of the scene); None when no applicable
    question was found in ``tries`` draws."""
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    first = template or pick(TEMPLATES)  # the template is drawn first, so the mix stays even
    for k in range(tries):
        t = first if (template or k < tries // 2) else pick(TEMPLATES)
        o = pick(objs)
        shape, colour = o[0], o[1]
        if t in ("count_color", "count_shape", "exist") and rng.random() < 0.4:
            shape, colour = pick(SHAPES), pick(COLOURS)
        q = question(t, objs, colour=colour, shape=shape,
                     shape2=pick([s for s in SHAPES if s != shape]))
        if q is not None:
            return q
    return None


def answer_kind(template: str) -> tuple[str, ...]:
    """The answers a question of ``template`` can have (what a confused annotator picks from)."""
    yes_no = ("yes", "no")
    return {"color": COLOURS, "shape": SHAPES, "where": ("left", "right"), "exist": yes_no,
            "more": yes_no, "has_count": yes_no, "contains": yes_no}.get(
        template, tuple(str(k) for k in range(MAX_OBJECTS + 1)))


def tokens(text: str, length: int = MAX_TOKENS) -> np.ndarray:
    """int64 (length,) ids of ``text``'s words (:data:`VOCAB`), padded with 0."""
    ids = [VOCAB[w] for w in text.split()]
    if len(ids) > length:
        raise ValueError(f"{text!r} has {len(ids)} words; at most {length} fit")
    return np.array(ids + [0] * (length - len(ids)), dtype=np.int64)


def annotate(rng: np.random.Generator, answer: str, candidates: tuple[str, ...],
             annotators: int = 10, agree: float = 0.9) -> dict[str, int]:
    """How many of ``annotators`` simulated annotators give each answer: each gives ``answer``
    with probability ``agree``, else one of ``candidates`` (the answers of the question's kind)
    at random."""
    counts: dict[str, int] = {}
    for _ in range(annotators):
        a = answer if rng.random() < agree else candidates[int(rng.integers(len(candidates)))]
        counts[a] = counts.get(a, 0) + 1
    return counts


def soft_score(count: int) -> float:
    """VQA's soft score of an answer given by ``count`` of the 10 annotators: min(1, count / 3),
    as the official VQA v2 code rounds it: 0, 0.3, 0.6, 0.9, 1."""
    return (0.0, 0.3, 0.6, 0.9)[count] if count < 4 else 1.0


__all__ = ["ANSWERS", "COLOURS", "MAX_OBJECTS", "MAX_TOKENS", "QTYPES", "Question", "SHAPES",
           "SIZES", "Scenes", "TEMPLATES", "VOCAB", "annotate", "answer_kind", "question", "render",
           "NUMBER_WORDS", "STATEMENTS", "sample_question", "sample_scenes", "sample_statement",
           "soft_score", "statement", "tokens"]
