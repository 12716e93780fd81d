#!/usr/bin/env bash
# The project's GPU check: under 8 minutes on one GPU, each step under its own `timeout` (the limits add up to
# 440 s, 475 s with each step's 5 s grace before SIGKILL), one JSON per step (and its log) under OUT_DIR, then
# summary.json against the targets (benchmarks/README.md).
#
#   bash benchmarks/gpu_check.sh OUT_DIR            # on a CUDA machine
#   bash benchmarks/gpu_check.sh OUT_DIR --dry      # or GPU_CHECK_DRY=1: tiny sizes, a few steps, device cpu (CI)
#
# A step that fails or runs out of time leaves its log and no JSON; the summary names it. Exit status: 0 when
# every step ran (whether the targets are met is in summary.json), 1 when some step failed.
set -u
OUT=${1:?usage: benchmarks/gpu_check.sh OUT_DIR [--dry]}
shift
DRY=${GPU_CHECK_DRY:-0}
[[ "${1:-}" == "--dry" ]] && DRY=1
export GPU_CHECK_DRY=$DRY
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python}
mkdir -p "$OUT"
failed=0

# The limits are for a GPU machine. The dry mode runs on a CPU that CI shares with other tests: each of its
# steps starts several Python processes (the cli step five `lgvq` jobs), so it gets 4x the time.
SCALE=1
[[ $DRY == 1 ]] && SCALE=4

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$(($2 * SCALE))
  shift 2
  local t0=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "gpu_check: $name rc=$rc ($((SECONDS - t0)) s, limit $limit s)"
  if [[ $rc -ne 0 ]]; then failed=1; fi
  return 0
}

GC=("$PY" "$HERE/gpu_check.py")  # `timeout` runs programs, not shell functions

step env 20 "${GC[@]}" env --out "$OUT"
step tokenizer 100 "${GC[@]}" tokenizer --out "$OUT"
step heads 50 "${GC[@]}" heads --out "$OUT"
step sampling 80 "${GC[@]}" sampling --out "$OUT"
step cli 100 "${GC[@]}" cli --out "$OUT"
if [[ $DRY == 1 ]]; then
  # CI runs tests/test_distributed.py itself; the dry check only records that it skipped them.
  echo '{"step": "dp_tests", "rc": 0, "skipped": "dry mode: CI runs tests/test_distributed.py on its own"}' >"$OUT/dp_tests.json"
else
  step dp_tests 70 "$PY" -m pytest -q -p no:cacheprovider "$HERE/../tests/test_distributed.py"
  rc=$(grep -qE "passed" "$OUT/dp_tests.log" && ! grep -qE "failed|error" "$OUT/dp_tests.log" && echo 0 || echo 1)
  echo "{\"step\": \"dp_tests\", \"rc\": $rc, \"log\": \"dp_tests.log\"}" >"$OUT/dp_tests.json"
fi
step summary 20 "${GC[@]}" summary --out "$OUT"
exit $failed
