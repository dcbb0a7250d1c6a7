"""LSTM.rollout_step: one no-grad step, a linear readout and a greedy choice in one call (fused
in C++ on the cpp backend). It must equal forward on the step followed by torch.addmm and
torch.argmax, ties and NaNs included, and refuse bad arguments by name before any work."""

import pytest
import torch

import fastrnn
from fastrnn import rl

BACKENDS = ["cpp", "reference"]


def _case(batch, hidden, outputs, dtype, proj=0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    out_size = proj or hidden
    x = torch.randn(batch, 7, dtype=dtype, generator=generator)
    h = torch.randn(1, batch, out_size, dtype=dtype, generator=generator)
    c = torch.randn(1, batch, hidden, dtype=dtype, generator=generator)
    weight = torch.randn(out_size, outputs, dtype=dtype, generator=generator)
    addend = torch.randn(batch, outputs, dtype=dtype, generator=generator)
    resets = torch.rand(batch, generator=generator) < 0.3
    return x, (h, c), weight, addend, resets


def _composed(lstm, x, state, weight, addend, num_actions, resets):
    y, state = lstm(x.unsqueeze(0), state, resets=None if resets is None else resets.unsqueeze(0))
    head_out = torch.addmm(addend, y[0], weight)
    return head_out[:, :num_actions].argmax(dim=-1), head_out, state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch, hidden, outputs, num_actions, proj, with_resets", [
    (32, 48, 4, 3, 0, True),     # the agent's two-step shape: 3 actions and the value column
    (1, 5, 2, 2, 0, False),      # no value column: every output competes
    (13, 20, 11, 10, 0, True),   # rows past a row tile; outputs past one vector (AVX2 f32: 8)
    (40, 33, 37, 36, 0, True),   # outputs past one panel of the GEMM operand
    (9, 16, 3, 2, 6, True),      # a projection: the readout takes the projected h
])
def test_rollout_step_equals_the_step_then_addmm_then_argmax(backend, dtype, batch, hidden, outputs,
                                                             num_actions, proj, with_resets):
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(7, hidden, proj_size=proj, backend=backend).to(dtype)
    x, state, weight, addend, resets = _case(batch, hidden, outputs, dtype, proj)
    resets = resets if with_resets else None
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
    with torch.no_grad():
        actions, head_out, (h, c) = rl.rollout_step(lstm, x, state, weight, addend, num_actions, resets)
        expected_actions, expected_out, (expected_h, expected_c) = _composed(lstm, x, state, weight, addend,
                                                                              num_actions, resets)
    torch.testing.assert_close(h, expected_h, **tolerance)
    torch.testing.assert_close(c, expected_c, **tolerance)
    torch.testing.assert_close(head_out, expected_out, **tolerance)
    # The choice is the argmax of the step's own outputs (a near-tie may round either way).
    assert actions.dtype == torch.int64 and actions.shape == (batch,)
    assert torch.equal(actions, head_out[:, :num_actions].argmax(dim=-1))
    assert torch.equal(actions, expected_actions)
    assert h.shape == state[0].shape and c.shape == state[1].shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_rollout_step_breaks_ties_and_nans_as_torch_argmax(backend):
    # A zero readout weight leaves head_out == addend, whose rows hold ties and NaNs.
    lstm = fastrnn.LSTM(7, 8, backend=backend)
    x, state, _, _, _ = _case(5, 8, 4, torch.float32)
    weight = torch.zeros(8, 4)
    nan = float("nan")
    addend = torch.tensor([[1.0, 3.0, 3.0, 9.0],      # tie among the choices: the first; column 3 excluded
                           [2.0, 2.0, 2.0, 0.0],      # all equal: the first
                           [1.0, nan, 5.0, 0.0],      # a NaN is the largest
                           [nan, nan, 1.0, 0.0],      # the first NaN
                           [-1.0, -2.0, float("inf"), nan]])
    with torch.no_grad():
        actions, head_out, _ = rl.rollout_step(lstm, x, state, weight, addend, 3)
    assert torch.equal(actions, addend[:, :3].argmax(dim=-1)), (actions, addend[:, :3].argmax(dim=-1))
    assert torch.equal(actions, torch.tensor([1, 0, 1, 0, 2]))


def test_rollout_step_on_several_threads_equals_one_thread():
    lstm = fastrnn.LSTM(7, 64, backend="cpp")
    x, state, weight, addend, resets = _case(96, 64, 5, torch.float32)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.no_grad():
                results.append(rl.rollout_step(lstm, x, state, weight, addend, 4, resets))
    finally:
        torch.set_num_threads(threads)
    (a1, o1, (h1, c1)), (a2, o2, (h2, c2)) = results
    assert torch.equal(a1, a2) and torch.equal(o1, o2) and torch.equal(h1, h2) and torch.equal(c1, c2)


def _bad_calls():
    x, state, weight, addend, resets = _case(4, 6, 3, torch.float32)
    h, c = state
    return [
        ("x", dict(x=x.unsqueeze(0)), ValueError, "rollout_step: x must be \\(batch, 7\\)"),
        ("state", dict(state=(h[0], c)), ValueError, "state\\[0\\] must be \\(1, 4, 6\\)"),
        ("state", dict(state=(h, c[:, :3])), ValueError, "state\\[1\\] must be \\(1, 4, 6\\)"),
        ("head_weight", dict(head_weight=weight.t()), ValueError, "head_weight must be \\(6, outputs\\)"),
        ("head_addend", dict(head_addend=addend[:3]), ValueError, "head_addend must be \\(4, 3\\)"),
        ("num_actions", dict(num_actions=4), ValueError, "num_actions must be an int from 1 to 3, got 4"),
        ("num_actions", dict(num_actions=0), ValueError, "num_actions must be an int from 1 to 3, got 0"),
        ("resets", dict(resets=resets.int()), ValueError, "resets must be a \\(4,\\) bool tensor"),
        ("dtype", dict(head_addend=addend.double()), ValueError, "head_addend is torch.float64 on cpu"),
    ], dict(x=x, state=state, head_weight=weight, head_addend=addend, num_actions=2, resets=resets)


@pytest.mark.parametrize("index", range(9))
def test_rollout_step_names_the_argument_that_is_wrong(index):
    cases, good = _bad_calls()
    _, change, error, message = cases[index]
    lstm = fastrnn.LSTM(7, 6)
    with torch.no_grad(), pytest.raises(error, match=message):
        rl.rollout_step(lstm, **{**good, **change})


def test_rollout_step_refuses_autograd_and_stacked_lstms():
    _, good = _bad_calls()
    with pytest.raises(RuntimeError, match="rollout_step computes no gradient: call it under torch.no_grad"):
        rl.rollout_step(fastrnn.LSTM(7, 6), **good)
    with torch.no_grad(), pytest.raises(ValueError, match="one-layer unidirectional LSTMs only"):
        rl.rollout_step(fastrnn.LSTM(7, 6, num_layers=2), **good)
