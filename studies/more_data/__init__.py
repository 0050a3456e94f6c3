"""More pre-training clips from the benchmark's own generator, the test split untouched."""
