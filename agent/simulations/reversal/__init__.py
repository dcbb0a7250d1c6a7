"""Simulation 3: Bromberg-Martin reversal, the inference-index analysis and its control."""
