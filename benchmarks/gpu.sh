#!/usr/bin/env bash
# The GPU checks, as one script: classical pipeline throughput, the AlexNet family's time to test
# accuracy on Fashion-MNIST, and the fv_vs_alexnet experiment's full preset on the GPU.
#
#   bash benchmarks/gpu.sh [OUT_DIR]
#
# Run from the project's root, with the project importable (pip install --no-deps -e . or
# PYTHONPATH=.) and Fashion-MNIST where experiments.datasets finds it (data/fashion-mnist/ or
# $FVA_DATA_DIR/fashion-mnist). Each step writes its figures as JSON into OUT_DIR (default
# results/gpu) and prints a table; paste them into BENCHMARKS.md with the card's name.
set -euo pipefail
OUT="${1:-results/gpu}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

echo "== fv on the GPU: dsift, GMM, batched Fisher vectors"
"$PY" benchmarks/gpu_fv.py --device cuda --out "$OUT/fv.json"

echo "== AlexNet family on Fashion-MNIST: time to test accuracy"
"$PY" benchmarks/gpu_train.py --device cuda --out "$OUT/train.json"

echo "== fv_vs_alexnet, preset full, on the GPU"
"$PY" -m experiments.run fv_vs_alexnet --preset full --device cuda --jobs "$(nproc)" \
    --cache-dir "$OUT/cache" --out "$OUT/results" --run-id gpu-full
