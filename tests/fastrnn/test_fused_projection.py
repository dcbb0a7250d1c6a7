"""The cpp backend's no-grad forward with the input projection fused into its steps
(recurrence_op.projected_forward): the same function as projecting first, on every
instruction set and every thread layout; taken by the modules exactly where the rule in
cpp_backend says (the AVX-512 kernels only), and never where a gradient is recorded."""

import pytest
import torch
import torch.nn.functional as F

import fastrnn
from fastrnn import cpp_backend, layers, reference
from fastrnn.recurrence_op import projected_forward
from lstm_cases import TOLERANCES


# (T, B, I, H, P): tails of the row tiles (B=13) and of the vector width (H=33), one input
# feature, inputs wider than the hidden state, a projection (rows split only), and a batch
# small enough that two threads split the hidden units instead of the rows (B=2, H=64).
SHAPES = [(1, 1, 1, 1, 0), (5, 13, 7, 33, 0), (6, 2, 80, 64, 0), (4, 9, 1, 20, 0), (5, 7, 6, 17, 5), (3, 40, 12, 48, 0)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}P{}".format(*s))
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no bias"])
@pytest.mark.parametrize("with_resets", [False, True], ids=["", "resets"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["", "lengths"])
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_forward_is_the_recurrence_of_the_projection(shape, dtype, with_bias, with_resets, with_lengths,
                                                           threads, cpu_isa):
    steps, batch, inputs, hidden, proj = shape
    out = proj or hidden
    g = torch.Generator().manual_seed(5)
    x = torch.randn(steps, batch, inputs, dtype=dtype, generator=g)
    w_ih = torch.randn(4 * hidden, inputs, dtype=dtype, generator=g) * 0.4
    bias = torch.randn(4 * hidden, dtype=dtype, generator=g) if with_bias else None
    w_hh = torch.randn(4 * hidden, out, dtype=dtype, generator=g) * 0.3
    w_hr = torch.randn(proj, hidden, dtype=dtype, generator=g) * 0.3 if proj else None
    h0 = torch.randn(batch, out, dtype=dtype, generator=g)
    c0 = torch.randn(batch, hidden, dtype=dtype, generator=g)
    resets = torch.rand(steps, batch, generator=g) < 0.3 if with_resets else None
    lengths = torch.randint(1, steps + 1, (batch,), generator=g) if with_lengths else None
    expected = reference.lstm_recurrence(F.linear(x, w_ih, bias), w_hh, w_hr, h0, c0, resets, lengths)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        actual = projected_forward("cpp", x, w_ih, bias, w_hh, w_hr, h0, c0, resets, lengths)
    finally:
        torch.set_num_threads(previous)
    for name, a, e in zip(["y", "h_n", "c_n"], actual, expected):
        torch.testing.assert_close(a, e, **TOLERANCES[dtype], msg=lambda m: f"{name}: {m}")


def _projections(monkeypatch) -> list:
    """Records every projection formed by layers.run_layers (the unfused forward's GEMM)."""
    formed = []
    unfused = layers.input_projection

    def recording(seq, w_ih, bias):
        formed.append(seq.shape)
        return unfused(seq, w_ih, bias)

    monkeypatch.setattr(layers, "input_projection", recording)
    return formed


@pytest.fixture
def fused_kernels(monkeypatch):
    """The module tests below on whatever instruction set this CPU runs: every one fuses."""
    from fastrnn import _C

    monkeypatch.setattr(cpp_backend, "FUSED_PROJECTION_ISAS", frozenset({_C.isa()}))


@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "bidirectional": True}, {"bias": False},
                                     {"proj_size": 8}, {"batch_first": True}])
def test_a_no_grad_module_call_forms_no_projection_and_agrees_with_torch(options, fused_kernels, monkeypatch):
    formed = _projections(monkeypatch)
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(20, 24, **options).double()
    ours = fastrnn.LSTM(20, 24, backend="cpp", **options).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(7, 5, 20, dtype=torch.float64)
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    assert formed == []
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_packed_sequences_and_resets_take_the_fused_forward(fused_kernels, monkeypatch):
    formed = _projections(monkeypatch)
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(6, 16, bidirectional=True).double()
    ours = fastrnn.LSTM(6, 16, bidirectional=True, backend="cpp").double()
    ours.load_state_dict(theirs.state_dict())
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(9, 4, 6, dtype=torch.float64),
                                                     torch.tensor([9, 7, 3, 1]))
    with torch.no_grad():
        (expected, _), (actual, _) = theirs(packed), ours(packed)
    torch.testing.assert_close(actual.data, expected.data, rtol=1e-12, atol=1e-12)
    single = fastrnn.LSTM(6, 16, backend="cpp").double()
    x, resets = torch.randn(9, 4, 6, dtype=torch.float64), torch.rand(9, 4) < 0.3
    with torch.no_grad():
        fused = single(x, resets=resets)
    monkeypatch.setattr(cpp_backend, "FUSED_PROJECTION_MIN_ROWS", 1 << 30)
    with torch.no_grad():
        unfused = single(x, resets=resets)
    assert formed == [(9, 4, 6)]  # the second call only
    torch.testing.assert_close(fused, unfused, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch, hidden, fused", [
    (1, 16, False),     # one row: the projection GEMM reuses W_ih over every step
    (2, 16, True),
    (16, 200, True),    # W_ih + W_hh: 4 * 200 * 400 floats, under FUSED_PROJECTION_MAX_WEIGHT_BYTES
    (16, 400, False),   # 4 * 400 * 800 floats: over it, with fewer rows than ..._ANY_WEIGHTS_ROWS
    (64, 400, True),
])
def test_the_fused_forward_runs_where_the_rule_says(batch, hidden, fused, cpu_isa, monkeypatch):
    fused = fused and cpu_isa == "avx512"  # FUSED_PROJECTION_ISAS: the other kernels keep the projection
    weight_bytes = 4 * hidden * 2 * hidden * 4
    assert cpp_backend._fuses_projection(batch, weight_bytes) == fused
    formed = _projections(monkeypatch)
    lstm = fastrnn.LSTM(hidden, hidden, backend="cpp")
    with torch.no_grad():
        lstm(torch.randn(2, batch, hidden))
    assert (formed == []) == fused


def test_a_call_that_records_a_gradient_projects_first(fused_kernels, monkeypatch):
    """Its backward needs the projection's graph (torch.compile's traced calls record the
    recurrence op: test_compile.py)."""
    formed = _projections(monkeypatch)
    lstm = fastrnn.LSTM(6, 16, backend="cpp")
    lstm(torch.randn(5, 4, 6))  # the weights require grad
    with torch.no_grad():
        lstm(torch.randn(5, 4, 6))
    assert formed == [(5, 4, 6)]
