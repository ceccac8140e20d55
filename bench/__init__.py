"""Performance figures (`make bench`: `python -m bench.bench` from the repository root)."""
