"""Episode resets: concatenated episodes run as one sequence equal the episodes run one by
one from a zero state, with no gradient crossing an episode boundary."""

import pytest
import torch

import fastrnn
from agent.core.cores import TorchLoopLSTM

BACKENDS = ["reference", "cpp"]


def _episodes(lengths, batch, features, generator):
    return [torch.randn(n, batch, features, dtype=torch.float64, generator=generator) for n in lengths]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("proj", [0, 3])
def test_concatenated_episodes_equal_episodes_run_one_by_one(backend, proj):
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(4, 6, proj_size=proj, num_layers=2, backend=backend).double()
    episodes = _episodes([3, 5, 1, 4], 2, 4, torch.Generator().manual_seed(1))
    x = torch.cat(episodes)
    resets = torch.zeros(x.shape[:2], dtype=torch.bool)
    start = 0
    for episode in episodes:
        resets[start] = True
        start += episode.shape[0]
    hx = (torch.randn(2, 2, proj or 6, dtype=torch.float64), torch.randn(2, 2, 6, dtype=torch.float64))
    y, (h_n, c_n) = lstm(x, hx, resets=resets)
    expected = torch.cat([lstm(episode)[0] for episode in episodes])
    torch.testing.assert_close(y, expected, atol=1e-12, rtol=0)
    _, (h_last, c_last) = lstm(episodes[-1])
    torch.testing.assert_close(h_n, h_last, atol=1e-12, rtol=0)
    torch.testing.assert_close(c_n, c_last, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_gradient_crosses_a_reset(backend):
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(3, 5, backend=backend).double()
    x = torch.randn(8, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 3, 5, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(1, 3, 5, dtype=torch.float64, requires_grad=True)
    resets = torch.zeros(8, 3, dtype=torch.bool)
    resets[4, 0] = True   # row 0: a new episode starts at step 4
    resets[0, 1] = True   # row 1: the state given in hx is discarded before step 0
    y, _ = lstm(x, (h0, c0), resets=resets)
    x_grad, h0_grad = torch.autograd.grad(y[4:, 0].sum() + y[:, 1].sum(), [x, h0])
    assert torch.all(x_grad[:4, 0] == 0), "the loss after a reset reached inputs before it"
    assert torch.all(x_grad[4:, 0] != 0)
    assert torch.all(h0_grad[0, :2] == 0), "initial state of a row reset at step 0 got a gradient"


def test_no_grad_rollout_steps_with_resets_equal_the_sequence_call():
    """What an RL rollout does (one fused step per env step) equals the learner's sequence call."""
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(4, 7)
    x = torch.randn(10, 5, 4)
    resets = torch.rand(10, 5, generator=torch.Generator().manual_seed(3)) < 0.25
    state = (torch.zeros(1, 5, 7), torch.zeros(1, 5, 7))
    outputs = []
    with torch.no_grad():
        for t in range(10):
            out, state = lstm(x[t : t + 1], state, resets=resets[t : t + 1])
            outputs.append(out)
    y, _ = lstm(x, resets=resets)
    torch.testing.assert_close(torch.cat(outputs), y.detach(), atol=1e-6, rtol=1e-5)


def test_resets_follow_batch_first_and_unbatched_layouts():
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(2, 3, batch_first=True).double()
    x = torch.randn(4, 6, 2, dtype=torch.float64)
    resets = torch.zeros(4, 6, dtype=torch.bool)
    resets[:, 3] = True
    y, _ = lstm(x, resets=resets)
    torch.testing.assert_close(y[:, 3:], lstm(x[:, 3:])[0], atol=1e-12, rtol=0)
    y1, _ = lstm(x[0], resets=resets[0])
    torch.testing.assert_close(y1, y[0], atol=1e-12, rtol=0)


def test_rollout_step_output_does_not_alias_the_state():
    """Like nn.LSTM, the output of a one-step call is its own tensor: editing it in place
    leaves the returned state alone."""
    lstm = fastrnn.LSTM(3, 4)
    state = (torch.randn(1, 2, 4), torch.randn(1, 2, 4))
    with torch.no_grad():
        y, (h, c) = lstm(torch.randn(1, 2, 3), state)
        before = h.clone()
        y.zero_()
    assert torch.equal(h, before)


@pytest.mark.parametrize("backend", ["reference", "cpp", "triton", "agent's torch core"])
def test_a_non_finite_state_does_not_cross_a_reset(backend):
    # A reset sets the state to zero (fastrnn.reference's definition), not to state * 0: a NaN
    # or inf from one episode (a diverged run, a bad observation) must not reach the next one,
    # in the outputs or in any gradient. Found on the reference backend, whose h * (1 - reset)
    # kept NaN, and in the weight gradient's previous-output term shared by the others.
    dtype = torch.float32 if backend == "triton" else torch.float64
    torch.manual_seed(0)
    if backend == "agent's torch core":  # agent/core/cores.py's nn.LSTM loop, the benchmarks' baseline
        lstm = TorchLoopLSTM(3, 4).to(dtype)
    else:
        lstm = fastrnn.LSTM(3, 4, proj_size=2 if backend == "reference" else 0, backend=backend).to(dtype)
    out_size = lstm.proj_size or lstm.hidden_size
    zeros = (torch.zeros(1, 1, out_size, dtype=dtype), torch.zeros(1, 1, 4, dtype=dtype))
    x = torch.randn(4, 2, 3, dtype=dtype)
    resets = torch.zeros(4, 2, dtype=torch.bool)
    resets[0, 0] = resets[2, 1] = True

    # A poisoned initial state, reset before the first step: outputs and every gradient finite.
    h0, c0 = torch.zeros(1, 2, out_size, dtype=dtype), torch.zeros(1, 2, 4, dtype=dtype)
    h0[0, 0, 0], c0[0, 0, 1] = float("nan"), float("inf")
    y, _ = lstm(x, (h0, c0), resets=resets)
    assert torch.isfinite(y).all()
    y.sum().backward()
    for name, param in lstm.named_parameters():
        assert torch.isfinite(param.grad).all(), name

    # A NaN input mid-episode: that episode's outputs turn NaN, the next episode's do not.
    # (Gradients are not compared here: W_ih's gradient sums x_t against the step's input
    # gradient, and 0 * NaN is NaN in any GEMM, torch's own included.)
    x[1, 1, 0] = float("nan")
    with torch.no_grad():
        y, _ = lstm(x, tuple(z.expand(1, 2, -1) for z in zeros), resets=resets)
        assert torch.isnan(y[1, 1]).all()
        torch.testing.assert_close(y[2:, 1:], lstm(x[2:, 1:], zeros)[0])
