"""Second-order gradients (gradient penalties, MAML) through every backend.

A first backward with create_graph=True makes the kernels' backward differentiable by
rebuilding the recurrence with the reference ops (fastrnn/recurrence_op.py); these tests would
fail on the old @once_differentiable backward, which left x.grad None or raised.
"""

import pytest
import torch
import torch.nn as nn
from torch.autograd import gradgradcheck

import fastrnn

KERNEL_BACKENDS = ["cpp", "reference"]
LSTM_VARIANTS = {
    "one layer": dict(),
    "two layers": dict(num_layers=2),
    "bidirectional": dict(bidirectional=True),
    "projection": dict(proj_size=2),
}


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("variant", LSTM_VARIANTS, ids=str)
def test_lstm_passes_gradgradcheck(backend, variant):
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(3, 3, backend=backend, **LSTM_VARIANTS[variant]).double()
    x = torch.randn(3, 2, 3, dtype=torch.double, requires_grad=True)
    params = list(lstm.parameters())

    def outputs(x, *weights):
        # The module's own parameters are the ones differentiated: gradgradcheck perturbs them.
        y, (h, c) = lstm(x)
        return y, h, c

    assert gradgradcheck(outputs, (x, *params), atol=1e-6)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_lstm_cell_passes_gradgradcheck(backend):
    torch.manual_seed(1)
    cell = fastrnn.LSTMCell(3, 4, backend=backend).double()
    x = torch.randn(2, 3, dtype=torch.double, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.double, requires_grad=True)
    c = torch.randn(2, 4, dtype=torch.double, requires_grad=True)
    assert gradgradcheck(lambda x, h, c, *w: cell(x, (h, c)), (x, h, c, *cell.parameters()), atol=1e-6)


def _gradient_penalty_grads(module, x, dtype):
    x = x.detach().to(dtype).requires_grad_()
    module = module.to(dtype)
    out = module(x)
    y = out[0]
    (grad_x,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    grad_x.pow(2).sum().backward()
    return [x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("backend", ["cpp", "reference", "triton"])
@pytest.mark.parametrize("variant", LSTM_VARIANTS, ids=str)
def test_gradient_penalty_sets_every_gradient_like_nn_lstm(backend, variant):
    """The issue's repro: every gradient set and equal to torch's (triton under its interpreter
    runs float32 only, so it is compared in float32)."""
    dtype = torch.float32 if backend == "triton" else torch.float64
    torch.manual_seed(2)
    ours = fastrnn.LSTM(4, 4, backend=backend, **LSTM_VARIANTS[variant])
    theirs = nn.LSTM(4, 4, **LSTM_VARIANTS[variant])
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(2, 3, 4)
    got = _gradient_penalty_grads(ours, x, dtype)
    want = _gradient_penalty_grads(theirs, x, dtype)
    tol = dict(atol=1e-10, rtol=1e-9) if dtype == torch.float64 else dict(atol=1e-4, rtol=1e-4)
    for g, w in zip(got, want):
        assert g is not None
        torch.testing.assert_close(g, w, **tol)


def test_first_order_gradients_still_come_from_the_kernels(monkeypatch):
    """Without create_graph the backward is the fused kernel (no reference rebuild)."""
    import fastrnn.recurrence_op as ops

    calls = []
    original = ops.differentiable_backward
    monkeypatch.setattr(ops, "differentiable_backward", lambda *a, **k: calls.append(1) or original(*a, **k))
    lstm = fastrnn.LSTM(3, 4, backend="cpp").double()
    x = torch.randn(5, 2, 3, dtype=torch.double, requires_grad=True)
    lstm(x)[0].sum().backward()
    assert calls == []
    (g,) = torch.autograd.grad(lstm(x)[0].sum(), x, create_graph=True)
    assert calls == [1] and g.requires_grad
