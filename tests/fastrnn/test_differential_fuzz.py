"""Differential fuzzing of fastrnn's modules against torch's (tests/fastrnn/differential.py), and one
minimal regression test per class of silent wrong answer an outside fuzzer found.

Fast profile (here, in the normal test run): FAST_CASES cases of seed FAST_SEED.
Long profile (by hand; prints failures grouped, one replayable repro each, exits 1 on any):

    .venv/bin/python -m tests.fastrnn.differential --cases 10000 --seed 7
    .venv/bin/python -m tests.fastrnn.differential --replay 7:1234
"""

import pytest
import torch
import torch.nn as nn

import differential
import fastrnn
from differential import Case, check_case, format_groups, generate_case, group_failures, run_cases_isolated

FAST_SEED = 0
FAST_CASES = 500


@pytest.fixture
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_fast_profile_fastrnn_agrees_with_torch():
    """FAST_CASES random configurations, layouts, grad modes and routes: fastrnn's outputs,
    gradients and raised exception types equal torch's on identical weights, and no case
    kills the process (the cases run in a child process)."""
    failures = run_cases_isolated(FAST_SEED, FAST_CASES)
    if failures:
        groups = group_failures(failures, shrink_per_group=0)  # unshrunk: the long profile shrinks
        pytest.fail(f"{len(failures)} of {FAST_CASES} cases differ from torch:\n{format_groups(groups)}",
                    pytrace=False)


def test_a_case_replays_identically_from_seed_and_index():
    """generate_case is a pure function of (seed, index), and a printed case evaluates back to
    itself, so every reported failure replays exactly."""
    for index in range(50):
        case = generate_case(3, index)
        assert generate_case(3, index) == case
        assert differential.parse_replay(repr(case)) == case
        assert differential.parse_replay(f"3:{index}") == case


def test_the_checker_catches_an_output_off_by_1e_8(monkeypatch):
    """The float64 forward tolerance is tight enough to see a small systematic error, so a
    passing fuzz run means something."""
    forward = fastrnn.LSTMCell.forward
    monkeypatch.setattr(fastrnn.LSTMCell, "forward", lambda self, *a, **k: tuple(t + 1e-8 for t in forward(self, *a, **k)))
    assert check_case(Case(module="cell", grad_mode="no_grad"))[0] == "forward"


def test_the_checker_flags_a_raise_on_one_side_only(monkeypatch):
    """A raise where torch returns is a failure, not a skipped case."""
    def broken(self, *args, **kwargs):
        raise RuntimeError("planted")
    monkeypatch.setattr(fastrnn.LSTM, "forward", broken)
    assert check_case(Case(module="lstm"))[0] == "error"


def test_the_fuzzer_reaches_every_route_knob():
    """The generated cases cover each layout, grad mode, pattern, backend and threshold value."""
    cases = [generate_case(FAST_SEED, i) for i in range(FAST_CASES)]
    seen = {(name, getattr(c, name)) for c in cases for name in (
        "x_layout", "h_layout", "resets_layout", "grad_mode", "pattern", "backend", "nonfinite", "invalid",
        "step_pack_limit", "workspace_min", "narrow_input", "dtype", "isa", "onednn")}
    wanted = {("x_layout", v) for v in differential.LAYOUTS} | {("grad_mode", v) for v in differential.GRAD_MODES}
    wanted |= {("pattern", v) for v in ("single", "chained", "unrolled")}
    wanted |= {("backend", v) for v in ("auto", "cpp", "reference")}
    wanted |= {("narrow_input", v) for v in ("default", "none", "all")}
    wanted |= {("onednn", v) for v in ("default", "everywhere")}
    assert wanted <= seen, wanted - seen
    assert any(c.packed and not c.enforce_sorted for c in cases) and any(c.packed and c.enforce_sorted for c in cases)
    assert any(c.module == "cell" and c.input_size == 0 for c in cases)
    assert any(c.batch == 0 for c in cases) and any(c.unbatched for c in cases) and any(c.resets for c in cases)
    assert any(c.dropout_train and c.packed for c in cases) and any(c.dropout_train and c.needs_grad for c in cases)


# ---------------------------------------------------------------- regression tests, one per class

def _pair(torch_class, *args, **kwargs):
    """(torch's module, fastrnn's module) in float64 with identical weights."""
    torch.manual_seed(0)
    expected = torch_class(*args, dtype=torch.float64, **kwargs)
    actual = getattr(fastrnn, torch_class.__name__)(*args, dtype=torch.float64, **kwargs)
    actual.load_state_dict(expected.state_dict())
    return expected, actual


def _randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)


def _grads(module, inputs, outputs_of, create_graph=False):
    """Gradients of sum(outputs * fixed random weights) w.r.t. inputs and parameters."""
    outputs = outputs_of(module, inputs)
    generator = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, dtype=o.dtype, generator=generator)).sum() for o in outputs)
    return torch.autograd.grad(loss, [*inputs, *module.parameters()], create_graph=create_graph)


def _assert_all_close(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9, equal_nan=True)


NON_CONTIGUOUS = {
    "expanded batch input": lambda x, h, c, r: (x[:1].expand_as(x), h, c, r),
    "sliced input features": lambda x, h, c, r: (torch.stack([x, x + 7], -1).flatten(-2)[..., ::2], h, c, r),
    "transposed-back h0": lambda x, h, c, r: (x, h.transpose(-1, -2).contiguous().transpose(-1, -2), c, r),
    "transposed-back c0": lambda x, h, c, r: (x, h, c.transpose(-1, -2).contiguous().transpose(-1, -2), r),
    "sliced resets": lambda x, h, c, r: (x, h, c, torch.stack([r, ~r], -1).flatten(-2)[..., ::2]),
}


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("layout", NON_CONTIGUOUS)
def test_class1_no_grad_step_on_non_contiguous_operands(layout, grad_mode):
    """Class 1: a no-grad single step (LSTM with T=1, LSTMCell) whose input, h0, c0 or resets
    is not contiguous reads the operand's values, not freed memory."""
    batch, features, hidden = 5, 3, 4
    x, h, c = _randn(1, batch, features), _randn(1, batch, hidden), _randn(1, batch, hidden)
    resets = torch.tensor([[True, False, True, False, False]])
    x, h, c, resets = NON_CONTIGUOUS[layout](x, h, c, resets)
    reference = fastrnn.LSTM(features, hidden, backend="reference", dtype=torch.float64)
    expected_lstm, lstm = _pair(nn.LSTM, features, hidden)
    reference.load_state_dict(lstm.state_dict())
    with grad_mode():
        _, (h_got, c_got) = lstm(x, (h, c), resets=resets)
        _, (h_want, c_want) = reference(x.contiguous(), (h.contiguous(), c.contiguous()), resets=resets.contiguous())
        _assert_all_close((h_got, c_got), (h_want, c_want))
        if layout != "sliced resets":
            expected_cell, cell = _pair(nn.LSTMCell, features, hidden)
            _assert_all_close(cell(x[0], (h[0], c[0])), expected_cell(x[0], (h[0], c[0])))


def _chained_lstm(module, inputs):
    x1, x2 = inputs
    y1, state = module(x1)
    y2, (h, c) = module(x2, state)
    return y1, y2, h, c


def _unrolled_cell(cell, inputs):
    (x,) = inputs
    state = cell(x[0])
    outputs = [*state]
    for t in range(1, x.shape[0]):
        state = cell(x[t], state)
        outputs += state
    return outputs


def _chained_packed_lstm(module, inputs):
    x1, x2 = inputs
    y1, state = module(nn.utils.rnn.pack_padded_sequence(x1, torch.tensor([3, 1, 2]), enforce_sorted=False))
    y2, (h, c) = module(nn.utils.rnn.pack_padded_sequence(x2, torch.tensor([2, 3, 1]), enforce_sorted=False), state)
    return y1.data, y2.data, h, c


CREATE_GRAPH_PATTERNS = {
    "two chained calls": (nn.LSTM, (3, 4), _chained_lstm, lambda: (_randn(2, 2, 3), _randn(2, 2, 3))),
    "unrolled LSTMCell": (nn.LSTMCell, (3, 4), _unrolled_cell, lambda: (_randn(3, 2, 3),)),
    "packed sequences": (nn.LSTM, (3, 4), _chained_packed_lstm, lambda: (_randn(3, 3, 3), _randn(3, 3, 3))),
}


@pytest.mark.parametrize("pattern", CREATE_GRAPH_PATTERNS)
def test_class2_create_graph_when_state_depends_on_weights(pattern):
    """Class 2: create_graph=True gives the same first-order gradients as torch when the state
    or input of a call depends on the same module's weights."""
    torch_class, sizes, outputs_of, make_inputs = CREATE_GRAPH_PATTERNS[pattern]
    expected_module, module = _pair(torch_class, *sizes)
    inputs = [t.requires_grad_() for t in make_inputs()]
    expected = _grads(expected_module, [t.detach().clone().requires_grad_() for t in inputs], outputs_of)
    _assert_all_close(_grads(module, inputs, outputs_of, create_graph=True), expected)


def test_class3_create_graph_with_one_tensor_as_h0_and_c0():
    """Class 3: cell(x, (z, z)), one tensor passed as both h0 and c0, under create_graph=True
    gives torch's gradients (z's gradient is the sum of both paths)."""
    expected_cell, cell = _pair(nn.LSTMCell, 3, 4)

    def outputs_of(module, inputs):
        x, z = inputs
        return module(x, (z, z))

    x, z = _randn(2, 3).requires_grad_(), _randn(2, 4).requires_grad_()
    expected = _grads(expected_cell, [x.detach().clone().requires_grad_(), z.detach().clone().requires_grad_()],
                      outputs_of)
    _assert_all_close(_grads(cell, [x, z], outputs_of, create_graph=True), expected)


@pytest.mark.parametrize("needs_grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("torch_class", [nn.LSTM, nn.LSTMCell])
def test_class4_inf_cell_state_with_saturated_forget_gate_is_nan(torch_class, needs_grad):
    """Class 4: c = f * c_prev + i * g with c_prev = inf and f saturated to exactly 0 is NaN
    (0 * inf), as in torch, not inf."""
    expected_module, module = _pair(torch_class, 3, 4)
    with torch.no_grad():
        for m in (expected_module, module):
            bias = m.bias_ih if torch_class is nn.LSTMCell else m.bias_ih_l0
            bias[4:8] = -1e4  # the forget gate's pre-activation: sigmoid gives exactly 0
    x = _randn(1, 2, 3) if torch_class is nn.LSTM else _randn(2, 3)
    h, c = _randn(*x.shape[:-1], 4), _randn(*x.shape[:-1], 4)
    c[..., 0] = float("inf")
    with torch.set_grad_enabled(needs_grad):
        x.requires_grad_(needs_grad)
        _assert_all_close(module(x, (h, c))[1], expected_module(x, (h, c))[1])


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_class4_packed_row_that_ended_with_an_inf_cell_state_keeps_its_gradients_finite(backend):
    """Class 4 with a PackedSequence (fuzz seed 34, case 24959): a row ends after one step
    with an infinite cell state. torch computes no step for it afterwards, so its c0 and h0
    get finite gradients (tanh'(inf) = 0); the reference backend computed the padded step and
    discarded it, and in that step's backward 0 * inf (f * c) made the row's gradients NaN."""
    from torch.nn.utils.rnn import pack_padded_sequence

    expected_module, module = _pair(nn.LSTM, 2, 3)
    module.backend = backend
    x = _randn(2, 2, 2)  # (T, B, I): row 0 has one step, row 1 two
    h, c = _randn(1, 2, 3), _randn(1, 2, 3)
    c[0, 0, 1] = float("inf")

    def outputs_of(lstm, inputs):
        x, h, c = inputs
        y, (h_n, _) = lstm(pack_padded_sequence(x, torch.tensor([1, 2]), enforce_sorted=False), (h, c))
        return y.data, h_n  # c_n holds the inf itself

    expected = _grads(expected_module, [t.clone().requires_grad_() for t in (x, h, c)], outputs_of)
    actual = _grads(module, [t.clone().requires_grad_() for t in (x, h, c)], outputs_of)
    assert torch.isfinite(expected[2][0, 0]).all()  # the premise: torch's c0 gradient of row 0
    _assert_all_close(actual, expected)


@pytest.mark.parametrize("backend", ["auto", "cpp", "reference"])
def test_packed_input_with_inference_mode_states_under_autograd_raises_as_torch_does(backend):
    """Guards the fix above (fuzz seed 50, case 807, before it landed): masking a finished row's
    state makes a new tensor, which autograd would have accepted where torch refuses to save
    inference-mode h0 and c0. The reference masks only once some row has finished."""
    from torch.nn.utils.rnn import pack_padded_sequence

    expected_module, module = _pair(nn.LSTM, 2, 3)
    module.backend = backend
    x = pack_padded_sequence(_randn(3, 2, 2), torch.tensor([3, 1]))
    with torch.inference_mode():
        state = (_randn(1, 2, 3), _randn(1, 2, 3))
    for lstm in (expected_module, module):
        with pytest.raises(RuntimeError, match="Inference tensors cannot be saved for backward"):
            lstm(x, state)


def test_class5_lstmcell_with_zero_input_size_under_autograd():
    """Class 5: LSTMCell(0, 4) under autograd returns torch's output and gradients (the gates
    come from the state alone) instead of raising."""
    expected_cell, cell = _pair(nn.LSTMCell, 0, 4)

    def outputs_of(module, inputs):
        x, h, c = inputs
        return module(x, (h, c))

    inputs = [_randn(2, 0), _randn(2, 4), _randn(2, 4)]
    expected = _grads(expected_cell, [t.clone().requires_grad_() for t in inputs], outputs_of)
    _assert_all_close(_grads(cell, [t.clone().requires_grad_() for t in inputs], outputs_of), expected)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_class5_lstmcell_with_zero_input_size_without_autograd(backend):
    """Class 5 without autograd: LSTMCell(0, 4) under no_grad returns torch's output on every
    backend (the reference step reshaped the (B, 0) input with -1, which is ambiguous)."""
    expected_cell, cell = _pair(nn.LSTMCell, 0, 4)
    cell.backend = backend
    x, h, c = _randn(2, 0), _randn(2, 4), _randn(2, 4)
    with torch.no_grad():
        _assert_all_close(cell(x, (h, c)), expected_cell(x, (h, c)))


STATE_DTYPE_REPRO = """
import torch, fastrnn

def run(module, x, h, c):
    try:
        with torch.no_grad():
            y, (h_n, c_n) = module(x, (h, c))
        return y, h_n, c_n
    except Exception as error:
        return type(error)

for weights, state in ((torch.float32, torch.float64), (torch.float64, torch.float32)):
    torch.manual_seed(0)
    expected_module = torch.nn.LSTM(3, 4, dtype=weights)
    module = fastrnn.LSTM(3, 4, dtype=weights)
    module.load_state_dict(expected_module.state_dict())
    x, h, c = torch.randn(1, 2, 3, dtype=weights), torch.randn(1, 2, 4, dtype=weights), torch.randn(1, 2, 4, dtype=state)
    expected, actual = run(expected_module, x, h, c), run(module, x, h, c)
    if isinstance(expected, type) or isinstance(actual, type):
        assert expected == actual, (weights, expected, actual)
    else:
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e)
print("same as torch")
"""


@pytest.mark.slow
def test_class6_state_of_another_dtype_behaves_as_torch():
    """Class 6, found by this fuzzer: an LSTM call whose c0 has another dtype than the input and
    weights raises where torch raises (float32 weights) and returns torch's result where torch
    returns (float64 weights); fastrnn ran its kernels on the state's memory as if it had the
    weights' dtype (garbage, or heap corruption: "free(): invalid next size"). In a child
    process, since it may abort."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", STATE_DTYPE_REPRO], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "same as torch" in done.stdout, (done.returncode, done.stderr[-400:])


def _write_between_forward_and_backward(module, x, hx):
    """Forward, an in-place write into every weight, then backward: torch's error type, or the
    gradients of x (if it needs one) and of each weight."""
    try:
        h, c = module(x, hx)
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.mul_(0.5)
        wanted = [x] if x.requires_grad else []
        grads = torch.autograd.grad((h * h).sum() + c.sum(), [*wanted, *module.parameters()], allow_unused=True)
        return [None if g is None else g.detach() for g in grads]
    except RuntimeError as error:
        return type(error)


@pytest.mark.parametrize("input_size", [3, 16], ids=["narrow input", "wide input"])
def test_class7_weight_write_before_backward_raises_where_torch_raises(input_size):
    """Class 7 (an independent fuzzer found it): weights written in place between forward and
    backward, with the input needing a gradient. torch's linear saved W_ih and raises; fastrnn's
    narrow-input projection saved a copy of W_ih^T and returned gradients of the old weights."""
    expected_cell, cell = _pair(nn.LSTMCell, input_size, 4)
    x = _randn(2, input_size).requires_grad_()
    hx = (_randn(2, 4).requires_grad_(), _randn(2, 4))
    expected = _write_between_forward_and_backward(expected_cell, x, hx)
    actual = _write_between_forward_and_backward(cell, x, hx)
    assert expected is RuntimeError and actual is RuntimeError


def test_class7_one_step_no_state_grad_takes_weight_write_as_torch():
    """Class 7, the other direction: a one-step call whose h0 needs no gradient (an unrolled
    LSTMCell's first step) reads W_hh in no first-order gradient, so torch does not save it and
    a write into the weights before backward is fine; fastrnn saved W_hh and raised."""
    expected_cell, cell = _pair(nn.LSTMCell, 3, 4)
    x = _randn(2, 3)  # no gradient into x either: torch's linear then saves no weight
    expected = _write_between_forward_and_backward(expected_cell, x, None)
    actual = _write_between_forward_and_backward(cell, x, None)
    assert not isinstance(expected, type) and not isinstance(actual, type), (expected, actual)
    _assert_all_close(actual, expected)
