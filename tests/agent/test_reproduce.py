"""`python -m agent reproduce` on a tiny setting: one invocation (two simulations, two seeds, two
jobs side by side, one run interrupted beforehand) shared by the tests, whose report numbers
are recomputed here from the runs' trials.csv; a second invocation that must reuse everything;
and the flags refused before any work."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from agent.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["--sim", "2", "bandits", "--seeds", "2", "--episodes", "64", "--eval-episodes", "20", "--jobs", "2"]
INTERRUPTED_AFTER_UPDATES = 6  # bandits: 100 trials, unroll 20, 32 envs: about 32 episodes by then


def _interrupt_a_run(out: Path) -> int:
    """A bandits seed-1 run killed after a checkpoint, about halfway; returns its episodes by then."""
    from agent.commands.train import train
    from agent.infra.checkpoint import save_checkpoint
    from agent.reproduce.command import plan
    from agent.reproduce.simulations import selected

    job = plan(selected(["bandits"]), 2, out, episodes=64, eval_episodes=20, device="cpu")[1]
    config = job.train_config()
    trainer = train(config, job.run_dir, progress=False, stop_after_updates=INTERRUPTED_AFTER_UPDATES)
    save_checkpoint(job.run_dir, {"trainer": trainer.state_dict(), "config": config.to_dict(), "finished": False})
    return trainer.episodes


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "out"
    interrupted_at = _interrupt_a_run(out)
    done = subprocess.run([sys.executable, "-m", "agent", "reproduce", *TINY, "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out, json.loads((out / "summary.json").read_text()), (out / "REPORT.md").read_text(), interrupted_at


def _read_trials(path: Path) -> dict[str, np.ndarray]:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return {name: np.array([row[name] for row in rows]) for name in rows[0]}


def _section(summary: dict, name: str) -> dict:
    return next(entry for entry in summary["simulations"] if entry["name"] == name)


def _report_row(report: str, sim: str, first_cell: str) -> list[str]:
    """The cells of a row of the table of simulation `--sim sim`."""
    section = report.split(f"`--sim {sim}`")[1].split("\n## ")[0]
    row = next(line for line in section.splitlines() if line.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def _t_interval(values: list[float]) -> tuple[float, float]:
    mean = float(np.mean(values))
    return mean, float(stats.t.ppf(0.975, len(values) - 1) * stats.sem(values))


@pytest.mark.slow
def test_volatility_better_arm_rates_match_trials_csv(reproduced):
    """Volatility's better-arm rates equal those recomputed from trials.csv."""
    out, summary, report, _ = reproduced
    section = _section(summary, "volatility")
    per_phase = {"stable": [], "volatile": []}
    for seed in section["seeds"]:
        trials = _read_trials(Path(seed["run_dir"]) / "eval" / "trials.csv")
        better = np.where(trials["p_0"].astype(float) > 0.5, 0, 1)
        chose_better = trials["action"].astype(int) == better
        cells = _report_row(report, "2", str(seed["seed"]))
        for phase in per_phase:
            rate = float(chose_better[trials["phase"] == phase].mean())
            per_phase[phase].append(rate)
            assert seed["values"][f"better arm {phase}"] == pytest.approx(rate, abs=1e-12)
            assert f"{rate:.3f}" in cells
        met = (seed["ci95"]["alpha volatile - stable"][0] > 0 and seed["ci95"]["minus bayes_fixed_hazard's"][0] > 0
               and min(seed["values"]["better arm stable"], seed["values"]["better arm volatile"]) > 0.6)
        assert seed["meets"] == met and cells[7] == ("yes" if met else "no")
    mean_cells = _report_row(report, "2", "mean ± 95% t (over seeds)")
    for column, phase in ((5, "stable"), (6, "volatile")):
        mean, half = _t_interval(per_phase[phase])
        assert section["across_seeds"][f"better arm {phase}"]["mean"] == pytest.approx(mean)
        assert mean_cells[column] == f"{mean:.3f} ± {half:.3f}"


@pytest.mark.slow
def test_bandit_regret_equals_the_one_recomputed_from_trials_csv(reproduced):
    out, summary, report, _ = reproduced
    section = _section(summary, "bandits")
    regrets = []
    for seed in section["seeds"]:
        trials = _read_trials(Path(seed["run_dir"]) / "eval" / "trials.csv")
        probs = np.column_stack([trials["p_0"].astype(float), trials["p_1"].astype(float)])
        lost = probs.max(axis=1) - probs[np.arange(len(probs)), trials["action"].astype(int)]
        regret = float(lost.reshape(20, 100).sum(axis=1).mean())  # 20 episodes of 100 trials
        regrets.append(regret)
        assert seed["values"]["regret agent"] == pytest.approx(regret, abs=1e-3)  # the CSV keeps 6 digits
        cells = _report_row(report, "bandits", str(seed["seed"]))
        assert cells[1] == f"{seed['values']['regret agent']:.2f}"
        assert seed["meets"] == (seed["ci95"]["minus UCB1's"][1] < 0)
        assert seed["values"]["minus UCB1's"] == pytest.approx(seed["values"]["regret agent"]
                                                               - seed["values"]["regret UCB1"], abs=1e-6)
    mean, half = _t_interval(regrets)
    assert section["across_seeds"]["regret agent"]["mean"] == pytest.approx(mean, abs=1e-3)
    assert section["seeds_meeting"] == sum(s["meets"] for s in section["seeds"])
    assert f"**{'met' if section['overall_met'] else 'not met'}, {section['seeds_meeting']}/2 seeds**" in report


@pytest.mark.slow
def test_report_states_the_command_the_override_figures_and_wall_times(reproduced):
    out, summary, report, _ = reproduced
    assert summary["command"].startswith("python -m agent reproduce --sim 2 bandits --seeds 2 --jobs 2")
    assert f"Command: `{summary['command']}`" in report and "Total wall time:" in report
    assert "Not the default setting" in report and summary["train_episodes_override"] == 64
    for name, figure in (("volatility", "volatility.png"), ("bandits", "cumulative_regret.png")):
        assert (out / "figures" / name / figure).is_file()
        assert f"(figures/{name}/{figure})" in report
        for seed in _section(summary, name)["seeds"]:
            assert seed["train_wall_seconds"] > 0 and seed["eval_wall_seconds"] > 0 and seed["eval_seconds"] > 0


@pytest.mark.slow
def test_report_puts_each_control_beside_the_agent(reproduced):
    """The report puts each control beside the agent, judged by the same criterion."""
    from agent.reproduce.simulations import BY_KEY

    out, summary, report, _ = reproduced
    assert summary["failed_controls"] == 0
    for key, name in (("2", "volatility"), ("bandits", "bandits")):
        section = _section(summary, name)
        expected = [c.strategy for c in BY_KEY[key].controls]
        assert [c["strategy"] for c in section["controls"]] == expected
        for control in section["controls"]:
            metrics = json.loads((Path(control["out_dir"]) / "metrics.json").read_text())
            assert metrics["episodes"] == 20 and metrics["seed"] == 2018  # eval's test episodes
            kind = "control" if control["lacks_mechanism"] else "reference"
            cells = _report_row(report, key, f"{kind}: {control['strategy']}")
            assert cells[len(BY_KEY[key].quantities) + 1] == ("yes" if control["meets"] else "no")
        lacking = [c for c in section["controls"] if c["lacks_mechanism"]]
        assert section["controls_failing"] == sum(not c["meets"] for c in lacking)
        assert section["controls_lacking"] == len(lacking)
    volatility = _section(summary, "volatility")
    # the paired comparison's reference against itself is 0 by construction, so it fails
    bayes = next(c for c in volatility["controls"] if c["strategy"] == "bayes_fixed_hazard")
    assert bayes["values"]["minus bayes_fixed_hazard's"] == pytest.approx(0, abs=1e-9) and not bayes["meets"]
    top = next(line for line in report.splitlines() if line.startswith("| 2 | volatility |"))
    from agent.reproduce.report import controls_cell
    assert top.endswith(f"| {controls_cell(volatility)} |") and controls_cell(volatility).startswith(
        f"{volatility['controls_failing']}/2")
    assert "controls failing" in report.splitlines()[next(i for i, l in enumerate(report.splitlines())
                                                           if l.startswith("| simulation |"))]


@pytest.mark.slow
def test_an_interrupted_run_is_resumed_to_the_end(reproduced):
    out, summary, _, interrupted_at = reproduced
    import torch

    assert 0 < interrupted_at < 64
    seed1 = _section(summary, "bandits")["seeds"][1]
    assert seed1["training"] == f"resumed from {interrupted_at} episodes"
    saved = torch.load(Path(seed1["run_dir"]) / "checkpoint.pt", weights_only=False)
    assert saved["finished"] and saved["trainer"]["episodes"] >= 64
    assert {s["training"] for s in _section(summary, "volatility")["seeds"]} == {"trained"}


@pytest.mark.slow
def test_a_second_invocation_reuses_every_finished_run_and_evaluation(reproduced, capsys):
    out, _, _, _ = reproduced
    watched = sorted(out.glob("runs/*/checkpoint.pt")) + sorted(out.glob("runs/*/eval/metrics.json"))
    before = {path: path.stat().st_mtime_ns for path in watched}
    first = json.loads((out / "summary.json").read_text())
    assert main(["reproduce", *TINY, "--out", str(out)]) == 0
    assert {path: path.stat().st_mtime_ns for path in watched} == before
    summary = json.loads((out / "summary.json").read_text())
    for entry, first_entry in zip(summary["simulations"], first["simulations"]):
        for seed, first_seed in zip(entry["seeds"], first_entry["seeds"]):
            assert (seed["training"], seed["evaluation"]) == ("reused", "reused")
            assert seed["values"] == first_seed["values"]
            # the wall times measured when the processes ran are kept, marked as earlier ones
            assert seed["train_wall_seconds"] == first_seed["train_wall_seconds"] is not None
            assert not seed["train_wall_measured_now"] and not seed["eval_wall_measured_now"]
    assert "(earlier)" in (out / "REPORT.md").read_text()


@pytest.mark.parametrize("argv,message", [
    (["--sim", "7"], "argument --sim: invalid choice: '7'"),
    (["--seeds", "0"], "argument --seeds: must be >= 1"),
    (["--jobs", "0"], "argument --jobs: must be >= 1"),
    (["--episodes", "many"], "argument --episodes: expected an integer"),
    (["--out", "a_file"], "argument --out: a_file exists and is not a directory"),
])
def test_bad_flags_fail_naming_the_flag_before_any_work(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a directory")
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--sim", "2", "--out", "X", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing was written


@pytest.mark.slow
def test_runs_made_with_other_settings_are_refused_before_any_work(reproduced, capsys):
    out, _, _, _ = reproduced
    watched = sorted(out.glob("runs/*/config.json"))
    before = {path: path.stat().st_mtime_ns for path in watched}
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--sim", "2", "--seeds", "1", "--episodes", "32", "--out", str(out)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "argument --out:" in error and "episodes: saved 64, given 32" in error
    assert {path: path.stat().st_mtime_ns for path in watched} == before


@pytest.mark.slow
def test_a_failed_job_is_reported_with_its_error_and_sets_the_exit_code(tmp_path):
    # A run directory whose checkpoint is unreadable fails its job before any process starts (cheap).
    broken = tmp_path / "out" / "runs" / "volatility-seed0"
    broken.mkdir(parents=True)
    (broken / "checkpoint.pt").write_text("not a checkpoint")
    assert main(["reproduce", "--sim", "2", "--seeds", "1", "--episodes", "32", "--out", str(tmp_path / "out")]) == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    seed = _section(summary, "volatility")["seeds"][0]
    assert seed["error"]["stage"] == "reproduce" and summary["failed_jobs"] == 1 and not seed["meets"]
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert "Seed 0 failed in reproduce" in report and "1 job(s) failed" in report and "| 0 | - |" in report


def test_a_variant_runs_with_its_own_settings_beside_its_simulation(tmp_path):
    """--sim 5 plans the plain agent (the task's defaults) and the object-readout variant; the
    variant's train command carries exactly the settings its saved config is checked against."""
    from agent.reproduce.command import plan
    from agent.reproduce.simulations import selected

    jobs = plan(selected(["5"]), 1, tmp_path, episodes=None, eval_episodes=None, device="cpu")
    assert [job.simulation.key for job in jobs] == ["5", "5-objects"]
    plain, variant = (job.train_config() for job in jobs)
    assert plain.task_options["readout"] == "linear" and plain.hidden_size == 128
    assert variant.task_options["readout"] == "objects" and variant.hidden_size == 48
    assert variant.task_options["first_loss"] == "none" and variant.episodes == 200_000
    import dataclasses

    from agent.cli import _given_task_options, build_parser
    from agent.core.config import TrainConfig, resolve_config

    command = jobs[1].train_command()
    args = build_parser().parse_args(command[command.index("train"):])
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name != "task_options"}
    assert resolve_config({**given, "task_options": _given_task_options(args)}) == jobs[1].train_config()
    assert [job.simulation.key for job in plan(selected(["5-objects"]), 1, tmp_path, episodes=None,
                                               eval_episodes=None, device="cpu")] == ["5-objects"]
