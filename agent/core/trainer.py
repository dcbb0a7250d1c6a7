"""The A2C trainer: owns the task, the agent, the optimizer and every generator, and performs
one update at a time: collect an unroll (fused rollout steps), compute every gradient from it
(from the steps' saved activations on the fast core, learner.py; else by autograd over a
sequence-mode replay with resets at episode boundaries), step the optimizer. Its state_dict is everything needed
to continue bit-for-bit (crash-resume).

Under torchrun (distributed.py) each rank's Trainer steps its own environments and the
gradients are averaged before the optimizer step; the counters (updates, episodes, env_steps)
and the update's statistics are then the whole world's, the same on every rank, so all ranks
stop at the same update. rank_state() is what differs between ranks."""

from __future__ import annotations

import math

import torch

from agent.core.a2c import a2c_loss, discounted_returns
from agent.core.config import TrainConfig
from agent.core.learner import learn_from_rollout, learns_from_rollout
from agent.core.model import MetaRLAgent
from agent.core.optimizer import FlatOptimizer
from agent.core.rollout import Carry, RolloutBuffer, collect_rollout
from agent.infra.distributed import SINGLE, World, average_gradients, rank_seed
from agent.infra.timing import PhaseTimer
from agent.simulations.registry import make_task
from fastrnn import rl

# Offsets that keep the task's and the sampler's random streams apart for the same --seed.
TASK_SEED_OFFSET = 1_000_003
SAMPLER_SEED_OFFSET = 2_000_029


def make_agent(config: TrainConfig, task_class, core: str | None = None) -> MetaRLAgent:
    options = task_class.resolve_options(config.task_options)
    encoder, readout = task_class.make_agent_modules(config.hidden_size, options)
    obs_size, num_actions = task_class.agent_sizes(options)
    return MetaRLAgent(obs_size, num_actions, config.hidden_size, core or config.core,
                       encoder=encoder, readout=readout, reward_input=config.reward_input,
                       gamma=config.gamma, ablate=config.ablate)


def make_optimizer(config: TrainConfig, parameters) -> FlatOptimizer:
    """torch.optim.RMSprop's (or Adam's) update on one flat buffer of the agent's parameters
    (optimizer.py says why not torch.optim's classes)."""
    if config.optimizer == "adam":
        return FlatOptimizer(parameters, "adam", lr=config.lr)
    return FlatOptimizer(parameters, "rmsprop", lr=config.lr, alpha=config.rmsprop_alpha, eps=config.rmsprop_eps)


class TrainingDiverged(RuntimeError):
    """An update produced a NaN or infinite loss, gradient or weight. Raised before anything of that
    update is logged or saved; the message is one line naming the update (1-based: the update that
    would have made `updates` equal to it)."""

    def __init__(self, update: int, reason: str, advice: str = ""):
        self.update, self.reason = update, reason
        super().__init__(f"training stopped at update {update}: {reason}" + (f"; {advice}" if advice else ""))


def _both(a, b):
    """a & b of two optional (T, B) masks, None standing for all True."""
    return b if a is None else a if b is None else a & b


class Trainer:
    def __init__(self, config: TrainConfig, *, timer: PhaseTimer | None = None, keep_hidden: bool = False,
                 trials_per_episode: int | None = None, world: World = SINGLE):
        self.config = config
        self.world = world
        device = torch.device(config.device)
        self.timer = timer or PhaseTimer(enabled=False)
        torch.manual_seed(config.seed)  # the weights' initialization
        self.task = make_task(config.task, config.num_envs, seed=rank_seed(config.seed, world.rank) + TASK_SEED_OFFSET,
                              device=device, mode="train", trials_per_episode=trials_per_episode,
                              options=config.task_options)
        self.agent = make_agent(config, type(self.task)).to(device)
        self.optimizer = make_optimizer(config, self.agent.parameters())
        # The learning pass without autograd where the rollout's steps can save their
        # activations (agent/core/learner.py); the autograd pass otherwise.
        self.learns_from_rollout = learns_from_rollout(self.agent)
        self.sampler = torch.Generator(device=device)
        self.sampler.manual_seed(rank_seed(config.seed, world.rank) + SAMPLER_SEED_OFFSET)
        self.carry = Carry.initial(self.agent, self.task.reset(stagger=True))
        self.buffer = RolloutBuffer(config.unroll, config.num_envs, self.agent.raw_size, config.hidden_size,
                                    self.agent.num_actions, device, keep_hidden=keep_hidden,
                                    forced_steps=type(self.task).has_forced_steps,
                                    ignored_steps=type(self.task).has_ignored_steps,
                                    truncation=type(self.task).has_truncation,
                                    trial_resets=self.agent.state_reset)
        self.updates = 0
        self.episodes = 0
        self.env_steps = 0
        self.train_seconds = 0.0
        self.log_window = {"reward": 0.0, "steps": 0, "seconds": 0.0}  # metrics since the last log line

    def collect(self) -> None:
        if self.agent.training:  # only the autograd learning pass sets train(); eval() walks every module
            self.agent.eval()
        self.carry = collect_rollout(self.agent, self.task, self.carry, self.buffer, self.sampler, self.timer,
                                     save_for_backward=self.learns_from_rollout)

    def learn(self) -> tuple[list[float], torch.Tensor]:
        """The learning pass over the collected unroll: every parameter's .grad set to the A2C
        loss's gradient; returns (the loss's total, policy, value and entropy parts, the hidden
        states (T, B, H) it ran on). From the rollout's saved activations where its plan kept
        them (learner.py), else by autograd over a sequence-mode replay (compute_loss)."""
        buf, cfg = self.buffer, self.config
        plan = buf.plan
        if plan is None or not plan.saves_for_backward:
            loss, hidden = self.compute_loss()
            with self.timer.phase("learn backward"):
                self.optimizer.zero_grad(set_to_none=True)
                loss.total.backward()
                return torch.stack([loss.total, loss.policy, loss.value, loss.entropy]).detach().tolist(), hidden
        with self.timer.phase("learn forward"):
            returns = self.returns(native=True)
        loss = learn_from_rollout(self.agent, plan, buf.actions, returns, cfg.value_coef, self.entropy_coef(),
                                  _both(buf.free, buf.valid), buf.valid, self.optimizer.take_flat_gradients(),
                                  self.timer)
        return list(loss), plan.saved.hidden

    def compute_loss(self):
        """The learning pass over the collected unroll: (loss parts, its hidden states (T, B, H))."""
        buf, cfg = self.buffer, self.config
        self.agent.train()
        with self.timer.phase("learn forward"):
            logits, values, hidden, _ = self.agent.unroll(buf.inputs, buf.initial_state, buf.resets)
            returns = self.returns()
            policy_mask = _both(buf.free, buf.valid)  # free choices the environment did not ignore
            loss = a2c_loss(logits, values, buf.actions, returns, cfg.value_coef, self.entropy_coef(),
                            policy_mask=policy_mask, value_mask=buf.valid)
        return loss, hidden

    def returns(self, native: bool = False):
        """The n-step returns of the collected unroll, (T, B); where step t truncated its episode,
        r_t + gamma * V(final observation) (the rollout's truncation_values), not r_t alone.
        native: fastrnn.rl's one native loop (CPU) in place of a2c.py's dozen torch ops."""
        buf, gamma = self.buffer, self.config.gamma
        rewards = buf.rewards if buf.truncation_values is None else buf.rewards + gamma * buf.truncation_values
        if native:
            return rl.discounted_returns(rewards, buf.dones, buf.bootstrap_value.contiguous(), gamma)
        return discounted_returns(rewards, buf.dones, buf.bootstrap_value, gamma)

    def entropy_coef(self) -> float:
        """The entropy weight now: constant, or annealed linearly over the training episodes."""
        cfg = self.config
        if cfg.entropy_coef_final < 0:
            return cfg.entropy_coef
        progress = min(1.0, self.episodes / cfg.episodes)
        return cfg.entropy_coef + (cfg.entropy_coef_final - cfg.entropy_coef) * progress

    def update(self) -> dict:
        """One A2C update; returns its statistics as Python numbers."""
        self.collect()
        parts, _ = self.learn()
        with self.timer.phase("bookkeeping"):
            # A step the environment ignored (a reset step) also ends its one-step episode: not counted.
            dones = _both(self.buffer.dones, self.buffer.valid)
            finished = int(dones.sum())
            reward = float(self.buffer.rewards.sum())
        if self.world.distributed:  # the world's episodes and reward, the ranks' mean losses, with the gradients
            with self.timer.phase("all-reduce"):
                finished, reward, *parts = average_gradients(self.agent.parameters(), self.world,
                                                             sums=[finished, reward, *parts])
                finished, parts = int(round(finished)), [part / self.world.size for part in parts]
        with self.timer.phase("optimizer"):
            if self.config.max_grad_norm > 0:
                self.optimizer.clip_grad_norm_(self.config.max_grad_norm)
            self.optimizer.step()
        with self.timer.phase("bookkeeping"):
            self._stop_unless_finite(world_loss=parts[0])
            self.updates += 1
            self.episodes += finished
            self.env_steps += self.buffer.steps * self.config.num_envs * self.world.size
            return {"episodes_finished": finished, "reward": reward,
                    **dict(zip(("loss", "policy_loss", "value_loss", "entropy"), parts))}

    def _stop_unless_finite(self, world_loss: float) -> None:
        """Raise TrainingDiverged when this update's loss, gradient or new weights hold a NaN or an
        infinity: every later update would inherit them, and a checkpoint of them is garbage.
        The loss checked is the world's mean, and the gradient and weights are identical on
        every rank (averaged before the step), so under torchrun all ranks stop at the same update.
        Cost: the loss is already a Python number; the optimizer checks its two flat buffers."""
        update = self.updates + 1
        if not math.isfinite(world_loss):
            raise TrainingDiverged(update, f"the loss is {world_loss}")
        gradient_finite, weights_finite = self.optimizer.finite_after_step()
        if not gradient_finite:
            raise TrainingDiverged(update, "the gradient holds NaN or infinite values")
        if not weights_finite:
            raise TrainingDiverged(update, "the optimizer step made weights NaN or infinite")

    def state_dict(self) -> dict:
        return {
            "agent": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "task": self.task.state_dict(),
            "sampler": self.sampler.get_state(),
            "carry": self.carry.state_dict(),
            "updates": self.updates,
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "train_seconds": self.train_seconds,
            "log_window": dict(self.log_window),
        }

    def rank_state(self) -> dict:
        """The part of state_dict that differs between ranks: their environments and samplers."""
        return {"task": self.task.state_dict(), "sampler": self.sampler.get_state(), "carry": self.carry.state_dict()}

    def load_rank_state(self, state: dict) -> None:
        device = self.carry.next_input.device  # the state may come from another node, on the CPU
        self.task.load_state_dict(state["task"])
        self.sampler.set_state(state["sampler"])
        self.carry = Carry.from_state_dict({k: v.to(device) for k, v in state["carry"].items()})
        self._restart_unsaved_task()

    def _restart_unsaved_task(self) -> None:
        """A task whose environments could not be saved starts fresh episodes; the carried core
        state belonged to the old ones."""
        if not type(self.task).restores_exactly:
            self.carry = Carry.initial(self.agent, self.task.reset(stagger=True))

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.load_rank_state(state)  # its environments, sampler and carried state
        self.updates = state["updates"]
        self.episodes = state["episodes"]
        self.env_steps = state["env_steps"]
        self.train_seconds = state["train_seconds"]
        self.log_window = dict(state["log_window"])
