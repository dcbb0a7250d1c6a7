"""The dynamic-foraging task (Simulation 1) and its analyses: baiting, blocks of base rates
inside an episode; the regressions and fits recover what synthetic agents are built with."""

import numpy as np
import pytest
import torch

from agent.simulations.foraging import analysis as foraging
from agent.simulations.registry import make_task


def play(task, trials, policy=lambda task: torch.zeros(task.num_envs, dtype=torch.long)):
    """Play `trials` trials from a fresh reset; the records as (trials, B) arrays."""
    task.recording = True
    task.reset()
    records = [task.step(policy(task)).record for _ in range(trials)]
    return {k: torch.stack([r[k] for r in records]).numpy() for k in records[0]}


def test_reward_probability_follows_the_baiting_formula():
    task = make_task("foraging", 20000, seed=0, mode="test")
    task.reset()
    base = torch.stack([task.block_left_rates[:, 0], 0.5 - task.block_left_rates[:, 0]], 1)  # block 0
    for _ in range(3):  # arm 0 chosen three times: arm 1 unchosen for 3 trials
        task.step(torch.zeros(20000, dtype=torch.long))
    task.recording = True
    result = task.step(torch.ones(20000, dtype=torch.long))
    expected_1 = 1 - (1 - base[:, 1]) ** 4
    assert torch.allclose(result.record["p_1"], expected_1, atol=1e-6)
    assert torch.allclose(result.record["p_0"], base[:, 0], atol=1e-6)
    assert abs(result.reward.mean().item() - expected_1.mean().item()) < 0.01
    result = task.step(torch.ones(20000, dtype=torch.long))
    assert torch.allclose(result.record["p_1"], base[:, 1], atol=1e-6)  # chosen last trial: back to its base rate
    assert torch.allclose(result.record["p_0"], 1 - (1 - base[:, 0]) ** 2, atol=1e-6)


def test_test_episodes_have_2_to_4_blocks_with_fresh_base_rates():
    """Test episodes have 2 to 4 blocks of at least 14 trials, with fresh base rates."""
    s = play(make_task("foraging", 6000, seed=0, mode="test"), 100)
    blocks = s["block"].max(0) + 1
    assert set(blocks.tolist()) == {2, 3, 4}
    assert np.allclose(np.bincount(blocks)[2:] / len(blocks), 1 / 3, atol=0.03)
    assert (np.diff(s["block"], axis=0) >= 0).all() and (np.diff(s["block"], axis=0) <= 1).all()
    assert (s["block"][0] == 0).all()
    for k in range(4):
        lengths = (s["block"] == k).sum(0)[blocks > k]
        assert lengths.min() >= 14 and lengths.max() <= 67
    assert np.allclose(s["base_0"] + s["base_1"], 0.5)
    changes = np.diff(s["base_0"], axis=0) != 0
    assert (changes == (np.diff(s["block"], axis=0) == 1)).all()  # base rates change exactly at block starts
    assert abs((s["base_0"][0] < 0.1).mean() - 0.2) < 0.02  # p0_L ~ U(0, 0.5) in every block
    assert abs((s["base_0"][-1] < 0.1).mean() - 0.2) < 0.02


def test_training_episodes_last_50_to_100_trials_over_three_bands():
    """Training episodes last 50 to 100 trials, and every block draws from the three bands."""
    task = make_task("foraging", 30000, seed=0)
    s = play(task, 50)
    assert task.episode_trials.min() == 50 and task.episode_trials.max() == 100
    left = s["base_0"]
    in_band = ((left >= 0) & (left <= 0.1)) | ((left >= 0.2) & (left <= 0.3)) | ((left >= 0.4) & (left <= 0.5))
    assert in_band.all()
    later = left[-1][s["block"][-1] > 0]  # a later block's band is drawn afresh
    assert all(abs(((later >= lo) & (later <= lo + 0.1)).mean() - 1 / 3) < 0.02 for lo in (0.0, 0.2, 0.4))
    ends = task.block_ends.gather(1, (task.episode_trials.unsqueeze(1) > task.block_ends).sum(1, keepdim=True))
    assert bool((ends.squeeze(1) == task.episode_trials).all())  # the last block ends with the episode


def test_baiting_counters_carry_across_a_block_boundary():
    task = make_task("foraging", 2000, seed=1, mode="test")
    s = play(task, 100, policy=lambda task: (task.trial % 5 == 0).long())  # arm 1 on trials 0, 5, 10, ...
    first = np.argmax(s["block"] == 1, axis=0)  # block 1's first trial, never a multiple of 5 in general
    rows = np.arange(2000)
    unchosen_for = (first - 1) % 5  # trials since arm 1 was last chosen
    expected = 1 - (1 - s["base_1"][first, rows]) ** (unchosen_for + 1)
    np.testing.assert_allclose(s["p_1"][first, rows], expected, atol=1e-6)
    assert (s["base_1"][first, rows] != s["base_1"][first - 1, rows]).all()  # block 1's own base rate


def _replays_exactly_after_a_state_restore(task, steps: int) -> bool:
    """Play `steps` random steps, restore the state saved before them, play them again:
    the same rewards."""
    task.reset(stagger=True)
    saved = task.state_dict()
    actions = torch.randint(0, 2, (steps, task.num_envs), generator=torch.Generator().manual_seed(0))
    first = [task.step(a).reward for a in actions]
    task.load_state_dict(saved)
    return all(torch.equal(a, task.step(b).reward) for a, b in zip(first, actions))


def test_state_dict_restores_the_blocks_exactly():
    assert _replays_exactly_after_a_state_restore(make_task("foraging", 8, seed=3), 200)


def switch_then_stay(changeover):
    """Arm 0 on trials 0-2, arm 1 on trials 3 and 4: the switch's and the stay's records and
    rewards, with block 0's base rates (every block is at least 14 test trials long)."""
    B = 20000
    task = make_task("foraging", B, seed=0, mode="test", options={"changeover": changeover})
    task.reset()
    base = torch.stack([task.block_left_rates[:, 0], 0.5 - task.block_left_rates[:, 0]], 1)
    for _ in range(3):
        task.step(torch.zeros(B, dtype=torch.long))
    task.recording = True
    switch = task.step(torch.ones(B, dtype=torch.long))
    stay = task.step(torch.ones(B, dtype=torch.long))
    return base, switch, stay


def test_without_a_changeover_delay_a_switch_pays_and_collects_the_bait():
    base, switch, stay = switch_then_stay("none")
    expected = 1 - (1 - base[:, 1]) ** 4
    assert abs(switch.reward.mean().item() - expected.mean().item()) < 0.01
    assert torch.allclose(stay.record["p_1"], base[:, 1], atol=1e-6)  # chosen last trial: base rate again


def test_withhold_switch_never_pays_and_the_bait_stays():
    """Under withhold, a switch never pays and the bait stays for the next choice."""
    base, switch, stay = switch_then_stay("withhold")
    assert switch.reward.sum().item() == 0
    assert torch.allclose(switch.record["p_1"], 1 - (1 - base[:, 1]) ** 4, atol=1e-6)  # the bait it held
    expected = 1 - (1 - base[:, 1]) ** 5  # the switch left the counter running: one more trial of baiting
    assert torch.allclose(stay.record["p_1"], expected, atol=1e-6)
    assert abs(stay.reward.mean().item() - expected.mean().item()) < 0.01


def test_withhold_first_trial_of_an_episode_is_no_switch():
    """Under withhold, an episode's first trial is no switch, whatever the last episode chose."""
    B = 4000
    task = make_task("foraging", B, seed=2, mode="test", trials_per_episode=5, options={"changeover": "withhold"})
    # arm 1 on each episode's first trial, arm 0 on the other four: from the second episode on,
    # trial 0 follows the previous episode's arm-0 trial, which must not make it a switch
    s = play(task, 20, policy=lambda task: (task.trial == 0).long())
    trial = np.tile(np.arange(5), 4)
    assert s["reward"][trial == 0][1:].mean() > 0.2  # later episodes' first trials pay (p_1 = base_1, mean 0.25)
    assert np.allclose(s["reward"][trial == 1], 0)  # 1 -> 0 is a switch
    assert s["reward"][trial >= 2].mean() > 0.1  # staying on arm 0 pays


def test_changeover_is_checked_and_kept_in_the_task_state():
    with pytest.raises(ValueError, match="--changeover"):
        make_task("foraging", 2, options={"changeover": "delay"})
    task = make_task("foraging", 8, seed=3, options={"changeover": "withhold"})
    task.reset(stagger=True)
    actions = torch.randint(0, 2, (200, 8), generator=torch.Generator().manual_seed(0))
    for a in actions[:50]:
        task.step(a)
    saved = task.state_dict()
    first = [task.step(a).reward for a in actions[50:]]
    task.load_state_dict(saved)
    assert all(torch.equal(a, task.step(b).reward) for a, b in zip(first, actions[50:]))


def test_stay_rates_count_repeats_within_episodes_only():
    trials = {"episode": np.array([0, 0, 0, 0, 1, 1]), "action": np.array([0, 0, 1, 1, 0, 1]),
              "reward": np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])}
    rates = foraging.stay_rates(trials)
    # pairs within episodes: (0,0) after a win: stay; (0,1) after a loss: switch; (1,1) after a win: stay; (0,1) after a win: switch
    assert rates["stay"] == pytest.approx(2 / 4)
    assert rates["win_stay"] == pytest.approx(2 / 3) and rates["lose_stay"] == pytest.approx(0.0)


# ---- analyses ------------------------------------------------------------------------------

def kernel_agent(reward_kernel, episodes=400, trials=100, bias_sd=1.0, seed=0):
    """Trials of a chooser whose logit P(L) is its episode's bias plus a known reward kernel."""
    rng = np.random.default_rng(seed)
    lags = len(reward_kernel)
    rows = {"episode": [], "trial": [], "action": [], "reward": []}
    for e in range(episodes):
        history = []  # R_t of this episode so far
        bias = bias_sd * rng.standard_normal()
        for t in range(trials):
            recent = np.array(history[::-1][:lags])
            drive = bias + reward_kernel[: len(recent)] @ recent
            left = rng.random() < 1 / (1 + np.exp(-drive))
            reward = rng.random() < 0.4
            history.append((1 if left else -1) * reward)
            rows["episode"].append(e), rows["trial"].append(t)
            rows["action"].append(0 if left else 1), rows["reward"].append(float(reward))
    return {k: np.array(v) for k, v in rows.items()}


def test_lagged_regression_recovers_a_decaying_kernel():
    """The lagged regression recovers a decaying kernel under per-episode biases."""
    true_kernel = 1.6 * 0.7 ** np.arange(15)
    fit = foraging.lagged_regression(kernel_agent(true_kernel))
    ci = np.array(fit["reward_kernel_ci95"])
    assert fit["lags"] == 15 and fit["converged"]
    assert np.allclose(fit["reward_kernel"], true_kernel, atol=0.15)
    assert ((ci[:, 0] < true_kernel) & (true_kernel < ci[:, 1])).mean() >= 0.8  # 95% intervals cover
    assert np.allclose(fit["choice_kernel"], 0, atol=0.15)
    assert foraging.kernel_decays(fit)


def test_a_flat_kernel_does_not_count_as_decaying():
    flat = np.r_[np.full(5, 0.6), np.zeros(10)]
    fit = foraging.lagged_regression(kernel_agent(flat, episodes=300))
    assert np.allclose(fit["reward_kernel"][:5], 0.6, atol=0.15)
    assert not foraging.kernel_decays(fit)


def test_fixed_effects_logit_matches_statsmodels_with_a_dummy_per_group():
    import statsmodels.api as sm

    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(12), 60)
    design = rng.standard_normal((len(groups), 3))
    eta = design @ np.array([0.8, -0.5, 0.2]) + rng.standard_normal(12)[groups]
    target = (rng.random(len(groups)) < 1 / (1 + np.exp(-eta))).astype(float)
    ours = foraging.fixed_effects_logit(target, design, groups)
    dummies = (groups[:, None] == np.arange(12)).astype(float)
    reference = sm.Logit(target, np.column_stack([design, dummies])).fit(disp=0)
    np.testing.assert_allclose(ours["coef"], reference.params[:3], atol=1e-6)
    np.testing.assert_allclose(ours["bias"], reference.params[3:], atol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.diag(ours["cov"])), reference.bse[:3], rtol=1e-5)


def test_episodes_of_one_choice_are_dropped_and_counted():
    trials = kernel_agent(1.5 * 0.6 ** np.arange(15), episodes=60, seed=2)
    trials["action"][trials["episode"] < 3] = 1  # three episodes always chose R
    fit = foraging.lagged_regression(trials)
    assert fit["episodes_dropped"] == 3 and fit["episodes_fit"] == 57
    assert fit["n_trials"] == 57 * 85 and np.isfinite(fit["reward_kernel"]).all()


def test_matching_slope_is_one_for_a_strict_matcher_and_is_fit_per_block():
    rows = {"episode": [], "block": [], "action": [], "reward": []}
    # (left choices, left rewards, right rewards) per block of 100 trials; two blocks per episode
    blocks = [(20, 10, 40), (50, 25, 25), (80, 40, 10), (35, 7, 13)]
    for b, (left_choices, left_rewards, right_rewards) in enumerate(blocks):
        for i in range(100):
            left = i < left_choices
            got = (i < left_rewards) if left else (i - left_choices < right_rewards)
            rows["episode"].append(b // 2), rows["block"].append(b % 2)
            rows["action"].append(0 if left else 1), rows["reward"].append(float(got))
    fit = foraging.matching({k: np.array(v) for k, v in rows.items()})
    assert fit["unit"] == "block" and fit["units_fit"] == 4
    assert fit["slope"] == pytest.approx(1.0, abs=1e-9)


def q_learning_agent(alpha, beta, episodes=300, seed=0):
    """A Q-learner (the analysis' model) playing the test task's episodes."""
    task = make_task("foraging", episodes, seed=seed, mode="test")
    rng = np.random.default_rng(seed)
    q = np.full((episodes, 2), foraging.INITIAL_VALUE)
    rows = np.arange(episodes)

    def policy(task):
        left = rng.random(episodes) < 1 / (1 + np.exp(-beta * (q[:, 0] - q[:, 1])))
        return torch.from_numpy(np.where(left, 0, 1))

    task.recording = True
    task.reset()
    actions, rewards = [], []
    for _ in range(100):
        action = policy(task)
        reward = task.step(action).reward.numpy()
        a = action.numpy()
        q[rows, a] += alpha * (reward - q[rows, a])
        actions.append(a), rewards.append(reward)
    return {"episode": np.repeat(rows, 100), "trial": np.tile(np.arange(100), episodes),
            "action": np.array(actions).T.ravel(), "reward": np.array(rewards).T.ravel()}


def test_q_learning_fit_recovers_a_known_learner_and_its_chosen_values():
    trials = q_learning_agent(alpha=0.3, beta=6.0)
    fit = foraging.fit_q_learning(trials)
    assert fit["alpha_ci95"][0] < 0.3 < fit["alpha_ci95"][1] and abs(fit["alpha"] - 0.3) < 0.05
    assert fit["beta_ci95"][0] < 6.0 < fit["beta_ci95"][1]
    values = foraging.q_learning_values(trials["action"].reshape(-1, 100), trials["reward"].reshape(-1, 100), 0.3)
    exact = np.take_along_axis(values, trials["action"].reshape(-1, 100, 1), axis=-1).ravel()
    assert np.corrcoef(fit["chosen_value"], exact)[0, 1] > 0.99
    assert fit["chosen_value"][0] == foraging.INITIAL_VALUE


def test_unit_coding_finds_the_variable_each_synthetic_unit_carries():
    rng = np.random.default_rng(0)
    n = 1000
    episode = np.repeat(np.arange(10), 100)
    action, reward, value = rng.integers(2, size=n), rng.integers(2, size=n).astype(float), rng.random(n)
    prev_reward = np.r_[0.0, reward[:-1]]
    hidden = np.column_stack([prev_reward + 0.1 * rng.standard_normal(n), value + 0.1 * rng.standard_normal(n),
                              rng.standard_normal(n), rng.standard_normal(n)])
    fractions = foraging.unit_coding({"episode": episode, "action": action, "reward": reward, "hidden": hidden},
                                     value)
    assert fractions["last_reward"] >= 0.25 and fractions["chosen_value"] >= 0.25
    assert fractions["last_action"] <= 0.25 and fractions["action_x_reward"] <= 0.25


# ---- block options (--blocks) ----------------------------------------------------------------

def test_block_counts_follow_the_blocks_option():
    s = play(make_task("foraging", 6000, seed=0, mode="test", options={"blocks": "3-6"}), 100)
    blocks = s["block"].max(0) + 1
    assert set(blocks.tolist()) == {3, 4, 5, 6}
    assert np.allclose(np.bincount(blocks)[3:] / len(blocks), 1 / 4, atol=0.03)
    changes = np.diff(s["base_0"], axis=0) != 0
    assert (changes == (np.diff(s["block"], axis=0) == 1)).all()
    for k in range(6):  # weights U(1, 2): no block shorter than 100 / 11 trials
        assert (s["block"] == k).sum(0)[blocks > k].min() >= 9


def test_geometric_blocks_change_with_probability_one_over_mean():
    """Geometric blocks change after each trial with probability one over the mean."""
    s = play(make_task("foraging", 6000, seed=1, mode="test", options={"blocks": "geometric-10"}), 100)
    starts = np.diff(s["block"], axis=0)
    assert set(np.unique(starts).tolist()) == {0, 1}
    assert abs(starts.mean() - 0.1) < 0.005  # hazard 1/10 after every trial
    # memoryless: the hazard is the same early and late in a block and in the episode
    since = np.zeros_like(s["block"])
    for t in range(1, 100):
        since[t] = np.where(starts[t - 1] == 1, 0, since[t - 1] + 1)
    assert abs(starts[since[:-1] == 0].mean() - 0.1) < 0.01 and abs(starts[since[:-1] >= 10].mean() - 0.1) < 0.01
    assert abs(starts[:10].mean() - starts[-10:].mean()) < 0.01
    changes = np.diff(s["base_0"], axis=0) != 0
    assert (changes == (starts == 1)).all()  # fresh base rates at every block start
    assert abs((s["base_0"] < 0.1).mean() - 0.2) < 0.02


def test_geometric_blocks_in_training_episodes_and_state_restore():
    task = make_task("foraging", 2000, seed=2, options={"blocks": "geometric-20"})
    s = play(task, 100)
    assert abs(np.diff(s["block"], axis=0)[np.diff(s["block"], axis=0) >= 0].mean() - 0.05) < 0.005
    assert _replays_exactly_after_a_state_restore(make_task("foraging", 8, seed=3, options={"blocks": "geometric-5"}), 300)


@pytest.mark.parametrize("value", ["2", "0-3", "5-3", "a-b", "geometric-0.5", "geometric-", "hazard-10"])
def test_a_bad_blocks_value_is_refused_naming_the_flag(value):
    with pytest.raises(ValueError, match="--blocks"):
        make_task("foraging", 2, options={"blocks": value})


# ---- defaults: geometric-5 blocks in training, 2-4 in the test episodes ---------------------

def _tiny_run(**overrides):
    from agent.core.config import resolve_config

    return resolve_config({"task": "foraging", "num_envs": 4, "unroll": 10, "episodes": 4, **overrides})


def test_block_defaults_hazard_for_training_2_to_4_for_test():
    """Training defaults to blocks changing with hazard one fifth, and test episodes to 2 to 4
    blocks."""
    from agent.commands.evaluate import test_options
    from agent.core.config import resolve_config
    from agent.simulations.registry import get_task_class

    config = resolve_config({"task": "foraging"})
    assert config.task_options["blocks"] == "geometric-5"
    assert resolve_config({"task": "foraging", "task_options": {"blocks": "3-6"}}).task_options["blocks"] == "3-6"
    s = play(make_task("foraging", 4000, seed=0, mode="train", options=config.task_options), 50)
    assert abs(np.diff(s["block"], axis=0).mean() - 0.2) < 0.01  # a change after each trial with probability 1/5
    foraging_class = get_task_class("foraging")
    assert test_options(foraging_class, config.task_options)["blocks"] == "2-4"
    assert test_options(foraging_class, config.task_options, {"blocks": "geometric-5"})["blocks"] == "geometric-5"
    # a run trained on another rule is tested on 2-4 blocks too, unless eval says otherwise
    assert test_options(foraging_class, {"changeover": "withhold", "blocks": "geometric-10"})["blocks"] == "2-4"


def test_default_run_trains_on_hazard_tests_on_2_to_4_blocks(tmp_path):
    """A default run trains on hazard blocks and is tested on 2 to 4 blocks unless eval
    overrides."""
    import csv
    import json

    from agent.commands.evaluate import evaluate
    from agent.commands.train import train

    trainer = train(_tiny_run(), tmp_path / "run", progress=False)
    assert trainer.task.block_rule == "geometric" and trainer.task.block_hazard == pytest.approx(0.2)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task_options"]["blocks"] == "geometric-5"

    def blocks_per_episode(eval_dir):
        with open(eval_dir / "trials.csv") as handle:
            rows = list(csv.DictReader(handle))
        last = {}
        for row in rows:
            last[row["episode"]] = max(last.get(row["episode"], 0), int(row["block"]) + 1)
        return np.array(list(last.values()))

    metrics = evaluate(tmp_path / "run", tmp_path / "eval", episodes=40, seed=1, progress=False)
    assert metrics["task_options"]["blocks"] == "2-4"
    assert set(blocks_per_episode(tmp_path / "eval").tolist()) <= {2, 3, 4}
    metrics = evaluate(tmp_path / "run", tmp_path / "eval-g5", episodes=40, seed=1, progress=False,
                       task_options={"blocks": "geometric-5"})
    assert metrics["task_options"]["blocks"] == "geometric-5"
    assert blocks_per_episode(tmp_path / "eval-g5").mean() > 12  # about 1 + 99 / 5


def test_run_from_before_blocks_keeps_2_to_4_blocks(tmp_path):
    """A run saved before blocks existed keeps its 2 to 4 blocks on resume and at eval."""
    import json

    from agent.commands.evaluate import test_options
    from agent.commands.train import train
    from agent.simulations.registry import get_task_class

    old = _tiny_run(task_options={"blocks": "2-4"})
    train(old, tmp_path, progress=False, stop_after_updates=1)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["task_options"] = {"changeover": "none"}  # as written before --blocks existed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    # the new training default would change the run's episodes halfway: refused, naming the option
    with pytest.raises(ValueError, match=r"'blocks': '2-4'\}, given \{'changeover': 'none', 'blocks': 'geometric-5'"):
        train(_tiny_run(), tmp_path, progress=False)
    trainer = train(old, tmp_path, progress=False)  # --blocks 2-4: resumed
    assert trainer.task.block_rule == "count" and trainer.task.block_counts == (2, 4)
    assert test_options(get_task_class("foraging"), {"changeover": "none"})["blocks"] == "2-4"


# ---- reference strategies (agent/simulations/foraging/baselines.py) ---------------------------

def test_known_rates_policy_stays_on_sure_arm_alternates_equal():
    """The optimal known-rates policy stays on a sure arm and alternates between equal ones."""
    from agent.simulations.foraging.baselines import baiting_q_values

    q = baiting_q_values(np.array([0.0, 0.1, 0.25]), max_count=40)
    assert (q[0, :, :, 1] > q[0, :, :, 0]).all()  # arm 0 never pays: always arm 1
    assert q[2, 1, 0, 0] > q[2, 1, 0, 1] and q[2, 0, 1, 1] > q[2, 0, 1, 0]  # equal rates: switch at once
    # rates 0.1 / 0.4: sit on arm 1 and visit arm 0 once its bait has built up, not before
    visit = [k for k in range(1, 41) if q[1, k, 0, 0] > q[1, k, 0, 1]]
    assert visit and 2 <= visit[0] <= 10 and visit == list(range(visit[0], 41))
    # Bellman: Q(n0, n1, a) = earn + discount * max Q(next)
    earn = 1 - 0.9 ** 4
    assert q[1, 3, 0, 0] == pytest.approx(earn + 0.98 * q[1, 0, 1].max(), abs=1e-4)


def test_belief_agent_recovers_the_base_rate_of_a_single_block():
    from agent.simulations.foraging.baselines import BeliefOptimal
    from agent.simulations.foraging.strategies import play as play_strategy

    agent = BeliefOptimal(hazard=0.0, lapse=0.2, grid_points=26)
    trials = play_strategy(agent, 400, seed=0, options={"blocks": "1-1"})
    truth = trials["base_0"].reshape(400, 100)[:, 0]
    estimate = agent.posterior @ agent.grid
    assert np.abs(estimate - truth).mean() < 0.06


def test_reference_strategies_through_the_regression():
    from agent.simulations.foraging.baselines import Alternate, KnownRatesOptimal, RandomChoice
    from agent.simulations.foraging.strategies import play as play_strategy, summarize

    oracle = summarize(play_strategy(KnownRatesOptimal(grid_points=26), 300, seed=0))
    alternate = summarize(play_strategy(Alternate(), 300, seed=0))
    random = summarize(play_strategy(RandomChoice(), 300, seed=0))
    assert oracle["reward_per_trial"] > alternate["reward_per_trial"] > random["reward_per_trial"]
    assert alternate["stay_rates"]["stay"] < 0.1 and alternate["choice_kernel"][0] < -2
    for ignores_rewards in (alternate, random):  # no use of rewards: no reward kernel
        ci = np.array(ignores_rewards["reward_kernel_ci95"][:5])
        assert (ci[:, 0] < 0.3).all() and (ci[:, 1] > -0.3).all()
