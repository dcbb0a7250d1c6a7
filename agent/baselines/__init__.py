"""`python -m agent baseline`: which classical learner plays which task (registry.py; the
learners live in each simulation's baselines.py), and playing one on eval's test episodes
(play.py)."""
