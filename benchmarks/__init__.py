"""Benchmarks behind scripts/benchmark.py (figures are printed, never asserted)."""
