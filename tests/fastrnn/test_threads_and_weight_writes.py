"""Every call uses the weights as they are now, whoever wrote them and from whichever thread.

nn.LSTM reads its parameters on every call and is safe to share between threads; the
no-grad step caches packed weights, so these tests pin down that the cache never serves
stale or half-built weights (each failed on the version-counter cache: writes through
`.data` bypass version counters, and unguarded first calls from several threads freed
packed weights still in use).
"""

import threading

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

import fastrnn
from fastrnn import _C

TOL = dict(atol=2e-6, rtol=2e-6)


def _pair(kind, backend, **kwargs):
    torch.manual_seed(0)
    if kind == "LSTM":
        ours, theirs = fastrnn.LSTM(5, 16, backend=backend, **kwargs), nn.LSTM(5, 16, **kwargs)
    else:
        ours, theirs = fastrnn.LSTMCell(5, 16, backend=backend), nn.LSTMCell(5, 16)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _step(module, kind, x, h, c):
    """The no-grad call an RL rollout or a serving thread makes."""
    with torch.no_grad():
        if kind == "LSTM":
            layers = module.num_layers
            return module(x.unsqueeze(0), (h.expand(layers, -1, -1).contiguous(),
                                           c.expand(layers, -1, -1).contiguous()))[0]
        return module(x, (h, c))[0]


def _soft_update(module, tau=0.5):
    """The DQN/SAC target-network update: writes through .data, no version-counter bump."""
    torch.manual_seed(7)
    for p in module.parameters():
        p.data.copy_(tau * torch.randn_like(p) + (1 - tau) * p.data)


def _assign_data(module):
    torch.manual_seed(7)
    for p in module.parameters():
        p.data = torch.randn_like(p)


def _load_state_dict(module):
    torch.manual_seed(7)
    module.load_state_dict({k: torch.randn_like(v) for k, v in module.state_dict().items()})


def _optimizer_step(module):
    torch.manual_seed(7)
    for p in module.parameters():
        p.grad = torch.randn_like(p)
    torch.optim.SGD(module.parameters(), lr=0.5).step()


def _vector_to_parameters(module):
    vector = parameters_to_vector(module.parameters())
    torch.manual_seed(7)
    vector_to_parameters(torch.randn_like(vector), module.parameters())


def _in_place_no_grad(module):
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(-1.5)


WRITES = {
    "p.data.copy_": _soft_update,
    "p.data = ...": _assign_data,
    "load_state_dict": _load_state_dict,
    "optimizer step": _optimizer_step,
    "vector_to_parameters": _vector_to_parameters,
    "in-place under no_grad": _in_place_no_grad,
}


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell", "LSTM-2layers"])
@pytest.mark.parametrize("write", WRITES)
def test_the_step_after_a_weight_write_uses_the_new_weights(write, kind, backend):
    kwargs = dict(num_layers=2) if kind == "LSTM-2layers" else {}
    kind = kind.split("-")[0]
    ours, theirs = _pair(kind, backend, **kwargs)
    x, h, c = torch.randn(3, 5), torch.randn(3, 16), torch.randn(3, 16)
    torch.testing.assert_close(_step(ours, kind, x, h, c), _step(theirs, kind, x, h, c), **TOL)  # caches filled
    WRITES[write](ours)
    WRITES[write](theirs)
    torch.testing.assert_close(_step(ours, kind, x, h, c), _step(theirs, kind, x, h, c), **TOL)


def test_switching_instruction_set_after_a_step_repacks():
    """Packed layouts depend on the vector width: a set_isa between steps must not reuse them."""
    ours, theirs = _pair("LSTM", "cpp")
    x, h, c = torch.randn(3, 5), torch.randn(3, 16), torch.randn(3, 16)
    want = _step(theirs, "LSTM", x, h, c)
    previous = _C.isa()
    try:
        for isa in _C.available_isas() + [previous]:
            _C.set_isa(isa)
            torch.testing.assert_close(_step(ours, "LSTM", x, h, c), want, **TOL, msg=isa)
    finally:
        _C.set_isa(previous)


CALLS = {
    "LSTM step": lambda m, t, x: (m(x[None], (x[None, :, :1].expand(1, -1, 16).contiguous(),) * 2)[0],
                                  t(x[None], (x[None, :, :1].expand(1, -1, 16).contiguous(),) * 2)[0]),
    "LSTM sequence": lambda m, t, x: (m(x.expand(6, -1, -1))[0], t(x.expand(6, -1, -1))[0]),
}


@pytest.mark.parametrize("call", ["LSTM step", "LSTM sequence", "LSTMCell"])
def test_first_calls_from_many_threads_agree_with_torch(call):
    """A server's thread pool sharing one fresh module: every output of every thread checked."""
    errors = []
    for trial in range(5):
        kind = "LSTMCell" if call == "LSTMCell" else "LSTM"
        ours, theirs = _pair(kind, "cpp")
        inputs = [torch.randn(4, 5) for _ in range(32)]
        start = threading.Barrier(8)

        def work(index):
            start.wait()  # all threads hit the empty cache together
            with torch.no_grad():
                for x in inputs[index::8]:
                    if call == "LSTMCell":
                        got, want = ours(x)[0], theirs(x)[0]
                    else:
                        got, want = CALLS[call](ours, theirs, x)
                    errors.append((got - want).abs().max().item())

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(errors) == 5 * 32
    assert max(errors) < 1e-5


def test_trusting_version_counters_skips_the_byte_check_and_only_that():
    """The opt-in for code that never writes through .data: version-bumping writes are still
    seen; a .data write is not (as documented), and is seen again outside the block."""
    ours, theirs = _pair("LSTMCell", "cpp")
    x, h, c = torch.randn(3, 5), torch.randn(3, 16), torch.randn(3, 16)
    with fastrnn.trust_version_counters():
        _step(ours, "LSTMCell", x, h, c)  # packs
        _optimizer_step(ours)
        _optimizer_step(theirs)
        torch.testing.assert_close(_step(ours, "LSTMCell", x, h, c), _step(theirs, "LSTMCell", x, h, c), **TOL)
        stale = _step(ours, "LSTMCell", x, h, c)
        _soft_update(ours)
        _soft_update(theirs)
        assert torch.equal(_step(ours, "LSTMCell", x, h, c), stale)  # trusted, so not re-read
    torch.testing.assert_close(_step(ours, "LSTMCell", x, h, c), _step(theirs, "LSTMCell", x, h, c), **TOL)
