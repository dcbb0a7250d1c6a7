"""fastrnn.rl's learning pass without a second forward: a rollout plan made with
save_for_backward=True keeps each fused step's activations, and plan.backward(grad_hidden)
gives the LSTM weights' gradients through the recurrence the steps ran; actor_critic_loss and
discounted_returns give the loss, its gradient in closed form, and the returns. Each must equal
autograd over torch ops (float64 to rounding, float32 within its rounding), and refuse what it
cannot differentiate, by name, before any work."""

import pytest
import torch
import torch.nn.functional as F

import fastrnn
from fastrnn import rl

STEPS, INPUTS, ACTIONS = 7, 5, 3


def _rollout(lstm, batch, dtype, seed=0, reset_every=2):
    """Step a saving plan over random buffers from a random state; steps t % reset_every == 0
    apply their resets row. Returns (plan, (h0, c0), the states the steps returned)."""
    generator = torch.Generator().manual_seed(seed)
    out_size = lstm.proj_size or lstm.hidden_size
    inputs = torch.randn(STEPS + 1, batch, INPUTS, dtype=dtype, generator=generator)
    resets = torch.rand(STEPS + 1, batch, generator=generator) < 0.3
    weight = torch.randn(out_size, ACTIONS, dtype=dtype, generator=generator)
    addends = torch.randn(STEPS, batch, ACTIONS, dtype=dtype, generator=generator)
    initial = (torch.randn(1, batch, out_size, dtype=dtype, generator=generator),
               torch.randn(1, batch, lstm.hidden_size, dtype=dtype, generator=generator))
    states = []
    with torch.no_grad():
        plan = rl.rollout_plan(lstm, inputs, weight, addends, ACTIONS, resets, save_for_backward=True)
        state = initial
        for t in range(STEPS):
            state = plan.step(t, state, t % reset_every == 0)
            states.append(state)
    return plan, initial, states


def _autograd_grads(lstm, plan, initial, grad_hidden):
    """The weights' gradients of sum(hidden * grad_hidden) by autograd through the reference
    backend's sequence forward (an independent path), with the resets the steps applied."""
    reference = fastrnn.LSTM(lstm.input_size, lstm.hidden_size, bias=lstm.bias, backend="reference").to(
        lstm.weight_hh_l0.dtype)
    reference.load_state_dict(lstm.state_dict())
    hidden, _ = reference(plan.inputs[:STEPS], initial, resets=plan.saved.applied)
    params = [p for p in reference.parameters()]
    return hidden, torch.autograd.grad((hidden * grad_hidden).sum(), params)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("batch, hidden, bias", [(32, 48, True), (1, 5, True), (13, 20, False), (4, 33, True)])
def test_plan_backward_equals_autograd_through_the_sequence(dtype, tolerance, batch, hidden, bias):
    """Weight gradients from the saved steps equal autograd's through a sequence forward with
    the same resets: shapes past a vector (H=20, 33), one row, no bias."""
    torch.manual_seed(1)
    lstm = fastrnn.LSTM(INPUTS, hidden, bias=bias).to(dtype)
    plan, initial, _ = _rollout(lstm, batch, dtype)
    assert plan.saves_for_backward and plan.saved.applied[::2].any()  # resets were applied
    grad_hidden = torch.randn(STEPS, batch, hidden, dtype=dtype)
    ours = plan.backward(grad_hidden)
    hidden_seq, expected = _autograd_grads(lstm, plan, initial, grad_hidden)
    torch.testing.assert_close(plan.saved.hidden, hidden_seq.detach(), rtol=tolerance, atol=tolerance)
    if not bias:
        assert ours[2] is None and ours[3] is None
    for got, want in zip([g for g in ours if g is not None], expected):
        torch.testing.assert_close(got, want, rtol=tolerance, atol=tolerance)


def test_saved_steps_are_the_states_the_steps_returned_and_the_resets_they_applied():
    """saved.hidden[t] and saved.cells[t] are step t's returned state, bit for bit; saved.applied[t]
    is resets[t] on the steps that applied them and all False on the others; saved.previous[t] is
    the h step t read (the initial one, then step t - 1's), zero in the rows it reset."""
    lstm = fastrnn.LSTM(INPUTS, 16)
    plan, initial, states = _rollout(lstm, 6, torch.float32, reset_every=3)
    read = [initial[0][0]] + [h[0] for h, _ in states[:-1]]
    for t, (h, c) in enumerate(states):
        assert torch.equal(plan.saved.hidden[t], h[0]) and torch.equal(plan.saved.cells[t], c[0])
        expected = plan.resets[t] if t % 3 == 0 else torch.zeros_like(plan.resets[t])
        assert torch.equal(plan.saved.applied[t], expected)
        assert torch.equal(plan.saved.previous[t], read[t].masked_fill(expected.unsqueeze(1), 0.0))
    assert plan.saved.applied.any() and not plan.saved.applied.all()  # both kinds of row were seen


def test_backward_writes_into_given_gradient_tensors():
    """grads=(...) receives the gradients in place (a flat optimizer buffer's views)."""
    lstm = fastrnn.LSTM(INPUTS, 8)
    plan, _, _ = _rollout(lstm, 3, torch.float32)
    grad_hidden = torch.randn(STEPS, 3, 8)
    expected = plan.backward(grad_hidden)
    targets = tuple(torch.full_like(p, float("nan")) for p in (lstm.weight_ih_l0, lstm.weight_hh_l0,
                                                                lstm.bias_ih_l0, lstm.bias_hh_l0))
    returned = plan.backward(grad_hidden, grads=targets)
    for target, got, want in zip(targets, returned, expected):
        assert got is target and torch.equal(target, want)


def test_backward_uses_the_inputs_the_steps_read_not_the_buffer_now():
    """The steps save the input rows they read: rewriting the caller's buffer afterwards (a
    rollout reuses it for the next unroll) changes nothing."""
    lstm = fastrnn.LSTM(INPUTS, 8)
    plan, _, _ = _rollout(lstm, 3, torch.float32)
    grad_hidden = torch.randn(STEPS, 3, 8)
    before = plan.backward(grad_hidden)
    assert torch.equal(plan.saved.inputs, plan.inputs[:STEPS])
    plan.inputs.normal_()
    after = plan.backward(grad_hidden)
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_backward_refuses_gradient_targets_of_the_wrong_shape():
    lstm = fastrnn.LSTM(INPUTS, 8, bias=False)
    plan, _, _ = _rollout(lstm, 3, torch.float32)
    grad_hidden = torch.randn(STEPS, 3, 8)
    with pytest.raises(ValueError, match=r"grads' w_hh must be a contiguous \(32, 8\) torch.float32"):
        plan.backward(grad_hidden, grads=(None, torch.empty(8, 32), None, None))
    with pytest.raises(ValueError, match=r"grads' b_ih must be None \(the LSTM has no bias\)"):
        plan.backward(grad_hidden, grads=(None, None, torch.empty(32), None))
    with pytest.raises(ValueError, match="grads must be four tensors or Nones"):
        plan.backward(grad_hidden, grads=(None, None))


def test_plans_that_cannot_save_say_so_and_backward_names_why():
    """A composed step (torch.nn.LSTM) and a projection keep nothing: saves_for_backward is False
    and backward raises naming what it needs."""
    for lstm in (torch.nn.LSTM(INPUTS, 8), fastrnn.LSTM(INPUTS, 8, proj_size=4)):
        plan, _, _ = _rollout(lstm, 3, torch.float32)
        assert not plan.saves_for_backward and plan.saved is None
        with pytest.raises(RuntimeError, match="backward needs a plan made with save_for_backward=True"):
            plan.backward(torch.zeros(STEPS, 3, lstm.proj_size or 8))


def test_backward_refuses_an_incomplete_or_broken_chain_of_steps():
    """Missing steps, a step from another state than the last returned, or steps out of order
    cannot be differentiated as one recurrence: backward raises before any work."""
    lstm = fastrnn.LSTM(INPUTS, 8)
    inputs, weight, addends = torch.randn(STEPS + 1, 2, INPUTS), torch.randn(8, ACTIONS), torch.randn(STEPS, 2, ACTIONS)
    state = (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8))
    with torch.no_grad():
        short = rl.rollout_plan(lstm, inputs, weight, addends, ACTIONS, save_for_backward=True)
        s = state
        for t in range(STEPS - 1):
            s = short.step(t, s)
        broken = rl.rollout_plan(lstm, inputs, weight, addends, ACTIONS, save_for_backward=True)
        s = state
        for t in range(STEPS):
            s = broken.step(t, (s[0].clone(), s[1]) if t == 3 else s)  # step 3 from a copy
    with pytest.raises(RuntimeError, match=f"{STEPS - 1} were taken"):
        short.backward(torch.zeros(STEPS, 2, 8))
    with pytest.raises(RuntimeError, match="they were not"):
        broken.backward(torch.zeros(STEPS, 2, 8))


def test_backward_refuses_states_written_in_place_after_their_step():
    """The steps return rows of the saved states: a state written in place between steps (the
    next step then read other values than the saved ones) or after the last step (its saved row
    changed) would give silently wrong gradients, so backward raises; steps left alone pass."""
    lstm = fastrnn.LSTM(INPUTS, 8)
    inputs, weight, addends = torch.randn(STEPS + 1, 2, INPUTS), torch.randn(8, ACTIONS), torch.randn(STEPS, 2, ACTIONS)
    state = (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8))
    plans = []
    with torch.no_grad():
        for written_after in (2, STEPS - 1, None):  # a middle step's h, the last step's c, none
            plan = rl.rollout_plan(lstm, inputs, weight, addends, ACTIONS, save_for_backward=True)
            s = state
            for t in range(STEPS):
                s = plan.step(t, s)
                if t == written_after:
                    (s[0] if t < STEPS - 1 else s[1]).mul_(0.5)
            plans.append(plan)
    for plan in plans[:2]:
        with pytest.raises(RuntimeError, match="unmodified; they were not"):
            plan.backward(torch.zeros(STEPS, 2, 8))
    plans[2].backward(torch.zeros(STEPS, 2, 8))


def test_backward_refuses_weights_changed_since_and_a_misshapen_gradient():
    """The saved activations belong to the weights the plan was made with; grad_hidden must be
    (T, B, R) of the weights' dtype."""
    lstm = fastrnn.LSTM(INPUTS, 8)
    plan, _, _ = _rollout(lstm, 3, torch.float32)
    with pytest.raises(ValueError, match=r"grad_hidden must be \(7, 3, 8\) torch.float32"):
        plan.backward(torch.zeros(STEPS, 3, 9))
    with pytest.raises(ValueError, match="grad_hidden must be"):
        plan.backward(torch.zeros(STEPS, 3, 8, dtype=torch.float64))
    with torch.no_grad():
        lstm.weight_hh_l0.add_(1.0)
    with pytest.raises(RuntimeError, match="weights or the head weight were modified since"):
        plan.backward(torch.zeros(STEPS, 3, 8))


def _autograd_actor_critic(head_out, actions, returns, value_coef, entropy_coef, policy_mask, value_mask):
    """The loss by torch ops and autograd: (total, policy, value, entropy), d total / d head_out."""
    head_out = head_out.clone().requires_grad_(True)
    logits, values = head_out[..., :ACTIONS], head_out[..., ACTIONS]
    log_p = F.log_softmax(logits, -1)
    advantage = (returns - values).detach()
    entropy_rows = -(log_p.exp() * log_p).sum(-1)
    chosen = log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    w = torch.ones_like(returns) if policy_mask is None else policy_mask.to(returns.dtype)
    v = torch.ones_like(returns) if value_mask is None else value_mask.to(returns.dtype)
    w, v = w / w.sum().clamp(min=1), v / v.sum().clamp(min=1)
    policy = -(w * chosen * advantage).sum()
    entropy = (w * entropy_rows).sum()
    value = 0.5 * (v * (returns - values) ** 2).sum()
    total = policy + value_coef * value - entropy_coef * entropy
    total.backward()
    return [float(x.detach()) for x in (total, policy, value, entropy)], head_out.grad


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("masks", ["none", "policy", "both", "empty policy"])
def test_actor_critic_loss_and_gradient_equal_autograd(dtype, tolerance, masks):
    """Loss parts and d total / d head_out in closed form equal autograd's over torch ops, with
    and without masks (an all-False mask weighs nothing and divides by one, as a2c_loss)."""
    generator = torch.Generator().manual_seed(3)
    head_out = torch.randn(6, 5, ACTIONS + 1, dtype=dtype, generator=generator) * 3
    actions = torch.randint(0, ACTIONS, (6, 5), generator=generator)
    returns = torch.randn(6, 5, dtype=dtype, generator=generator)
    policy_mask = None if masks == "none" else torch.rand(6, 5, generator=generator) < 0.6
    if masks == "empty policy":
        policy_mask = torch.zeros(6, 5, dtype=torch.bool)
    value_mask = torch.rand(6, 5, generator=generator) < 0.7 if masks == "both" else None
    parts, grad = rl.actor_critic_loss(head_out, actions, returns, ACTIONS, 0.05, 0.2, policy_mask, value_mask)
    want_parts, want_grad = _autograd_actor_critic(head_out, actions, returns, 0.05, 0.2, policy_mask, value_mask)
    assert list(parts) == pytest.approx(want_parts, rel=tolerance, abs=tolerance)
    torch.testing.assert_close(grad, want_grad, rtol=tolerance, atol=tolerance)


def test_actor_critic_loss_refuses_bad_arguments_by_name():
    head_out, actions, returns = torch.randn(4, ACTIONS + 1), torch.zeros(4, dtype=torch.int64), torch.zeros(4)
    cases = [
        (dict(head_out=torch.randn(4, ACTIONS)), r"head_out must be \(\.\.\., 4\)"),
        (dict(actions=torch.zeros(4, dtype=torch.int32)), "actions must be a contiguous CPU tensor of torch.int64"),
        (dict(returns=torch.zeros(5)), r"returns must be \(4,\)"),
        (dict(returns=torch.zeros(4, 2)[:, 0]), "returns must be a contiguous CPU tensor.*strided"),
        (dict(policy_mask=torch.ones(4)), "policy_mask must be a contiguous CPU tensor of torch.bool"),
        (dict(num_actions=0), "num_actions must be an int >= 1"),
    ]
    for change, message in cases:
        args = dict(head_out=head_out, actions=actions, returns=returns, num_actions=ACTIONS, value_coef=0.5,
                    entropy_coef=0.1)
        args.update(change)
        with pytest.raises(ValueError, match=f"actor_critic_loss: {message}"):
            rl.actor_critic_loss(**args)
    with pytest.raises(IndexError, match="actions must be from 0 to 2, got 3 at row 1"):
        rl.actor_critic_loss(head_out, torch.tensor([0, 3, 0, 0]), returns, ACTIONS, 0.5, 0.1)


def test_actor_critic_loss_propagates_nan():
    """A NaN head output makes the loss and its row's gradient NaN (the trainer's finite check
    then stops the run), never a silently finite number."""
    head_out = torch.randn(3, ACTIONS + 1)
    head_out[1, 0] = float("nan")
    parts, grad = rl.actor_critic_loss(head_out, torch.zeros(3, dtype=torch.int64), torch.zeros(3), ACTIONS, 0.5, 0.1)
    assert torch.isnan(torch.tensor(parts.total)) and grad[1].isnan().any() and not grad[0].isnan().any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discounted_returns_equal_the_definition(dtype):
    """G_t = r_t + gamma G_{t+1}, cut at dones, bootstrapped after the last step: against a loop."""
    generator = torch.Generator().manual_seed(5)
    rewards = torch.randn(9, 4, dtype=dtype, generator=generator)
    dones = torch.rand(9, 4, generator=generator) < 0.3
    bootstrap = torch.randn(4, dtype=dtype, generator=generator)
    expected, running = torch.empty_like(rewards), bootstrap.clone()
    for t in range(8, -1, -1):
        running = rewards[t] + 0.9 * running * (~dones[t])
        expected[t] = running
    torch.testing.assert_close(rl.discounted_returns(rewards, dones, bootstrap, 0.9), expected)
    with pytest.raises(ValueError, match=r"discounted_returns: bootstrap must be \(4,\)"):
        rl.discounted_returns(rewards, dones, bootstrap[:3], 0.9)
    with pytest.raises(ValueError, match="discounted_returns: dones must be a contiguous CPU tensor of torch.bool"):
        rl.discounted_returns(rewards, dones.float(), bootstrap, 0.9)
