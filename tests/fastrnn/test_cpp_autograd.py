"""The cpp recurrence's hand-written backward against numerical derivatives, and the custom
ops against torch.library's consistency checks (schema, fake tensors, autograd registration)."""

import pytest
import torch

import fastrnn
from fastrnn import cpp_backend
from fastrnn.recurrence_op import recurrence_backward_op, recurrence_op


def _inputs(steps, batch, hidden, proj, generator, requires_grad=True):
    out = proj or hidden
    make = lambda *shape, scale=1.0: (torch.randn(*shape, dtype=torch.float64, generator=generator) * scale).requires_grad_(requires_grad)
    return (
        make(steps, batch, 4 * hidden),
        make(4 * hidden, out, scale=0.5),
        make(proj, hidden, scale=0.5) if proj else None,
        make(batch, out),
        make(batch, hidden),
    )


@pytest.mark.parametrize("proj", [0, 2])
@pytest.mark.parametrize("with_resets", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_cpp_recurrence_passes_gradcheck(proj, with_resets, with_lengths, cpu_isa):
    g = torch.Generator().manual_seed(0)
    steps, batch, hidden = 4, 3, 5
    xproj, w_hh, w_hr, h0, c0 = _inputs(steps, batch, hidden, proj, g)
    resets = torch.tensor([[False, True, False], [False, False, False], [True, False, True], [False, False, False]]) if with_resets else None
    lengths = torch.tensor([4, 2, 3]) if with_lengths else None

    def run(xproj, w_hh, h0, c0, *maybe_w_hr):
        return cpp_backend.BACKEND.recurrence(xproj, w_hh, maybe_w_hr[0] if maybe_w_hr else None, h0, c0, resets, lengths)

    args = (xproj, w_hh, h0, c0) + ((w_hr,) if proj else ())
    assert torch.autograd.gradcheck(run, args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("proj", [0, 2])
@pytest.mark.parametrize("with_resets", [False, True])
@pytest.mark.parametrize("with_projection_source", [False, True])
def test_the_recurrence_op_passes_opcheck_on_the_cpp_kernels(proj, with_resets, with_projection_source):
    """opcheck runs the op's schema, fake kernel and its autograd registration (the same
    _setup_context/_backward the eager path uses), here on the cpp launcher."""
    g = torch.Generator().manual_seed(1)
    xproj, w_hh, w_hr, h0, c0 = _inputs(3, 2, 4, proj, g)
    resets = torch.tensor([[False, True], [True, False], [False, False]]) if with_resets else None
    lengths = torch.tensor([3, 2])
    source = (None, None, None)
    if with_projection_source:
        x = torch.randn(3, 2, 5, dtype=torch.float64, generator=g)
        w_ih = torch.randn(16, 5, dtype=torch.float64, generator=g, requires_grad=True)
        bias = torch.randn(16, dtype=torch.float64, generator=g, requires_grad=True)
        xproj = torch.nn.functional.linear(x, w_ih, bias).detach().requires_grad_()
        source = (x, w_ih, bias)
    torch.library.opcheck(recurrence_op, ("cpp", xproj, w_hh, w_hr, h0, c0, resets, lengths, *source))
    y, h_n, c_n, gates, cells, hidden = recurrence_op("cpp", xproj, w_hh, w_hr, h0, c0, resets, lengths, *source)
    grads = [torch.randn(t.shape, dtype=t.dtype, generator=g) for t in (y, h_n, c_n)]
    torch.library.opcheck(
        recurrence_backward_op,
        ("cpp", *grads, w_hh.detach(), None if w_hr is None else w_hr.detach(), h0.detach(), c0.detach(), resets,
         lengths, y.detach(), gates.detach(), cells.detach(), hidden.detach()),
    )


def test_eager_recurrence_skips_function_apply_binding_outside_torch_func(monkeypatch):
    # Function.apply binds its arguments with inspect.signature on every call (50-80 us, more
    # than a small recurrence's kernel); outside torch.func transforms the eager call goes to
    # the C++ apply directly and must give the same outputs and gradients, while inside a
    # transform the full Function.apply still runs.
    from torch.func import functional_call, grad

    from fastrnn import recurrence_op

    torch.manual_seed(0)
    lstm = fastrnn.LSTM(3, 5, backend="cpp").double()
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)

    def forward_backward():
        lstm.zero_grad()
        x.grad = None
        y, (h, c) = lstm(x)
        (y.square().sum() + h.sum() + c.sum()).backward()
        return [y.detach(), h.detach(), c.detach(), x.grad, *(p.grad for p in lstm.parameters())]

    monkeypatch.setattr(recurrence_op, "_apply_eager", recurrence_op._EagerRecurrence.apply)
    through_function_apply = forward_backward()
    monkeypatch.undo()
    calls = []
    original = recurrence_op._EagerRecurrence.apply
    monkeypatch.setattr(recurrence_op._EagerRecurrence, "apply", lambda *args: calls.append(1) or original(*args))
    direct = forward_backward()
    assert calls == []
    for a, b in zip(through_function_apply, direct):
        assert torch.equal(a, b)
    params = dict(lstm.named_parameters())
    grad(lambda p: functional_call(lstm, p, (x,))[0].sum())(params)
    assert calls, "under torch.func the recurrence must go through Function.apply"
