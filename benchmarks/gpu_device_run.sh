#!/usr/bin/env bash
# Everything a GPU session runs, in one call that fits the device tool's 10-minute command limit: the
# CUDA-only tests (the steady training step never synchronises; CUDA and CPU losses agree), then
# benchmarks/gpu_check.sh for ResNet-32 and ResNet-110, one repeat, with LPL's fused loop (one Triton kernel,
# eager and captured) and LPL's loss compiled alone in the captured step, and the concurrent runs with and
# without MPS (2 repeats without those took 140 s on an
# H200; WRN-28-10 and --compile are for another call), then benchmarks/gpu_longtail.sh with the time that is
# left, under MPS where it starts (its 3-epoch probe decides whether the 200-epoch protocol fits). Only the summaries land in OUT (7 files: three logs,
# two JSON, two Markdown tables); the run folders stay in a scratch folder.
#
#   benchmarks/gpu_device_run.sh [OUT]       # OUT defaults to $OUT (the device tool's), else ./gpu_out
#
# Environment: GPU_DEVICE_PARTS (default "tests,check,longtail": the parts to run, in that order; e.g.
# "tests,check" in one call and "longtail" in the next, to give the protocol a call of its own), LIMIT_S (default
# 570: seconds the whole script may take; the check is stopped 10 s before it, the long-tail protocol sized
# to end within it), LPL_LONGTAIL_DATA (default
# .carry/fashion-mnist), GPU_CHECK_ARGS (default "--models resnet32,resnet110 --fused-loop --compile-loss --repeats 1";
# "" for all three networks, 2 repeats, without the compiled loss), GPU_LONGTAIL_ARGS (more arguments of gpu_longtail.py, e.g. "--first-seed 1 --seeds 1 --include
# benchmarks/results/2026-11-29-h200/gpu_longtail.json" for the next wave of seeds), CUDA_TESTS_S (default
# 240: the 7 tests of 2026-11-29 took 18 s; the 8th compiles LPL's loss on a fresh machine; the 2 of the fused
# loop compile its kernel), GPU_CHECK_QUICK / GPU_LONGTAIL_QUICK (shortened, for a CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
PARTS="${GPU_DEVICE_PARTS:-tests,check,longtail}"
for part in ${PARTS//,/ }; do
    case "$part" in tests | check | longtail) ;;
        *) echo "gpu_device_run: GPU_DEVICE_PARTS: unknown part '$part' (tests, check, longtail)" >&2
           exit 2 ;;
    esac
done
wants() { [[ ",$PARTS," == *",$1,"* ]]; }
DEST="${1:-${OUT:-gpu_out}}"
mkdir -p "$DEST"
WORK="$(mktemp -d)"
# the run folders (checkpoints, every run's final.json) stay in WORK for the records of a device run; a
# shortened CPU run (both *_QUICK set, as the tests run it) removes its own
if [ -n "${GPU_CHECK_QUICK:-}" ] && [ -n "${GPU_LONGTAIL_QUICK:-}" ]; then trap 'rm -rf "$WORK"' EXIT; fi
LIMIT_S="${LIMIT_S:-570}"
start=$(date +%s)
PY="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
tests_rc=0 check_rc=0 longtail_rc=0
if wants tests; then
    PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout "${CUDA_TESTS_S:-240}" "$PY" -m pytest -q -rs \
        -p no:cacheprovider -o addopts="" tests/train/test_cuda_steps.py \
        tests/train/test_lpl_loss.py::test_cuda_matches_cpu \
        tests/train/test_lpl_loss.py::test_cuda_fused_loop_matches_the_torch_loop 2>&1 \
        | tee "$DEST/cuda_tests.log"
    tests_rc=${PIPESTATUS[0]}
fi
if wants check; then
    if [ "${GPU_CHECK_QUICK:-0}" = "1" ]; then default_args=""; else
        default_args="--models resnet32,resnet110 --fused-loop --compile-loss --repeats 1"; fi
    read -r -a check_args <<< "${GPU_CHECK_ARGS-$default_args}"
    # the check may take what the tests left, less 10 s for the summaries: stopped there (its log keeps
    # the rows it printed), so the whole call stays within LIMIT_S
    check_s=$(( LIMIT_S - ($(date +%s) - start) - 10 ))
    [ "$check_s" -ge 1 ] || check_s=1
    timeout -s TERM "$check_s" benchmarks/gpu_check.sh "$WORK/check" "${check_args[@]}" 2>&1 \
        | tee "$DEST/gpu_check.log"
    check_rc=${PIPESTATUS[0]}
    cp "$WORK"/check/gpu_check.json "$WORK"/check/gpu_check.md "$DEST"/ 2>/dev/null
fi
if wants longtail; then
    elapsed=$(( $(date +%s) - start ))
    budget=$(( LIMIT_S - elapsed - 30 ))  # 30 s for the last evaluations and the summaries
    echo "# gpu_device_run: ${elapsed} s so far; the long-tail protocol may take ${budget} s, its probe included"
    if [ "$budget" -lt 60 ]; then  # not even the probe of the first wave fits: leave the protocol out
        echo "# gpu_device_run: ${budget} s left for the long-tail protocol, under 60 s: not started"
    else
        # its summaries are written into DEST as each run finishes; a protocol that overruns its estimate
        # is stopped here, before the device tool's own limit, and keeps what finished
        read -r -a longtail_args <<< "${GPU_LONGTAIL_ARGS:-}"
        timeout -s TERM $(( budget + 20 )) benchmarks/gpu_longtail.sh "$WORK/longtail" \
            --summary-dir "$DEST" --budget-s "$budget" "${longtail_args[@]}" 2>&1 \
            | tee "$DEST/gpu_longtail.log"
        longtail_rc=${PIPESTATUS[0]}
    fi
fi
ls -l "$DEST"
[ -n "${GPU_CHECK_QUICK:-}" ] && [ -n "${GPU_LONGTAIL_QUICK:-}" ] \
    || echo "# gpu_device_run: the run folders (every run's final.json) are in $WORK"
# each part's summaries are kept whatever the others did; the exit status says whether all succeeded
said() {  # said NAME PART RC WHY: one part's entry of the last line
    if wants "$2"; then echo "$1 exit $3$4"; else echo "$1 left out"; fi
}
case "$longtail_rc" in
    3) why=" (not started: probe plus estimate over its budget)" ;;
    124) why=" (stopped: it overran its budget)" ;;
    *) why="" ;;
esac
check_why=""
[ "$check_rc" -eq 124 ] && check_why=" (stopped: it overran LIMIT_S)"
echo "# gpu_device_run: $(said "CUDA tests" tests "$tests_rc" ""), $(said gpu_check check "$check_rc" \
    "$check_why"), $(said gpu_longtail longtail "$longtail_rc" "$why")"
[ "$tests_rc" -eq 0 ] && [ "$check_rc" -eq 0 ] && [ "$longtail_rc" -eq 0 ]
