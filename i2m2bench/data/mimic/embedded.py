"""The EMBEDDED synthetic ICU cohort: MIMIC-III's layout, generated from a seed (NumPy only).

**Synthetic, not patients.** Nothing here comes from MIMIC-III or any record: every value is drawn
from the small generative model below, written for this benchmark. It exists so that the MIMIC
suite runs out of the box and so that its three tasks have *known* dependency structures.

The generator returns the four arrays of MultiBench's ``im.pk`` (``ep_tdata`` (N, 24, 12),
``adm_features_all`` (N, 5), ``adm_labels_all`` (N, 6), ``y_icd9`` (N, 20); see
:mod:`i2m2bench.data.mimic.real`), so the embedded data go through exactly the processing of the
real file: NaN/Inf to 0, z-scoring, the official split, the official label rules.

Generative model (per patient; ``z(.)`` is a fixed standardisation, not the sample's):

* **Static features** (``STATIC``): age (years), sex (1 = male), admission type (0 elective,
  1 emergency, 2 urgent), comorbidity score (a count), ICU type (0..4: MICU, SICU, CCU, CSRU,
  TSICU). Frailty ``f = 0.7 z(age) + 0.6 z(comorbidity) + 0.3 [emergency]``, rescaled to unit
  variance at hospital A.
* **Latent trajectories** over 24 hours: systemic severity ``s(t) = s0 + d t/23 + AR(1) noise``
  with ``s0 ~ 0.3 f + N(0, 1)`` and deterioration ``d ~ N(0, 1)`` (its sign: worsening or
  recovering), and a respiratory process ``r(t) = r0 + r1 t/23``, ``r0, r1 ~ N(0, 1)``,
  independent of the static features.
* **Hourly variables** (``SERIES``): heart rate, systolic / diastolic / mean blood pressure,
  respiratory rate, SpO2, temperature, GCS (vitals), glucose, lactate, creatinine, WBC (labs),
  each a baseline plus loadings on ``s`` and ``r`` plus noise, in clinical units.
* **Missingness**: a vital is measured in an hour with probability ``vital_rate`` (0.9), a lab
  with ``lab_rate`` (0.2; drawn at admission with probability 0.85); unmeasured hours carry the
  last observation forward (the real ``im.pk`` arrives imputed already); hours before the first
  measurement stay NaN, which the official processing turns into 0 before z-scoring.

Labels, built so that the tasks' dependencies differ:

* ``y_icd9[:, 1]`` (ICD-9 140-239, neoplasms) -- **static** (intra): ``logit = 1.1 z(age) +
  0.9 z(comorbidity) + 1.3 [elective] + 0.1 s0 - 1.6``, plus logistic noise.
* ``y_icd9[:, 7]`` (ICD-9 460-519, respiratory) -- **series** (intra): ``logit = 1.6 mean_t r(t)
  + 0.15 z(age) - 1.3`` plus logistic noise: visible in respiratory rate, SpO2, temperature, WBC.
* **Mortality** (``adm_labels_all[:, 1..5]``, six classes by the official first-positive rule)
  -- **interaction** (inter): hazard ``h = f d + 0.25 (f + d) + N(0, 0.35^2)``; frailty alone or
  deterioration alone says how extreme ``h`` may be, not its sign. Class 0 (no death within the
  horizons) below the 60th percentile of hospital A's hazard, then classes 5, 4, 3, 2, 1 (earlier
  horizons) in 8% steps; the horizon columns are cumulative (death by an earlier horizon is
  death by every later one), so the first-positive rule reads the earliest.
* The other 18 ICD-9 columns: independent Bernoulli(0.1) filler; ``adm_labels_all[:, 0]``: any
  death within the horizons.

**Hospital B** (the shift set): older patients (mean age 72 vs 64), more emergency admissions,
another ICU mix, and sparser measurement (vitals 0.7, labs 0.1 per hour). The label mechanisms are
the same (a covariate shift), with hospital A's percentile thresholds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from i2m2bench.data.base import check_count
from i2m2bench.data.mimic.processing import SHIFT, check_arrays, digest, make_task
from i2m2bench.types import Task

STATIC = ("age", "sex", "admission_type", "comorbidity", "icu_type")
SERIES = ("heart_rate", "sbp", "dbp", "map", "resp_rate", "spo2", "temperature", "gcs",
          "glucose", "lactate", "creatinine", "wbc")
VITALS = 8  # the first 8 series are vitals, the last 4 labs
HOURS = 24
ICD_COLUMNS = 20
ICD_NEOPLASM, ICD_RESPIRATORY = 1, 7  # y_icd9 columns of ICD-9 140-239 and 460-519 (official)
MORTALITY_CUTS = (0.60, 0.68, 0.76, 0.84, 0.92)  # hazard percentiles: class 0, then 5, 4, 3, 2, 1


@dataclass(frozen=True)
class Hospital:
    """A hospital's population and measurement practice."""

    age_mean: float = 64.0
    male: float = 0.56
    admission: tuple[float, float, float] = (0.15, 0.75, 0.10)  # elective, emergency, urgent
    icu: tuple[float, ...] = (0.35, 0.15, 0.15, 0.2, 0.15)  # MICU, SICU, CCU, CSRU, TSICU
    vital_rate: float = 0.9
    lab_rate: float = 0.2


HOSPITAL_A = Hospital()
HOSPITAL_B = Hospital(age_mean=72.0, male=0.5, admission=(0.05, 0.88, 0.07),
                      icu=(0.5, 0.1, 0.25, 0.05, 0.1), vital_rate=0.7, lab_rate=0.1)

_AGE = (64.0, 16.0)  # the fixed standardisation z(age) (hospital A's population, near)
_COMORB = (2.19, 1.60)  # hospital A's comorbidity mean and sd
_FRAILTY = (0.2168, 1.0753)  # mean and sd of the raw frailty at hospital A (400k draws)


def _latents(n: int, hosp: Hospital, rng: np.random.Generator) -> dict[str, np.ndarray]:
    age = np.clip(rng.normal(hosp.age_mean, 16.0, n), 18, 95)
    sex = (rng.random(n) < hosp.male).astype(np.float64)
    adm = rng.choice(3, size=n, p=hosp.admission).astype(np.float64)
    icu = rng.choice(len(hosp.icu), size=n, p=hosp.icu).astype(np.float64)
    comorb = rng.poisson(np.clip(2.2 + 0.04 * (age - 64), 0.2, None)).astype(np.float64)
    za, zc = (age - _AGE[0]) / _AGE[1], (comorb - _COMORB[0]) / _COMORB[1]
    frailty = (0.7 * za + 0.6 * zc + 0.3 * (adm == 1) - _FRAILTY[0]) / _FRAILTY[1]
    return dict(age=age, sex=sex, adm=adm, icu=icu, comorb=comorb, za=za, zc=zc, f=frailty,
                d=rng.normal(0, 1, n), s0=0.3 * frailty + rng.normal(0, 1, n),
                r0=rng.normal(0, 1, n), r1=rng.normal(0, 1, n), eps=rng.normal(0, 0.35, n),
                u_neo=rng.logistic(size=n), u_resp=rng.logistic(size=n))


def _hazard(lat: dict[str, np.ndarray]) -> np.ndarray:
    f, d = lat["f"], lat["d"]
    return f * d + 0.25 * (f + d) + lat["eps"]


_THRESHOLDS: np.ndarray | None = None


def mortality_thresholds() -> np.ndarray:
    """Hospital A's hazard percentiles :data:`MORTALITY_CUTS`, from a fixed reference draw of
    200,000 patients (the same thresholds for every cohort, seed and hospital)."""
    global _THRESHOLDS
    if _THRESHOLDS is None:
        lat = _latents(200_000, HOSPITAL_A, np.random.default_rng(20261128))
        _THRESHOLDS = np.quantile(_hazard(lat), MORTALITY_CUTS)
    return _THRESHOLDS


def _series(lat: dict[str, np.ndarray], hosp: Hospital, rng: np.random.Generator) -> np.ndarray:
    """(N, 24, 12) hourly values, measured or carried forward, NaN before the first measurement."""
    n = len(lat["d"])
    t = np.arange(HOURS) / (HOURS - 1)  # (24,)
    ar = np.zeros((n, HOURS))
    for k in range(1, HOURS):  # AR(1) noise of the severity
        ar[:, k] = 0.8 * ar[:, k - 1] + rng.normal(0, 0.25, n)
    s = lat["s0"][:, None] + lat["d"][:, None] * t + ar  # (N, 24)
    r = lat["r0"][:, None] + lat["r1"][:, None] * t
    noise = lambda sd: rng.normal(0, sd, (n, HOURS))  # noqa: E731
    mean_bp = 80 - 6 * s + noise(5)
    x = np.stack([
        85 + 8 * s + 4 * r + noise(5),                   # heart rate
        mean_bp + 35 + noise(6),                         # systolic
        mean_bp - 15 + noise(4),                         # diastolic
        mean_bp,                                         # mean arterial pressure
        18 + 1.5 * s + 4 * r + noise(2),                 # respiratory rate
        np.minimum(100, 97 - 0.8 * s - 2.5 * r + noise(1)),  # SpO2
        37 + 0.3 * s + 0.4 * r + noise(0.3),             # temperature
        np.clip(np.round(14 - 1.2 * s + noise(0.7)), 3, 15),  # GCS
        130 + 15 * s + noise(25),                        # glucose
        1.6 * np.exp(0.25 * s) + noise(0.3),             # lactate
        1.1 + 0.15 * s + 0.003 * (lat["age"][:, None] - 64) + noise(0.2),  # creatinine
        10 + 1.5 * s + 1.0 * r + noise(2),               # WBC
    ], axis=-1)  # (N, 24, 12)
    rate = np.array([hosp.vital_rate] * VITALS + [hosp.lab_rate] * (len(SERIES) - VITALS))
    seen = rng.random(x.shape) < rate
    seen[:, 0, VITALS:] = rng.random((n, len(SERIES) - VITALS)) < 0.85  # admission labs
    # carry the last observation forward: index of the last measured hour at or before each hour
    hour = np.where(seen, np.arange(HOURS)[None, :, None], -1)
    last = np.maximum.accumulate(hour, axis=1)  # (N, 24, 12)
    out = np.take_along_axis(x, np.maximum(last, 0), axis=1)
    out[last < 0] = np.nan  # before the first measurement
    return out


def generate(n: int, seed: int = 0, hospital: Hospital = HOSPITAL_A) -> dict[str, np.ndarray]:
    """``n`` synthetic ICU stays in the layout of MultiBench's ``im.pk`` (float64 arrays
    ``ep_tdata``, ``adm_features_all``, ``adm_labels_all``, ``y_icd9``), from ``seed``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"mimic cohort: n must be a whole number >= 1; got {n!r}")
    rng = np.random.default_rng([seed, 16])
    lat = _latents(n, hospital, rng)
    series = _series(lat, hospital, rng)
    static = np.stack([np.round(lat["age"]), lat["sex"], lat["adm"], lat["comorb"], lat["icu"]], 1)

    cls = np.zeros(n, dtype=np.int64)  # 0 below the first cut, then 5, 4, 3, 2, 1
    for k, cut in enumerate(mortality_thresholds()):
        cls[_hazard(lat) > cut] = 5 - k
    adm_labels = np.zeros((n, 6))
    for c in range(1, 6):  # cumulative horizons: dead by horizon c -> positive from column c on
        adm_labels[:, c] = (cls >= 1) & (cls <= c)
    adm_labels[:, 0] = cls > 0

    icd = (rng.random((n, ICD_COLUMNS)) < 0.1).astype(np.float64)
    neo = (1.1 * lat["za"] + 0.9 * lat["zc"] + 1.3 * (lat["adm"] == 0) + 0.1 * lat["s0"] - 1.6
           + lat["u_neo"])
    resp = 1.6 * (lat["r0"] + lat["r1"] / 2) + 0.15 * lat["za"] - 1.3 + lat["u_resp"]
    icd[:, ICD_NEOPLASM] = neo > 0
    icd[:, ICD_RESPIRATORY] = resp > 0
    return {"ep_tdata": series, "adm_features_all": static, "adm_labels_all": adm_labels,
            "y_icd9": icd}


def build_embedded(task: str = "mortality", patients: int = 5000, shift_patients: int | None = None,
                   data_seed: int = 0, stats: str = "train") -> Task:
    """The EMBEDDED synthetic cohort (:func:`generate`): ``patients`` stays of
    hospital A split officially, and ``shift_patients`` (default: the test size) of hospital B."""
    check_count("mimic", "patients", patients, low=10)
    check_count("mimic", "shift_patients", shift_patients, optional=True)
    shift_n = patients // 10 if shift_patients is None else shift_patients
    arrays = check_arrays(generate(patients, data_seed), "the embedded cohort")
    other = check_arrays(generate(shift_n, data_seed + 1, HOSPITAL_B),
                            "the embedded cohort (hospital B)")
    return make_task(arrays, task, stats, "embedded",
                     "EMBEDDED synthetic ICU cohort (not patients)", {SHIFT: other},
                     options=dict(source="embedded", patients=patients, shift_patients=shift_n,
                                  data_seed=data_seed,
                                  checksum=digest({**arrays, **{f"b_{k}": v for k, v in other.items()}})))


__all__ = ["build_embedded", "HOSPITAL_A", "HOSPITAL_B", "Hospital", "ICD_NEOPLASM", "ICD_RESPIRATORY", "SERIES",
           "STATIC", "generate", "mortality_thresholds"]
