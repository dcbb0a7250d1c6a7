"""The simulations: one folder each (its task, analysis and classical baselines), and what they
share: the task interface (base.py) and registry (registry.py), the interface of the classical
learners (step_policy.py), the RPE columns (rpe.py), and the analyses' figure and interval
helpers (figures.py, intervals.py)."""
