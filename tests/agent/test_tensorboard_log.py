"""train --tensorboard writes the metrics.jsonl lines and the config as TensorBoard events."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agent.commands.train import train
from agent.core.config import resolve_config


def test_tensorboard_gets_every_metrics_line_and_the_config(tmp_path):
    """TensorBoard gets every metrics line and the config, and a resume drops the lost tail."""
    run = tmp_path / "run"
    config = resolve_config({"task": "bandit_independent", "episodes": 64, "log_every": 1, "checkpoint_every": 4})
    train(config, run, progress=False, tensorboard=True, stop_after_updates=6)  # killed after update 6
    train(config, run, progress=False, tensorboard=True)  # resumes from update 4
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = events.Scalars("train/reward_per_trial")
    assert [e.step for e in logged] == [line["update"] for line in lines]  # updates 5, 6 not twice
    assert [e.value for e in logged] == pytest.approx([line["reward_per_trial"] for line in lines])
    assert "config/text_summary" in events.Tags()["tensors"]
