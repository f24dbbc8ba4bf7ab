"""Fixtures in the real layouts of VQA-VS and NLVR2, and a tiny randomly initialised FLAVA backbone
saved to a local folder (nothing downloaded): shared by the vision-language tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(
    "what is the color how many are there a of on in red blue yes no left image right "
    "two dogs cats more than both images contain".split())]


def tiny_backbone(folder: Path) -> Path:
    """A FLAVA model with 16-wide, one-layer encoders and its processor, saved in ``folder``."""
    import torch
    from transformers import (BertTokenizerFast, FlavaConfig, FlavaImageProcessor, FlavaModel,
                              FlavaProcessor)

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    images = FlavaImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False)
    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    cfg = FlavaConfig(image_config=dict(**small, image_size=32, patch_size=16),
                      text_config=dict(**small, vocab_size=len(WORDS), max_position_embeddings=64),
                      multimodal_config=small, projection_dim=8, hidden_size=16)
    torch.manual_seed(0)
    FlavaModel(cfg).save_pretrained(folder)
    FlavaProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    return folder


def write_image(path: Path, seed: int, fmt: str = "JPEG") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)


ANSWER_CYCLE = ("yes", "no", "2", "Two", "red", "yes", "no.")


def _question(qid: int, image_id: int, k: int) -> tuple[dict, dict]:
    q = {"image_id": image_id, "question": "what is the color" if k % 2 else "how many dogs",
         "question_id": qid}
    mc = ANSWER_CYCLE[k % len(ANSWER_CYCLE)]
    answers = [{"answer": mc if j < 7 else "blue", "answer_confidence": "yes", "answer_id": j + 1}
               for j in range(10)]
    a = {"question_type": "what is the", "multiple_choice_answer": mc, "answers": answers,
         "image_id": image_id, "answer_type": "other", "question_id": qid}
    return q, a


def vqa_vs_root(root: Path, n_train: int = 40, n_val: int = 8, n_test: int = 12) -> Path:
    """``root`` holding ``vqa_vs/`` (the official layout) and ``coco/`` images; returns ``root``."""
    base = root / "vqa_vs"
    qid = 1000
    test_ids = []
    for stem, n in (("Training", n_train), ("Val", n_val), ("IID-Test", n_test)):
        qs, ans = [], []
        for k in range(n):
            image_id = 100 + (qid % 7)
            split = "train" if image_id % 2 else "val"
            write_image(root / "coco" / f"{split}2014" / f"COCO_{split}2014_{image_id:012d}.jpg",
                        image_id)
            q, a = _question(qid, image_id, k)
            qs.append(q)
            ans.append(a)
            if stem == "IID-Test":
                test_ids.append(q)
            qid += 1
        (base / stem).mkdir(parents=True, exist_ok=True)
        (base / stem / f"{stem}-Ques.json").write_text(json.dumps(qs))
        (base / stem / f"{stem}-Ans.json").write_text(json.dumps(ans))
    for j, s in enumerate(("QT", "KW", "KWP", "QT+KW", "KO", "KOP", "QT+KO", "KW+KO", "QT+KW+KO")):
        sub = [q for i, q in enumerate(test_ids) if (i + j) % 3 != 0]
        (base / "OOD-Test" / s).mkdir(parents=True, exist_ok=True)
        (base / "OOD-Test" / s / f"OOD-Test-{s}-Ques.json").write_text(json.dumps(sub))
    return root


def nlvr2_root(root: Path, sets: int = 4) -> Path:
    """``root/nlvr2`` in NLVR2's layout: JSON Lines per split, ``sets`` sentences x 2 pairs each,
    images as ``<id>-img{0,1}.png`` -- some of them JPEG bytes under the .png name, as in NLVR2."""
    base = root / "nlvr2"
    (base / "data").mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test1"):
        lines = []
        for s in range(sets):
            for pair in range(2):
                ident = f"{split}-{s}-{pair}-0"
                row = {"sentence": "both images contain two dogs" if s % 2 else "the left image has more cats",
                       "left_url": "http://x", "right_url": "http://y",
                       "label": "True" if (s + pair) % 2 else "False", "identifier": ident,
                       "writer": "w1", "synset": "dog", "query": "dogs"}
                where = base / "images" / split
                if split == "train":
                    row["directory"] = s % 3
                    where = where / str(s % 3)
                for k in (0, 1):
                    write_image(where / f"{ident.rsplit('-', 1)[0]}-img{k}.png", s * 10 + pair * 2 + k,
                                "JPEG" if (s + k) % 2 else "PNG")
                lines.append(json.dumps(row))
        (base / "data" / f"{split}.json").write_text("\n".join(lines) + "\n")
    return root
