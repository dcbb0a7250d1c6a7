"""fastrnn.rl.write_next_input: the meta-RL input row in one native call, bit for bit the row the
torch ops build ([obs, one-hot action, signals], zeros after obs where an episode starts), and
bad arguments refused by name before any write."""

import pytest
import torch

from fastrnn import rl


def torch_row(obs, actions, signals, num_actions, reset):
    """The definition, in torch ops (what agent/core/model.py's make_input and masked fill do)."""
    codes = torch.cat([torch.eye(num_actions, dtype=obs.dtype), torch.zeros(1, num_actions, dtype=obs.dtype)])
    row = torch.cat([obs, codes.index_select(0, actions), *(s.unsqueeze(1) for s in signals)], dim=1)
    if reset is not None:
        row[:, obs.shape[1]:].masked_fill_(reset.unsqueeze(1), 0.0)
    return row


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("obs_size, num_actions, signal_count", [(3, 2, 1), (0, 2, 1), (5, 3, 2), (2, 4, 0)])
@pytest.mark.parametrize("with_reset", [False, True])
def test_the_row_is_the_torch_row_bit_for_bit(dtype, obs_size, num_actions, signal_count, with_reset):
    """Random observations, actions, signals (negative zeros, NaN and infinities among them) and
    resets: the native row equals the torch ops' row in every bit (compared as integers)."""
    g = torch.Generator().manual_seed(obs_size * 10 + num_actions + signal_count)
    batch = 37
    obs = torch.randn(batch, obs_size, generator=g, dtype=dtype)
    signals = tuple(torch.randn(batch, generator=g, dtype=dtype) for _ in range(signal_count))
    if signals:
        signals[0][:4] = torch.tensor([-0.0, float("nan"), float("inf"), -float("inf")], dtype=dtype)
    actions = torch.randint(0, num_actions, (batch,), generator=g)
    reset = torch.rand(batch, generator=g) < 0.3 if with_reset else None
    out = torch.full((batch, obs_size + num_actions + signal_count), 7.0, dtype=dtype)
    got = rl.write_next_input(out, obs, actions, signals, num_actions, reset)
    want = torch_row(obs, actions, signals, num_actions, reset)
    assert got is out
    bits = torch.int32 if dtype == torch.float32 else torch.int64
    assert torch.equal(got.view(bits), want.view(bits))


def test_writes_a_row_of_a_larger_buffer_and_nothing_else():
    """out may be a row of the rollout's (T + 1, B, width) buffer: only that row changes."""
    buffer = torch.full((3, 4, 6), 5.0)
    obs, actions, reward = torch.ones(4, 3), torch.tensor([0, 1, 1, 0]), torch.arange(4.0)
    rl.write_next_input(buffer[1], obs, actions, (reward,), 2)
    assert torch.equal(buffer[1], torch_row(obs, actions, (reward,), 2, None))
    assert (buffer[0] == 5).all() and (buffer[2] == 5).all()


def test_tensor_subclasses_and_named_tuples_are_taken_like_their_bases():
    """A tensor subclass (a Parameter, a user's subclass) and a namedtuple of signals are accepted
    and written as plain tensors and tuples would be."""
    class Sub(torch.Tensor):
        pass

    Signals = __import__("collections").namedtuple("Signals", "reward")
    obs, actions, reward = torch.ones(3, 2), torch.tensor([1, 0, 1]), torch.tensor([0.5, -1.0, 2.0])
    out = torch.zeros(3, 5).as_subclass(Sub)
    rl.write_next_input(out, obs.as_subclass(Sub), actions, Signals(reward), 2)
    assert torch.equal(out.as_subclass(torch.Tensor), torch_row(obs, actions, (reward,), 2, None))


def test_an_action_out_of_range_is_refused_where_it_would_be_read():
    """An action outside [0, A) raises naming it and its row; in a reset row it is not read."""
    out = torch.zeros(2, 4)
    with pytest.raises(IndexError, match="actions must be from 0 to 1, got 2 at row 1"):
        rl.write_next_input(out, torch.zeros(2, 1), torch.tensor([0, 2]), (torch.zeros(2),), 2)
    rl.write_next_input(out, torch.zeros(2, 1), torch.tensor([0, 2]), (torch.zeros(2),), 2,
                        torch.tensor([False, True]))
    assert torch.equal(out, torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))


@pytest.mark.parametrize("change, message", [
    (dict(out=torch.zeros(4, 5)), r"out must be \(B, O \+ A \+ S\)"),
    (dict(out=torch.zeros(4, 12)[:, ::2]), "out must be a contiguous CPU tensor"),
    (dict(out=torch.zeros(4, 6, dtype=torch.int64)), "out must be a contiguous CPU tensor of"),
    (dict(obs=torch.zeros(4, 3, dtype=torch.float64)), "obs must be a contiguous CPU tensor of torch.float32"),
    (dict(obs=torch.zeros(3, 4).t()), "obs must be a contiguous CPU tensor"),
    (dict(actions=torch.zeros(4, dtype=torch.int32)), "actions must be a contiguous CPU"),
    (dict(actions=torch.zeros(5, dtype=torch.int64)), r"actions must be a contiguous CPU \(4,\) tensor"),
    (dict(signals=(torch.zeros(4, dtype=torch.float64),)), r"signals\[0\] must be"),
    (dict(signals=(torch.zeros(4),) * 3), "at most two"),
    (dict(reset=torch.zeros(4)), "reset must be a contiguous CPU"),
    (dict(num_actions=0), "num_actions must be an int >= 1"),
])
def test_bad_arguments_are_refused_by_name_before_any_write(change, message):
    args = dict(out=torch.full((4, 6), 9.0), obs=torch.zeros(4, 3), actions=torch.zeros(4, dtype=torch.int64),
                signals=(torch.zeros(4),), num_actions=2, reset=None)
    args.update(change)
    before = args["out"].clone()
    with pytest.raises(ValueError, match=message):
        rl.write_next_input(**args)
    assert torch.equal(args["out"], before)
