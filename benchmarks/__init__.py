"""Benchmark scripts; a regular package so that no installed top-level `benchmarks` (opacus ships one) shadows it."""
