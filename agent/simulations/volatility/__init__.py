"""Simulation 2: Behrens volatility, the per-phase learning-rate analysis and its controls."""
