"""A Gymnasium environment as a BatchedTask: `--task gym:ENV_ID` trains, evaluates and verifies
the meta-RL agent on it like on our own tasks.

One batch row per sub-environment of a Gymnasium vector env (vector.py). A gym episode is the
agent's episode: where one ends the core's state is reset (fastrnn's `resets`, through the
StepResult's `done`) and the next step's previous action and reward are zero. Steps on which
the environment ignored the action (Gymnasium 1.x's reset steps) are steps of their own: they
also start with a reset state and zero previous action and reward, and stay out of the loss and
of trials.csv. A truncated episode's return bootstraps from its final observation's value; a
terminated one's does not. --trials-per-episode K ends episodes after K trials (trial_limit.py).

Every step is one row of trials.csv (`episode, step, action, reward`, then the scalar fields of
the environment's info, env_spec.info_fields): the framework's "trial" is a step here, and the
analysis (agent/gym/analysis.py) counts the environment's own trials from info["new_trial"].

A Gymnasium environment's state cannot be saved in general, so a resumed run starts fresh
episodes (restores_exactly) instead of continuing the saved ones.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from agent.gym.env_spec import GYM_PREFIX, EnvSpec, canonical_kwargs, env_spec, info_fields, parse_env_kwargs, scalar
from agent.gym.vector import VECTOR_MODES, GymVectorEnv, row_infos
from agent.simulations.base import BatchedTask, StepResult, TaskOption

# trials.csv columns of our own; an info field of the same name gets the prefix "info_".
RESERVED_COLUMNS = ("episode", "step", "trial", "action", "reward", "value", "value_last", "rpe", "hidden")


def positive_trials(value) -> int | None:
    """--trials-per-episode as an int >= 1, or None (not given)."""
    if value is None:
        return None
    try:
        trials = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"--trials-per-episode: expected an integer >= 1, got {value!r}") from None
    if trials < 1 or str(trials) != str(value).strip():
        raise ValueError(f"--trials-per-episode: expected an integer >= 1, got {value!r}")
    return trials


def make_sub_env(spec: EnvSpec, trials: int | None):
    """One sub-environment (module level: AsyncVectorEnv pickles it into its workers)."""
    from agent.gym.trial_limit import TrialLimit  # gymnasium imported only when a gym task runs

    env = spec.make()
    return env if trials is None else TrialLimit(env, trials)


class GymTask(BatchedTask):
    """The family's base; gym_task_class makes one subclass per environment id."""

    name = "gym"
    description = "any registered Gymnasium environment with Discrete actions and a Box observation"
    env_id = ""
    index_column = "step"
    has_ignored_steps = True
    has_truncation = True
    restores_exactly = False
    analysis_module = "agent.gym.analysis"
    options = {
        "env_kwargs": TaskOption("{}", "gym: keyword arguments of gymnasium.make, a JSON object, e.g. "
                                 "'{\"max_episode_steps\": 200}'", check=parse_env_kwargs),
        "trials_per_episode": TaskOption(None, "gym: end every episode after K trials (the steps with "
                                         "info[\"new_trial\"], NeuroGym's mark; every step where the environment "
                                         "reports none); default: the environment's own episodes",
                                         at_eval=True, check=positive_trials),
        "vector_mode": TaskOption("sync", "gym: Gymnasium's SyncVectorEnv (one process) or AsyncVectorEnv (one "
                                  "worker process per environment)", choices=VECTOR_MODES, at_eval=True),
    }

    @classmethod
    def resolve_options(cls, given: dict) -> dict:
        """The options checked, with one spelling each (the JSON re-serialized, K an int), and the
        environment made once to check its spaces: every bad input is refused before any work."""
        values = super().resolve_options(given)
        values["env_kwargs"] = canonical_kwargs(values["env_kwargs"])
        values["trials_per_episode"] = positive_trials(values["trials_per_episode"])
        if cls.env_id:
            env_spec(cls.env_id, values["env_kwargs"])
        return values

    @classmethod
    def agent_sizes(cls, options: dict) -> tuple[int, int]:
        spec = env_spec(cls.env_id, canonical_kwargs(options["env_kwargs"]))
        return spec.obs_size, spec.num_actions

    def __init__(self, num_envs: int, *, seed: int = 0, autoreset_mode=None, **kwargs):
        """autoreset_mode: Gymnasium >= 1.1's AutoresetMode for the vector env (tests run the
        same-step path with it); None: the vector env's default."""
        super().__init__(num_envs, seed=seed, **kwargs)
        self.spec = env_spec(self.env_id, self.options["env_kwargs"])
        self.obs_size, self.num_actions = self.spec.obs_size, self.spec.num_actions
        # verify and tests shorten episodes through trials_per_episode, like on our own tasks
        self.trials_limit = self.trials_override or self.options["trials_per_episode"]
        self.info_fields = info_fields(self.spec)
        self.trial_columns = ("action", "reward",
                              *(("info_" + f if f in RESERVED_COLUMNS else f) for f in self.info_fields))
        env_fns = [functools.partial(make_sub_env, self.spec, self.trials_limit)] * num_envs
        self.vector = GymVectorEnv(env_fns, self.options["vector_mode"], autoreset_mode=autoreset_mode)

    def reset(self, stagger: bool = False) -> Tensor:
        """Every row starts an episode. stagger (training): with --trials-per-episode, each row's
        first episode is 1..K trials long, so rows do not end their episodes in lockstep."""
        if stagger and self.trials_limit is not None:
            first = torch.randint(1, self.trials_limit + 1, (self.num_envs,), generator=self.generator,
                                  device=self.device)
            self.vector.set_attr("first_episode_trials", first.tolist())
        # a new seed for each reset (drawn from the task's generator): a resumed run plays new episodes
        seed = int(torch.randint(0, 2**31 - self.num_envs, (1,), generator=self.generator, device=self.device))
        obs = self.vector.reset(seed=seed)
        self.trial.zero_()
        return torch.from_numpy(obs).to(self.device)

    def step(self, actions: Tensor) -> StepResult:
        out = self.vector.step(actions.cpu().numpy() + self.spec.action_start)
        obs = torch.from_numpy(out.obs).to(self.device)
        reward = torch.from_numpy(out.reward).to(self.device)
        done_rows = out.terminated | out.truncated | out.ignored
        done = torch.from_numpy(done_rows).to(self.device)
        ignored = torch.from_numpy(out.ignored).to(self.device)
        taken = ~ignored
        record = self._record(actions, reward, out) if self.recording else None
        self.trial += taken
        any_done = bool(done_rows.any())
        if any_done:
            self.trial.masked_fill_(done, 0)
        truncated = final_obs = None
        if out.final_obs is not None:
            truncated = torch.from_numpy(out.truncated).to(self.device)
            final_obs = torch.from_numpy(out.final_obs).to(self.device)
        return StepResult(obs, reward, done, taken, record, any_done, ignored=ignored, truncated=truncated,
                          final_obs=final_obs)

    def _record(self, actions: Tensor, reward: Tensor, out) -> dict[str, Tensor]:
        infos = row_infos(out.infos, self.num_envs)
        record = {"action": actions.clone(), "reward": reward.clone()}
        for column, field in zip(self.trial_columns[2:], self.info_fields):
            values = [scalar(info.get(field)) for info in infos]
            record[column] = torch.tensor([math.nan if v is None else v for v in values], dtype=torch.float64,
                                          device=self.device)
        return record

    def close(self) -> None:
        vector = self.__dict__.pop("vector", None)
        if vector is not None:
            vector.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the vector env's workers may be gone already
            pass


@functools.lru_cache(maxsize=None)
def gym_task_class(env_id: str) -> type:
    """The task class of `gym:ENV_ID` (ValueError naming --task if no environment has that id)."""
    from agent.gym.env_spec import registered_id

    registered_id(env_id)
    return type(f"GymTask[{env_id}]", (GymTask,), {
        "name": GYM_PREFIX + env_id, "env_id": env_id, "description": f"Gymnasium environment {env_id}",
        "__module__": __name__})
