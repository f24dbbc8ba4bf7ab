"""Pretrain the frozen backbone of the EMBEDDED vision-language data and write
i2m2bench/data/embedded/scene_backbone.npz (see i2m2bench/data/common/scene_backbone.py).

Offline, seeded, CPU: scenes and questions (and, a quarter of the time, single-image statements
answered yes / no) drawn without planted shortcuts from seeds no suite uses (1_000_000 + k),
rendered at 32 x 32, trained on VQA-style soft scores (10 simulated annotators) with soft-target
cross-entropy. Usage: python scripts/make_scene_backbone.py
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from i2m2bench.data.common import scene_backbone as sb
from i2m2bench.data.common import scene_world as sw

SEED = 1_000_000


def pretraining_set(n: int, seed: int):
    rng = np.random.default_rng([SEED, seed])
    scenes = sw.sample_scenes(rng, n)
    toks, targets, keep = [], [], []
    for i in range(n):
        if rng.random() < 0.25:  # a quarter single-image statements (yes / no)
            q = sw.sample_statement(rng, scenes.objects(i))
        else:
            q = sw.sample_question(rng, scenes.objects(i))
        if q is None:
            continue
        counts = sw.annotate(rng, q.answer, sw.answer_kind(q.template))
        t = np.zeros(len(sw.ANSWERS), dtype=np.float32)
        for a, c in counts.items():
            t[sw.ANSWERS.index(a)] = sw.soft_score(c)
        toks.append(sw.tokens(q.text))
        targets.append(t)
        keep.append(i)
    images = sw.render(scenes, 32, seed=SEED + seed, rows=np.array(keep))
    return images, np.stack(toks), np.stack(targets)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=40000)
    ap.add_argument("--val", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    xi, xt, y = pretraining_set(args.train, 1)
    vi, vt, vy = pretraining_set(args.val, 2)
    print(f"data {len(y)} + {len(vy)} in {time.time() - t0:.0f} s")
    model = sb.SceneBackbone()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    g = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(y), generator=g)
        for k in range(0, len(y), 128):
            idx = order[k:k + 128].numpy()
            logits = model(torch.from_numpy(xi[idx]), torch.from_numpy(xt[idx]))
            target = torch.from_numpy(y[idx])
            loss = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(torch.from_numpy(vi[k:k + 1000]), torch.from_numpy(vt[k:k + 1000]))
                              for k in range(0, len(vy), 1000)]).argmax(1).numpy()
        score = vy[np.arange(len(vy)), pred].mean()
        print(f"epoch {epoch}: loss {loss.item():.3f}, val VQA score {score:.3f} "
              f"({time.time() - t0:.0f} s)", flush=True)
    digest = sb.save(model, val_vqa_score=f"{score:.4f}", train=len(y), epochs=args.epochs,
                     seed=SEED)
    print(f"wrote {sb.WEIGHTS} (digest {digest[:16]})")


if __name__ == "__main__":
    main()
