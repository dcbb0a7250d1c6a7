"""The learning pass from the rollout's saved activations (agent/core/learner.py) against the
autograd pass over a sequence-mode replay (Trainer.compute_loss), on the same collected unroll:
the same loss, the same gradient of every parameter within float32 rounding, on every input
variant, mask and reset pattern the trainer feeds it; and the agents it cannot differentiate
(encoders, readouts, other cores) keep autograd."""

import pytest
import torch

from agent.core.config import resolve_config
from agent.core.optimizer import FlatOptimizer
from agent.core.trainer import Trainer
from test_gym_adapter import COUNTDOWN

CASES = [
    ("two_step", {}),
    ("two_step", {"reward_input": "both"}),
    ("two_step", {"ablate": ("state_reset",)}),   # core resets at trial starts, returns cut at episodes
    ("two_step", {"ablate": ("reward_input", "action_input")}),
    ("risky_safe", {}),                           # forced trials: a policy mask
    ("risky_safe", {"reward_input": "td"}),
    ("bandit_independent", {"reward_input": "rpe"}),
    ("foraging", {}),
    ("volatility", {}),
    ("reversal", {}),
    ("gym:" + COUNTDOWN, {"task_options": {"env_kwargs": '{"length": 4, "end": "truncate"}'}}),  # truncation, ignored steps
]


def _trainer(task, overrides, core="fast"):
    config = resolve_config({"task": task, "num_envs": 6, "unroll": 15, "seed": 0, "core": core, **overrides})
    return Trainer(config, trials_per_episode=None if task.startswith("gym:") else 3)


@pytest.mark.parametrize("task, overrides", CASES, ids=[f"{t}{sorted(o.items())}" for t, o in CASES])
def test_the_rollout_pass_gives_the_autograd_pass_loss_and_gradients(task, overrides):
    """After two updates (weights off their initialization), one unroll crossing episode ends:
    Trainer.learn's loss parts and gradients (the rollout pass) equal compute_loss + backward's
    (autograd over a sequence replay), and the hidden states it used equal the replay's."""
    trainer = _trainer(task, overrides)
    assert trainer.learns_from_rollout
    trainer.update()
    trainer.update()
    trainer.collect()
    assert trainer.buffer.plan.saves_for_backward and trainer.buffer.dones.any()
    parts, hidden = trainer.learn()
    ours = {name: p.grad.clone() for name, p in trainer.agent.named_parameters()}
    loss, replayed = trainer.compute_loss()
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    expected = [float(x.detach()) for x in (loss.total, loss.policy, loss.value, loss.entropy)]
    assert parts == pytest.approx(expected, rel=1e-5, abs=1e-6)
    torch.testing.assert_close(hidden, replayed.detach(), rtol=0, atol=1e-5)
    for name, p in trainer.agent.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("task, core", [("harlow", "fast"), ("two_step", "reference"), ("two_step", "torch")])
def test_agents_the_rollout_pass_cannot_differentiate_keep_autograd(task, core):
    """Harlow's encoder and readout, the reference core and torch.nn.LSTM take the autograd pass:
    their plans save nothing (or they have none), and an update still sets every gradient."""
    trainer = _trainer(task, {}, core)
    trainer.update()
    plan = trainer.buffer.plan
    assert plan is None or not plan.saves_for_backward
    assert all(p.grad is not None for p in trainer.agent.parameters())
    assert trainer.learns_from_rollout == (task == "two_step")  # asked for; only the cpp step can save


def _optimizer(seed):
    torch.manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]
    return params, FlatOptimizer(params, "rmsprop", lr=0.01)


def _step_with(grads, in_place, clip=None):
    """A fresh optimizer's step on `grads`: written into take_flat_gradients()'s views, or assigned
    to .grad and gathered; clipped first when clip is given. (gradients it stepped on, weights after)."""
    params, optimizer = _optimizer(0)
    if in_place:
        views = optimizer.take_flat_gradients()
        for p, g in zip(params, grads):
            views[p].copy_(g)
    else:
        for p, g in zip(params, grads):
            p.grad = g.clone()
    if clip is not None:
        optimizer.clip_grad_norm_(clip)
    stepped = [p.grad.clone() for p in params]
    optimizer.step()
    return stepped, [p.detach().clone() for p in params]


def test_gradients_written_in_place_step_like_gathered_ones():
    """Gradients written into the flat buffer's views give the step the same gradients assigned
    to .grad give, bit for bit."""
    grads = [torch.randn(4, 3) * 5, torch.randn(5) * 5]
    (_, in_place), (_, gathered) = _step_with(grads, True), _step_with(grads, False)
    assert all(torch.equal(a, b) for a, b in zip(in_place, gathered))


def test_clipping_the_flat_buffer_scales_as_torch_clip_grad_norm():
    """clip_grad_norm_ on gradients in place scales them to the norm torch.nn.utils.clip_grad_norm_
    gives (float32 rounding apart: one flat norm against torch's norm of per-tensor norms), and
    leaves gradients under the norm as they are."""
    grads = [torch.randn(4, 3) * 5, torch.randn(5) * 5]
    (flat, _), (torch_clipped, _) = _step_with(grads, True, clip=1.0), _step_with(grads, False, clip=1.0)
    for a, b in zip(flat, torch_clipped):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    assert float(torch.cat([g.reshape(-1) for g in flat]).norm()) == pytest.approx(1.0, rel=1e-5)
    small = [g / 100 for g in grads]
    (kept, _) = _step_with(small, True, clip=1.0)
    assert all(torch.equal(a, b) for a, b in zip(kept, small))
