"""fastrnn/dispatch.py: every route of the table runs what it names, says so in last_backend,
and gives the results of the implementation it names."""

import pytest
import torch
import torch.nn as nn

import fastrnn
from fastrnn import dispatch


def _pair(cls, *args, **kwargs):
    torch.manual_seed(0)
    theirs = getattr(nn, cls.__name__)(*args, **kwargs)
    ours = cls(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


@pytest.fixture
def onednn_everywhere(monkeypatch):
    """ONEDNN_FASTER with a corner at (1, 1) for every instruction set: every eligible call."""
    table = {(isa, grad): ((1, 1),) for isa in ("avx512", "avx2", "generic", None) for grad in (False, True)}
    monkeypatch.setattr(dispatch, "ONEDNN_FASTER", table)


def test_the_onednn_route_runs_torch_and_says_so(onednn_everywhere):
    """A CPU float32 sequence in an ONEDNN_FASTER region runs torch.nn.LSTM's own forward:
    the same bits as nn.LSTM, forward and backward."""
    theirs, ours = _pair(fastrnn.LSTM, 6, 8, num_layers=2)
    x = torch.randn(5, 3, 6, requires_grad=True)
    expected, got = theirs(x), ours(x)
    assert ours.last_backend == "onednn"
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    (grad_theirs,) = torch.autograd.grad(expected[0].sum(), x)
    (grad_ours,) = torch.autograd.grad(got[0].sum(), x)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=0, atol=0)


@pytest.mark.parametrize("why, kwargs, call", [
    ("resets", {}, lambda m, x: m(x, resets=torch.zeros(5, 3, dtype=torch.bool))),
    ("a named backend", {"backend": "cpp"}, lambda m, x: m(x)),
    ("a projection", {"proj_size": 4}, lambda m, x: m(x)),
    ("float64", {"dtype": torch.float64}, lambda m, x: m(x.double())),
    ("a no-grad step", {}, lambda m, x: m(x[:1])),
])
def test_calls_the_onednn_route_excludes_stay_on_cpp(onednn_everywhere, why, kwargs, call):
    """Resets (torch has none), a backend the user named, a projection (not oneDNN's kernel),
    float64 and no-grad steps never take the onednn route."""
    model = fastrnn.LSTM(6, 8, **kwargs)
    with torch.no_grad():
        call(model, torch.randn(5, 3, 6))
    assert model.last_backend == "cpp", why


def test_autocast_calls_keep_to_fastrnns_kernels(onednn_everywhere):
    """Under autocast the operands are rounded by fastrnn, so the call stays on its kernels."""
    model = fastrnn.LSTM(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(5, 3, 6))
    assert model.last_backend == "cpp"


@pytest.mark.parametrize("module", ["lstm", "cell"])
def test_large_step_weights_take_the_lstm_cell_route(monkeypatch, module):
    """A no-grad CPU step over STEP_PACK_LIMIT_BYTES of weights runs torch's lstm_cell and
    says so; the same step under the limit runs the cpp kernel."""
    if module == "lstm":
        theirs, ours = _pair(fastrnn.LSTM, 6, 8)
        x, state = torch.randn(1, 3, 6), (torch.randn(1, 3, 8), torch.randn(1, 3, 8))
    else:
        theirs, ours = _pair(fastrnn.LSTMCell, 6, 8)
        x, state = torch.randn(3, 6), (torch.randn(3, 8), torch.randn(3, 8))
    with torch.no_grad():
        ours(x, state)
        assert ours.last_backend == "cpp"
        monkeypatch.setattr(dispatch, "STEP_PACK_LIMIT_BYTES", 0)
        got, expected = ours(x, state), theirs(x, state)
    assert ours.last_backend == "lstm_cell"
    torch.testing.assert_close(got, expected)


def test_a_state_of_another_dtype_takes_the_torch_route():
    """torch raises or promotes for a state whose dtype differs from the weights'; fastrnn runs
    torch's forward for it and says so."""
    theirs, ours = _pair(fastrnn.LSTM, 6, 8)
    theirs, ours = theirs.double(), ours.double()
    x = torch.randn(4, 2, 6, dtype=torch.float64)
    state = (torch.randn(1, 2, 8, dtype=torch.float64), torch.randn(1, 2, 8))
    torch.testing.assert_close(ours(x, state)[0], theirs(x, state)[0], rtol=0, atol=0)
    assert ours.last_backend == "torch"


def test_jit_trace_takes_the_torch_route():
    """torch.jit.trace records torch's standard op; last_backend says torch."""
    model = fastrnn.LSTM(6, 8)
    torch.jit.trace(model, torch.randn(4, 2, 6), check_trace=False)
    assert model.last_backend == "torch"


def test_the_measured_table_sends_large_cpu_sequences_to_onednn():
    """The committed ONEDNN_FASTER corners, on this machine's instruction set: a no-grad
    H=512, B=64 float32 sequence takes oneDNN where a corner covers it, a small one cpp."""
    big, small = fastrnn.LSTM(512, 512), fastrnn.LSTM(16, 16)
    with torch.no_grad():
        small(torch.randn(3, 2, 16))
        big(torch.randn(2, 64, 512))
    corners = dispatch.ONEDNN_FASTER.get((fastrnn._C.isa(), False), ())
    assert small.last_backend == "cpp"
    assert big.last_backend == ("onednn" if corners else "cpp")


def test_explain_lists_every_route_in_order():
    """explain() prints one line per route, in the order route() tries them."""
    lines = dispatch.explain().splitlines()
    assert [line.split()[0] for line in lines] == [r.implementation for r in dispatch.ROUTES]


def test_a_changed_threshold_is_read_by_the_next_call(monkeypatch):
    """Routes are remembered per kind of call, but not across a change of the data they read."""
    call = dispatch.Call("auto", torch.device("cpu"), torch.float32, "step", False, 8, 8, 3, 4096)
    assert dispatch.route(call) == "cpp"
    monkeypatch.setattr(dispatch, "STEP_PACK_LIMIT_BYTES", 1024)
    assert dispatch.route(call) == "lstm_cell"


def test_a_named_backend_that_cannot_take_the_input_says_why():
    """backend="cpp" on float16: a ValueError naming the backend and the dtype, before any work."""
    call = dispatch.Call("cpp", torch.device("cpu"), torch.float16)
    with pytest.raises(ValueError, match="backend='cpp' cannot run torch.float16"):
        dispatch.route(call)


def test_small_batches_of_mid_sized_weights_skip_the_packed_step():
    """Over STEP_CHECK_BYTES of weights, a step of fewer than STEP_PACK_MIN_ROWS rows runs
    lstm_cell (the packed step's per-call weight check would cost more than it saves); more
    rows run the packed kernel; a rollout plan, which checks no weights per step, stays packed."""
    from fastrnn import rl

    cell = fastrnn.LSTMCell(128, 128)
    assert dispatch.step_weight_bytes(cell.weight_ih, cell.weight_hh, None) > dispatch.STEP_CHECK_BYTES
    with torch.no_grad():
        cell(torch.randn(dispatch.STEP_PACK_MIN_ROWS - 1, 128))
        assert cell.last_backend == "lstm_cell"
        cell(torch.randn(dispatch.STEP_PACK_MIN_ROWS, 128))
        assert cell.last_backend == "cpp"
        lstm = fastrnn.LSTM(128, 128)
        rl.rollout_plan(lstm, torch.randn(3, 4, 128), torch.randn(128, 3), torch.randn(3, 4, 3), 2)
        assert lstm.last_backend == "cpp"


def test_a_state_of_another_dtype_with_resets_is_refused_naming_both():
    """torch's forward, which takes states of another dtype, has no resets: such a call raises,
    naming resets and the dtypes, before any work."""
    model = fastrnn.LSTM(3, 4).double()
    state = (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="resets: hx must have the weights' dtype torch.float64, got torch.float32"):
        model(torch.randn(5, 2, 3, dtype=torch.float64), state, resets=torch.zeros(5, 2, dtype=torch.bool))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_cpu_calls_run_torchs_kernels_with_torchs_bits(dtype):
    """The cpp kernels take float32 and float64 only; a 16-bit CPU call on auto once ran the
    reference loop, 3-12x slower than torch for bfloat16 sequences. Now an LSTM sequence runs
    nn.LSTM's forward ("onednn"), a T=1 no-grad step and LSTMCell calls ATen's lstm_cell, with
    torch's results bit for bit; resets, which only fastrnn has, keep the reference loop."""
    theirs, ours = _pair(fastrnn.LSTM, 6, 8, num_layers=2, proj_size=3, dtype=dtype)
    x = torch.randn(5, 2, 6, dtype=dtype, requires_grad=True)
    (y, _), (want, _) = ours(x), theirs(x)
    assert ours.last_backend == "onednn"
    assert torch.equal(y, want)
    assert torch.equal(torch.autograd.grad(y.sum(), x)[0], torch.autograd.grad(want.sum(), x)[0])
    cell_theirs, cell_ours = _pair(fastrnn.LSTMCell, 6, 8, dtype=dtype)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            assert all(map(torch.equal, cell_ours(x[0]), cell_theirs(x[0])))
            assert cell_ours.last_backend == "lstm_cell"
    one_layer_theirs, one_layer = _pair(fastrnn.LSTM, 6, 8, dtype=dtype)
    with torch.no_grad():
        got, want = one_layer(x[:1]), one_layer_theirs(x[:1])
    assert one_layer.last_backend == "lstm_cell"
    torch.testing.assert_close(got, want)  # ATen's cell against nn.LSTM's sequence kernel
    with torch.no_grad():
        one_layer(x, resets=torch.zeros(5, 2, dtype=torch.bool))
    assert one_layer.last_backend == "reference"


def test_the_first_call_of_a_fresh_process_takes_the_measured_route():
    """The first CPU call of a process came before fastrnn._C was loaded: the instruction set
    read as None, the oneDNN corners as empty, and the route memo kept cpp for that call's sizes
    for the whole process, so a model of one shape never took oneDNN where bench cpu measured it
    faster (bench cpu itself loads _C first). The call now loads it before reading the corners."""
    import subprocess
    import sys

    code = """
import sys, torch, fastrnn, fastrnn.dispatch as d
assert "fastrnn._C" not in sys.modules
lstm, x = fastrnn.LSTM(512, 512), torch.randn(2, 256, 512)
with torch.no_grad():
    lstm(x)
first = lstm.last_backend
faster = d._in_corners(d.ONEDNN_FASTER.get((fastrnn._C.isa(), False), ()), 512, 256)
print(first, "onednn" if faster else "cpp")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, expected = out.stdout.split()
    assert first == expected


def test_a_packed_call_that_runs_torchs_forward_is_not_unpacked_first(onednn_everywhere, monkeypatch):
    """The route of a PackedSequence call is decided before fastrnn unpacks it to a padded
    tensor, which torch's forward does not use (it cost 3-8% of a oneDNN call): the results are
    torch's, bit for bit, and unpack_to_padded is never called. A call that runs fastrnn's own
    kernels still unpacks."""
    from torch.nn.utils.rnn import pack_padded_sequence

    import fastrnn.modules

    theirs, ours = _pair(fastrnn.LSTM, 6, 8)
    packed = pack_padded_sequence(torch.randn(5, 3, 6), torch.tensor([5, 2, 4]), enforce_sorted=False)
    unpack = fastrnn.modules.unpack_to_padded
    calls = []
    monkeypatch.setattr(fastrnn.modules, "unpack_to_padded", lambda *a: calls.append(1) or unpack(*a))
    y, (h, c) = ours(packed)
    want, (want_h, want_c) = theirs(packed)
    assert ours.last_backend == "onednn" and not calls
    assert torch.equal(y.data, want.data) and torch.equal(h, want_h) and torch.equal(c, want_c)
    ours.backend = "cpp"
    ours(packed)
    assert ours.last_backend == "cpp" and calls


@pytest.mark.parametrize("hidden, batch, expected", [
    (128, 8, False), (128, 16, True), (128, 32, True), (128, 64, False), (512, 33, False), (64, 16, False)])
def test_a_band_corner_covers_only_its_batches(hidden, batch, expected):
    """A corner (H, B, B_max) covers hidden sizes from H and batches from B to B_max only."""
    assert dispatch._in_corners(((128, 16, 32),), hidden, batch) is expected
    assert dispatch._in_corners(((128, 16),), hidden, batch) is (hidden >= 128 and batch >= 16)
