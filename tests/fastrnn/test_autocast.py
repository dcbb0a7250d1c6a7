"""Under torch.autocast the modules do what torch's do (fastrnn/autocast.py says what that is).

CPU autocast casts nn.LSTM to the autocast dtype and leaves nn.LSTMCell in float32. The cpp
backend computes on operands rounded to that dtype in float32 and rounds its results; the
triton backend (its interpreter here, float16) runs the dtype natively. These tests failed
with a KeyError from the cpp launcher before.
"""

import pytest
import torch
import torch.nn as nn

import fastrnn

AUTOCAST_DTYPES = [torch.bfloat16, torch.float16]
# Our kernels and torch's differ by float32 rounding, which can move a result across a
# rounding boundary of the 16-bit dtype: one unit in its last place.
ONE_ULP = {torch.bfloat16: dict(atol=1e-6, rtol=2 ** -7), torch.float16: dict(atol=1e-6, rtol=2 ** -10)}


def _rounded_reference(module_ours, torch_class, dtype, x, **kwargs):
    """torch's module in float32 on weights and inputs rounded to dtype, results rounded."""
    theirs = torch_class(**kwargs)
    theirs.load_state_dict({k: v.to(dtype).float() for k, v in module_ours.state_dict().items()})
    out = theirs(x.detach().to(dtype).float())
    return out


@pytest.mark.parametrize("dtype", AUTOCAST_DTYPES)
@pytest.mark.parametrize("kwargs", [dict(), dict(num_layers=2, bidirectional=True), dict(proj_size=3)], ids=str)
def test_lstm_under_cpu_autocast_returns_the_autocast_dtype(dtype, kwargs):
    torch.manual_seed(0)
    kwargs = dict(input_size=5, hidden_size=6, **kwargs)
    lstm = fastrnn.LSTM(**kwargs)
    x = torch.randn(4, 3, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=dtype):
        y, (h, c) = lstm(x)
    assert (y.dtype, h.dtype, c.dtype) == (dtype,) * 3
    assert lstm.last_backend == "cpp"
    y_ref, (h_ref, c_ref) = _rounded_reference(lstm, nn.LSTM, dtype, x, **kwargs)
    for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(got, want.to(dtype), **ONE_ULP[dtype])
    y.float().sum().backward()  # gradients reach the float32 parameters and input
    assert x.grad.dtype == torch.float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in lstm.parameters())


@pytest.mark.parametrize("dtype", AUTOCAST_DTYPES)
def test_lstm_rollout_step_under_cpu_autocast(dtype):
    torch.manual_seed(1)
    lstm = fastrnn.LSTM(5, 6)
    x, state = torch.randn(1, 3, 5), (torch.randn(1, 3, 6), torch.randn(1, 3, 6))
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        y, (h, c) = lstm(x, state)
    assert (y.dtype, h.dtype, c.dtype) == (dtype,) * 3
    theirs = nn.LSTM(5, 6)
    theirs.load_state_dict({k: v.to(dtype).float() for k, v in lstm.state_dict().items()})
    with torch.no_grad():
        want = theirs(x.to(dtype).float(), tuple(s.to(dtype).float() for s in state))[0]
    torch.testing.assert_close(y, want.to(dtype), **ONE_ULP[dtype])


@pytest.mark.parametrize("dtype", AUTOCAST_DTYPES)
@pytest.mark.parametrize("grad", [True, False])
def test_lstm_cell_stays_float32_under_cpu_autocast_like_torch(dtype, grad):
    """Same dtype as torch's (float32); computed exactly in float32, where torch's cell runs
    its inner matmuls in the autocast dtype, so it is compared with the exact float32 cell."""
    torch.manual_seed(2)
    ours, theirs = fastrnn.LSTMCell(5, 6), nn.LSTMCell(5, 6)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5)
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=dtype):
        h, c = ours(x)
        h_torch, _ = theirs(x)
    assert h.dtype == c.dtype == h_torch.dtype == torch.float32
    h_exact, c_exact = theirs(x)
    torch.testing.assert_close(h, h_exact, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(c, c_exact, atol=1e-6, rtol=1e-6)


def test_backend_that_runs_the_autocast_dtype_natively_computes_in_it():
    """The triton backend (interpreter: float16) takes float16 operands itself."""
    torch.manual_seed(3)
    lstm = fastrnn.LSTM(5, 16, backend="triton")
    x = torch.randn(4, 3, 5)
    with torch.autocast("cpu", dtype=torch.float16):
        y, _ = lstm(x)
    assert y.dtype == torch.float16 and lstm.last_backend == "triton"
    want = fastrnn.LSTM(5, 16, backend="reference").half()
    want.load_state_dict(lstm.state_dict())
    torch.testing.assert_close(y, want(x.half())[0], atol=2e-3, rtol=2e-3)  # float16 accumulations differ


def test_float64_input_is_left_alone_by_autocast():
    lstm = fastrnn.LSTM(5, 6).double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = lstm(torch.randn(4, 3, 5, dtype=torch.float64))
    assert y.dtype == torch.float64
