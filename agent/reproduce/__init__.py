"""`python -m agent reproduce`: train every simulation's runs for several seeds, evaluate each
with frozen weights, and write REPORT.md and summary.json beside them.

simulations.py  what each simulation measures and what counts as reproduced (the table)
jobs.py         one seed of one simulation: its run directory, state, and train/eval subprocesses
across_seeds.py mean with a t interval, or a range, over seeds
report.py       summary.json and REPORT.md from the finished jobs
command.py      the command itself: checks, the pool of jobs, the report
"""
