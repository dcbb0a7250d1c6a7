#!/usr/bin/env bash
# The main job: sets up, then trains the meta-RL agent on the two-step task (Simulation 4 of
# Wang et al. 2018) on the CPU with the fast core, evaluates it with frozen weights and writes
# its figure to runs/demo/eval/two_step_stay.png. Extra arguments go to `python -m agent demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m agent demo --out runs/demo "$@"
