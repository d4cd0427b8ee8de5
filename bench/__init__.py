"""The speed benchmark: the pipeline timed against the notebook's recipe (`python -m bench.run`)."""
