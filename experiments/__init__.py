"""Reproducible studies: the seed baseline and benchmarks. Run as ``python -m experiments.NAME``."""
