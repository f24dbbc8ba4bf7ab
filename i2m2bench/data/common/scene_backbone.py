"""The frozen backbone of the EMBEDDED vision-language data: a small CNN, a text GRU and a
question-conditioned fusion, pretrained once on a disjoint, unbiased split of the scene world and
shipped as weights (``data/embedded/scene_backbone.npz``, with its sha256).

It mirrors the official setup of the I2M2 vision-language experiments, which freeze a pretrained
backbone (FIBER) and train only heads on its **image**, **text** and **joint** features:

* image: a 4-layer CNN over the 32 x 32 scene (an 8 x 8 grid of 64 channels), mean- and
  max-pooled, then linear: 64 features;
* text: word embeddings (32) and a GRU (64): its last state, 64 features;
* joint: the grid modulated by the question (FiLM: ``grid * gamma(q) + beta(q)``), a 1 x 1
  convolution, mean- and max-pooled, concatenated with the text feature and mapped to 128
  features -- the cross-modal representation an answer head reads.

The weights are made by ``scripts/make_scene_backbone.py`` (seeded; it trains the three parts
together on VQA-style soft scores of questions about scenes drawn *without* planted shortcuts,
from seeds no suite uses) and are loaded here with ``weights_only``-style safety: an ``.npz``
read with ``allow_pickle=False`` and checked against its recorded sha256.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from i2m2bench.data.common import scene_world as sw
from i2m2bench.data.base import DataError

WEIGHTS = Path(__file__).parents[1] / "embedded" / "scene_backbone.npz"
IMAGE_DIM, TEXT_DIM, JOINT_DIM = 64, 64, 128


class SceneBackbone(nn.Module):
    def __init__(self, answers: int = len(sw.ANSWERS)) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(48, 64, 3, padding=1), nn.ReLU())  # (B, 64, 8, 8)
        self.image_out = nn.Linear(128, IMAGE_DIM)
        self.embed = nn.Embedding(len(sw.VOCAB), 32, padding_idx=0)
        self.gru = nn.GRU(32, TEXT_DIM, batch_first=True)
        self.film = nn.Linear(TEXT_DIM, 2 * 64)
        self.mix = nn.Conv2d(64 + 2, 64, 1)  # + 2 coordinate channels: where things are
        self.joint_out = nn.Sequential(nn.Linear(128 + TEXT_DIM, JOINT_DIM), nn.ReLU())
        self.answer = nn.Linear(JOINT_DIM, answers)  # pretraining head only

    def features(self, images: torch.Tensor, tokens: torch.Tensor):
        """(image (B, 64), text (B, 64), joint (B, 128)) of uint8 images (B, 3, 32, 32) and token
        ids (B, T)."""
        grid = self.cnn(images.float() / 255.0)
        pooled = torch.cat([grid.mean((2, 3)), grid.amax((2, 3))], 1)
        image = torch.relu(self.image_out(pooled))
        lengths = (tokens != 0).sum(1).clamp(min=1)
        out, _ = self.gru(self.embed(tokens))
        text = out[torch.arange(len(tokens)), lengths - 1]  # the state after the last word
        gamma, beta = self.film(text).chunk(2, dim=1)
        b, _, h, w = grid.shape
        ys = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(b, 1, h, w)
        mod = grid * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        mixed = torch.relu(self.mix(torch.cat([mod, xs, ys], 1)))
        joint = self.joint_out(torch.cat([mixed.mean((2, 3)), mixed.amax((2, 3)), text], 1))
        return image, text, joint

    def forward(self, images, tokens):
        return self.answer(self.features(images, tokens)[2])


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def save(model: SceneBackbone, path: Path = WEIGHTS, **meta) -> str:
    """Write the weights as float32 arrays with their digest; returns the digest."""
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    digest = _digest(arrays)
    np.savez_compressed(path, **arrays, __digest__=np.array(digest),
                        **{f"__meta_{k}__": np.array(str(v)) for k, v in meta.items()})
    return digest


_CACHE: dict[str, SceneBackbone] = {}


def load(path: Path = WEIGHTS) -> SceneBackbone:
    """The shipped backbone in eval mode, its weights checked against their recorded digest."""
    key = str(path)
    if key not in _CACHE:
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if not k.startswith("__")}
                recorded = str(z["__digest__"])
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: the embedded scene backbone is missing or unreadable ({exc}); "
                            "reinstall the package or run scripts/make_scene_backbone.py") from exc
        if _digest(arrays) != recorded:
            raise DataError(f"{path}: its weights do not match their recorded digest (the file "
                            "changed); reinstall the package or run scripts/make_scene_backbone.py")
        model = SceneBackbone()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
        _CACHE[key] = model.eval()
    return _CACHE[key]


@torch.inference_mode()
def extract(images: np.ndarray, tokens: np.ndarray, batch_size: int = 512,
            model: SceneBackbone | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (image, text, joint) features of uint8 ``images`` (N, 3, 32, 32) and int64
    ``tokens`` (N, T) with the frozen backbone, on the CPU in one thread-deterministic pass."""
    model = model or load()
    outs = [[], [], []]
    for start in range(0, len(images), batch_size):
        feats = model.features(torch.from_numpy(images[start:start + batch_size]),
                               torch.from_numpy(tokens[start:start + batch_size]))
        for o, f in zip(outs, feats):
            o.append(f.numpy())
    return tuple(np.concatenate(o).astype(np.float32) for o in outs)


__all__ = ["IMAGE_DIM", "JOINT_DIM", "SceneBackbone", "TEXT_DIM", "WEIGHTS", "extract", "load",
           "save"]
