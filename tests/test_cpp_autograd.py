"""The cpp recurrence's hand-written backward against numerical derivatives, and the custom
ops against torch.library's consistency checks (schema, fake tensors, autograd registration)."""

import pytest
import torch

from fastrnn import cpp_backend


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
        return cpp_backend.recurrence(xproj, w_hh, maybe_w_hr[0] if maybe_w_hr else None, h0, c0, resets, lengths)

    args = (xproj, w_hh, h0, c0) + ((w_hr,) if proj else ())
    assert torch.autograd.gradcheck(run, args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("proj", [0, 2])
@pytest.mark.parametrize("with_resets", [False, True])
def test_cpp_custom_ops_pass_opcheck(proj, with_resets):
    g = torch.Generator().manual_seed(1)
    xproj, w_hh, w_hr, h0, c0 = _inputs(3, 2, 4, proj, g)
    resets = torch.tensor([[False, True], [True, False], [False, False]]) if with_resets else None
    lengths = torch.tensor([3, 2])
    torch.library.opcheck(cpp_backend.OPS.forward, (xproj, w_hh, w_hr, h0, c0, resets, lengths))
    y, h_n, c_n, gates, cells, hidden = cpp_backend.OPS.forward(xproj, w_hh, w_hr, h0, c0, resets, lengths)
    grads = [torch.randn(t.shape, dtype=t.dtype, generator=g) for t in (y, h_n, c_n)]
    detached = [t.detach() for t in (w_hh,)] + [None if w_hr is None else w_hr.detach()]
    torch.library.opcheck(
        cpp_backend.OPS.backward,
        (*grads, detached[0], detached[1], h0.detach(), c0.detach(), resets, lengths,
         y.detach(), gates.detach(), cells.detach(), hidden.detach()),
    )
