"""Reference strategies for the baited foraging task (Simulation 1), to read the Lau & Glimcher
regression against: what kernel does a strategy with a known way of using rewards produce on
this very task?

Each strategy plays a batch of episodes at once: reset(episodes), choose(task) -> (E,) long
actions (it may read the task's state where it is an oracle), update(actions, rewards). The
`lapse` of the deterministic strategies (a uniformly random choice on that share of trials) keeps
the regression defined: a choice that its history fixes exactly separates the logit.

The reward-maximising reference solves the task's within-block Markov decision process for
known base rates: the state is the arms' baiting counters (n_0, n_1), choosing arm a earns with
probability 1 - (1 - p_a)^(n_a + 1), sets n_a to 0 and adds one to the other counter. Values are
discounted (DISCOUNT, ours: an effective horizon of 50 trials, half an episode) and found by
value iteration for every base rate on a grid. The oracle knows the current block's rates (not
when they will change); the belief agent does not: it keeps a posterior over p0_L on the grid
(p0_R = 0.5 - p0_L) that a change point (hazard per trial) resets towards the uniform prior,
updates it with each outcome's likelihood under the baiting rule, and chooses the arm whose
posterior-weighted value is highest (the QMDP approximation to the belief-state policy).
"""

from __future__ import annotations

import numpy as np
import torch

BASE_RATE_SUM = 0.5
DISCOUNT = 0.98
MAX_COUNT = 100  # counters are capped here: an episode has at most 100 trials
GRID_POINTS = 101  # p0_L values of the value tables and the posterior: 0, 0.005, ..., 0.5


def rate_grid(points: int = GRID_POINTS) -> np.ndarray:
    return np.linspace(0.0, BASE_RATE_SUM, points)


def _as_actions(choices: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(choices, dtype=np.int64))


def baiting_q_values(left_rates: np.ndarray, discount: float = DISCOUNT, max_count: int = MAX_COUNT,
                     tol: float = 1e-5) -> np.ndarray:
    """Q[g, n0, n1, a] for base rates (left_rates[g], 0.5 - left_rates[g]), by value iteration."""
    rates = np.stack([left_rates, BASE_RATE_SUM - left_rates], 1)  # (G, 2)
    n = np.arange(max_count + 1)
    # immediate reward of choosing arm a with counter n_a: (G, n_a, 2)
    earn = 1 - (1 - rates[:, None, :]) ** (n[None, :, None] + 1)
    after = np.minimum(n + 1, max_count)  # the unchosen arm's counter on the next trial
    value = np.zeros((len(left_rates), max_count + 1, max_count + 1))
    while True:
        # choose 0: reward earn[n0, arm 0], next state (0, n1 + 1); choose 1: earn[n1, arm 1], next (n0 + 1, 0)
        q0 = earn[:, :, None, 0] + discount * value[:, 0, after][:, None, :]
        q1 = earn[:, None, :, 1] + discount * value[:, after, 0][:, :, None]
        new = np.maximum(q0, q1)
        if np.abs(new - value).max() < tol:
            return np.stack([q0, q1], -1)
        value = new


class Lapsing:
    """Shared: a `lapse` share of choices replaced by a uniformly random arm."""

    lapse = 0.0

    def __init__(self, seed: int = 0, lapse: float | None = None):
        self.rng = np.random.default_rng(seed)
        if lapse is not None:
            self.lapse = lapse

    def _lapsed(self, choices: np.ndarray) -> torch.Tensor:
        random = self.rng.random(len(choices)) < self.lapse
        return _as_actions(np.where(random, self.rng.integers(0, 2, len(choices)), choices))


class BaitingCounters(Lapsing):
    """Tracks each episode's counters n_a (trials since a was chosen), as the task defines them,
    and plays on the optimal Q values of the baited task over a grid of base rates."""

    def __init__(self, lapse: float = 0.05, seed: int = 0, grid_points: int = GRID_POINTS):
        super().__init__(seed, lapse)
        self.grid = rate_grid(grid_points)
        self.q = baiting_q_values(self.grid)

    def reset(self, episodes: int) -> None:
        self.counters = np.zeros((episodes, 2), dtype=np.int64)

    def update(self, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        chosen = actions.numpy()[:, None] == np.arange(2)
        self.counters = np.where(chosen, 0, np.minimum(self.counters + 1, MAX_COUNT))


class KnownRatesOptimal(BaitingCounters):
    """Reward-maximising with the current block's base rates known (an oracle on the rates)."""

    name = "optimal, base rates known (oracle)"

    def choose(self, task) -> torch.Tensor:
        left = task.block_left_rates.gather(1, task.current_block().unsqueeze(1)).squeeze(1).numpy()
        g = np.abs(self.grid[None, :] - left[:, None]).argmin(1)
        q = self.q[g, self.counters[:, 0], self.counters[:, 1]]
        return self._lapsed(q.argmax(1))


class BeliefOptimal(BaitingCounters):
    """Infers p0_L from its own history (posterior on GRID with change points) and plays QMDP."""

    def __init__(self, hazard: float = 0.02, lapse: float = 0.05, seed: int = 0, grid_points: int = GRID_POINTS):
        super().__init__(lapse, seed, grid_points)
        self.hazard = hazard
        self.rates = np.stack([self.grid, BASE_RATE_SUM - self.grid], 1)  # (G, 2)
        self.name = f"belief-based (Bayesian, QMDP, hazard {hazard:.3g})"

    def reset(self, episodes: int) -> None:
        super().reset(episodes)
        self.posterior = np.full((episodes, len(self.grid)), 1 / len(self.grid))

    def choose(self, task) -> torch.Tensor:
        q = self.q[:, self.counters[:, 0], self.counters[:, 1]]  # (G, E, 2)
        expected = np.einsum("eg,gea->ea", self.posterior, q)
        return self._lapsed(expected.argmax(1))

    def update(self, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        a, r = actions.numpy(), rewards.numpy()
        n = self.counters[np.arange(len(a)), a]
        earn = 1 - (1 - self.rates[:, a].T) ** (n[:, None] + 1)  # (E, G)
        posterior = self.posterior * np.where(r[:, None] > 0, earn, 1 - earn)
        posterior /= posterior.sum(1, keepdims=True)
        self.posterior = (1 - self.hazard) * posterior + self.hazard / len(self.grid)
        super().update(actions, rewards)


class QLearnerSoftmax(Lapsing):
    """Q_a <- Q_a + alpha (r - Q_a) for the chosen arm (one learning rate whatever the choice),
    P(L) = sigmoid(beta (Q_L - Q_R)); Q starts at 0.25 (the analysis' Q model)."""

    def __init__(self, alpha: float, beta: float, seed: int = 0):
        super().__init__(seed)
        self.alpha, self.beta = alpha, beta
        self.name = f"Q-learner softmax (alpha {alpha:g}, beta {beta:g})"

    def reset(self, episodes: int) -> None:
        self.values = np.full((episodes, 2), 0.25)

    def choose(self, task) -> torch.Tensor:
        left = self.rng.random(len(self.values)) < 1 / (1 + np.exp(-self.beta * (self.values[:, 0] - self.values[:, 1])))
        return _as_actions(np.where(left, 0, 1))

    def update(self, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        rows, a = np.arange(len(self.values)), actions.numpy()
        self.values[rows, a] += self.alpha * (rewards.numpy() - self.values[rows, a])


class History(Lapsing):
    """Shared: the previous action and reward of each episode (-1 before its first trial)."""

    def reset(self, episodes: int) -> None:
        self.last_action = np.full(episodes, -1)
        self.last_reward = np.zeros(episodes)

    def update(self, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        self.last_action, self.last_reward = actions.numpy().copy(), rewards.numpy().copy()

    def _first_random(self, choices: np.ndarray) -> torch.Tensor:
        first = self.last_action < 0
        return self._lapsed(np.where(first, self.rng.integers(0, 2, len(choices)), choices))


class WinStayLoseShift(History):
    name = "win-stay/lose-shift"
    lapse = 0.05  # unless the constructor's `lapse` says otherwise

    def choose(self, task) -> torch.Tensor:
        return self._first_random(np.where(self.last_reward > 0, self.last_action, 1 - self.last_action))


class Alternate(History):
    name = "alternate (ignores rewards)"
    lapse = 0.05  # unless the constructor's `lapse` says otherwise

    def choose(self, task) -> torch.Tensor:
        return self._first_random(1 - self.last_action)


class RandomChoice(History):
    name = "random 50/50 (ignores rewards)"

    def choose(self, task) -> torch.Tensor:
        return _as_actions(self.rng.integers(0, 2, len(self.last_action)))
