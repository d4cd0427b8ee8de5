"""Keras' index convention and the notebook's multi-hot rows, for both sources.

Indices follow `tf.keras.datasets.imdb.load_data`: 0 padding, 1 start, 2 out of vocabulary,
3 unused, and the word of frequency rank r (1 = most frequent) is r + 3; indices at or beyond
`num_words` become 2. A review's multi-hot row has a 1 at each index it contains, as in the
notebook's `sequences_shaping`.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from imdb_regularization.features.ragged import Ragged, ragged_from_lists
from imdb_regularization.features.vocabulary import IndexedReviews, rank_words
from imdb_regularization.params import FIRST_WORD_INDEX
from imdb_regularization.readers.sources import SPLITS

START_INDEX, OOV_INDEX = 1, 2
# The most bytes of multi-hot rows the encode stage builds at once: enough rows per block at
# narrow widths (a whole split at the default 100 words) that blocks add no measurable cost.
BLOCK_BYTES = 32 * 2**20


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


@dataclass(frozen=True)
class MultiHotRows:
    """Multi-hot rows not built yet: their index sequences and width, built a block of rows at a time.

    A whole split of rows takes rows × num_words bytes; written block by block (`blocks`), the
    encode stage's memory no longer grows with num_words beyond one block.
    """

    sequences: Ragged
    num_words: int

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.sequences.lengths), self.num_words

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.sequences.lengths)

    def blocks(self, max_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
        """The rows in order, as `multi_hot` arrays of at most `max_bytes` (and at least one row) each."""
        block_rows = max(1, max_bytes // self.num_words)
        starts = np.concatenate([[0], np.cumsum(self.sequences.lengths)])
        for first in range(0, len(self.sequences.lengths), block_rows):
            last = min(first + block_rows, len(self.sequences.lengths))
            block = Ragged(
                values=self.sequences.values[starts[first] : starts[last]], lengths=self.sequences.lengths[first:last]
            )
            yield multi_hot(block, self.num_words)

    def build(self) -> np.ndarray:
        """All rows as one array: `multi_hot(sequences, num_words)`."""
        return multi_hot(self.sequences, self.num_words)


EncodedSplits = dict[str, MultiHotRows | np.ndarray]


def select_rows(sequences: Ragged, rows: np.ndarray) -> Ragged:
    """The sequences numbered `rows`, in that order."""
    starts = np.cumsum(sequences.lengths) - sequences.lengths
    lengths = sequences.lengths[rows]
    # Each selected value's position: its row's start, plus its place within that row.
    offsets = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return Ragged(values=sequences.values[np.repeat(starts[rows], lengths) + offsets], lengths=lengths)


def index_aclimdb(reviews: IndexedReviews, num_words: int) -> tuple[EncodedSplits, list[tuple[str, int]]]:
    """Indexed reviews as each split's `MultiHotRows` and labels, with the vocabulary ranked on the training split only.

    Returns:
        The arrays named as in `readers.sources.ARRAY_NAMES` (the x ones not built yet), and the
        indexed words with their counts.
    """
    ids = reviews.ids
    in_train = np.zeros(len(ids.lengths), dtype=bool)
    in_train[reviews.rows["train"]] = True
    vocabulary, rank_of_id = rank_words(reviews.words, ids.values[np.repeat(in_train, ids.lengths)])
    # All reviews in one pass, in the order read; each split then takes its rows in order.
    indices = keras_indices(Ragged(values=rank_of_id[ids.values], lengths=ids.lengths), num_words)
    arrays: EncodedSplits = {}
    for split in SPLITS:
        arrays[f"x_{split}"] = MultiHotRows(select_rows(indices, reviews.rows[split]), num_words)
        arrays[f"y_{split}"] = reviews.labels[reviews.rows[split]]
    return arrays, vocabulary[: num_words - FIRST_WORD_INDEX]


def index_keras(raw: dict[str, np.ndarray], num_words: int) -> EncodedSplits:
    """Each split of Keras' imdb.npz (ranks, 1 = most frequent) as `MultiHotRows` and uint8 labels."""
    arrays: EncodedSplits = {}
    for split in SPLITS:
        arrays[f"x_{split}"] = MultiHotRows(keras_indices(ragged_from_lists(raw[f"x_{split}"]), num_words), num_words)
        arrays[f"y_{split}"] = raw[f"y_{split}"].astype(np.uint8)
    return arrays


def build_arrays(arrays: EncodedSplits) -> dict[str, np.ndarray]:
    """`arrays` with every `MultiHotRows` built into its array."""
    return {name: value.build() if isinstance(value, MultiHotRows) else value for name, value in arrays.items()}


def encode_aclimdb(reviews: IndexedReviews, num_words: int) -> tuple[dict[str, np.ndarray], list[tuple[str, int]]]:
    """`index_aclimdb` with the multi-hot rows built: whole arrays, for callers that hold them anyway."""
    arrays, vocabulary = index_aclimdb(reviews, num_words)
    return build_arrays(arrays), vocabulary


def encode_keras(raw: dict[str, np.ndarray], num_words: int) -> dict[str, np.ndarray]:
    """`index_keras` with the multi-hot rows built."""
    return build_arrays(index_keras(raw, num_words))
