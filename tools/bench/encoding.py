"""The encode stage's multi-hot step against the notebook's per-row loop, on the same index sequences."""

import time
from pathlib import Path

from imdb_regularization.features.multi_hot import keras_indices, multi_hot
from tools.bench.notebook import as_lists, read_ranked, sequences_shaping

REPEATS = 5


def _seconds(function, *args) -> float:
    """The best of REPEATS timings: a single one of a 50 ms step is mostly the machine's noise."""
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        function(*args)
        timings.append(time.perf_counter() - started)
    return min(timings)


def compare_encoders(archive: Path, widths: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """Seconds to multi-hot encode both splits at each width, and the notebook's loop at the first width.

    Reading and tokenizing, the same for both, happen once and are not timed; each step is timed
    as the best of REPEATS runs, the notebook's loop as well.
    """
    ranked = [ranks for ranks, _ in read_ranked(archive).values()]
    results = {}
    for width in widths:
        indices = [keras_indices(split_ranks, width) for split_ranks in ranked]
        results[width] = {"pipeline_seconds": sum(_seconds(multi_hot, split, width) for split in indices)}
    lists = [as_lists(keras_indices(split_ranks, widths[0])) for split_ranks in ranked]
    results[widths[0]]["notebook_seconds"] = sum(_seconds(sequences_shaping, split, widths[0]) for split in lists)
    return results
