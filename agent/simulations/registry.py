"""Task registry: name -> task class. A new task registers itself and is then available to
train/eval/verify, listed by `python -m agent tasks` and covered by the verify test."""

from __future__ import annotations

import importlib

_TASKS: dict[str, type] = {}

# Modules that define tasks; importing one registers its classes.
_TASK_MODULES = ("agent.simulations.two_step.task", "agent.simulations.foraging.task",
                 "agent.simulations.bandits.task", "agent.simulations.harlow.task",
                 "agent.simulations.volatility.task", "agent.simulations.reversal.task",
                 "agent.simulations.risky_safe.task")

# Task families: a name FAMILY:ID (gym:CartPole-v1) is resolved by the family module's
# task_class(ID) instead of being registered; the module's base class holds the family's options.
_TASK_FAMILIES = {"gym": ("agent.gym.task", "gym_task_class", "GymTask")}


def register(task_class: type) -> type:
    name = task_class.name
    if not name or name in _TASKS:
        raise ValueError(f"task name {name!r} is empty or registered twice")
    _TASKS[name] = task_class
    return task_class


def _load_all() -> None:
    for module in _TASK_MODULES:
        importlib.import_module(module)


def task_names() -> list[str]:
    """Registered names, in _TASK_MODULES order (whatever order modules were imported in)."""
    _load_all()
    rank = {module: i for i, module in enumerate(_TASK_MODULES)}
    names = list(_TASKS)
    return sorted(names, key=lambda n: (rank.get(_TASKS[n].__module__, len(rank)), names.index(n)))


def family_classes() -> list[type]:
    """The base class of every task family (their options are flags like any task's)."""
    return [getattr(importlib.import_module(module), base) for module, _, base in _TASK_FAMILIES.values()]


def get_task_class(name: str) -> type:
    family, _, member = name.partition(":")
    if member and family in _TASK_FAMILIES:
        module, factory, _ = _TASK_FAMILIES[family]
        return getattr(importlib.import_module(module), factory)(member)
    _load_all()
    if name not in _TASKS:
        raise ValueError(f"--task: unknown task {name!r}; known tasks: {', '.join(_TASKS)}")
    return _TASKS[name]


def make_task(name: str, num_envs: int, **kwargs):
    """A task instance (call reset() before stepping). kwargs: seed, device, mode, trials_per_episode."""
    task = get_task_class(name)(num_envs, **kwargs)
    return task
