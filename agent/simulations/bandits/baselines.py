"""Bandit baselines, vectorized over episodes: each policy plays every episode of a batch at
once (one tensor op per trial), on the same arm probabilities the agent was tested on."""

from agent.simulations.bandits.gittins import GittinsIndex
from agent.simulations.bandits.rescorla_wagner import RescorlaWagnerSoftmax
from agent.simulations.bandits.thompson import ThompsonSampling
from agent.simulations.bandits.ucb import UCB1

BASELINES = {
    "thompson": ThompsonSampling,
    "ucb1": UCB1,
    "gittins": GittinsIndex,
    "rescorla_wagner": RescorlaWagnerSoftmax,
}
