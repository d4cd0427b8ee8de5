"""Integer sequences of different lengths (reviews as word ids), stored as two flat arrays."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Ragged:
    """Integer sequences of different lengths, stored flat: row i is the i-th run of `lengths[i]` values."""

    values: np.ndarray
    lengths: np.ndarray


def ragged(
    sequences: Sequence[Any] | np.ndarray, flat_values: Iterable[int], dtype: type[np.integer] = np.int64
) -> Ragged:
    """A Ragged with the row lengths of `sequences` and the values `flat_values` yields, in order."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    values: np.ndarray = np.fromiter(flat_values, dtype=dtype, count=int(lengths.sum()))
    return Ragged(values=values, lengths=lengths)


def ragged_from_lists(sequences: Sequence[Any] | np.ndarray) -> Ragged:
    return ragged(sequences, chain.from_iterable(sequences))
