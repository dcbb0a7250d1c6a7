"""The Harlow task (Simulation 5): what it rewards, where it puts the objects, which images each
pool holds, and the whole path through the command line (train, eval, verify)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.simulations.harlow.objects import IMAGE_SIZE, load_objects, split_pools
from agent.simulations.harlow.task import FIXATE, FIXATION_REWARD, LEFT, RIGHT, TRIALS_PER_EPISODE
from agent.simulations.registry import make_task

REPO = Path(__file__).resolve().parents[2]


def play(task, choose, episodes=1):
    """Play `episodes` episodes per row; choose(task, step_obs) -> choice-step actions. Returns
    the per-trial records (dict of (trials, B) tensors) and the fixation-step rewards."""
    task.recording = True
    task.reset()
    records, fixation_rewards = [], []
    for _ in range(episodes * TRIALS_PER_EPISODE):
        fixation_rewards.append(task.step(torch.full((task.num_envs,), FIXATE)).reward)
        result = task.step(choose(task, task.observe()))
        records.append(result.record)
    return {k: torch.stack([r[k] for r in records]) for k in records[0]}, torch.stack(fixation_rewards)


def always(action):
    return lambda task, obs: torch.full((task.num_envs,), action)


def test_the_reward_follows_the_object_not_the_side():
    task = make_task("harlow", 400, seed=0)
    trials, _ = play(task, always(LEFT))
    left_is_rewarded = trials["left_id"] == trials["rewarded_id"]
    assert torch.equal(trials["reward"] > 0, left_is_rewarded)
    assert 0.4 < float(left_is_rewarded.float().mean()) < 0.6  # always-left is at chance
    # a policy that picks the episode's rewarded image wherever it is gets every trial right
    def follow_the_object(task, obs):
        good = task.pool_images[task.good]
        return torch.where((obs[:, 1 : 1 + IMAGE_SIZE] == good).all(dim=1), LEFT, RIGHT)

    trials, _ = play(make_task("harlow", 400, seed=1), follow_the_object)
    assert bool((trials["reward"] == 1).all())
    assert torch.equal(trials["chosen_id"], trials["rewarded_id"])


def test_episode_holds_two_objects_of_different_classes():
    """Each episode holds two objects of different classes for all its trials."""
    task = make_task("harlow", 500, seed=2)
    trials, _ = play(task, always(RIGHT), episodes=2)
    labels = torch.as_tensor(task.objects.labels)
    pair = torch.stack([trials["left_id"], trials["right_id"]])
    assert bool((labels[pair[0]] != labels[pair[1]]).all())
    for episode in (slice(0, 6), slice(6, 12)):
        ids = pair[:, episode]
        assert bool((ids.min(0).values == ids.min(0).values[0]).all())  # the same two objects all episode
        assert bool((ids.max(0).values == ids.max(0).values[0]).all())
        assert bool((trials["rewarded_id"][episode] == trials["rewarded_id"][episode][0]).all())
    assert not torch.equal(pair[:, 0], pair[:, 6])  # a new episode draws new objects


def test_balanced_positions_put_the_rewarded_object_left_thrice():
    """Balanced positions put the rewarded object left three times, and independent ones do not."""
    balanced = make_task("harlow", 2000, seed=3, options={"positions": "balanced"})
    trials, _ = play(balanced, always(LEFT))
    lefts = (trials["left_id"] == trials["rewarded_id"]).sum(0)
    assert bool((lefts == 3).all())
    independent = make_task("harlow", 2000, seed=3)
    trials, _ = play(independent, always(LEFT))
    lefts = (trials["left_id"] == trials["rewarded_id"]).sum(0).float()
    counts = torch.bincount(lefts.long(), minlength=7).float() / len(lefts)
    binomial = torch.tensor([1, 6, 15, 20, 15, 6, 1]) / 64
    assert float((counts - binomial).abs().max()) < 0.03


def test_fixation_pays_only_the_fixate_action_and_shows_only_the_mark():
    task = make_task("harlow", 8, seed=4, options={"feedback": "mark"})
    obs = task.reset()
    assert bool((obs[:, 0] == 1).all()) and float(obs[:, 1:].abs().sum()) == 0
    assert bool((task.step(torch.full((8,), FIXATE)).reward == FIXATION_REWARD).all())
    choice = task.step(torch.full((8,), LEFT))  # images were up; now the next trial's fixation
    assert float(choice.obs[:, 1:].abs().sum()) == 0
    assert bool((task.step(torch.full((8,), RIGHT)).reward == 0).all())
    withheld = task.step(torch.full((8,), FIXATE))  # no choice on a choice step: an error
    assert bool((withheld.reward == -1).all())


def test_chosen_feedback_keeps_the_chosen_object_in_view_where_it_stood():
    task = make_task("harlow", 8, seed=5, options={"feedback": "chosen"})
    task.reset()
    task.step(torch.full((8,), FIXATE))
    shown = task.observe()
    after = task.step(torch.full((8,), RIGHT)).obs
    assert bool((after[:, 0] == 1).all())
    assert float(after[:, 1 : 1 + IMAGE_SIZE].abs().sum()) == 0
    assert torch.equal(after[:, 1 + IMAGE_SIZE :], shown[:, 1 + IMAGE_SIZE :])
    # a new episode starts on the bare mark: no object of the last episode stays in view
    one_trial = make_task("harlow", 8, seed=5, options={"feedback": "chosen"}, trials_per_episode=1)
    one_trial.reset()
    one_trial.step(torch.full((8,), FIXATE))
    ended = one_trial.step(torch.full((8,), LEFT))
    assert bool(ended.done.all()) and float(ended.obs[:, 1:].abs().sum()) == 0


@pytest.mark.parametrize("holdout", ["images", "classes"])
def test_pools_are_disjoint_and_the_task_draws_from_its_own(holdout):
    """Training and test pools are disjoint, and the task draws only from its pool."""
    objects = load_objects()
    train, test = split_pools(objects, holdout, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(objects.labels)
    if holdout == "classes":
        assert len(np.intersect1d(objects.labels[train], objects.labels[test])) == 0
    else:
        assert set(objects.labels[test]) == set(range(10))  # every class in both pools
    for mode, pool in (("train", train), ("test", test)):
        task = make_task("harlow", 300, seed=6, mode=mode, options={"holdout": holdout})
        trials, _ = play(task, always(LEFT))
        assert set(trials["left_id"].unique().tolist()) <= set(pool.tolist())


def test_an_image_folder_is_an_object_set_and_a_bad_one_is_refused(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cup", "shoe", "key", "lamp"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            pixels = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.{'png' if i else 'jpg'}")
    objects = load_objects(str(tmp_path))
    assert objects.images.shape == (12, IMAGE_SIZE) and objects.num_classes == 4
    assert 0 <= objects.images.min() and objects.images.max() <= 1
    task = make_task("harlow", 4, seed=0, options={"objects": str(tmp_path)})
    assert task.reset().shape == (4, 1 + 2 * IMAGE_SIZE)
    with pytest.raises(ValueError, match="--objects"):
        load_objects(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="--positions"):
        make_task("harlow", 4, options={"positions": "alternating"})
    with pytest.raises(ValueError, match="--positions: not an option of task 'two_step'"):
        make_task("two_step", 4, options={"positions": "balanced"})


def run_cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_cli_train_and_eval_write_every_named_file(tmp_path):
    """train and eval through the command line write every file the issue names."""
    run, ev = tmp_path / "run", tmp_path / "eval"
    out = run_cli("train", "--task", "harlow", "--episodes", "300", "--num-envs", "16", "--hidden-size", "32",
                  "--positions", "balanced", "--quiet", "--out", str(run))
    assert out.returncode == 0, out.stderr
    objects = json.loads((run / "objects.json").read_text())
    assert objects["source"] == "digits" and not set(objects["train"]) & set(objects["test"])
    assert sorted(p.name for p in (run / "quantiles").iterdir()) == [f"q{k:02d}.pt" for k in range(1, 11)]
    out = run_cli("eval", str(run), "--episodes", "40", "--out", str(ev))
    assert out.returncode == 0, out.stderr
    lines = (ev / "trials.csv").read_text().splitlines()
    assert lines[0] == "episode,trial,left_id,right_id,rewarded_id,action,chosen_id,reward,value,rpe"
    assert len(lines) == 1 + 40 * TRIALS_PER_EPISODE
    rows = np.array([[int(float(v)) for v in line.split(",")] for line in lines[1:]])
    assert set(rows[:, 2]) <= set(objects["test"])  # eval plays the test pool only
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["task_options"]["positions"] == "independent"  # eval's default, not the run's
    assert len(metrics["accuracy_by_trial"]) == TRIALS_PER_EPISODE
    assert sorted(metrics["quantile_accuracy"]) == sorted(str(k) for k in range(1, 11))
    assert {Path(f).name for f in metrics["figures"]} == {"harlow_accuracy.png", "harlow_episodes.png",
                                                         "harlow_learning_curve.png"}
    curve_episodes = [row["episodes"] for row in metrics["learning_curve"]]
    assert curve_episodes == sorted(curve_episodes) and curve_episodes[-1] >= 300
    assert "trial 1" in out.stdout
    out = run_cli("eval", str(run), "--episodes", "4", "--positions", "balanced", "--out", str(tmp_path / "bal"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "bal" / "metrics.json").read_text())["task_options"]["positions"] == "balanced"
    out = run_cli("eval", str(run), "--episodes", "4", "--positions", "sideways", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "--positions" in out.stderr


def test_verify_compares_encoder_and_core_gradients():
    """verify compares the image encoder's and the LSTM's gradients of the fast and reference cores
    (the default plain agent: no object readout)."""
    from agent.commands.verify import verify_task

    result = verify_task("harlow")
    assert result.ok, result.message
    compared = result.details["parameters_compared"]
    assert {"encoder.mlp.0.weight", "encoder.mlp.2.weight", "core.weight_ih_l0"} <= set(compared)
    # 4 rows of a 128-unit core: the dispatch table sends the rollout's steps to torch's lstm_cell
    # (weights over 256 KiB, fewer than 32 rows); the learning pass runs the fused sequence kernel
    assert result.details["fast_backend"] in ("cpp", "lstm_cell")


def test_a_forced_first_loss_loses_whichever_object_trial_one_picks():
    """--first-loss 1.0: trial 1 loses whatever the choice, the object picked there is the
    unrewarded one for the rest of the episode (where it stood: the view does not change), and the
    other trials pay as usual; test episodes are never forced."""
    task = make_task("harlow", 400, seed=3, options={"first_loss": "1.0"})
    task.recording = True
    task.reset()
    rows = torch.arange(400)
    first_pick = torch.where(rows % 2 == 0, LEFT, RIGHT)
    records = []
    for trial in range(TRIALS_PER_EPISODE):
        task.step(torch.full((400,), FIXATE))
        shown = task.observe().clone()
        records.append(task.step(first_pick if trial == 0 else always(LEFT)(task, None)).record)
        if trial == 0:
            picked = shown[:, 1 : 1 + IMAGE_SIZE].where((first_pick == LEFT).unsqueeze(1), shown[:, 1 + IMAGE_SIZE :])
            assert torch.equal(picked, task.pool_images[task.bad])  # the picked image is now the unrewarded one
    trials = {k: torch.stack([r[k] for r in records]) for k in records[0]}
    assert bool((trials["reward"][0] == -1).all())
    assert bool((trials["rewarded_id"] == trials["rewarded_id"][0]).all())  # one rewarded object per episode
    assert bool((trials["chosen_id"][0] != trials["rewarded_id"][0]).all())
    later = trials["reward"][1:] > 0
    assert torch.equal(later, trials["left_id"][1:] == trials["rewarded_id"][1:])
    assert 0.4 < float(later.float().mean()) < 0.6  # always-left after the forced loss: a guess
    # a share Q of episodes is forced; none at test
    half = make_task("harlow", 2000, seed=4, options={"first_loss": "0.5"})
    half.reset()
    assert 0.45 < float(half.forced_loss.float().mean()) < 0.55
    test = make_task("harlow", 200, seed=4, mode="test", options={"first_loss": "1.0"})
    test.reset()
    assert not bool(test.forced_loss.any())
    # the flags survive a checkpoint
    again = make_task("harlow", 2000, seed=9, options={"first_loss": "0.5"})
    again.load_state_dict(half.state_dict())
    assert torch.equal(again.forced_loss, half.forced_loss)


def test_first_loss_schedule_falls_to_zero_and_bad_values_are_refused():
    from agent.simulations.harlow.task import parse_first_loss

    task = make_task("harlow", 1000, seed=5, options={"first_loss": "1.0-2000"})
    task.reset()
    assert bool(task.forced_loss.all())  # episode 0: probability 1
    for _ in range(2 * TRIALS_PER_EPISODE * 2):  # two episodes per row (two steps a trial): 2000 begun
        task.step(torch.full((1000,), FIXATE))
    assert not bool(task.forced_loss.any())  # the third episode is drawn with the schedule over
    assert parse_first_loss("none") is None and parse_first_loss("0.25") == (0.25, None)
    for bad in ("x", "1.5", "0.5-0", "0.5-ten", "-1"):
        with pytest.raises(ValueError, match="^--first-loss: expected 'none', Q or Q-EPISODES"):
            parse_first_loss(bad)


def test_auto_hint_takes_the_probability_the_runs_were_measured_with():
    """--hint auto-E resolves per object set from its brightness differences: 1.0 on digits (whose
    pairs differ little), 0.75 on procedural objects, the values the five-seed runs used; test
    episodes are never hinted; a bad value is refused naming --hint."""
    from agent.simulations.harlow.task import parse_hint

    for objects, probability in (("digits", 1.0), ("procedural", 0.75)):
        task = make_task("harlow", 4, seed=0, options={"objects": objects, "holdout": "classes", "hint": "auto-100000"})
        assert task.hint == (probability, 100_000)
    assert make_task("harlow", 4, seed=0, mode="test", options={"hint": "auto-100000"}).hint is None
    assert parse_hint("auto-50") == (None, 50)
    for bad in ("auto", "auto-0", "0.4-10", "1.0-x"):
        with pytest.raises(ValueError, match="^--hint: expected 'none', P-EPISODES or auto-EPISODES"):
            parse_hint(bad)
