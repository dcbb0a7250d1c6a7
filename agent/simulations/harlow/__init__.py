"""Simulation 5: Harlow learning-to-learn: the task, its object images, the image encoder and
readout it gives the agent, the analysis, the across-seed table and the control."""
