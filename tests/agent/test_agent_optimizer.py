"""The agent's FlatOptimizer: torch.optim's RMSprop and Adam updates on one flat buffer.

It must move the parameters bit for bit as torch.optim does, share torch.optim's state_dict
format both ways (old checkpoints resume), and keep `agent train` from importing
torch._dynamo, which is why it exists."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fastrnn
from agent.core.optimizer import FlatOptimizer

ROOT = Path(__file__).resolve().parents[2]
CASES = [("rmsprop", torch.optim.RMSprop, {"lr": 7e-4, "alpha": 0.99, "eps": 1e-5}),
         ("adam", torch.optim.Adam, {"lr": 1e-3})]


class Net(torch.nn.Module):
    """The agent's kinds of parameters: an LSTM core (fastrnn) and a linear head."""

    def __init__(self):
        super().__init__()
        self.core = fastrnn.LSTM(5, 12)
        self.head = torch.nn.Linear(12, 3)

    def forward(self, x):
        return self.head(self.core(x)[0])


def twin_nets():
    torch.manual_seed(0)
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    return a, b


def train_steps(net, optimizer, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(7, 4, 5, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        net(x).pow(2).mean().backward()
        optimizer.step()


def assert_same_parameters(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), f"{name} differs: max {(p - q).abs().max().item()}"


@pytest.mark.parametrize("kind, torch_class, hyper", CASES, ids=[c[0] for c in CASES])
def test_flat_optimizer_moves_parameters_bitwise_as_torch_optim(kind, torch_class, hyper):
    ours_net, torch_net = twin_nets()
    ours = FlatOptimizer(ours_net.parameters(), kind, **hyper)
    theirs = torch_class(torch_net.parameters(), **hyper)
    train_steps(ours_net, ours, 25, seed=1)
    train_steps(torch_net, theirs, 25, seed=1)
    assert_same_parameters(ours_net, torch_net)


def test_flat_optimizer_step_moves_every_parameters_version_counter():
    # The rollout's packed weights are reused while version counters stand still
    # (fastrnn.trust_version_counters): a step that did not move them would leave the rollout
    # on stale weights.
    net, _ = twin_nets()
    optimizer = FlatOptimizer(net.parameters(), "rmsprop")
    train_steps(net, optimizer, 1, seed=0)
    before = [p._version for p in net.parameters()]
    train_steps(net, optimizer, 1, seed=1)
    assert all(after > was for after, was in zip((p._version for p in net.parameters()), before))


@pytest.mark.parametrize("kind, torch_class, hyper", CASES, ids=[c[0] for c in CASES])
def test_flat_optimizer_state_dict_resumes_with_torch_optim_and_back(kind, torch_class, hyper):
    # torch.optim for 10 steps, FlatOptimizer from its state for 10 more, torch.optim again from
    # that state for 10 more: the same parameters as torch.optim for all 30.
    net, _ = twin_nets()
    first = torch_class(net.parameters(), **hyper)
    train_steps(net, first, 10, seed=3)
    ours = FlatOptimizer(net.parameters(), kind, lr=123.0)  # hyperparameters come from the state
    ours.load_state_dict(first.state_dict())
    assert ours.hyper["lr"] == hyper["lr"]
    train_steps(net, ours, 10, seed=4)
    last = torch_class(net.parameters(), **hyper)
    last.load_state_dict(ours.state_dict())
    train_steps(net, last, 10, seed=5)

    again_net, _ = twin_nets()
    again = torch_class(again_net.parameters(), **hyper)
    for seed in (3, 4, 5):
        train_steps(again_net, again, 10, seed=seed)
    assert_same_parameters(net, again_net)


def test_flat_optimizer_state_before_any_step_is_empty_like_torch_optim():
    net, other = twin_nets()
    ours = FlatOptimizer(net.parameters(), "rmsprop", lr=1e-3)
    assert ours.state_dict()["state"] == torch.optim.RMSprop(other.parameters(), lr=1e-3).state_dict()["state"] == {}


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "sgd"}, "kind: expected one of rmsprop, adam, got 'sgd'"),
    ({"kind": "rmsprop", "betas": (0.9, 0.9)}, "rmsprop takes lr, alpha, eps"),
    ({"kind": "rmsprop", "momentum": 0.9}, "momentum: this optimizer implements only"),
    ({"kind": "adam", "amsgrad": True}, "amsgrad: this optimizer implements only"),
])
def test_flat_optimizer_rejects_what_it_does_not_implement(kwargs, message):
    net, _ = twin_nets()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FlatOptimizer(net.parameters(), **kwargs)


def test_flat_optimizer_refuses_a_state_of_another_kind_or_size():
    net, other = twin_nets()
    ours = FlatOptimizer(net.parameters(), "rmsprop")
    adam = torch.optim.Adam(other.parameters())
    train_steps(other, adam, 1, seed=0)
    with pytest.raises(ValueError, match="not a rmsprop state"):
        ours.load_state_dict(adam.state_dict())
    with pytest.raises(ValueError, match="expected one param group of 6 parameters"):
        ours.load_state_dict(torch.optim.RMSprop(list(other.parameters())[:2]).state_dict())


@pytest.mark.slow
def test_agent_training_does_not_import_torch_dynamo(tmp_path):
    # torch.optim's classes import torch._dynamo on construction (2.3 s a process); the agent's
    # optimizer exists to avoid that.
    code = ("import runpy, sys\n"
            f"sys.argv = ['agent', 'train', '--task', 'two_step', '--episodes', '20', '--quiet', '--out', {str(tmp_path)!r}]\n"
            "try:\n    runpy.run_module('agent', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print('dynamo imported:', 'torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "dynamo imported: False" in out.stdout, out.stdout + out.stderr
