"""(task, strategy) -> a classical learner that plays the task's test episodes
(`python -m agent baseline`): the controls of docs/simulations.md, "Controls and ablations".

Each entry makes a step policy (step_policy.py) from a seed. What a learner reads: the task's
observations, its own actions and the rewards, except the foraging oracle `known_rates_optimal`,
which reads the current block's base rates from the task (it is an oracle by design); the
learners that know something of the task's structure say so in their module (two-step's
model_based knows the 0.8/0.2 transitions; bayes_fixed_hazard knows the arms' reward
probabilities; the foraging belief agent and oracle know the baiting rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# The foraging oracle's and belief agent's grid of base rates (agent/simulations/foraging/
# baselines.py's GRID_POINTS; its value iteration takes ~10 s on one core; tests set a coarser one).
FORAGING_GRID_POINTS = 101

BANDIT_TASKS = ("bandit_independent", "bandit_dependent", "bandit_dependent_easy", "bandit_dependent_medium",
                "bandit_dependent_hard")


@dataclass(frozen=True)
class Strategy:
    name: str
    tasks: tuple[str, ...]
    make: Callable[[str, int, dict], object]  # (task name, seed, test task options) -> step policy


class BaselineChoiceError(ValueError):
    """An unknown task or strategy, or a strategy on a task it does not fit; the message names
    the flag and lists the valid choices."""


def _two_step(kind: str):
    def make(task: str, seed: int, options: dict):
        from agent.simulations.two_step import baselines as two_step

        return {"model_free": two_step.ModelFreeTD, "model_based": two_step.ModelBased}[kind](seed)
    return make


def _volatility(kind: str):
    def make(task: str, seed: int, options: dict):
        from agent.simulations.volatility import baselines as volatility

        classes = {"rescorla_wagner": volatility.RescorlaWagner, "bayes_fixed_hazard": volatility.BayesFixedHazard}
        return classes[kind](seed)
    return make


def _reversal(task: str, seed: int, options: dict):
    from agent.simulations.reversal.baselines import ModelFreeTD

    return ModelFreeTD(seed)


def _risky_safe(task: str, seed: int, options: dict):
    from agent.simulations.risky_safe.baselines import QLearning

    return QLearning(seed)


def _harlow(task: str, seed: int, options: dict):
    from agent.simulations.harlow.baselines import StimulusBlind

    return StimulusBlind(seed)


def _foraging(kind: str):
    def make(task: str, seed: int, options: dict):
        from agent.simulations.foraging import baselines as foraging
        from agent.simulations.foraging.strategies import change_hazard
        from agent.simulations.step_policy import TrialStrategy

        grid = FORAGING_GRID_POINTS
        hazard = change_hazard(options)  # the test episodes' block rule: the belief agent's prior on changes
        made = {
            "known_rates_optimal": lambda: (foraging.KnownRatesOptimal(seed=seed, grid_points=grid),
                                            {"lapse": 0.05, "grid_points": grid}),
            "belief_optimal": lambda: (foraging.BeliefOptimal(hazard=hazard, seed=seed, grid_points=grid),
                                       {"hazard": hazard, "lapse": 0.05, "grid_points": grid}),
            "q_learning": lambda: (foraging.QLearnerSoftmax(alpha=0.3, beta=5.0, seed=seed),
                                   {"alpha": 0.3, "beta": 5.0}),
            "win_stay_lose_shift": lambda: (foraging.WinStayLoseShift(seed=seed), {"lapse": 0.05}),
            "alternate": lambda: (foraging.Alternate(seed=seed), {"lapse": 0.05}),
            "random": lambda: (foraging.RandomChoice(seed=seed), {}),
        }
        strategy, parameters = made[kind]()
        return TrialStrategy(strategy, kind, strategy.name, seed, parameters)
    return make


def _bandit(kind: str):
    def make(task: str, seed: int, options: dict):
        from agent.simulations.bandits.baselines import BASELINES
        from agent.simulations.bandits.gittins import GittinsIndex
        from agent.simulations.step_policy import BanditStrategy

        policy = BASELINES[kind]()
        parameters = {"discount": policy.discount} if isinstance(policy, GittinsIndex) else {}
        if kind == "rescorla_wagner":
            parameters = {"alpha": policy.learning_rate, "beta": policy.inverse_temperature,
                          "initial_value": policy.initial_value}
        return BanditStrategy(policy, kind, policy.name, seed, parameters)
    return make


_STRATEGIES = [
    Strategy("model_free", ("two_step",), _two_step("model_free")),
    Strategy("model_based", ("two_step",), _two_step("model_based")),
    Strategy("rescorla_wagner", ("volatility",), _volatility("rescorla_wagner")),
    Strategy("bayes_fixed_hazard", ("volatility",), _volatility("bayes_fixed_hazard")),
    Strategy("model_free", ("reversal",), _reversal),
    *(Strategy(kind, ("foraging",), _foraging(kind)) for kind in
      ("known_rates_optimal", "belief_optimal", "q_learning", "win_stay_lose_shift", "alternate", "random")),
    *(Strategy(kind, BANDIT_TASKS, _bandit(kind)) for kind in ("thompson", "ucb1", "gittins", "rescorla_wagner")),
    Strategy("q_learning", ("risky_safe",), _risky_safe),
    Strategy("stimulus_blind", ("harlow",), _harlow),
]


def tasks_with_strategies() -> list[str]:
    from agent.simulations.registry import task_names

    covered = {task for strategy in _STRATEGIES for task in strategy.tasks}
    return [name for name in task_names() if name in covered]


def strategies_for(task: str) -> list[str]:
    return [s.name for s in _STRATEGIES if task in s.tasks]


def pairs() -> list[tuple[str, str]]:
    """Every (task, strategy) the command plays."""
    return [(task, name) for task in tasks_with_strategies() for name in strategies_for(task)]


def check_choice(task: str, strategy: str) -> None:
    """Raise BaselineChoiceError unless `strategy` plays `task` (both known)."""
    from agent.simulations.registry import task_names

    covered = tasks_with_strategies()
    if task not in covered:
        known = task in task_names() or ":" in task
        reason = f"no baseline strategies for task {task!r}" if known else f"unknown task {task!r}"
        raise BaselineChoiceError(f"--task: {reason}; tasks with strategies: {', '.join(covered)}")
    valid = strategies_for(task)
    if strategy in valid:
        return
    elsewhere = sorted({t for s in _STRATEGIES if s.name == strategy for t in s.tasks})
    if elsewhere:
        raise BaselineChoiceError(f"--strategy: {strategy!r} does not fit task {task!r} (it plays "
                                  f"{', '.join(elsewhere)}); strategies for {task}: {', '.join(valid)}")
    raise BaselineChoiceError(f"--strategy: unknown strategy {strategy!r} for task {task!r}; choose from "
                              f"{', '.join(valid)}")


def make_policy(task: str, strategy: str, seed: int, options: dict | None = None):
    """A fresh step policy; options: the test episodes' task options (resolved)."""
    check_choice(task, strategy)
    entry = next(s for s in _STRATEGIES if s.name == strategy and task in s.tasks)
    return entry.make(task, seed, options or {})
