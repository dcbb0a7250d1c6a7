"""scripts/gpu_check.sh is only run when a GPU is lent: its dry run keeps it working meanwhile."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts subprocesses

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_collects_tests_plans_bench_runs_agent(tmp_path):
    """Gpu check dry run collects every gpu test plans the bench and runs the agent stage on cpu."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    env.pop("TRITON_INTERPRET", None)
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    collected = [line for line in done.stdout.splitlines() if line.startswith("tests/fastrnn/test_triton_gpu.py::")]
    assert len(collected) >= 30, done.stdout[-3000:]
    assert "dtype=bfloat16 H=48 B=1" in done.stdout  # bf16 is planned first
    assert done.stdout.index("dtype=bfloat16") < done.stdout.index("dtype=float32")
    # the agent stage's commands ran on the CPU: a training run and a throughput measurement
    assert (tmp_path / "agent_run" / "metrics.jsonl").exists()
    assert "env_steps_per_second" in (tmp_path / "agent_bench_cpu.json").read_text()
