"""Data-parallel training (agent/infra/distributed.py) on CPU with gloo: the averaged gradient is
the combined batch's, a two-rank run launched by torchrun resumes exactly after a kill, a run is
not resumed with another world size, and a run directory another process holds stops every
rank. No network: torchrun --standalone on localhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from agent.cli import STOP_AFTER_UPDATES_VARIABLE, main
from agent.core.a2c import a2c_loss
from agent.infra.checkpoint import load_checkpoint
from agent.infra.distributed import World, average_gradients
from agent.infra.shm_allreduce import ALL_REDUCE_VARIABLE
from lock_holder import start_lock_holder

pytestmark = pytest.mark.slow  # starts subprocesses

ROOT = Path(__file__).resolve().parents[2]
STEPS, BATCH, INPUTS, ACTIONS = 6, 8, 5, 3


def _batch():
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(STEPS, BATCH, INPUTS, generator=generator, dtype=torch.float64)
    actions = torch.randint(ACTIONS, (STEPS, BATCH), generator=generator)
    returns = torch.randn(STEPS, BATCH, generator=generator, dtype=torch.float64)
    return inputs, actions, returns


def _gradients(rows: slice, world: World | None) -> list[torch.Tensor]:
    """The A2C loss's gradient over the batch columns `rows` (float64), averaged over the world if given."""
    torch.manual_seed(0)  # the same initial weights on every rank, as Trainer does
    model = torch.nn.Linear(INPUTS, ACTIONS + 1).double()
    inputs, actions, returns = (t[:, rows] for t in _batch())
    out = model(inputs)
    loss = a2c_loss(out[..., :ACTIONS], out[..., ACTIONS], actions, returns, value_coef=0.05, entropy_coef=0.05)
    loss.total.backward()
    if world is not None:
        summed = average_gradients(model.parameters(), world, sums=[world.rank + 1, 0.25 * world.rank])
        assert summed == [3.0, 0.25]  # the statistics travel in the same message, summed over the ranks
    return [p.grad for p in model.parameters()]


def _rank_main(rank: int, world_size: int, store_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)
    try:
        half = BATCH // world_size
        grads = _gradients(slice(rank * half, (rank + 1) * half), World(rank, world_size, rank, True))
        torch.save(grads, os.path.join(out_dir, f"grads{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_ranks_average_to_the_gradient_of_the_combined_batch(tmp_path):
    mp.spawn(_rank_main, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"grads{r}.pt") for r in (0, 1))
    combined = _gradients(slice(0, BATCH), None)
    for a, b, whole in zip(rank0, rank1, combined):
        assert torch.equal(a, b)  # every rank takes the same step
        torch.testing.assert_close(a, whole, rtol=1e-12, atol=1e-14)
    half = _gradients(slice(0, BATCH // 2), None)
    assert not torch.allclose(half[0], combined[0])  # the halves alone differ: the average did the work


TRAIN = ["--task", "bandit_independent", "--episodes", "64", "--num-envs", "4", "--unroll", "10",
         "--checkpoint-every", "3", "--log-every", "2", "--quiet"]


def _torchrun(out: Path, **env) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "agent", "train", *TRAIN, "--out", str(out)]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output


def _metrics(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("steps_per_second"), line.pop("train_seconds")
    return lines


def _assert_same_tree(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_tree(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tree(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    """An uninterrupted two-rank run and one killed after 20 updates (last checkpoint at 18),
    launched side by side; then the uninterrupted run again with gloo's all-reduce."""
    root = tmp_path_factory.mktemp("distributed")
    whole, killed = _torchrun(root / "whole"), _torchrun(root / "killed", **{STOP_AFTER_UPDATES_VARIABLE: "20"})
    _finish(whole)
    _finish(killed)
    _finish(_torchrun(root / "gloo", **{ALL_REDUCE_VARIABLE: "gloo"}))
    return root / "whole", root / "killed"


def test_shared_memory_and_gloo_all_reduces_train_identical_weights(two_rank_runs):
    """Two ranks on one host reduce through shared memory by default; gloo's sum has the same bits."""
    whole, _ = two_rank_runs
    a, b = load_checkpoint(whole), load_checkpoint(whole.parent / "gloo")
    assert (a["all_reduce"], b["all_reduce"]) == ("shared memory", "gloo")
    assert a["trainer"]["updates"] == b["trainer"]["updates"] > 0
    _assert_same_tree(a["trainer"]["agent"], b["trainer"]["agent"])
    _assert_same_tree(a["trainer"]["optimizer"], b["trainer"]["optimizer"])
    assert _metrics(whole) == _metrics(whole.parent / "gloo")


def test_killed_two_rank_run_resumes_identical(two_rank_runs):
    """A killed two-rank run resumes and ends identical to an uninterrupted one."""
    whole, killed = two_rank_runs
    interrupted = load_checkpoint(killed)
    assert not interrupted["finished"] and interrupted["trainer"]["updates"] == 18
    assert interrupted["world_size"] == 2 and len(interrupted["rank_states"]) == 2
    ranks = interrupted["rank_states"]
    assert not torch.equal(ranks[0]["sampler"], ranks[1]["sampler"])  # each rank its own seeds
    _finish(_torchrun(killed))  # the same command again resumes
    a, b = load_checkpoint(whole), load_checkpoint(killed)
    assert a["finished"] and b["finished"] and a["trainer"]["episodes"] >= 64
    b["trainer"]["train_seconds"] = a["trainer"]["train_seconds"]
    b["trainer"]["log_window"]["seconds"] = a["trainer"]["log_window"]["seconds"]
    _assert_same_tree(a, b)  # weights, optimizer, every rank's task, sampler and carry, counters
    assert _metrics(whole) == _metrics(killed)
    # rank 0 writes the world's steps: unroll x envs x 2 ranks per update
    assert a["trainer"]["env_steps"] == a["trainer"]["updates"] * 10 * 4 * 2


def test_resuming_with_another_world_size_is_refused_before_any_work(two_rank_runs, capsys):
    whole, _ = two_rank_runs
    before = (whole / "checkpoint.pt").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *TRAIN, "--episodes", "128", "--out", str(whole)])  # one process, no torchrun
    assert exit_info.value.code == 2
    # settings are checked first; with the same settings the world size is named
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *TRAIN, "--out", str(whole)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "world size 2" in err and "world size 1" in err
    assert (whole / "checkpoint.pt").read_bytes() == before


def test_held_run_stops_every_rank_naming_the_holder(tmp_path):
    """A run held by another process stops every rank at once, naming the holder.

    Rank 0 alone takes RUN_DIR/.lock (the run directory may be on its node only); when another
    process holds it, rank 0's refusal reaches every rank (first_rank_decides), so the launch
    exits non-zero naming the holder's pid, instead of rank 1 training alone or hanging."""
    run = tmp_path / "R"
    holder = start_lock_holder(run)
    try:
        launch = _torchrun(run)
        output, _ = launch.communicate(timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert launch.returncode != 0
    # each rank's one line (counted in the text: two processes' lines may still interleave)
    assert output.count(f"error: --out {run}: the run is being trained by process {holder.pid} ") == 2, output
    assert str(ROOT / "agent") not in output, output  # and no traceback of ours (torchrun prints its own)
    assert sorted(p.name for p in run.iterdir()) == [".lock"]
