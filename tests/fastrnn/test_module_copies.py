"""Modules can be pickled, saved whole and deep-copied at any time, on every backend.

RL code deep-copies networks for target networks; people torch.save whole models. A module
that has run caches its backend choice (kernels and registered ops, which do not pickle):
these tests fail if that cache travels with the module.
"""

import copy
import io
import pickle

import pytest
import torch

import fastrnn

BACKENDS = ["auto", "cpp", "reference", "triton"]  # triton runs under its interpreter here


def _saved_and_loaded(module):
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


COPIERS = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
    "torch.save": _saved_and_loaded,
}


@pytest.mark.parametrize("copier", COPIERS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["LSTM", "LSTMCell"])
def test_copy_after_forward_runs_and_matches(kind, backend, copier):
    torch.manual_seed(0)
    if kind == "LSTM":
        module, x = fastrnn.LSTM(4, 6, num_layers=2, backend=backend), torch.randn(5, 3, 4)
    else:
        module, x = fastrnn.LSTMCell(4, 6, backend=backend), torch.randn(3, 4)
    with torch.no_grad():
        module(x)  # the no-grad path fills the caches
    want = module(x)
    copied = COPIERS[copier](module)
    got = copied(x)
    assert copied.backend == backend and copied.last_backend == module.last_backend
    torch.testing.assert_close(got[0], want[0], atol=0, rtol=0)
    got[0].sum().backward()  # the copy trains: its parameters are its own leaves
    assert all(p.grad is not None for p in copied.parameters())
    assert all(p.grad is None for p in module.parameters())
