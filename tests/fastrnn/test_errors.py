"""Bad input raises the same kind of error as torch's modules, naming the argument, before
any work; our own arguments (backend, resets) get errors of the same standard."""

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn


def _same_error(theirs, ours, *args, our_message=None, **kwargs):
    with pytest.raises(Exception) as expected:
        theirs(*args, **kwargs)
    with pytest.raises(type(expected.value)) as actual:
        ours(*args, **kwargs)
    assert str(actual.value) == (our_message or str(expected.value))


def _pair(cls_theirs, cls_ours, *args, **kwargs):
    torch.manual_seed(0)
    theirs = cls_theirs(*args, **kwargs)
    ours = cls_ours(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


LSTM_BAD_CALLS = {
    "4-D input": lambda: (torch.randn(2, 3, 4, 5),),
    "wrong input_size": lambda: (torch.randn(5, 3, 7),),
    "wrong dtype": lambda: (torch.randn(5, 3, 4, dtype=torch.float64),),
    "hx batch mismatch": lambda: (torch.randn(5, 3, 4), (torch.zeros(2, 2, 6), torch.zeros(2, 2, 6))),
    "hx hidden mismatch": lambda: (torch.randn(5, 3, 4), (torch.zeros(2, 3, 5), torch.zeros(2, 3, 6))),
    "cx hidden mismatch": lambda: (torch.randn(5, 3, 4), (torch.zeros(2, 3, 6), torch.zeros(2, 3, 5))),
    "hx layers mismatch": lambda: (torch.randn(5, 3, 4), (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))),
    "2-D hx for batched input": lambda: (torch.randn(5, 3, 4), (torch.zeros(3, 6), torch.zeros(3, 6))),
    "3-D hx for unbatched input": lambda: (torch.randn(5, 4), (torch.zeros(2, 1, 6), torch.zeros(2, 1, 6))),
}


def test_packed_input_with_hx_of_wrong_batch_names_hidden():
    # torch fails here inside a broadcast ("size of tensor a (4) must match ..."); we raise the
    # same error type with the message torch gives for unpacked input.
    theirs, ours = _pair(nn.LSTM, fastrnn.LSTM, 4, 6, num_layers=2)
    packed = pack_padded_sequence(torch.randn(5, 3, 4), torch.tensor([5, 3, 2]))
    hx = (torch.zeros(2, 4, 6), torch.zeros(2, 4, 6))
    _same_error(theirs, ours, packed, hx, our_message="Expected hidden[0] size (2, 3, 6), got [2, 4, 6]")


@pytest.mark.parametrize("name", list(LSTM_BAD_CALLS))
def test_lstm_rejects_bad_input_like_torch(name):
    theirs, ours = _pair(nn.LSTM, fastrnn.LSTM, 4, 6, num_layers=2)
    _same_error(theirs, ours, *LSTM_BAD_CALLS[name]())


def _cell_bad_calls(hidden: int) -> dict:
    return {
        "3-D input": lambda: (torch.randn(2, 3, 4),),
        "3-D hx": lambda: (torch.randn(3, 4), (torch.zeros(1, 3, hidden), torch.zeros(3, hidden))),
        "wrong input_size": lambda: (torch.randn(3, 5),),
        "hx batch mismatch": lambda: (torch.randn(3, 4), (torch.zeros(2, hidden), torch.zeros(2, hidden))),
        "hx hidden mismatch": lambda: (torch.randn(3, 4), (torch.zeros(3, hidden - 1), torch.zeros(3, hidden))),
        "cx hidden mismatch": lambda: (torch.randn(3, 4), (torch.zeros(3, hidden), torch.zeros(3, hidden + 1))),
    }


@pytest.mark.parametrize("name", list(_cell_bad_calls(6)))
def test_lstm_cell_rejects_bad_input_like_torch(name):
    theirs, ours = _pair(nn.LSTMCell, fastrnn.LSTMCell, 4, 6)
    _same_error(theirs, ours, *_cell_bad_calls(6)[name]())


@pytest.mark.parametrize("name", [*_cell_bad_calls(6), "wrong dtype"])
def test_lstm_cell_steps_on_atens_cell_reject_bad_input_like_torch(name):
    """A no-grad step whose weights exceed STEP_PACK_LIMIT_BYTES runs ATen's lstm_cell, which
    makes its own checks: the errors are still torch's, before any work."""
    hidden = 320  # 4 * 320 * (4 + 320) floats: over 1 MiB
    assert 4 * hidden * (4 + hidden) * 4 > fastrnn.dispatch.STEP_PACK_LIMIT_BYTES
    theirs, ours = _pair(nn.LSTMCell, fastrnn.LSTMCell, 4, hidden)
    with torch.no_grad():
        ours(torch.randn(3, 4))
        assert ours.last_backend == "lstm_cell"
        bad_calls = {**_cell_bad_calls(hidden), "wrong dtype": lambda: (torch.randn(3, 4, dtype=torch.float64),)}
        _same_error(theirs, ours, *bad_calls[name]())


def test_lstm_cell_names_a_dtype_mismatch():
    cell = fastrnn.LSTMCell(4, 6)
    with pytest.raises(RuntimeError, match="input must have dtype torch.float32 like the weights, got torch.float64"):
        cell(torch.randn(3, 4, dtype=torch.float64))


@pytest.mark.parametrize(
    "resets, error, message",
    [
        (torch.zeros(5, 3, dtype=torch.uint8), TypeError, "resets: expected a bool tensor, got Tensor of dtype torch.uint8"),
        (torch.zeros(5, 2, dtype=torch.bool), ValueError, r"resets: expected shape \(T, B\) = \(5, 3\) matching the input, got \(5, 2\)"),
        ([True] * 5, TypeError, "resets: expected a bool tensor, got list"),
    ],
)
def test_bad_resets_are_named(resets, error, message):
    lstm = fastrnn.LSTM(4, 6)
    with pytest.raises(error, match=message):
        lstm(torch.randn(5, 3, 4), resets=resets)


def test_resets_are_refused_where_undefined():
    with pytest.raises(ValueError, match="resets: only unidirectional LSTMs take resets"):
        fastrnn.LSTM(4, 6, bidirectional=True)(torch.randn(5, 3, 4), resets=torch.zeros(5, 3, dtype=torch.bool))
    packed = pack_padded_sequence(torch.randn(5, 3, 4), torch.tensor([5, 3, 2]))
    with pytest.raises(ValueError, match="resets: not supported with PackedSequence input"):
        fastrnn.LSTM(4, 6)(packed, resets=torch.zeros(5, 3, dtype=torch.bool))


@pytest.mark.parametrize("grad", [True, False], ids=["sequence-route", "step-route"])
def test_errors_come_before_any_work(monkeypatch, grad):
    """A bad call reaches neither route (the sequence route, nor the no-grad step route that a
    one-step call with a state takes) nor any backend."""
    lstm = fastrnn.LSTM(4, 6)
    calls = []
    monkeypatch.setattr(fastrnn.modules, "run_layers", lambda *a, **k: calls.append("sequence"))
    monkeypatch.setattr(fastrnn.LSTM, "_step", lambda *a, **k: calls.append("step"))
    monkeypatch.setattr(fastrnn.dispatch, "route_facts", lambda *a, **k: calls.append("dispatch"))
    state = (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))
    with torch.set_grad_enabled(grad):
        with pytest.raises(RuntimeError):
            lstm(torch.randn(1, 3, 7), state)  # wrong input size
        with pytest.raises(RuntimeError):
            lstm(torch.randn(1, 3, 4), (torch.zeros(1, 2, 6), torch.zeros(1, 2, 6)))  # wrong state batch
        with pytest.raises(ValueError, match="input dtype"):
            lstm(torch.randn(1, 3, 4, dtype=torch.float64), state)  # wrong dtype
        with pytest.raises(ValueError):
            lstm(torch.randn(1, 3, 4), state, resets=torch.zeros(1, 2, dtype=torch.bool))
        with pytest.raises(TypeError):
            lstm(torch.randn(1, 3, 4), state, resets=torch.zeros(1, 3))
    assert calls == []


EMPTY_SEQUENCES = {
    "T=0": (dict(), (0, 3, 4)),
    "T=0 batch_first": (dict(batch_first=True), (3, 0, 4)),
    "T=0 unbatched": (dict(), (0, 4)),
    "T=0 unbatched batch_first": (dict(batch_first=True), (0, 4)),
    "T=0 with hx": (dict(), (0, 3, 4)),
}


@pytest.mark.parametrize("backend", ["auto", "cpp", "reference", "triton"])
@pytest.mark.parametrize("name", list(EMPTY_SEQUENCES))
def test_empty_sequences_are_refused_like_torch(name, backend):
    kwargs, shape = EMPTY_SEQUENCES[name]
    theirs, ours = _pair(nn.LSTM, fastrnn.LSTM, 4, 6, **kwargs)
    ours.backend = backend
    args = (torch.ones(*shape),)
    if "hx" in name:
        args += ((torch.zeros(1, 3, 6), torch.zeros(1, 3, 6)),)
    _same_error(theirs, ours, *args)
    with torch.no_grad():  # the no-grad paths check it too
        _same_error(theirs, ours, *args)


def test_an_empty_batch_is_not_an_empty_sequence():
    theirs, ours = _pair(nn.LSTM, fastrnn.LSTM, 4, 6)
    y, (h, c) = ours(torch.ones(3, 0, 4))
    y_ref, (h_ref, c_ref) = theirs(torch.ones(3, 0, 4))
    assert y.shape == y_ref.shape and h.shape == h_ref.shape and c.shape == c_ref.shape
