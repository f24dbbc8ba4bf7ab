"""What the content chain costs when a task is built (i2m2bench/data/common/chain.py): checking
the recorded inputs of a prepared folder at ``quick`` (a ``stat`` of each file) beside ``full``
(every byte hashed again) and beside reading every byte once with nothing else done (the floor of
``full``), on the same files in one run, with the per-100,000-file figures the docs quote.

    python -m pytest benchmarks/test_content_chain.py --benchmark-only \
        --benchmark-columns=median,rounds --benchmark-sort=name

``I2M2BENCH_BENCH_QUICK=1``: 2,000 files instead of 20,000 (checks the code, not the machine).
The files (16 KiB each, the size of a small image) are written once per session; the page cache
then holds them, so the figures are those of a warm cache, the usual case for a run that starts
right after another.
"""
from __future__ import annotations

import os

import pytest

from conftest import QUICK
from i2m2bench.data.common import chain

FILES = 2_000 if QUICK else 20_000
FILE_BYTES = 16 << 10


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(data root, the inputs record of FILES files in 100 folders)."""
    root = tmp_path_factory.mktemp("chain_inputs")
    paths = []
    for i in range(FILES):
        folder = root / "images" / f"{i % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:06d}.jpg"
        path.write_bytes(os.urandom(FILE_BYTES))
        paths.append(path)
    return root, chain.record_inputs(root, paths)


def _read_all(root, record):
    total = 0
    for rel in record["files"]:
        with open(root / rel, "rb") as fh:
            total += len(fh.read())
    return total


def _per_100k(benchmark):
    return round(benchmark.stats.stats.median * 100_000 / FILES, 2)


@pytest.mark.parametrize("level", ["quick", "full"])
def test_checking_the_recorded_inputs(benchmark, recorded, level):
    root, record = recorded
    result = benchmark.pedantic(chain.inputs_problem, args=(root, record, level), rounds=5,
                                iterations=1, warmup_rounds=1)
    assert result == (None, 0)
    benchmark.group = "content chain: checking the inputs of a prepared folder"
    benchmark.extra_info.update({"files": FILES, "file_bytes": FILE_BYTES,
                                 "seconds_per_100k_files": _per_100k(benchmark)})


def test_reading_every_byte_once(benchmark, recorded):
    root, record = recorded
    total = benchmark.pedantic(_read_all, args=(root, record), rounds=5, iterations=1,
                               warmup_rounds=1)
    assert total == FILES * FILE_BYTES
    benchmark.group = "content chain: checking the inputs of a prepared folder"
    benchmark.extra_info.update({"files": FILES, "file_bytes": FILE_BYTES,
                                 "seconds_per_100k_files": _per_100k(benchmark)})
