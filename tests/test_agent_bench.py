"""bench/agent.py runs end to end on tiny settings and reports every core and phase."""

import json

from bench import agent as bench_agent


def test_bench_agent_reports_throughput_ratios_and_a_profile_for_each_core(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_agent.main(["--updates", "2", "--repeats", "2", "--warmup", "1", "--num-envs", "4",
                             "--unroll", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["env_steps_per_second"]) == {"fast", "reference", "torch"}
    assert all(v["median"] > 0 for v in result["env_steps_per_second"].values())
    assert "fast/reference" in result["ratios"]
    for profile in result["profile"].values():
        assert abs(sum(p["share"] for p in profile.values()) - 1) < 1e-6
        assert profile["core step"]["share"] > 0 and profile["learn backward"]["share"] > 0
    assert "fast/reference" in capsys.readouterr().out


def test_bench_ranks_reports_one_and_two_rank_throughput_and_the_scaling_efficiency(tmp_path, capsys):
    from bench import ranks as bench_ranks

    out = tmp_path / "ranks.json"
    assert bench_ranks.main(["--task", "bandit_independent", "--updates", "3", "--num-envs", "4",
                             "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rates = result["env_steps_per_second"]
    assert set(rates) == {"1", "2"} and all(v["median"] > 0 for v in rates.values())
    assert result["scaling_efficiency"]["1"] == 1.0
    assert result["scaling_efficiency"]["2"] == rates["2"]["median"] / (2 * rates["1"]["median"])
    assert "scaling efficiency" in capsys.readouterr().out
