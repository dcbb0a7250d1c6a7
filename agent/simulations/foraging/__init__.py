"""Simulation 1: dynamic foraging (Tsutsui et al. 2016): the task, its analysis, the reference
strategies (controls), their across-seed run and the README's result tables."""
