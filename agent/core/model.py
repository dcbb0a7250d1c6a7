"""The meta-RL agent network: input builder, LSTM core, linear policy and value heads.

Input per step = [observation, one-hot previous action, previous reward]; at an episode's first
step the previous action and reward are zero and the core's state is reset to zero. With
reward_input "rpe" the previous reward's slot holds the previous step's reward prediction
error instead (Simulation 6), r - (1 - gamma) V(s) from the value head as the rollout computed
it (data, no gradient through it), plus any offset the task adds (test-time manipulations);
"both" gives the network the two side by side. Why (1 - gamma) V(s) and not V(s): the RPE fed
back must be known when the reward arrives, so it cannot use the next step's value, and V(s)
is a discounted sum, about E[r] / (1 - gamma) = 10 rewards at gamma 0.9: r - V(s) sits near
-10 whatever happened, while (1 - gamma) V(s) is the value head's estimate of the reward per
step, so r minus it is centred and on the scale of the rewards and of the manipulations'
offsets (+1, -4, -1).

reward_input "td" feeds the paper's dopamine signal itself, the TD error of the transition just
made, delta_t = r_t + gamma V(s_{t+1}) - V(s_t) (0 for V(s_{t+1}) where the episode ended), plus
the task's offset. The circularity (s_{t+1}'s hidden state depends on the input that carries
delta_t) is broken by a first pass: the step's input is built with the signal slot at zero, the
core is stepped on it from the state after s_t (the same resets) and the value head read, V(s_{t+1})
:= that value, "the value of the new state before its dopamine arrives"; the slot is then filled
with delta_t and the real step runs on it. Cost: one extra no-grad core step per environment step
(rollout and eval), and none in the learning pass (delta is data, stored with the inputs, no
gradient through it). The alternatives were worse for Simulation 6: the one-step-delayed TD error
(delta_{t-1} fed at t + 1) is exact but would reach the network one trial after its outcome, too
late for the next choice, which is what the manipulations are measured on; r - (1 - gamma) V(s)
("rpe") approximates gamma V(s') by gamma V(s) and is kept as its own input. The offsets are added
to delta after V(s_{t+1}) is computed, so a manipulation shifts the fed signal by exactly its
offset. `last_fed` keeps the last fed signal (before an episode start zeroes it) for eval's record.

Ablations (config.ABLATIONS, `train --ablate`): reward_input / action_input hold that slot of
every input row at zero (after it is built: one op a step, only when ablated); state_reset resets
the core at every trial start as well as at episode starts (core_resets). The previous action is the one the task executed (a
forced trial's lever, not the sampled one). A task may
give an encoder (images, for Harlow): the rollout then stores the raw input row above, and the
core sees [encoder(observation), previous action, previous reward], recomputed with gradients
in the learning pass so that the A2C loss trains the encoder too.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from agent.core.config import ABLATIONS, REWARD_INPUTS
from agent.core.cores import make_core
from fastrnn import rl


class MetaRLAgent(nn.Module):
    def __init__(self, obs_size: int, num_actions: int, hidden_size: int = 48, core: str = "fast",
                 encoder: nn.Module | None = None, readout: nn.Module | None = None, reward_input: str = "reward",
                 gamma: float = 0.9, ablate=()):
        super().__init__()
        if reward_input not in REWARD_INPUTS:
            raise ValueError(f"--reward-input: expected one of {', '.join(REWARD_INPUTS)}, got {reward_input!r}")
        self.obs_size = obs_size
        self.num_actions = num_actions
        self.hidden_size = hidden_size
        self.encoder = encoder
        self.reward_input = reward_input
        self.expected_reward_scale = 1.0 - gamma  # (1 - gamma) V(s): the expected reward per step
        self.gamma = gamma
        signals = 2 if reward_input == "both" else 1
        self.raw_size = obs_size + num_actions + signals  # the rollout's input rows
        unknown = set(ablate) - set(ABLATIONS)
        if unknown:
            raise ValueError(f"--ablate: unknown {sorted(unknown)}; valid choices: {', '.join(ABLATIONS)}")
        self.ablate = tuple(ablate)
        # Raw-input columns held at zero ([start, stop) ranges), or None: no input ablated.
        zeroed = [(obs_size, obs_size + num_actions)] if "action_input" in ablate else []
        zeroed += [(obs_size + num_actions, self.raw_size)] if "reward_input" in ablate else []
        self.zeroed_columns = zeroed or None
        self.state_reset = "state_reset" in ablate  # the core is reset at every trial start
        self.shuffle_rewards = "shuffled_rewards" in ablate  # training only (rollout.py)
        self.feeds_td = reward_input == "td" and "reward_input" not in ablate  # _fill_td runs each step
        self.last_fed: Tensor | None = None  # td: the last fed signal (see the module docstring)
        self.input_size = (encoder.out_size if encoder is not None else obs_size) + num_actions + signals  # the core's
        self.core = make_core(core, self.input_size, hidden_size)
        # Optional extra policy logits from the hidden state and the core's input (Harlow's
        # per-object readout, encoders.py); None: the linear heads alone.
        self.readout = readout
        # Policy logits (first num_actions outputs) and value (last) in one GEMM: per env step
        # the heads cost one small op instead of two.
        self.heads = nn.Linear(hidden_size, num_actions + 1)
        # Row num_actions is all zeros: indexing it gives "no previous action" without a where().
        self.register_buffer("_action_codes", torch.cat([torch.eye(num_actions), torch.zeros(1, num_actions)]),
                             persistent=False)

    @property
    def plain_reward_input(self) -> bool:
        """Whether next_input writes [observation, executed action, reward] and nothing else
        (fastrnn.rl.write_next_input's row, which RolloutPlan.run writes itself)."""
        return self.reward_input == "reward" and self.zeroed_columns is None

    @property
    def backend(self) -> str | None:
        """The backend the core ran last (after at least one call)."""
        return getattr(self.core, "last_backend", None)

    def initial_state(self, batch: int, device=None) -> tuple[Tensor, Tensor]:
        device = device or self.heads.weight.device
        return (torch.zeros(1, batch, self.hidden_size, device=device),
                torch.zeros(1, batch, self.hidden_size, device=device))

    def make_input(self, obs: Tensor, prev_action: Tensor, *signals: Tensor, out: Tensor | None = None) -> Tensor:
        """The raw input row (B, raw_size), written into `out` if given. prev_action == num_actions
        means none; signals: the previous reward and/or RPE, (B,) each, as reward_input says."""
        # index_select: about a microsecond a step less than indexing with [] (Python's indexing path)
        parts = [obs, self._action_codes.index_select(0, prev_action), *(signal.unsqueeze(1) for signal in signals)]
        return torch.cat(parts, dim=1) if out is None else torch.cat(parts, dim=1, out=out)

    def first_input(self, obs: Tensor) -> Tensor:
        """The raw input of an episode's first step: no previous action, reward or RPE."""
        zero = torch.zeros(obs.shape[0], device=obs.device)
        no_action = torch.full((obs.shape[0],), self.num_actions, dtype=torch.long, device=obs.device)
        return self.make_input(obs, no_action, *([zero] * (self.raw_size - self.obs_size - self.num_actions)))

    def next_input(self, result, action: Tensor, value: Tensor, out: Tensor | None = None,
                   state: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The raw input of the step after a task step (a StepResult): the executed action, the
        reward and/or the RPE r - (1 - gamma) value, or the TD error (td; needs `state`, the core
        state after the step), + the task's rpe_offset; none of them where the step began a new
        episode; ablated columns zero."""
        if result.executed is not None:
            action = result.executed
        signals = ()
        if self.reward_input in ("reward", "both"):
            signals += (result.reward,)
        if self.reward_input in ("rpe", "both"):
            rpe = result.reward - self.expected_reward_scale * value
            signals += (rpe if result.rpe_offset is None else rpe + result.rpe_offset,)
        if self.reward_input == "td":  # the slot stays zero for the first pass (_fill_td)
            signals += (torch.zeros_like(result.reward),)
        if out is not None and out.is_cpu:
            # One native call for the row and its episode-start zeros, the same bits as below. It
            # reads dense rows; a task may hand strided ones (contiguous() is free on dense ones).
            x = rl.write_next_input(out, result.obs.contiguous(), action.contiguous(),
                                    tuple(signal.contiguous() for signal in signals), self.num_actions,
                                    result.done.contiguous() if result.any_done else None)
        else:
            x = self.make_input(result.obs, action, *signals, out=out)
            if result.any_done:  # a new episode's first step: all zeros after the observation (as first_input)
                x[:, self.obs_size :].masked_fill_(result.done.unsqueeze(1), 0.0)
        if self.zeroed_columns is not None:
            for start, stop in self.zeroed_columns:
                x[:, start:stop] = 0.0
        if self.feeds_td:
            self._fill_td(x, result, value, state)
        return x

    def _fill_td(self, x: Tensor, result, value: Tensor, state: tuple[Tensor, Tensor]) -> None:
        """Write delta = r + gamma V(s') - V(s) (+ offset) into x's signal slot (zero where a new
        episode starts), V(s') from a first core step on x as it is (slot zero) from `state`."""
        if state is None:
            raise ValueError("reward_input 'td' needs the core state after the step (next_input's state)")
        _, next_value, _, _ = self.step(x, state, self.core_resets(result))
        if result.any_done:
            next_value = next_value.masked_fill(result.done, 0.0)  # the episode ended: V(terminal) = 0
        delta = result.reward + self.gamma * next_value - value
        fed = delta if result.rpe_offset is None else delta + result.rpe_offset
        self.last_fed = fed
        x[:, -1] = fed if not result.any_done else fed.masked_fill(result.done, 0.0)

    def core_resets(self, result) -> Tensor:
        """(B,) bool: the rows whose core state is reset before the step after `result`: episode
        starts, and with the state_reset ablation every trial start."""
        return result.done | result.trial_end if self.state_reset else result.done

    def embed(self, raw: Tensor) -> Tensor:
        """Raw input rows (..., raw_size) -> the core's input (..., input_size)."""
        if self.encoder is None:
            return raw
        return torch.cat([self.encoder(raw[..., : self.obs_size]), raw[..., self.obs_size :]], dim=-1)

    def split_heads(self, hidden: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        """(logits, value) from the hidden state; features: the core's input at the same step."""
        out = F.linear(hidden, self.heads.weight, self.heads.bias)
        logits = out[..., : self.num_actions]
        if self.readout is not None:
            logits = logits + self.readout(hidden, features)
        return logits, out[..., self.num_actions]

    def rollout_heads(self, noise: Tensor, with_value: bool) -> tuple[Tensor, Tensor]:
        """The heads as a rollout runs them: (weight (H, K), addends (T, B, K)) such that
        addmm(addends[t], hidden_t, weight) holds logits_t + noise[t] in its first A columns and,
        with_value, V_t in column A (K = A + 1; else K = A). noise (T, B, A): each step's Gumbel
        noise. Folding the heads' bias and the sampling noise into the GEMM's addend, once per
        unroll, leaves two ops per step for the heads and the sample (addmm, argmax) instead of
        four (linear, two slices, add, argmax); V is only computed when the rollout needs it.
        Weights taken here are the ones of this unroll: the optimizer steps between unrolls."""
        actions = self.num_actions
        columns = actions + 1 if with_value else actions
        weight = self.heads.weight[:columns].t().contiguous()
        bias = self.heads.bias
        if not with_value:
            return weight, noise.add_(bias[:actions])
        addends = torch.empty(*noise.shape[:-1], columns, dtype=noise.dtype, device=noise.device)
        torch.add(noise, bias[:actions], out=addends[..., :actions])
        addends[..., actions] = bias[actions]
        return weight, addends

    def core_step(self, x: Tensor, state: tuple[Tensor, Tensor], resets: Tensor | None):
        """One rollout step of the core: under torch.no_grad() (the caller's, entered once per
        unroll rather than per step) fastrnn takes its fused single-step path.
        x (B, raw_size), resets (B,) bool or None (no row starts an episode).
        Returns (hidden (B, H), new state, the core's input (B, input_size))."""
        features = self.embed(x)
        y, state = self.core(features.unsqueeze(0), state, resets=None if resets is None else resets.unsqueeze(0))
        return y[0], state, features

    def rollout_plan(self, features: Tensor, resets: Tensor, weight: Tensor, addends: Tensor,
                     save_for_backward: bool = False):
        """The core step, the heads and the action sample of every step of an unroll, for agents
        without a readout: fastrnn.rl.rollout_plan over the core (each step one C++ call on the
        fast core, with its checks and weights bound once per unroll).
        features (T + 1, B, input_size): the core's input rows, written before each step; resets
        (T + 1, B); weight, addends: rollout_heads'. plan.step(t, state, reset) -> new state, with
        plan.actions[t] and plan.head_out[t] (V in column num_actions, with_value) filled;
        save_for_backward: the steps keep what plan.backward needs (where they are fused)."""
        return rl.rollout_plan(self.core, features, weight, addends, self.num_actions, resets,
                               save_for_backward=save_for_backward)

    @torch.no_grad()
    def step(self, x: Tensor, state: tuple[Tensor, Tensor], resets: Tensor):
        """core_step then the heads: (logits (B, A), value (B,), hidden (B, H), new state)."""
        hidden, state, features = self.core_step(x, state, resets)
        logits, value = self.split_heads(hidden, features)
        return logits, value, hidden, state

    def unroll(self, x: Tensor, state: tuple[Tensor, Tensor], resets: Tensor):
        """The learning pass over a whole unroll in sequence mode. x (T, B, raw_size), resets (T, B).

        Returns (logits (T, B, A), values (T, B), hidden (T, B, H), final state)."""
        features = self.embed(x)
        y, final = self.core(features, state, resets=resets)
        logits, values = self.split_heads(y, features)
        return logits, values, y, final


def sample_actions(logits: Tensor, generator: torch.Generator) -> Tensor:
    """Sample from softmax(logits) by the Gumbel-max trick, argmax(logits - log E) with
    E ~ Exp(1): three small ops, about half the time of softmax + multinomial at these sizes."""
    noise = torch.empty_like(logits).exponential_(generator=generator)
    return (logits - noise.log_()).argmax(dim=-1)
