"""Benchmarks: ``make bench`` runs every ``bench_*.py`` here through :mod:`benchmarks.run`."""
