"""What training runs on, apart from the algorithm: checkpoint files, torchrun, the run
directory's lock, TensorBoard events, phase timers, the allocator setting and flag names."""
