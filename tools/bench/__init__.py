"""The speed benchmark: the pipeline timed against the notebook's recipe (`python -m tools.bench.run`)."""
