#!/usr/bin/env bash
# The main job: sets up, then trains the meta-RL agent on the two-step task (Simulation 4 of
# Wang et al. 2018) on the CPU with the fast core, evaluates it with frozen weights and writes
# its figure to runs/demo/eval/two_step_stay.png. Extra arguments go to `python -m agent demo`.
#   bash scripts/demo.sh harlow   trains and evaluates Harlow (Simulation 5) instead, in runs/demo-harlow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "harlow" ] || [ "${1:-}" = "two_step" ]; then
  task="$1"; shift
  out=runs/demo; [ "$task" = harlow ] && out=runs/demo-harlow
  exec .venv/bin/python -m agent demo --task "$task" --out "$out" "$@"
fi
exec .venv/bin/python -m agent demo --out runs/demo "$@"
