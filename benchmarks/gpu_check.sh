#!/usr/bin/env bash
# Training throughput on one GPU, side by side in one run (benchmarks/gpu_check.py): bare PyTorch loop vs
# the engine, CE vs LPL, eager vs the captured step (train.capture), one run vs N concurrent runs on the
# device, with and without MPS (--mps, default auto); ResNet-32, ResNet-110 and WRN-28-10 at batch 128 on
# synthetic CIFAR-format data, bf16 autocast, channels_last, each in the settings of its shipped LPL config
# (gpu_check.py's SHIPPED). Prints a Markdown table of images/s and ratios; writes
# OUT_DIR/gpu_check.{json,md}. ResNet-32 and ResNet-110, 2 repeats, took 140 s on an H200 (2026-11-29).
#
#   benchmarks/gpu_check.sh [OUT_DIR] [--repeats R] [--jobs N] [--models a,b]   # full check (GPU)
#   GPU_CHECK_QUICK=1 benchmarks/gpu_check.sh [OUT_DIR]                          # shortened (CPU, seconds)
#   benchmarks/gpu_check.sh OUT_DIR --compile --models resnet32 --repeats 1     # + train.capture = "compile"
#   benchmarks/gpu_check.sh OUT_DIR --compile-loss --models resnet32            # + train.compile_loss = true
#
# Off CUDA the shortened mode is the default. PYTHON: default .venv/bin/python if present, else python3
# (on the GPU machine: its python3, which holds PyTorch; the checkout is put on PYTHONPATH).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="gpu_check"  # the first argument, unless it is already a flag (then the default folder)
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUT_DIR="$1"; shift; fi
PY="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
QUICK=()
if [ "${GPU_CHECK_QUICK:-0}" = "1" ]; then QUICK=(--quick); fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" "${QUICK[@]}" "$@"
