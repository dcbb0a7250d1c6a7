"""The input projection's narrow-input form (fastrnn.layers.input_projection) is F.linear:
the same values and the same gradients, first and second order, with and without a bias."""

import pytest
import torch
import torch.nn.functional as F

from fastrnn.layers import NARROW_INPUT, input_projection


@pytest.mark.parametrize("width", [3, NARROW_INPUT, NARROW_INPUT + 5], ids=["narrow", "at the limit", "wide"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no bias"])
@pytest.mark.parametrize("input_grad", [True, False], ids=["input grad", "no input grad"])
def test_input_projection_is_f_linear_in_values_and_gradients(width, with_bias, input_grad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, width, dtype=torch.float64, generator=g, requires_grad=input_grad)
    w = torch.randn(12, width, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(12, dtype=torch.float64, generator=g, requires_grad=True) if with_bias else None
    ours, theirs = input_projection(x, w, b), F.linear(x, w, b)
    torch.testing.assert_close(ours, theirs)
    assert ours.shape == theirs.shape and ours.is_contiguous()
    wrt = [t for t in (x, w, b) if t is not None and t.requires_grad]
    upstream = torch.randn(ours.shape, dtype=torch.float64, generator=g)
    grads = torch.autograd.grad(ours, wrt, upstream, create_graph=True)
    expected = torch.autograd.grad(theirs, wrt, upstream, create_graph=True)
    for a, e in zip(grads, expected):
        torch.testing.assert_close(a, e)
    # Second order: without an input gradient the first-order ones are constants in both.
    assert [a.requires_grad for a in grads] == [e.requires_grad for e in expected]
    if input_grad:
        # (the bias has no second-order term: allow_unused, and both must agree on that)
        second = torch.autograd.grad(sum((a ** 2).sum() for a in grads), wrt, allow_unused=True)
        second_expected = torch.autograd.grad(sum((e ** 2).sum() for e in expected), wrt, allow_unused=True)
        for a, e in zip(second, second_expected):
            assert (a is None) == (e is None)
            if e is not None:
                torch.testing.assert_close(a, e)


def test_the_narrow_form_gives_the_weight_gradient_in_the_weights_layout():
    x = torch.randn(7, 3, 4)
    w = torch.randn(8, 4, requires_grad=True)
    input_projection(x, w, None).sum().backward()
    assert w.grad.shape == w.shape
    torch.testing.assert_close(w.grad, torch.ones(7 * 3, 8).t() @ x.reshape(-1, 4))
