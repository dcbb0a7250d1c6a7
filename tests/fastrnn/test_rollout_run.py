"""RolloutPlan.run: a whole meta-RL rollout, each step followed by the environment, in one call
(one native loop on the fused step). It must give the bits of the loop it replaces (plan.step,
the environment, write_next_input, the resets row) on every backend, keep what backward needs,
check what the environment returns before the native loop reads it, and refuse a buffer the
environment moved, weights it wrote, and bad arguments by name."""

import pytest
import torch

import fastrnn
from fastrnn import rl
from native_calls import count_native_calls

STEPS, BATCH, OBS, ACTIONS, HIDDEN = 7, 5, 3, 2, 16


class ToyEnv:
    """Random observations, signals and episode ends from its own generator: two envs made
    with one seed return the same results for the same calls. Steps where t % 3 == 0 end no
    episode (done None); others end some rows."""

    def __init__(self, num_signals, dtype, seed=5):
        self.generator = torch.Generator().manual_seed(seed)
        self.num_signals, self.dtype = num_signals, dtype
        self.actions_seen = []

    def __call__(self, t, action):
        self.actions_seen.append(action)
        obs = torch.rand(BATCH, OBS, generator=self.generator, dtype=self.dtype)
        signals = tuple(torch.rand(BATCH, generator=self.generator, dtype=self.dtype)
                        for _ in range(self.num_signals))
        done = torch.rand(BATCH, generator=self.generator) < 0.4
        return obs, signals, None if t % 3 == 0 else done


def _plan(backend, dtype, num_signals, save_for_backward, seed=0):
    torch.manual_seed(seed)
    lstm = fastrnn.LSTM(OBS + ACTIONS + num_signals, HIDDEN, backend=backend).to(dtype)
    generator = torch.Generator().manual_seed(seed + 1)
    inputs = torch.zeros(STEPS + 1, BATCH, OBS + ACTIONS + num_signals, dtype=dtype)
    inputs[0].normal_(generator=generator)
    resets = torch.zeros(STEPS + 1, BATCH, dtype=torch.bool)
    resets[0, 1] = True
    head_weight = torch.randn(HIDDEN, ACTIONS + 1, dtype=dtype, generator=generator)
    addends = torch.randn(STEPS, BATCH, ACTIONS + 1, dtype=dtype, generator=generator)
    state = (torch.randn(1, BATCH, HIDDEN, dtype=dtype, generator=generator),
             torch.randn(1, BATCH, HIDDEN, dtype=dtype, generator=generator))
    plan = rl.rollout_plan(lstm, inputs, head_weight, addends, ACTIONS, resets, save_for_backward=save_for_backward)
    return plan, state


def _loop(plan, state, env, reset, rewards):
    """What run() replaces: step, environment, next input row and resets row, from Python."""
    for t in range(STEPS):
        state = plan.step(t, state, reset)
        obs, signals, done = env(t, plan.actions[t])
        rl.write_next_input(plan.inputs[t + 1], obs, plan.actions[t], signals, ACTIONS, done)
        if signals:
            rewards[t].copy_(signals[0])
        reset = done is not None and bool(done.any())
        plan.resets[t + 1].copy_(done) if reset else plan.resets[t + 1].zero_()
    return state, reset


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_signals", [0, 1, 2])
@pytest.mark.parametrize("save_for_backward", [False, True])
def test_run_gives_the_bits_of_the_step_loop_it_replaces(monkeypatch, backend, dtype, num_signals,
                                                         save_for_backward):
    calls = count_native_calls(monkeypatch)
    with torch.no_grad():
        plan, state = _plan(backend, dtype, num_signals, save_for_backward)
        rewards = torch.full((STEPS, BATCH), float("nan"), dtype=dtype) if num_signals else None
        env = ToyEnv(num_signals, dtype)
        final, last_reset = plan.run(state, env, OBS, num_signals, reset=True, rewards_out=rewards)
        expected_plan, expected_state = _plan(backend, dtype, num_signals, save_for_backward)
        expected_rewards = torch.full((STEPS, BATCH), float("nan"), dtype=dtype)
        expected, expected_reset = _loop(expected_plan, expected_state, ToyEnv(num_signals, dtype), True,
                                         expected_rewards)
    for name in ("inputs", "resets", "actions", "head_out"):
        assert torch.equal(getattr(plan, name), getattr(expected_plan, name)), name
    assert torch.equal(final[0], expected[0]) and torch.equal(final[1], expected[1])
    assert last_reset == expected_reset
    if num_signals:
        assert torch.equal(rewards, expected_rewards)
    # The environment got each step's row of actions (rows a task may keep: never rewritten).
    assert all(seen.data_ptr() == plan.actions[t].data_ptr() for t, seen in enumerate(env.actions_seen))
    if save_for_backward and plan.saves_for_backward:
        grad_hidden = torch.randn(STEPS, BATCH, HIDDEN, dtype=dtype)
        for got, want in zip(plan.backward(grad_hidden), expected_plan.backward(grad_hidden)):
            assert torch.equal(got, want)
    # One native loop on the fused step, T Python steps elsewhere (the expected loop's on top).
    assert calls["run"] == (1 if backend == "cpp" else 0)
    assert calls["cell_heads"] == (STEPS if backend == "cpp" else 0)


def test_a_run_that_raised_leaves_no_backward():
    env = ToyEnv(1, torch.float32)

    def failing(t, action):
        if t == 3:
            raise KeyError("the environment failed")
        return env(t, action)

    with torch.no_grad():
        plan, state = _plan("cpp", torch.float32, 1, save_for_backward=True)
        with pytest.raises(KeyError, match="the environment failed"):
            plan.run(state, failing, OBS, 1)
    with pytest.raises(RuntimeError, match="backward needs steps 0 to 6 taken once each"):
        plan.backward(torch.zeros(STEPS, BATCH, HIDDEN))


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("bad, message", [
    (lambda obs, signals, done: (obs.double(), signals, done), r"obs must be a contiguous CPU tensor of torch.float32"),
    (lambda obs, signals, done: (obs[:, :2].contiguous(), signals, done), r"out must be \(B, O \+ A \+ S\)"),
    (lambda obs, signals, done: (obs, signals[0][:3], done), r"must be \(obs, a tuple of 1 signals, done or None\)"),
    (lambda obs, signals, done: (obs, (signals[0][:3],), done), r"signals\[0\] must be a contiguous CPU \(5,\)"),
    (lambda obs, signals, done: (obs, signals, torch.zeros(BATCH)), r"reset must be a contiguous CPU \(5,\) tensor "
                                                                   r"of torch.bool"),
    (lambda obs, signals, done: (obs.t().contiguous().t(), signals, done), r"obs must be .* strided"),
])
def test_what_the_environment_returns_is_checked_before_the_loop_reads_it(backend, bad, message):
    env = ToyEnv(1, torch.float32)
    with torch.no_grad():
        plan, state = _plan(backend, torch.float32, 1, save_for_backward=False)
        before = plan.inputs.clone()
        with pytest.raises(ValueError, match=r"rollout_plan.run, env_step's result.*" + message):
            plan.run(state, lambda t, action: bad(*env(t, action)), OBS, 1)
    assert torch.equal(plan.inputs[1:], before[1:])  # no row was written from the bad result


@pytest.mark.parametrize("move", [
    lambda plan: plan.actions.set_(plan.actions.clone()),
    lambda plan: plan.inputs.set_(plan.inputs.clone()),
    lambda plan: plan.resets.resize_(STEPS + 1, BATCH * 4),
])
def test_a_buffer_the_environment_moved_stops_the_native_loop(move):
    env = ToyEnv(1, torch.float32)

    def moving(t, action):
        if t == 2:
            move(plan)
        return env(t, action)

    with torch.no_grad():
        plan, state = _plan("cpp", torch.float32, 1, save_for_backward=True)
        with pytest.raises(RuntimeError, match="rollout_plan: a buffer of the plan was moved to other memory"):
            plan.run(state, moving, OBS, 1)


def test_weights_the_environment_wrote_are_refused_after_the_loop():
    env = ToyEnv(1, torch.float32)
    with torch.no_grad():
        plan, state = _plan("cpp", torch.float32, 1, save_for_backward=False)
        weight = plan.head_weight

        def writing(t, action):
            if t == 4:
                weight.add_(1.0)
            return env(t, action)

        with pytest.raises(RuntimeError, match="modified since the plan was made"):
            plan.run(state, writing, OBS, 1)


@pytest.mark.parametrize("call, message", [
    (lambda plan, state, env: plan.run(state, env, OBS + 1, 1), r"obs_size \+ num_actions \+ num_signals must be "
                                                                 r"the input size 6 .*got 4 \+ 2 \+ 1"),
    (lambda plan, state, env: plan.run(state, env, OBS, 3), r"must be the input size 6 \(num_signals 0 to 2\)"),
    (lambda plan, state, env: plan.run(state, env, OBS, 1, rewards_out=torch.zeros(STEPS, BATCH + 1)),
     r"rewards_out must be a contiguous \(7, 5\) torch.float32 CPU tensor"),
    (lambda plan, state, env: plan.run(state, env, OBS, 1, rewards_out=torch.zeros(BATCH, STEPS).t()),
     r"rewards_out must be a contiguous"),
    (lambda plan, state, env: plan.run((state[0][:, :2], state[1]), env, OBS, 1), r"state\[0\] must be \(1, 5, 16\)"),
])
def test_run_refuses_bad_arguments_by_name_before_any_step(call, message):
    env = ToyEnv(1, torch.float32)
    with torch.no_grad():
        plan, state = _plan("cpp", torch.float32, 1, save_for_backward=False)
        with pytest.raises(ValueError, match=message):
            call(plan, state, env)
    assert env.actions_seen == []


def _unplanned_parts():
    """(an LSTM for one signal, a zero state, a head weight, head addends): for plans made with
    buffers other than _plan's."""
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(OBS + ACTIONS + 1, HIDDEN)
    state = (torch.zeros(1, BATCH, HIDDEN), torch.zeros(1, BATCH, HIDDEN))
    return lstm, state, torch.randn(HIDDEN, ACTIONS), torch.randn(STEPS, BATCH, ACTIONS)


def test_run_needs_the_row_after_the_last_step_and_resets():
    lstm, state, weight, addends = _unplanned_parts()
    with torch.no_grad():
        short = rl.rollout_plan(lstm, torch.zeros(STEPS, BATCH, OBS + ACTIONS + 1), weight, addends, ACTIONS,
                                torch.zeros(STEPS, BATCH, dtype=torch.bool))
        with pytest.raises(ValueError, match="run writes row 7 of inputs and resets, which must have 8 rows"):
            short.run(state, ToyEnv(1, torch.float32), OBS, 1)
        unreset = rl.rollout_plan(lstm, torch.zeros(STEPS + 1, BATCH, OBS + ACTIONS + 1), weight, addends, ACTIONS)
        with pytest.raises(ValueError, match="run needs a plan on the CPU made with resets"):
            unreset.run(state, ToyEnv(1, torch.float32), OBS, 1)


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset", [False, True])
def test_next_state_is_the_lstms_own_step_on_the_row_after_the_last(backend, dtype, reset):
    """next_state reads inputs[T] and resets[T] (rows no step of the plan reads) and gives the
    module's own no-grad step, bit for bit: an actor-critic's bootstrap value reads it."""
    with torch.no_grad():
        plan, state = _plan(backend, dtype, 1, save_for_backward=True)
        lstm = plan._lstm_step.args[0]
        plan.inputs[STEPS].normal_()
        plan.resets[STEPS, 2] = True
        h, c = plan.next_state(state, reset)
        resets = plan.resets[STEPS].unsqueeze(0) if reset else None
        _, (want_h, want_c) = lstm(plan.inputs[STEPS].unsqueeze(0), state, resets=resets)
    assert torch.equal(h, want_h) and torch.equal(c, want_c)
    assert h.shape == state[0].shape and h.data_ptr() != state[0].data_ptr()


def test_next_state_refuses_a_plan_without_the_row_after_the_last():
    lstm, state, weight, addends = _unplanned_parts()
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, torch.zeros(STEPS, BATCH, OBS + ACTIONS + 1), weight, addends, ACTIONS)
        with pytest.raises(ValueError, match="next_state reads row 7 of inputs .* they must have 8 rows"):
            plan.next_state(state)
        with pytest.raises(ValueError, match=r"state\[1\] must be \(1, 5, 16\)"):
            plan.next_state((state[0], state[1][:, :, :3]))


@pytest.mark.parametrize("method", ["run", "next_state"])
def test_run_and_next_state_refuse_autograd_as_step_does(method):
    with torch.no_grad():
        plan, state = _plan("cpp", torch.float32, 1, save_for_backward=False)
    call = {"run": lambda: plan.run(state, ToyEnv(1, torch.float32), OBS, 1), "next_state": lambda: plan.next_state(state)}
    with pytest.raises(RuntimeError, match=f"rollout_plan computes no gradient: call {method} under torch.no_grad"):
        call[method]()


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_a_one_step_plan_writes_and_reads_the_row_after_its_step(backend):
    """A one-step plan's run writes inputs[1] and resets[1] (not row 0, which its step read),
    and its next_state reads them: the fused step's row stride is its buffers' first dimension's
    even for one step."""
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(OBS + ACTIONS + 1, HIDDEN, backend=backend)
    inputs, resets = torch.randn(2, BATCH, OBS + ACTIONS + 1), torch.zeros(2, BATCH, dtype=torch.bool)
    first_row = inputs[0].clone()
    plan = rl.rollout_plan(lstm, inputs, torch.randn(HIDDEN, ACTIONS + 1), torch.randn(1, BATCH, ACTIONS + 1),
                           ACTIONS, resets)
    obs, reward, done = torch.rand(BATCH, OBS), torch.rand(BATCH), torch.arange(BATCH) % 2 == 0
    state = (torch.randn(1, BATCH, HIDDEN), torch.randn(1, BATCH, HIDDEN))
    with torch.no_grad():
        state, last_reset = plan.run(state, lambda t, action: (obs, (reward,), done), OBS, 1)
        expected = rl.write_next_input(torch.empty_like(first_row), obs, plan.actions[0], (reward,), ACTIONS, done)
        h, c = plan.next_state(state, reset=True)
        _, (want_h, want_c) = lstm(expected.unsqueeze(0), state, resets=done.unsqueeze(0))
    assert torch.equal(inputs[0], first_row) and not resets[0].any()
    assert torch.equal(inputs[1], expected) and torch.equal(resets[1], done) and last_reset
    assert torch.equal(h, want_h) and torch.equal(c, want_c)


def test_an_environment_may_return_the_rows_run_fills():
    """env_step may hand back the very rows run() copies its results into (the resets row it
    ends episodes in, its own rewards_out row): the copies allow the overlap."""
    with torch.no_grad():
        plan, state = _plan("cpp", torch.float32, 1, save_for_backward=False)
        rewards = torch.zeros(STEPS, BATCH)

        def in_place(t, action):
            rewards[t].fill_(t + 0.5)
            plan.resets[t + 1].copy_(torch.arange(BATCH) == t % BATCH)
            return torch.full((BATCH, OBS), float(t)), (rewards[t],), plan.resets[t + 1]

        plan.run(state, in_place, OBS, 1, rewards_out=rewards)
    assert torch.equal(rewards, torch.arange(STEPS).float().add(0.5).unsqueeze(1).expand(STEPS, BATCH))
    ended = torch.arange(BATCH).unsqueeze(0) == torch.arange(STEPS).unsqueeze(1) % BATCH
    assert torch.equal(plan.resets[1:], ended)
