"""The keras source's words: Keras' published word index, mapped to the multi-hot columns as Keras maps it.

`imdb_word_index.json` maps each word to its frequency rank (1 = most frequent). `imdb.load_data`
shifts ranks by `index_from=3` so that indices 0-3 stay reserved: the word of rank r is column
r + 3, the first word column 4 (`FIRST_WORD_INDEX`). The file is checked before use: one JSON
object of words (no whitespace inside, which would break `vocabulary.tsv`) to distinct positive
integer ranks, with no rank missing below the widest column.
"""

import itertools
import json
from pathlib import Path

import numpy as np

from imdb_regularization.params import FIRST_WORD_INDEX
from imdb_regularization.readers.sources import DataError

# Keras' index is about 1.6 MB; a far larger file is not it, and is refused before it is parsed.
MAX_WORD_INDEX_BYTES = 64 << 20
# Ranks are shifted by this many reserved indices, as `imdb.load_data(index_from=3)` does.
INDEX_FROM = FIRST_WORD_INDEX - 1


def read_word_index(path: Path) -> dict[int, str]:
    """The words of a Keras word index file, by rank.

    Raises:
        DataError: the file is too large, not UTF-8 JSON, not an object of words to ranks, or
            gives two words one rank; the message names the first bad entry.
    """
    with path.open("rb") as file:
        data = file.read(MAX_WORD_INDEX_BYTES + 1)
    if len(data) > MAX_WORD_INDEX_BYTES:
        raise DataError(f"{path} is larger than {MAX_WORD_INDEX_BYTES:,} bytes; Keras' word index is far smaller")
    try:
        index = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise DataError(f"{path} is not a JSON word index: {' '.join(str(error).split())}") from None
    if not isinstance(index, dict):
        raise DataError(f"{path} holds {type(index).__name__}; a word index is an object of words to ranks")
    words: dict[int, str] = {}
    for word, rank in index.items():
        if not word or any(character.isspace() for character in word):
            raise DataError(f"{path}: the word {word!r} is empty or holds whitespace")
        if type(rank) is not int or rank < 1:
            raise DataError(f"{path}: {word!r} has rank {rank!r}; ranks are integers from 1")
        if rank in words:
            raise DataError(f"{path}: {words[rank]!r} and {word!r} both have rank {rank}")
        words[rank] = word
    return words


def keras_vocabulary(words: dict[int, str], x_train: np.ndarray, num_words: int) -> list[tuple[str, int]]:
    """The words of columns `FIRST_WORD_INDEX` to `num_words` - 1 in rank order, with their training-set counts.

    Args:
        words: the word index, by rank (`read_word_index`).
        x_train: the training reviews as sequences of ranks (0 = unknown word), as imdb.npz holds them.
        num_words: `data.num_words`, the width of the multi-hot rows.

    Returns:
        (word, occurrences in the training reviews) for ranks 1, 2, ... up to the widest column
        or the index's last rank, whichever comes first: what `encode` writes as `vocabulary.tsv`.

    Raises:
        DataError: a rank below that is missing from the index.
    """
    last_rank = min(num_words - FIRST_WORD_INDEX, max(words, default=0))
    missing = next((rank for rank in range(1, last_rank + 1) if rank not in words), None)
    if missing is not None:
        raise DataError(f"the word index has no word of rank {missing} (column {missing + INDEX_FROM})")
    ranks = np.fromiter(itertools.chain.from_iterable(x_train), dtype=np.int64)
    counts = np.bincount(ranks[ranks <= last_rank], minlength=last_rank + 1)
    return [(words[rank], int(counts[rank])) for rank in range(1, last_rank + 1)]
