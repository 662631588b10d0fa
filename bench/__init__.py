"""Load and scale benchmarks (see bench/RESULTS.md)."""
