"""Benchmarks: `python -m bench cpu|gpu|agent|ranks|scaling` (run from the repository root).

Every subcommand writes under RESULTS by default (--out changes it), where the README and the
measured tables look for them."""

from pathlib import Path

RESULTS = Path("bench/results")
