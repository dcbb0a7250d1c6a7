"""Any Gymnasium environment as an agent task: `python -m agent train --task gym:ENV_ID`.

- env_spec.py: which environment ENV_ID and --env-kwargs name, and the checks that it can be
  played (Discrete actions, Box observations), all before any work.
- trial_limit.py: --trials-per-episode, a wrapper ending an episode after K trials (NeuroGym's
  tasks never end; they mark trials with info["new_trial"]).
- vector.py: Gymnasium's own SyncVectorEnv / AsyncVectorEnv, with either autoreset convention
  (1.x's next-step, 0.29's same-step) turned into one: episode ends, truncations with their
  final observation, and the steps whose action the environment ignored.
- task.py: the BatchedTask the trainer, eval and verify use (registered as the family "gym:").
- analysis.py: eval's analysis of a gym task (reward per step, episode and trial, beside chance).
- fixed_strategies.py, summarize.py: results/gym/README.md's comparison strategies and table.
"""
