"""fastrnn/torch_compat.py: each private torch symbol fastrnn relies on still exists and does
what fastrnn uses it for. A failure here names the symbol a torch release changed."""

import torch
import torch.nn as nn

from fastrnn import torch_compat


def test_lstm_cell_is_nn_lstmcells_kernel():
    """torch._VF.lstm_cell computes what nn.LSTMCell returns."""
    cell = nn.LSTMCell(3, 5)
    x, h, c = torch.randn(2, 3), torch.randn(2, 5), torch.randn(2, 5)
    got = torch_compat.lstm_cell(x, (h, c), cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    for a, b in zip(got, cell(x, (h, c))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_is_jit_tracing_is_true_only_under_jit_trace():
    """torch._C._is_tracing reads True inside torch.jit.trace and False outside."""
    seen = []

    def probe(x):
        seen.append(torch_compat.is_jit_tracing())
        return x + 1
    probe(torch.zeros(1))
    torch.jit.trace(probe, torch.zeros(1), check_trace=False)
    assert seen == [False, True]


def test_functorch_flag_is_true_only_inside_a_transform():
    """torch._C._are_functorch_transforms_active reads True inside torch.func.grad/vmap."""
    seen = []

    def probe(x):
        seen.append(torch_compat.functorch_transforms_active())
        return x.sum()
    probe(torch.ones(2))
    torch.func.grad(probe)(torch.ones(2))
    torch.func.vmap(probe)(torch.ones(3, 2))
    assert seen == [False, True, True]


def test_forward_ad_and_vmap_flags_are_true_only_inside_them():
    """forward_ad_active reads forward_ad's level (jvp and dual_level set it); vmap_active finds
    a Vmap among functorch's interpreters, and not a Grad."""
    seen = []

    def probe(x):
        seen.append((torch_compat.forward_ad_active(), torch_compat.vmap_active()))
        return x.sum()
    probe(torch.ones(2))
    torch.func.jvp(probe, (torch.ones(2),), (torch.ones(2),))
    with torch.autograd.forward_ad.dual_level():
        probe(torch.ones(2))
    torch.func.grad(probe)(torch.ones(2))
    torch.func.vmap(probe)(torch.ones(3, 2))
    torch.func.vmap(torch.func.grad(probe))(torch.ones(3, 2))
    assert seen == [(False, False), (True, False), (True, False), (False, False), (False, True), (False, True)]


class _Double(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return 2 * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return 2 * grad


def test_c_apply_equals_function_apply():
    """The C++ apply under autograd.Function.apply, reached through super(): same output and
    the same gradient as Function.apply."""
    x = torch.randn(3, requires_grad=True)
    y = torch_compat.c_apply(_Double)(x)
    assert y.grad_fn is not None and "_Double" in type(y.grad_fn).__name__
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(y, _Double.apply(x))
    torch.testing.assert_close(grad, torch.full((3,), 2.0))


def test_constant_under_compile_is_what_assume_constant_result_sets():
    """torch.compiler.assume_constant_result's whole effect is the attribute fastrnn sets."""
    def a():
        return 1

    def b():
        return 1
    marked = torch.compiler.assume_constant_result(a)
    ours = torch_compat.constant_under_compile(b)
    assert {k: v for k, v in vars(marked).items()} == {k: v for k, v in vars(ours).items()} == {
        "_dynamo_marked_constant": True}


def test_version_counts_in_place_writes():
    """Tensor._version rises with each in-place write."""
    t = torch.zeros(2)
    before = torch_compat.version(t)
    t.add_(1)
    assert torch_compat.version(t) == before + 1


def test_flat_weights_follow_a_swapped_and_a_parametrized_parameter():
    """nn.LSTM's _flat_weight_refs/_flat_weights_names/_init_flat_weights: the flat list is the
    module's parameters, a swapped one included, and a parametrization's computed weight."""
    lstm = nn.LSTM(3, 4)
    assert torch_compat.current_flat_weights(lstm)[0] is lstm.weight_ih_l0
    swapped = nn.Parameter(torch.randn_like(lstm.weight_hh_l0))
    lstm.weight_hh_l0 = swapped
    assert torch_compat.current_flat_weights(lstm)[1] is swapped
    assert torch_compat.refreshed_flat_weights(lstm)[1] is swapped
    torch.nn.utils.parametrize.register_parametrization(lstm, "weight_ih_l0", _Scale())
    assert torch_compat.parametrized(lstm)
    torch.testing.assert_close(torch_compat.current_flat_weights(lstm)[0], lstm.weight_ih_l0)


class _Scale(nn.Module):
    def forward(self, w):
        return 3 * w


def test_parameters_is_the_modules_own_dict():
    """nn.Module._parameters holds the module's parameters by name."""
    cell = nn.LSTMCell(2, 3)
    assert torch_compat.parameters(cell)["weight_hh"] is cell.weight_hh


def test_eager_apply_binds_arguments_only_inside_torch_func(monkeypatch):
    """eager_apply skips Function.apply (and its inspect.signature binding) in eager calls and
    takes it inside torch.func transforms, with the same values and gradients either way."""
    calls = []
    original = _Double.apply
    monkeypatch.setattr(_Double, "apply", lambda *args: calls.append(1) or original(*args))
    applied = torch_compat.eager_apply(_Double)
    x = torch.randn(3, requires_grad=True)
    y = applied(x)
    assert calls == [] and y.grad_fn is not None
    torch.testing.assert_close(torch.autograd.grad(y.sum(), x)[0], torch.full((3,), 2.0))
    grad = torch.func.grad(lambda t: applied(t).sum())(torch.randn(3))
    assert calls and torch.equal(grad, torch.full((3,), 2.0))
