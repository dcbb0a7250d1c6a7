"""Task dynamics: each task's probabilities, reset behaviour and reproducibility."""

import pytest
import torch

from agent.simulations.registry import get_task_class, make_task, task_names

ALL_TASKS = task_names()


def run_steps(task, steps, policy=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    task.recording = True
    out = []
    for _ in range(steps):
        actions = policy(task) if policy else torch.randint(0, task.num_actions, (task.num_envs,), generator=g)
        out.append((actions, task.step(actions)))
    return out


@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_follows_the_common_interface(name):
    cls = get_task_class(name)
    assert cls.description and "\n" not in cls.description
    assert {"action", "reward"} <= set(cls.trial_columns)
    task = make_task(name, 5, seed=1)
    task.recording = True
    obs = task.reset()
    assert obs.shape == (5, cls.obs_size)
    result = task.step(torch.zeros(5, dtype=torch.long))
    assert result.obs.shape == (5, cls.obs_size)
    assert result.reward.shape == result.done.shape == result.trial_end.shape == (5,)
    assert result.done.dtype == torch.bool and result.any_done == bool(result.done.any())
    for _ in range(cls.steps_per_trial - 1):
        result = task.step(torch.zeros(5, dtype=torch.long))
    assert bool(result.trial_end.all())
    assert set(result.record) == set(cls.trial_columns)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_same_seed_same_episodes_and_state_dict_restores_exactly(name):
    a, b = make_task(name, 6, seed=3), make_task(name, 6, seed=3)
    a.reset(), b.reset()
    run_steps(a, 37), run_steps(b, 37)
    saved = a.state_dict()
    first = [r.reward for _, r in run_steps(a, 50, seed=9)]
    c = make_task(name, 6, seed=99)
    c.reset()
    c.load_state_dict(saved)
    second = [r.reward for _, r in run_steps(c, 50, seed=9)]
    assert all(torch.equal(x, y) for x, y in zip(first, second))
    other = make_task(name, 6, seed=4)
    other.reset()
    assert not all(torch.equal(x, y) for x, y in
                   zip([r.reward for _, r in run_steps(b, 50, seed=9)], [r.reward for _, r in run_steps(other, 50, seed=9)]))


@pytest.mark.parametrize("name", ALL_TASKS)
def test_episodes_end_after_their_trials_and_restart_on_their_own(name):
    task = make_task(name, 8, seed=0, trials_per_episode=5)
    task.reset()
    steps = get_task_class(name).steps_per_trial * 5
    results = [r for _, r in run_steps(task, 3 * steps)]
    dones = torch.stack([r.done for r in results])
    assert dones.sum(0).tolist() == [3] * 8
    assert bool(dones[steps - 1].all()) and not bool(dones[: steps - 1].any())


@pytest.mark.parametrize("name", ["two_step", "bandit_independent"])
def test_staggered_reset_spreads_the_rows_episode_ends_over_the_episode(name):
    task = make_task(name, 64, seed=0)
    task.reset(stagger=True)
    steps = get_task_class(name).steps_per_trial * 100
    dones = torch.stack([r.done for _, r in run_steps(task, 2 * steps)])
    first_end = dones.float().argmax(dim=0)
    assert len(first_end.unique()) > 30  # the rows no longer end together
    assert bool(dones[steps:].any(dim=0).all())  # every row still ends an episode per 100 trials
    second_end = first_end + steps
    assert bool(dones[second_end[second_end < 2 * steps], torch.arange(64)[second_end < 2 * steps]].all())


def test_two_step_transitions_are_common_with_probability_0_8():
    task = make_task("two_step", 4000, seed=0)
    task.reset()
    records = [r.record for _, r in run_steps(task, 20) if r.record is not None]
    common = torch.cat([r["common"] for r in records]).float()
    state = torch.cat([r["state"] for r in records])
    action = torch.cat([r["action"] for r in records])
    assert abs(common.mean().item() - 0.8) < 0.01
    # common transition: action a leads to second-stage state a
    assert torch.equal(common.bool(), state == action)


def test_two_step_reward_probability_by_state():
    """The two-step reward probability is 0.9 in the good state and 0.1 otherwise."""
    task = make_task("two_step", 4000, seed=1)
    task.reset()
    records = [r.record for _, r in run_steps(task, 40) if r.record is not None]
    reward = torch.cat([r["reward"] for r in records])
    good = torch.cat([r["state"] == r["good_state"] for r in records])
    assert abs(reward[good].mean().item() - 0.9) < 0.01
    assert abs(reward[~good].mean().item() - 0.1) < 0.01


def test_two_step_good_state_swaps_with_probability_0_025_per_trial():
    task = make_task("two_step", 2000, seed=2)
    task.reset()
    records = [r.record for _, r in run_steps(task, 200) if r.record is not None]
    good = torch.stack([r["good_state"] for r in records])
    swaps = (good[1:] != good[:-1]).float().mean().item()
    assert abs(swaps - 0.025) < 0.002


def test_two_step_observation_is_the_state_the_agent_is_in():
    task = make_task("two_step", 3, seed=0)
    obs = task.reset()
    assert torch.equal(obs, torch.tensor([[1.0, 0, 0]] * 3))
    result = task.step(torch.tensor([0, 1, 0]))
    assert torch.equal(result.obs.argmax(1), task.location) and bool((task.location > 0).all())
    assert bool((result.reward == 0).all()) and not bool(result.trial_end.any())
    result = task.step(torch.tensor([1, 1, 1]))
    assert bool((result.obs.argmax(1) == 0).all()) and bool(result.trial_end.all())


@pytest.mark.parametrize("name,pair", [("bandit_dependent_easy", (0.1, 0.9)), ("bandit_dependent_medium", (0.25, 0.75)),
                                       ("bandit_dependent_hard", (0.4, 0.6))])
def test_dependent_bandit_arms_are_p_and_one_minus_p_from_the_variant_pair(name, pair):
    task = make_task(name, 5000, seed=0)
    task.reset()
    probs = task.arm_probs
    assert torch.allclose(probs.sum(1), torch.ones(5000))
    assert sorted(round(v, 4) for v in probs[:, 0].unique().tolist()) == list(pair)
    assert abs((probs[:, 0] == pair[0]).float().mean().item() - 0.5) < 0.03


def test_independent_bandit_arms_are_uniform_and_rewards_follow_them():
    task = make_task("bandit_independent", 20000, seed=0)
    task.reset()
    probs = task.arm_probs.clone()
    assert abs(probs.mean().item() - 0.5) < 0.01 and abs(probs.var().item() - 1 / 12) < 0.005
    assert abs(torch.corrcoef(probs.T)[0, 1].item()) < 0.03
    result = task.step(torch.ones(20000, dtype=torch.long))
    hits = result.reward[probs[:, 1] > 0.8].mean().item()
    assert hits > 0.8
    assert torch.allclose(result.obs.squeeze(1), torch.full((20000,), 0.01))  # trial index / 100
