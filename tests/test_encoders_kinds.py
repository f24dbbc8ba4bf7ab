"""The encoders of the newer modality kinds: output shapes, the property each one promises
(padding never matters to text, a pair shares weights and keeps its order, the ResNet has
GroupNorm and no BatchNorm, a GRU reads every step) and clear errors for the wrong modality."""
import pytest
import torch
from torch import nn

import i2m2bench
from i2m2bench.encoders import ENCODERS, build_encoder
from i2m2bench.types import ModalitySpec

TEXT = ModalitySpec("text", (12,), "tokens", "text_gru", pad_id=0, vocab_size=30)
SERIES = ModalitySpec("series", (9, 4), "timeseries", "gru")
IMAGE = ModalitySpec("img", (2, 20, 28), "image", "preact_resnet18_gn")
PAIR = ModalitySpec("pair", (2, 1, 16, 16), "image_pair", "pair")


def _text_batch(n=6, t=12, pad=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, 30, (n, t), generator=g)
    x[x == pad] = pad + 1
    lengths = torch.tensor([1, 3, 5, 8, 12, 12][:n])
    x[torch.arange(t)[None] >= lengths[:, None]] = pad
    return x


def test_new_encoders_are_registered():
    assert {"gru", "text_gru", "text_transformer", "preact_resnet18_gn", "pair", "mlp",
            "identity", "lenet"} <= set(ENCODERS.names())


@pytest.mark.parametrize("name,spec,want", [
    ("gru", SERIES, 16), ("text_gru", TEXT, 16), ("text_transformer", TEXT, 16),
    ("preact_resnet18_gn", IMAGE, 8 * 16), ("pair", PAIR, 2 * 16 * 8),
    ("preact_resnet18_gn", ModalitySpec("vol", (1, 3, 12, 12), "volume"), 8 * 16),
])
def test_output_shapes(name, spec, want):
    torch.manual_seed(0)
    enc = build_encoder(spec, name, width=16).eval()
    x = _text_batch() if spec.kind == "tokens" else torch.randn(6, *spec.shape)
    with torch.no_grad():
        out = enc(x)
    assert enc.out_dim == want and tuple(out.shape) == (6, want)
    assert bool(torch.isfinite(out).all())


# ------------------------------------------------------------------------------- text
@pytest.mark.parametrize("name", ["text_gru", "text_transformer"])
@pytest.mark.parametrize("pad", [0, 7])
def test_padding_never_changes_text_features(name, pad):
    spec = ModalitySpec("text", (12,), "tokens", name, pad_id=pad, vocab_size=30)
    torch.manual_seed(0)
    enc = build_encoder(spec, width=16).eval()
    x = _text_batch(pad=pad)
    with torch.no_grad():
        full = enc(x)
        shorter = enc(x[:, :8])[:4]  # the first four texts fit in 8 tokens: less padding
        if name == "text_gru":  # the GRU takes any length: more padding
            longer = enc(torch.cat([x, torch.full((6, 20), pad)], dim=1))
            assert torch.allclose(full, longer, atol=1e-6)
        changed = x.clone()  # one real token of text 4 replaced by another real token
        changed[4, 0] = pad + 1 if int(x[4, 0]) != pad + 1 else pad + 2
        other = enc(changed)
    assert torch.allclose(full[:4], shorter, atol=1e-5)
    assert not torch.allclose(other[4], full[4], atol=1e-4)  # ... which the features see
    assert torch.allclose(other[:4], full[:4], atol=1e-6)  # and no other text's


@pytest.mark.parametrize("name", ["text_gru", "text_transformer"])
def test_a_text_of_only_padding_gives_zero_features_and_gradients_flow(name):
    torch.manual_seed(0)
    enc = build_encoder(TEXT, name, width=16)
    x = _text_batch()
    x[2] = 0
    out = enc(x)
    assert bool((out[2] == 0).all()) and bool(out[3].abs().sum() > 0)
    out.sum().backward()
    assert enc.embed.weight.grad is not None and bool(enc.embed.weight.grad.abs().sum() > 0)
    assert bool((enc.embed.weight.grad[TEXT.pad_id] == 0).all())  # padding_idx: never trained


def test_text_encoders_need_a_vocabulary_size():
    bare = ModalitySpec("text", (12,), "tokens", "text_gru")
    with pytest.raises(ValueError, match=r"encoder 'text_gru' for modality 'text': the vocabulary "
                                         r"size is unknown; set ModalitySpec.vocab_size"):
        build_encoder(bare, width=8)
    enc = build_encoder(bare, "text_transformer", width=8, vocab_size=50)  # the option works too
    assert enc.embed.num_embeddings == 50
    with pytest.raises(ValueError, match=r"expected integer token ids"):
        build_encoder(TEXT, width=8)(torch.rand(2, 12))


# ------------------------------------------------------------------------------- GRU
@pytest.mark.parametrize("readout", ["last", "steps"])
def test_gru_reads_every_step_including_the_last(readout):
    torch.manual_seed(0)
    enc = build_encoder(SERIES, "gru", width=8, readout=readout).eval()
    x = torch.randn(3, 9, 4)
    with torch.no_grad():
        base = enc(x)
        for t in (0, 4, 8):
            y = x.clone()
            y[:, t] += 1.0
            assert not torch.allclose(enc(y), base, atol=1e-5), f"step {t} ignored"
    assert enc.out_dim == (8 if readout == "last" else 9 * 8)


def test_gru_steps_readout_matches_the_official_mimic_sizes():
    # divyam3897/I2M2 avmnist_and_mimic/mimic_main.py: GRU(12, 30, flatten=True) over 24 steps
    # (720 features) and GRUWithLinear(12, 30, 15, flatten=True) (360) for the unimodal expert
    mimic = ModalitySpec("timeseries", (24, 12), "timeseries", "gru")
    assert build_encoder(mimic, readout="steps").out_dim == 720
    assert build_encoder(mimic, readout="steps", step_dim=15).out_dim == 360
    assert build_encoder(mimic).gru.hidden_size == 30
    spec = ModalitySpec("ts", (24, 12), "timeseries", "gru", encoder_options={"readout": "steps"})
    assert build_encoder(spec, width=30).out_dim == 720  # the modality's own encoder options


# ------------------------------------------------------------------------------- ResNet
def test_preact_resnet_uses_group_norm_and_no_batch_norm():
    enc = build_encoder(IMAGE, width=64)
    norms = [m for m in enc.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in enc.modules())
    assert {m.num_groups for m in norms} == {32}  # the official GroupNorm(32, planes) at width 64
    assert sorted({m.num_channels for m in norms}) == [64, 128, 256, 512]
    blocks = [m for m in enc.modules() if type(m).__name__ == "PreActBlock"]
    assert len(blocks) == 8  # [2, 2, 2, 2]
    narrow = build_encoder(IMAGE, width=8)  # 8 channels: gcd(32, 8) = 8 groups
    assert min(m.num_groups for m in narrow.modules() if isinstance(m, nn.GroupNorm)) == 8
    pooled = build_encoder(IMAGE, width=8, pool=10)  # the official 10x10 pooling
    assert pooled.out_dim == 64 * 100


def test_preact_resnet_reads_any_image_size_and_is_batch_independent():
    torch.manual_seed(0)
    for shape in ((1, 9, 9), (3, 33, 17)):
        enc = build_encoder(ModalitySpec("m", shape, "image"), "preact_resnet18_gn", width=8)
        x = torch.randn(4, *shape)
        full = enc(x)  # in training mode: GroupNorm has no batch statistics
        assert tuple(full.shape) == (4, 64)
        assert torch.allclose(enc(x[:1]), full[:1], atol=1e-5)


# ------------------------------------------------------------------------------- pair
@pytest.mark.parametrize("inner", ["lenet", "preact_resnet18_gn", "mlp"])
def test_pair_shares_weights_and_keeps_the_order(inner):
    torch.manual_seed(0)
    enc = build_encoder(PAIR, "pair", width=8, inner=inner).eval()
    d = enc.inner.out_dim
    assert enc.out_dim == 2 * d
    x = torch.rand(5, 2, 1, 16, 16)
    with torch.no_grad():
        out = enc(x)
        swapped = enc(x.flip(1))
        left = enc.inner(x[:, 0])
    assert torch.allclose(out[:, :d], left, atol=1e-5)  # the left half is the left image's
    assert torch.allclose(swapped[:, :d], out[:, d:], atol=1e-5)  # one encoder for both images
    assert torch.allclose(swapped[:, d:], out[:, :d], atol=1e-5)
    assert not torch.allclose(swapped, out, atol=1e-4)  # the order matters
    n_inner = sum(p.numel() for p in enc.inner.parameters())
    assert sum(p.numel() for p in enc.parameters()) == n_inner  # shared, not two copies


def test_pair_inner_comes_from_the_modality_options():
    spec = ModalitySpec("pair", (2, 1, 16, 16), "image_pair", "pair",
                        encoder_options={"inner": "preact_resnet18_gn"})
    assert type(build_encoder(spec, width=8).inner).__name__ == "PreActResNet18GN"


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name,spec,message", [
    ("gru", ModalitySpec("v", (10,), "vector"),
     r"encoder 'gru' reads timeseries or sequence modalities of shape \(T, F\); modality 'v' is a "
     r"vector \(10,\)"),
    ("text_gru", SERIES, r"encoder 'text_gru' reads tokens modalities of shape \(T,\); modality "
                         r"'series' is a timeseries"),
    ("text_transformer", ModalitySpec("v", (10,), "vector"), r"modality 'v' is a vector"),
    ("preact_resnet18_gn", SERIES, r"encoder 'preact_resnet18_gn' reads image or spectrogram or "
                                   r"volume modalities .*modality 'series'"),
    ("preact_resnet18_gn", ModalitySpec("flat", (1, 8), "image"), r"\(C, H, W\).*modality 'flat'"),
    ("pair", IMAGE, r"encoder 'pair' reads image_pair modalities of shape \(2, C, H, W\); "
                    r"modality 'img' is a image"),
    ("mlp", TEXT, r"encoder 'mlp' reads float features; modality 'text' holds token ids"),
    ("identity", TEXT, r"encoder 'identity' reads float features; modality 'text'"),
    ("lenet", PAIR, r"lenet needs \(C, H, W\) inputs; modality 'pair'"),
])
def test_wrong_modalities_are_refused_by_name(name, spec, message):
    with pytest.raises(ValueError, match=message):
        build_encoder(spec, name, width=8)


def test_strategies_build_on_every_new_kind():
    task = i2m2bench.build_task("toy_kinds", n_train=16, n_eval=8)
    spec = task.spec
    batch = task.splits["train"].batch(torch.arange(16), spec)
    for name, options in (("late_fusion", {"width": 8}), ("early_fusion", {"width": 8}),
                          ("intra_only", {"intra_options": {"width": 8}}),
                          ("i2m2", {"inter_options": {"width": 8}, "intra_options": {"width": 8}})):
        model = i2m2bench.build_fusion(name, spec, **options)
        logits = model(batch)
        loss = model.loss(logits, batch)
        loss.backward()
        assert bool(torch.isfinite(loss)), name
