"""Test infrastructure that the benchmarks reuse from a checkout (never the other way round)."""
