"""Benchmarks: `python -m bench cpu|gpu|agent` (run from the repository root)."""
