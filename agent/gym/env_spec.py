"""Which Gymnasium environment `--task gym:ENV_ID --env-kwargs JSON` names, and whether the agent
can play it. Every check runs when the settings are resolved, before any work, and raises a
one-line ValueError that names the argument at fault.

ENV_ID is an id in Gymnasium's registry. NeuroGym's ids are found once neurogym is installed
(it registers them when imported, which happens here on the first id Gymnasium lacks); any other
package's follow Gymnasium's own `module:EnvId` syntax (gym:my_package:MyEnv-v0).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import json
from dataclasses import dataclass

import numpy as np

GYM_PREFIX = "gym:"
# Packages that register environments when imported, tried when Gymnasium lacks an id.
REGISTERING_PACKAGES = ("neurogym",)
PROBE_STEPS = 300  # random steps that discover the scalar info fields an environment reports


def parse_env_kwargs(value) -> dict:
    """--env-kwargs as a dict: a JSON object (a dict passes through)."""
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as error:
        reason = f"{error.msg} at character {error.pos}" if isinstance(error, json.JSONDecodeError) else str(error)
        raise ValueError(f"--env-kwargs: not valid JSON ({reason}): {value!r}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"--env-kwargs: expected a JSON object such as '{{\"max_episode_steps\": 200}}', "
                         f"got {value!r}")
    return parsed


def canonical_kwargs(value) -> str:
    """One spelling per set of keyword arguments (the key of the cached environment specs)."""
    return json.dumps(parse_env_kwargs(value), sort_keys=True)


def registered_id(env_id: str) -> str:
    """The id to pass to gymnasium.make, after importing whatever registers it; ValueError if none does."""
    import gymnasium

    if not env_id:
        raise ValueError("--task gym:ENV_ID: the environment id is empty (e.g. gym:CartPole-v1)")
    if ":" in env_id:  # Gymnasium's module:EnvId: the module registers the id
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(f"--task gym:{module}:{env_id}: cannot import {module!r} ({error})") from None
    if env_id not in gymnasium.registry:
        for package in REGISTERING_PACKAGES:
            if importlib.util.find_spec(package) is not None:
                importlib.import_module(package)
    if env_id not in gymnasium.registry:
        close = difflib.get_close_matches(env_id, list(gymnasium.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        neurogym = "" if importlib.util.find_spec("neurogym") else \
            " (NeuroGym's tasks need its venv: bash scripts/setup.sh --neurogym)"
        raise ValueError(f"--task gym:{env_id}: no Gymnasium environment registered under {env_id!r}{hint}{neurogym}")
    return env_id


@dataclass(frozen=True)
class EnvSpec:
    """An environment the agent can play: how to make it and what its spaces are."""

    env_id: str
    kwargs_json: str
    obs_shape: tuple[int, ...]
    num_actions: int
    action_start: int  # Discrete(n, start): the agent's action a is the environment's a + start

    @property
    def obs_size(self) -> int:
        return int(np.prod(self.obs_shape))

    def make(self):
        """A fresh environment (gymnasium.make with the keyword arguments) that reset(seed=...) seeds."""
        import gymnasium

        from agent.gym.legacy_seed import seeded

        return seeded(gymnasium.make(self.env_id, **json.loads(self.kwargs_json)))


@functools.lru_cache(maxsize=None)
def env_spec(env_id: str, kwargs_json: str = "{}") -> EnvSpec:
    """Make the environment once and check its spaces. kwargs_json: canonical_kwargs' output."""
    import gymnasium.spaces as spaces

    gym_id = registered_id(env_id)
    kwargs = json.loads(kwargs_json)
    try:
        import gymnasium

        env = gymnasium.make(gym_id, **kwargs)
    except Exception as error:  # the environment's constructor rejects them: TypeError, ValueError, ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        given = f" with --env-kwargs {kwargs_json}" if kwargs else ""
        raise ValueError(f"--env-kwargs: gymnasium.make({gym_id!r}){given} failed: {reason}") from None
    try:
        action_space, obs_space = env.action_space, env.observation_space
    finally:
        env.close()
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"--task gym:{env_id}: its action space is {action_space}; the agent needs a Discrete one")
    if not isinstance(obs_space, spaces.Box):
        raise ValueError(f"--task gym:{env_id}: its observation space is {obs_space}; the agent needs a Box")
    return EnvSpec(gym_id, kwargs_json, tuple(int(n) for n in obs_space.shape), int(action_space.n),
                   int(action_space.start))


def scalar(value):
    """value as a float if it is one number (bool, int, float, numpy scalar or 0-d array), else None."""
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf":
        return float(value)
    return None


@functools.lru_cache(maxsize=None)
def info_fields(spec: EnvSpec, steps: int = PROBE_STEPS) -> tuple[str, ...]:
    """The scalar fields of the environment's step info, in the order they first appear, found
    by random play (seed 0): trials.csv gets one column each. A field that first appears later
    than `steps` steps in is not recorded."""
    env = spec.make()
    env.action_space.seed(0)
    found: dict[str, None] = {}
    try:
        env.reset(seed=0)
        for _ in range(steps):
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            found.update({key: None for key, value in info.items() if scalar(value) is not None})
            if terminated or truncated:
                env.reset()
    finally:
        env.close()
    return tuple(found)
