#!/usr/bin/env bash
# The long-tail protocol of Tables III/IV on one GPU (benchmarks/gpu_longtail.py): Fashion-MNIST-LT 100:1 at
# 32x32, ResNet-32, 200 epochs of LDAM's schedule, CE / LA / LDAM-DRW / LPL / LA+LPL x 3 seeds, 5 runs at
# a time on the device (--jobs), as clients of a private MPS daemon where one starts (--mps auto). It probes
# 3 epochs first and starts the rest only if the probe's time plus its estimate (the fixed costs once per
# wave, the images left at the rate the first wave's runs reached together) fits the budget (--budget-s,
# default 540 s). Writes OUT_DIR/gpu_longtail.{json,md} (or into --summary-dir), rewritten as runs finish.
#
#   mkdir -p .carry/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .carry/fashion-mnist/
#   benchmarks/gpu_longtail.sh [OUT_DIR] [--budget-s S] [--jobs N]     # on the GPU machine (carry .carry)
#   GPU_LONGTAIL_QUICK=1 benchmarks/gpu_longtail.sh [OUT_DIR]          # shortened (CPU): 1 epoch, tiny net
#
# Data: LPL_LONGTAIL_DATA (default .carry/fashion-mnist, a folder .gitignore ignores, so the device tool
# carries it only when named in `carry`). PYTHON: default .venv/bin/python if present, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="gpu_longtail"  # the first argument, unless it is already a flag (then the default folder)
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUT_DIR="$1"; shift; fi
PY="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
QUICK=()
if [ "${GPU_LONGTAIL_QUICK:-0}" = "1" ]; then QUICK=(--quick); fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_longtail.py --out "$OUT_DIR" --data "${LPL_LONGTAIL_DATA:-.carry/fashion-mnist}" \
    "${QUICK[@]}" "$@"
