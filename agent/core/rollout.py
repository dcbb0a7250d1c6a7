"""Collecting an unroll: one fused no-grad core step per environment step, into preallocated
buffers that the learning pass then replays in sequence mode.

Where the agent's next input is [observation, action, reward] and a step keeps nothing but its
reward and episode ends (every task but Harlow, with its encoder and readout, and risky_safe,
with its forced trials), the whole unroll is one call, the plan's run(): one native loop that
calls the task's step back and writes the next input row, the episode starts and the rewards
itself, the bits of the Python loop below without its per-step Python (_run_plan). The Python
loop serves every other agent.

At these sizes (tens of rows, 48 units) every torch op costs microseconds of dispatch no
matter how small, and so does every tensor index in Python, so the loop is written to issue
few of them: the buffer's per-step rows are views made once, the next step's input is
concatenated straight into its row, the heads' bias and the sampling noise are folded into
one GEMM addend per step (MetaRLAgent.rollout_heads), which the core's fused rollout step
takes with the step itself (one call for the core, the heads and the sample). That step runs
through a rollout plan made once per unroll (fastrnn.rl.rollout_plan): its checks, packed
weights and buffer addresses are bound once, so a step costs the kernel and little Python,
and it writes each step's action and head outputs into rows of its own buffers (and, asked to,
the activations the learning pass differentiates: learner.py). The actions
reach the rollout buffer in one copy per unroll, and the episode-start rows and masks are
written only on steps where some row starts an episode (the task reports that as a Python
bool it needs anyway).

The state_reset ablation (model.py) separates the core's resets from episode ends: the buffer
then keeps a second mask, all_resets (trial starts and episode starts), which the rollout's and
the learning pass's core steps use, while all_starts keeps the episode boundaries that cut the
returns. Without it all_resets is None and the core uses all_starts, as before (no extra work).
The shuffled_rewards ablation permutes each step's rewards across the batch's rows (episodes),
with the sampler's generator, before the buffer and the next input see them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

import fastrnn

from agent.core.model import MetaRLAgent
from agent.infra.timing import PhaseTimer


@dataclass
class Carry:
    """What the next step needs, kept across updates: its input, whether it starts an episode
    (state reset before it), and the core state after the last step."""

    next_input: Tensor  # (B, I)
    next_starts: Tensor  # (B,) bool: the core state is reset before the next step
    state: tuple[Tensor, Tensor]  # (1, B, H) each

    @classmethod
    def initial(cls, agent: MetaRLAgent, first_obs: Tensor) -> "Carry":
        batch = first_obs.shape[0]
        starts = torch.ones(batch, dtype=torch.bool, device=first_obs.device)
        return cls(agent.first_input(first_obs), starts, agent.initial_state(batch, first_obs.device))

    def state_dict(self) -> dict:
        return {"next_input": self.next_input, "next_starts": self.next_starts,
                "h": self.state[0], "c": self.state[1]}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Carry":
        return cls(state["next_input"], state["next_starts"], (state["h"], state["c"]))


class RolloutBuffer:
    """Row t of inputs/starts belongs to step t; row T holds the input after the unroll (the
    bootstrap step's, and the next unroll's first). starts[t + 1] is "the episode ended at t"."""

    def __init__(self, steps: int, batch: int, raw_size: int, hidden_size: int, num_actions: int, device,
                 keep_hidden=False, forced_steps=False, ignored_steps=False, truncation=False,
                 trial_resets=False):
        self.steps = steps
        self.all_inputs = torch.zeros(steps + 1, batch, raw_size, device=device)  # raw rows (model.py)
        self.all_starts = torch.zeros(steps + 1, batch, dtype=torch.bool, device=device)
        # state_reset ablation only: the core's resets (every trial start), apart from the episode
        # boundaries above, which alone cut the returns. None: the core resets at all_starts.
        self.all_resets = torch.zeros(steps + 1, batch, dtype=torch.bool, device=device) if trial_resets else None
        self.actions = torch.zeros(steps, batch, dtype=torch.long, device=device)
        self.rewards = torch.zeros(steps, batch, device=device)
        self.num_actions = num_actions
        # Tasks with forced steps (the task, not the policy, chose the action): which steps were
        # free choices; the policy loss counts only those.
        self.free = torch.ones(steps, batch, dtype=torch.bool, device=device) if forced_steps else None
        # Tasks whose environment may ignore an action (Gymnasium 1.x's reset steps): which steps
        # count in the loss at all (policy, value and entropy).
        self.valid = torch.ones(steps, batch, dtype=torch.bool, device=device) if ignored_steps else None
        # Tasks whose episodes may be truncated: V(final observation) where step t truncated its
        # episode (0 elsewhere); the return there is r_t + gamma * that instead of r_t alone.
        self.truncation_values = torch.zeros(steps, batch, device=device) if truncation else None
        # Only verify keeps these: the rollout's hidden and cell states, to compare.
        self.hidden = torch.zeros(steps, batch, hidden_size, device=device) if keep_hidden else None
        self.cells = torch.zeros(steps, batch, hidden_size, device=device) if keep_hidden else None
        self.initial_state: tuple[Tensor, Tensor] | None = None
        self.bootstrap_value: Tensor | None = None
        # The unroll's rollout plan (agents without a readout), saving its steps' activations
        # when collect_rollout was asked to (agent/core/learner.py); None: stepped without one.
        self.plan = None
        # Per-step rows, views made once (the tensors above are only ever written in place).
        self.input_rows = self.all_inputs.unbind(0)
        self.start_rows = self.all_starts.unbind(0)
        self.core_resets = self.all_starts if self.all_resets is None else self.all_resets  # (T + 1, B)
        self.reset_rows = self.core_resets.unbind(0)
        self.reward_rows = self.rewards.unbind(0)
        self.free_rows = None if self.free is None else self.free.unbind(0)
        self.valid_rows = None if self.valid is None else self.valid.unbind(0)

    @property
    def inputs(self) -> Tensor:  # (T, B, I)
        return self.all_inputs[: self.steps]

    @property
    def starts(self) -> Tensor:  # (T, B) bool: state reset before step t
        return self.all_starts[: self.steps]

    @property
    def resets(self) -> Tensor:  # (T, B) bool: the core state reset before step t (starts unless state_reset)
        return self.core_resets[: self.steps]

    @property
    def dones(self) -> Tensor:  # (T, B) bool: the episode ended with step t
        return self.all_starts[1:]


def final_value(agent: MetaRLAgent, result, action: Tensor, value: Tensor, state: tuple[Tensor, Tensor]) -> Tensor:
    """(B,) V of the final observation of each episode the step truncated (0 in other rows), seen
    the way its next step would have been: after the action and reward, from the episode's state.
    One extra core step, taken only on steps that truncate an episode."""
    last = dataclasses.replace(result, obs=result.final_obs, done=torch.zeros_like(result.done), any_done=False)
    _, bootstrap, _, _ = agent.step(agent.next_input(last, action, value, state=state), state, None)
    return torch.where(result.truncated, bootstrap, 0.0)


@torch.no_grad()
@fastrnn.trust_version_counters()  # the agent writes weights only by optimizer steps
def collect_rollout(agent: MetaRLAgent, task, carry: Carry, buffer: RolloutBuffer,
                    sampler: torch.Generator, timer: PhaseTimer, save_for_backward: bool = False) -> Carry:
    """Fill buffer with buffer.steps environment steps from carry; return the new carry.
    save_for_backward: the plan's fused steps keep their activations (buffer.plan.saved) for a
    learning pass without a second forward (agent/core/learner.py)."""
    steps, inputs, starts = buffer.steps, buffer.input_rows, buffer.start_rows
    inputs[0].copy_(carry.next_input)
    buffer.all_starts.zero_()  # rows after the first are written only where some episode ends
    starts[0].copy_(carry.next_starts)
    trial_resets = buffer.all_resets is not None  # the state_reset ablation
    resets = buffer.reset_rows  # the core's: starts unless trial_resets
    if trial_resets:
        buffer.all_resets.zero_()
        resets[0].copy_(carry.next_starts)
    shuffle = agent.shuffle_rewards
    buffer.initial_state = state = carry.state
    any_start = bool(carry.next_starts.any())
    keep = buffer.hidden is not None
    # V is needed during the rollout only as an input (RPE) or to bootstrap a truncated episode.
    with_value = agent.reward_input != "reward" or buffer.truncation_values is not None
    # The Gumbel noise of every step's action sample, drawn in three ops per unroll, not per step,
    # and folded with the heads' bias into each step's GEMM addend.
    noise = torch.empty(steps, *buffer.actions.shape[1:], buffer.num_actions, device=buffer.actions.device)
    noise.exponential_(generator=sampler).log_().neg_()
    weight, addends = agent.rollout_heads(noise, with_value)
    value = None
    plan = core_input_rows = None
    if agent.readout is None:  # the heads alone act: core step, heads and sample in one call per step
        # The core's input rows: the buffer's own, or each step's encoded row (an encoder's agent).
        core_inputs = buffer.all_inputs if agent.encoder is None else \
            torch.empty(steps + 1, buffer.actions.shape[1], agent.input_size, device=buffer.all_inputs.device)
        core_input_rows = None if agent.encoder is None else core_inputs.unbind(0)
        # The plan's actions and head outputs are fresh each unroll, so a row handed to the task
        # is never written again (tasks may keep it: two_step's first_action).
        plan = agent.rollout_plan(core_inputs, buffer.core_resets, weight, addends, save_for_backward)
    else:
        addends = addends.unbind(0)
        actions = []
    buffer.plan = plan
    in_one_call = plan is not None and _steps_in_one_call(agent, buffer, core_input_rows, keep, trial_resets)
    if in_one_call:
        state, any_start = _run_plan(plan, task, buffer, state, any_start, agent.obs_size, timer)
    elif plan is not None:
        action_rows = plan.actions.unbind(0)
        value_rows = plan.head_out[..., buffer.num_actions].unbind(0) if with_value else None
    for t in range(0 if in_one_call else steps):  # steps from Python, unless run() took them
        if plan is not None:
            # Phase "core step" then holds the heads and the sampling too.
            with timer.phase("core step"):
                if core_input_rows is not None:
                    core_input_rows[t].copy_(agent.embed(inputs[t]))
                state = plan.step(t, state, any_start)
                action = action_rows[t]
                if with_value:
                    value = value_rows[t]
        else:
            with timer.phase("core step"):
                hidden, state, features = agent.core_step(inputs[t], state, resets[t] if any_start else None)
            with timer.phase("heads + sampling"):
                # argmax(logits + Gumbel noise): a sample of softmax(logits)
                logits = torch.addmm(addends[t], hidden, weight)
                if with_value:
                    logits, value = logits[:, : buffer.num_actions], logits[:, buffer.num_actions]
                action = (logits + agent.readout(hidden, features)).argmax(dim=-1)
            actions.append(action)
        with timer.phase("env step"):
            result = task.step(action)
            if shuffle:  # the shuffled_rewards ablation: another row's reward, the same step
                order = torch.randperm(result.reward.shape[0], generator=sampler, device=result.reward.device)
                result = dataclasses.replace(result, reward=result.reward[order])
        with timer.phase("bookkeeping"):
            buffer.reward_rows[t].copy_(result.reward)
            if result.any_done:
                starts[t + 1].copy_(result.done)
            if buffer.free is not None:
                torch.logical_not(result.forced, out=buffer.free_rows[t])
            if buffer.valid is not None:
                torch.logical_not(result.ignored, out=buffer.valid_rows[t])
            if buffer.truncation_values is not None:
                buffer.truncation_values[t] = 0.0 if result.truncated is None else \
                    final_value(agent, result, action, value, state)
            if keep:
                buffer.hidden[t] = state[0][0]
                buffer.cells[t] = state[1][0]
            if trial_resets:
                torch.logical_or(result.trial_end, result.done, out=resets[t + 1])
                any_start = bool(resets[t + 1].any())
            else:
                any_start = result.any_done
            agent.next_input(result, action, value, out=inputs[t + 1], state=state)
    with timer.phase("bookkeeping"):
        if plan is None:
            torch.stack(actions, out=buffer.actions)
        else:
            buffer.actions.copy_(plan.actions)
    with timer.phase("core step"):
        if plan is not None and core_input_rows is None:  # the plan's weights, the module's bits
            hidden, _ = plan.next_state(state, any_start)
            _, bootstrap = agent.split_heads(hidden[0], None)
        else:
            _, bootstrap, _, _ = agent.step(inputs[buffer.steps], state, resets[buffer.steps] if any_start else None)
    buffer.bootstrap_value = bootstrap  # the value after the unroll
    return Carry(inputs[buffer.steps].clone(), resets[buffer.steps].clone(), state)


def _steps_in_one_call(agent: MetaRLAgent, buffer: RolloutBuffer, core_input_rows, keep: bool,
                       trial_resets: bool) -> bool:
    """Whether the unroll is the plan's run() (one native loop on the fast core): the agent's
    next input is [observation, action, reward] as write_next_input writes it, the core reads the
    buffer's rows as they are (no encoder), and each step needs nothing but the reward and the
    episode ends kept (no forced, ignored or truncated steps, no shuffled rewards, no kept
    states, no trial resets)."""
    return (agent.plain_reward_input and core_input_rows is None and not agent.shuffle_rewards and not keep
            and not trial_resets and buffer.free is None and buffer.valid is None
            and buffer.truncation_values is None and buffer.all_inputs.is_cpu)


def _run_plan(plan, task, buffer: RolloutBuffer, state, any_start: bool, obs_size: int, timer: PhaseTimer):
    """Every step of the unroll by plan.run: the plan writes each next input row, the episode
    starts (the buffer's all_starts, its resets) and the rewards; the task's step is the Python
    it calls back. Returns (the state after the unroll, whether some row starts an episode at
    the step after it)."""
    task_step = timer.timed("env step", task.step)

    def env_step(t: int, action: Tensor):
        result = task_step(action)
        if result.executed is not None:  # only tasks with forced steps (has_forced_steps) set it
            raise ValueError(f"task {task.name!r} reported executed actions without has_forced_steps")
        # Dense rows, as next_input hands write_next_input (a task may return strided ones;
        # contiguous() is free on dense ones).
        return (result.obs.contiguous(), (result.reward.contiguous(),),
                result.done.contiguous() if result.any_done else None)

    with timer.phase("core step"):  # the native loop, less the phase it calls back
        return plan.run(state, env_step, obs_size, num_signals=1, reset=any_start, rewards_out=buffer.rewards)
