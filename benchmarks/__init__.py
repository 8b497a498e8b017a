"""rapidfire's benchmarks: each figure beside its baseline, measured in one run."""
