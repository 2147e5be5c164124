"""Benchmarks of the sync engine; run with `python -m bench` (see __main__.py)."""
