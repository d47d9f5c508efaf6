"""Benchmarks that print ratios against a baseline measured in the same run.

Each ``bench/bench_*.py`` module exposes ``run(args) -> list[Row]``; ``python -m bench`` runs
them all (or the ones named) and prints one table.
"""
