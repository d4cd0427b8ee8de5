"""Encode with bounded memory: multi-hot rows are built and written a block at a time, whatever num_words is."""

import tracemalloc

import numpy as np

from imdb_regularization.features.multi_hot import BLOCK_BYTES, MultiHotRows, index_keras, multi_hot
from imdb_regularization.features.ragged import Ragged
from imdb_regularization.model.encoded_arrays import write_encoded

MB = 2**20


def review_sequences(rows: int, width: int, seed: int = 0) -> Ragged:
    """Index sequences of 150 tokens each (start index first), as `keras_indices` gives them."""
    rng = np.random.default_rng(seed)
    values = rng.integers(4, width, size=(rows, 150))
    values[:, 0] = 1
    return Ragged(values=values.ravel(), lengths=np.full(rows, 150))


def test_blocks_are_the_rows_multi_hot_builds_at_once():
    sequences = review_sequences(1_000, 3_000)
    rows = MultiHotRows(sequences, 3_000)
    blocks = list(rows.blocks(max_bytes=300_000))  # 100 rows a block
    assert [len(block) for block in blocks] == [100] * 10
    np.testing.assert_array_equal(np.concatenate(blocks), multi_hot(sequences, 3_000))
    assert rows.shape == (1_000, 3_000) and len(rows) == 1_000


def test_writing_wide_rows_holds_one_block_not_the_array(tmp_path):
    # 6,000 rows of 30,000 columns: 180 MB built at once, as encode did before.
    rows = MultiHotRows(review_sequences(6_000, 30_000), 30_000)
    tracemalloc.start()
    try:
        write_encoded(tmp_path, {"x_train": rows}, vocabulary=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < BLOCK_BYTES + 16 * MB, f"{peak / MB:.0f} MB"
    written = np.load(tmp_path / "x_train.npy", mmap_mode="r")
    assert written.shape == (6_000, 30_000) and written.dtype == np.uint8
    np.testing.assert_array_equal(
        written[-5:], multi_hot(Ragged(rows.sequences.values[-750:], np.full(5, 150)), 30_000)
    )


def test_the_peak_does_not_grow_with_num_words(tmp_path):
    raw = {
        f"{kind}_{split}": value
        for split in ("train", "test")
        for kind, value in (
            ("x", np.array([list(range(1, 150))] * 2_000, dtype=object)),
            ("y", np.arange(2_000) % 2),
        )
    }
    peaks = {}
    for width in (1_000, 100_000):
        arrays = index_keras(raw, width)
        tracemalloc.start()
        try:
            write_encoded(tmp_path / str(width), arrays, vocabulary=None)
            peaks[width] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # 2 x 2,000 rows of 100,000 columns are 400 MB at once; written a block at a time they take one block.
    assert peaks[100_000] < BLOCK_BYTES + 16 * MB, f"{peaks[100_000] / MB:.0f} MB"
    assert (tmp_path / "100000" / "x_test.npy").stat().st_size > 2_000 * 100_000
