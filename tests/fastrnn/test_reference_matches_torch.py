"""The reference backend (our oracle) reproduces torch.nn.LSTM / LSTMCell exactly in float64."""

import pytest
import torch

import fastrnn
from lstm_cases import TOLERANCES, make_inputs, random_cases
from lstm_compare import assert_same_run

CASES = random_cases(40, seed=1)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reference_lstm_matches_torch_outputs_and_all_gradients(case):
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(**case.module_kwargs()).double()
    ours = fastrnn.LSTM(**case.module_kwargs(), backend="reference").double()
    ours.load_state_dict(theirs.state_dict())
    x, hx = make_inputs(case, torch.float64, torch.Generator().manual_seed(1))
    assert_same_run(theirs, ours, x, hx, TOLERANCES[torch.float64])
    assert ours.last_backend == "reference"


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_reference_lstm_cell_matches_torch(batched, bias):
    torch.manual_seed(0)
    theirs = torch.nn.LSTMCell(6, 9, bias=bias).double()
    ours = fastrnn.LSTMCell(6, 9, bias=bias, backend="reference").double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    hx = (torch.randn(4, 9, dtype=torch.float64, requires_grad=True), torch.randn(4, 9, dtype=torch.float64, requires_grad=True))
    if not batched:
        x, hx = x[0].detach().requires_grad_(), tuple(t[0].detach().requires_grad_() for t in hx)
    h1, c1 = theirs(x, hx)
    h2, c2 = ours(x, hx)
    torch.testing.assert_close(h2, h1, **TOLERANCES[torch.float64])
    torch.testing.assert_close(c2, c1, **TOLERANCES[torch.float64])
    g1 = torch.autograd.grad((h1 * 1.3 + c1 * 0.7).sum(), [x, *hx, *theirs.parameters()])
    g2 = torch.autograd.grad((h2 * 1.3 + c2 * 0.7).sum(), [x, *hx, *ours.parameters()])
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, **TOLERANCES[torch.float64])
