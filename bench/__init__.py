"""Benchmarks: `python -m bench cpu|gpu|agent|scaling|rollout|ranks` (run from the repository root).

Every suite writes its latest run to RESULTS/<suite>.json (and <suite>.md where it makes a table)
by default (--out changes it). RESULTS holds nothing else: earlier runs and one-off measurements
are in docs/performance-log.md and git history; scripts/ab.py is the A/B harness."""

from pathlib import Path

RESULTS = Path("bench/results")
