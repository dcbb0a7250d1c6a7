"""bench/agent.py runs end to end on tiny settings and reports every core and phase."""

import json
from pathlib import Path

import pytest

from bench import agent as bench_agent


def test_bench_agent_reports_throughput_ratios_and_a_profile_for_each_core(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_agent.main(["--updates", "2", "--repeats", "2", "--warmup", "1", "--num-envs", "4",
                             "--unroll", "5", "--ranks", "none", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ranks"] is None  # --ranks none: no torchrun run
    assert set(result["env_steps_per_second"]) == {"fast", "reference", "torch"}
    assert all(v["median"] > 0 for v in result["env_steps_per_second"].values())
    assert "fast/reference" in result["ratios"]
    for profile in result["profile"].values():
        assert abs(sum(p["share"] for p in profile.values()) - 1) < 1e-6
        assert profile["core step"]["share"] > 0 and profile["learn backward"]["share"] > 0
    assert "fast/reference" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_agent_reports_rank_throughput_and_scaling(tmp_path, capsys):
    """bench agent reports one- and two-rank throughput and the scaling efficiency."""
    # Issue 13 asks `python -m bench agent` itself for the 1- and 2-rank rates (torchrun, gloo).
    out = tmp_path / "bench.json"
    assert bench_agent.main(["--task", "bandit_independent", "--cores", "fast", "--updates", "2", "--repeats", "1",
                             "--warmup", "1", "--num-envs", "4", "--rank-updates", "3", "--out", str(out)]) == 0
    ranks = json.loads(out.read_text())["ranks"]
    rates = ranks["env_steps_per_second"]
    assert set(rates) == {"1", "2"} and all(v["median"] > 0 for v in rates.values())
    assert ranks["num_envs_per_rank"] == 4 and ranks["updates"] == 3
    assert ranks["scaling_efficiency"]["2"] == rates["2"]["median"] / (2 * rates["1"]["median"])
    printed = capsys.readouterr().out
    assert "2 rank(s)" in printed and "scaling efficiency" in printed


def test_bench_agent_refuses_bad_rank_arguments_before_any_work(capsys):
    for argv, expected in ((["--ranks", "0"], "--ranks: every rank count must be >= 1"),
                           (["--ranks", "1,two"], "--ranks: expected comma-separated integers"),
                           (["--rank-updates", "0"], "--rank-updates: must be >= 1")):
        with pytest.raises(SystemExit):
            bench_agent._parse(argv)
        assert expected in capsys.readouterr().err


@pytest.mark.slow
def test_bench_ranks_reports_rank_throughput_and_scaling(tmp_path, capsys):
    """bench ranks reports one- and two-rank throughput and the scaling efficiency, and the all-reduce asked for."""
    from bench import ranks as bench_ranks

    out = tmp_path / "ranks.json"
    assert bench_ranks.main(["--task", "bandit_independent", "--updates", "3", "--num-envs", "4",
                             "--repeats", "1", "--all-reduce", "gloo", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["all_reduce"] == "gloo"
    rates = result["env_steps_per_second"]
    assert set(rates) == {"1", "2"} and all(v["median"] > 0 for v in rates.values())
    assert result["scaling_efficiency"]["1"] == 1.0
    assert result["scaling_efficiency"]["2"] == rates["2"]["median"] / (2 * rates["1"]["median"])
    assert "scaling efficiency" in capsys.readouterr().out


def test_bench_scaling_measures_the_grid_and_tabulates_ratios(tmp_path):
    """bench scaling measures every case of the grid for each core and tabulates the fast ratios."""
    from bench import scaling as bench_scaling

    out = tmp_path / "scaling"
    assert bench_scaling.main(["--num-envs", "1", "3", "--hidden", "8", "16", "--repeats", "1",
                               "--block-seconds", "0.01", "--out", str(out)]) == 0
    result = json.loads((out / "scaling.json").read_text())
    assert [(c["hidden"], c["num_envs"]) for c in result["cases"]] == [(8, 1), (8, 3), (16, 1), (16, 3)]
    for case in result["cases"]:
        assert set(case["env_steps_per_second"]) == {"fast", "reference", "torch"}
        assert all(rate > 0 for rate in case["env_steps_per_second"].values())
        assert case["backends"]["fast"] == "cpp"
    table = (out / "scaling.md").read_text().splitlines()
    assert "| hidden | envs | fast steps/s | reference steps/s | torch steps/s | fast/reference | fast/torch |" in table
    assert sum(line.startswith("| 16 | 3 |") for line in table) == 1


def test_bench_scaling_refuses_bad_arguments_before_any_work(capsys):
    from bench import scaling as bench_scaling

    with pytest.raises(SystemExit):
        bench_scaling.main(["--num-envs", "0"])
    assert "--num-envs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_scaling.main(["--cores", "fast,gpu"])
    assert "unknown core 'gpu'" in capsys.readouterr().err


def test_bench_rollout_times_every_way_and_ratios_to_the_plan(tmp_path, capsys):
    """bench rollout times every way per size and reports ratios to the plan."""
    from bench import rollout as bench_rollout

    out = tmp_path / "rollout.json"
    assert bench_rollout.main(["--batch", "1", "3", "--hidden", "5", "--rounds", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [(cell["hidden"], cell["batch"]) for cell in result["cells"]] == [(5, 1), (5, 3)]
    for cell in result["cells"]:
        assert set(cell["us"]) == {"plan", "step", "composed", "torch"} and min(cell["us"].values()) > 0
        assert cell["vs_plan"] == pytest.approx({name: cell["us"][name] / cell["us"]["plan"]
                                                 for name in ("step", "composed", "torch")})
    assert "plan" in capsys.readouterr().out


def test_bench_rollout_refuses_bad_arguments_before_any_work(capsys):
    from bench import rollout as bench_rollout

    with pytest.raises(SystemExit):
        bench_rollout.main(["--batch", "0", "32"])
    assert "--batch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_rollout.main(["--threads", "0"])
    assert "--threads: expected a positive integer, got 0" in capsys.readouterr().err


def test_each_bench_suite_writes_its_file_in_bench_results(monkeypatch):
    """Every bench subcommand writes its suite file in bench results by default."""
    # Each suite's latest run is bench/results/<suite>.json (and .md): the folder suites name
    # the folder, the others the file.
    from bench import RESULTS, agent, cpu, gpu, ranks, rollout, scaling

    monkeypatch.delenv("OUT", raising=False)
    assert RESULTS == Path("bench/results")
    assert cpu._parse([]).out == gpu.parse_args([]).out == scaling._parse([]).out == RESULTS
    assert agent._parse([]).out == RESULTS / "agent.json"
    assert ranks._parse([]).out == RESULTS / "ranks.json"
    assert rollout._parse([]).out == RESULTS / "rollout.json"


def test_bench_results_holds_only_the_latest_file_of_each_suite():
    from bench import RESULTS
    from bench.__main__ import SUITES

    root = Path(__file__).resolve().parents[2]
    entries = sorted((root / RESULTS).iterdir())
    stray = [p.name for p in entries if not p.is_file() or p.suffix not in (".json", ".md") or p.stem not in SUITES]
    assert not stray, f"bench/results/ holds only <suite>.json/.md (history: docs/performance-log.md): {stray}"


def test_step_call_runs_each_way_and_refuses_an_unknown_one():
    """bench.cpu.step_call, scripts/ab.py's handle on the packed-vs-own-layout step: each way
    builds a callable that runs a step; an unknown way is a ValueError naming the argument."""
    from bench.cpu import step_call

    for way in ("packed", "checked", "own_layout"):
        step_call(8, 2, way)()
    with pytest.raises(ValueError, match="way: expected"):
        step_call(8, 2, "fast")


@pytest.mark.parametrize("suite", ["agent", "cpu", "gpu", "ranks", "rollout", "scaling"])
def test_every_bench_suite_refuses_an_out_it_could_not_write_before_any_work(suite, capsys, tmp_path):
    """--out under a file: each suite ran its whole measurement (minutes) and then raised
    NotADirectoryError (or FileExistsError) at its first write, losing the run. The path is now
    checked when the arguments are parsed."""
    import importlib

    (tmp_path / "a_file").write_text("in the way")
    module = importlib.import_module(f"bench.{suite}")
    parse = getattr(module, "_parse", None) or module.parse_args  # bench gpu's is public
    with pytest.raises(SystemExit) as exit_info:
        parse(["--out", str(tmp_path / "a_file" / "results")])
    assert exit_info.value.code == 2
    assert f"argument --out: cannot create {tmp_path / 'a_file' / 'results'}: " in capsys.readouterr().err


def test_a_phase_timed_inside_another_counts_in_its_own_total_only(monkeypatch):
    """Nested phases are exclusive: the rollout's native loop (phase "core step") times the
    task steps it calls back as "env step", and the totals still add up to the time spent."""
    from agent.infra import timing

    clock = iter([0.0, 1.0, 3.0, 4.0, 10.0, 12.0])  # outer opens; inner opens, closes; again; outer closes
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    timer = timing.PhaseTimer(enabled=True)
    with timer.phase("core step"):
        with timer.phase("env step"):
            pass
        with timer.phase("env step"):
            pass
    assert dict(timer.totals) == {"core step": 12.0 - 2.0 - 6.0, "env step": 2.0 + 6.0}


def test_a_timed_function_is_the_function_itself_unless_the_timer_is_enabled(monkeypatch):
    from agent.infra import timing

    def step(x):
        return x + 1

    assert timing.PhaseTimer(enabled=False).timed("env step", step) is step
    clock = iter([0.0, 3.0])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    timer = timing.PhaseTimer(enabled=True)
    assert timer.timed("env step", step)(1) == 2
    assert dict(timer.totals) == {"env step": 3.0}
