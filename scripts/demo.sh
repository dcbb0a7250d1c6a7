#!/usr/bin/env bash
# The main job: sets up, then runs the CPU benchmark (python -m bench cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m bench cpu "$@"
