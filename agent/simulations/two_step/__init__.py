"""Simulation 4: the two-step task (Daw et al. 2011), its analysis and the model-free and
model-based controls."""
