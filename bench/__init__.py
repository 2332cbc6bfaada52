"""Benchmarks: each prints a table and writes JSON, every figure next to a raw baseline of the same run."""
