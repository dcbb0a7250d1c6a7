"""Per-task analyses run by `eval`: each module has analyze(trials, out_dir, context) -> metrics."""
