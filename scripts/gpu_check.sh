#!/usr/bin/env bash
# The GPU check of the triton backend, sized for ONE device call on the lent H200 (about 5 min):
#   env -> C++ build (optional, in the background) -> tests/fastrnn/test_triton_gpu.py -> python -m bench gpu
#   -> agent on CUDA: a short `train --device cuda` run and `bench agent` on cuda vs cpu
# Everything it writes goes under $OUT: env.log, build.log, gpu_tests.log, gpu_tests.xml,
# bench.log, bench/gpu.{json,md}, agent_train.log, agent_run/, agent_bench_{cuda,cpu}.{json,log},
# agent.log, summary.txt. Nothing is fetched: the device image has
# torch, triton, pybind11, pytest, pytest-timeout and pytest-xdist.
# Usage (from the repository root):  bash scripts/gpu_check.sh [--dry-run]
#   --dry-run: no GPU needed; collects the GPU tests and prints the bench plan (CI runs this).
# Budgets (seconds) can be overridden: TEST_BUDGET_S, PER_TEST_S, BENCH_BUDGET_S, BENCH_KILL_S.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET  # real kernels here; the interpreter tests run in CI

if [ "${1:-}" = "--dry-run" ]; then
  # The script's stages, collected and planned without a GPU: nothing here may be broken
  # when the GPU comes (the GPU test file collects instead of skipping under this flag).
  FASTRNN_GPU_DRY_RUN=1 "$PY" -m pytest -q -p no:cacheprovider --collect-only tests/fastrnn/test_triton_gpu.py || exit 1
  "$PY" -m bench gpu --dry-run --out "$OUT/bench" || exit 1
  # The agent stage's commands, on the CPU and tiny, so their options cannot rot either.
  "$PY" -m agent train --task two_step --device cpu --episodes 16 --out "$OUT/agent_run" --quiet || exit 1
  "$PY" -m bench agent --task two_step --device cpu --cores fast --updates 2 --repeats 1 --warmup 1 \
    --ranks none --out "$OUT/agent_bench_cpu.json" || exit 1
  exit 0
fi

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$PY" -c "import sys, torch, triton; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name(), torch.cuda.get_device_properties(0).multi_processor_count, 'SMs')"
  nproc
} > "$OUT/env.log" 2>&1

# The triton backend does not need fastrnn._C (tests/conftest.py imports it lazily); it is
# built in the background so `auto` on CPU tensors works in the bench's competitors.
( timeout 240 "$PY" setup.py build_ext --inplace > "$OUT/build.log" 2>&1 \
  || echo "build_ext failed or timed out: the triton backend does not need fastrnn._C" >> "$OUT/build.log" ) &
BUILD_PID=$!

# A kernel that never returns (a group barrier waiting on a CTA that is not resident) must not
# eat the whole call: every test has its own timeout (pytest-timeout dumps the stacks and ends
# the worker; xdist replaces it and the rest run), and the stage has one too. Compiles are
# CPU-bound, so several workers share the 16 cores.
timeout "${TEST_BUDGET_S:-170}" "$PY" -m pytest -q -p no:cacheprovider -n 6 \
  --timeout "${PER_TEST_S:-90}" --timeout-method thread \
  tests/fastrnn/test_triton_gpu.py -rfEs --durations=15 --junitxml "$OUT/gpu_tests.xml" \
  > "$OUT/gpu_tests.log" 2>&1
TEST_RC=$?
wait $BUILD_PID

timeout "${BENCH_KILL_S:-170}" "$PY" -m bench gpu --out "$OUT/bench" --budget-s "${BENCH_BUDGET_S:-60}" \
  > "$OUT/bench.log" 2>&1
BENCH_RC=$?

# The agent on the GPU (issue 13): a short training run through the CLI (the triton core, the
# rollout on CUDA), then training throughput on cuda against the same command on the CPU.
# Each command has its own timeout: 60 + 2 x 45 s at most. Its return codes are reported, not
# part of the script's own status (the kernels' tests and bench are).
{
  timeout 60 "$PY" -m agent train --task two_step --device cuda --episodes 2000 --out "$OUT/agent_run" \
    > "$OUT/agent_train.log" 2>&1
  echo "agent train --device cuda rc=$?"
  for device in cuda cpu; do
    # --ranks none: the CPU rank scaling is measured on CPU machines (bench/results/agent.json).
    timeout 45 "$PY" -m bench agent --task two_step --device "$device" --cores fast,torch --updates 20 --warmup 3 \
      --repeats 2 --ranks none --out "$OUT/agent_bench_$device.json" > "$OUT/agent_bench_$device.log" 2>&1
    echo "bench agent --device $device rc=$?"
  done
} > "$OUT/agent.log" 2>&1

{
  cat "$OUT/agent.log"
  echo "gpu tests rc=$TEST_RC (124 = stage timed out)"
  tail -n 5 "$OUT/gpu_tests.log"
  echo "bench rc=$BENCH_RC (124 = timed out; gpu.json is written after every case)"
  tail -n 3 "$OUT/bench.log"
} | tee "$OUT/summary.txt"
[ "$TEST_RC" -eq 0 ] && [ "$BENCH_RC" -eq 0 ]
