"""Tokenizing reviews in worker processes and ranking their words by training-set count.

Words are numbered once, in the order they first appear, and every later step works on those
integer ids: counting is a `bincount`, ranking one stable sort.
"""

import string
from collections.abc import Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import chain, islice

import numpy as np

from imdb_regularization import cli
from imdb_regularization.features.ragged import Ragged, ragged
from imdb_regularization.readers.aclimdb import ReviewKey, ordered_rows

WORD_CHARACTERS = string.ascii_lowercase + string.digits + "'"
# For `bytes.translate`: keeps the bytes of word characters and turns every other byte into a space.
WORD_BYTES_ONLY = bytes(byte if chr(byte) in WORD_CHARACTERS else ord(" ") for byte in range(256))
# Reviews go to the tokenizing processes in batches of this many: big enough that sending them
# costs little, small enough that the last batch, tokenized after reading ends, is short.
BATCH_REVIEWS = 2_000


class TokenizingError(cli.StageError):
    """A tokenizing worker process ended before its work was done."""


@dataclass(frozen=True)
class TokenIds:
    """Tokenized texts, each token an id: the position of its word in `words`, which lists each word once."""

    words: list[str]
    ids: Ragged


@dataclass(frozen=True)
class IndexedReviews:
    """Reviews as ids into one word list, one row each in the order they were read.

    `rows[split]` lists the rows of a split ordered by label, then review id.
    """

    words: list[str]
    ids: Ragged
    labels: np.ndarray
    rows: dict[str, np.ndarray]


def tokenize(text: str) -> list[str]:
    """Lower-case words of letters, digits and apostrophes, with the reviews' `<br />` tags dropped.

    The tokens of `re.findall(r"[a-z0-9']+", ...)`, twice as fast: they are ASCII, so once `lower()`
    has run on the text (it maps a few non-ASCII letters, such as the Kelvin sign, to ASCII), one
    byte-level translate can blank everything else, UTF-8's multi-byte characters included.
    """
    kept = text.lower().replace("<br />", " ").encode("utf-8").translate(WORD_BYTES_ONLY)
    return kept.decode("ascii").split()


class _FirstSeenIds(dict[str, int]):
    """word -> id, numbering words in the order they are first looked up."""

    def __missing__(self, word: str) -> int:
        self[word] = len(self)
        return self[word]


def token_ids(texts: list[str]) -> TokenIds:
    """Tokenize `texts`, numbering their words in order of first appearance."""
    numbering = _FirstSeenIds()
    token_lists = list(map(tokenize, texts))
    # `map` over a bound method does the millions of lookups in C, not in a Python loop.
    ids = ragged(token_lists, map(numbering.__getitem__, chain.from_iterable(token_lists)), np.int32)
    return TokenIds(words=list(numbering), ids=ids)


def join_token_ids(parts: Iterable[TokenIds]) -> TokenIds:
    """The texts of all `parts`, in order, with ids into one word list."""
    numbering, values, lengths = _FirstSeenIds(), [], []
    for part in parts:
        global_ids = np.fromiter(map(numbering.__getitem__, part.words), dtype=np.int32, count=len(part.words))
        values.append(global_ids[part.ids.values])
        lengths.append(part.ids.lengths)
    return TokenIds(words=list(numbering), ids=Ragged(values=np.concatenate(values), lengths=np.concatenate(lengths)))


def rank_words(words: list[str], train_ids: np.ndarray) -> tuple[list[tuple[str, int]], np.ndarray]:
    """The training split's words by count, ties alphabetically, and each word id's rank (1 = most frequent).

    Returns:
        The ranked words with their training-set counts, and for each id in `words` its rank,
        0 for a word that appears only outside the training split.
    """
    counts = np.bincount(train_ids, minlength=len(words))
    alphabetical = np.array(sorted(np.flatnonzero(counts).tolist(), key=words.__getitem__), dtype=np.int64)
    # A stable sort by descending count keeps equal counts in alphabetical order.
    ranked = alphabetical[np.argsort(-counts[alphabetical], kind="stable")]
    rank_of_id = np.zeros(len(words), dtype=np.int32)
    rank_of_id[ranked] = np.arange(1, len(ranked) + 1)
    return [(words[i], int(counts[i])) for i in ranked.tolist()], rank_of_id


def _batches(reviews: Iterable[tuple[ReviewKey, str]], keys: list[ReviewKey]) -> Iterator[list[str]]:
    """The texts of `reviews` in lists of BATCH_REVIEWS, appending their keys to `keys` as it goes."""
    reviews = iter(reviews)
    while batch := list(islice(reviews, BATCH_REVIEWS)):
        keys.extend(key for key, _ in batch)
        yield [text for _, text in batch]


def index_reviews(reviews: Iterable[tuple[ReviewKey, str]], source: object, workers: int) -> IndexedReviews:
    """Tokenize keyed reviews in `workers` processes while they are still being read, and order each split.

    `reviews` is consumed here, in this process (reading the archive), while the worker
    processes tokenize the batches already read.

    Raises:
        DataError: see `readers.aclimdb.ordered_rows`.
        TokenizingError: a worker process died (killed, or out of memory) before it finished.
    """
    keys: list[ReviewKey] = []
    pool = cli.worker_pool(workers)
    try:
        # `map` hands out every batch before it returns: `keys` is complete from here on.
        parts = pool.map(token_ids, _batches(reviews, keys))
        rows = ordered_rows(keys, source)
        tokens = join_token_ids(parts)
    except BrokenProcessPool:
        raise TokenizingError(
            f"a tokenizing worker process died (killed, or out of memory) while encoding {source}; run the stage again"
        ) from None
    finally:
        pool.shutdown(cancel_futures=True)
    labels = np.array([label for _, label, _ in keys], dtype=np.uint8)
    return IndexedReviews(words=tokens.words, ids=tokens.ids, labels=labels, rows=rows)
