"""The reproduce command: plan the jobs, refuse bad input before any work, run the jobs K at a
time, then write summary.json and REPORT.md. A failed job is reported and makes the exit code 1;
it does not stop the others."""

from __future__ import annotations

import shlex
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

from agent.reproduce.jobs import ControlJob, ControlResult, Job, JobResult, run_control_job, run_job
from agent.reproduce.report import SUMMARY_NAME, earlier_wall_times, simulation_summary, write_report, write_summary
from agent.reproduce.simulations import Simulation, selected


class ReproduceInputError(ValueError):
    """Bad input found before any work; the message names the flag."""


def plan(simulations: list[Simulation], seeds: int, out_dir: Path, *, episodes: int | None,
         eval_episodes: int | None, device: str) -> list[Job]:
    return [Job(simulation, seed, out_dir / "runs" / f"{simulation.name}-seed{seed}", episodes,
                eval_episodes or simulation.eval_episodes, device)
            for simulation in simulations for seed in range(seeds)]


def plan_controls(simulations: list[Simulation], out_dir: Path, *, eval_episodes: int | None) -> list[ControlJob]:
    """Each simulation's controls, on the test episodes its seeds are evaluated on."""
    return [ControlJob(simulation, control.strategy, out_dir / "controls" / simulation.name / control.strategy,
                       eval_episodes or simulation.eval_episodes)
            for simulation in simulations for control in simulation.controls]


def check_plan(jobs: list[Job], out_dir: Path) -> None:
    """Refuse an --out that is a file, or that holds a run made with other settings (train would
    refuse it only once its job started, after other jobs had run)."""
    from agent.commands.train import check_run_dir

    if out_dir.exists() and not out_dir.is_dir():
        raise ReproduceInputError(f"argument --out: {out_dir} exists and is not a directory")
    for job in jobs:
        try:
            check_run_dir(job.train_config(), job.run_dir)
        except ValueError as error:
            # train's message names its own --out (the run directory); this command's --out is the parent
            raise ReproduceInputError(f"argument --out: {str(error).removeprefix('--out ')}") from None


def command_text(args) -> str:
    """The exact command, every setting spelled out, as the report's first line shows it."""
    words = ["python", "-m", "agent", "reproduce", "--sim", *args.sim, "--seeds", str(args.seeds),
             "--jobs", str(args.jobs), "--device", args.device]
    if args.episodes:
        words += ["--episodes", str(args.episodes)]
    if args.eval_episodes:
        words += ["--eval-episodes", str(args.eval_episodes)]
    return shlex.join(words + ["--out", str(args.out)])


def run_jobs(jobs: list[Job], parallel: int, log=print) -> list[JobResult]:
    results = []
    with ThreadPoolExecutor(max_workers=parallel) as pool:  # threads only wait on the job processes
        futures = [pool.submit(run_job, job) for job in jobs]
        for count, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results.append(result)
            outcome = "FAILED in " + result.error["stage"] if result.error else f"{result.training}, {result.evaluation}"
            log(f"[{count}/{len(jobs)}] {result.job.simulation.name} seed {result.job.seed}: {outcome}")
    return results


def run_controls(jobs: list[ControlJob], parallel: int, log=print) -> list[ControlResult]:
    results = []
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = [pool.submit(run_control_job, job) for job in jobs]
        for count, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results.append(result)
            outcome = "FAILED in " + result.error["stage"] if result.error else "played"
            log(f"[control {count}/{len(jobs)}] {result.job.simulation.name} {result.job.strategy}: {outcome}")
    return results


def reproduce(args, log=print) -> int:
    """args: the parsed reproduce flags. Raises ReproduceInputError before any work."""
    started, start = datetime.now().isoformat(timespec="seconds"), time.perf_counter()
    out_dir = Path(args.out)
    simulations = selected(args.sim)
    jobs = plan(simulations, args.seeds, out_dir, episodes=args.episodes, eval_episodes=args.eval_episodes,
                device=args.device)
    check_plan(jobs, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier_walls = earlier_wall_times(out_dir / SUMMARY_NAME)
    results = run_jobs(jobs, args.jobs, log)
    controls = run_controls(plan_controls(simulations, out_dir, eval_episodes=args.eval_episodes), args.jobs, log)
    sections = [simulation_summary(s, [r for r in results if r.job.simulation is s], out_dir, earlier_walls,
                                   [c for c in controls if c.job.simulation is s])
                for s in simulations]
    summary = {
        "command": command_text(args), "started": started, "jobs": args.jobs, "device": args.device,
        "seeds": list(range(args.seeds)), "train_episodes_override": args.episodes,
        "eval_episodes_override": args.eval_episodes,
        # a job fails in its processes, or at the report when its metrics.json lacks a key the table reads
        "failed_jobs": sum(seed["error"] is not None for section in sections for seed in section["seeds"]),
        "failed_controls": sum(c["error"] is not None for section in sections for c in section["controls"]),
        "simulations": sections,
    }
    summary["total_wall_seconds"] = time.perf_counter() - start
    write_summary(summary, out_dir)
    write_report(summary, simulations, out_dir)
    log(f"wrote {out_dir / 'REPORT.md'} and summary.json; {summary['failed_jobs']} failed job(s), "
        f"{summary['failed_controls']} failed control(s); {summary['total_wall_seconds']:.0f} s")
    return 1 if summary["failed_jobs"] or summary["failed_controls"] else 0
