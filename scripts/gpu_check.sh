#!/usr/bin/env bash
# The GPU check of the triton backend, sized for ONE device call on the lent H200 (< 5 min):
#   build (C++ extension, optional for this check) -> tests/test_triton_gpu.py -> python -m bench gpu
# Everything it writes goes under $OUT (env.log, build.log, gpu_tests.log, bench.log, bench/results.{json,md},
# summary.txt). Nothing is fetched: the device has torch, triton and pybind11 already.
# Usage (from the repository root):  bash scripts/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET  # real kernels here; the interpreter tests run in CI

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$PY" -c "import sys, torch, triton; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
} > "$OUT/env.log" 2>&1

# The triton backend does not need fastrnn._C; build it anyway so `auto` and the CPU paths load.
if ! timeout 120 "$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  echo "build_ext failed or timed out: continuing, the triton backend does not need fastrnn._C" >> "$OUT/build.log"
fi

# A kernel that never returns (a group barrier waiting on a CTA that is not resident) must not
# eat the whole call: every stage has its own timeout.
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_triton_gpu.py -rs --durations=10 \
  > "$OUT/gpu_tests.log" 2>&1
TEST_RC=$?

timeout 170 "$PY" -m bench gpu --out "$OUT/bench" --budget-s 90 > "$OUT/bench.log" 2>&1
BENCH_RC=$?

{
  echo "gpu tests rc=$TEST_RC (124 = timed out)"
  tail -n 3 "$OUT/gpu_tests.log"
  echo "bench rc=$BENCH_RC (124 = timed out; results.json is written after every case)"
} | tee "$OUT/summary.txt"
[ "$TEST_RC" -eq 0 ] && [ "$BENCH_RC" -eq 0 ]
