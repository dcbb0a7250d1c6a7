"""The algorithm: training settings, the network (input builder, LSTM core, policy and value
heads), the rollout, the A2C loss, the optimizer and the trainer that runs one update."""
