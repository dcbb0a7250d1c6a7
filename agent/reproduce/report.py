"""summary.json and REPORT.md from the finished jobs. The numbers are gathered once, into the
summary; the markdown only formats the summary, so the two cannot disagree."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from agent.reproduce.across_seeds import mean_with_t_interval, value_range
from agent.reproduce.jobs import ControlResult, JobResult
from agent.reproduce.simulations import Simulation, seeds_needed

REPORT_NAME = "REPORT.md"
SUMMARY_NAME = "summary.json"
FIGURE_SEED = 0  # the seed whose figures the report shows (the first that succeeded if it failed)


def earlier_wall_times(summary_path: Path) -> dict[str, dict]:
    """run_dir -> the wall times an earlier invocation's summary.json holds for it, so a run or
    evaluation reused now keeps the time it took when it ran."""
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return {}
    return {seed["run_dir"]: {stage: seed.get(f"{stage}_wall_seconds") for stage in ("train", "eval")}
            for section in summary.get("simulations", []) for seed in section.get("seeds", [])}


def _wall_times(result: JobResult, earlier: dict) -> dict:
    """Per stage: the wall time of its last process, and whether that process ran in this invocation."""
    times = {}
    for stage, now in (("train", result.train_wall_seconds), ("eval", result.eval_wall_seconds)):
        times[f"{stage}_wall_seconds"] = now if now is not None else earlier.get(stage)
        times[f"{stage}_wall_measured_now"] = now is not None
    return times


def _trials(simulation: Simulation, directory: Path) -> dict:
    from agent.commands.evaluate import read_trials_csv
    from agent.simulations.registry import get_task_class

    return read_trials_csv(directory / "trials.csv", get_task_class(simulation.task).column_labels)


def with_paired(simulation: Simulation, metrics: dict, row_dir: Path, reference_dir: Path | None) -> dict:
    """metrics plus `paired`: the simulation's comparison of this row's trials with its reference
    control's on the same episodes (None where there is none or the control failed)."""
    if simulation.paired is None:
        return metrics
    paired = None
    if reference_dir is not None:
        paired = simulation.paired.compute(_trials(simulation, row_dir), _trials(simulation, reference_dir))
    return {**metrics, "paired": paired}


def evaluate_row(simulation: Simulation, metrics: dict) -> dict:
    """The criterion and the tabulated numbers of one row (an agent seed or a control); a
    quantity the row cannot give (e.g. a paired one without its reference) is NaN."""
    def value(q):
        try:
            return float(q.value(metrics))
        except (KeyError, IndexError, TypeError):
            if q.value is not None and "paired" in metrics and metrics["paired"] is None:
                return float("nan")
            raise
    values = {q.label: value(q) for q in simulation.quantities}
    ci95 = {}
    for q in simulation.quantities:
        if q.ci95 and not math.isnan(values[q.label]):
            ci95[q.label] = [float(v) for v in q.ci95(metrics)]
    return {"meets": bool(simulation.meets(metrics)), "values": values, "ci95": ci95}


def _seed_entry(simulation: Simulation, result: JobResult, earlier: dict, reference_dir: Path | None = None) -> dict:
    entry = {"seed": result.job.seed, "run_dir": str(result.job.run_dir), "training": result.training,
             "evaluation": result.evaluation, **_wall_times(result, earlier), "error": result.error}
    failed = {**entry, "meets": False, "values": {}, "ci95": {}}
    if not result.ok:
        return failed
    try:
        metrics = with_paired(simulation, result.metrics, result.job.eval_dir, reference_dir)
        entry.update({
            **evaluate_row(simulation, metrics),
            "train_episodes": metrics["train_episodes"], "test_episodes": metrics["episodes"],
            "train_seconds": metrics["train_seconds"], "eval_seconds": metrics["eval_seconds"],
        })
    except (KeyError, IndexError, TypeError, OSError, ValueError) as error:  # other keys than the table reads
        failed["error"] = {"stage": "report", "returncode": None,
                           "stderr_tail": f"{result.job.eval_dir / 'metrics.json'} lacks what simulations.py reads: "
                                          f"{type(error).__name__}: {error}"}
        return failed
    return entry


def _copy_figures(simulation: Simulation, results: list[JobResult], out_dir: Path) -> tuple[int | None, list[str]]:
    """Copy one seed's eval PNGs to out_dir/figures/<name>/; (that seed, paths relative to out_dir)."""
    done = [r for r in results if r.ok]
    if not done:
        return None, []
    shown = next((r for r in done if r.job.seed == FIGURE_SEED), done[0])
    target = out_dir / "figures" / simulation.name
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for png in sorted(shown.job.eval_dir.glob("*.png")):
        shutil.copy2(png, target / png.name)
        copied.append((target / png.name).relative_to(out_dir).as_posix())
    return shown.job.seed, copied


def _control_entry(simulation: Simulation, result: ControlResult, reference_dir: Path | None) -> dict:
    control = next(c for c in simulation.controls if c.strategy == result.job.strategy)
    entry = {"strategy": control.strategy, "lacks_mechanism": control.lacks_mechanism, "note": control.note,
             "out_dir": str(result.job.out_dir), "wall_seconds": result.wall_seconds, "error": result.error,
             "meets": None, "values": {}, "ci95": {}}
    if not result.ok:
        return entry
    try:
        entry.update(evaluate_row(simulation, with_paired(simulation, result.metrics, result.job.out_dir,
                                                          reference_dir)))
    except (KeyError, IndexError, TypeError, OSError, ValueError) as error:
        entry["error"] = {"stage": "report", "returncode": None,
                          "stderr_tail": f"{result.job.out_dir / 'metrics.json'}: {type(error).__name__}: {error}"}
    return entry


def _controls_verdict(controls: list[dict]) -> dict:
    """How the controls fare: those lacking the mechanism should fail, the references pass."""
    lacking = [c for c in controls if c["lacks_mechanism"]]
    return {"controls_lacking": len(lacking),
            "controls_failing": sum(c["meets"] is False for c in lacking),
            "controls_passing": [c["strategy"] for c in lacking if c["meets"]],
            "references_passing": [c["strategy"] for c in controls if not c["lacks_mechanism"] and c["meets"]],
            "references_failing": [c["strategy"] for c in controls if not c["lacks_mechanism"] and c["meets"] is False]}


def simulation_summary(simulation: Simulation, results: list[JobResult], out_dir: Path,
                       earlier_walls: dict[str, dict] | None = None,
                       controls: list[ControlResult] | None = None) -> dict:
    earlier_walls = earlier_walls or {}
    controls = controls or []
    reference = next((c for c in controls if simulation.paired and c.job.strategy == simulation.paired.against
                      and c.ok), None)
    reference_dir = reference.job.out_dir if reference else None
    seeds = [_seed_entry(simulation, r, earlier_walls.get(str(r.job.run_dir), {}), reference_dir)
             for r in sorted(results, key=lambda r: r.job.seed)]
    order = [c.strategy for c in simulation.controls]
    control_entries = [_control_entry(simulation, c, reference_dir)
                       for c in sorted(controls, key=lambda c: order.index(c.job.strategy))]
    across = {}
    for q in simulation.quantities:
        values = [s["values"][q.label] for s in seeds if q.label in s["values"]]
        across[q.label] = value_range(values) if q.across_seeds == "range" else mean_with_t_interval(values)
    meeting, needed = sum(s["meets"] for s in seeds), seeds_needed(simulation, len(seeds))
    figure_seed, figures = _copy_figures(simulation, results, out_dir)
    return {
        "key": simulation.key, "name": simulation.name, "title": simulation.title, "task": simulation.task,
        "test_episodes": results[0].job.eval_episodes, "paper": simulation.paper,
        "seed_criterion": simulation.seed_criterion, "overall_criterion": overall_criterion_text(simulation),
        "notes": simulation.notes, "seeds": seeds, "across_seeds": across,
        "seeds_meeting": meeting, "seeds_needed": needed, "seeds_total": len(seeds), "overall_met": meeting >= needed,
        "figure_seed": figure_seed, "figures": figures,
        "controls": control_entries, "controls_note": simulation.controls_note, **_controls_verdict(control_entries),
    }


def overall_criterion_text(simulation: Simulation) -> str:
    if simulation.min_share_of_seeds >= 1:
        return "every seed meets the per-seed criterion"
    return f"at least {simulation.min_share_of_seeds:.0%} of seeds meet the per-seed criterion"


def write_summary(summary: dict, out_dir: Path) -> None:
    (out_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")


# ---- markdown ----

def _number(value, spec: str) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def seed_cell(entry: dict, label: str, spec: str) -> str:
    """One seed's value as the report prints it, with the analysis' own interval if it has one."""
    text = _number(entry["values"][label], spec)
    if label in entry["ci95"]:
        low, high = entry["ci95"][label]
        text += f" [{_number(low, spec)}, {_number(high, spec)}]"
    return text


def across_cell(stat: dict, spec: str) -> str:
    if "min" in stat:
        return f"{_number(stat['min'], spec)} to {_number(stat['max'], spec)} (range)"
    if stat["ci95"] is None:
        return f"{_number(stat['mean'], spec)} (n={stat['n']})"
    half = stat["ci95"][1] - stat["mean"]
    return f"{_number(stat['mean'], spec)} ± {_number(half, spec)}"


def _controls_sentence(entry: dict) -> str:
    text = f"Controls failing: {controls_cell(entry)}."
    if entry["references_failing"]:
        text += f" References failing: {', '.join(entry['references_failing'])}."
    return text


def controls_cell(entry: dict) -> str:
    if not entry.get("controls"):
        return "-"
    text = f"{entry['controls_failing']}/{entry['controls_lacking']}"
    if entry["controls_passing"]:
        text += f" ({', '.join(entry['controls_passing'])} pass)"
    if entry["references_passing"]:
        text += f"; references passing: {', '.join(entry['references_passing'])}"
    return text


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _wall(seed: dict, stage: str) -> str:
    text = _seconds(seed[f"{stage}_wall_seconds"])
    return text if seed[f"{stage}_wall_measured_now"] or text == "-" else f"{text} (earlier)"


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def simulation_markdown(entry: dict, simulation: Simulation) -> list[str]:
    verdict = "met" if entry["overall_met"] else "not met"
    lines = [f"## {entry['title']} (`--sim {entry['key']}`, task `{entry['task']}`)", "",
             f"- Paper: {entry['paper']}",
             f"- Per-seed criterion: {entry['seed_criterion']}",
             f"- Overall criterion: {entry['overall_criterion']} (needs {entry['seeds_needed']} of "
             f"{entry['seeds_total']}): **{verdict}, {entry['seeds_meeting']}/{entry['seeds_total']} seeds**",
             f"- Test episodes per seed: {entry['test_episodes']}"]
    if entry["notes"]:
        lines.append(f"- Note: {entry['notes']}")
    labels = [q.label for q in simulation.quantities]
    header = ["seed", *labels, "criterion", "training", "train episodes", "train s (updates)", "train wall s",
              "eval s", "eval wall s"]
    lines += ["", _row(header), "|" + " --- |" * len(header)]
    for seed in entry["seeds"]:
        if seed["error"]:
            lines.append(_row([seed["seed"], *(["-"] * len(labels)), "FAILED", seed["training"] or "-", "-", "-",
                               _wall(seed, "train"), "-", _wall(seed, "eval")]))
            continue
        cells = [seed_cell(seed, q.label, q.format_spec) for q in simulation.quantities]
        lines.append(_row([seed["seed"], *cells, "yes" if seed["meets"] else "no", seed["training"],
                           f"{seed['train_episodes']:,}", _seconds(seed["train_seconds"]), _wall(seed, "train"),
                           _seconds(seed["eval_seconds"]), _wall(seed, "eval")]))
    lines.append(_row(["mean ± 95% t (over seeds)",
                       *(across_cell(entry["across_seeds"][q.label], q.format_spec) for q in simulation.quantities),
                       f"{entry['seeds_meeting']}/{entry['seeds_total']}", "", "", "", "", "", ""]))
    for control in entry.get("controls", []):
        kind = "control" if control["lacks_mechanism"] else "reference"
        name = f"{kind}: {control['strategy']}"
        if control["error"]:
            lines.append(_row([name, *(["-"] * len(labels)), "FAILED", *(["-"] * 6)]))
            continue
        cells = [seed_cell(control, q.label, q.format_spec) for q in simulation.quantities]
        lines.append(_row([name, *cells, "yes" if control["meets"] else "no", "-", "-", "-", "-", "-",
                           _seconds(control["wall_seconds"])]))
    if entry.get("controls"):
        lines += ["", "Control rows: classical learners (`agent baseline`) played on the same test episodes, through "
                  "the same analysis and judged by the same per-seed criterion; a \"control\" lacks the paper's "
                  "mechanism and should fail, a \"reference\" is the learner the claim says the agent behaves "
                  "like. " + _controls_sentence(entry)]
        if entry.get("controls_note"):
            lines += ["", f"Controls: {entry['controls_note']}"]
        for control in entry["controls"]:
            if control["error"]:
                error = control["error"]
                lines += ["", f"Control {control['strategy']} failed in {error['stage']}:", "", "```",
                          error["stderr_tail"], "```"]
    lines += ["", "Intervals in brackets are each analysis' own 95% intervals; \"train s\" is update time "
              "(metrics.json's train_seconds over the whole run, resumed parts included), \"wall s\" the wall "
              "time of the run's last train or eval process, start-up included (\"earlier\": measured by an "
              "earlier invocation, whose run or evaluation this one reused; - where none was recorded)."]
    for seed in entry["seeds"]:
        if seed["error"]:
            error = seed["error"]
            code = "" if error["returncode"] is None else f" (exit code {error['returncode']})"
            lines += ["", f"Seed {seed['seed']} failed in {error['stage']}{code}:", "",
                      "```", error["stderr_tail"], "```"]
    if entry["figures"]:
        lines += ["", f"Figures (seed {entry['figure_seed']}):", ""]
        lines += [f"![{Path(f).stem}]({f})" for f in entry["figures"]]
    return lines + [""]


def report_markdown(summary: dict, simulations: list[Simulation]) -> str:
    lines = ["# Reproduction report", "",
             f"Command: `{summary['command']}`", "",
             f"Total wall time: {summary['total_wall_seconds']:.1f} s ({summary['jobs']} parallel jobs, one torch "
             f"thread each, device {summary['device']}; started {summary['started']}).", ""]
    if summary["train_episodes_override"]:
        lines += [f"**Not the default setting: every simulation trained for {summary['train_episodes_override']:,} "
                  "episodes (--episodes), not its task's default; these numbers are no reproduction.**", ""]
    if summary["eval_episodes_override"]:
        lines += [f"**Test episodes set to {summary['eval_episodes_override']:,} per seed (--eval-episodes), not "
                  "each simulation's default.**", ""]
    if summary["failed_jobs"]:
        lines += [f"**{summary['failed_jobs']} job(s) failed; see their sections.**", ""]
    if summary.get("failed_controls"):
        lines += [f"**{summary['failed_controls']} control(s) failed; see their sections.**", ""]
    header = ["simulation", "task", "paper", "overall criterion", "result", "controls failing"]
    lines += [_row(header), "|" + " --- |" * len(header)]
    for entry in summary["simulations"]:
        lines.append(_row([entry["key"], entry["task"], entry["paper"], entry["overall_criterion"],
                           f"{'met' if entry['overall_met'] else 'not met'} "
                           f"({entry['seeds_meeting']}/{entry['seeds_total']} seeds)", controls_cell(entry)]))
    lines.append("")
    by_key = {s.key: s for s in simulations}
    for entry in summary["simulations"]:
        lines += simulation_markdown(entry, by_key[entry["key"]])
    return "\n".join(lines)


def write_report(summary: dict, simulations: list[Simulation], out_dir: Path) -> None:
    (out_dir / REPORT_NAME).write_text(report_markdown(summary, simulations))
