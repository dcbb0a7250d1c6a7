"""Reward per trial of fixed strategies on NeuroGym's DawTwoStep-v0 and Bandit-v0: the
comparisons for the agent in README.md, played the way eval plays the agent (episodes of 100
trials from a reset environment, 300 episodes per seed).

Run in the NeuroGym venv from the repository root; writes results/gym/fixed_strategies.json:
    .venv-neurogym/bin/python -m agent.gym.fixed_strategies
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agent.gym.env_spec import canonical_kwargs, env_spec

TRIALS, EPISODES, SEEDS = 100, 300, (0, 1, 2)
OUT = Path(__file__).resolve().parents[2] / "results" / "gym" / "fixed_strategies.json"
FIXATE = 0


def daw_random(env, stage, rng):
    return int(rng.integers(3))


def daw_fixed_choice(env, stage, rng):
    """Ignores the stimuli and the outcomes: always the first-stage action 1, then fixates."""
    return 1 if stage == 0 else FIXATE


def daw_oracle(env, stage, rng):
    """Knows which second-stage state pays 0.9 now and takes the action most likely to reach it
    (an upper bound no agent that must infer it can reach)."""
    if stage == 1:
        return FIXATE
    return 1 if env.unwrapped.state1_high_reward else 2


def bandit_arm(arm):
    return lambda env, stage, rng: arm


def bandit_random(env, stage, rng):
    return int(rng.integers(2))


STRATEGIES = {
    ("DawTwoStep-v0", "{}"): {"random actions": daw_random,
                              "fixed choice (ignores stimuli and outcomes)": daw_fixed_choice,
                              "oracle (knows the rewarded state)": daw_oracle},
    ("Bandit-v0", '{"p": [0.2, 0.8]}'): {"random actions": bandit_random, "always arm 0": bandit_arm(0),
                                         "always arm 1 (the better)": bandit_arm(1)},
}


def reward_per_trial(env_id: str, kwargs: str, strategy, seed: int) -> float:
    env = env_spec(env_id, canonical_kwargs(kwargs)).make()
    rng = np.random.default_rng(seed)
    total, trials = 0.0, 0
    for episode in range(EPISODES):
        env.reset(seed=seed * 100_000 + episode)
        done_trials, stage = 0, 0
        while done_trials < TRIALS:
            _, reward, _, _, info = env.step(strategy(env, stage, rng))
            total += reward
            stage = 0 if info["new_trial"] else stage + 1
            done_trials += bool(info["new_trial"])
        trials += done_trials
    env.close()
    return total / trials


def main() -> None:
    table = {}
    for (env_id, kwargs), strategies in STRATEGIES.items():
        for name, strategy in strategies.items():
            values = [reward_per_trial(env_id, kwargs, strategy, seed) for seed in SEEDS]
            table[f"{env_id} {name}"] = values
            print(f"{env_id:14s} {kwargs:18s} {name:46s} " + " ".join(f"{v:.3f}" for v in values)
                  + f"  mean {np.mean(values):.3f}")
    OUT.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
