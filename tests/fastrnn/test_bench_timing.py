"""bench/timing.py and bench cpu's ratios: each candidate gets one sample per round, the rounds
alternate the order, and a ratio is the median of the per-round ratios, not a ratio of medians."""

from __future__ import annotations

import json

import pytest

from bench import cpu
from bench.timing import interleaved_medians, interleaved_samples, paired_ratio


def test_each_candidate_gets_a_sample_per_round_in_alternating_order():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    samples = interleaved_samples(candidates, rounds=4, min_round_seconds=0.0)
    assert {name: len(values) for name, values in samples.items()} == {"a": 4, "b": 4, "c": 4}
    timed = calls[6:]  # after two warm-up calls each
    assert timed == ["a", "b", "c", "c", "b", "a", "a", "b", "c", "c", "b", "a"]
    assert set(interleaved_medians(candidates, rounds=2, min_round_seconds=0.0)) == {"a", "b", "c"}


def test_the_ratio_is_the_median_of_each_rounds_ratio():
    # Round 2 ran on a machine twice as slow for both: its ratio is still 2, while the medians'
    # ratio would read 4 / 1.
    samples = {"torch": [2.0, 4.0, 6.0], "auto": [1.0, 2.0, 1.0]}
    assert paired_ratio(samples, "torch", "auto") == 2.0
    assert paired_ratio(samples, "auto", "torch") == 0.5


def test_bench_cpu_writes_paired_ratios_and_the_route(tmp_path):
    assert cpu.main(["--hidden", "8", "--batch", "2", "--steps", "3", "--modes", "fwd", "step", "--no-reference",
                     "--rounds", "3", "--max-seconds-per-case", "60", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "cpu.json").read_text())["rows"]
    assert [(r["mode"], r["H"], r["B"]) for r in rows] == [("fwd", 8, 2), ("step", 8, 2)]
    for row in rows:
        assert row["torch_over_auto"] > 0 and row["torch_over_fastrnn"] > 0 and row["auto_route"]
        assert row["rounds"] == 3
    assert "torch/auto" in (tmp_path / "cpu.md").read_text()


@pytest.mark.parametrize("rounds", ["1", "0"])
def test_bench_cpu_refuses_fewer_than_two_rounds_before_any_work(rounds, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cpu.main(["--rounds", rounds, "--out", str(tmp_path)])
    assert "--rounds: expected an integer >= 2" in capsys.readouterr().err
    assert not (tmp_path / "cpu.json").exists()
