"""fastrnn.rl.rollout_plan: rollout_step over a rollout's buffers with its checks and weights bound
once. Each step must equal rollout_step bit for bit (it is the same kernel call), take the
fused C++ call on the cpp backend, read rows written after the plan was made, refuse weights
changed since, and refuse bad buffers and steps by name before any work."""

import pytest
import torch

import fastrnn
from fastrnn import rl
from agent.core.cores import TorchLoopLSTM
from fastrnn import dispatch
from native_calls import count_native_calls

STEPS, INPUTS = 6, 7


def _buffers(batch, out_size, outputs, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(STEPS + 1, batch, INPUTS, dtype=dtype, generator=generator)
    weight = torch.randn(out_size, outputs, dtype=dtype, generator=generator)
    addends = torch.randn(STEPS, batch, outputs, dtype=dtype, generator=generator)
    resets = torch.rand(STEPS + 1, batch, generator=generator) < 0.3
    return inputs, weight, addends, resets


def _initial_state(lstm, batch, dtype):
    return (torch.randn(1, batch, lstm.proj_size or lstm.hidden_size, dtype=dtype),
            torch.randn(1, batch, lstm.hidden_size, dtype=dtype))


def _small_case(seed):
    """An LSTM(7, 8) on the cpp backend, 4 rows' buffers with 3 head outputs, and a state."""
    torch.manual_seed(seed)
    lstm = fastrnn.LSTM(INPUTS, 8)
    return (lstm, *_buffers(4, 8, 3, torch.float32), _initial_state(lstm, 4, torch.float32))


def _step_equals_rollout_step(lstm, plan, t, state, weight, num_actions, reset=False, x=None):
    """plan.step(t, state, reset) against rollout_step on row t (or on x): actions, head
    outputs and state bit for bit. Returns the plan's new state."""
    new_state = plan.step(t, state, reset)
    x = plan.inputs[t] if x is None else x
    actions, head_out, expected = rl.rollout_step(lstm, x, state, weight, plan.head_addends[t], num_actions,
                                                    plan.resets[t] if reset else None)
    assert torch.equal(plan.actions[t], actions) and torch.equal(plan.head_out[t], head_out)
    assert torch.equal(new_state[0], expected[0]) and torch.equal(new_state[1], expected[1])
    return new_state


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch, hidden, outputs, num_actions, proj", [
    (32, 48, 4, 3, 0),   # the agent's two-step shape: actions and the value column
    (1, 5, 2, 2, 0),     # one row; every output competes
    (13, 20, 11, 10, 0), # rows past a row tile; outputs past one vector
    (9, 16, 3, 2, 6),    # a projection: the readout takes the projected h
])
def test_each_plan_step_equals_rollout_step_bit_for_bit(monkeypatch, backend, dtype, batch, hidden, outputs,
                                                        num_actions, proj):
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(INPUTS, hidden, proj_size=proj, backend=backend).to(dtype)
    inputs, weight, addends, resets = _buffers(batch, proj or hidden, outputs, dtype)
    calls = count_native_calls(monkeypatch)
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, inputs, weight, addends, num_actions, resets)
        state = _initial_state(lstm, batch, dtype)
        for t in range(STEPS):  # with and without the resets row
            state = _step_equals_rollout_step(lstm, plan, t, state, weight, num_actions, reset=t % 2 == 0)
    # The cpp plan is the fused kernel, once per step (rollout_step's own calls come on top).
    assert calls["cell_heads"] == (2 * STEPS if backend == "cpp" else 0)


def test_plan_reads_rows_written_later_and_writes_only_its_row():
    """A plan reads rows written after it was made and writes only the steps row."""
    lstm, inputs, weight, addends, resets, state = _small_case(1)
    actions, head_out = torch.full((STEPS, 4), -1), torch.full((STEPS, 4, 3), float("nan"))
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, inputs, weight, addends, 2, resets, actions=actions, head_out=head_out)
        inputs[3].fill_(5.0)  # as a rollout writes the next input after the environment step
        _step_equals_rollout_step(lstm, plan, 3, state, weight, 2, x=torch.full((4, INPUTS), 5.0))
    assert plan.actions is actions and plan.head_out is head_out
    others = [0, 1, 2, 4, 5]
    assert (actions[others] == -1).all() and head_out[others].isnan().all()


def test_a_transposed_head_weight_is_taken_as_rollout_step_takes_it():
    # The agent's head is heads.weight[:K].t(): a view the fused step binds as a contiguous copy.
    lstm, inputs, _, addends, resets, state = _small_case(6)
    weight = torch.randn(3, 8).t()
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, inputs, weight, addends, 2, resets)
        _step_equals_rollout_step(lstm, plan, 1, state, weight, 2, reset=True)
        weight.mul_(2.0)  # a write through the view is seen: the bound copy is stale
        with pytest.raises(RuntimeError, match="modified since the plan was made"):
            plan.step(2, state)


def test_a_plan_refuses_weights_changed_since_it_was_made():
    lstm, inputs, weight, addends, resets, state = _small_case(2)
    optimizer = torch.optim.SGD(lstm.parameters(), lr=0.1)
    lstm(inputs)[0].sum().backward()
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, inputs, weight, addends, 2, resets)
        plan.step(0, state)
    optimizer.step()
    with torch.no_grad(), pytest.raises(RuntimeError, match="weights or the head weight were modified since"):
        plan.step(1, state)
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, inputs, weight, addends, 2, resets)
        plan.step(1, state)
        weight.add_(1.0)  # the head weight too
        with pytest.raises(RuntimeError, match="modified since the plan was made"):
            plan.step(2, state)


def test_fused_plan_refuses_a_moved_buffer_before_launching():
    """A fused plan refuses a buffer moved to other memory before launching."""
    lstm, inputs, weight, addends, resets, state = _small_case(5)
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, inputs, weight, addends, 2, resets)
        plan.step(0, state)
        inputs.set_(inputs.clone())  # same contents, other memory: the bound address is stale
        with pytest.raises(RuntimeError, match="rollout_plan: a buffer of the plan was moved to other memory"):
            plan.step(1, state)


def test_weights_too_large_to_pack_plan_the_composed_step():
    # Above dispatch.STEP_PACK_LIMIT_BYTES the step runs torch's lstm_cell: no fused call to bind.
    torch.manual_seed(3)
    lstm = fastrnn.LSTM(INPUTS, 260)
    assert (lstm.weight_hh_l0.numel() + lstm.weight_ih_l0.numel()) * 4 > dispatch.STEP_PACK_LIMIT_BYTES
    inputs, weight, addends, resets = _buffers(3, 260, 3, torch.float32)
    state = _initial_state(lstm, 3, torch.float32)
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, inputs, weight, addends, 3, resets)
        _step_equals_rollout_step(lstm, plan, 0, state, weight, 3, reset=True)


def test_the_agent_torch_cores_plan_equals_its_rollout_step():
    torch.manual_seed(4)
    lstm = TorchLoopLSTM(INPUTS, 8)
    inputs, weight, addends, resets = _buffers(5, 8, 3, torch.float32)
    state = _initial_state(lstm, 5, torch.float32)
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, inputs, weight, addends, 2, resets)
        for t in range(STEPS):
            state = _step_equals_rollout_step(lstm, plan, t, state, weight, 2, reset=True)


def _bad_plans():
    inputs, weight, addends, resets = _buffers(4, 6, 3, torch.float32)
    return [
        (dict(head_addends=addends[0]), "head_addends must be \\(steps, batch, outputs\\)"),
        (dict(inputs=inputs[:3]), "inputs must be \\(at least 6 steps, 4, 7\\), got \\(3, 4, 7\\)"),
        (dict(inputs=inputs[..., :5]), "inputs must be \\(at least 6 steps, 4, 7\\)"),
        (dict(head_weight=weight.t()), "head_weight must be \\(6, 3\\), got \\(3, 6\\)"),
        (dict(num_actions=4), "num_actions must be an int from 1 to 3, got 4"),
        (dict(resets=resets[:, :2]), "resets must be \\(at least 6 steps, 4\\)"),
        (dict(resets=resets.int()), "resets must be torch.bool on cpu"),
        (dict(actions=torch.zeros(6, 4, dtype=torch.int32)), "actions must be torch.int64 on cpu"),
        (dict(actions=torch.zeros(6, 3, dtype=torch.int64)), "actions must be \\(6, 4\\)"),
        (dict(head_out=torch.zeros(6, 4, 2)), "head_out must be \\(6, 4, 3\\)"),
        (dict(head_addends=addends.double()), "head_addends must be torch.float32 on cpu"),
        (dict(inputs=inputs.transpose(0, 1).contiguous().transpose(0, 1)), "inputs must be contiguous"),
    ], dict(inputs=inputs, head_weight=weight, head_addends=addends, num_actions=2, resets=resets)


@pytest.mark.parametrize("index", range(12))
def test_rollout_plan_names_the_buffer_that_is_wrong(index):
    cases, good = _bad_plans()
    change, message = cases[index]
    with torch.no_grad(), pytest.raises(ValueError, match=f"rollout_plan: {message}"):
        rl.rollout_plan(fastrnn.LSTM(INPUTS, 6), **{**good, **change})


def test_a_plan_step_names_what_is_wrong_before_any_work(monkeypatch):
    _, good = _bad_plans()
    calls = count_native_calls(monkeypatch)
    lstm = fastrnn.LSTM(INPUTS, 6)
    h, c = _initial_state(lstm, 4, torch.float32)
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, **good)
        no_resets = rl.rollout_plan(lstm, **{**good, "resets": None})
        for call, message in [
            (lambda: plan.step(6, (h, c)), "t must be an int from 0 to 5, got 6"),
            (lambda: plan.step(-1, (h, c)), "t must be an int from 0 to 5, got -1"),
            (lambda: plan.step(1.0, (h, c)), "t must be an int from 0 to 5, got 1.0"),
            (lambda: plan.step(0, (h[0], c)), "state\\[0\\] must be \\(1, 4, 6\\)"),
            (lambda: plan.step(0, (h, c[:, :2])), "state\\[1\\] must be \\(1, 4, 6\\)"),
            (lambda: plan.step(0, (h, c.double())), "state\\[1\\] is torch.float64 on cpu"),
            (lambda: no_resets.step(0, (h, c), reset=True), "reset=True needs the plan to have been made with resets"),
        ]:
            with pytest.raises(ValueError, match=f"rollout_plan: {message}"):
                call()
    assert calls["cell_heads"] == 0  # nothing above reached the kernel
    with pytest.raises(RuntimeError, match="rollout_plan computes no gradient: step it under torch.no_grad"):
        plan.step(0, (h, c))
    with torch.no_grad(), pytest.raises(ValueError, match="one-layer unidirectional LSTMs only"):
        rl.rollout_plan(fastrnn.LSTM(INPUTS, 6, num_layers=2), **good)
