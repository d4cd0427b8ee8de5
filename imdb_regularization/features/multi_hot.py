"""Keras' index convention and the notebook's multi-hot rows, for both sources.

Indices follow `tf.keras.datasets.imdb.load_data`: 0 padding, 1 start, 2 out of vocabulary,
3 unused, and the word of frequency rank r (1 = most frequent) is r + 3; indices at or beyond
`num_words` become 2. A review's multi-hot row has a 1 at each index it contains, as in the
notebook's `sequences_shaping`.
"""

import numpy as np

from imdb_regularization.features.ragged import Ragged, ragged_from_lists
from imdb_regularization.features.vocabulary import IndexedReviews, rank_words
from imdb_regularization.params import FIRST_WORD_INDEX
from imdb_regularization.readers.sources import SPLITS

START_INDEX, OOV_INDEX = 1, 2


def keras_indices(ranks: Ragged, num_words: int) -> Ragged:
    """Map frequency ranks (1 = most frequent, 0 = unknown word) to Keras indices.

    Args:
        ranks: one sequence of ranks per review.
        num_words: indices at or beyond this become the out-of-vocabulary index 2.

    Returns:
        The index sequences, each starting with the start index 1.
    """
    # One lookup per token in a table of every rank's index costs less than computing them.
    index_of_rank = np.arange(ranks.values.max(initial=0) + 1, dtype=ranks.values.dtype) + (FIRST_WORD_INDEX - 1)
    index_of_rank[(index_of_rank == FIRST_WORD_INDEX - 1) | (index_of_rank >= num_words)] = OOV_INDEX
    indices = index_of_rank[ranks.values]
    row_starts = np.cumsum(ranks.lengths) - ranks.lengths
    return Ragged(values=np.insert(indices, row_starts, START_INDEX), lengths=ranks.lengths + 1)


def multi_hot(sequences: Ragged, num_words: int) -> np.ndarray:
    """One uint8 row per sequence with a 1 at every index it contains.

    Raises:
        ValueError: an index is negative or not below `num_words`.
    """
    values = sequences.values
    if values.size and not 0 <= values.min() <= values.max() < num_words:
        raise ValueError(f"indices must lie in [0, {num_words}), got {values.min()}..{values.max()}")
    # One flat scatter (row * width + index) costs about half of a two-dimensional one, and
    # 32-bit positions, when they fit, move half the bytes of 64-bit ones.
    size = len(sequences.lengths) * num_words
    position_type = np.int32 if size < 2**31 else np.int64
    flat: np.ndarray = np.repeat(np.arange(0, size, num_words, dtype=position_type), sequences.lengths)
    flat += values.astype(position_type, copy=False)
    matrix = np.zeros(size, dtype=np.uint8)
    matrix[flat] = 1
    return matrix.reshape(len(sequences.lengths), num_words)


def encode_aclimdb(reviews: IndexedReviews, num_words: int) -> tuple[dict[str, np.ndarray], list[tuple[str, int]]]:
    """Multi-hot arrays for indexed reviews, with the vocabulary ranked on the training split only.

    Returns:
        The arrays named as in `readers.sources.ARRAY_NAMES`, and the indexed words with their counts.
    """
    ids = reviews.ids
    in_train = np.zeros(len(ids.lengths), dtype=bool)
    in_train[reviews.rows["train"]] = True
    vocabulary, rank_of_id = rank_words(reviews.words, ids.values[np.repeat(in_train, ids.lengths)])
    # All reviews in one pass, in the order read; each split then takes its rows in order.
    ranks = Ragged(values=rank_of_id[ids.values], lengths=ids.lengths)
    rows_multi_hot = multi_hot(keras_indices(ranks, num_words), num_words)
    arrays = {}
    for split in SPLITS:
        arrays[f"x_{split}"] = rows_multi_hot[reviews.rows[split]]
        arrays[f"y_{split}"] = reviews.labels[reviews.rows[split]]
    return arrays, vocabulary[: num_words - FIRST_WORD_INDEX]


def encode_keras(raw: dict[str, np.ndarray], num_words: int) -> dict[str, np.ndarray]:
    """Multi-hot arrays from the sequences of Keras' imdb.npz (ranks, 1 = most frequent)."""
    arrays = {}
    for split in SPLITS:
        indices = keras_indices(ragged_from_lists(raw[f"x_{split}"]), num_words)
        arrays[f"x_{split}"] = multi_hot(indices, num_words)
        arrays[f"y_{split}"] = raw[f"y_{split}"].astype(np.uint8)
    return arrays
