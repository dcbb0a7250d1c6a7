"""Checkpoints are safe to share and fail clearly: loading never runs code from the file, a
damaged file gets a one-line error naming it and what to do, the checkpoint before the last
is kept, and an --out that is a file is refused before any work."""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agent.cli import main
from agent.infra.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True, text=True)


class Payload:
    """An object whose unpickling would run code (it writes a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    """A checkpoint that would run code is refused, and the code never runs."""
    marker = tmp_path / "marker"
    torch.save({"trainer": Payload(str(marker)), "config": {}}, checkpoint_path(tmp_path))
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path)
    assert not marker.exists()


@pytest.mark.slow
def test_truncated_checkpoint_gets_one_line_naming_the_files(tmp_path):
    """A truncated checkpoint gets one line naming the file and the previous one."""
    run = tmp_path / "run"
    assert main(["train", "--task", "bandit_independent", "--episodes", "64", "--checkpoint-every", "1",
                 "--quiet", "--out", str(run)]) == 0
    previous = run / "checkpoint.prev.pt"
    assert previous.is_file()  # the checkpoint before the last is kept
    assert load_checkpoint(run)["finished"] and not torch.load(previous, weights_only=True)["finished"]
    data = checkpoint_path(run).read_bytes()
    checkpoint_path(run).write_bytes(data[: len(data) // 2])
    out = run_cli("eval", str(run), "--episodes", "4", "--out", str(tmp_path / "eval"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert str(checkpoint_path(run)) in line and f"move {previous} over it" in line
    out = run_cli("train", "--task", "bandit_independent", "--episodes", "64", "--checkpoint-every", "1",
                  "--quiet", "--out", str(run))
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    # following the advice resumes the run
    previous.replace(checkpoint_path(run))
    assert main(["train", "--task", "bandit_independent", "--episodes", "64", "--checkpoint-every", "1",
                 "--quiet", "--out", str(run)]) == 0
    assert load_checkpoint(run)["finished"]


def test_saving_over_a_checkpoint_keeps_the_last_good_one(tmp_path):
    """Saving over a checkpoint keeps the last good one under its second name."""
    save_checkpoint(tmp_path, {"n": 1})
    save_checkpoint(tmp_path, {"n": 2})
    assert load_checkpoint(tmp_path) == {"n": 2}
    assert torch.load(tmp_path / "checkpoint.prev.pt", weights_only=True) == {"n": 1}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["train", "--task", "bandit_independent", "--episodes", "4"],
    ["demo"],
])
def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path, command):
    target = tmp_path / "taken"
    target.write_text("not a directory")
    out = run_cli(*command, "--out", str(target))
    assert out.returncode == 2 and "--out" in out.stderr and "is a file" in out.stderr
    assert target.read_text() == "not a directory"


def test_eval_refuses_an_out_that_is_a_file(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "bandit_independent", "--episodes", "4", "--quiet", "--out", str(run)]) == 0
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(run), "--out", str(target)])
    assert exit_info.value.code == 2 and "is a file" in capsys.readouterr().err


def test_a_pickle_that_is_not_a_checkpoint_at_all_is_named(tmp_path):
    checkpoint_path(tmp_path).write_bytes(pickle.dumps([1, 2, 3], protocol=2) + b"garbage")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path)
    assert str(checkpoint_path(tmp_path)) in str(error.value) and "\n" not in str(error.value)

