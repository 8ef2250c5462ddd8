"""Steward benchmarks: Steward next to the raw cost of the same work (``python -m bench.run``)."""
