"""Benchmarks: `python -m maml_evidence_tests.benchmarks` prints one JSON object of figures.

Not part of the quick suite.
"""
