"""The gradients' all-reduce through shared memory (agent/infra/shm_allreduce.py): the same sum
as gloo's on every rank, generation after generation with ranks arriving out of step; no file
left behind; a missing rank is named after the timeout; where it does not apply, or the mapping
finds no room, gloo runs."""

from __future__ import annotations

import errno
import os
import time
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from agent.infra import shm_allreduce
from agent.infra.shm_allreduce import SharedMemoryAllReduce, eligible

pytestmark = pytest.mark.slow  # starts subprocesses

GENERATIONS = 120


def _sums(rank: int, world_size: int, store_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world_size)
    reduce = SharedMemoryAllReduce(rank, world_size)
    try:
        generator = torch.Generator().manual_seed(7)
        results, gloo = [], []
        for generation in range(GENERATIONS):
            # Every rank draws every rank's data (one generator), so each knows the expected sum.
            data = [torch.randn(257, generator=generator) for _ in range(world_size)]
            if generation % 7 == rank:  # arrive late now and then: the others wait, then the buffers alternate
                time.sleep(0.002)
            flat = data[rank].clone()
            reduce(flat)
            results.append(flat)
            reference = data[rank].clone()
            dist.all_reduce(reference)
            gloo.append(reference)
        # rank 0 named the mapping after its pid
        left = [f for f in os.listdir(shm_allreduce._shared_folder()) if f.startswith(f"fastrnn-allreduce-{os.getpid()}-")]
        torch.save({"results": results, "gloo": gloo, "files": left}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        reduce.close()
        dist.destroy_process_group()


def _expected(world_size: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    sums = []
    for _ in range(GENERATIONS):
        data = [torch.randn(257, generator=generator) for _ in range(world_size)]
        total = data[0].clone()
        for other in data[1:]:
            total.add_(other)
        sums.append(total)
    return sums


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_every_rank_gets_the_rank_order_sum_each_generation(tmp_path, world_size):
    mp.spawn(_sums, args=(world_size, str(tmp_path / "store"), str(tmp_path)), nprocs=world_size, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]
    for generation, expected in enumerate(_expected(world_size)):
        for saved in ranks:
            assert torch.equal(saved["results"][generation], expected), generation  # identical bits on every rank
    if world_size <= 2:  # a + b == b + a: up to two ranks get gloo's exact bits, so training does not change
        for saved in ranks:
            assert all(torch.equal(a, b) for a, b in zip(saved["results"], saved["gloo"]))
    assert ranks[0]["files"] == []  # the mapping's name is gone once every rank has it open


def _one_rank_missing(rank: int, store_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=2)
    reduce = SharedMemoryAllReduce(rank, 2)
    try:
        reduce(torch.ones(4))  # both: the mapping is made and one generation passes
        if rank == 0:
            shm_allreduce.TIMEOUT_SECONDS = 0.3
            with pytest.raises(RuntimeError, match=r"all-reduce 2: ranks \[1\] did not arrive in 0.3 s"):
                reduce(torch.ones(4))
            open(os.path.join(out_dir, "raised"), "w").close()
        dist.barrier()
    finally:
        reduce.close()
        dist.destroy_process_group()


def test_a_rank_that_never_arrives_is_named_after_the_timeout(tmp_path):
    mp.spawn(_one_rank_missing, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "raised").exists()


def _no_room(rank: int, store_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=2)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    shm_allreduce.os.posix_fallocate = full  # this process only (spawned)
    reduce = SharedMemoryAllReduce(rank, 2)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            flat = torch.full((5,), float(rank + 1))
            reduce(flat)
        torch.save({"sum": flat, "name": reduce.name, "why": reduce.unavailable,
                    "warned": [str(w.message) for w in caught]}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        reduce.close()
        dist.destroy_process_group()


def test_without_room_for_the_mapping_gloo_sums_with_a_warning(tmp_path):
    """A full /dev/shm (a default Docker container has 64 MiB) must not kill a rank with SIGBUS."""
    mp.spawn(_no_room, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for saved in ranks:
        assert torch.equal(saved["sum"], torch.full((5,), 3.0))
        assert saved["name"] == "gloo" and "No space left on device" in saved["why"]
    assert any("shared-memory all-reduce unavailable" in w for w in ranks[0]["warned"])
    assert ranks[1]["warned"] == []  # rank 0 alone says it


def test_where_shared_memory_does_not_apply_gloo_reduces(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.delenv(shm_allreduce.ALL_REDUCE_VARIABLE, raising=False)
    monkeypatch.setattr(shm_allreduce.platform, "machine", lambda: "x86_64")
    assert eligible("cpu") is None
    assert "GPU" in eligible("cuda")
    monkeypatch.setenv(shm_allreduce.ALL_REDUCE_VARIABLE, "gloo")
    assert eligible("cpu") == "FASTRNN_ALLREDUCE=gloo"
    monkeypatch.delenv(shm_allreduce.ALL_REDUCE_VARIABLE)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert eligible("cpu") == "the ranks span several hosts"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(shm_allreduce.platform, "machine", lambda: "aarch64")
    assert "not x86-64" in eligible("cpu")


def test_an_unknown_all_reduce_setting_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(shm_allreduce.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv(shm_allreduce.ALL_REDUCE_VARIABLE, " SHM ")
    assert eligible("cpu") is None
    monkeypatch.setenv(shm_allreduce.ALL_REDUCE_VARIABLE, "mpi")
    with pytest.raises(ValueError, match=r"FASTRNN_ALLREDUCE: expected one of shm, gloo, got 'mpi'"):
        eligible("cpu")


def test_train_under_torchrun_refuses_an_unknown_all_reduce_in_one_line(monkeypatch, tmp_path, capsys):
    from agent.cli import main

    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", "2"),
                        (shm_allreduce.ALL_REDUCE_VARIABLE, "mpi")):
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:  # before any process group or work
        main(["train", "--task", "two_step", "--quiet", "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert "FASTRNN_ALLREDUCE: expected one of shm, gloo, got 'mpi'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_tensor_it_cannot_take_is_refused_before_any_collective():
    reduce = SharedMemoryAllReduce(0, 2)  # no process group: a collective would raise another error
    with pytest.raises(ValueError, match="contiguous CPU tensor"):
        reduce(torch.ones(4, 2).t())
