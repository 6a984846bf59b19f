"""Benchmarks: uniqc-store against the reference store's way of working."""
