"""A2C returns and loss on hand-made inputs."""

import math

import pytest
import torch

from agent.core.a2c import a2c_loss, discounted_returns, discounted_returns_loop


def test_returns_discount_and_bootstrap_after_the_unroll():
    """Returns discount rewards and bootstrap from the value after the unroll."""
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    dones = torch.zeros(3, 1, dtype=torch.bool)
    returns = discounted_returns(rewards, dones, torch.tensor([10.0]), gamma=0.5)
    # G2 = 2 + 0.5*10 = 7, G1 = 0 + 0.5*7 = 3.5, G0 = 1 + 0.5*3.5 = 2.75
    assert returns[:, 0].tolist() == [2.75, 3.5, 7.0]


def test_returns_stop_at_episode_ends_and_ignore_the_bootstrap_after_one():
    rewards = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    dones = torch.tensor([[True, False], [False, True]])
    returns = discounted_returns(rewards, dones, torch.tensor([100.0, 100.0]), gamma=0.9)
    assert returns[:, 0].tolist() == pytest.approx([1.0, 1.0 + 0.9 * 100])
    assert returns[:, 1].tolist() == pytest.approx([1.9, 1.0])


def test_vectorized_returns_equal_the_step_by_step_definition():
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(25, 7, generator=g, dtype=torch.float64)
    dones = torch.rand(25, 7, generator=g) < 0.2
    bootstrap = torch.randn(7, generator=g, dtype=torch.float64)
    assert dones.any() and not dones.all()
    expected = discounted_returns_loop(rewards, dones, bootstrap, 0.9)
    assert torch.allclose(discounted_returns(rewards, dones, bootstrap, 0.9), expected, rtol=1e-12, atol=1e-12)


def test_loss_weights_policy_value_and_entropy_as_the_paper():
    """The loss combines policy, value and entropy terms with the paper's weights."""
    logits = torch.log(torch.tensor([[[0.25, 0.75]]]))
    values = torch.tensor([[0.5]])
    actions = torch.tensor([[1]])
    returns = torch.tensor([[2.0]])
    loss = a2c_loss(logits, values, actions, returns, value_coef=0.05, entropy_coef=0.05)
    advantage = 1.5
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert loss.policy.item() == pytest.approx(-math.log(0.75) * advantage)
    assert loss.value.item() == pytest.approx(0.5 * 1.5 ** 2)
    assert loss.entropy.item() == pytest.approx(entropy)
    assert loss.total.item() == pytest.approx(-math.log(0.75) * 1.5 + 0.05 * 1.125 - 0.05 * entropy)


def test_policy_gradient_favours_positive_advantage():
    """The policy gradient raises the probability of actions with positive advantage."""
    logits = torch.zeros(1, 1, 2, requires_grad=True)
    values = torch.zeros(1, 1, requires_grad=True)
    loss = a2c_loss(logits, values, torch.tensor([[0]]), torch.tensor([[1.0]]), 0.05, 0.0)
    loss.total.backward()
    assert logits.grad[0, 0, 0] < 0 < logits.grad[0, 0, 1]  # descent raises logit 0
    assert values.grad[0, 0] < 0  # and raises the value towards the return
    # the advantage carries no gradient into the value: only the value term does
    assert values.grad[0, 0].item() == pytest.approx(-0.05 * 1.0)
