"""Benchmarks: `make bench` runs every bench_*.py here; each writes benchmarks/results/<name>.json."""
