"""fastrnn's modules are drop-in: same class hierarchy, parameters, state_dict, init and
repr as torch's; convert() swaps them in place; backends are chosen visibly."""

import pytest
import torch
import torch.nn as nn

import fastrnn
from fastrnn import _C


def test_cpp_extension_is_built_and_auto_picks_it_on_cpu():
    # Fails when setup.py did not build fastrnn._C: CI must not pass on the reference path.
    assert _C.isa() in _C.available_isas()
    assert fastrnn.available_backends()["cpp"] is None
    for dtype in (torch.float32, torch.float64):
        assert fastrnn.resolve_backend("auto", torch.device("cpu"), dtype).name == "cpp"
    lstm = fastrnn.LSTM(3, 4)
    lstm(torch.randn(2, 1, 3))
    assert lstm.last_backend == "cpp"


def test_auto_takes_torchs_kernels_or_the_reference_for_dtypes_the_kernels_do_not_take():
    lstm = fastrnn.LSTM(3, 4).to(torch.bfloat16)
    x = torch.randn(2, 1, 3, dtype=torch.bfloat16)
    lstm(x)
    assert lstm.last_backend == "onednn"
    lstm(x, resets=torch.zeros(2, 1, dtype=torch.bool))  # torch's kernels have no resets
    assert lstm.last_backend == "reference"


@pytest.mark.parametrize("kwargs", [dict(), dict(num_layers=2, bidirectional=True, proj_size=2, bias=False, batch_first=True, dropout=0.5)])
def test_lstm_state_dict_moves_both_ways_and_init_matches_torch(kwargs):
    torch.manual_seed(5)
    theirs = nn.LSTM(4, 6, **kwargs)
    torch.manual_seed(5)
    ours = fastrnn.LSTM(4, 6, **kwargs)
    assert isinstance(ours, nn.LSTM)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), f"{name} initialised differently from torch"
    other = nn.LSTM(4, 6, **kwargs)
    other.load_state_dict(ours.state_dict())
    ours.load_state_dict(nn.LSTM(4, 6, **kwargs).state_dict())


def test_lstm_cell_is_drop_in():
    torch.manual_seed(2)
    theirs = nn.LSTMCell(3, 5, bias=False)
    torch.manual_seed(2)
    ours = fastrnn.LSTMCell(3, 5, bias=False)
    assert isinstance(ours, nn.LSTMCell) and repr(ours) == repr(theirs)
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)


def test_repr_names_a_backend_that_is_not_auto():
    assert "backend='reference'" in repr(fastrnn.LSTM(2, 3, backend="reference"))


def test_convert_swaps_in_place_keeping_weights_and_optimizer_refs():
    """Convert swaps lstms in place keeping weights and optimizer references."""
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.LSTM(3, 4, num_layers=2)
            self.cell = nn.LSTMCell(4, 4)
            self.head = nn.Linear(4, 1)

    model = Model().double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    before = model.encoder(x)[0]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert fastrnn.convert(model, backend="cpp") is model
    assert type(model.encoder) is fastrnn.LSTM and type(model.cell) is fastrnn.LSTMCell
    assert type(model.head) is nn.Linear
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k])
    torch.testing.assert_close(model.encoder(x)[0], before, atol=1e-12, rtol=0)
    assert model.encoder.last_backend == "cpp"
    assert optimizer.param_groups[0]["params"][0] is model.encoder.weight_ih_l0


def test_convert_converts_a_bare_lstm():
    lstm = nn.LSTM(2, 2)
    assert type(fastrnn.convert(lstm)) is fastrnn.LSTM


def test_named_backend_that_cannot_take_the_input_says_why_before_any_work():
    lstm = fastrnn.LSTM(3, 4, backend="cpp").half()
    with pytest.raises(ValueError, match="backend='cpp' cannot run torch.float16 tensors on cpu: the cpp backend takes float32 and float64 only"):
        lstm(torch.randn(2, 1, 3, dtype=torch.float16))


@pytest.mark.parametrize("bad", ["fast", 3, None])
def test_unknown_backend_name_is_rejected_at_construction(bad):
    with pytest.raises(ValueError, match="backend must be one of"):
        fastrnn.LSTM(3, 4, backend=bad)
    with pytest.raises(ValueError, match="backend must be one of"):
        fastrnn.convert(nn.LSTM(3, 4), backend=bad)


def test_dropout_between_layers_only_in_training_and_like_torch_in_eval():
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 8, num_layers=3, dropout=0.5).double()
    ours = fastrnn.LSTM(3, 8, num_layers=3, dropout=0.5).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], atol=1e-12, rtol=0)
    ours.train()
    first, second = ours(x)[0], ours(x)[0]
    assert not torch.allclose(first, second), "training-mode dropout must be random"
    # p -> 1 drops every unit between layers: the last layer then sees only zero input.
    ours.dropout = 1.0
    y_all_dropped = ours(x)[0]
    no_input = fastrnn.LSTM(8, 8).double()
    no_input.load_state_dict({k[:-1] + "0": v for k, v in ours.state_dict().items() if k.endswith("l2")})
    torch.testing.assert_close(y_all_dropped, no_input(torch.zeros(6, 4, 8, dtype=torch.float64))[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_training_mode_dropout_draws_torchs_masks_for_the_same_seed(backend, packed, bidirectional):
    """A seeded training step with dropout between layers gives torch's outputs and gradients
    and leaves the generator where torch leaves it. For packed input torch drops over the
    packed data only (not the padding), so fastrnn must too."""
    torch.manual_seed(0)
    theirs = nn.LSTM(3, 8, num_layers=3, dropout=0.5, bidirectional=bidirectional).double()
    ours = fastrnn.LSTM(3, 8, num_layers=3, dropout=0.5, bidirectional=bidirectional, backend=backend).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    if packed:  # unsorted lengths: the packed order differs from the batch order
        x = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([3, 6, 1, 4]), enforce_sorted=False)
    results = []
    for module in (theirs, ours):
        torch.manual_seed(7)
        y, (h, c) = module(x)
        y = y.data if packed else y
        grads = torch.autograd.grad((y * y).sum() + h.sum(), list(module.parameters()))
        results.append((y, h, c, *grads, torch.rand(3, dtype=torch.float64)))  # the generator's next draws
    for want, got in zip(*results):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_results_do_not_depend_on_the_thread_count():
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(16, 64)
    x = torch.randn(20, 48, 16, requires_grad=True)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            y, _ = lstm(x)
            (grad,) = torch.autograd.grad(y.square().sum(), x)
            results.append((y.detach(), grad))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_step_cache_sees_optimizer_updates_and_sequences_see_data_writes():
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(3, 5)
    reference = fastrnn.LSTM(3, 5, backend="reference")
    x = torch.randn(1, 2, 3)
    with torch.no_grad():
        lstm(x)  # packs and caches the step weights
    optimizer = torch.optim.SGD(lstm.parameters(), lr=1.0)
    lstm(torch.randn(4, 2, 3))[0].sum().backward()
    optimizer.step()
    reference.load_state_dict(lstm.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(lstm(x)[0], reference(x)[0])
    # Writes through .data bypass version counters; sequence calls never cache, so they see it.
    lstm.weight_hh_l0.data.mul_(0.5)
    reference.load_state_dict(lstm.state_dict())
    x_seq = torch.randn(3, 2, 3)
    torch.testing.assert_close(lstm(x_seq)[0], reference(x_seq)[0])
    fastrnn.clear_weight_cache()
    with torch.no_grad():
        torch.testing.assert_close(lstm(x)[0], reference(x)[0])
