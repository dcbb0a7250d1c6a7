"""What else users do with an nn.LSTM module, done to ours: torch.func transforms,
parametrizations and weight norm, hooks, dtype moves. Each behaves as torch's does."""

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.parametrize as parametrize
import torch.autograd.forward_ad as forward_ad
from torch.func import functional_call, grad, jacfwd, jacrev, jvp, vmap
from torch.nn.utils import parametrizations

import fastrnn


def _pair(cls_ours, cls_theirs, *args, **kwargs):
    torch.manual_seed(0)
    ours, theirs = cls_ours(*args, **kwargs), cls_theirs(*args, **kwargs)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def test_functional_call_runs_with_the_given_parameters():
    """MAML-style code swaps parameters per call; the sequence and the no-grad step see them."""
    ours, theirs = _pair(fastrnn.LSTM, nn.LSTM, 4, 5)
    x, state = torch.randn(3, 2, 4), (torch.zeros(1, 2, 5), torch.randn(1, 2, 5))
    params = {k: torch.randn_like(v) for k, v in ours.named_parameters()}
    torch.testing.assert_close(functional_call(ours, params, (x,))[0], functional_call(theirs, params, (x,))[0])
    with torch.no_grad():
        step, want = functional_call(ours, params, (x[:1], state))[0], functional_call(theirs, params, (x[:1], state))[0]
    torch.testing.assert_close(step, want)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_torch_func_grad_and_jacrev_match_nn_lstm(backend):
    ours, theirs = _pair(fastrnn.LSTM, nn.LSTM, 4, 5)
    ours.backend = backend
    x = torch.randn(3, 2, 4)
    params = dict(ours.named_parameters())

    def loss(module):
        return lambda p: functional_call(module, p, (x,))[0].square().sum()

    got, want = grad(loss(ours))(params), grad(loss(theirs))(params)
    for name in params:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-5)
    jac = jacrev(lambda x: ours(x)[0].sum(0))(x)
    torch.testing.assert_close(jac, jacrev(lambda x: theirs(x)[0].sum(0))(x), atol=1e-5, rtol=1e-5)


def _cell_and_lstm_pairs():
    """(ours, theirs, input, state) for an LSTMCell and a two-layer LSTM, float64."""
    torch.manual_seed(0)
    cell = _pair(fastrnn.LSTMCell, nn.LSTMCell, 3, 4, dtype=torch.float64)
    lstm = _pair(fastrnn.LSTM, nn.LSTM, 3, 4, num_layers=2, dtype=torch.float64)
    return [(*cell, torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)),
            (*lstm, torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(2, 2, 4, dtype=torch.float64))]


def test_forward_mode_ad_runs_torch_forward_and_equals_torch():
    """torch.func.jvp, jacfwd and forward_ad's dual tensors, which fastrnn's autograd Functions
    do not implement (they raised NotImplementedError), run torch's own forward
    (last_backend "torch") and give torch's tangents; the Jacobian of the step with respect to
    the state is what fixed-point analyses of trained RNNs compute."""
    for ours, theirs, x, h in _cell_and_lstm_pairs():
        c = torch.randn_like(h)
        tangent = torch.randn_like(x)
        got = jvp(lambda x: ours(x, (h, c))[0], (x,), (tangent,))[1]
        assert ours.last_backend == "torch"
        torch.testing.assert_close(got, jvp(lambda x: theirs(x, (h, c))[0], (x,), (tangent,))[1])
        torch.testing.assert_close(jacfwd(lambda h: ours(x, (h, c))[1])(h), jacfwd(lambda h: theirs(x, (h, c))[1])(h))
        with forward_ad.dual_level():
            dual = forward_ad.make_dual(x, tangent)
            got = forward_ad.unpack_dual(ours(dual, (h, c))[0]).tangent
            want = forward_ad.unpack_dual(theirs(dual, (h, c))[0]).tangent
        torch.testing.assert_close(got, want)


def test_forward_mode_ad_with_resets_says_torch_forward_has_none():
    """resets are fastrnn's own: under forward-mode AD they raise naming them, before any work."""
    ours = fastrnn.LSTM(3, 4)
    x, resets = torch.randn(4, 2, 3), torch.zeros(4, 2, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="^resets: forward-mode AD"):
        jvp(lambda x: ours(x, resets=resets)[0], (x,), (torch.randn_like(x),))


def test_jacrev_runs_the_fast_backend_and_equals_torch_also_twice():
    """jacrev differentiates inside vmap with grad enabled: the cell's first-order backward took
    the double-backward path and refused ("One of the differentiated Tensors does not require
    grad"). The forward still runs cpp; jacrev of jacrev (a reverse-mode Hessian) matches too."""
    for ours, theirs, x, h in _cell_and_lstm_pairs():
        c = torch.randn_like(h)
        torch.testing.assert_close(jacrev(lambda h: ours(x, (h, c))[0])(h), jacrev(lambda h: theirs(x, (h, c))[0])(h))
        assert ours.last_backend == "cpp"
        second = jacrev(jacrev(lambda c: ours(x, (h, c))[0].sum()))(c)
        torch.testing.assert_close(second, jacrev(jacrev(lambda c: theirs(x, (h, c))[0].sum()))(c))


def test_vmap_raises_what_torch_raises():
    """torch has no batching rule for its LSTM ops; fastrnn's kernels read memory a batched
    tensor lacks ("Cannot access data pointer"): both now raise torch's own error, and would
    both work the day torch adds the rule."""
    for ours, theirs, x, h in _cell_and_lstm_pairs():
        xs = torch.stack([x, x + 1])
        with pytest.raises(RuntimeError) as want:
            vmap(lambda x: theirs(x)[0])(xs)
        with pytest.raises(RuntimeError) as got:
            vmap(lambda x: ours(x)[0])(xs)
        assert str(got.value) == str(want.value)


@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_meta_device_modules_infer_shapes_as_torch_does(kind):
    """Meta tensors (shape inference, init_empty_weights-style construction): the LSTM raised
    "unknown device type for autocast" where torch's returns; now both give the same shapes,
    forward and backward, under CPU autocast too."""
    shape = (5, 3, 4) if kind == "LSTM" else (3, 4)
    kwargs = dict(num_layers=2, proj_size=2, bidirectional=True) if kind == "LSTM" else {}
    ours, theirs = (getattr(module, kind)(4, 6, device="meta", **kwargs) for module in (fastrnn, nn))

    def shapes(outputs):
        return [t.shape for t in ((outputs[0], *outputs[1]) if kind == "LSTM" else outputs)]
    x = torch.randn(*shape, device="meta", requires_grad=True)
    got = ours(x)
    assert shapes(got) == shapes(theirs(x)) and got[0].is_meta
    got[0].sum().backward()
    assert x.grad.shape == x.shape
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert shapes(ours(x)) == shapes(theirs(x))


class _Halve(nn.Module):
    def forward(self, w):
        return w * 0.5


REPARAMETRIZATIONS = {
    "parametrize": lambda m, name: parametrize.register_parametrization(m, name, _Halve()),
    "weight_norm": lambda m, name: parametrizations.weight_norm(m, name),
    "legacy weight_norm": lambda m, name: torch.nn.utils.weight_norm(m, name),
}


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("how", REPARAMETRIZATIONS)
@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_reparametrized_weights_are_used_on_every_path(kind, how):
    if kind == "LSTM":
        ours, theirs = _pair(fastrnn.LSTM, nn.LSTM, 4, 5)
        name, x, state = "weight_hh_l0", torch.randn(3, 2, 4), (torch.randn(1, 2, 5), torch.randn(1, 2, 5))
        step_x = x[:1]
    else:
        ours, theirs = _pair(fastrnn.LSTMCell, nn.LSTMCell, 4, 5)
        name, x, state = "weight_hh", torch.randn(2, 4), (torch.randn(2, 5), torch.randn(2, 5))
        step_x = x
    for module in (ours, theirs):
        REPARAMETRIZATIONS[how](module, name)
    torch.testing.assert_close(ours(x, state)[0], theirs(x, state)[0])
    with torch.no_grad():
        torch.testing.assert_close(ours(step_x, state)[0], theirs(step_x, state)[0])
        if how == "parametrize":  # a changed parametrization input is seen by the next step
            getattr(ours.parametrizations, name).original.mul_(2)
            getattr(theirs.parametrizations, name).original.mul_(2)
            torch.testing.assert_close(ours(step_x, state)[0], theirs(step_x, state)[0])


def test_forward_backward_and_state_dict_hooks_fire_as_on_torch():
    events = {}
    for cls in (fastrnn.LSTM, nn.LSTM):
        module, seen = cls(4, 5), []
        module.register_forward_pre_hook(lambda m, i: seen.append("pre"))
        module.register_forward_hook(lambda m, i, o: seen.append("forward"))
        module.register_full_backward_hook(lambda m, gi, go: seen.append("backward"))
        module._register_state_dict_hook(lambda *a: seen.append("state_dict"))
        module(torch.randn(3, 2, 4, requires_grad=True))[0].sum().backward()
        module.state_dict()
        events[cls] = seen
    assert events[fastrnn.LSTM] == events[nn.LSTM] == ["pre", "forward", "backward", "state_dict"]


def test_half_and_double_moves_run_like_torch():
    ours, theirs = _pair(fastrnn.LSTM, nn.LSTM, 4, 5)
    x = torch.randn(3, 2, 4)
    for move, tol in ((nn.Module.double, 1e-12), (nn.Module.half, 2e-3)):
        move(ours), move(theirs)
        dtype = next(theirs.parameters()).dtype
        got, want = ours(x.to(dtype))[0], theirs(x.to(dtype))[0]
        assert got.dtype == want.dtype == dtype
        torch.testing.assert_close(got, want, atol=tol, rtol=tol)
    ours.flatten_parameters()  # a no-op off cuDNN, as torch's
