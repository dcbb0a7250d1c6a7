"""The simulations `reproduce` runs: per simulation its task, test episodes, the paper's value,
the numbers tabulated per seed (read from the eval's metrics.json) and the criteria.

Paper values and criteria follow docs/simulations.md; test episode counts follow the
measured runs in results/*/README.md (foraging 1000, Harlow 2000, others 300).

Controls (docs/simulations.md, "Controls and ablations"): per simulation, the classical learners of
`agent baseline` that `reproduce` plays on the same test episodes (eval's seed and count) and
judges by the same per-seed criterion. A control marked `lacks_mechanism` has none of what the
paper's claim rests on and must fail; a `reference` (lacks_mechanism False) is the classical
learner the claim says the agent behaves like (a Q-learner for Simulation 1, a model-based
planner for Simulation 4), so its passing is expected and the report says so.

A criterion that compares two learners on the same episodes (Simulation 2: the agent's
volatility effect against the fixed-hazard Bayesian learner's) reads `metrics["paired"]`, which
`reproduce` computes with `Simulation.paired(row's trials, reference control's trials)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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
class Control:
    """A classical learner `reproduce` plays as a control row (agent baseline --strategy)."""
    strategy: str
    lacks_mechanism: bool = True  # must fail the criterion; False: a reference, expected to pass
    note: str = ""


@dataclass(frozen=True)
class Paired:
    """A comparison with a control on the same test episodes, computed from both trials.csv."""
    against: str  # the control's strategy
    compute: Callable[[dict, dict], dict]  # (this row's trials, the control's trials) -> metrics["paired"]


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
    controls: tuple[Control, ...] = ()
    paired: Paired | None = None
    controls_note: str = ""  # what the controls show, plainly (a reference passing, a criterion's limits)
    # A variant runs the same task with other settings (config fields, task options under
    # "task_options") and is reported beside the simulation it is a variant of (--sim KEY runs both).
    train_overrides: dict = field(default_factory=dict, compare=False)
    variant_of: str = ""

    def train_flags(self) -> list[str]:
        """train_overrides as `python -m agent train` flags."""
        flat = {**{k: v for k, v in self.train_overrides.items() if k != "task_options"},
                **self.train_overrides.get("task_options", {})}
        return [part for name, value in flat.items() for part in (f"--{name.replace('_', '-')}", str(value))]


def _finite_below(value: float, bound: float) -> bool:
    return not math.isnan(value) and value < bound


FORAGING_MIN_SLOPE = 0.1  # a random chooser's matching slope is ~0.04; the agent's ~0.16-0.19
FORAGING_ORDERED_LAGS = (1, 2, 3, 5)


def _foraging_meets(m: dict) -> bool:
    kernel = m["lagged_regression"]["reward_kernel"]
    ordered = all(kernel[a - 1] > kernel[b - 1] for a, b in zip(FORAGING_ORDERED_LAGS, FORAGING_ORDERED_LAGS[1:]))
    low, high = m["matching_slope_ci95"]
    return (bool(m["reward_kernel_decays"]) and ordered
            and not math.isnan(low) and low > FORAGING_MIN_SLOPE and _finite_below(high, 1.0))


VOLATILITY_BETTER_ARM_MIN = 0.6


def _volatility_meets(m: dict) -> bool:
    better, paired = m["better_arm_rate"], m.get("paired")
    return (m["alpha_difference"]["ci95"][0] > 0 and paired is not None and paired["ci95"][0] > 0
            and better["stable"] > VOLATILITY_BETTER_ARM_MIN and better["volatile"] > VOLATILITY_BETTER_ARM_MIN)


def _volatility_paired(trials: dict, reference: dict) -> dict:
    from agent.simulations.volatility.analysis import paired_alpha_difference

    return paired_alpha_difference(trials, reference)


TWO_STEP_MIN_W = 0.5


def _two_step_meets(m: dict) -> bool:
    clustered, hybrid = m.get("stay_regression_with_correct_clustered"), m.get("hybrid_fit")
    if not clustered or not hybrid:
        return False
    interaction = clustered["reward_x_transition"]
    return interaction["coef"] > 0 and _finite_below(interaction["p"], 0.05) and hybrid["w"] > TWO_STEP_MIN_W


def _bandit_meets(m: dict) -> bool:
    return m["regret_difference"]["ucb1"]["ci95"][1] < 0


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
        quantities=(_kernel_lag(1), _kernel_lag(2), _kernel_lag(3), _kernel_lag(5),
                    Quantity("matching slope", dig("matching_slope"), dig("matching_slope_ci95"), format_spec=".2f")),
        seed_criterion="reward kernel decays (lag 1 > lag 2 > lag 3 > lag 5; lag 1 > lag 3 > lag 5 with disjoint "
                       "95% intervals, lag 1 > 0) and matching slope's 95% interval within "
                       f"({FORAGING_MIN_SLOPE}, 1): matching, clearly above a random chooser's (~0.04), undermatching",
        meets=_foraging_meets,
        notes="The single-unit coding fractions (not tabulated) need the LSTM's hidden states, which "
              "trials.csv does not hold; every number tabulated here comes from trials.csv.",
        controls=(Control("q_learning", False, "reference: the RL learner the agent is claimed to behave like"),
                  Control("belief_optimal", False, "reference: Bayesian belief over base rates, also history-driven"),
                  Control("known_rates_optimal"), Control("win_stay_lose_shift"), Control("alternate"),
                  Control("random")),
        controls_note="The claim of Simulation 1 is that the agent behaves like an RL learner (a decaying reward "
                      "kernel, undermatching), so a Q-learner, and the belief agent, which also weighs recent "
                      "rewards most, are expected to pass: they are references, not controls. The controls without "
                      "reward-history learning (the oracle that knows the block's rates, win-stay/lose-shift, "
                      "alternation, random) must fail."),
    Simulation(
        "2", "volatility", "Simulation 2: learning rate adapts to volatility", "volatility", 300,
        paper="fitted learning rate higher in the volatile phase than in the stable one, across seeds; "
              "better arm chosen in both phases (Fig. 3, qualitative)",
        quantities=(Quantity("alpha stable", dig("rescorla_wagner_fit", "alpha_stable", "value"),
                             dig("rescorla_wagner_fit", "alpha_stable", "ci95")),
                    Quantity("alpha volatile", dig("rescorla_wagner_fit", "alpha_volatile", "value"),
                             dig("rescorla_wagner_fit", "alpha_volatile", "ci95")),
                    Quantity("alpha volatile - stable", dig("alpha_difference", "value"),
                             dig("alpha_difference", "ci95")),
                    Quantity("minus bayes_fixed_hazard's", dig("paired", "value"), dig("paired", "ci95")),
                    Quantity("better arm stable", dig("better_arm_rate", "stable")),
                    Quantity("better arm volatile", dig("better_arm_rate", "volatile"))),
        seed_criterion="alpha volatile - alpha stable > 0 and larger than the fixed-hazard Bayesian learner's "
                       "(bayes_fixed_hazard, same test episodes), both with 95% intervals over episodes excluding 0 "
                       f"(sandwich, paired); the better arm chosen on > {VOLATILITY_BETTER_ARM_MIN:.0%} of trials "
                       "in each phase",
        meets=_volatility_meets,
        controls=(Control("rescorla_wagner"), Control("bayes_fixed_hazard")),
        paired=Paired("bayes_fixed_hazard", _volatility_paired),
        controls_note="A Bayesian learner with a fixed hazard already learns faster in the volatile phase (more "
                      "change points, so its beliefs are more often fresh): alpha volatile > stable alone does "
                      "not show volatility-adapted learning. The criterion asks the agent to adapt more than "
                      "that learner on the same episodes; bayes_fixed_hazard's own row is its comparison with "
                      "itself (0 by construction)."),
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
        meets=lambda m: bool(m["meets_target"]),
        controls=(Control("model_free"),)),
    Simulation(
        "4", "two_step", "Simulation 4: model-based behaviour (two-step task)", "two_step", 300,
        paper="stay probability common-rewarded ~0.99, rare-rewarded ~0.63, common-unrewarded ~0.61, "
              "rare-unrewarded ~0.99 (Fig. 5b, read off the figure; 8 seeds)",
        quantities=(*(Quantity(f"stay {name.replace('_', '-')}", dig("stay_probability", name))
                      for name in ("common_rewarded", "rare_rewarded", "common_unrewarded", "rare_unrewarded")),
                    Quantity("reward x transition coef", dig("stay_regression", "reward_x_transition", "coef"),
                             format_spec=".2f"),
                    Quantity("with correct", dig("stay_regression_with_correct_clustered", "reward_x_transition",
                                                 "coef"), format_spec=".2f"),
                    Quantity("its p (by episode)", dig("stay_regression_with_correct_clustered",
                                                       "reward_x_transition", "p"), format_spec=".2g",
                             across_seeds="range"),
                    Quantity("reward coef (with correct)", dig("stay_regression_with_correct_clustered", "reward",
                                                               "coef"), format_spec=".2f"),
                    Quantity("hybrid w", dig("hybrid_fit", "w"), format_spec=".2f")),
        seed_criterion="with the correct-choice predictor (Akam et al. 2015) in the stay regression, reward x "
                       "transition coefficient > 0 with p < 0.05, standard errors clustered by episode; and Daw's "
                       f"hybrid weight w > {TWO_STEP_MIN_W} (maximum likelihood; 1 model-based, 0 model-free)",
        meets=_two_step_meets,
        controls=(Control("model_free"),
                  Control("model_based", False, "reference: the model-based planner the claim is about")),
        controls_note="The plain regression's interaction (first coefficient column) and the stay ordering are "
                      "met by the model-free control too (Akam et al. 2015); with `correct` its interaction "
                      "shrinks to ~0.1 (still p < 0.05 by episode on 300 episodes), so the hybrid weight w is "
                      "what separates it (~0.00 against the planner's ~1.00)."),
    Simulation(
        "5", "harlow", "Simulation 5: learning to learn (Harlow)", "harlow", 2000,
        paper="trial 1 at chance (~52%), trial 2 and after ~97-99% correct on held-out objects "
              "(Fig. 6c, final quantile, read off the figure)",
        quantities=tuple(_harlow_trial(k) for k in range(1, 7)),
        seed_criterion=f"trial 1 within [{HARLOW_TRIAL1_RANGE[0]}, {HARLOW_TRIAL1_RANGE[1]}] and trials 2-6 "
                       f"each >= {HARLOW_LATER_MIN}",
        meets=_harlow_meets,
        controls=(Control("stimulus_blind"),),
        notes="The paper's plain agent: image encoder -> LSTM -> linear policy and value, trained with our two "
              "aids (a fading brightness hint, forced first losses; docs/harlow-plain-agent.md), tested with "
              "frozen weights on digit classes training never saw. Accuracy by trial comes from trials.csv; the "
              "per-quantile curves in the figure need the run's quantile snapshots (RUN/quantiles/)."),
    Simulation(
        "5-objects", "harlow-objects", "Simulation 5, variant (ours): the object readout", "harlow", 2000,
        paper="as Simulation 5",
        quantities=tuple(_harlow_trial(k) for k in range(1, 7)),
        seed_criterion=f"trial 1 within [{HARLOW_TRIAL1_RANGE[0]}, {HARLOW_TRIAL1_RANGE[1]}] and trials 2-6 "
                       f"each >= {HARLOW_LATER_MIN}",
        meets=_harlow_meets,
        notes="Not the paper's architecture: the policy also scores each object's features against a query from "
              "the hidden state (SlotReadout), so the comparison is built in. The paper's A2C settings (48 units, "
              "RMSProp 7e-4, gamma 0.9, value 0.05, entropy 0.05), no training aids, the same held-out classes.",
        # 200k episodes (ours): at 100k one seed in three stopped at 0.94-0.95 on trials 2-6 (AMD
        # EPYC, 2026-12-07); at 200k five of five reached 0.97-1.00 (results/reproduce/README.md).
        train_overrides={"episodes": 200_000, "hidden_size": 48, "num_envs": 32, "lr": 7e-4, "gamma": 0.9,
                         "value_coef": 0.05, "entropy_coef": 0.05, "entropy_coef_final": -1.0,
                         "task_options": {"readout": "objects", "hint": "none", "first_loss": "none"}},
        variant_of="5"),
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
        min_share_of_seeds=0.75,
        controls=(Control("q_learning", False, "reference: the classical account, the manipulation added to its "
                                               "update"),),
        controls_note="The Q-learner whose prediction error is offset by the manipulation (dopamine as the "
                      "learning signal, the classical account of Stopper et al.) passes: the behavioural effects "
                      "alone do not tell the agent's mechanism (the RPE as an input to a network whose weights "
                      "are frozen) from it. What does is the ablation without the RPE input (`--ablate`), not "
                      "run here."),
    Simulation(
        "bandits", "bandits", "Bandits (Wang et al. 2016): independent arms", "bandit_independent", 300,
        paper="cumulative regret at trial 100 (third-party reproduction): UCB ~4.7, Thompson ~4.05, meta-RL ~4.1",
        quantities=(Quantity("regret agent", dig("regret_at_last_trial", "agent"), format_spec=".2f"),
                    Quantity("regret UCB1", dig("regret_at_last_trial", "ucb1"), format_spec=".2f"),
                    Quantity("regret Thompson", dig("regret_at_last_trial", "thompson"), format_spec=".2f"),
                    Quantity("regret Gittins", dig("regret_at_last_trial", "gittins"), format_spec=".2f"),
                    Quantity("minus UCB1's", dig("regret_difference", "ucb1", "value"),
                             dig("regret_difference", "ucb1", "ci95"), format_spec=".2f"),
                    Quantity("minus Thompson's", dig("regret_difference", "thompson", "value"),
                             dig("regret_difference", "thompson", "ci95"), format_spec=".2f")),
        seed_criterion="regret at the last trial below UCB1's on the same episodes: the paired difference's 95% "
                       "bootstrap interval over episodes below 0 (the difference from Thompson sampling is "
                       "tabulated, not judged)",
        meets=_bandit_meets,
        controls=(Control("ucb1"), Control("rescorla_wagner"),
                  Control("thompson", False, "reference: the Bayesian algorithm the claim compares with"),
                  Control("gittins", False, "reference: the Bayes-optimal index policy")),
        controls_note="A control row's 'regret agent' is the control's own regret on the test episodes, its "
                      "differences are from the replayed baselines. A fixed-rate Rescorla-Wagner softmax also "
                      "beats UCB1 on these episodes: the criterion shows a competent bandit learner, not a "
                      "meta-learned one; the Thompson column is the comparison the 2016 paper draws.",
        notes="The agent's regret comes from trials.csv (p_0, p_1, action); the baselines' are their own "
              "plays on the same arm probabilities (p_0, p_1 of each episode) with the eval seed. Every seed is tested on the same "
              "episodes (the eval seed draws them), so the baselines' regrets are the same for every seed."),
)

BY_KEY = {simulation.key: simulation for simulation in SIMULATIONS}
SIM_CHOICES = (*BY_KEY, "all")


def selected(keys: list[str]) -> list[Simulation]:
    """The simulations named by --sim, in table order, each once."""
    wanted = set(BY_KEY) if "all" in keys else set(keys)
    return [simulation for simulation in SIMULATIONS if simulation.key in wanted or simulation.variant_of in wanted]


def seeds_needed(simulation: Simulation, seeds: int) -> int:
    return math.ceil(simulation.min_share_of_seeds * seeds - 1e-9)
