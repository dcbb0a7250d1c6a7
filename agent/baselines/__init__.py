"""Bandit baselines, vectorized over episodes: each policy plays every episode of a batch at
once (one tensor op per trial), on the same arm probabilities the agent was tested on."""

from agent.baselines.gittins import GittinsIndex, gittins_index_table
from agent.baselines.rescorla_wagner import RescorlaWagnerSoftmax
from agent.baselines.runner import BanditPlay, play_bandit
from agent.baselines.thompson import ThompsonSampling
from agent.baselines.ucb import UCB1

BASELINES = {
    "thompson": ThompsonSampling,
    "ucb1": UCB1,
    "gittins": GittinsIndex,
    "rescorla_wagner": RescorlaWagnerSoftmax,
}

__all__ = ["BASELINES", "BanditPlay", "play_bandit", "gittins_index_table", "GittinsIndex",
           "RescorlaWagnerSoftmax", "ThompsonSampling", "UCB1"]
