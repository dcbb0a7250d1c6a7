"""Harlow's objects (issue #27): the procedural generator, the option errors, the curriculum."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.simulations.harlow import objects as objects_module
from agent.simulations.harlow.objects import IMAGE_SIZE, ObjectSet, procedural_images, split_pools
from agent.simulations.registry import make_task

REPO = Path(__file__).resolve().parents[2]


def test_generator_is_deterministic_and_prefix_stable():
    """The generator is deterministic per stream, and a shorter count is a prefix."""
    a, b = procedural_images(3000, stream=0), procedural_images(3000, stream=0)
    assert a.shape == (3000, IMAGE_SIZE) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.array_equal(procedural_images(500, stream=0), a[:500])
    assert not np.array_equal(procedural_images(500, stream=0, entropy=1), a[:500])


def test_train_and_test_streams_share_no_object():
    """Training and test streams share no object, and every object is distinct."""
    train, test = procedural_images(4000, stream=0), procedural_images(4000, stream=1)
    rows = lambda images: {row.tobytes() for row in images}  # noqa: E731
    assert len(rows(train)) == len(train) and len(rows(test)) == len(test)  # no repeats within a stream
    assert not rows(train) & rows(test)
    assert 0 <= train.min() and train.max() <= 1 and (train.std(axis=1) >= 0.12).all()  # not blank
    # distinct, not just different in one bit: nearest other object of each (first 500) is far
    sample = train[:500]
    distances = np.sqrt(((sample[:, None] - sample[None]) ** 2).sum(-1)) + np.eye(len(sample)) * 1e9
    assert np.median(distances.min(axis=1)) > 1.0  # RMS pixel difference > 1/8 of the grey range
    assert len(np.unique(train.round(1), axis=0)) == len(train)  # still distinct at 10 grey levels


def test_procedural_pools_are_the_two_streams_whatever_the_holdout(monkeypatch):
    monkeypatch.setattr(objects_module, "PROCEDURAL_TRAIN", 300)
    monkeypatch.setattr(objects_module, "PROCEDURAL_TEST", 100)
    monkeypatch.setattr(objects_module, "_cached", lambda count, stream: procedural_images(count, stream))
    objects_module._procedural.cache_clear()
    try:
        objects = objects_module.load_objects("procedural")
        assert objects.images.shape == (400, IMAGE_SIZE) and objects.num_classes == 400
        for holdout in ("images", "classes"):
            train, test = split_pools(objects, holdout, seed=0)
            assert np.array_equal(train, np.arange(300)) and np.array_equal(test, np.arange(300, 400))
        task = make_task("harlow", 8, seed=0, mode="test", options={"objects": "procedural", "readout": "linear"})
        assert set(task.pool_ids.tolist()) == set(range(300, 400))
        assert np.array_equal(task.pool_images.numpy(), procedural_images(100, stream=1))
    finally:
        objects_module._procedural.cache_clear()


def _save(path: Path, shape=(8, 8), seed=0):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def _resolve(**options):
    from agent.simulations.registry import get_task_class

    return get_task_class("harlow").resolve_options(options)


def test_bad_objects_are_refused_in_one_line_naming_the_option(tmp_path):
    with pytest.raises(ValueError, match="^--objects: expected 'digits', 'procedural' or a directory"):
        _resolve(objects="imagenet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="^--objects .*empty: found 0 PNG/JPEG images"):
        _resolve(objects=str(tmp_path / "empty"))
    for i in range(4):
        _save(tmp_path / "unreadable" / ("a" if i % 2 else "b") / f"{i}.png", seed=i)
    (tmp_path / "unreadable" / "a" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="^--objects .*unreadable: cannot read a/broken.png"):
        _resolve(objects=str(tmp_path / "unreadable"))
    for i in range(6):
        _save(tmp_path / "one" / "cups" / f"{i}.png", seed=i)
    with pytest.raises(ValueError, match="^--holdout classes: --objects .*one has 1 class"):
        _resolve(objects=str(tmp_path / "one"), holdout="classes")
    with pytest.raises(ValueError, match="^--objects .*one: the images form 1 class"):
        _resolve(objects=str(tmp_path / "one"), holdout="images")
    for i in range(4):
        _save(tmp_path / "mixed" / f"{i}.png", shape=(8, 8) if i < 2 else (16, 12), seed=i)
    with pytest.raises(ValueError, match=r"^--objects .*mixed: images of mixed sizes \(0.png is 8x8, 2.png is 12x16\)"):
        _resolve(objects=str(tmp_path / "mixed"))
    for bad in ("1-100", "8", "8-0", "few"):
        with pytest.raises(ValueError, match="^--curriculum: expected 'none' or START-EPISODES"):
            _resolve(curriculum=bad)
    for i in range(4):  # a flat folder: every image its own class, fine for either holdout
        _save(tmp_path / "flat" / f"{i}.png", seed=i)
    assert _resolve(objects=str(tmp_path / "flat"), holdout="classes")["objects"] == str(tmp_path / "flat")


@pytest.mark.slow
def test_the_command_line_refuses_a_bad_folder_before_any_work(tmp_path):
    for i in range(4):
        _save(tmp_path / "mixed" / f"{i}.png", shape=(8, 8) if i < 2 else (9, 9), seed=i)
    out = subprocess.run([sys.executable, "-m", "agent", "train", "--task", "harlow", "--objects",
                          str(tmp_path / "mixed"), "--out", str(tmp_path / "run")], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("python -m agent train: error: --objects ")
    assert "mixed sizes" in out.stderr and not (tmp_path / "run").exists()


def test_curriculum_grows_training_objects_from_a_prefix():
    """The curriculum grows the training objects from a prefix of the pool."""
    task = make_task("harlow", 16, seed=0, options={"curriculum": "4-96", "readout": "linear"})
    pool = len(task.pool_ids)
    assert task._drawable() == 4
    first = set(task.pool_ids[:4].tolist())
    shown = set(task.good.tolist()) | set(task.bad.tolist())
    assert {task.pool_ids[i].item() for i in shown} <= first
    sizes = []
    for _ in range(8):  # 8 episodes of 16 rows: 128 > 96
        for _ in range(12):
            task.step(torch.full((16,), 1, dtype=torch.long))
        sizes.append(task._drawable())
    assert sizes == sorted(sizes) and sizes[0] < pool and sizes[-1] == pool
    state = task.state_dict()
    again = make_task("harlow", 16, seed=1, options={"curriculum": "4-96", "readout": "linear"})
    again.load_state_dict(state)
    assert again.episodes_begun == task.episodes_begun
    test = make_task("harlow", 16, seed=0, mode="test", options={"curriculum": "4-96"})
    assert test._drawable() == len(test.pool_ids)  # test episodes use the whole test pool


def test_the_plain_agent_learns_within_an_episode_which_object_pays():
    """A small run of the plain agent (linear heads, no object readout) on two objects: the hint
    (brighter rewarded at first, 50/50 from episode 10k) gets it past the parity that keeps a 50/50
    start at chance; with the hint gone, trial 2 beats chance because trial 1 was remembered."""
    from agent.commands.evaluate import run_frozen_episodes
    from agent.core.config import resolve_config
    from agent.core.trainer import Trainer

    options = {"readout": "linear", "feedback": "chosen", "curriculum": "2-1000000000"}  # two objects throughout
    # the paper's A2C weights (gamma 0.9, value 0.05, entropy 0.05 throughout), hint only: the
    # settings this small run was measured with (the defaults' 300k-episode recipe is documented
    # in docs/harlow-plain-agent.md, too long for a test)
    config = resolve_config(dict(task="harlow", hidden_size=64, num_envs=128, lr=2e-3, episodes=20_000,
                                 max_grad_norm=1.0, seed=1, gamma=0.9, value_coef=0.05, entropy_coef_final=-1.0,
                                 task_options={**options, "hint": "1.0-10000", "first_loss": "none"}))
    trainer = Trainer(config)
    while trainer.episodes < config.episodes:
        trainer.update()
    task = make_task("harlow", 500, seed=7, options=options)  # the same two objects, sides and reward 50/50
    trials = run_frozen_episodes(trainer.agent, task, torch.Generator().manual_seed(1))
    accuracy = [float((trials["reward"][trials["trial"] == k] > 0).mean()) for k in range(6)]
    assert 0.4 < accuracy[0] < 0.6  # trial 1: a guess
    assert accuracy[1] > 0.65  # trial 2: chance is 0.5, n = 500 (measured: 0.97)
