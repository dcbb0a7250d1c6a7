"""Simulation 6: risky vs safe lever (Stopper et al. 2014) with the test-time dopamine
manipulations: the task, its analysis and the Q-learning control."""
