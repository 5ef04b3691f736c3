"""Benchmarks that print figures (not timed tests): `python -m bench` runs every bench_*.py."""
