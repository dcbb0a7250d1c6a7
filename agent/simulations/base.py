"""The interface every task implements: a batch of independent episodes stepped as tensors.

A task holds `num_envs` rows; each row plays episodes back to back and starts a new one on
its own the step after its episode ends (auto-reset), so the trainer never waits for a batch
to finish. All state lives in tensors on one device and all randomness comes from the task's
own torch.Generator, so a task is reproducible from its seed and its state_dict restores it
exactly (crash-resume needs that).

Trials and steps: the agent acts once per *step*; a task may take several steps per *trial*
(the two-step task takes two). A step that completes a trial sets `trial_end` for that row and,
when the task is recording, fills `record` with that trial's columns for trials.csv.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from agent.infra.flags import flag_name
from agent.simulations.rpe import td_rpe


@dataclass(frozen=True)
class TaskOption:
    """A setting of one task, given on the command line as --NAME (train; eval too if at_eval)."""

    default: object
    help: str
    choices: tuple | None = None
    at_eval: bool = False  # eval may override it for the test episodes
    test_default: object = None  # what test episodes use when eval does not override (None: the run's value)
    check: Callable | None = None  # raises ValueError naming the flag for a bad value, before any work


@dataclass
class StepResult:
    obs: Tensor  # (B, obs_size) float: the observation for the next step (a new episode's first where done)
    reward: Tensor  # (B,) float: reward for the action just taken
    done: Tensor  # (B,) bool: the action just taken ended the row's episode
    trial_end: Tensor  # (B,) bool: the action just taken completed a trial
    record: dict[str, Tensor] | None  # trial_columns -> (B,) values, valid where trial_end; None unless recording
    any_done: bool  # done.any(), which step() needs anyway; callers skip episode-start work without it
    # Set only by tasks that override the agent (see BatchedTask.has_forced_steps):
    executed: Tensor | None = None  # (B,) long: the action the task carried out (a forced trial's, else the agent's)
    forced: Tensor | None = None  # (B,) bool: the task chose the action (out of the policy loss)
    rpe_offset: Tensor | None = None  # (B,) float: added to the agent's RPE input (test-time manipulations)
    # Set only by tasks whose environments end episodes by truncation or ignore some actions (gym tasks,
    # see BatchedTask.has_ignored_steps and has_truncation):
    ignored: Tensor | None = None  # (B,) bool: the environment ignored the action (a reset step): out of the loss
    truncated: Tensor | None = None  # (B,) bool: the episode was cut short (not ended) by this step; None: no row
    final_obs: Tensor | None = None  # (B, obs_size): where truncated, the episode's last observation (its
                                     # return bootstraps from its value; obs holds the next episode's first)


class BatchedTask:
    """Base class: subclasses set the class attributes and implement _new_episodes and _advance."""

    name: str = ""
    description: str = ""  # one line, shown by `python -m agent tasks`
    obs_size: int = 0
    num_actions: int = 2
    steps_per_trial: int = 1
    # Columns of trials.csv after `episode, trial`, in order; every task has action and reward.
    trial_columns: tuple[str, ...] = ("action", "reward")
    # Columns eval computes after the trial columns from the value head's estimates (derive_columns).
    derived_columns: tuple[str, ...] = ("value", "rpe")
    # Integer-coded columns written as names in trials.csv (column -> names by code).
    column_labels: dict[str, tuple[str, ...]] = {}
    # Module with analyze(trials, out_dir, context) -> metrics, run by `eval` (imported lazily).
    analysis_module: str | None = None
    # Training settings this task needs that differ from TrainConfig's defaults (see config.py).
    train_defaults: dict = {}
    # Names of the tensor attributes that make up the task's state (saved in checkpoints).
    state_tensors: tuple[str, ...] = ()
    # Names of plain Python attributes that are also state (a stage shared by all rows).
    state_scalars: tuple[str, ...] = ()
    # The task's own settings (name -> TaskOption), stored in TrainConfig.task_options.
    options: dict[str, TaskOption] = {}
    # Analyses that evaluate each training-quantile checkpoint (evaluate.py) set this.
    evaluates_quantiles: bool = False
    # Tasks whose steps may be forced set this and, in _advance, the attributes below for the
    # step just taken; step() hands them on in the StepResult.
    has_forced_steps: bool = False
    executed: Tensor | None = None
    forced: Tensor | None = None
    rpe_offset: Tensor | None = None
    # Tasks whose steps may be ignored by the environment (StepResult.ignored) set this: the rollout
    # then keeps a per-step loss mask. Tasks whose episodes may be truncated set has_truncation: the
    # rollout then keeps each truncated step's bootstrap value.
    has_ignored_steps: bool = False
    has_truncation: bool = False
    # False for tasks whose state cannot be saved (a Gymnasium environment's): a resumed run then
    # starts fresh episodes instead of continuing the saved ones.
    restores_exactly: bool = True
    # The header of trials.csv's second column (gym tasks record every step, so theirs is "step").
    index_column: str = "trial"

    @classmethod
    def agent_sizes(cls, options: dict) -> tuple[int, int]:
        """(observation size, number of actions) of the task with these (resolved) options; the
        class attributes unless the environment's spaces depend on its options (gym tasks)."""
        return cls.obs_size, cls.num_actions

    @classmethod
    def make_agent_modules(cls, hidden_size: int, options: dict) -> tuple:
        """(encoder, readout) for the agent (model.py), trained with it. encoder: an nn.Module
        mapping observations (..., obs_size) to the core's features (..., out_size); readout:
        extra policy logits from (hidden, core input). None, None (default): observations go to
        the core as they are and the linear heads alone act."""
        return None, None

    @classmethod
    def resolve_options(cls, given: dict) -> dict:
        """given, checked against the task's options and completed with their defaults."""
        unknown = sorted(set(given) - set(cls.options))
        if unknown:
            flags = ", ".join(map(flag_name, unknown))
            raise ValueError(f"{flags}: not an option of task {cls.name!r}"
                             + (f" (its options: {', '.join(cls.options)})" if cls.options else " (it has none)"))
        values = {}
        for name, option in cls.options.items():
            value = given.get(name, option.default)
            if option.choices is not None and value not in option.choices:
                raise ValueError(f"{flag_name(name)}: expected one of {', '.join(map(str, option.choices))}, "
                                 f"got {value!r}")
            if option.check is not None:
                option.check(value)
            values[name] = value
        return values

    def __init__(
        self,
        num_envs: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        mode: str = "train",
        trials_per_episode: int | None = None,
        options: dict | None = None,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.mode = mode
        self.options = type(self).resolve_options(options or {})
        # None: the task's own episode length(s); an int shortens episodes (verify, tests).
        self.trials_override = trials_per_episode
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.recording = False
        self._empty_obs = torch.zeros(num_envs, 0, device=self.device)
        self._no_row = torch.zeros(num_envs, dtype=torch.bool, device=self.device)  # read-only
        # Read-only; _advance returns it as trial_end when every row ended a trial, which spares
        # step() an op.
        self.every_row = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        # Shared by every task: the trial index within the episode and the episode's length.
        self.trial = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.episode_trials = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.state_tensors = ("trial", "episode_trials", *type(self).state_tensors)

    # ---- what subclasses implement -------------------------------------------------------
    def _new_episodes(self, rows: Tensor) -> None:
        """Draw fresh episode parameters for the rows where the bool mask `rows` is True."""
        raise NotImplementedError

    def _advance(self, actions: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor] | None]:
        """Apply actions (B,) long; return (reward (B,), trial_end (B,) bool, record or None).

        trial_end may be None for "no row ended a trial" (saves the episode-end check) and
        self.every_row for "every row did" (saves an op). Must
        advance self.trial where a trial ends. Must not reset episodes (step() does).
        """
        raise NotImplementedError

    def observe(self) -> Tensor:
        """The current observation, (B, obs_size)."""
        return self._empty_obs

    def derive_columns(self, trials: dict[str, np.ndarray], gamma: float) -> dict[str, np.ndarray]:
        """derived_columns from the per-trial `value` (first step) and `value_last` (last step)
        that eval records. Default, for one-step trials: `value` is the estimate at the decision
        and `rpe` the outcome RPE, reward + gamma * V(next trial) - V(this trial)."""
        return {"value": trials["value"], "rpe": td_rpe(trials, gamma)}

    @classmethod
    def eval_variants(cls, options: dict) -> list[dict]:
        """The task options of each set of test episodes eval plays (same seed each); one by default."""
        return [options]

    def write_run_files(self, run_dir) -> None:
        """Files a training run keeps beside its checkpoint (Harlow: objects.json); none by default."""

    # ---- shared machinery -----------------------------------------------------------------
    def rand(self, *shape: int) -> Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.device)

    def draw_episode_lengths(self, low: int, high: int) -> Tensor:
        """Trials per episode for every row, uniform on [low, high] (or the override)."""
        if self.trials_override is not None:
            low = high = self.trials_override
        if low == high:
            return torch.full((self.num_envs,), low, dtype=torch.long, device=self.device)
        return torch.randint(low, high + 1, (self.num_envs,), generator=self.generator, device=self.device)

    def reset(self, stagger: bool = False) -> Tensor:
        """Start a fresh episode in every row; returns the first observation.

        stagger: begin each row's first episode at a random trial of it, so that rows end their
        episodes at different steps from then on. Training needs this: with fixed-length episodes
        in lockstep, every update would see one phase of the episode only (all early trials, then
        all late ones), and the weights would track the phase instead of learning one policy for
        all of it (we saw a dependent-bandit agent whose frozen weights played far worse than
        its training reward). Evaluation starts unstaggered, at trial 0.
        """
        self._new_episodes(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        self.trial.zero_()
        if stagger:
            fraction = self.rand(self.num_envs)
            self.trial = (fraction * self.episode_trials).long().clamp(max=self.episode_trials - 1)
        return self.observe()

    def step(self, actions: Tensor) -> StepResult:
        reward, trial_end, record = self._advance(actions)
        extras = (self.executed, self.forced, self.rpe_offset)
        if trial_end is None:
            return StepResult(self.observe(), reward, self._no_row, self._no_row, record, False, *extras)
        done = self.trial >= self.episode_trials
        if trial_end is not self.every_row:
            done &= trial_end
        # One host sync per step buys skipping the reset ops on the (most) steps with no episode end.
        any_done = bool(done.any())
        if any_done:
            self._new_episodes(done)
            self.trial.masked_fill_(done, 0)
        return StepResult(self.observe(), reward, done, trial_end, record, any_done, *extras)

    def state_dict(self) -> dict:
        state = {name: getattr(self, name).clone() for name in self.state_tensors}
        state.update({name: getattr(self, name) for name in self.state_scalars})
        state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in self.state_tensors:
            getattr(self, name).copy_(state[name])
        for name in self.state_scalars:
            setattr(self, name, state[name])
        self.generator.set_state(state["generator"])
