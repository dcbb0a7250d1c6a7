"""`python -m bench ranks`: data-parallel training throughput, 1 rank against N ranks (torchrun).

Each rank count trains the same task from scratch for the same number of updates per rank,
launched by `python -m torch.distributed.run --standalone --nproc_per_node N -m agent train`
(gradients summed through shared memory, agent/infra/shm_allreduce.py; gloo with
`--all-reduce gloo`, to compare; one torch thread per rank), one after the other and then again in the other order
(`--repeats` rounds, order alternated) so drifting machine load hits them alike. Throughput is
the world's environment steps over rank 0's update time (metrics.jsonl's env_steps and
train_seconds: process start-up, compilation of nothing and imports excluded); scaling
efficiency = rate(N) / (N x rate(1)). Ranks share the machine's cores: with fewer free cores
than ranks the efficiency measures the contention, which the printout states.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from agent.cli import STOP_AFTER_UPDATES_VARIABLE
from agent.infra.output_paths import output_file
from agent.infra.shm_allreduce import ALL_REDUCE_VARIABLE, ALL_REDUCES
from agent.simulations.registry import task_names
from bench import RESULTS

REPOSITORY = Path(__file__).resolve().parents[1]


def parse_rank_counts(text: str) -> list[int]:
    """--ranks "1,2" -> [1, 2]; ValueError naming --ranks for anything else."""
    try:
        counts = [int(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ValueError(f"argument --ranks: expected comma-separated integers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise ValueError("argument --ranks: every rank count must be >= 1")
    return counts


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench ranks", description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="two_step", choices=task_names())
    parser.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default: 1,2)")
    parser.add_argument("--updates", type=int, default=300, help="updates per rank per run")
    parser.add_argument("--num-envs", type=int, default=32, help="environments per rank")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--all-reduce", choices=ALL_REDUCES, default="shm",
                        help="how the ranks sum their gradients (default: shm, shared memory)")
    parser.add_argument("--out", type=output_file, default=RESULTS / "ranks.json")
    args = parser.parse_args(argv)
    try:
        args.ranks = parse_rank_counts(args.ranks)
    except ValueError as error:
        parser.error(str(error))
    for name in ("updates", "num_envs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"argument --{name.replace('_', '-')}: must be >= 1")
    return args


def train_rate(task: str, ranks: int, updates: int, num_envs: int, all_reduce: str = "shm") -> dict:
    """One training run of `updates` updates on `ranks` ranks: {"env_steps", "seconds", "rate"}
    from its metrics.jsonl (stopped by the agent's STOP_AFTER_UPDATES variable, no final checkpoint)."""
    with tempfile.TemporaryDirectory() as run:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
                   "-m", "agent", "train", "--task", task, "--episodes", str(10**9), "--num-envs", str(num_envs),
                   "--log-every", "1", "--checkpoint-every", str(10**6), "--threads", "1", "--quiet", "--out", run]
        env = {**os.environ, "OMP_NUM_THREADS": "1", STOP_AFTER_UPDATES_VARIABLE: str(updates),
               ALL_REDUCE_VARIABLE: all_reduce}
        done = subprocess.run(command, cwd=REPOSITORY, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{ranks}-rank training failed:\n{done.stderr[-2000:]}")
        last = json.loads((Path(run) / "metrics.jsonl").read_text().splitlines()[-1])
    return {"env_steps": last["env_steps"], "seconds": last["train_seconds"],
            "rate": last["env_steps"] / last["train_seconds"]}


def measure(task: str, ranks: list[int], updates: int, num_envs: int, repeats: int, all_reduce: str = "shm") -> dict:
    """Env steps/s of each rank count (median of `repeats` runs, the order alternated every
    repeat) and the scaling efficiency against 1 rank, as bench writes them."""
    rates: dict[int, list[float]] = {r: [] for r in ranks}
    for repeat in range(repeats):
        for count in (ranks if repeat % 2 == 0 else ranks[::-1]):
            rates[count].append(train_rate(task, count, updates, num_envs, all_reduce)["rate"])
    medians = {r: statistics.median(v) for r, v in rates.items()}
    base = medians.get(1)
    return {
        "all_reduce": all_reduce, "num_envs_per_rank": num_envs, "updates": updates, "repeats": repeats, "cpus": os.cpu_count(),
        "env_steps_per_second": {str(r): {"median": medians[r], "all": rates[r]} for r in ranks},
        "scaling_efficiency": {str(r): medians[r] / (r * base) for r in ranks} if base else {},
    }


def print_measurement(result: dict) -> None:
    efficiencies = result["scaling_efficiency"]
    for count, rate in result["env_steps_per_second"].items():
        efficiency = f", scaling efficiency {efficiencies[count]:.2f}" if efficiencies else ""
        print(f"  {count} rank(s): {rate['median']:10.0f} env steps/s{efficiency}")
    if max(map(int, result["env_steps_per_second"])) > (os.cpu_count() or 1):
        print("  (more ranks than CPUs: the efficiency above measures contention)")


def main(argv: list[str] | None = None) -> int:
    from agent.core.config import resolve_config

    args = _parse(argv or [])
    config = resolve_config({"task": args.task, "num_envs": args.num_envs})
    result = {"task": args.task, "unroll": config.unroll,
              **measure(args.task, args.ranks, args.updates, args.num_envs, args.repeats, args.all_reduce)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"data-parallel training throughput: {args.task}, {args.num_envs} envs per rank, {args.all_reduce} all-reduce, "
          f"1 thread per rank, {os.cpu_count()} CPUs; median of {args.repeats}")
    print_measurement(result)
    print(f"wrote {args.out}")
    return 0
