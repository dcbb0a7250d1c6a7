"""--trials-per-episode K: a meta-RL episode of K trials on an environment that never ends.

NeuroGym's tasks run trial after trial forever and mark the step that ends one with
info["new_trial"]; an environment that reports no such field counts every step as a trial.
After the K-th trial the wrapper ends the episode as *terminated*: the meta-RL episode is
defined to be K trials long, so its return does not bootstrap past them (as in our own tasks),
and the vector env's autoreset then resets the environment for a fresh one.

The wrapper is the outermost one of every sub-environment, so it works inside AsyncVectorEnv's
worker processes too; `first_episode_trials`, set per row through the vector env's set_attr
before a reset, shortens that row's first episode (staggered starts, see BatchedTask.reset).
"""

from __future__ import annotations

import gymnasium


class TrialLimit(gymnasium.Wrapper):
    def __init__(self, env, trials: int):
        super().__init__(env)
        self.trials = trials
        self.first_episode_trials: int | None = None
        self.limit = trials
        self.trials_done = 0

    def reset(self, **kwargs):
        self.limit = self.first_episode_trials or self.trials
        self.first_episode_trials = None
        self.trials_done = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.trials_done += bool(info.get("new_trial", True))
        if self.trials_done >= self.limit:
            terminated = True
        return obs, reward, terminated, truncated, info
