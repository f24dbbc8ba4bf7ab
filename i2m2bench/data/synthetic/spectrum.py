"""``dependency_spectrum``: a synthetic two-modality task that dials intra- against inter-modality
dependency, with its exact-model Bayes ceiling (its board layout is
:mod:`i2m2bench.reporting.spectrum`).

Madaan, Makino, Chopra, Cho, "Jointly Modeling Inter- & Intra-Modality Dependencies for
Multi-modal Learning" (NeurIPS 2024) argue that a task's label can depend on each modality alone
(*intra-modality* dependency), on how the modalities relate (*inter-modality* dependency), or on
a mix, and that a model of both (I2M2) does well across the range. This generator puts the mix on
a knob.

Generative process (C classes, modalities ``a`` and ``b``, each a vector in R^dim)::

    y   ~ Uniform{0..C-1}                          the label
    s   ~ Bernoulli(inter_share)                   per sample: which dependency carries y
    s=0 (intra): u_a = u_b = y;          c_a, c_b ~ Uniform, independent of y   (the pairing is noise)
    s=1 (inter): u_a, u_b ~ Uniform;     c_a ~ Uniform, c_b = (y - c_a) mod C   (y = c_a + c_b mod C)
    x_m = intra_snr * P_m[u_m] + inter_snr * Q_m[c_m] + N(0, I_dim)      m in {a, b}

``u_m`` is modality m's own label cue and ``c_m`` its random code; the rows of P_m and Q_m are 2C
orthonormal directions of R^dim (a fixed random rotation per modality, so every coordinate mixes
cue and code). In both branches u_m and c_m are each uniform and independent of each other, so
the marginal of a single modality is the same whatever y and inter_share: at
``inter_share=1`` each modality alone is *exactly* at chance; at ``inter_share=0`` the modalities
are independent given y (the codes' pairing carries no label information), so the product of the
two unimodal posteriors is the Bayes rule. In between, a fraction ``inter_share`` of samples is
labelled by the relation only, the rest by the cues only.

Why vectors: the dependency structure lives entirely in discrete latents (cue, code), which keeps
the Bayes posterior exact (a finite sum over latents of Gaussian likelihoods) and lets the
registry's MLP encoders, early fusion (concatenated inputs) and late fusion all apply unchanged;
the random rotation makes each modality a genuine 2C-factor mixture rather than one-hot features.

Shift sets (the paper's "robustness to missing dependencies"), built from the test set's own
latents and noise with one dependency removed:

* ``no_inter`` — c_b redrawn independently for every sample: the cross-modal relation is broken,
  each modality's own cue (where a sample has one) is untouched;
* ``no_intra`` — u_a, u_b redrawn independently for every sample: the cues are gone, the
  relation (where a sample has one) is untouched.

Bayes ceiling: p(y | x_a, x_b) is computed exactly by summing the Gaussian likelihoods over the
finite latents (s, u_a, u_b, c_a, c_b); the Bayes accuracy E_x[max_y p(y|x)] is then estimated by
Monte Carlo over ``BAYES_MC_SAMPLES`` fresh samples from a fixed seed (the mean of the maximum
posterior, which is unbiased and has lower variance than counting hits), with its standard error.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from i2m2bench.data.base import DATASETS
from i2m2bench.types import ModalitySpec, Split, Task, TaskSpec

VERSION = "1"
MODALITY_NAMES = ("a", "b")
SHIFTS = ("no_inter", "no_intra")
BAYES_MC_SAMPLES = 20000
BAYES_MC_SEED = 20241210  # fixed: the ceiling is a function of the options alone
_GEOMETRY_SEED = 1729  # the fixed rotations that place cues and codes in R^dim

DEFAULTS = dict(n_train=4000, n_eval=2000, classes=4, dim=16, inter_share=0.5, intra_snr=2.0,
                inter_snr=3.0, data_seed=0)


# ------------------------------------------------------------------------------ options
def _check_options(n_train, n_eval, classes, dim, inter_share, intra_snr, inter_snr, data_seed,
                   source) -> dict:
    def _int(name, value, low):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"dependency_spectrum: option {name!r} must be an integer >= {low}; "
                             f"got {value!r}")
        return int(value)

    def _real(name, value, low, high=math.inf):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                low <= float(value) <= high):
            rng = f"in [{low}, {high}]" if high < math.inf else f">= {low}"
            raise ValueError(f"dependency_spectrum: option {name!r} must be a number {rng}; "
                             f"got {value!r}")
        return float(value)

    if source not in ("auto", "synthetic"):
        raise ValueError(f"dependency_spectrum: option 'source' must be 'auto' or 'synthetic' (the "
                         f"data are generated, there are no files); got {source!r}")
    opts = dict(n_train=_int("n_train", n_train, 1), n_eval=_int("n_eval", n_eval, 1),
                classes=_int("classes", classes, 2), dim=_int("dim", dim, 1),
                inter_share=_real("inter_share", inter_share, 0.0, 1.0),
                intra_snr=_real("intra_snr", intra_snr, 0.0),
                inter_snr=_real("inter_snr", inter_snr, 0.0),
                data_seed=_int("data_seed", data_seed, 0))
    if opts["dim"] < 2 * opts["classes"]:
        raise ValueError(f"dependency_spectrum: option 'dim' must be >= 2 * classes = "
                         f"{2 * opts['classes']} (each modality holds C cue and C code directions, "
                         f"orthonormal); got dim={dim!r}")
    return opts


# ---------------------------------------------------------------------------- generator
@lru_cache(maxsize=16)
def geometry(classes: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, Q), each (2, C, dim) float64: per modality, C cue and C code directions, orthonormal."""
    gen = torch.Generator().manual_seed(_GEOMETRY_SEED)
    ps, qs = [], []
    for _ in MODALITY_NAMES:
        q, _r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
        basis = q.T[: 2 * classes]  # 2C orthonormal rows
        ps.append(basis[:classes])
        qs.append(basis[classes:])
    return torch.stack(ps), torch.stack(qs)


def sample_latents(n: int, classes: int, inter_share: float, gen: torch.Generator) -> dict:
    """The latents of n samples (all int64 (n,) except ``s``, bool): y, s, u_a, u_b, c_a, c_b."""
    y = torch.randint(0, classes, (n,), generator=gen)
    s = torch.rand(n, generator=gen, dtype=torch.float64) < inter_share
    rand_u = torch.randint(0, classes, (2, n), generator=gen)
    c_a = torch.randint(0, classes, (n,), generator=gen)
    c_b_free = torch.randint(0, classes, (n,), generator=gen)
    u_a = torch.where(s, rand_u[0], y)
    u_b = torch.where(s, rand_u[1], y)
    c_b = torch.where(s, (y - c_a) % classes, c_b_free)
    return dict(y=y, s=s, u_a=u_a, u_b=u_b, c_a=c_a, c_b=c_b)


def render(lat: dict, noise: torch.Tensor, classes: int, dim: int, intra_snr: float,
           inter_snr: float) -> dict[str, torch.Tensor]:
    """x_m = intra_snr P_m[u_m] + inter_snr Q_m[c_m] + noise_m (float64 (n, dim) per modality)."""
    P, Q = geometry(classes, dim)
    return {m: intra_snr * P[i, lat[f"u_{m}"]] + inter_snr * Q[i, lat[f"c_{m}"]] + noise[i]
            for i, m in enumerate(MODALITY_NAMES)}


def remove_dependency(lat: dict, which: str, classes: int, gen: torch.Generator) -> dict:
    """The latents with one dependency removed: ``no_inter`` redraws c_b, ``no_intra`` u_a, u_b."""
    out = dict(lat)
    n = lat["y"].shape[0]
    if which == "no_inter":
        out["c_b"] = torch.randint(0, classes, (n,), generator=gen)
    elif which == "no_intra":
        out["u_a"] = torch.randint(0, classes, (n,), generator=gen)
        out["u_b"] = torch.randint(0, classes, (n,), generator=gen)
    else:
        raise ValueError(f"unknown dependency removal {which!r}; expected one of {SHIFTS}")
    return out


def _draw(n: int, o: dict, gen: torch.Generator) -> tuple[dict, torch.Tensor]:
    lat = sample_latents(n, o["classes"], o["inter_share"], gen)
    noise = torch.randn(2, n, o["dim"], generator=gen, dtype=torch.float64)
    return lat, noise


def _split(lat: dict, noise: torch.Tensor, o: dict, name: str) -> Split:
    x = render(lat, noise, o["classes"], o["dim"], o["intra_snr"], o["inter_snr"])
    return Split({m: v.float() for m, v in x.items()}, lat["y"].clone(), name)


def task_spec(classes: int = DEFAULTS["classes"], dim: int = DEFAULTS["dim"]) -> TaskSpec:
    return TaskSpec(
        name="dependency_spectrum", version=VERSION,
        modalities=tuple(ModalitySpec(m, (dim,), "vector", "mlp") for m in MODALITY_NAMES),
        problem="multiclass", num_classes=classes, labels=tuple(str(i) for i in range(classes)),
        source="synthetic",
        description="synthetic two-modality task with an intra- vs inter-dependency knob",
    )


@DATASETS.register("dependency_spectrum")
def build_dependency_spectrum(n_train: int = DEFAULTS["n_train"], n_eval: int = DEFAULTS["n_eval"],
                              classes: int = DEFAULTS["classes"], dim: int = DEFAULTS["dim"],
                              inter_share: float = DEFAULTS["inter_share"],
                              intra_snr: float = DEFAULTS["intra_snr"],
                              inter_snr: float = DEFAULTS["inter_snr"],
                              data_seed: int = DEFAULTS["data_seed"],
                              source: str = "auto") -> Task:
    """Build the task; ``inter_share`` in [0, 1] moves it from pure intra- to pure inter-dependency.

    The data are generated: there is no ``data_root`` option.
    """
    o = _check_options(n_train, n_eval, classes, dim, inter_share, intra_snr, inter_snr,
                       data_seed, source)
    gen = torch.Generator().manual_seed(o["data_seed"])
    splits = {}
    for name, n in (("train", o["n_train"]), ("val", o["n_eval"]), ("test", o["n_eval"])):
        lat, noise = _draw(n, o, gen)
        splits[name] = _split(lat, noise, o, name)
        if name == "test":
            test_lat, test_noise = lat, noise
    shifts = {w: _split(remove_dependency(test_lat, w, o["classes"], gen), test_noise, o, w)
              for w in SHIFTS}  # the test samples, same noise, one dependency removed
    return Task(task_spec(o["classes"], o["dim"]), splits, shifts, options=o)


# ------------------------------------------------------------------------ Bayes ceiling
def log_likelihoods(x: torch.Tensor, m: int, classes: int, dim: int, intra_snr: float,
                    inter_snr: float) -> torch.Tensor:
    """log N(x; mu_m[u, c], I) up to a constant shared by all (u, c): (n, C_u, C_c) float64."""
    P, Q = geometry(classes, dim)
    mu = intra_snr * P[m][:, None, :] + inter_snr * Q[m][None, :, :]  # (C, C, dim)
    mu = mu.reshape(-1, dim)  # (C*C, dim), row u*C + c
    x = x.to(torch.float64)
    # -|x - mu|^2 / 2 = x.mu - |mu|^2 / 2 - |x|^2 / 2; the last term is the same for every (u, c)
    return (x @ mu.T - 0.5 * (mu * mu).sum(-1)).reshape(-1, classes, classes)


def log_posterior(x_a: torch.Tensor, x_b: torch.Tensor, classes: int, dim: int, intra_snr: float,
                  inter_snr: float, w_intra: float, w_inter: float, w_void: float) -> torch.Tensor:
    """log p(y | x_a, x_b), (n, C), under the mixture of three mechanisms with weights w_*.

    intra: u_a = u_b = y, codes free; inter: cues free, c_b = (y - c_a) mod C; void: all latents
    free (no label information). The training distribution is (1 - inter_share, inter_share, 0);
    ``no_inter`` is (1 - inter_share, 0, inter_share); ``no_intra`` is (0, inter_share,
    1 - inter_share). Exact: a finite sum over the latents of Gaussian likelihoods.
    """
    C = classes
    la = log_likelihoods(x_a, 0, C, dim, intra_snr, inter_snr)  # (n, u, c)
    lb = log_likelihoods(x_b, 1, C, dim, intra_snr, inter_snr)
    lse = torch.logsumexp
    # marginals over one latent (log sum, the uniform 1/C factors are added below)
    la_u, lb_u = lse(la, 2), lse(lb, 2)  # (n, u): sum over codes
    la_c, lb_c = lse(la, 1), lse(lb, 1)  # (n, c): sum over cues
    n = la.shape[0]
    terms = []
    if w_intra > 0:  # (1/C) * (1/C^2) sum_{c_a, c_b} L_a[y, c_a] L_b[y, c_b]
        terms.append(math.log(w_intra) - 3 * math.log(C) + la_u + lb_u)
    if w_inter > 0:  # (1/C) * (1/C^3) sum_{c_a} [sum_u L_a[u, c_a]] [sum_u L_b[u, y - c_a]]
        idx = (torch.arange(C)[:, None] - torch.arange(C)[None, :]) % C  # [y, c_a] -> c_b
        pair = la_c[:, None, :] + lb_c[:, idx]  # (n, y, c_a)
        terms.append(math.log(w_inter) - 4 * math.log(C) + lse(pair, 2))
    if w_void > 0:  # (1/C) * (1/C^4) sum over all latents: the same for every y
        void = lse(la_u, 1) + lse(lb_u, 1)  # (n,)
        terms.append(math.log(w_void) - 5 * math.log(C) + void[:, None].expand(n, C))
    joint = lse(torch.stack(terms), 0)  # (n, C) = log p(y, x) + const
    return joint - lse(joint, 1, keepdim=True)


def mechanism_weights(inter_share: float, which: str = "test") -> tuple[float, float, float]:
    """(w_intra, w_inter, w_void) of the test distribution or of a shift set."""
    p = float(inter_share)
    return {"test": (1 - p, p, 0.0), "no_inter": (1 - p, 0.0, p),
            "no_intra": (0.0, p, 1 - p)}[which]


def _option_key(options: dict) -> tuple:
    o = {**DEFAULTS, **{k: v for k, v in (options or {}).items() if k in DEFAULTS}}
    return (int(o["classes"]), int(o["dim"]), float(o["inter_share"]), float(o["intra_snr"]),
            float(o["inter_snr"]))


@lru_cache(maxsize=256)
def _bayes(key: tuple, which: str, n: int) -> dict:
    classes, dim, p, intra_snr, inter_snr = key
    o = dict(classes=classes, dim=dim, inter_share=p, intra_snr=intra_snr, inter_snr=inter_snr)
    gen = torch.Generator().manual_seed(BAYES_MC_SEED)
    lat, noise = _draw(n, o, gen)
    if which != "test":
        lat = remove_dependency(lat, which, classes, gen)
    x = render(lat, noise, classes, dim, intra_snr, inter_snr)
    post = log_posterior(x["a"], x["b"], classes, dim, intra_snr, inter_snr,
                         *mechanism_weights(p, which)).exp()
    best = post.max(1).values  # E[max_y p(y|x)] = Bayes accuracy (Rao-Blackwellised hits)
    out = {"ceiling": float(best.mean()), "ceiling_se": float(best.std() / math.sqrt(n))}
    if which != "test":  # the training setting's Bayes rule, scored on the shifted distribution
        train_rule = log_posterior(x["a"], x["b"], classes, dim, intra_snr, inter_snr,
                                   *mechanism_weights(p, "test")).argmax(1)
        hit = post.gather(1, train_rule[:, None])[:, 0]
        out.update(train_rule=float(hit.mean()), train_rule_se=float(hit.std() / math.sqrt(n)))
    return out


def bayes_ceiling(options: dict, which: str = "test", n: int = BAYES_MC_SAMPLES) -> dict:
    """Bayes-optimal accuracy of the task with ``options`` on ``which`` ("test" or a shift set).

    Returns ``ceiling`` (and its Monte Carlo standard error ``ceiling_se``); for a shift set also
    ``train_rule``: the accuracy there of the Bayes rule of the *training* distribution. Pure
    function of the options (fixed Monte Carlo seed), cached.
    """
    if which != "test" and which not in SHIFTS:
        raise ValueError(f"bayes_ceiling: which must be 'test' or one of {SHIFTS}; got {which!r}")
    return dict(_bayes(_option_key(options), which, int(n)))

