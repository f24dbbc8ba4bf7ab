#!/usr/bin/env python
"""Generate the embedded AV-Digits store ``i2m2bench/data/embedded/avdigits_v1.npz``.

AV-Digits is a small, fully offline stand-in for AV-MNIST: every example pairs
a handwritten digit *image* with a spoken digit *word* of the same class, and
the label is the digit.  AV-MNIST (Vielzeuf et al., 2018, "CentralNet: a
Multilayer Approach for Multimodal Fusion"; used in MultiBench, Liang et al.,
2021) builds its examples the same way: the two modalities are independent
recordings that are only paired *within class*, so each modality alone is
predictive of the label and a fusion model can gain from combining them.

Why a stand-in: AV-MNIST needs MNIST plus the Free Spoken Digit / TIDIGITS
audio, which cannot be shipped inside a package.  Here

* images are NOT stored.  They come at load time from scikit-learn's bundled
  ``sklearn.datasets.load_digits()`` (1,797 8x8 images); the store only keeps
  indices into that array (fixed-seed shuffle: 1,197 train / 200 val /
  400 test images);
* audio is the ten words "zero" .. "nine" synthesised with eSpeak NG 1.52
  (through the PyPI wheel ``espeakng-loader==0.2.4``, called via ctypes).
  A *voice* is (English dialect, voice variant, rate, pitch, pitch range);
  each voice speaks every digit word once -> 10 utterances per voice.

Voices and the distribution shifts they encode
----------------------------------------------
Seven English dialects of eSpeak NG are used.  ``en-us-nyc`` (status
"testing", close to ``en-us``) and ``en-shaw`` (an alphabet, not an accent)
are left out.

* training dialects: ``en`` (British), ``en-us``, ``en-gb-x-rp`` (Received
  Pronunciation), ``en-gb-x-gbclan`` (Lancaster), ``en-gb-x-gbcwmd`` (West
  Midlands);
* shift dialects (held out): ``en-gb-scotland`` and ``en-029`` (Caribbean).
  They are the two most distinct accents: both have their own phoneme tables
  (``en-sc``, ``en-wi``) with systematic vowel replacements, and ``en-029``
  also maps dental fricatives to stops ("three" -> "tree").

The usable variants of ``voices/!v`` (all but the whisper voices, the
distorted "Demonic" and "Mr serious", whose file name has a space) are
shuffled once and split into a pool of 30 *test variants* and a pool of the
remaining *training variants*.  Each training dialect gets 16 voices with
variants from the training pool (group 0, used by the train and val splits)
and 6 voices with variants from the test pool (group 1, test split), so no
test voice variant is ever heard in training.  Each shift dialect gets 8
voices with variants from the training pool (group 2), so that the
``shift_dialects`` split isolates the accent shift.  Rate (140-200 wpm), pitch
(30-70) and pitch range (30-70) are drawn per voice.

Pairs (within class, as AV-MNIST): train = each train image x 3 distinct
group-0 utterances of its digit; val = each val image x 2 group-0
utterances; test = each test image x 2 group-1 utterances;
``shift_dialects`` = each test image x 2 group-2 utterances.  Pair order is
shuffled within each split.

Audio storage: 22,050 Hz -> 8,000 Hz with ``scipy.signal.resample_poly(x,
160, 441)``, leading/trailing silence trimmed, capped at 1.1 s,
peak-normalised, 8-bit mu-law (mu = 255, same convention as
``torchaudio.functional.mu_law_encoding``), concatenated into one uint8 array
with int64 offsets.  All randomness comes from ``numpy.random.default_rng``
with ``SEED``, which is recorded in the file.

Reproducibility: eSpeak NG's breath/roughness noise is random (its own
generator plus libc ``rand()``), so both are reseeded before every utterance
(``espeak_ng_SetRandSeed`` / ``srand``); the synthesis runs in a fresh child
process with a fixed call order, and the npz is written with fixed zip
timestamps, sorted keys and a fixed compression level.  The result is bit-for-bit identical across
runs on the same platform / library versions (numpy, scipy, zlib, espeak-ng).

Licence note: eSpeak NG is GPL-3.0.  It is only used *offline*, by this
script (install the optional extra ``regen``); the package itself ships only
the generated data file and never loads eSpeak NG.

Usage::

    python scripts/make_avdigits.py [--out PATH] [--check]

``--check`` regenerates into a temporary file and exits non-zero unless it is
byte-identical to the shipped file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1
SEED = 20241210

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "i2m2bench" / "data" / "embedded" / "avdigits_v1.npz"

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_DIALECTS = ("en", "en-us", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
SHIFT_DIALECTS = ("en-gb-scotland", "en-029")
DIALECTS = TRAIN_DIALECTS + SHIFT_DIALECTS
EXCLUDED_VARIANTS = frozenset({"whisper", "whisperf", "Demonic", "Mr serious"})

N_TEST_VARIANT_POOL = 30
N_TRAIN_VOICES_PER_DIALECT = 16
N_TEST_VOICES_PER_DIALECT = 6
N_SHIFT_VOICES_PER_DIALECT = 8
RATE_RANGE = (140, 200)  # words per minute, inclusive
PITCH_RANGE = (30, 70)  # 0-100, inclusive
RANGE_RANGE = (30, 70)  # 0-100, inclusive

N_IMAGES = 1797
N_TRAIN_IMAGES, N_VAL_IMAGES, N_TEST_IMAGES = 1197, 200, 400
PAIRS_PER_IMAGE = {"train": 3, "val": 2, "test": 2, "shift_dialects": 2}
SPLITS = ("train", "val", "test", "shift_dialects")

ESPEAK_RATE = 22050
SAMPLE_RATE = 8000
MAX_SECONDS = 1.1
TRIM_REL_THRESHOLD = 0.01  # of the utterance peak
TRIM_MARGIN = 160  # samples (20 ms at 8 kHz) kept around the speech
MU = 255
ZIP_COMPRESSLEVEL = 9
MAX_FILE_BYTES = 4_500_000

GROUP_TRAIN, GROUP_TEST, GROUP_SHIFT = 0, 1, 2


# --------------------------------------------------------------------------
# eSpeak NG synthesis (runs in a fresh child process)
# --------------------------------------------------------------------------


def _espeak_paths() -> tuple[str, str]:
    import espeakng_loader  # GPL-3.0; offline only (optional extra "regen")

    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def available_variants() -> list[str]:
    """Sorted usable variant names found in eSpeak NG's ``voices/!v``."""
    _, data_dir = _espeak_paths()
    vdir = Path(data_dir) / "voices" / "!v"
    names = sorted(p.name for p in vdir.iterdir() if p.is_file())
    return [n for n in names if n not in EXCLUDED_VARIANTS]


def _synth_worker(voices_json: str, out_path: str) -> None:
    """Child-process entry: synthesise every (voice, digit) in fixed order."""
    import ctypes

    lib_path, data_dir = _espeak_paths()
    lib = ctypes.CDLL(lib_path)
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    libc = ctypes.CDLL(None)  # the process's libc, whose rand() eSpeak NG also uses
    libc.srand.argtypes = [ctypes.c_uint]
    sr = lib.espeak_Initialize(2, 0, data_dir.encode(), 0)  # AUDIO_OUTPUT_SYNCHRONOUS
    if sr != ESPEAK_RATE:
        raise RuntimeError(f"espeak_Initialize returned {sr}, expected {ESPEAK_RATE}")
    version = lib.espeak_Info(None).decode()

    chunks: list[np.ndarray] = []
    cb_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def _cb(wav, numsamples, events):  # noqa: ANN001
        if numsamples > 0 and wav:
            chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    cb = cb_type(_cb)
    lib.espeak_SetSynthCallback(cb)

    vdir = Path(data_dir) / "voices" / "!v"
    voices = json.loads(Path(voices_json).read_text())
    waves: list[np.ndarray] = []
    utt = 0
    for dialect, variant, rate, pitch, prange in voices:
        if not (vdir / variant).is_file():  # espeak silently ignores unknown variants
            raise RuntimeError(f"eSpeak NG variant {variant!r} not found in {vdir}")
        name = f"{dialect}+{variant}".encode()
        if lib.espeak_SetVoiceByName(name) != 0:
            raise RuntimeError(f"espeak_SetVoiceByName({name!r}) failed")
        for word in DIGIT_WORDS:
            lib.espeak_SetParameter(1, int(rate), 0)  # espeakRATE
            lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH
            lib.espeak_SetParameter(4, int(prange), 0)  # espeakRANGE
            # breath / roughness noise is random (eSpeak's own generator and libc
            # rand()): reseed both per utterance so every clip is reproducible
            utt += 1
            lib.espeak_ng_SetRandSeed(SEED + utt)
            libc.srand(SEED + utt)
            chunks.clear()
            text = word.encode()
            err = lib.espeak_Synth(text, len(text) + 1, 0, 1, 0, 0, None, None)  # POS_CHARACTER, CHARS_AUTO
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed ({err}) for {name!r} {word!r}")
            lib.espeak_Synchronize()
            if not chunks:
                raise RuntimeError(f"no audio for {name!r} {word!r}")
            waves.append(np.concatenate(chunks).astype(np.int16))
    lib.espeak_Terminate()
    lengths = np.array([len(w) for w in waves], dtype=np.int64)
    np.savez(out_path, pcm=np.concatenate(waves), lengths=lengths, version=np.array(version))


def synthesise(voices: list[tuple[str, str, int, int, int]]) -> tuple[list[np.ndarray], str]:
    """Run the synthesis in a fresh child process; returns int16 waves and espeak version."""
    with tempfile.TemporaryDirectory() as tmp:
        vj = Path(tmp) / "voices.json"
        vj.write_text(json.dumps(voices))
        out = Path(tmp) / "pcm.npz"
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--_synth-worker", str(vj), str(out)],
            check=True,
        )
        with np.load(out, allow_pickle=False) as z:
            pcm, lengths, version = z["pcm"], z["lengths"], str(z["version"])
    offs = np.concatenate([[0], np.cumsum(lengths)])
    return [pcm[offs[i] : offs[i + 1]] for i in range(len(lengths))], version


# --------------------------------------------------------------------------
# Audio processing
# --------------------------------------------------------------------------


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> uint8 (torchaudio.functional.mu_law_encoding convention)."""
    x = np.clip(x, -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.floor((y + 1.0) / 2.0 * MU + 0.5).astype(np.uint8)


def process_wave(pcm: np.ndarray) -> np.ndarray:
    """int16 @ 22,050 Hz -> trimmed, capped, peak-normalised mu-law uint8 @ 8 kHz."""
    from scipy.signal import resample_poly

    x = resample_poly(pcm.astype(np.float64) / 32768.0, 160, 441)
    a = np.abs(x)
    peak = a.max()
    if peak <= 0:
        raise RuntimeError("silent utterance")
    idx = np.flatnonzero(a > TRIM_REL_THRESHOLD * peak)
    start = max(int(idx[0]) - TRIM_MARGIN, 0)
    stop = min(int(idx[-1]) + 1 + TRIM_MARGIN, len(x))
    x = x[start:stop][: int(round(MAX_SECONDS * SAMPLE_RATE))]
    x = x / np.abs(x).max()
    return mulaw_encode(x)


# --------------------------------------------------------------------------
# Deterministic npz writer
# --------------------------------------------------------------------------


def write_npz_deterministic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed but byte-reproducible (fixed dates, order, level)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_COMPRESSLEVEL) as zf:
        for key in sorted(arrays):
            arr = np.asarray(arrays[key])
            if arr.dtype.hasobject:
                raise TypeError(f"{key}: object arrays are not allowed")
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=ZIP_COMPRESSLEVEL)
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------


def build_voices(rng: np.random.Generator, variants: list[str]) -> tuple[list[tuple], list[int]]:
    """Voice table [(dialect, variant, rate, pitch, range)] and group per voice."""
    perm = rng.permutation(len(variants))
    test_pool = [variants[i] for i in sorted(perm[:N_TEST_VARIANT_POOL])]
    train_pool = [variants[i] for i in sorted(perm[N_TEST_VARIANT_POOL:])]

    def draw(dialect: str, pool: list[str], n: int) -> list[tuple]:
        chosen = rng.choice(len(pool), size=n, replace=False)
        out = []
        for i in chosen:
            rate = int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1))
            pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
            prange = int(rng.integers(RANGE_RANGE[0], RANGE_RANGE[1] + 1))
            out.append((dialect, pool[int(i)], rate, pitch, prange))
        return out

    voices: list[tuple] = []
    groups: list[int] = []
    for d in TRAIN_DIALECTS:
        v = draw(d, train_pool, N_TRAIN_VOICES_PER_DIALECT)
        voices += v
        groups += [GROUP_TRAIN] * len(v)
        v = draw(d, test_pool, N_TEST_VOICES_PER_DIALECT)
        voices += v
        groups += [GROUP_TEST] * len(v)
    for d in SHIFT_DIALECTS:
        v = draw(d, train_pool, N_SHIFT_VOICES_PER_DIALECT)
        voices += v
        groups += [GROUP_SHIFT] * len(v)
    # sanity: test variants never occur among training voices
    train_vars = {v[1] for v, g in zip(voices, groups) if g == GROUP_TRAIN}
    assert not train_vars & {v[1] for v, g in zip(voices, groups) if g == GROUP_TEST}
    return voices, groups


def build_arrays() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(SEED)
    digit_labels = load_digits().target.astype(np.int64)
    if len(digit_labels) != N_IMAGES:
        raise RuntimeError(f"load_digits() has {len(digit_labels)} images, expected {N_IMAGES}")

    variants = available_variants()
    voices, groups = build_voices(rng, variants)

    pcm, version = synthesise(voices)
    encoded = [process_wave(w) for w in pcm]

    n_utt = len(voices) * len(DIGIT_WORDS)
    utt_digit = np.tile(np.arange(10, dtype=np.int8), len(voices))
    rep = lambda vals, dt: np.repeat(np.asarray(vals, dtype=dt), len(DIGIT_WORDS))  # noqa: E731
    utt_group = rep(groups, np.int8)
    variant_names = sorted({v[1] for v in voices})
    arrays: dict[str, np.ndarray] = {
        "wave_mulaw": np.concatenate(encoded).astype(np.uint8),
        "wave_offsets": np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64),
        "sample_rate": np.array(SAMPLE_RATE, dtype=np.int64),
        "utt_digit": utt_digit,
        "utt_dialect": rep([DIALECTS.index(v[0]) for v in voices], np.int8),
        "utt_variant": rep([variant_names.index(v[1]) for v in voices], np.int16),
        "utt_rate": rep([v[2] for v in voices], np.int16),
        "utt_pitch": rep([v[3] for v in voices], np.int16),
        "utt_range": rep([v[4] for v in voices], np.int16),
        "utt_group": utt_group,
        "dialects": np.array(DIALECTS),
        "variants": np.array(variant_names),
        "digit_words": np.array(DIGIT_WORDS),
        "seed": np.array(SEED, dtype=np.int64),
        "generator_version": np.array(GENERATOR_VERSION, dtype=np.int64),
        "espeak_version": np.array(version),
    }
    assert len(arrays["wave_offsets"]) == n_utt + 1

    # images: fixed-seed shuffle of load_digits indices
    perm = rng.permutation(N_IMAGES)
    image_sets = {
        "train": perm[:N_TRAIN_IMAGES],
        "val": perm[N_TRAIN_IMAGES : N_TRAIN_IMAGES + N_VAL_IMAGES],
        "test": perm[N_TRAIN_IMAGES + N_VAL_IMAGES :],
        "shift_dialects": perm[N_TRAIN_IMAGES + N_VAL_IMAGES :],
    }
    assert len(image_sets["test"]) == N_TEST_IMAGES
    utt_group_for = {"train": GROUP_TRAIN, "val": GROUP_TRAIN, "test": GROUP_TEST, "shift_dialects": GROUP_SHIFT}

    for s in SPLITS:
        k = PAIRS_PER_IMAGE[s]
        pool_by_digit = [np.flatnonzero((utt_group == utt_group_for[s]) & (utt_digit == d)) for d in range(10)]
        imgs, utts = [], []
        for img in image_sets[s]:
            pool = pool_by_digit[digit_labels[img]]
            chosen = rng.choice(pool, size=k, replace=False)
            imgs += [int(img)] * k
            utts += [int(u) for u in chosen]
        order = rng.permutation(len(imgs))
        arrays[f"{s}_image"] = np.asarray(imgs, dtype=np.int16)[order]
        arrays[f"{s}_utt"] = np.asarray(utts, dtype=np.int16)[order]
        arrays[f"{s}_label"] = digit_labels[arrays[f"{s}_image"]].astype(np.int8)
        assert np.array_equal(arrays[f"{s}_label"], utt_digit[arrays[f"{s}_utt"]])
    return arrays


def generate(out_path: str | os.PathLike = DEFAULT_OUT, write_sha_file: bool = True, verbose: bool = False) -> str:
    """Generate the store at ``out_path``; returns its hex sha256.

    With ``write_sha_file`` a ``<stem>.sha256`` file is written next to it.
    """
    out_path = Path(out_path)
    t0 = time.perf_counter()
    arrays = build_arrays()
    write_npz_deterministic(out_path, arrays)
    size = out_path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RuntimeError(f"{out_path} is {size} bytes > {MAX_FILE_BYTES}")
    digest = sha256_file(out_path)
    if write_sha_file:
        out_path.with_suffix(".sha256").write_text(f"{digest}  {out_path.name}\n")
    if verbose:
        g = arrays["utt_group"]
        print(f"utterances: {len(g)} (training voices {int((g == 0).sum())}, "
              f"test voices {int((g == 1).sum())}, shift dialects {int((g == 2).sum())})")
        lens = np.diff(arrays["wave_offsets"]) / SAMPLE_RATE
        print(f"utterance seconds: mean {lens.mean():.3f} min {lens.min():.3f} max {lens.max():.3f}")
        for s in SPLITS:
            print(f"split {s}: {len(arrays[f'{s}_image'])} pairs, {len(np.unique(arrays[f'{s}_image']))} images")
        print(f"training dialects: {', '.join(TRAIN_DIALECTS)}; shift dialects: {', '.join(SHIFT_DIALECTS)}")
        print(f"espeak-ng {arrays['espeak_version']}; seed {SEED}")
        print(f"wrote {out_path}: {size} bytes ({size / 1e6:.3f} MB) in {time.perf_counter() - t0:.1f} s")
        print(f"sha256 {digest}")
    return digest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_synth-worker":
        _synth_worker(argv[1], argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output npz path (default: the shipped file)")
    ap.add_argument("--check", action="store_true", help="regenerate to a temp file and compare with the shipped file")
    args = ap.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_out = Path(tmp) / DEFAULT_OUT.name
            digest = generate(tmp_out, write_sha_file=False, verbose=True)
            target = args.out
            if not target.exists():
                print(f"CHECK FAILED: {target} does not exist")
                return 1
            same = tmp_out.read_bytes() == target.read_bytes()
            sha_file = target.with_suffix(".sha256")
            sha_ok = sha_file.exists() and sha_file.read_text().split()[0] == digest
        if not same:
            print(f"CHECK FAILED: regenerated file differs from {target} (sha256 {sha256_file(target)})")
            return 1
        if not sha_ok:
            print(f"CHECK FAILED: {sha_file} does not hold {digest}")
            return 1
        print(f"CHECK OK: {target} is reproduced byte for byte")
        return 0
    generate(args.out, verbose=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
