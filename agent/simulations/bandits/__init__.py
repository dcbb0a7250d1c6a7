"""The 2016 bandits: the tasks, the regret analysis and the classical bandit policies."""
