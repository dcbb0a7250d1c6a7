"""Simulation 1's single-unit coding with two nulls (issue #28): the fraction of LSTM units
significant (OLS, p < 0.05) for the last action, the last reward, their interaction and the
chosen value (agent/simulations/foraging/analysis.py's unit_coding), measured on the same frozen
test episodes for

  trained   the run's final weights;
  untrained the same architecture at its initial weights (Trainer(config) with the run's seed:
            the weights training started from);
  shuffled  a run trained with `--ablate shuffled_rewards` (rewards permuted across episodes at
            every training step, so they carried no information about the agent's own action),
            tested on the task's real rewards.

Each network plays the same test episodes (eval's seed and options); each is regressed per
"session" of 10 episodes (the analysis' unit), over SESSIONS disjoint sessions: mean and range.
The chosen value is Q_t[a_t] of a Q-learner fit to that network's own choices (as the analysis does).

    python scripts/unit_coding_null.py TRAINED_RUN SHUFFLED_RUN [--episodes 300] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.commands.evaluate import DEFAULT_TEST_SEED, play_frozen, test_options  # noqa: E402
from agent.core.config import TrainConfig  # noqa: E402
from agent.core.trainer import Trainer  # noqa: E402
from agent.infra.checkpoint import load_checkpoint  # noqa: E402
from agent.simulations.foraging.analysis import UNIT_REGRESSORS, UNIT_SESSION_EPISODES, fit_q_learning, unit_coding  # noqa: E402
from agent.simulations.registry import get_task_class  # noqa: E402


def unique_variance(trials: dict[str, np.ndarray], chosen_value: np.ndarray) -> dict[str, float]:
    """Per regressor, the mean over units of the variance it alone explains (R^2 of the full OLS
    minus R^2 without it), on the same trials as unit_coding: an effect size, which p < 0.05 on
    ~1000 autocorrelated trials is not."""
    episode = trials["episode"]
    session = np.isin(episode, np.unique(episode)[:UNIT_SESSION_EPISODES])
    t = np.flatnonzero(np.r_[False, episode[1:] == episode[:-1]] & session)
    last_action = np.where(trials["action"][t - 1] == 0, 1.0, -1.0)
    last_reward = trials["reward"][t - 1].astype(float)
    columns = np.column_stack([last_action, last_reward, last_action * last_reward, chosen_value[t]])
    hidden = trials["hidden"][t]
    hidden = hidden[:, np.ptp(hidden, axis=0) >= 1e-8]

    def r2(design):
        design = np.column_stack([np.ones(len(design)), design])
        fitted = design @ np.linalg.lstsq(design, hidden, rcond=None)[0]
        return 1 - ((hidden - fitted) ** 2).sum(0) / ((hidden - hidden.mean(0)) ** 2).sum(0)

    full = r2(columns)
    out = {"full_r2": float(full.mean())}
    for k, name in enumerate(UNIT_REGRESSORS):
        out[name] = float((full - r2(np.delete(columns, k, axis=1))).mean())
    return out


def coding(config: TrainConfig, weights: dict, episodes: int, sessions: int) -> dict:
    options = test_options(get_task_class(config.task), config.task_options)
    trials, _, _ = play_frozen(config, weights, options, episodes=episodes, seed=DEFAULT_TEST_SEED, device="cpu",
                               core="fast")
    q_fit = fit_q_learning(trials)
    chosen_value = q_fit.pop("chosen_value")
    per_session, effects = [], []
    for s in range(sessions):
        keep = (trials["episode"] >= s * UNIT_SESSION_EPISODES) & (trials["episode"] < (s + 1) * UNIT_SESSION_EPISODES)
        sub = {k: v[keep] for k, v in trials.items()}
        sub["episode"] = sub["episode"] - s * UNIT_SESSION_EPISODES  # unit_coding takes the first 10 episodes
        per_session.append(unit_coding(sub, chosen_value[keep]))
        effects.append(unique_variance(sub, chosen_value[keep]))
    table = {name: {"mean": float(np.mean([p[name] for p in per_session])),
                    "min": float(np.min([p[name] for p in per_session])),
                    "max": float(np.max([p[name] for p in per_session]))} for name in UNIT_REGRESSORS}
    effect_table = {name: float(np.mean([e[name] for e in effects])) for name in effects[0]}
    return {"unit_coding": table, "unique_r2": effect_table, "reward_per_trial": float(trials["reward"].mean()),
            "stay_rate": float(np.mean((trials["action"][1:] == trials["action"][:-1])[
                trials["episode"][1:] == trials["episode"][:-1]])),
            "q_alpha": q_fit["alpha"], "q_beta": q_fit["beta"], "sessions": sessions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trained", type=Path)
    parser.add_argument("shuffled", type=Path)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sessions = args.episodes // UNIT_SESSION_EPISODES
    trained = load_checkpoint(args.trained)
    config = TrainConfig.from_dict(trained["config"])
    initial = Trainer(config).agent.state_dict()  # the weights this run's training started from
    shuffled = load_checkpoint(args.shuffled)
    shuffled_config = TrainConfig.from_dict(shuffled["config"])
    assert shuffled_config.ablate == ["shuffled_rewards"], shuffled_config.ablate
    results = {"trained": coding(config, trained["trainer"]["agent"], args.episodes, sessions),
               "untrained": coding(config, initial, args.episodes, sessions),
               "shuffled_rewards": coding(shuffled_config, shuffled["trainer"]["agent"], args.episodes, sessions)}
    print(f"{'network':18s} " + " ".join(f"{n:>20s}" for n in UNIT_REGRESSORS) + "  reward/trial  stay")
    for name, r in results.items():
        cells = " ".join(f"{r['unit_coding'][n]['mean']:6.2f} [{r['unit_coding'][n]['min']:.2f}-{r['unit_coding'][n]['max']:.2f}]"
                         for n in UNIT_REGRESSORS)
        print(f"{name:18s} {cells}  {r['reward_per_trial']:.3f}  {r['stay_rate']:.2f}")
    print("mean unique R^2 per unit (variance explained by the regressor alone), and the full model's R^2:")
    for name, r in results.items():
        print(f"{name:18s} " + " ".join(f"{k} {v:.3f}" for k, v in r["unique_r2"].items()))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
