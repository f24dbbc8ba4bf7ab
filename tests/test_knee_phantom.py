"""The synthetic knee k-space phantom (:mod:`i2m2bench.data.fastmri.embedded`): determinism, the
API's shapes and ranges, the label design (each label's evidence in its intended modality only,
acl in the combination only), undersampling, and that the images come from the shared
fastMRI k-space path."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from i2m2bench.data.fastmri import embedded as kp
from i2m2bench.data.fastmri.processing import LABELS, fft2c, magnitude_phase

PATIENTS, SLICES, SIZE = 100, 18, 32


@pytest.fixture(scope="module")
def data():
    """The phantom with its defaults (1800 slices), generated once for the module."""
    return kp.generate()


def _arrays(d: kp.PhantomData) -> dict:
    out = {k: getattr(d, k) for k in ("magnitude", "phase", "magnitude_us", "phase_us", "labels",
                                       "patient")}
    out.update({f"evidence.{k}": v for k, v in d.evidence.items()})
    return out


def _mag(x):
    return x[:, 0].astype(np.float64) * kp.MAG_SCALE


def _pha(x):
    return x[:, 0].astype(np.float64) * kp.PHASE_SCALE


# ---------------------------------------------------------------------------- API and determinism


def test_same_arguments_same_bytes_other_seed_differs():
    a = _arrays(kp.generate(patients=3, slices=4, seed=5))
    b = _arrays(kp.generate(patients=3, slices=4, seed=5))
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key
    c = _arrays(kp.generate(patients=3, slices=4, seed=6))
    for key in ("magnitude", "phase", "magnitude_us", "phase_us"):
        assert a[key].tobytes() != c[key].tobytes(), key
    # patient p draws from its own stream: fewer patients give a prefix
    d = _arrays(kp.generate(patients=2, slices=4, seed=5))
    for key in d:
        assert np.array_equal(d[key], a[key][:8]), key


def test_shapes_dtypes_and_ranges(data):
    n = PATIENTS * SLICES
    for name in ("magnitude", "phase", "magnitude_us", "phase_us"):
        x = getattr(data, name)
        assert x.shape == (n, 1, SIZE, SIZE) and x.dtype == np.int16, name
    for name in ("magnitude", "magnitude_us"):
        x = getattr(data, name)
        assert x.min() >= 0 and 1000 < x.max() < 32767 // 2, name  # headroom above the data
    for name in ("phase", "phase_us"):
        x = getattr(data, name)
        assert x.min() >= -32767 and x.max() <= 32767 and x.max() > 30000, name  # full [-pi, pi]
    assert data.labels.shape == (n, len(LABELS)) and data.labels.dtype == np.uint8
    assert set(np.unique(data.labels)) == {0, 1}
    assert data.patient.dtype == np.int64
    assert np.array_equal(data.patient, np.repeat(np.arange(PATIENTS), SLICES))  # contiguous
    assert set(data.evidence) == set(kp.EVIDENCE)
    for key, flag in data.evidence.items():
        assert flag.shape == (n,) and flag.dtype == bool, key
    for key in ("abnormal", "meniscus_tear", "cartilage"):
        assert np.array_equal(data.labels[:, LABELS.index(key)], data.evidence[key]), key
    assert kp.PHASE_SCALE * 32767 == pytest.approx(np.pi)


def test_label_rates_and_patient_propensity(data):
    rates = dict(zip(LABELS, data.labels.mean(0)))
    assert 0.2 <= rates["abnormal"] <= 0.4
    assert 0.2 <= rates["meniscus_tear"] <= 0.4
    assert 0.15 <= rates["cartilage"] <= 0.35
    assert 0.42 <= rates["acl"] <= 0.58
    # patients differ in propensity: per-patient rates vary well beyond binomial sampling
    for key in ("abnormal", "meniscus_tear", "cartilage"):
        per_patient = data.evidence[key].reshape(PATIENTS, SLICES).mean(1)
        p = per_patient.mean()
        assert per_patient.var() > 1.8 * p * (1 - p) / SLICES, key


def test_acl_is_the_xor_and_neither_coin_alone_informs_it(data):
    acl = data.labels[:, LABELS.index("acl")].astype(bool)
    mag, pha = data.evidence["acl_mag"], data.evidence["acl_phase"]
    assert np.array_equal(acl, mag ^ pha)
    assert 0.42 <= mag.mean() <= 0.58 and 0.42 <= pha.mean() <= 0.58
    for coin in (mag, pha):
        for value in (True, False):
            sel = coin == value
            tolerance = 3.5 * np.sqrt(0.25 / sel.sum())
            assert abs(acl[sel].mean() - acl.mean()) < tolerance


# ------------------------------------------------------------------------ where the evidence is


def _wrap(x):
    return np.angle(np.exp(1j * x))


def _abs_laplacian(x, wrapped: bool):
    c = x[:, 1:-1, 1:-1]
    diffs = (x[:, 1:-1, :-2] - c, x[:, 1:-1, 2:] - c, x[:, :-2, 1:-1] - c, x[:, 2:, 1:-1] - c)
    return np.abs(sum(_wrap(d) if wrapped else d for d in diffs))


def test_abnormal_dipole_shows_in_phase_not_magnitude(data):
    mag, pha = _mag(data.magnitude), _pha(data.phase)
    weight = mag[:, 1:-1, 1:-1] ** 2  # inside the object (the background phase is pure noise)

    def feature(lap):
        return (lap * weight).sum((1, 2)) / weight.sum((1, 2))

    y = data.evidence["abnormal"]
    assert roc_auc_score(y, feature(_abs_laplacian(pha, wrapped=True))) > 0.7
    assert 0.4 < roc_auc_score(y, feature(_abs_laplacian(mag, wrapped=False))) < 0.6


def _residual_features(images, wrapped: bool):
    """Each slice minus its patient's median slice (wrapped for phase), positive and negative
    parts averaged over 4 x 4 blocks: where the slice departs from the patient's usual look."""
    x = images.reshape(PATIENTS, SLICES, SIZE, SIZE)
    if wrapped:
        z = np.exp(1j * x)
        med = np.median(z.real, 1, keepdims=True) + 1j * np.median(z.imag, 1, keepdims=True)
        r = np.angle(z * np.conj(med))
    else:
        r = x - np.median(x, 1, keepdims=True)
    r = r.reshape(-1, SIZE // 4, 4, SIZE // 4, 4)
    parts = (np.maximum(r, 0).mean((2, 4)), np.maximum(-r, 0).mean((2, 4)))
    return np.concatenate([p.reshape(len(r), -1) for p in parts], 1)


@pytest.fixture(scope="module")
def probes(data):
    """Held-out AUROC of a logistic regression on each modality's residual features, trained on
    the first half of the patients and scored on the rest; ``score(modality, target)`` also
    returns the held-out decision values."""
    feats = {"magnitude": _residual_features(_mag(data.magnitude), wrapped=False),
             "phase": _residual_features(_pha(data.phase), wrapped=True)}
    train = data.patient < PATIENTS // 2
    cache = {}

    def score(modality, target):
        if (modality, target) not in cache:
            y = (data.labels[:, LABELS.index(target)].astype(bool) if target == "acl"
                 else data.evidence[target])
            f = feats[modality]
            mu, sd = f[train].mean(0), f[train].std(0) + 1e-9
            clf = LogisticRegression(C=0.1, max_iter=1000).fit((f[train] - mu) / sd, y[train])
            s = clf.decision_function((f[~train] - mu) / sd)
            cache[modality, target] = (roc_auc_score(y[~train], s), s, y[~train])
        return cache[modality, target]

    return score


@pytest.mark.parametrize("target, modality, floor", [
    ("meniscus_tear", "magnitude", 0.75),
    ("cartilage", "magnitude", 0.6),
    ("acl_mag", "magnitude", 0.85),
    ("abnormal", "phase", 0.65),
    ("acl_phase", "phase", 0.85),
])
def test_each_lesion_shows_in_its_modality_only(probes, target, modality, floor):
    other = "phase" if modality == "magnitude" else "magnitude"
    assert probes(modality, target)[0] > floor
    assert 0.4 < probes(other, target)[0] < 0.6


def test_acl_needs_both_modalities(probes):
    for modality in ("magnitude", "phase"):
        assert 0.4 < probes(modality, "acl")[0] < 0.6
    _, s_mag, y = probes("magnitude", "acl_mag")
    _, s_pha, _ = probes("phase", "acl_phase")
    p_mag, p_pha = 1 / (1 + np.exp(-s_mag)), 1 / (1 + np.exp(-s_pha))
    acl = probes("magnitude", "acl")[2]
    xor = p_mag * (1 - p_pha) + p_pha * (1 - p_mag)
    assert roc_auc_score(acl, xor) > 0.8


# ------------------------------------------------------------------------- k-space path and masks


def test_images_come_from_magnitude_phase_of_the_kspace():
    slices, wp = 5, kp.padded_width(SIZE)
    d = kp.generate(patients=3, slices=slices, seed=3)
    for p, rec in enumerate(kp._iter_patients(3, slices, SIZE, 3, 0.05)):
        sl = slice(p * slices, (p + 1) * slices)
        k = rec["kspace"]
        assert k.shape == (slices, 2 * SIZE, rec["width"]) and k.dtype == np.complex128
        m, ph = magnitude_phase(k, width=wp, crop=(SIZE, SIZE))  # un-quantised recomputation
        assert np.abs(_mag(d.magnitude[sl]) - m).max() <= kp.MAG_SCALE / 2 + 1e-6
        assert np.abs(_pha(d.phase[sl]) - ph).max() <= kp.PHASE_SCALE / 2 + 1e-6
        m, ph = magnitude_phase(k * rec["masks"][:, None, :], width=wp, crop=(SIZE, SIZE))
        assert np.abs(_mag(d.magnitude_us[sl]) - m).max() <= kp.MAG_SCALE / 2 + 1e-6
        assert np.abs(_pha(d.phase_us[sl]) - ph).max() <= kp.PHASE_SCALE / 2 + 1e-6


def test_undersampling_masks_and_aliasing(data):
    rec = next(kp._iter_patients(1, SLICES, SIZE, 0, 0.05))
    masks, w = rec["masks"], rec["width"]
    assert masks.shape == (SLICES, w) and masks.dtype == bool
    n_low = int(round(w * 0.08))
    start = (w - n_low + 1) // 2
    assert masks[:, start:start + n_low].all()  # centre columns always kept
    assert 0.15 < masks.mean() < 0.4  # about a quarter of the columns
    assert len({m.tobytes() for m in masks}) > 1  # one mask per slice
    full = data.magnitude[:, 0].reshape(len(data.magnitude), -1).astype(np.float64)
    under = data.magnitude_us[:, 0].reshape(len(full), -1).astype(np.float64)
    rel = np.abs(full - under).mean(1) / full.mean(1)
    assert rel.mean() > 0.1  # aliasing
    fc, uc = full - full.mean(1, keepdims=True), under - under.mean(1, keepdims=True)
    corr = (fc * uc).sum(1) / np.sqrt((fc ** 2).sum(1) * (uc ** 2).sum(1))
    assert corr.mean() > 0.85 and corr.min() > 0.6


def test_widths_keep_the_kspace_centre_and_the_object_in_the_crop():
    for size in (32, 64):
        widths, wp = kp.kspace_widths(size), kp.padded_width(size)
        assert widths and all(round(1.15 * size) <= w <= wp for w in widths)
        for w in range(round(1.15 * size), wp + 1):
            # a smooth real image keeps a zero phase unless the padding shifts the k-space centre
            # off the padded grid's centre, which puts a linear ramp (2 pi across) on the phase
            yy, xx = np.meshgrid(np.arange(2 * size) - size, np.arange(w) - w // 2, indexing="ij")
            image = np.exp(-(yy ** 2 + xx ** 2) / (2 * (size / 6) ** 2))
            _, p = magnitude_phase(fft2c(image), width=wp, crop=(size, size))
            ramp = np.abs(p[size // 3: 2 * size // 3, size // 3: 2 * size // 3]).max()
            assert (ramp < 1e-3) if w in widths else (ramp > 0.3), (size, w, ramp)
    # noiseless: the anatomy lies inside the columns the crop keeps
    rec = next(kp._iter_patients(1, 4, SIZE, 0, 0.0))
    wp = kp.padded_width(SIZE)
    m, _ = magnitude_phase(rec["kspace"], width=wp, crop=(2 * SIZE, wp))
    left = (wp - SIZE) // 2
    outside = np.concatenate([m[..., :left], m[..., left + SIZE:]], -1)
    assert outside.mean() < 0.05 * m[..., left:left + SIZE].mean()


def test_noise_level_follows_the_argument():
    corner = {}
    for noise in (0.0, 0.05, 0.1):
        d = kp.generate(patients=2, slices=4, seed=1, noise=noise)
        mag = _mag(d.magnitude)
        corner[noise] = np.concatenate([mag[:, :4, :4], mag[:, :4, -4:]]).mean()
    assert corner[0.0] < 0.2 * corner[0.05]
    assert 1.6 < corner[0.1] / corner[0.05] < 2.4


def test_other_sizes_and_argument_checks():
    d = kp.generate(patients=2, slices=3, size=64, seed=2)
    assert d.magnitude.shape == (6, 1, 64, 64) and d.phase_us.dtype == np.int16
    assert d.magnitude.max() > 4000
    d = kp.generate(patients=1, slices=2, size=33)  # odd sizes work too
    assert d.phase.shape == (2, 1, 33, 33) and d.magnitude.max() > 4000
    for bad in (dict(patients=0), dict(slices=1.5), dict(size=15), dict(noise=-0.1),
                dict(noise=float("nan"))):
        with pytest.raises(ValueError):
            kp.generate(**bad)
