"""Training settings: one dataclass whose fields document themselves (CleanRL style).

Precedence: the field defaults below, then the task's `train_defaults`, then the command line
(every field is a `train` option: `--value-coef 0.1`). "(paper)" marks Wang et al. 2018's
values (docs/simulations.md); "(ours)" a choice made here, with its reason.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from agent.infra.flags import flag_name


REWARD_INPUTS = ("reward", "rpe", "both", "td")  # what the network gets besides the previous action (model.py)
# Ablations of the meta-RL mechanism (model.py, rollout.py; docs/controls-and-ablations.md):
#   reward_input     the previous reward/RPE slot(s) held at zero (training and test)
#   action_input     the previous-action one-hot held at zero (training and test)
#   state_reset      the LSTM state reset at every trial start (training and test); the previous
#                    action and reward still arrive, returns are still cut only at episode ends
#   shuffled_rewards training only: each step the rewards are permuted across the batch's rows
#                    (episodes) before the agent sees or learns from them, so a reward carries no
#                    information about the agent's own action; eval plays the task's real rewards
#                    (the null network of the unit-coding analysis)
ABLATIONS = ("reward_input", "action_input", "state_reset", "shuffled_rewards")


def _doc(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class TrainConfig:
    task: str = _doc("registered task name (python -m agent tasks)", "two_step")
    seed: int = _doc("seeds the weights, the task's generator and action sampling", 0)
    device: str = _doc("cpu or cuda", "cpu")
    core: str = _doc("LSTM core: fast (fastrnn backend auto), reference (fastrnn reference backend), "
                     "torch (torch.nn.LSTM stepped in Python, for benchmarks)", "fast")
    episodes: int = _doc("training episodes (all envs together); training stops at the first update "
                         "that completes this many; tasks set their own (two_step 30k, foraging 90k, "
                         "bandits 100k)", 10_000)
    num_envs: int = _doc("episodes run side by side, one batch row each (ours: sized for the CPU)", 32)
    unroll: int = _doc("environment steps per update; the gradient is truncated there and the value "
                       "bootstraps the rest (ours)", 20)
    hidden_size: int = _doc("LSTM units (paper)", 48)
    gamma: float = _doc("discount (paper)", 0.9)
    value_coef: float = _doc("weight of the value loss (paper)", 0.05)
    entropy_coef: float = _doc("weight of the entropy bonus (paper)", 0.05)
    entropy_coef_final: float = _doc("anneal the entropy weight linearly to this by the end of training; "
                                     "negative = keep it constant (paper: constant)", -1.0)
    optimizer: str = _doc("rmsprop (paper) or adam", "rmsprop")
    lr: float = _doc("learning rate (paper: 7e-4 with RMSProp)", 7e-4)
    rmsprop_alpha: float = _doc("RMSProp squared-gradient decay (torch default)", 0.99)
    rmsprop_eps: float = _doc("RMSProp epsilon (ours: 1e-5 keeps early steps bounded)", 1e-5)
    reward_input: str = _doc("what the network gets besides the previous action: the previous reward (paper, "
                             "simulations 1-5), the previous step's RPE r - V(s) in its place (rpe; Simulation 6 "
                             "sets it), both, or td: the TD error r + gamma V(s') - V(s) with V(s') from a first "
                             "pass of the step with the slot at zero (model.py)", "reward")
    ablate: list = field(default_factory=list, metadata={
        "help": "ablations of the mechanism, one or several: reward_input (previous reward/RPE input held at 0), "
                "action_input (previous action input held at 0), state_reset (LSTM state reset at every trial "
                "start), shuffled_rewards (training only: rewards permuted across episodes); stored in the run, "
                "eval applies them too; none by default"})
    max_grad_norm: float = _doc("clip the gradient norm to this; 0 = no clipping", 0.0)
    threads: int = _doc("torch CPU threads (ours: 1, the batch is too small to split across cores)", 1)
    checkpoint_every: int = _doc("updates between checkpoints (a final one is always written)", 200)
    log_every: int = _doc("updates between metric lines in metrics.jsonl", 20)
    # The task's own settings (its TaskOptions, e.g. harlow's --positions), completed with their
    # defaults by resolve_config; not a flag itself (each option is one).
    task_options: dict = field(default_factory=dict, metadata={"help": "task options"})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        return cls(**values)

    def validate(self) -> None:
        """Raise ValueError naming the offending option; called before any work."""
        self._check_finite()
        positive = ("episodes", "num_envs", "unroll", "hidden_size", "threads", "checkpoint_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{flag_name(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("value_coef", "entropy_coef", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ValueError(f"{flag_name(name)} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"--gamma must be in [0, 1], got {self.gamma}")
        if self.lr <= 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"--optimizer must be rmsprop or adam, got {self.optimizer!r}")
        if self.reward_input not in REWARD_INPUTS:
            raise ValueError(f"--reward-input must be one of {', '.join(REWARD_INPUTS)}, got {self.reward_input!r}")
        unknown = [name for name in self.ablate if name not in ABLATIONS]
        if unknown:
            raise ValueError(f"--ablate: unknown {', '.join(map(repr, unknown))}; valid choices: {', '.join(ABLATIONS)}")
        self.ablate = [name for name in ABLATIONS if name in self.ablate]  # one canonical order, no repeats
        if self.core not in ("fast", "reference", "torch"):
            raise ValueError(f"--core must be fast, reference or torch, got {self.core!r}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.device.startswith("cuda"):
            import torch
            if not torch.cuda.is_available():
                raise ValueError(f"--device {self.device}: CUDA is not available on this machine")
        from agent.simulations.registry import get_task_class
        self.task_options = get_task_class(self.task).resolve_options(self.task_options)

    def _check_finite(self) -> None:
        """Refuse NaN and infinity in every float setting, first: every comparison with NaN is
        False, so the range checks below would let `--lr nan` through to a run of NaN weights."""
        for name in float_settings():
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{flag_name(name)} must be a finite number, got {value}")


def float_settings() -> list[str]:
    """The names of TrainConfig's float fields (annotations are strings here: `from __future__ import annotations`)."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.type in (float, "float")]


def saved_config_differences(saved: dict, config: TrainConfig) -> list[str]:
    """'name: saved X, given Y' for each setting where a run's saved config.json differs from
    config. A setting the saved file lacks (added to TrainConfig, or a task option added, after
    the run was made) counts as its default then, so such a run can be resumed and reused."""
    from agent.simulations.registry import get_task_class

    given = config.to_dict()
    defaults = TrainConfig(task=given["task"]).to_dict()
    completed = {**defaults, **saved}
    try:
        completed["task_options"] = get_task_class(completed["task"]).resolve_options(saved.get("task_options", {}))
    except ValueError:  # another task, or an option it no longer has: compare as saved
        pass
    return [f"{k}: saved {completed.get(k)!r}, given {given[k]!r}" for k in given if completed.get(k) != given[k]]


def resolve_config(overrides: dict) -> TrainConfig:
    """Defaults, then the task's train_defaults, then the given overrides (None = not given)."""
    from agent.simulations.registry import get_task_class

    given = {k: v for k, v in overrides.items() if v is not None}
    task = given.get("task", TrainConfig.task)
    task_defaults = dict(get_task_class(task).train_defaults)
    options = {**task_defaults.pop("task_options", {}), **given.pop("task_options", {})}
    values = {**task_defaults, **given, "task_options": options}
    config = TrainConfig.from_dict(values)
    config.validate()
    return config
