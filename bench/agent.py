"""`python -m bench agent`: meta-RL training throughput, fast core vs reference core (and
torch.nn.LSTM stepped in Python), measured in one run.

What is timed is the whole training loop: Trainer.update() = an unroll of fused rollout steps
(core step, heads and action sampling, environment step, bookkeeping), the learning pass
and the optimizer step, for `--updates` updates; the cores take
turns (interleaved, order rotated every repeat) so machine noise hits them alike, and the
median over repeats is reported as environment steps per second. A second pass per core,
with phase timers on, gives the profile: where the time goes, as a share of the loop and as
microseconds per environment step (summed over the batch rows stepped together). Where the
core takes the fused rollout step (every task without a readout), "core step" holds the heads
and the action sampling, and "heads + sampling" reads zero; where the unroll is one native loop
(RolloutPlan.run: agent/core/rollout.py), "core step" is that loop less the task steps it calls
back ("env step"), and it writes the next inputs and rewards itself, which leaves
"bookkeeping" the episode counts and checks after the unroll. The learning pass is "learn forward"
(the returns, the heads and the loss) and "learn backward" (the gradients): a sequence replay
under autograd, or on the fast core the pass from the rollout's saved activations
(agent/core/learner.py), which has no recurrence in its forward.

Last, data-parallel scaling (`--ranks`, default 1 and 2): the same task trained by
`torchrun --standalone --nproc_per_node N -m agent train` with the fast core, the gradients summed
through shared memory (agent/infra/shm_allreduce.py)
and one thread per rank, `--rank-updates` updates per rank (bench/ranks.py measures it and says
how); reported as env steps/s per rank count and the scaling efficiency rate(N) / (N x rate(1)).
`--ranks none` skips it (it starts 2 x repeats processes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from agent.core.config import resolve_config
from agent.core.cores import CORE_NAMES
from agent.core.trainer import Trainer
from agent.infra.allocator import retain_freed_memory
from agent.infra.output_paths import output_file
from agent.infra.timing import PhaseTimer
from agent.simulations.registry import task_names
from bench import RESULTS
from bench import ranks as rank_scaling

PHASES = ("core step", "heads + sampling", "env step", "bookkeeping", "learn forward", "learn backward", "optimizer")


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m bench agent", description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="two_step", choices=task_names())
    parser.add_argument("--cores", default=",".join(CORE_NAMES),
                        help="comma-separated cores to compare (default: fast,reference,torch)")
    parser.add_argument("--num-envs", type=int, default=None, help="default: the training default")
    parser.add_argument("--unroll", type=int, default=None, help="default: the training default")
    parser.add_argument("--updates", type=int, default=100, help="updates per timed block")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10, help="untimed updates per core first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--ranks", default="1,2",
                        help="comma-separated torchrun rank counts to measure on the CPU (default: 1,2; none: skip)")
    parser.add_argument("--rank-updates", type=int, default=200, help="updates per rank of each --ranks run")
    parser.add_argument("--out", type=output_file, default=RESULTS / "agent.json")
    args = parser.parse_args(argv)
    try:
        args.ranks = [] if args.ranks.strip().lower() == "none" else rank_scaling.parse_rank_counts(args.ranks)
    except ValueError as error:
        parser.error(str(error))
    args.cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    for core in args.cores:
        if core not in CORE_NAMES:
            parser.error(f"argument --cores: unknown core {core!r}; choose from {', '.join(CORE_NAMES)}")
    for name in ("updates", "repeats", "threads", "rank_updates"):
        if getattr(args, name) < 1:
            parser.error(f"argument --{name.replace('_', '-')}: must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("argument --device: CUDA is not available on this machine")
    return args


def run_updates(trainer: Trainer, count: int) -> float:
    sync = torch.cuda.synchronize if trainer.config.device.startswith("cuda") else None
    if sync:
        sync()
    start = time.perf_counter()
    for _ in range(count):
        trainer.update()
    if sync:
        sync()
    return time.perf_counter() - start


def interleaved_rates(trainers: dict[str, Trainer], updates: dict[str, int], repeats: int) -> dict[str, list[float]]:
    """Env steps/s of each trainer's blocks of updates[core] updates, `repeats` blocks each, the
    cores taking turns with the order rotated every repeat so machine noise hits them alike."""
    cores = list(trainers)
    rates: dict[str, list[float]] = {core: [] for core in cores}
    for repeat in range(repeats):
        for core in cores[repeat % len(cores):] + cores[: repeat % len(cores)]:
            config = trainers[core].config
            steps = updates[core] * config.unroll * config.num_envs
            rates[core].append(steps / run_updates(trainers[core], updates[core]))
    return rates


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv or [])
    torch.set_num_threads(args.threads)
    retain_freed_memory()  # as the agent's commands do (agent/infra/allocator.py)
    overrides = {"task": args.task, "device": args.device, "num_envs": args.num_envs, "unroll": args.unroll}
    trainers = {core: Trainer(resolve_config({**overrides, "core": core})) for core in args.cores}
    config = next(iter(trainers.values())).config
    steps_per_block = args.updates * config.unroll * config.num_envs
    for trainer in trainers.values():
        run_updates(trainer, args.warmup)

    rates = interleaved_rates(trainers, {core: args.updates for core in args.cores}, args.repeats)

    profiles = {}
    for core, trainer in trainers.items():
        trainer.timer = PhaseTimer(enabled=True, sync=torch.cuda.synchronize if args.device == "cuda" else None)
        seconds = run_updates(trainer, args.updates)
        totals = dict(trainer.timer.totals)
        trainer.timer = PhaseTimer(enabled=False)
        other = max(seconds - sum(totals.values()), 0.0)
        profiles[core] = {
            phase: {"share": t / seconds, "us_per_env_step": t / steps_per_block * 1e6,
                    "us_per_batched_step": t / (args.updates * config.unroll) * 1e6}
            for phase, t in [*((p, totals.get(p, 0.0)) for p in PHASES), ("other", other)]
        }

    medians = {core: statistics.median(values) for core, values in rates.items()}
    ranks = rank_scaling.measure(args.task, args.ranks, args.rank_updates, config.num_envs, args.repeats) \
        if args.ranks else None
    result = {
        "task": args.task, "device": args.device, "threads": args.threads, "num_envs": config.num_envs,
        "unroll": config.unroll, "hidden_size": config.hidden_size, "updates_per_block": args.updates,
        "repeats": args.repeats, "backends": {core: t.agent.backend for core, t in trainers.items()},
        "env_steps_per_second": {core: {"median": medians[core], "all": rates[core]} for core in args.cores},
        "ratios": {f"{a}/{b}": medians[a] / medians[b] for a in args.cores for b in args.cores if a != b},
        "profile": profiles,
        "ranks": ranks,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"agent training throughput: {args.task}, {config.num_envs} envs x {config.unroll}-step unrolls, "
          f"{config.hidden_size} units, {args.threads} thread(s), {args.device}; median of {args.repeats}")
    for core in args.cores:
        print(f"  {core:9s} ({result['backends'][core]:13s}) {medians[core]:10.0f} env steps/s")
    for name in ("fast/reference", "fast/torch"):
        if name in result["ratios"]:
            print(f"  {name}: {result['ratios'][name]:.2f}x")
    print("profile (share of the loop, us per batched step):")
    print("  " + " " * 18 + "".join(f"{core:>22s}" for core in args.cores))
    for phase in (*PHASES, "other"):
        cells = "".join(f"{profiles[c][phase]['share'] * 100:9.1f}% {profiles[c][phase]['us_per_batched_step']:9.1f}us"
                        for c in args.cores)
        print(f"  {phase:18s}{cells}")
    if ranks:
        print(f"data-parallel (torchrun, shared-memory all-reduce, fast core, 1 thread per rank, {config.num_envs} envs per rank, "
              f"{args.rank_updates} updates; median of {args.repeats}):")
        rank_scaling.print_measurement(ranks)
    print(f"wrote {args.out}")
    return 0
