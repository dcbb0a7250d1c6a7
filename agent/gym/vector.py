"""Gymnasium's vector API with its autoreset conventions turned into one.

When a sub-environment's episode ends, the vector env resets it by itself, in one of two ways:
- next-step (Gymnasium 1.x's default): the ending step returns the episode's final observation;
  the *following* step is a reset step: the action given for that row is ignored and the step
  returns the new episode's first observation, reward 0, and neither flag;
- same-step (Gymnasium 0.29, and 1.x with AutoresetMode.SAME_STEP): the ending step already
  returns the new episode's first observation; the final one is in info["final_observation"]
  (0.29) or info["final_obs"] (1.x).
VectorStep reports both alike: which rows ended an episode (terminated or truncated), the
final observation of each truncated one (its return bootstraps from that observation's value),
and which rows' action was ignored (next-step's reset steps, to be left out of the loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VECTOR_MODES = ("sync", "async")
FINAL_OBS_KEYS = ("final_obs", "final_observation")  # Gymnasium 1.x, 0.29


@dataclass
class VectorStep:
    obs: np.ndarray  # (B, obs_size) float32: the observation the agent acts on next
    reward: np.ndarray  # (B,) float32
    terminated: np.ndarray  # (B,) bool: the episode ended (no bootstrap)
    truncated: np.ndarray  # (B,) bool: the episode was cut short and not terminated (bootstrap)
    final_obs: np.ndarray | None  # (B, obs_size): where truncated, the episode's last observation; None if no row
    ignored: np.ndarray  # (B,) bool: a reset step: the row's action was ignored
    infos: dict  # Gymnasium's vector info of the step (see row_infos)


def is_next_step(envs) -> bool:
    """The vector env's autoreset convention: Gymnasium >= 1.0 states it in its metadata, 0.29 has
    only same-step."""
    mode = envs.metadata.get("autoreset_mode")
    if mode is None:
        return False
    mode = getattr(mode, "value", mode)
    if mode not in ("NextStep", "SameStep"):
        raise ValueError(f"vector env autoreset mode {mode!r}: only next-step and same-step autoreset are handled")
    return mode == "NextStep"


class GymVectorEnv:
    """num_envs sub-environments from env_fns, stepped together by SyncVectorEnv ("sync": one
    process) or AsyncVectorEnv ("async": one worker process each)."""

    def __init__(self, env_fns, mode: str = "sync", *, autoreset_mode=None):
        import gymnasium.vector as vector

        if mode not in VECTOR_MODES:
            raise ValueError(f"--vector-mode: expected one of {', '.join(VECTOR_MODES)}, got {mode!r}")
        vector_class = vector.SyncVectorEnv if mode == "sync" else vector.AsyncVectorEnv
        # autoreset_mode (Gymnasium >= 1.1 only) lets the tests run the same-step path on 1.x.
        extra = {} if autoreset_mode is None else {"autoreset_mode": autoreset_mode}
        self.envs = vector_class(env_fns, **extra)
        self.num_envs = self.envs.num_envs
        self.next_step = is_next_step(self.envs)
        self.reset_pending = np.zeros(self.num_envs, dtype=bool)  # next-step: the row's coming step resets it

    def reset(self, seed: int) -> np.ndarray:
        """Every row starts an episode; sub-environment i is seeded with seed + i (Gymnasium's rule)."""
        obs, _ = self.envs.reset(seed=seed)
        self.reset_pending[:] = False
        return self._flat(obs)

    def set_attr(self, name: str, values: list) -> None:
        self.envs.set_attr(name, values)

    def step(self, actions: np.ndarray) -> VectorStep:
        ignored = self.reset_pending.copy() if self.next_step else np.zeros(self.num_envs, dtype=bool)
        obs, reward, terminated, truncated, infos = self.envs.step(actions)
        obs = self._flat(obs)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool) & ~terminated
        final_obs = None
        if truncated.any():
            final_obs = obs if self.next_step else self._final_obs(infos, truncated)
        if self.next_step:
            self.reset_pending = terminated | truncated
        return VectorStep(obs, np.asarray(reward, dtype=np.float32), terminated, truncated, final_obs, ignored, infos)

    def close(self) -> None:
        self.envs.close()

    def _flat(self, obs) -> np.ndarray:
        return np.asarray(obs, dtype=np.float32).reshape(self.num_envs, -1)

    def _final_obs(self, infos: dict, rows: np.ndarray) -> np.ndarray:
        key = next(key for key in FINAL_OBS_KEYS if key in infos)
        final = np.zeros((self.num_envs, int(np.prod(self.envs.single_observation_space.shape))), dtype=np.float32)
        for i in np.flatnonzero(rows):
            final[i] = np.asarray(infos[key][i], dtype=np.float32).reshape(-1)
        return final


def row_infos(infos: dict, rows: int) -> list[dict]:
    """Gymnasium's vector info (field -> per-row values, with a `_field` mask of the rows that
    reported it) as one dict per row. A row that autoreset on this step (same-step) gets the
    info of the step that ended its episode (final_info), not the new episode's reset info."""
    out: list[dict] = [{} for _ in range(rows)]
    for key, values in infos.items():
        if key.startswith("_") or key == "final_info" or key in FINAL_OBS_KEYS:
            continue
        present = infos.get("_" + key, np.ones(rows, dtype=bool))
        for i in np.flatnonzero(present):
            out[i][key] = values[i]
    final = infos.get("final_info")
    if final is not None:
        for i in np.flatnonzero(infos["_final_info"]):
            # 0.29: an array of the rows' info dicts; 1.x: a vector info of its own
            out[i] = final[i] if isinstance(final, np.ndarray) else row_infos(final, rows)[i]
    return out
