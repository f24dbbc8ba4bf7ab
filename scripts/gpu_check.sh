#!/usr/bin/env bash
# The GPU checks, in one script (issue 19). Run it on a machine with CUDA, from the repository
# root, in the environment of the README's set-up:
#
#     bash scripts/gpu_check.sh            # figures -> leaderboards/gpu/
#
# 1. the GPU tests: the Triton PoE kernel against the reference, splits on the GPU and streamed
#    from pinned memory, and two CUDA runs of a suite that must agree bit for bit;
# 2. the PoE kernel benchmarks on CUDA (every backend, Triton included, beside the GPU's measured
#    read and copy bandwidth): leaderboards/gpu/poe_kernel.md from leaderboards/gpu/bench/;
# 3. the AV-MNIST smoke suite on CUDA, twice (the second a forced retrain): every row of the two
#    runs must be bit-identical; its board is leaderboards/gpu/avmnist_smoke-embedded-avdigits.md;
# 4. with GPU_CHECK_TRAINING=1 (minutes more: 3.7 GB of data written to a temp folder), the
#    full-size AV-MNIST training throughput on CUDA -> leaderboards/gpu/training_throughput.md.
#
# Commit leaderboards/gpu/ afterwards: `leaderboard --check` then checks those tables too, and
# leaderboards/poe_kernel.md links them instead of saying that GPU figures are pending.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT="${GPU_CHECK_OUT:-leaderboards/gpu}"
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
          "gpu_check: no CUDA device here (torch.cuda.is_available() is False)")'
"$PY" -c 'import torch; print("gpu_check:", torch.cuda.get_device_name(), "torch", torch.__version__,
          "CUDA", torch.version.cuda)'
mkdir -p "$OUT"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

echo "== 1. GPU tests"
"$PY" -m pytest -q -p no:cacheprovider -rs tests/test_poe_triton.py tests/test_cuda_paths.py \
    tests/test_disk_split.py tests/test_poe.py

echo "== 2. PoE kernel benchmarks on CUDA"
I2M2BENCH_BENCH_DEVICE=cuda "$PY" -m i2m2bench bench --leaderboard-dir "$OUT"

echo "== 3. AV-MNIST smoke suite on CUDA, twice"
for pass in first again; do
    "$PY" -m i2m2bench run --gin gin/avmnist_smoke.gin --device cuda --no-progress \
        --out "$scratch/runs" --leaderboard-dir "$scratch/$pass" ${pass/again/--force}
done
"$PY" -m i2m2bench compare --exact "$scratch/first" "$scratch/again"
cp -r "$scratch/first/." "$OUT/"   # results, predictions and the board they render to

if [[ "${GPU_CHECK_TRAINING:-0}" == 1 ]]; then
    echo "== 4. Full-size AV-MNIST training throughput on CUDA"
    I2M2BENCH_BENCH_DEVICE=cuda I2M2BENCH_BENCH_OUT="$OUT" "$PY" -m pytest -q -p no:cacheprovider \
        benchmarks/test_training_throughput.py -k avmnist_full_size
fi
echo "gpu_check: done; figures under $OUT"
