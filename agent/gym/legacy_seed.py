"""Seeding environments that keep a random generator of their own.

Gymnasium seeds an environment through reset(seed=...), which sets env.np_random. NeuroGym's
tasks draw from their own numpy RandomState instead, seeded only by their seed() method (the
pre-0.26 Gym API), so reset(seed=...) leaves them unseeded and every run differs. This wrapper
also calls seed() where the environment still has one, so a --seed reproduces a run (verify
compares two runs step for step and needs that).
"""

from __future__ import annotations

import gymnasium


class LegacySeed(gymnasium.Wrapper):
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        legacy_seed = getattr(self.env.unwrapped, "seed", None)
        if seed is not None and callable(legacy_seed):
            legacy_seed(seed)
        return self.env.reset(seed=seed, options=options)


def seeded(env) -> gymnasium.Env:
    """env, wrapped so that reset(seed=...) also seeds a generator of its own where it has one."""
    return LegacySeed(env) if callable(getattr(env.unwrapped, "seed", None)) else env
