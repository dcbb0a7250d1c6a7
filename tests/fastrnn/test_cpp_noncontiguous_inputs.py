"""No-grad single steps (the fused C++ cell) on inputs that are not contiguous: expanded,
sliced and transposed inputs, states and resets must give what torch gives on the same values.

The step makes contiguous copies of such inputs for the kernel; a copy freed before the kernel
reads it (issue: class 1) reads freed memory. In the normal build that shows only when the freed
memory has been reused (wrong numbers, sometimes); under scripts/sanitize.sh (ASan) every such
read aborts with heap-use-after-free, so these cases are part of the sanitized run."""

import pytest
import torch

import fastrnn
from fastrnn import rl

BATCH, FEATURES, HIDDEN = 6, 8, 16
TOLERANCE = {torch.float32: {"atol": 1e-5, "rtol": 1e-5}, torch.float64: {"atol": 1e-12, "rtol": 1e-12}}


def _pair(proj, dtype, batch_first=False):
    torch.manual_seed(0)
    expected = torch.nn.LSTM(FEATURES, HIDDEN, proj_size=proj, batch_first=batch_first).to(dtype)
    ours = fastrnn.LSTM(FEATURES, HIDDEN, proj_size=proj, batch_first=batch_first, backend="cpp").to(dtype)
    ours.load_state_dict(expected.state_dict())
    return expected, ours


def _noncontiguous(kind, shape, dtype, generator):
    """A tensor of `shape` that is not contiguous: a broadcast row, every other column, or a
    transpose (the last two dimensions of a (..., B, F) tensor swapped back)."""
    if kind == "expanded":
        out = torch.randn(*shape[:-2], 1, shape[-1], dtype=dtype, generator=generator).expand(shape)
    elif kind == "sliced":
        out = torch.randn(*shape[:-1], 2 * shape[-1], dtype=dtype, generator=generator)[..., ::2]
    else:
        out = torch.randn(*shape[:-2], shape[-1], shape[-2], dtype=dtype, generator=generator).transpose(-1, -2)
    assert out.shape == shape and not out.is_contiguous()
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_issue_repro_a_broadcast_batch_first_step(dtype):
    expected, ours = _pair(0, dtype, batch_first=True)
    x = torch.randn(1, 1, FEATURES, dtype=dtype, generator=torch.Generator().manual_seed(1)).expand(4, 1, FEATURES)
    with torch.no_grad():
        y, (h, c) = ours(x)
        y_expected, (h_expected, c_expected) = expected(x)
    torch.testing.assert_close(y, y_expected, **TOLERANCE[dtype])
    torch.testing.assert_close(h, h_expected, **TOLERANCE[dtype])
    torch.testing.assert_close(c, c_expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("proj", [0, 5])
@pytest.mark.parametrize("x_kind, state_kind", [
    ("expanded", None), ("sliced", None), ("transposed", None),
    (None, "expanded"), (None, "sliced"), (None, "transposed"), ("sliced", "transposed"),
])
def test_a_no_grad_step_on_noncontiguous_inputs_and_state(dtype, proj, x_kind, state_kind):
    expected, ours = _pair(proj, dtype)
    generator = torch.Generator().manual_seed(2)
    x_shape = (1, BATCH, FEATURES)
    x = (_noncontiguous(x_kind, x_shape, dtype, generator) if x_kind
         else torch.randn(x_shape, dtype=dtype, generator=generator))
    state_shapes = [(1, BATCH, proj or HIDDEN), (1, BATCH, HIDDEN)]
    h0, c0 = [_noncontiguous(state_kind, shape, dtype, generator) if state_kind
              else torch.randn(shape, dtype=dtype, generator=generator) for shape in state_shapes]
    with torch.no_grad():
        y, (h, c) = ours(x, (h0, c0))
        y_expected, (h_expected, c_expected) = expected(x.contiguous(), (h0.contiguous(), c0.contiguous()))
    torch.testing.assert_close(y, y_expected, **TOLERANCE[dtype])
    torch.testing.assert_close(h, h_expected, **TOLERANCE[dtype])
    torch.testing.assert_close(c, c_expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_no_grad_step_with_strided_resets(dtype):
    expected, ours = _pair(0, dtype)
    generator = torch.Generator().manual_seed(3)
    x = _noncontiguous("sliced", (1, BATCH, FEATURES), dtype, generator)
    h0, c0 = (_noncontiguous("transposed", (1, BATCH, HIDDEN), dtype, generator) for _ in range(2))
    resets = torch.tensor([[True, False] * BATCH])[:, ::2]  # every other row, stride 2
    assert not resets.is_contiguous() and resets.shape == (1, BATCH)
    with torch.no_grad():
        y, (h, c) = ours(x, (h0, c0), resets=resets)
        keep = ~resets[0].unsqueeze(-1)
        y_expected, (h_expected, c_expected) = expected(x.contiguous(), (h0 * keep, c0 * keep))
    torch.testing.assert_close(y, y_expected, **TOLERANCE[dtype])
    torch.testing.assert_close(h, h_expected, **TOLERANCE[dtype])
    torch.testing.assert_close(c, c_expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["expanded", "sliced", "transposed"])
def test_an_lstm_cell_step_on_noncontiguous_inputs(dtype, kind):
    torch.manual_seed(0)
    expected = torch.nn.LSTMCell(FEATURES, HIDDEN).to(dtype)
    ours = fastrnn.LSTMCell(FEATURES, HIDDEN, backend="cpp").to(dtype)
    ours.load_state_dict(expected.state_dict())
    generator = torch.Generator().manual_seed(4)
    x = _noncontiguous(kind, (BATCH, FEATURES), dtype, generator)
    h0, c0 = (_noncontiguous(kind, (BATCH, HIDDEN), dtype, generator) for _ in range(2))
    with torch.no_grad():
        h, c = ours(x, (h0, c0))
        h_expected, c_expected = expected(x.contiguous(), (h0.contiguous(), c0.contiguous()))
    torch.testing.assert_close(h, h_expected, **TOLERANCE[dtype])
    torch.testing.assert_close(c, c_expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_rollout_step_on_noncontiguous_inputs(dtype):
    """The fused step with the readout: x, h, c, the head and its addend all strided."""
    _, ours = _pair(0, dtype)
    generator = torch.Generator().manual_seed(5)
    outputs, num_actions = 4, 3
    x = _noncontiguous("sliced", (BATCH, FEATURES), dtype, generator)
    h0, c0 = (_noncontiguous("transposed", (1, BATCH, HIDDEN), dtype, generator) for _ in range(2))
    head_weight = _noncontiguous("transposed", (HIDDEN, outputs), dtype, generator)
    addend = _noncontiguous("expanded", (BATCH, outputs), dtype, generator)
    resets = torch.tensor([True, False, False] * BATCH)[::3]
    with torch.no_grad():
        actions, head_out, (h, c) = rl.rollout_step(ours, x, (h0, c0), head_weight, addend, num_actions, resets)
        keep = ~resets.unsqueeze(-1)
        y, (h_expected, c_expected) = ours(x.contiguous().unsqueeze(0), (h0 * keep, c0 * keep))
    out_expected = torch.addmm(addend, y[0], head_weight)
    torch.testing.assert_close(h, h_expected, **TOLERANCE[dtype])
    torch.testing.assert_close(c, c_expected, **TOLERANCE[dtype])
    torch.testing.assert_close(head_out, out_expected, **TOLERANCE[dtype])
    assert torch.equal(actions, head_out[:, :num_actions].argmax(dim=-1))
