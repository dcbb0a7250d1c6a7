"""`python -m bench scaling`: how meta-RL training throughput grows with the number of
environments and the hidden size, fast core vs reference core vs torch.nn.LSTM stepped in Python.

Each case (envs x hidden) builds one Trainer per core and times whole updates
(bench/agent.py's loop: rollout, learning pass, optimizer step), the cores interleaved with the
order rotated every repeat; updates per timed block are sized from one calibration update so
that every block lasts about --block-seconds. Reported: the median environment steps per
second per core, and fast's ratio to each other core, as JSON and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics

import torch

from agent.core.config import resolve_config
from agent.core.cores import CORE_NAMES
from agent.core.trainer import Trainer
from agent.infra.allocator import retain_freed_memory
from agent.infra.output_paths import output_dir
from agent.simulations.registry import task_names
from bench import RESULTS
from bench.agent import interleaved_rates, run_updates

NUM_ENVS = (1, 4, 16, 64, 256, 1024)
HIDDEN_SIZES = (48, 128, 256)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="two_step", choices=task_names())
    parser.add_argument("--num-envs", type=int, nargs="+", default=list(NUM_ENVS))
    parser.add_argument("--hidden", type=int, nargs="+", default=list(HIDDEN_SIZES))
    parser.add_argument("--cores", default=",".join(CORE_NAMES), help="comma-separated (default: all three)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-seconds", type=float, default=0.3, help="length of one timed block")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=output_dir, default=RESULTS, help="folder for scaling.json and scaling.md")
    args = parser.parse_args(argv)
    args.cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    for core in args.cores:
        if core not in CORE_NAMES:
            parser.error(f"argument --cores: unknown core {core!r}; choose from {', '.join(CORE_NAMES)}")
    for name in ("num_envs", "hidden"):
        if any(v < 1 for v in getattr(args, name)):
            parser.error(f"argument --{name.replace('_', '-')}: every value must be >= 1")
    if args.repeats < 1 or args.threads < 1 or args.block_seconds <= 0:
        parser.error("arguments --repeats and --threads must be >= 1, --block-seconds > 0")
    return args


def measure_case(task: str, num_envs: int, hidden: int, cores: list[str], repeats: int, block_seconds: float) -> dict:
    """Median env steps/s per core for one (envs, hidden) case."""
    trainers = {core: Trainer(resolve_config({"task": task, "num_envs": num_envs, "hidden_size": hidden,
                                              "core": core})) for core in cores}
    config = next(iter(trainers.values())).config
    updates = {}
    for core, trainer in trainers.items():
        run_updates(trainer, 1)  # warm-up: first-call costs (packing, allocations) out of the timing
        one = run_updates(trainer, 1)
        updates[core] = max(1, math.ceil(block_seconds / max(one, 1e-6)))
    rates = interleaved_rates(trainers, updates, repeats)
    medians = {core: statistics.median(values) for core, values in rates.items()}
    return {"num_envs": num_envs, "hidden": hidden, "unroll": config.unroll,
            "env_steps_per_second": medians, "all": rates,
            "backends": {core: trainer.agent.backend for core, trainer in trainers.items()}}


def markdown(result: dict) -> str:
    cores = result["cores"]
    others = [c for c in cores if c != "fast"]
    header = ["hidden", "envs", *(f"{c} steps/s" for c in cores), *(f"fast/{c}" for c in others if "fast" in cores)]
    lines = [f"# `python -m bench scaling` ({result['task']}, {result['threads']} thread(s))", "",
             f"{result['machine']['platform']}, {result['machine']['cpus']} CPUs, torch {result['machine']['torch']}; "
             "environment steps per second of whole training updates, median of "
             f"{result['repeats']} interleaved blocks per core.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case in result["cases"]:
        rates = case["env_steps_per_second"]
        cells = [str(case["hidden"]), str(case["num_envs"]), *(f"{rates[c]:,.0f}" for c in cores)]
        if "fast" in cores:
            cells += [f"**{rates['fast'] / rates[c]:.2f}x**" for c in others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv or [])
    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as the agent's commands do (agent/infra/allocator.py)
    result = {"task": args.task, "threads": args.threads, "repeats": args.repeats, "cores": args.cores, "cases": [],
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__}}
    args.out.mkdir(parents=True, exist_ok=True)
    for hidden in args.hidden:
        for num_envs in args.num_envs:
            case = measure_case(args.task, num_envs, hidden, args.cores, args.repeats, args.block_seconds)
            result["cases"].append(case)
            print(f"H={hidden:4d} envs={num_envs:5d} " + "  ".join(
                f"{core} {rate:10,.0f}" for core, rate in case["env_steps_per_second"].items()), flush=True)
            # written after every case: an interrupted sweep keeps what it measured
            (args.out / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
            (args.out / "scaling.md").write_text(markdown(result))
    print(f"wrote {args.out / 'scaling.md'}")
    return 0
