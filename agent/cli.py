"""Command line: python -m agent {train,eval,verify,tasks,demo,reproduce,baseline} (run from the repository root).

Every argument is checked (type, range, existence of paths, known task) before any work, and
an error names the argument (argparse exits with status 2 and a usage line).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import time
from pathlib import Path

from agent.core.config import ABLATIONS, REWARD_INPUTS, TrainConfig, resolve_config
from agent.infra.allocator import retain_freed_memory
from agent.infra.flags import flag_name
from agent.infra.output_paths import output_dir

def _int_at_least(minimum: int):
    """An argparse type: an integer >= minimum, with an error that says which was expected."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _task_name(text: str) -> str:
    from agent.simulations.registry import get_task_class, task_names

    if ":" in text:  # a task family's member (gym:ENV_ID)
        try:
            get_task_class(text)
            return text
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix("--task ")) from None
    names = task_names()
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown task {text!r}; choose from {', '.join(names)}")
    return text


TASK_OPTION_PREFIX = "task_option__"
# Tests and bench ranks only: train stops after this many updates without a final checkpoint, like a killed run
# (train()'s stop_after_updates, reachable through torchrun, which has no Python entry point).
STOP_AFTER_UPDATES_VARIABLE = "AGENT_STOP_AFTER_UPDATES"
# Test episodes per demo task: Harlow's criterion is stated on at least 1,000.
DEMO_EPISODES = {"two_step": 300, "harlow": 2000}
# Training episodes per demo task, where fewer than the task's default suffice for its figure:
# two_step's Sim. 4 criterion held on 5 of 5 seeds after 12k episodes (`reproduce --sim 4
# --seeds 5 --episodes 12000`: stay common-rewarded 0.954-0.981, rare-rewarded 0.62-0.76,
# common-unrewarded 0.54-0.71, rare-unrewarded 0.89-0.95, hybrid w 0.71-0.77; 15k: 5 of 5 with
# a slightly stronger pattern; 10k: 4 of 4 but weaker), 0.4x the default's 30k
# (docs/performance-log.md).
DEMO_TRAIN_EPISODES = {"two_step": 12_000}


def _add_task_options(parser: argparse.ArgumentParser, *, at_eval: bool = False) -> None:
    """One flag per task option of any registered task (eval: those marked at_eval); a flag
    given for a task without that option is refused by TrainConfig.validate."""
    from agent.simulations.registry import family_classes, get_task_class, task_names

    seen = set()
    for task_class in [get_task_class(task) for task in task_names()] + family_classes():
        for name, option in task_class.options.items():
            if name in seen or (at_eval and not option.at_eval):
                continue
            seen.add(name)
            default = option.test_default if at_eval and option.test_default is not None else option.default
            if not at_eval:  # a task's training default for the option wins over the option's own
                default = task_class.train_defaults.get("task_options", {}).get(name, default)
            parser.add_argument(flag_name(name), dest=TASK_OPTION_PREFIX + name, default=None,
                                choices=option.choices, help=f"{option.help} (default: {default})")


def _given_task_options(args) -> dict:
    return {k[len(TASK_OPTION_PREFIX):]: v for k, v in vars(args).items()
            if k.startswith(TASK_OPTION_PREFIX) and v is not None}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(TrainConfig):
        if f.name == "task_options":
            _add_task_options(parser)
            continue
        flag = flag_name(f.name)
        kwargs = {"dest": f.name, "default": None, "help": f"{f.metadata['help']} (default: {f.default})"}
        if f.name == "task":
            parser.add_argument(flag, required=True, type=_task_name, **kwargs)
        elif f.name == "device":
            parser.add_argument(flag, choices=["cpu", "cuda"], **kwargs)
        elif f.name == "core":
            parser.add_argument(flag, choices=["fast", "reference", "torch"], **kwargs)
        elif f.name == "optimizer":
            parser.add_argument(flag, choices=["rmsprop", "adam"], **kwargs)
        elif f.name == "reward_input":
            parser.add_argument(flag, choices=REWARD_INPUTS, **kwargs)
        elif f.name == "ablate":  # one or several names; an unknown one: argparse's error lists the choices
            parser.add_argument(flag, nargs="+", choices=ABLATIONS, metavar="NAME", **kwargs)
        elif f.name == "entropy_coef_final":
            parser.add_argument(flag, type=float, **kwargs)
        elif f.name == "seed":
            parser.add_argument(flag, type=_nonnegative_int, **kwargs)
        elif f.type in (int, "int"):
            parser.add_argument(flag, type=_positive_int, **kwargs)
        else:
            parser.add_argument(flag, type=float, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description="Meta-RL agent (Wang et al. 2018) "
                                     "on fastrnn cores.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train an agent on a task (resumes an interrupted run in --out)")
    _add_config_options(train)
    train.add_argument("--out", required=True, type=output_dir, help="run directory (RUN_DIR)")
    train.add_argument("--tensorboard", action="store_true",
                       help="also write the training metrics as TensorBoard events in RUN_DIR/tensorboard")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    ev = sub.add_parser("eval", help="evaluate a trained run with frozen weights, write trials.csv, "
                        "metrics.json and figures")
    ev.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    ev.add_argument("--episodes", type=_positive_int, default=300, help="test episodes (default: 300)")
    ev.add_argument("--seed", type=_nonnegative_int, default=2018, help="test seed (default: 2018)")
    ev.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ev.add_argument("--core", choices=["fast", "reference", "torch"], default="fast")
    ev.add_argument("--out", required=True, type=output_dir, help="evaluation directory (EVAL_DIR)")
    _add_task_options(ev, at_eval=True)

    ver = sub.add_parser("verify", help="fast core vs reference core: one rollout and one update per task")
    ver.add_argument("--task", default="all", type=lambda t: t if t == "all" else _task_name(t),
                     help="a task name or all (default)")
    ver.add_argument("--device", choices=["cpu", "cuda"], default="cpu")

    sub.add_parser("tasks", help="list the registered tasks")

    demo = sub.add_parser("demo", help="train a task (two_step by default) on the CPU with the fast core and its "
                          "default settings, evaluate it, write its figures (the README's main command)")
    demo.add_argument("--out", required=True, type=output_dir, help="directory for run/ and eval/")
    demo.add_argument("--task", default="two_step", choices=DEMO_EPISODES, help="two_step (default, about a minute) or "
                      "harlow (the paper's Fig. 6; see README for its time)")
    demo.add_argument("--seed", type=_nonnegative_int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")

    from agent.reproduce.simulations import SIM_CHOICES

    rep = sub.add_parser("reproduce", help="train and evaluate each simulation for several seeds (reusing finished "
                         "runs, resuming interrupted ones) and write DIR/REPORT.md and DIR/summary.json")
    rep.add_argument("--sim", nargs="+", choices=SIM_CHOICES, default=["all"], metavar="SIM",
                     help=f"simulations: {' '.join(SIM_CHOICES)} (default: all)")
    rep.add_argument("--seeds", type=_positive_int, default=5, help="seeds 0..N-1 per simulation (default: 5)")
    rep.add_argument("--jobs", type=_positive_int, default=1, help="runs side by side, one process and one torch "
                     "thread each (default: 1)")
    rep.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    rep.add_argument("--episodes", type=_positive_int, default=None, help="training episodes for every simulation "
                     "instead of each task's default (tests, smoke runs; the report says so)")
    rep.add_argument("--eval-episodes", type=_positive_int, default=None, help="test episodes per seed instead of "
                     "each simulation's default")
    rep.add_argument("--out", required=True, type=output_dir, help="directory for runs/, figures/, REPORT.md, summary.json")

    from agent.baselines.registry import strategies_for, tasks_with_strategies

    base = sub.add_parser("baseline", help="a classical learner (control) plays a task's test episodes; "
                          "trials.csv, metrics.json and figures as eval writes them")
    base.add_argument("--task", required=True, help="a task with baseline strategies: "
                      + ", ".join(tasks_with_strategies()))
    base.add_argument("--strategy", required=True, help="the learner; per task: " + "; ".join(
        f"{task}: {', '.join(strategies_for(task))}" for task in tasks_with_strategies()
        if not task.startswith("bandit_") or task == "bandit_independent").replace(
        "bandit_independent:", "bandit_*:"))
    base.add_argument("--episodes", type=_positive_int, default=300, help="test episodes (default: 300)")
    base.add_argument("--seed", type=_nonnegative_int, default=2018, help="test seed, as eval's (default: 2018)")
    base.add_argument("--out", required=True, type=output_dir, help="directory for trials.csv, metrics.json, figures")
    _add_task_options(base, at_eval=True)
    return parser


def _check_device(parser, device: str, flag: str = "--device") -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            parser.error(f"argument {flag}: cuda requested but CUDA is not available on this machine")


def cmd_train(parser, args) -> int:
    from agent.commands.train import check_resume, train
    from agent.infra.checkpoint import CheckpointError
    from agent.infra.distributed import check_launch, process_group

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name != "task_options"}
    overrides["task_options"] = _given_task_options(args)
    try:
        config = resolve_config(overrides)
        check_launch(config.device)
    except ValueError as error:
        parser.error(str(error))
    _check_device(parser, config.device)
    stop_after = os.environ.get(STOP_AFTER_UPDATES_VARIABLE)
    # Under torchrun (distributed.py) every rank runs this; rank 0 alone reads and writes --out.
    with process_group(config.device) as world:
        try:
            check_resume(config, args.out, world)  # other settings or another world size: refused before any work
        except CheckpointError:
            raise
        except ValueError as error:
            parser.error(str(error))
        trainer = train(config, args.out, progress=not args.quiet, tensorboard=args.tensorboard, world=world,
                        stop_after_updates=int(stop_after) if stop_after else None)
    if not world.first:
        return 0
    print(f"trained {trainer.episodes} episodes ({trainer.env_steps} env steps) in "
          f"{trainer.train_seconds:.1f} s; core {config.core} ran backend {trainer.agent.core.last_backend}; "
          f"checkpoint in {args.out}")
    return 0


def cmd_eval(parser, args) -> int:
    from agent.commands.evaluate import evaluate
    from agent.infra.checkpoint import checkpoint_path

    if not checkpoint_path(args.run_dir).is_file():
        parser.error(f"argument RUN_DIR: no checkpoint at {checkpoint_path(args.run_dir)}")
    if args.out.resolve() == args.run_dir.resolve():
        parser.error("argument --out: must differ from RUN_DIR (the run directory is never modified)")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"argument --out: {args.out} is a file, expected a directory for the evaluation")
    _check_device(parser, args.device)
    from agent.commands.evaluate import test_options
    from agent.infra.checkpoint import load_checkpoint
    from agent.simulations.registry import get_task_class

    config = TrainConfig.from_dict(load_checkpoint(args.run_dir)["config"])
    try:
        test_options(get_task_class(config.task), config.task_options, _given_task_options(args))
    except ValueError as error:
        parser.error(str(error))
    metrics = evaluate(args.run_dir, args.out, episodes=args.episodes, seed=args.seed, device=args.device,
                       core=args.core, task_options=_given_task_options(args))
    print(summarize(metrics))
    print(f"wrote {args.out}/trials.csv, metrics.json, " + ", ".join(Path(f).name for f in metrics.get("figures", [])))
    return 0


def summarize(metrics: dict) -> str:
    lines = [f"{metrics['task']}: {metrics['episodes']} test episodes, mean reward per trial "
             f"{metrics['mean_reward_per_trial']:.3f}"]
    # Each analysis module prints its own lines (its summary_lines).
    from agent.simulations.registry import get_task_class

    module_name = get_task_class(metrics["task"]).analysis_module
    analysis = importlib.import_module(module_name) if module_name else None
    if hasattr(analysis, "summary_lines"):
        lines.extend(analysis.summary_lines(metrics))
    return "\n".join(lines)


def cmd_verify(parser, args) -> int:
    from agent.commands.verify import verify

    _check_device(parser, args.device)
    results = verify(args.task, args.device)
    for result in results:
        print(("PASS " if result.ok else "FAIL ") + result.message)
    return 0 if all(r.ok for r in results) else 1


def cmd_tasks(parser, args) -> int:
    from agent.simulations.registry import family_classes, get_task_class, task_names

    for name in task_names():
        print(f"{name:24s} {get_task_class(name).description}")
    for family in family_classes():
        print(f"{family.name + ':ENV_ID':24s} {family.description}")
    return 0


def cmd_demo(parser, args) -> int:
    from agent.commands.evaluate import evaluate
    from agent.commands.train import check_run_dir, train

    start = time.perf_counter()
    settings = {"task": args.task, "seed": args.seed, "device": "cpu", "core": "fast"}
    if args.task in DEMO_TRAIN_EPISODES:
        settings["episodes"] = DEMO_TRAIN_EPISODES[args.task]
    config = resolve_config(settings)
    run_dir, eval_dir = args.out / "run", args.out / "eval"
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"argument --out: {args.out} is a file, expected a directory for run/ and eval/")
    try:
        check_run_dir(config, run_dir)
    except ValueError as error:
        parser.error(str(error))
    train(config, run_dir, progress=not args.quiet)
    metrics = evaluate(run_dir, eval_dir, episodes=DEMO_EPISODES[args.task], device="cpu", core="fast")
    print(summarize(metrics))
    print(f"figure: {metrics['figures'][0]}; total {time.perf_counter() - start:.0f} s")
    return 0


def cmd_reproduce(parser, args) -> int:
    from agent.reproduce.command import ReproduceInputError, reproduce

    _check_device(parser, args.device)
    try:
        return reproduce(args)
    except ReproduceInputError as error:
        parser.error(str(error))


def cmd_baseline(parser, args) -> int:
    """Check every argument before any work (parser.error: status 2, one line naming it), play,
    write, print eval's summary."""
    from agent.baselines.play import baseline_task_options, run_baseline
    from agent.baselines.registry import check_choice

    try:
        check_choice(args.task, args.strategy)
        baseline_task_options(args.task, _given_task_options(args))
    except ValueError as error:  # a BaselineChoiceError too
        parser.error(str(error))
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"argument --out: {args.out} is a file, expected a directory")
    metrics = run_baseline(args.task, args.strategy, args.out, episodes=args.episodes, seed=args.seed,
                           task_options=_given_task_options(args))
    print(f"baseline {args.strategy}: {metrics['baseline']['description']}")
    print(summarize(metrics))
    print(f"wrote {args.out}/trials.csv, metrics.json, " + ", ".join(Path(f).name for f in metrics.get("figures", [])))
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "verify": cmd_verify, "tasks": cmd_tasks, "demo": cmd_demo,
            "reproduce": cmd_reproduce, "baseline": cmd_baseline}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    retain_freed_memory()  # every update reallocates the same large tensors (allocator.py)
    sub = parser._subparsers._group_actions[0].choices[args.command]
    try:
        return COMMANDS[args.command](sub, args)
    except _one_line_errors() as error:  # no traceback: the message says what happened and what to do
        sys.stderr.write(f"error: {error}\n")  # one write: torchrun ranks print theirs side by side
        return 1


def _one_line_errors() -> tuple[type[Exception], ...]:
    """Errors reported by their message alone, exit status 1: a damaged checkpoint or one with
    NaN weights, a run directory another process is training, a run that diverged."""
    from agent.core.trainer import TrainingDiverged
    from agent.infra.checkpoint import CheckpointError
    from agent.infra.run_lock import RunLockedError

    return CheckpointError, RunLockedError, TrainingDiverged


if __name__ == "__main__":
    sys.exit(main())
