"""The simulations `reproduce` runs: per simulation its task, test episodes, the paper's value,
the numbers tabulated per seed (read from the eval's metrics.json) and the criteria.

Paper values and criteria follow /work/shared/SIMULATIONS.md; test episode counts follow the
measured runs in results/*/README.md (foraging 1000, Harlow 2000, others 300).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


def dig(*path) -> Callable[[dict], object]:
    """A getter for a nested metrics.json value: dig("a", 0, "b")(m) is m["a"][0]["b"]."""
    def get(metrics: dict):
        value = metrics
        for key in path:
            value = value[key]
        return value
    return get


@dataclass(frozen=True)
class Quantity:
    """One number per seed, a column of the report."""
    label: str
    value: Callable[[dict], float]
    ci95: Callable[[dict], list] | None = None  # the analysis module's own interval, when it gives one
    format_spec: str = ".3f"  # of the value, its interval and the mean over seeds
    # across seeds: "mean" (mean with a 95% t interval) or "range" (min-max: p-values, where a mean says nothing)
    across_seeds: str = "mean"


@dataclass(frozen=True)
class Simulation:
    key: str  # the --sim value
    name: str  # run and figure directories
    title: str
    task: str
    eval_episodes: int
    paper: str
    quantities: tuple[Quantity, ...]
    seed_criterion: str
    meets: Callable[[dict], bool]  # the per-seed criterion on one eval's metrics.json
    min_share_of_seeds: float = 1.0  # the overall criterion: this share of seeds meets the per-seed one
    notes: str = ""  # what the numbers rest on besides trials.csv, if anything


def _finite_below(value: float, bound: float) -> bool:
    return not math.isnan(value) and value < bound


def _foraging_meets(m: dict) -> bool:
    return bool(m["reward_kernel_decays"]) and _finite_below(m["matching_slope"], 1.0)


def _volatility_meets(m: dict) -> bool:
    fit, better = m["rescorla_wagner_fit"], m["better_arm_rate"]
    return (fit["alpha_volatile"]["value"] > fit["alpha_stable"]["value"]
            and better["stable"] > 0.6 and better["volatile"] > 0.6)


def _two_step_meets(m: dict) -> bool:
    stay, interaction = m["stay_probability"], m["stay_regression"]["reward_x_transition"]
    return (interaction["coef"] > 0 and _finite_below(interaction["p"], 0.05)
            and stay["common_rewarded"] > stay["rare_rewarded"]
            and stay["rare_unrewarded"] > stay["common_unrewarded"])


HARLOW_TRIAL1_RANGE = (0.45, 0.55)
HARLOW_LATER_MIN = 0.95


def _harlow_meets(m: dict) -> bool:
    accuracy = [row["accuracy"] for row in m["accuracy_by_trial"]]
    low, high = HARLOW_TRIAL1_RANGE
    return low <= accuracy[0] <= high and all(a >= HARLOW_LATER_MIN for a in accuracy[1:])


def _kernel_lag(k: int) -> Quantity:
    return Quantity(f"reward kernel lag {k}", dig("lagged_regression", "reward_kernel", k - 1),
                    dig("lagged_regression", "reward_kernel_ci95", k - 1), format_spec=".2f")


def _harlow_trial(k: int) -> Quantity:
    return Quantity(f"trial {k}", dig("accuracy_by_trial", k - 1, "accuracy"),
                    dig("accuracy_by_trial", k - 1, "ci95"))


def _manipulation(name: str, label: str) -> Quantity:
    return Quantity(label, dig("manipulation_effects", name, "change", "value"),
                    dig("manipulation_effects", name, "change", "ci95"))


SIMULATIONS: tuple[Simulation, ...] = (
    Simulation(
        "1", "foraging", "Simulation 1: RL in the prefrontal network (dynamic foraging)", "foraging", 1000,
        paper="reward kernel decaying from lag 1; matching with undermatching (slope < 1) (Fig. 2, qualitative)",
        quantities=(_kernel_lag(1), _kernel_lag(3), _kernel_lag(5),
                    Quantity("matching slope", dig("matching_slope"), dig("matching_slope_ci95"), format_spec=".2f")),
        seed_criterion="reward kernel decays (lag 1 > lag 3 > lag 5, disjoint 95% intervals, lag 1 > 0) "
                       "and matching slope < 1",
        meets=_foraging_meets,
        notes="The single-unit coding fractions (not tabulated) need the LSTM's hidden states, which "
              "trials.csv does not hold; every number tabulated here comes from trials.csv."),
    Simulation(
        "2", "volatility", "Simulation 2: learning rate adapts to volatility", "volatility", 300,
        paper="fitted learning rate higher in the volatile phase than in the stable one, across seeds; "
              "better arm chosen in both phases (Fig. 3, qualitative)",
        quantities=(Quantity("alpha stable", dig("rescorla_wagner_fit", "alpha_stable", "value"),
                             dig("rescorla_wagner_fit", "alpha_stable", "ci95")),
                    Quantity("alpha volatile", dig("rescorla_wagner_fit", "alpha_volatile", "value"),
                             dig("rescorla_wagner_fit", "alpha_volatile", "ci95")),
                    Quantity("better arm stable", dig("better_arm_rate", "stable")),
                    Quantity("better arm volatile", dig("better_arm_rate", "volatile"))),
        seed_criterion="alpha volatile > alpha stable, and the better arm chosen on > 60% of trials in each phase",
        meets=_volatility_meets),
    Simulation(
        "3", "reversal", "Simulation 3: RPEs reflect inferred value (reversal)", "reversal", 300,
        paper="inference index well above 0; the inferred cue's first post-reversal RPE already has the sign "
              "of its new value (Fig. 4, qualitative)",
        quantities=(Quantity("inference index (pooled)", dig("inference", "pooled", "inference_index", "value"),
                             dig("inference", "pooled", "inference_index", "ci95"), format_spec=".2f"),
                    Quantity("first RPE, newly big", dig("inference", "newly_big", "rpe_first", "mean")),
                    Quantity("first RPE, newly small", dig("inference", "newly_small", "rpe_first", "mean")),
                    Quantity("reversals used", dig("inference", "pooled", "n_reversals"), format_spec=".0f")),
        seed_criterion="meets_target: the first RPE has the new sign in both directions and the pooled "
                       "inference index >= 0.5",
        meets=lambda m: bool(m["meets_target"])),
    Simulation(
        "4", "two_step", "Simulation 4: model-based behaviour (two-step task)", "two_step", 300,
        paper="stay probability common-rewarded ~0.99, rare-rewarded ~0.63, common-unrewarded ~0.61, "
              "rare-unrewarded ~0.99 (Fig. 5b, read off the figure; 8 seeds)",
        quantities=(*(Quantity(f"stay {name.replace('_', '-')}", dig("stay_probability", name))
                      for name in ("common_rewarded", "rare_rewarded", "common_unrewarded", "rare_unrewarded")),
                    Quantity("reward x transition coef", dig("stay_regression", "reward_x_transition", "coef"),
                             format_spec=".2f"),
                    Quantity("its p", dig("stay_regression", "reward_x_transition", "p"), format_spec=".2g",
                             across_seeds="range")),
        seed_criterion="reward x transition coefficient > 0 with p < 0.05, stay(common-rewarded) > "
                       "stay(rare-rewarded) and stay(rare-unrewarded) > stay(common-unrewarded)",
        meets=_two_step_meets),
    Simulation(
        "5", "harlow", "Simulation 5: learning to learn (Harlow)", "harlow", 2000,
        paper="trial 1 at chance (~52%), trial 2 and after ~97-99% correct on held-out objects "
              "(Fig. 6c, final quantile, read off the figure)",
        quantities=tuple(_harlow_trial(k) for k in range(1, 7)),
        seed_criterion=f"trial 1 within [{HARLOW_TRIAL1_RANGE[0]}, {HARLOW_TRIAL1_RANGE[1]}] and trials 2-6 "
                       f"each >= {HARLOW_LATER_MIN}",
        meets=_harlow_meets,
        notes="Accuracy by trial comes from trials.csv; the per-quantile curves in the figure need the "
              "run's quantile snapshots (RUN/quantiles/), not only trials.csv."),
    Simulation(
        "6", "risky_safe", "Simulation 6: dual roles of dopamine (risky vs safe)", "risky_safe", 300,
        paper="in control, risky lever preferred more in p = 0.5 blocks; stimulation after risky losses raises, "
              "inhibition after risky wins lowers later risky choice (Fig. 7, qualitative; >= 6 of 8 seeds)",
        quantities=(Quantity("P(risky) p=0.5 minus p=0.125", dig("block_difference", "value"),
                             dig("block_difference", "ci95")),
                    _manipulation("stim_after_risky_loss", "stim after risky loss"),
                    _manipulation("inhibit_after_risky_win", "inhibit after risky win"),
                    _manipulation("inhibit_after_safe_reward", "inhibit after safe reward")),
        seed_criterion="meets_target: block difference > 0.2 and both predicted manipulation effects with "
                       "95% bootstrap intervals excluding 0",
        meets=lambda m: bool(m["meets_target"]),
        min_share_of_seeds=0.75),
    Simulation(
        "bandits", "bandits", "Bandits (Wang et al. 2016): independent arms", "bandit_independent", 300,
        paper="cumulative regret at trial 100 (third-party reproduction): UCB ~4.7, Thompson ~4.05, meta-RL ~4.1",
        quantities=(Quantity("regret agent", dig("regret_at_last_trial", "agent"), format_spec=".2f"),
                    Quantity("regret UCB1", dig("regret_at_last_trial", "ucb1"), format_spec=".2f"),
                    Quantity("regret Thompson", dig("regret_at_last_trial", "thompson"), format_spec=".2f"),
                    Quantity("regret Gittins", dig("regret_at_last_trial", "gittins"), format_spec=".2f")),
        seed_criterion="agent's regret at the last trial < UCB1's",
        meets=lambda m: m["regret_at_last_trial"]["agent"] < m["regret_at_last_trial"]["ucb1"],
        notes="The agent's regret comes from trials.csv (p_0, p_1, action); the baselines' are their own "
              "plays on the same arm probabilities (p_0, p_1 of each episode) with the eval seed. Every seed is tested on the same "
              "episodes (the eval seed draws them), so the baselines' regrets are the same for every seed."),
)

BY_KEY = {simulation.key: simulation for simulation in SIMULATIONS}
SIM_CHOICES = (*BY_KEY, "all")


def selected(keys: list[str]) -> list[Simulation]:
    """The simulations named by --sim, in table order, each once."""
    wanted = set(BY_KEY) if "all" in keys else set(keys)
    return [simulation for simulation in SIMULATIONS if simulation.key in wanted]


def seeds_needed(simulation: Simulation, seeds: int) -> int:
    return math.ceil(simulation.min_share_of_seeds * seeds - 1e-9)
